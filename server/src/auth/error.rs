//! Errors of the auth domain and the `data.kind` each one is reported with.

use std::io;
use std::path::PathBuf;

use agent_server_schema::rpc::ErrorKind;

/// Why an auth request failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The API key given to log in is empty or blank.
    #[error("the API key is empty: pass a non-empty OpenAI API key (sk-…)")]
    InvalidApiKey,
    /// The stored ChatGPT login can no longer be refreshed; the user has to log in again.
    #[error("{0}")]
    LoginRequired(String),
    /// The login callback server could not bind any of the ports it may use.
    #[error("{}", port_in_use_message(.ports))]
    LoginPortInUse {
        /// The ports tried, in order.
        ports: Vec<u16>,
    },
    /// The login callback server could not be started for a reason other than a busy port.
    #[error(
        "could not start the login callback server on 127.0.0.1: {0}: check the local network setup"
    )]
    LoginServer(#[source] io::Error),
    /// Reading or writing a file of the home failed.
    #[error("could not {action} {}: {source}: check the permissions of the home directory", path.display())]
    Storage {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn port_in_use_message(ports: &[u16]) -> String {
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" and ");
    let subject = if ports.len() == 1 { "port" } else { "ports" };
    format!(
        "the login callback {subject} {list} on 127.0.0.1 {} in use (another login may be running): finish or cancel that login, or set login_callback_port or AGENT_SERVER_LOGIN_PORT to a free port (0 picks any)",
        if ports.len() == 1 { "is" } else { "are" }
    )
}

impl AuthError {
    /// The contract's `data.kind` (and with it the JSON-RPC code) for this error: the one
    /// mapping, exhaustive, so a new variant has to choose its kind here.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            AuthError::InvalidApiKey => ErrorKind::InvalidParams,
            AuthError::LoginRequired(_) => ErrorKind::LoginRequired,
            AuthError::LoginPortInUse { .. } => ErrorKind::LoginPortInUse,
            AuthError::LoginServer(_) | AuthError::Storage { .. } => ErrorKind::Internal,
        }
    }

    /// A storage error.
    pub(crate) fn storage(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        AuthError::Storage {
            action,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn kinds_and_messages() {
        let one = AuthError::LoginPortInUse { ports: vec![4000] };
        let two = AuthError::LoginPortInUse {
            ports: vec![1455, 1457],
        };
        assert_eq!(
            (one.error_kind(), one.to_string()),
            (ErrorKind::LoginPortInUse, "the login callback port 4000 on 127.0.0.1 is in use (another login may be running): finish or cancel that login, or set login_callback_port or AGENT_SERVER_LOGIN_PORT to a free port (0 picks any)".to_owned())
        );
        assert_eq!(
            two.to_string(),
            "the login callback ports 1455 and 1457 on 127.0.0.1 are in use (another login may be running): finish or cancel that login, or set login_callback_port or AGENT_SERVER_LOGIN_PORT to a free port (0 picks any)"
        );
        assert_eq!(
            AuthError::InvalidApiKey.error_kind(),
            ErrorKind::InvalidParams
        );
        assert_eq!(
            AuthError::LoginRequired("x".into()).error_kind(),
            ErrorKind::LoginRequired
        );
        assert_eq!(
            AuthError::storage("write", "/h/auth.json", io::Error::other("disk full")).to_string(),
            "could not write /h/auth.json: disk full: check the permissions of the home directory"
        );
    }
}
