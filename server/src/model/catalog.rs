//! The model catalog: the built-in entries for the OpenAI models the server knows how to drive,
//! merged with `[models.<id>]` tables and the models providers list, and the tool shapes each
//! model family was trained with.
//!
//! Sources for the built-in entries (all public): the OpenAI model pages and release notes
//! (GPT-5, GPT-5-Codex, GPT-5.1 / GPT-5.1-Codex / GPT-5.1-Codex-Max, GPT-5.2 / GPT-5.2-Codex:
//! reasoning efforts, image input, a 400k-token context of which 128k is output, so 272k of
//! input), and the open-source Codex CLI's model family table and model presets
//! (`codex-rs/core/src/openai_models/model_family.rs`, `model_presets.rs`: the families trained
//! on the freeform `apply_patch` and on `shell_command`, 272,000-token windows, the effort
//! lists). `codex-mini-latest` has a 200,000-token window (its model page).

use std::collections::BTreeMap;

use agent_server_schema::models::{InputModality, Model};
use agent_server_schema::session::ReasoningEffort;

use crate::config::{ApplyPatchTool, Config, Modality, ModelConfig, ShellTool, WireApi};

use super::provider::Provider;
use super::remote_models::{RemoteModels, models_url};

/// The tool shapes a model is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolShapes {
    /// `apply_patch` as a JSON function or a freeform custom tool.
    pub apply_patch: ApplyPatchTool,
    /// `shell` (argv) or `shell_command` (one string).
    pub shell: ShellTool,
}

impl ToolShapes {
    /// The JSON function tools of section 4, for every model not trained on other shapes.
    pub const FUNCTIONS: Self = Self {
        apply_patch: ApplyPatchTool::Function,
        shell: ShellTool::Shell,
    };
    /// The freeform `apply_patch` and `shell_command` the codex family was trained on.
    pub const CODEX: Self = Self {
        apply_patch: ApplyPatchTool::Custom,
        shell: ShellTool::ShellCommand,
    };
}

/// The families trained on the freeform `apply_patch` and `shell_command`: `gpt-5-codex*`,
/// `gpt-5.1-codex*`, `gpt-5.2-codex*`, `codex-*`, `gpt-5.1*`, `gpt-5.2*`.
fn is_codex_family(model: &str) -> bool {
    let family = |name: &str| model == name || model.starts_with(&format!("{name}-"));
    model.starts_with("gpt-5-codex")
        || model.starts_with("codex-")
        || family("gpt-5.1")
        || family("gpt-5.2")
}

/// The tool shapes for `model` at a provider speaking `wire`: Chat Completions providers always
/// get functions; otherwise a `[models.<id>]` table's shapes win over the family's.
pub fn tool_shapes(
    models: &BTreeMap<String, ModelConfig>,
    model: &str,
    wire: WireApi,
) -> ToolShapes {
    if wire == WireApi::Chat {
        return ToolShapes::FUNCTIONS;
    }
    let family = if is_codex_family(model) {
        ToolShapes::CODEX
    } else {
        ToolShapes::FUNCTIONS
    };
    let table = models.get(model);
    ToolShapes {
        apply_patch: table
            .and_then(|t| t.apply_patch_tool)
            .unwrap_or(family.apply_patch),
        shell: table.and_then(|t| t.shell_tool).unwrap_or(family.shell),
    }
}

/// What the catalog knows about one model, before it becomes a wire `Model`.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// The model id.
    pub id: String,
    /// The picker name.
    pub display_name: String,
    /// One line about it.
    pub description: String,
    /// The provider serving it.
    pub provider: String,
    /// Context window in tokens.
    pub context_window: Option<u64>,
    /// Default effort; `None` = the configured `reasoning_effort`.
    pub default_reasoning_effort: Option<ReasoningEffort>,
    /// Accepted efforts (empty: not known).
    pub reasoning_efforts: Vec<ReasoningEffort>,
    /// Whether it takes images.
    pub image_input: bool,
}

const WINDOW_272K: u64 = 272_000;

/// One built-in entry.
struct Builtin {
    id: &'static str,
    description: &'static str,
    window: u64,
    efforts: &'static [ReasoningEffort],
}

/// The built-in catalog, newest first. Every entry defaults to `medium` effort and takes images.
fn builtins() -> [Builtin; 10] {
    use ReasoningEffort::{High, Low, Medium, Minimal, None, Xhigh};
    const CODEX: &[ReasoningEffort] = &[Low, Medium, High];
    const CODEX_MAX: &[ReasoningEffort] = &[Low, Medium, High, Xhigh];
    const MINI: &[ReasoningEffort] = &[Medium, High];
    [
        Builtin {
            id: "gpt-5.2-codex",
            description: "The newest codex-optimized model for agentic coding.",
            window: WINDOW_272K,
            efforts: CODEX_MAX,
        },
        Builtin {
            id: "gpt-5.2",
            description: "Frontier model for knowledge, reasoning and coding.",
            window: WINDOW_272K,
            efforts: &[None, Low, Medium, High, Xhigh],
        },
        Builtin {
            id: "gpt-5.1-codex-max",
            description: "Codex-optimized model for long, deep coding tasks.",
            window: WINDOW_272K,
            efforts: CODEX_MAX,
        },
        Builtin {
            id: "gpt-5.1-codex",
            description: "Codex-optimized GPT-5.1.",
            window: WINDOW_272K,
            efforts: CODEX,
        },
        Builtin {
            id: "gpt-5.1-codex-mini",
            description: "Smaller, faster, cheaper codex-optimized GPT-5.1.",
            window: WINDOW_272K,
            efforts: MINI,
        },
        Builtin {
            id: "gpt-5.1",
            description: "General model with strong reasoning.",
            window: WINDOW_272K,
            efforts: &[None, Low, Medium, High],
        },
        Builtin {
            id: "gpt-5-codex",
            description: "GPT-5 optimized for agentic coding.",
            window: WINDOW_272K,
            efforts: CODEX,
        },
        Builtin {
            id: "gpt-5-codex-mini",
            description: "Smaller, cheaper gpt-5-codex.",
            window: WINDOW_272K,
            efforts: MINI,
        },
        Builtin {
            id: "gpt-5",
            description: "General model with broad knowledge and strong reasoning.",
            window: WINDOW_272K,
            efforts: &[Minimal, Low, Medium, High],
        },
        Builtin {
            id: "codex-mini-latest",
            description: "Fast reasoning model tuned for the Codex CLI.",
            window: 200_000,
            efforts: CODEX,
        },
    ]
}

/// The id of the provider the built-in entries belong to.
const BUILTIN_PROVIDER: &str = super::OPENAI_PROVIDER_ID;

/// The built-in entries.
pub fn builtin_entries() -> Vec<CatalogEntry> {
    builtins()
        .into_iter()
        .map(|b| CatalogEntry {
            id: b.id.to_string(),
            display_name: b.id.to_string(),
            description: b.description.to_string(),
            provider: BUILTIN_PROVIDER.to_string(),
            context_window: Some(b.window),
            default_reasoning_effort: Some(ReasoningEffort::Medium),
            reasoning_efforts: b.efforts.to_vec(),
            image_input: true,
        })
        .collect()
}

/// A model known by id only (from a table or a provider's list).
fn bare_entry(id: &str, provider: &str) -> CatalogEntry {
    CatalogEntry {
        id: id.to_string(),
        display_name: id.to_string(),
        description: String::new(),
        provider: provider.to_string(),
        context_window: None,
        default_reasoning_effort: None,
        reasoning_efforts: Vec::new(),
        image_input: false,
    }
}

/// Sets the fields a `[models.<id>]` table names.
fn apply_table(entry: &mut CatalogEntry, table: &ModelConfig) {
    if let Some(name) = &table.display_name {
        entry.display_name.clone_from(name);
    }
    if let Some(description) = &table.description {
        entry.description.clone_from(description);
    }
    if let Some(window) = table.context_window {
        entry.context_window = Some(window);
    }
    if let Some(efforts) = &table.reasoning_efforts {
        entry.reasoning_efforts.clone_from(efforts);
    }
    if let Some(effort) = table.default_reasoning_effort {
        entry.default_reasoning_effort = Some(effort);
    }
    if let Some(modalities) = &table.input_modalities {
        entry.image_input = modalities.contains(&Modality::Image);
    }
}

/// Merges the three sources, later ones overriding: the built-in entries, `config.models`,
/// then `listed` (provider id, the model ids it listed). Order: built-in first, then new ids
/// in the order their source gave them.
pub fn merge(config: &Config, listed: &[(String, Vec<String>)]) -> Vec<CatalogEntry> {
    let mut entries = builtin_entries();
    let index_of = |entries: &[CatalogEntry], id: &str| entries.iter().position(|e| e.id == id);
    for (id, table) in &config.models {
        let at = match index_of(&entries, id) {
            Some(at) => at,
            None => {
                entries.push(bare_entry(id, &config.model_provider));
                entries.len() - 1
            }
        };
        apply_table(&mut entries[at], table);
    }
    for (provider, ids) in listed {
        for id in ids {
            match index_of(&entries, id) {
                Some(at) => entries[at].provider.clone_from(provider),
                None => entries.push(bare_entry(id, provider)),
            }
        }
    }
    entries
}

/// The wire view of an entry.
pub fn to_wire(entry: CatalogEntry, config: &Config) -> Model {
    let mut input_modalities = vec![InputModality::Text];
    if entry.image_input {
        input_modalities.push(InputModality::Image);
    }
    Model {
        is_default: entry.id == config.model,
        id: entry.id,
        display_name: entry.display_name,
        description: entry.description,
        provider: entry.provider,
        context_window: entry.context_window,
        default_reasoning_effort: entry
            .default_reasoning_effort
            .unwrap_or(config.reasoning_effort),
        reasoning_efforts: entry.reasoning_efforts,
        input_modalities,
    }
}

/// The context window of `model` in tokens, as `model/list` reports it: its `[models.<id>]`
/// table's `context_window`, else the built-in entry of that exact id. `None` (a model known
/// from neither) means no auto-compaction unless `model_auto_compact_token_limit` is set.
pub fn context_window(tables: &BTreeMap<String, ModelConfig>, model: &str) -> Option<u64> {
    tables
        .get(model)
        .and_then(|table| table.context_window)
        .or_else(|| {
            builtins()
                .into_iter()
                .find(|builtin| builtin.id == model)
                .map(|builtin| builtin.window)
        })
}

/// The catalog service: the merge above plus the providers' lists, fetched once per process.
pub struct ModelCatalog {
    remote: RemoteModels,
}

/// Why a per-turn model cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model `{model}` is not offered by provider `{provider}` (its list from {list_source} has: \
     {known}); pick one from model/list"
)]
pub struct UnknownModel {
    /// The model asked for.
    pub model: String,
    /// The provider.
    pub provider: String,
    /// Where the list comes from.
    pub list_source: String,
    /// The ids it has, comma-separated.
    pub known: String,
}

impl ModelCatalog {
    /// A catalog whose provider lists are fetched with `http`.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            remote: RemoteModels::new(http),
        }
    }

    /// Every model, for `model/list`; never fails (a provider list that cannot be had is left
    /// out and logged).
    pub async fn list(&self, config: &Config) -> Vec<Model> {
        let listed = self.remote.all(config).await;
        merge(config, &listed)
            .into_iter()
            .map(|entry| to_wire(entry, config))
            .collect()
    }

    /// Checks a model asked for at `provider`: fine when the provider has no list (or it could
    /// not be had), when the list has it, or when a `[models.<id>]` table names it.
    pub async fn check(
        &self,
        config: &Config,
        provider: &Provider,
        model: &str,
    ) -> Result<(), UnknownModel> {
        let Some(ids) = self.remote.models(config, provider).await else {
            return Ok(());
        };
        if ids.iter().any(|id| id == model) || config.models.contains_key(model) {
            return Ok(());
        }
        Err(UnknownModel {
            model: model.to_string(),
            provider: provider.id.clone(),
            list_source: format!("GET {}", models_url(provider)),
            known: ids.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testkit::config;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_codex_families_get_the_freeform_patch_and_shell_command() {
        let none = BTreeMap::new();
        let cases = [
            ("gpt-5-codex", ToolShapes::CODEX),
            ("gpt-5-codex-mini", ToolShapes::CODEX),
            ("gpt-5.1-codex-max", ToolShapes::CODEX),
            ("gpt-5.2-codex", ToolShapes::CODEX),
            ("codex-mini-latest", ToolShapes::CODEX),
            ("gpt-5.1", ToolShapes::CODEX),
            ("gpt-5.2", ToolShapes::CODEX),
            ("gpt-5.2-2025-12-11", ToolShapes::CODEX),
            ("gpt-5", ToolShapes::FUNCTIONS),
            ("gpt-5-mini", ToolShapes::FUNCTIONS),
            ("gpt-5.10", ToolShapes::FUNCTIONS),
            ("llama3", ToolShapes::FUNCTIONS),
        ];
        for (model, expected) in cases {
            assert_eq!(
                tool_shapes(&none, model, WireApi::Responses),
                expected,
                "{model}"
            );
            assert_eq!(
                tool_shapes(&none, model, WireApi::Chat),
                ToolShapes::FUNCTIONS,
                "{model} over chat"
            );
        }
    }

    #[test]
    fn tables_override_the_family_shapes_one_by_one() {
        let models = BTreeMap::from([
            (
                "gpt-5-codex".to_string(),
                ModelConfig {
                    shell_tool: Some(ShellTool::Shell),
                    ..ModelConfig::default()
                },
            ),
            (
                "mine".to_string(),
                ModelConfig {
                    apply_patch_tool: Some(ApplyPatchTool::Custom),
                    ..ModelConfig::default()
                },
            ),
            ("plain".to_string(), ModelConfig::default()),
        ]);
        assert_eq!(
            tool_shapes(&models, "gpt-5-codex", WireApi::Responses),
            ToolShapes {
                apply_patch: ApplyPatchTool::Custom,
                shell: ShellTool::Shell
            }
        );
        assert_eq!(
            tool_shapes(&models, "mine", WireApi::Responses),
            ToolShapes {
                apply_patch: ApplyPatchTool::Custom,
                shell: ShellTool::Shell
            }
        );
        assert_eq!(
            tool_shapes(&models, "plain", WireApi::Responses),
            ToolShapes::FUNCTIONS
        );
        assert_eq!(
            tool_shapes(&models, "mine", WireApi::Chat),
            ToolShapes::FUNCTIONS
        );
    }

    #[test]
    fn the_context_window_is_what_model_list_reports_tables_first() {
        let mut cfg = config();
        for (id, window) in [("gpt-5-codex", 100_000), ("llama3", 8192)] {
            cfg.models.insert(
                id.into(),
                ModelConfig {
                    context_window: Some(window),
                    ..ModelConfig::default()
                },
            );
        }
        cfg.models
            .insert("house-model".into(), ModelConfig::default());
        let merged = merge(&cfg, &[]);
        for entry in &merged {
            assert_eq!(
                context_window(&cfg.models, &entry.id),
                entry.context_window,
                "{}",
                entry.id
            );
        }
        let window = |id: &str| context_window(&cfg.models, id);
        assert_eq!(
            [window("gpt-5-codex"), window("llama3"), window("gpt-5")],
            [Some(100_000), Some(8192), Some(272_000)]
        );
        assert_eq!(window("codex-mini-latest"), Some(200_000));
        // Neither a table's window nor a built-in entry: unknown, no auto-compaction.
        assert_eq!([window("house-model"), window("gpt-4o")], [None, None]);
    }

    #[test]
    fn merge_lets_tables_then_provider_lists_override_the_builtins() {
        let mut cfg = config();
        cfg.models.insert(
            "gpt-5".into(),
            ModelConfig {
                context_window: Some(1000),
                display_name: Some("GPT-5 (small)".into()),
                ..ModelConfig::default()
            },
        );
        cfg.models.insert(
            "house-model".into(),
            ModelConfig {
                reasoning_efforts: Some(vec![ReasoningEffort::Low]),
                input_modalities: Some(vec![Modality::Text, Modality::Image]),
                ..ModelConfig::default()
            },
        );
        let listed = vec![(
            "local".to_string(),
            vec!["house-model".to_string(), "llama3".to_string()],
        )];
        let merged = merge(&cfg, &listed);
        let gpt5 = merged.iter().find(|e| e.id == "gpt-5").cloned();
        assert_eq!(
            gpt5.map(|e| (e.display_name, e.context_window, e.provider)),
            Some(("GPT-5 (small)".into(), Some(1000), "openai".into()))
        );
        let tail: Vec<CatalogEntry> = merged[merged.len() - 2..].to_vec();
        assert_eq!(
            tail,
            vec![
                CatalogEntry {
                    reasoning_efforts: vec![ReasoningEffort::Low],
                    image_input: true,
                    ..bare_entry("house-model", "local")
                },
                bare_entry("llama3", "local"),
            ]
        );
        let wire = to_wire(merged[merged.len() - 1].clone(), &cfg);
        assert_eq!(wire.default_reasoning_effort, ReasoningEffort::Medium);
        assert_eq!(wire.input_modalities, vec![InputModality::Text]);
        assert!(!wire.is_default);
        let default = merged.iter().find(|e| e.id == "gpt-5-codex").cloned();
        assert!(default.is_some_and(|e| to_wire(e, &cfg).is_default));
    }
}
