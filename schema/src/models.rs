//! The model catalog: `model/list`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::session::ReasoningEffort;

/// A kind of input a model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum InputModality {
    /// Text.
    Text,
    /// Images (`image` and `localImage` input items).
    Image,
}

/// One model a client may pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// The model id to pass as `model` (e.g. `gpt-5-codex`).
    pub id: String,
    /// The name a model picker shows.
    pub display_name: String,
    /// One line about the model (empty when nothing is known).
    pub description: String,
    /// The id of the provider that serves it.
    pub provider: String,
    /// The context window in tokens, when known.
    pub context_window: Option<u64>,
    /// The effort used when none is chosen.
    pub default_reasoning_effort: ReasoningEffort,
    /// The efforts the model accepts (empty when not known).
    pub reasoning_efforts: Vec<ReasoningEffort>,
    /// `["text","image"]` or `["text"]`.
    pub input_modalities: Vec<InputModality>,
    /// Whether it is the configured default model.
    pub is_default: bool,
}

/// Result of `model/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListModelsResult {
    /// The built-in catalog, then `[models.<id>]` tables, then what providers list.
    pub models: Vec<Model>,
}
