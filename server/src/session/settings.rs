//! What a session is set up with, and what one turn runs with: a turn keeps the snapshot it
//! was queued with; `session/submit` overrides become the session's settings for later turns.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_server_schema::session::{ApprovalPolicy, Event, ReasoningEffort, SandboxMode};
use tokio_util::sync::CancellationToken;

use super::context::agents_md::DocSettings;
use crate::config::{ModelConfig, WireApi};
use crate::model::ToolShapes;
use crate::model::catalog::tool_shapes;
use crate::tools::{SessionApprovals, ToolContext};

/// The settings of a session, in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// Where commands run and patches apply.
    pub cwd: PathBuf,
    /// The model of its turns.
    pub model: String,
    /// The model provider id.
    pub provider_id: String,
    /// When to ask before acting.
    pub approval_policy: ApprovalPolicy,
    /// What commands may touch.
    pub sandbox: SandboxMode,
    /// How hard the model thinks.
    pub reasoning_effort: ReasoningEffort,
    /// The full instructions sent with every model call (borrowed when they are the built-in
    /// ones, so idle sessions do not each hold a copy of them).
    pub instructions: std::borrow::Cow<'static, str>,
    /// Default timeout of a command.
    pub shell_timeout: Duration,
    /// Where project instructions come from and how much of them to read.
    pub doc_settings: DocSettings,
    /// The name of the user's login shell, for the environment message.
    pub shell_name: String,
    /// `[models.<id>]` tables, for the tool shapes of a turn's model.
    pub model_tables: Arc<BTreeMap<String, ModelConfig>>,
    /// The wire API of the provider (Chat Completions providers get function tools only).
    pub wire_api: WireApi,
    /// `model_auto_compact_token_limit` from config: compact past this many tokens.
    pub auto_compact_token_limit: Option<u64>,
}

/// The settings a `session/submit` may change, already checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnOverrides {
    /// `model`.
    pub model: Option<String>,
    /// `reasoningEffort`.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// `approvalPolicy`.
    pub approval_policy: Option<ApprovalPolicy>,
    /// `sandbox`.
    pub sandbox: Option<SandboxMode>,
    /// `cwd`, an existing directory.
    pub cwd: Option<PathBuf>,
}

impl TurnOverrides {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl SessionSettings {
    /// These settings with `overrides` applied.
    pub fn with(&self, overrides: TurnOverrides) -> Self {
        let mut next = self.clone();
        if let Some(model) = overrides.model {
            next.model = model;
        }
        if let Some(effort) = overrides.reasoning_effort {
            next.reasoning_effort = effort;
        }
        if let Some(policy) = overrides.approval_policy {
            next.approval_policy = policy;
        }
        if let Some(sandbox) = overrides.sandbox {
            next.sandbox = sandbox;
        }
        if let Some(cwd) = overrides.cwd {
            next.cwd = cwd;
        }
        next
    }

    /// The `turnStarted` event of a turn running with these settings.
    pub(crate) fn turn_started(&self) -> Event {
        Event::TurnStarted {
            model: self.model.clone(),
            reasoning_effort: self.reasoning_effort,
            approval_policy: self.approval_policy,
            sandbox: self.sandbox,
            cwd: self.cwd.display().to_string(),
        }
    }

    /// What the tools of one turn need to know.
    pub(crate) fn tool_context(
        &self,
        client_can_approve: bool,
        cancel: CancellationToken,
        approvals: Arc<SessionApprovals>,
    ) -> ToolContext {
        ToolContext {
            cwd: self.cwd.clone(),
            approval_policy: self.approval_policy,
            sandbox: self.sandbox,
            shell_timeout: self.shell_timeout,
            client_can_approve,
            cancel,
            approvals,
        }
    }

    /// The tool shapes `model` is offered at this session's provider.
    pub(crate) fn tool_shapes(&self, model: &str) -> ToolShapes {
        tool_shapes(&self.model_tables, model, self.wire_api)
    }

    /// The effort to send upstream; `none` sends no reasoning.
    pub(crate) fn effort_name(&self) -> &'static str {
        match self.reasoning_effort {
            ReasoningEffort::None => "none",
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
            ReasoningEffort::Xhigh => "xhigh",
        }
    }
}
