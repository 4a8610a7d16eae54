//! `update_plan`: the model's step list, passed on to the client as a `planUpdated` event.

use agent_server_schema::session::{Event, PlanStep, PlanStepStatus};
use serde::Deserialize;

use super::{ToolHost, ToolOutcome};

/// Arguments of `update_plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdatePlanArgs {
    #[serde(default)]
    explanation: Option<String>,
    plan: Vec<StepArgs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepArgs {
    step: String,
    status: StepStatus,
}

/// The model writes `in_progress`; the wire says `inProgress`. Both are accepted.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StepStatus {
    Pending,
    #[serde(alias = "inProgress")]
    InProgress,
    Completed,
}

/// What the model must send, for error messages.
pub(crate) const EXPECTED: &str = r#"{"explanation"?: string, "plan": [{"step": string, "status": "pending"|"in_progress"|"completed"}]}"#;

fn steps(plan: Vec<StepArgs>) -> Vec<PlanStep> {
    plan.into_iter()
        .map(|s| PlanStep {
            step: s.step,
            status: match s.status {
                StepStatus::Pending => PlanStepStatus::Pending,
                StepStatus::InProgress => PlanStepStatus::InProgress,
                StepStatus::Completed => PlanStepStatus::Completed,
            },
        })
        .collect()
}

/// The plan an `update_plan` call with these arguments set, when they are valid (a call with
/// invalid arguments set none).
pub(crate) fn plan_of(arguments: &str) -> Option<Vec<PlanStep>> {
    serde_json::from_str::<UpdatePlanArgs>(arguments)
        .ok()
        .map(|args| steps(args.plan))
}

/// Emits the plan.
pub(crate) fn update_plan(args: UpdatePlanArgs, host: &dyn ToolHost) -> ToolOutcome {
    let plan = steps(args.plan);
    host.emit(Event::PlanUpdated {
        explanation: args.explanation.filter(|e| !e.trim().is_empty()),
        plan,
    });
    ToolOutcome {
        output: "Plan updated".to_owned(),
        success: true,
        abort_turn: false,
    }
}
