//! `auth/*` methods and the notifications the auth domain sends.

use std::sync::Arc;

use agent_server_schema::auth::{
    AuthStatus, AuthStatusParams, CancelLoginParams, CancelLoginResult, CancelLoginStatus,
    LoginApiKeyParams, LoginChatGptCompleteNotification, LoginChatGptParams, RateLimitsParams,
    RateLimitsResult,
};
use agent_server_schema::lifecycle::EmptyResult;
use agent_server_schema::methods::{
    AuthStatusChanged, AuthStatusRequest, CancelLogin, LoginApiKey, LoginChatGpt,
    LoginChatGptComplete, Logout, RateLimitsRequest,
};
use tokio::sync::mpsc;

use super::App;
use crate::auth::{AuthError, AuthObserver};
use crate::rpc::{MethodTable, Peer, RpcError};
use crate::secret::Secret;

impl From<AuthError> for RpcError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidApiKey => {
                RpcError::invalid_params("apiKey", "a non-empty API key", err.to_string())
            }
            other => RpcError::new(other.error_kind(), other.to_string()),
        }
    }
}

/// Registers the auth methods.
pub fn register(table: &mut MethodTable<App>) {
    table.add::<AuthStatusRequest, _, _>(|app: Arc<App>, params: AuthStatusParams, _| async move {
        Ok(app
            .auth
            .status(params.include_token, params.refresh_token)
            .await?)
    });
    table.add::<LoginApiKey, _, _>(|app: Arc<App>, params: LoginApiKeyParams, _| async move {
        app.auth.login_api_key(Secret::new(params.api_key)).await?;
        Ok(EmptyResult {})
    });
    table.add::<LoginChatGpt, _, _>(|app: Arc<App>, params: LoginChatGptParams, _| async move {
        Ok(app.auth.start_login(params.flow).await?.into())
    });
    table.add::<CancelLogin, _, _>(|app: Arc<App>, params: CancelLoginParams, _| async move {
        let status = if app.auth.cancel_login(&params.login_id).await {
            CancelLoginStatus::Cancelled
        } else {
            CancelLoginStatus::NotFound
        };
        Ok(CancelLoginResult { status })
    });
    table.add::<RateLimitsRequest, _, _>(|app: Arc<App>, params: RateLimitsParams, _| async move {
        let tracker = app.sessions.rate_limits();
        let (limits, error) =
            crate::model::rate_limits::current(tracker, &app.usage, params.refresh).await;
        Ok(RateLimitsResult::new(limits, error))
    });
    table.add::<Logout, _, _>(|app: Arc<App>, _params, _| async move {
        app.auth.logout().await?;
        Ok(EmptyResult {})
    });
}

enum Notice {
    Status(AuthStatus),
    Login(LoginChatGptCompleteNotification),
}

/// Sends the auth domain's notifications in the order they happen (one queue, one task).
pub struct PeerAuthObserver {
    tx: mpsc::UnboundedSender<Notice>,
}

impl PeerAuthObserver {
    /// Starts the forwarding task.
    pub fn spawn(peer: Arc<Peer>) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Notice>();
        tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                match notice {
                    Notice::Status(status) => peer.notify::<AuthStatusChanged>(&status).await,
                    Notice::Login(done) => peer.notify::<LoginChatGptComplete>(&done).await,
                };
            }
        });
        Arc::new(Self { tx })
    }
}

impl AuthObserver for PeerAuthObserver {
    fn status_changed(&self, mut status: AuthStatus) {
        status.auth_token = None;
        let _ = self.tx.send(Notice::Status(status));
    }

    fn login_completed(&self, login_id: &str, success: bool, error: Option<String>) {
        let _ = self
            .tx
            .send(Notice::Login(LoginChatGptCompleteNotification {
                login_id: login_id.to_string(),
                success,
                error,
            }));
    }
}
