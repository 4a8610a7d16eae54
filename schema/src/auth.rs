//! Credentials: status, API-key and ChatGPT login, logout.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which kind of credentials are active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuthMode {
    /// An OpenAI API key.
    #[serde(rename = "apiKey")]
    ApiKey,
    /// A ChatGPT login (OAuth tokens).
    #[serde(rename = "chatgpt")]
    Chatgpt,
}

/// Where the active credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthSource {
    /// The `OPENAI_API_KEY` environment variable.
    Env,
    /// `<home>/auth.json`.
    AuthFile,
}

/// The server's view of its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// The active mode, or null when not logged in.
    pub auth_mode: Option<AuthMode>,
    /// Where the active credentials come from.
    pub source: Option<AuthSource>,
    /// The ChatGPT account's email.
    pub email: Option<String>,
    /// The ChatGPT plan, e.g. `plus`.
    pub plan_type: Option<String>,
    /// The ChatGPT account id.
    pub account_id: Option<String>,
    /// When the tokens were last refreshed (RFC 3339).
    pub last_refresh: Option<String>,
    /// Whether the active model provider needs OpenAI auth.
    pub requires_openai_auth: bool,
    /// Why stored auth could not be used (e.g. a malformed auth.json: path, line).
    pub error: Option<String>,
    /// Only with `includeToken`: the bearer sent upstream (API key or access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

/// Params of `auth/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatusParams {
    /// Include the bearer token in the result.
    #[serde(default)]
    pub include_token: bool,
    /// Refresh the ChatGPT tokens first.
    #[serde(default)]
    pub refresh_token: bool,
}

/// Params of `auth/loginApiKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginApiKeyParams {
    /// The API key (`sk-…`); must not be empty.
    pub api_key: String,
}

/// How `auth/loginChatGPT` obtains the authorization code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LoginFlow {
    /// Open `authUrl` in a browser that can reach the server's loopback callback (v1).
    #[default]
    Browser,
    /// Open `verificationUrl` on any device and enter `userCode` (1.1); for SSH sessions,
    /// containers and remote IDEs.
    DeviceCode,
}

/// Params of `auth/loginChatGPT`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginChatGptParams {
    /// The flow; `browser` when absent.
    #[serde(default)]
    pub flow: LoginFlow,
}

/// Result of `auth/loginChatGPT`: `authUrl` and `redirectUri` for the browser flow,
/// `verificationUrl`, `userCode` and `expiresAt` for the device-code flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginChatGptResult {
    /// Identifies this login in `auth/cancelLogin` and `auth/loginChatGPTComplete`.
    pub login_id: String,
    /// Browser flow: the URL to open in a browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// Browser flow: where the issuer sends the browser back (the local callback server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// Device-code flow: the page where the user enters `userCode`, on any device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_url: Option<String>,
    /// Device-code flow: the short code the user types on `verificationUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    /// Device-code flow: when the login gives up waiting (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Params of `auth/cancelLogin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelLoginParams {
    /// The login to cancel.
    pub login_id: String,
}

/// Whether `auth/cancelLogin` found the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CancelLoginStatus {
    /// The login was pending and is now cancelled.
    Cancelled,
    /// No pending login has that id.
    NotFound,
}

/// Result of `auth/cancelLogin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CancelLoginResult {
    /// Whether the login was found.
    pub status: CancelLoginStatus,
}

/// Params of the `auth/loginChatGPTComplete` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginChatGptCompleteNotification {
    /// The login that ended.
    pub login_id: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Why it failed.
    pub error: Option<String>,
}

/// One rate-limit window of a ChatGPT plan (e.g. the 5-hour or the weekly limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitWindow {
    /// How much of the window's limit is used, in percent (may pass 100 when over the limit).
    pub used_percent: f64,
    /// The window's length in minutes, when known (300 = 5 hours, 10080 = a week).
    pub window_minutes: Option<i64>,
    /// When the window resets (RFC 3339), when known.
    pub resets_at: Option<String>,
}

/// The credits of a ChatGPT plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitCredits {
    /// Whether the account has credits to spend beyond its limits.
    pub has_credits: bool,
    /// Whether its credits are unlimited.
    pub unlimited: bool,
    /// The balance as the upstream wrote it (a decimal number in a string), when known.
    pub balance: Option<String>,
}

/// A ChatGPT plan's usage limits; every part is null when unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    /// The primary (shorter) window, e.g. 5 hours.
    pub primary: Option<RateLimitWindow>,
    /// The secondary (longer) window, e.g. a week.
    pub secondary: Option<RateLimitWindow>,
    /// The plan's credits.
    pub credits: Option<RateLimitCredits>,
    /// The ChatGPT plan, e.g. `plus`.
    pub plan_type: Option<String>,
}

/// Params of `auth/rateLimits`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsParams {
    /// Ask the usage endpoint even when the process has already seen rate limits.
    #[serde(default)]
    pub refresh: bool,
}

/// Result of `auth/rateLimits`: the `RateLimits`, plus `error` when the usage endpoint could
/// not be read (the limits are then what this process last saw, or null).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsResult {
    /// The primary (shorter) window, e.g. 5 hours.
    pub primary: Option<RateLimitWindow>,
    /// The secondary (longer) window, e.g. a week.
    pub secondary: Option<RateLimitWindow>,
    /// The plan's credits.
    pub credits: Option<RateLimitCredits>,
    /// The ChatGPT plan, e.g. `plus`.
    pub plan_type: Option<String>,
    /// Why the usage endpoint could not be read; null when it was read or not needed.
    pub error: Option<String>,
}

impl RateLimitsResult {
    /// A result holding `limits` (or all null) and `error`.
    pub fn new(limits: Option<RateLimits>, error: Option<String>) -> Self {
        let limits = limits.unwrap_or_default();
        Self {
            primary: limits.primary,
            secondary: limits.secondary,
            credits: limits.credits,
            plan_type: limits.plan_type,
            error,
        }
    }
}
