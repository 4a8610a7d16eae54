//! The one table of methods and notifications: wire name, params type, result type.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{
    AuthStatus, AuthStatusParams, CancelLoginParams, CancelLoginResult, LoginApiKeyParams,
    LoginChatGptCompleteNotification, LoginChatGptParams, LoginChatGptResult, RateLimitsParams,
    RateLimitsResult,
};
use crate::lifecycle::{EmptyParams, EmptyResult, InitializeParams, InitializeResult};
use crate::mcp::{McpListParams, McpListResult, McpServerStatusNotification};
use crate::models::ListModelsResult;
use crate::rpc::{CancelRequestParams, CancelledNotificationParams};
use crate::session::{
    CloseSessionParams, CompactParams, CompactResult, ForkSessionParams, InterruptParams,
    ListSessionsParams, ListSessionsResult, NewSessionParams, ReadSessionParams,
    RequestApprovalParams, RequestApprovalResult, ResumeSessionParams, Session,
    SessionEventNotification, SessionIdParams, SessionWithTurns, SetTitleParams, SteerParams,
    SteerResult, SubmitParams, SubmitResult,
};

/// A request: a wire name with its params and result types.
pub trait Method {
    /// The wire name, `resource/verb`.
    const NAME: &'static str;
    /// The params type.
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// The result type.
    type Result: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static;
}

/// A notification: a wire name with its params type.
pub trait Notification {
    /// The wire name.
    const NAME: &'static str;
    /// The params type.
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
}

/// Who sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server.
    ClientToServer,
    /// From the server to the client.
    ServerToClient,
}

macro_rules! requests {
    ($($(#[$doc:meta])* $ty:ident = $name:literal, $dir:ident, $params:ty => $result:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl Method for $ty {
                const NAME: &'static str = $name;
                type Params = $params;
                type Result = $result;
            }
        )*
        /// Every request: name, direction, and a visitor that registers its types.
        pub fn visit_requests(mut visit: impl FnMut(&'static str, Direction, &mut dyn FnMut(&mut schemars::SchemaGenerator) -> (schemars::Schema, schemars::Schema))) {
            $(
                visit($name, Direction::$dir, &mut |g| (g.subschema_for::<$params>(), g.subschema_for::<$result>()));
            )*
        }
        /// Every request: its name and who sends it.
        pub const REQUESTS: &[(&str, Direction)] = &[$(($name, Direction::$dir)),*];
    };
}

macro_rules! notifications {
    ($($(#[$doc:meta])* $ty:ident = $name:literal, $dir:ident, $params:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl Notification for $ty {
                const NAME: &'static str = $name;
                type Params = $params;
            }
        )*
        /// Every notification: name, direction, and a visitor that registers its params type.
        pub fn visit_notifications(mut visit: impl FnMut(&'static str, Direction, &mut dyn FnMut(&mut schemars::SchemaGenerator) -> schemars::Schema)) {
            $(
                visit($name, Direction::$dir, &mut |g| g.subschema_for::<$params>());
            )*
        }
    };
}

requests! {
    /// `initialize`: optional handshake; must be the first request when sent.
    Initialize = "initialize", ClientToServer, InitializeParams => InitializeResult;
    /// `shutdown`: interrupt running turns; replies `null`.
    Shutdown = "shutdown", ClientToServer, EmptyParams => ();
    /// `auth/status`: the current credentials.
    AuthStatusRequest = "auth/status", ClientToServer, AuthStatusParams => AuthStatus;
    /// `auth/loginApiKey`: store an API key in `auth.json`.
    LoginApiKey = "auth/loginApiKey", ClientToServer, LoginApiKeyParams => EmptyResult;
    /// `auth/loginChatGPT`: start a browser or device-code login; replies at once.
    LoginChatGpt = "auth/loginChatGPT", ClientToServer, LoginChatGptParams => LoginChatGptResult;
    /// `auth/cancelLogin`: cancel a pending ChatGPT login.
    CancelLogin = "auth/cancelLogin", ClientToServer, CancelLoginParams => CancelLoginResult;
    /// `auth/rateLimits`: the ChatGPT plan's usage limits (1.1).
    RateLimitsRequest = "auth/rateLimits", ClientToServer, RateLimitsParams => RateLimitsResult;
    /// `auth/logout`: delete `auth.json`.
    Logout = "auth/logout", ClientToServer, EmptyParams => EmptyResult;
    /// `session/new`: create a session.
    NewSession = "session/new", ClientToServer, NewSessionParams => Session;
    /// `session/submit`: queue a turn; replies at once.
    Submit = "session/submit", ClientToServer, SubmitParams => SubmitResult;
    /// `session/steer`: add input to the running turn without interrupting it.
    Steer = "session/steer", ClientToServer, SteerParams => SteerResult;
    /// `session/interrupt`: end the running turn (and queued ones without `turnId`).
    Interrupt = "session/interrupt", ClientToServer, InterruptParams => EmptyResult;
    /// `session/list`: the sessions loaded here, or with `stored` a page of the store.
    ListSessions = "session/list", ClientToServer, ListSessionsParams => ListSessionsResult;
    /// `session/close`: interrupt and unload a session (it stays stored).
    CloseSession = "session/close", ClientToServer, CloseSessionParams => EmptyResult;
    /// `session/read`: a stored (or loaded) session and its turns; loads nothing.
    ReadSession = "session/read", ClientToServer, ReadSessionParams => SessionWithTurns;
    /// `session/resume`: load a stored session into this process.
    ResumeSession = "session/resume", ClientToServer, ResumeSessionParams => SessionWithTurns;
    /// `session/fork`: a new stored session holding a copy of another's turns.
    ForkSession = "session/fork", ClientToServer, ForkSessionParams => SessionWithTurns;
    /// `session/archive`: hide a session from `session/list {stored}` (closing it here first).
    ArchiveSession = "session/archive", ClientToServer, SessionIdParams => EmptyResult;
    /// `session/unarchive`: show an archived session again.
    UnarchiveSession = "session/unarchive", ClientToServer, SessionIdParams => EmptyResult;
    /// `session/delete`: remove a session from the store for good (closing it here first).
    DeleteSession = "session/delete", ClientToServer, SessionIdParams => EmptyResult;
    /// `session/setTitle`: set a session's title.
    SetSessionTitle = "session/setTitle", ClientToServer, SetTitleParams => EmptyResult;
    /// `mcp/list`: the MCP servers (configured, or of one session), their status and tools.
    McpList = "mcp/list", ClientToServer, McpListParams => McpListResult;
    /// `model/list`: the models a client may pick.
    ListModels = "model/list", ClientToServer, EmptyParams => ListModelsResult;
    /// `session/compact`: compact the conversation in a turn of its own; replies at once.
    Compact = "session/compact", ClientToServer, CompactParams => CompactResult;
    /// `session/requestApproval`: the server asks the client to approve an action.
    RequestApproval = "session/requestApproval", ServerToClient, RequestApprovalParams => RequestApprovalResult;
}

notifications! {
    /// `exit`: stop the process now (after `shutdown`, LSP style).
    Exit = "exit", ClientToServer, EmptyParams;
    /// `$/cancelRequest`: cancel a request (LSP style); the server also sends it to withdraw an approval request.
    CancelRequest = "$/cancelRequest", ClientToServer, CancelRequestParams;
    /// `notifications/cancelled`: cancel a request (MCP style).
    Cancelled = "notifications/cancelled", ClientToServer, CancelledNotificationParams;
    /// `session/event`: one step of a turn.
    SessionEvent = "session/event", ServerToClient, SessionEventNotification;
    /// `auth/statusChanged`: credentials changed (params: `AuthStatus` without `authToken`).
    AuthStatusChanged = "auth/statusChanged", ServerToClient, AuthStatus;
    /// `mcp/serverStatus`: an MCP server's status changed.
    McpServerStatusChanged = "mcp/serverStatus", ServerToClient, McpServerStatusNotification;
    /// `auth/loginChatGPTComplete`: a ChatGPT login (either flow) ended.
    LoginChatGptComplete = "auth/loginChatGPTComplete", ServerToClient, LoginChatGptCompleteNotification;
}

/// The names of the requests `direction` sends.
pub fn request_names(direction: Direction) -> Vec<&'static str> {
    REQUESTS
        .iter()
        .filter(|(_, d)| *d == direction)
        .map(|(name, _)| *name)
        .collect()
}
