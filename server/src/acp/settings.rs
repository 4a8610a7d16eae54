//! ACP session modes (the approval presets) and config options (model, reasoning effort).

use agent_client_protocol::v1::schema::{
    SessionConfigOption, SessionConfigOptionCategory, SessionConfigSelectOption, SessionMode,
    SessionModeState,
};
use agent_server_schema::session::{ApprovalPolicy, ReasoningEffort, SandboxMode};

/// The approval presets a client switches between with `session/set_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Ask before anything that is not known read-only; the sandbox allows no writes.
    ReadOnly,
    /// Run sandboxed, writes inside the workspace; ask to leave the sandbox when a command fails.
    Auto,
    /// Never ask; no sandbox.
    FullAccess,
}

impl Mode {
    pub(crate) const ALL: [Mode; 3] = [Mode::ReadOnly, Mode::Auto, Mode::FullAccess];

    pub(crate) fn id(self) -> &'static str {
        match self {
            Mode::ReadOnly => "read-only",
            Mode::Auto => "auto",
            Mode::FullAccess => "full-access",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::ReadOnly => "Read Only",
            Mode::Auto => "Auto",
            Mode::FullAccess => "Full Access",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Mode::ReadOnly => {
                "Reads files and runs known read-only commands; asks before anything else, and nothing may write"
            }
            Mode::Auto => {
                "Edits files and runs commands in the workspace, sandboxed; asks before leaving the sandbox"
            }
            Mode::FullAccess => {
                "Edits files and runs commands anywhere, without a sandbox and without asking"
            }
        }
    }

    /// The mode with this id.
    pub(crate) fn from_id(id: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.id() == id)
    }

    /// The approval policy and sandbox the mode stands for.
    pub(crate) fn policy(self) -> (ApprovalPolicy, SandboxMode) {
        match self {
            Mode::ReadOnly => (ApprovalPolicy::Untrusted, SandboxMode::ReadOnly),
            Mode::Auto => (ApprovalPolicy::OnFailure, SandboxMode::WorkspaceWrite),
            Mode::FullAccess => (ApprovalPolicy::Never, SandboxMode::DangerFullAccess),
        }
    }

    /// The preset a configured policy and sandbox match, else `auto`, the ACP default.
    pub(crate) fn from_policy(policy: ApprovalPolicy, sandbox: SandboxMode) -> Mode {
        Mode::ALL
            .into_iter()
            .find(|m| m.policy() == (policy, sandbox))
            .unwrap_or(Mode::Auto)
    }

    /// The `modes` of a session result.
    pub(crate) fn state(self) -> SessionModeState {
        SessionModeState::new(
            self.id(),
            Mode::ALL
                .into_iter()
                .map(|m| SessionMode::new(m.id(), m.name()).description(m.description()))
                .collect(),
        )
    }
}

/// Config option ids.
pub(crate) const MODEL: &str = "model";
pub(crate) const REASONING_EFFORT: &str = "reasoning_effort";

/// A model a session may switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelChoice {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// Its efforts, when the catalog names them.
    pub(crate) efforts: Vec<ReasoningEffort>,
    /// Its context window, when known.
    pub(crate) context_window: Option<u64>,
}

/// What a client may choose: the models of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choices {
    pub(crate) models: Vec<ModelChoice>,
}

impl Choices {
    /// The efforts `model` takes: its catalog list, else every effort.
    pub(crate) fn efforts(&self, model: &str) -> Vec<ReasoningEffort> {
        self.models
            .iter()
            .find(|m| m.id == model)
            .map(|m| m.efforts.clone())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| ALL_EFFORTS.to_vec())
    }

    /// The context window of `model`, when the catalog knows it.
    pub(crate) fn context_window(&self, model: &str) -> Option<u64> {
        self.models
            .iter()
            .find(|m| m.id == model)
            .and_then(|m| m.context_window)
    }
}

/// The settings an ACP session applies to its next prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    pub(crate) model: String,
    pub(crate) effort: ReasoningEffort,
}

pub(crate) fn effort_id(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::None => "none",
        ReasoningEffort::Minimal => "minimal",
        ReasoningEffort::Low => "low",
        ReasoningEffort::Medium => "medium",
        ReasoningEffort::High => "high",
        ReasoningEffort::Xhigh => "xhigh",
    }
}

/// Every effort the wire knows, in rising order.
pub(crate) const ALL_EFFORTS: [ReasoningEffort; 6] = [
    ReasoningEffort::None,
    ReasoningEffort::Minimal,
    ReasoningEffort::Low,
    ReasoningEffort::Medium,
    ReasoningEffort::High,
    ReasoningEffort::Xhigh,
];

pub(crate) fn effort_from_id(id: &str) -> Option<ReasoningEffort> {
    ALL_EFFORTS.into_iter().find(|e| effort_id(*e) == id)
}

fn effort_name(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::None => "None",
        ReasoningEffort::Minimal => "Minimal",
        ReasoningEffort::Low => "Low",
        ReasoningEffort::Medium => "Medium",
        ReasoningEffort::High => "High",
        ReasoningEffort::Xhigh => "Extra high",
    }
}

impl Settings {
    /// The full list of config options with their current values.
    pub(crate) fn options(&self, choices: &Choices) -> Vec<SessionConfigOption> {
        let mut models: Vec<SessionConfigSelectOption> = choices
            .models
            .iter()
            .map(|m| {
                SessionConfigSelectOption::new(m.id.clone(), m.name.clone())
                    .description(m.description.clone())
            })
            .collect();
        if !choices.models.iter().any(|m| m.id == self.model) {
            models.insert(
                0,
                SessionConfigSelectOption::new(self.model.clone(), self.model.clone()),
            );
        }
        let mut efforts = choices.efforts(&self.model);
        if !efforts.contains(&self.effort) {
            efforts.push(self.effort);
        }
        vec![
            SessionConfigOption::select(MODEL, "Model", self.model.clone(), models)
                .category(SessionConfigOptionCategory::Model)
                .description("The model that answers the next prompts".to_string()),
            SessionConfigOption::select(
                REASONING_EFFORT,
                "Reasoning effort",
                effort_id(self.effort),
                efforts
                    .into_iter()
                    .map(|e| SessionConfigSelectOption::new(effort_id(e), effort_name(e)))
                    .collect::<Vec<_>>(),
            )
            .category(SessionConfigOptionCategory::ThoughtLevel)
            .description("How hard the model thinks before it answers".to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn modes_are_the_approval_presets() {
        assert_eq!(
            Mode::from_policy(ApprovalPolicy::Untrusted, SandboxMode::ReadOnly),
            Mode::ReadOnly
        );
        assert_eq!(
            Mode::from_policy(ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite),
            Mode::Auto
        );
        assert_eq!(Mode::from_id("full-access"), Some(Mode::FullAccess));
        assert_eq!(Mode::from_id("yolo"), None);
        let state = serde_json::to_value(Mode::Auto.state()).unwrap();
        assert_eq!(state["currentModeId"], json!("auto"));
        assert_eq!(
            state["availableModes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].clone())
                .collect::<Vec<_>>(),
            vec![json!("read-only"), json!("auto"), json!("full-access")]
        );
    }

    #[test]
    fn options_list_both_selects_with_their_values() {
        let settings = Settings {
            mode: Mode::Auto,
            model: "gpt-5".into(),
            effort: ReasoningEffort::High,
        };
        let choices = Choices {
            models: vec![
                ModelChoice {
                    id: "gpt-5-codex".into(),
                    name: "GPT-5 Codex".into(),
                    description: None,
                    efforts: vec![ReasoningEffort::Low],
                    context_window: None,
                },
                ModelChoice {
                    id: "gpt-5".into(),
                    name: "GPT-5".into(),
                    description: None,
                    efforts: vec![ReasoningEffort::Low, ReasoningEffort::Medium],
                    context_window: Some(400_000),
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(settings.options(&choices)).unwrap(),
            json!([
                {"id":"model","name":"Model","description":"The model that answers the next prompts",
                 "category":"model","type":"select","currentValue":"gpt-5",
                 "options":[{"value":"gpt-5-codex","name":"GPT-5 Codex"},{"value":"gpt-5","name":"GPT-5"}]},
                {"id":"reasoning_effort","name":"Reasoning effort",
                 "description":"How hard the model thinks before it answers",
                 "category":"thought_level","type":"select","currentValue":"high",
                 "options":[{"value":"low","name":"Low"},{"value":"medium","name":"Medium"},
                            {"value":"high","name":"High"}]}
            ])
        );
    }
}
