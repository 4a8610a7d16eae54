//! What the model is told besides the conversation: project instructions (`AGENTS.md`), the
//! environment it works in, and the summary that replaces a compacted history.

pub mod agents_md;
pub mod compaction;
pub mod environment;

use std::path::PathBuf;

use crate::model::ResponseItem;

use agents_md::DocSettings;
use environment::Environment;

/// What the model has been told about its context so far in one session; stored with the
/// session, so a resumed one does not tell the model again.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct ContextState {
    /// The cwd the project docs were last read for.
    docs_for: Option<PathBuf>,
    /// The instructions message as last sent, if there was one.
    instructions: Option<ResponseItem>,
    /// The environment as last sent.
    environment: Option<Environment>,
    /// The environment message as last sent.
    environment_message: Option<ResponseItem>,
    /// The files the instructions came from (absolute paths).
    sources: Vec<String>,
}

impl ContextState {
    /// The messages to add to the conversation before a turn's input: the instructions at the
    /// first turn (and after a cwd change, when they differ), the environment whenever it
    /// differs from what the model was last told.
    pub(crate) async fn before_turn(
        &mut self,
        settings: &DocSettings,
        env: Environment,
        shell: &str,
    ) -> Vec<ResponseItem> {
        let mut messages = Vec::new();
        if self.docs_for.as_ref() != Some(&env.cwd) {
            let docs = {
                let settings = settings.clone();
                let cwd = env.cwd.clone();
                // Reading files blocks; a slow disk must not stall the runtime's threads.
                tokio::task::spawn_blocking(move || agents_md::discover(&settings, &cwd))
                    .await
                    .unwrap_or_else(|err| {
                        tracing::error!(%err, "reading project instructions failed; going on without them");
                        agents_md::ProjectDocs::default()
                    })
            };
            self.docs_for = Some(env.cwd.clone());
            self.sources = docs
                .sources
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let message = docs
                .message_text(&env.cwd)
                .map(|text| compaction::user_text_message(&text));
            if message.is_some() && message != self.instructions {
                messages.extend(message.clone());
            }
            // A cwd without docs sends nothing now (the model keeps what it was told), but a
            // later compacted history carries only the docs of the cwd it is in.
            self.instructions = message;
        }
        if self.environment.as_ref() != Some(&env) {
            let message = compaction::user_text_message(&env.message_text(shell));
            messages.push(message.clone());
            self.environment = Some(env);
            self.environment_message = Some(message);
        }
        messages
    }

    /// The instructions and environment messages as they stand: the start of a compacted history.
    pub(crate) fn initial_context(&self) -> Vec<ResponseItem> {
        self.instructions
            .iter()
            .chain(self.environment_message.iter())
            .cloned()
            .collect()
    }

    /// The instruction files in use, as absolute paths.
    pub(crate) fn sources(&self) -> &[String] {
        &self.sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_server_schema::session::{ApprovalPolicy, SandboxMode};
    use pretty_assertions::assert_eq;

    fn env(cwd: &std::path::Path, sandbox: SandboxMode) -> Environment {
        Environment {
            cwd: cwd.to_path_buf(),
            approval_policy: ApprovalPolicy::Never,
            sandbox,
        }
    }

    #[tokio::test]
    async fn instructions_go_once_and_the_environment_again_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (home, a, b) = (
            dir.path().join("h"),
            dir.path().join("a"),
            dir.path().join("b"),
        );
        for d in [&home, &a, &b] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(a.join("AGENTS.md"), "rules of a").unwrap();
        let settings = DocSettings {
            home,
            max_bytes: 100,
            fallback_filenames: Vec::new(),
        };
        let mut state = ContextState::default();
        let first = state
            .before_turn(&settings, env(&a, SandboxMode::ReadOnly), "bash")
            .await;
        let expected_first = vec![
            compaction::user_text_message(&format!(
                "# AGENTS.md instructions for {}\n\n<INSTRUCTIONS>\nrules of a\n</INSTRUCTIONS>",
                a.display()
            )),
            compaction::user_text_message(&env(&a, SandboxMode::ReadOnly).message_text("bash")),
        ];
        assert_eq!(first, expected_first);
        assert_eq!(state.sources(), [a.join("AGENTS.md").display().to_string()]);
        assert_eq!(state.initial_context(), expected_first);
        let same = state
            .before_turn(&settings, env(&a, SandboxMode::ReadOnly), "bash")
            .await;
        assert_eq!(same, Vec::<ResponseItem>::new());
        let sandbox = state
            .before_turn(&settings, env(&a, SandboxMode::DangerFullAccess), "bash")
            .await;
        assert_eq!(
            sandbox,
            vec![compaction::user_text_message(
                &env(&a, SandboxMode::DangerFullAccess).message_text("bash")
            )]
        );
        // A cwd without docs: only the environment is sent.
        let moved = state
            .before_turn(&settings, env(&b, SandboxMode::DangerFullAccess), "bash")
            .await;
        let b_env = compaction::user_text_message(
            &env(&b, SandboxMode::DangerFullAccess).message_text("bash"),
        );
        assert_eq!(moved, vec![b_env.clone()]);
        assert_eq!(state.sources(), Vec::<String>::new());
        assert_eq!(state.initial_context(), vec![b_env]);
    }
}
