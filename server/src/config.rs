//! Configuration: `config.toml` in the home, `-c key=value` overrides, environment, defaults.
//!
//! Precedence: `-c` > environment > `config.toml` > defaults. A malformed file stops the
//! server at start (the error names the path and line) and is never changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agent_server_schema::session::{ApprovalPolicy, ReasoningEffort, SandboxMode};
use serde::Deserialize;

/// Default model when neither config nor session names one.
pub const DEFAULT_MODEL: &str = "gpt-5-codex";
/// Default OAuth issuer for ChatGPT login and token refresh.
pub const DEFAULT_AUTH_ISSUER: &str = "https://auth.openai.com";
/// Default base URL of the ChatGPT backend.
pub const DEFAULT_CHATGPT_BASE_URL: &str = "https://chatgpt.com/backend-api/codex";
/// Default base URL of the public OpenAI API.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Default budget of project docs (`AGENTS.md` files) in bytes.
pub const DEFAULT_PROJECT_DOC_MAX_BYTES: usize = 32 * 1024;
/// How long a browser login may stay pending (`login_timeout_secs`) by default.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 600;
/// How long a device-code login may stay pending (`device_login_timeout_secs`) by default: the
/// contract's 15 minutes.
pub const DEFAULT_DEVICE_LOGIN_TIMEOUT_SECS: u64 = 900;
/// Default cap on one incoming message (64 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Which wire API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireApi {
    /// The Responses API (`POST <base>/responses`).
    #[default]
    Responses,
    /// The Chat Completions API (`POST <base>/chat/completions`).
    Chat,
}

/// One `[model_providers.<id>]` table. Every field is optional so that
/// `[model_providers.openai]` can override single fields of the built-in provider.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Display name.
    pub name: Option<String>,
    /// Base URL; `/responses` or `/chat/completions` is appended.
    pub base_url: Option<String>,
    /// Environment variable holding the bearer key for this provider.
    pub env_key: Option<String>,
    /// Which wire API the provider speaks.
    pub wire_api: Option<WireApi>,
    /// Query parameters appended to every request URL.
    pub query_params: Option<BTreeMap<String, String>>,
    /// Extra headers sent as they are.
    pub http_headers: Option<BTreeMap<String, String>>,
    /// Extra headers whose values come from environment variables (header → variable).
    pub env_http_headers: Option<BTreeMap<String, String>>,
    /// HTTP retries for connect errors, 5xx and 429 (default 4).
    pub request_max_retries: Option<u32>,
    /// Retries of a stream that failed mid-way (default 5).
    pub stream_max_retries: Option<u32>,
    /// How long a stream may stay silent before it counts as failed (default 300000).
    pub stream_idle_timeout_ms: Option<u64>,
    /// Whether the provider needs OpenAI auth (API key or ChatGPT login).
    pub requires_auth: Option<bool>,
    /// Whether `model/list` asks the provider's `GET <base_url>/models` (always for `chat`).
    pub list_models: Option<bool>,
}

/// Which shape of `apply_patch` a model is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyPatchTool {
    /// A JSON function tool with one `input` string.
    Function,
    /// A freeform `custom` tool with a grammar; the call carries the patch as its `input`.
    Custom,
}

/// Which shape of shell tool a model is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellTool {
    /// `shell` with an argv array.
    Shell,
    /// `shell_command` with one command string run by the user's login shell.
    ShellCommand,
}

/// Whether a model takes images as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Text.
    Text,
    /// Images.
    Image,
}

/// One `[models.<id>]` table: what the server should know about a model. Every field is
/// optional; a field set here overrides the built-in catalog's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name a model picker shows.
    pub display_name: Option<String>,
    /// One line about the model.
    pub description: Option<String>,
    /// The context window in tokens.
    pub context_window: Option<u64>,
    /// The reasoning efforts the model accepts.
    pub reasoning_efforts: Option<Vec<ReasoningEffort>>,
    /// The effort used when none is chosen.
    pub default_reasoning_effort: Option<ReasoningEffort>,
    /// `["text"]` or `["text", "image"]`.
    pub input_modalities: Option<Vec<Modality>>,
    /// The `apply_patch` shape the model was trained with.
    pub apply_patch_tool: Option<ApplyPatchTool>,
    /// The shell tool shape the model was trained with.
    pub shell_tool: Option<ShellTool>,
}

/// Default `startup_timeout_sec` of an MCP server: `initialize` and `tools/list` together.
pub const DEFAULT_MCP_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `tool_timeout_sec` of an MCP server: one `tools/call`.
pub const DEFAULT_MCP_TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransportConfig {
    /// A child process speaking MCP on its stdin/stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables added to the inherited environment.
        env: BTreeMap<String, String>,
        /// Its working directory (default: the server's).
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint URL.
        url: String,
        /// The environment variable whose value is sent as `Authorization: Bearer <value>`.
        bearer_token_env_var: Option<String>,
        /// Headers sent with every request.
        headers: BTreeMap<String, String>,
    },
}

/// One MCP server: from a `[mcp_servers.<name>]` table, or passed to `session/new`. A plain
/// domain type: every front door builds it from its own wire shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServerConfig {
    /// How it is reached.
    pub transport: McpTransportConfig,
    /// How long `initialize` plus `tools/list` may take.
    pub startup_timeout: Duration,
    /// How long one `tools/call` may take.
    pub tool_timeout: Duration,
    /// `false`: neither started nor listed.
    pub enabled: bool,
    /// Only these tools are offered, when set.
    pub enabled_tools: Option<Vec<String>>,
    /// These tools are never offered.
    pub disabled_tools: Vec<String>,
}

impl McpServerConfig {
    /// A server with the default timeouts and no filters.
    pub fn new(transport: McpTransportConfig) -> Self {
        Self {
            transport,
            startup_timeout: DEFAULT_MCP_STARTUP_TIMEOUT,
            tool_timeout: DEFAULT_MCP_TOOL_TIMEOUT,
            enabled: true,
            enabled_tools: None,
            disabled_tools: Vec::new(),
        }
    }
}

/// A `[mcp_servers.<name>]` table as written; checked into a [`McpServerConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct McpServerToml {
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    bearer_token_env_var: Option<String>,
    http_headers: Option<BTreeMap<String, String>>,
    startup_timeout_sec: Option<f64>,
    tool_timeout_sec: Option<f64>,
    enabled: Option<bool>,
    enabled_tools: Option<Vec<String>>,
    disabled_tools: Option<Vec<String>>,
}

fn timeout_secs(key: &str, value: Option<f64>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
            Ok(Duration::from_secs_f64(secs))
        }
        Some(secs) => Err(format!(
            "`{key}` = {secs} is not a usable timeout; give a number of seconds above 0 (at most 86400)"
        )),
    }
}

impl TryFrom<McpServerToml> for McpServerConfig {
    type Error = String;

    fn try_from(raw: McpServerToml) -> Result<Self, String> {
        let transport = match (raw.command.clone(), raw.url.clone()) {
            (Some(_), Some(_)) => {
                return Err(
                    "an MCP server has either `command` (stdio) or `url` (Streamable \
                    HTTP), not both; remove one"
                        .into(),
                );
            }
            (None, None) => {
                return Err(
                    "an MCP server needs `command` (a stdio server) or `url` (a \
                    Streamable HTTP server); add one"
                        .into(),
                );
            }
            (Some(command), None) => stdio_transport(command, &raw)?,
            (None, Some(url)) => http_transport(url, &raw)?,
        };
        Ok(Self {
            transport,
            startup_timeout: timeout_secs(
                "startup_timeout_sec",
                raw.startup_timeout_sec,
                DEFAULT_MCP_STARTUP_TIMEOUT,
            )?,
            tool_timeout: timeout_secs(
                "tool_timeout_sec",
                raw.tool_timeout_sec,
                DEFAULT_MCP_TOOL_TIMEOUT,
            )?,
            enabled: raw.enabled.unwrap_or(true),
            enabled_tools: raw.enabled_tools,
            disabled_tools: raw.disabled_tools.unwrap_or_default(),
        })
    }
}

/// The stdio transport of a table with `command`; HTTP-only keys are refused.
fn stdio_transport(command: String, raw: &McpServerToml) -> Result<McpTransportConfig, String> {
    if let Some(key) = [
        raw.bearer_token_env_var
            .as_ref()
            .map(|_| "bearer_token_env_var"),
        raw.http_headers.as_ref().map(|_| "http_headers"),
    ]
    .into_iter()
    .flatten()
    .next()
    {
        return Err(format!(
            "`{key}` is for Streamable HTTP servers (with `url`), not for one with `command`; \
             remove it"
        ));
    }
    if command.trim().is_empty() {
        return Err("`command` is empty; name the program to run".into());
    }
    Ok(McpTransportConfig::Stdio {
        command,
        args: raw.args.clone().unwrap_or_default(),
        env: raw.env.clone().unwrap_or_default(),
        cwd: raw.cwd.clone(),
    })
}

/// The HTTP transport of a table with `url`; stdio-only keys are refused.
fn http_transport(url: String, raw: &McpServerToml) -> Result<McpTransportConfig, String> {
    if let Some(key) = [
        raw.args.as_ref().map(|_| "args"),
        raw.env.as_ref().map(|_| "env"),
        raw.cwd.as_ref().map(|_| "cwd"),
    ]
    .into_iter()
    .flatten()
    .next()
    {
        return Err(format!(
            "`{key}` is for stdio servers (with `command`), not for one with `url`; remove it"
        ));
    }
    check_http_url(&url)?;
    Ok(McpTransportConfig::Http {
        url,
        bearer_token_env_var: raw.bearer_token_env_var.clone(),
        headers: raw.http_headers.clone().unwrap_or_default(),
    })
}

/// Checks that `url` is an absolute `http:` or `https:` URL.
pub fn check_http_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
        Ok(parsed) => Err(format!(
            "`url` {url} has scheme `{}`; an MCP server URL starts with http:// or https://",
            parsed.scheme()
        )),
        Err(err) => Err(format!(
            "`url` {url} is not a URL ({err}); write it like https://mcp.example.com/mcp"
        )),
    }
}

/// Checks an MCP server name: not empty, no control characters.
pub fn check_mcp_server_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("an MCP server name is empty; give it a name".into());
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the MCP server name {name:?} has control characters; use letters, digits, `_` and `-`"
        ));
    }
    Ok(())
}

/// A `[mcp_servers.<name>]` table, checked while it is read so its errors carry the line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "McpServerToml")]
struct McpServerEntry(McpServerConfig);

impl TryFrom<McpServerToml> for McpServerEntry {
    type Error = String;

    fn try_from(raw: McpServerToml) -> Result<Self, String> {
        McpServerConfig::try_from(raw).map(Self)
    }
}

/// The whole configuration after merging every source.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The home directory (`auth.json`, `config.toml`, `sessions/`).
    pub home: PathBuf,
    /// Default model for new sessions.
    pub model: String,
    /// Id of the active model provider (default `openai`).
    pub model_provider: String,
    /// Providers declared in `config.toml` (including overrides of `openai`).
    pub model_providers: BTreeMap<String, ProviderConfig>,
    /// `[models.<id>]` tables: catalog entries and tool shapes by model id.
    pub models: BTreeMap<String, ModelConfig>,
    /// Default approval policy for new sessions.
    pub approval_policy: ApprovalPolicy,
    /// Default sandbox mode for new sessions.
    pub sandbox: SandboxMode,
    /// Base URL of the ChatGPT backend.
    pub chatgpt_base_url: String,
    /// OAuth issuer.
    pub auth_issuer: String,
    /// Fixed port for the login callback server (`0` = any free port); `None` = 1455 then 1457.
    pub login_callback_port: Option<u16>,
    /// How long a browser login may stay pending, in seconds.
    pub login_timeout_secs: u64,
    /// How long a device-code login may stay pending, in seconds (default 900, the contract's
    /// 15 minutes).
    pub device_login_timeout_secs: u64,
    /// Cap on one incoming message in bytes.
    pub max_message_bytes: usize,
    /// Whether responses are stored upstream (never in ChatGPT mode).
    pub store: bool,
    /// The `originator` header.
    pub originator: String,
    /// Default reasoning effort (`none` sends no `reasoning`).
    pub reasoning_effort: ReasoningEffort,
    /// Default timeout of a shell command in milliseconds.
    pub shell_timeout_ms: u64,
    /// Sessions are ephemeral (never stored) unless `session/new` says otherwise.
    pub ephemeral: bool,
    /// The most a model may ask for as a command's `timeout_ms` (default one hour); larger
    /// values are capped and the model is told.
    pub shell_max_timeout_ms: u64,
    /// `OPENAI_API_KEY` from the environment, if set and not empty.
    pub env_api_key: Option<crate::secret::Secret>,
    /// `OPENAI_BASE_URL` from the environment, if set and not empty.
    pub env_openai_base_url: Option<String>,
    /// `AGENT_SERVER_SSE_FIXTURE`: replay SSE transcripts instead of calling the network.
    pub sse_fixture: Option<String>,
    /// `[mcp_servers.<name>]`: the configured MCP servers, disabled ones included.
    pub mcp_servers: BTreeMap<String, McpServerConfig>,
    /// Total bytes of project docs (`AGENTS.md` files) to read; 0 turns them off.
    pub project_doc_max_bytes: usize,
    /// File names tried after `AGENTS.override.md` and `AGENTS.md` in each directory.
    pub project_doc_fallback_filenames: Vec<String>,
    /// Compact before a model request once the previous response used this many tokens
    /// (default: 90 % of the model's context window).
    pub model_auto_compact_token_limit: Option<u64>,
}

/// Why the configuration could not be loaded; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.toml` is not valid TOML or has a wrong key or value.
    #[error("{path}: {message}; fix the file (it is not changed by the server) and start again")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// `config.toml` exists but cannot be read.
    #[error("cannot read {path}: {source}; check its permissions")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `-c key=value` override is malformed.
    #[error("bad -c override `{0}`: write it as key=value, e.g. -c model=\"gpt-5\"")]
    BadOverride(String),
    /// A setting from `-c` or the environment has a wrong value.
    #[error("{0}")]
    BadValue(String),
    /// The home directory cannot be used.
    #[error(
        "home directory {path} cannot be used: {reason}; pass --home DIR or set AGENT_SERVER_HOME"
    )]
    BadHome {
        /// The home.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The keys `config.toml` and `-c` accept, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    model: Option<String>,
    model_provider: Option<String>,
    #[serde(default)]
    model_providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    models: BTreeMap<String, ModelConfig>,
    approval_policy: Option<ApprovalPolicy>,
    sandbox: Option<SandboxMode>,
    chatgpt_base_url: Option<String>,
    auth_issuer: Option<String>,
    login_callback_port: Option<u16>,
    login_timeout_secs: Option<u64>,
    device_login_timeout_secs: Option<u64>,
    max_message_bytes: Option<usize>,
    store: Option<bool>,
    originator: Option<String>,
    reasoning_effort: Option<ReasoningEffort>,
    shell_timeout_ms: Option<u64>,
    ephemeral: Option<bool>,
    #[serde(default)]
    mcp_servers: BTreeMap<String, McpServerEntry>,
    shell_max_timeout_ms: Option<u64>,
    project_doc_max_bytes: Option<usize>,
    project_doc_fallback_filenames: Option<Vec<String>>,
    model_auto_compact_token_limit: Option<u64>,
}

/// The process environment as far as configuration reads it; tests pass their own.
pub trait Env {
    /// The variable's value, `None` when unset or empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// Finds the home: `--home`, else `AGENT_SERVER_HOME`, else `~/.agent-server`.
pub fn resolve_home(flag: Option<PathBuf>, env: &dyn Env) -> Result<PathBuf, ConfigError> {
    if let Some(home) = flag.or_else(|| env.var("AGENT_SERVER_HOME").map(PathBuf::from)) {
        return Ok(absolute(home));
    }
    match env.var("HOME") {
        Some(user_home) => Ok(PathBuf::from(user_home).join(".agent-server")),
        None => Err(ConfigError::BadHome {
            path: PathBuf::from("~/.agent-server"),
            reason: "HOME is not set".into(),
        }),
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&path))
        .unwrap_or(path)
}

/// Creates the home (0700) when missing; an existing one is left as it is but must be a directory.
pub fn prepare_home(home: &std::path::Path) -> Result<(), ConfigError> {
    match std::fs::metadata(home) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ConfigError::BadHome {
            path: home.to_path_buf(),
            reason: "it is not a directory".into(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(home)
                .map_err(|e| ConfigError::BadHome {
                    path: home.to_path_buf(),
                    reason: e.to_string(),
                })
        }
        Err(err) => Err(ConfigError::BadHome {
            path: home.to_path_buf(),
            reason: err.to_string(),
        }),
    }
}

/// Parses `-c key=value`: the value as TOML, else as a plain string. Dotted keys reach into tables.
fn parse_override(text: &str) -> Result<(Vec<String>, toml::Value), ConfigError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride(text.to_string()))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::BadOverride(text.to_string()));
    }
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key.split('.').map(str::to_string).collect(), parsed))
}

fn set_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            ConfigError::BadValue(format!(
                "`{part}` is not a table, so `{}` cannot be set",
                path.join(".")
            ))
        })?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

impl Config {
    /// Loads the configuration of `home`: `config.toml`, then the environment, then `-c`
    /// overrides. Nothing is half-applied: any error means no configuration.
    pub fn load(home: PathBuf, overrides: &[String], env: &dyn Env) -> Result<Self, ConfigError> {
        let path = home.join("config.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ConfigError::Unreadable { path, source }),
        };
        let malformed = |e: toml::de::Error| ConfigError::Malformed {
            path: path.clone(),
            message: one_line(&e.to_string()),
        };
        let table = text.parse::<toml::Table>().map_err(malformed)?;
        // The file alone must be valid, so its errors name the file; read from the text, they
        // also name the line.
        toml::from_str::<FileConfig>(&text).map_err(malformed)?;
        let file = layered(table, overrides, env)?;
        Self::from_file(home, file, env, &path)
    }

    /// The configuration from the merged settings, with defaults for what they leave out.
    fn from_file(
        home: PathBuf,
        file: FileConfig,
        env: &dyn Env,
        path: &std::path::Path,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            home,
            model: file.model.unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            model_provider: file.model_provider.unwrap_or_else(|| "openai".to_string()),
            model_providers: file.model_providers,
            models: file.models,
            approval_policy: file.approval_policy.unwrap_or(ApprovalPolicy::Untrusted),
            sandbox: file.sandbox.unwrap_or(SandboxMode::WorkspaceWrite),
            chatgpt_base_url: file
                .chatgpt_base_url
                .unwrap_or_else(|| DEFAULT_CHATGPT_BASE_URL.to_string()),
            auth_issuer: file
                .auth_issuer
                .unwrap_or_else(|| DEFAULT_AUTH_ISSUER.to_string()),
            login_callback_port: file.login_callback_port,
            login_timeout_secs: file
                .login_timeout_secs
                .unwrap_or(DEFAULT_LOGIN_TIMEOUT_SECS),
            device_login_timeout_secs: file
                .device_login_timeout_secs
                .unwrap_or(DEFAULT_DEVICE_LOGIN_TIMEOUT_SECS),
            max_message_bytes: file.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            store: file.store.unwrap_or(false),
            originator: file
                .originator
                .unwrap_or_else(|| "agent-server".to_string()),
            reasoning_effort: file.reasoning_effort.unwrap_or(ReasoningEffort::Medium),
            shell_timeout_ms: file.shell_timeout_ms.unwrap_or(60_000),
            ephemeral: file.ephemeral.unwrap_or(false),
            shell_max_timeout_ms: file.shell_max_timeout_ms.unwrap_or(3_600_000),
            env_api_key: env.var("OPENAI_API_KEY").map(crate::secret::Secret::new),
            env_openai_base_url: env.var("OPENAI_BASE_URL"),
            sse_fixture: env.var("AGENT_SERVER_SSE_FIXTURE"),
            mcp_servers: mcp_servers(file.mcp_servers, path)?,
            project_doc_max_bytes: file
                .project_doc_max_bytes
                .unwrap_or(DEFAULT_PROJECT_DOC_MAX_BYTES),
            project_doc_fallback_filenames: checked_filenames(
                file.project_doc_fallback_filenames.unwrap_or_default(),
            )?,
            model_auto_compact_token_limit: file.model_auto_compact_token_limit,
        })
    }
}

/// The file's settings (`table`, already checked on its own) with the environment's and then
/// the `-c` overrides' laid over them.
fn layered(
    mut table: toml::Table,
    overrides: &[String],
    env: &dyn Env,
) -> Result<FileConfig, ConfigError> {
    for (var, key) in [
        ("AGENT_SERVER_AUTH_ISSUER", "auth_issuer"),
        ("AGENT_SERVER_LOGIN_PORT", "login_callback_port"),
    ] {
        if let Some(value) = env.var(var) {
            let value = match key {
                "login_callback_port" => {
                    toml::Value::Integer(value.trim().parse().map_err(|_| {
                        ConfigError::BadValue(format!(
                            "{var}={value} is not a port number; set it to 0-65535"
                        ))
                    })?)
                }
                _ => toml::Value::String(value),
            };
            table.insert(key.to_string(), value);
        }
    }
    for text in overrides {
        let (path, value) = parse_override(text)?;
        set_path(&mut table, &path, value)?;
    }
    FileConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
        ConfigError::BadValue(format!(
            "bad setting from -c or the environment: {}",
            one_line(&e.to_string())
        ))
    })
}

/// The `[mcp_servers.*]` tables with their names checked.
fn mcp_servers(
    entries: BTreeMap<String, McpServerEntry>,
    path: &std::path::Path,
) -> Result<BTreeMap<String, McpServerConfig>, ConfigError> {
    entries
        .into_iter()
        .map(|(name, entry)| {
            check_mcp_server_name(&name).map_err(|message| ConfigError::Malformed {
                path: path.to_path_buf(),
                message: format!("[mcp_servers.{name}]: {message}"),
            })?;
            Ok((name, entry.0))
        })
        .collect()
}

/// Fallback doc names are joined to directories: a name must stay inside the directory.
fn checked_filenames(names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for name in &names {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(ConfigError::BadValue(format!(
                "project_doc_fallback_filenames holds `{name}`, which is not a plain file name; list names like \"CLAUDE.md\" without directories"
            )));
        }
    }
    Ok(names)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, &'static str>);
    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn precedence_is_override_then_env_then_file_then_default() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            "model = \"from-file\"\nauth_issuer = \"http://file\"\nlogin_callback_port = 1\n[model_providers.local]\nbase_url = \"http://x\"\nrequires_auth = false\n",
        )
        .unwrap();
        let env = FakeEnv(HashMap::from([
            ("AGENT_SERVER_AUTH_ISSUER", "http://env"),
            ("AGENT_SERVER_LOGIN_PORT", "2"),
        ]));
        let config = Config::load(
            home.path().to_path_buf(),
            &[
                "login_callback_port=3".into(),
                "model_providers.local.name=Local".into(),
                "store=true".into(),
            ],
            &env,
        )
        .unwrap();
        assert_eq!(
            (
                config.model.as_str(),
                config.auth_issuer.as_str(),
                config.login_callback_port,
                config.store
            ),
            ("from-file", "http://env", Some(3), true)
        );
        assert_eq!(
            config.model_providers["local"].name.as_deref(),
            Some("Local")
        );
        assert_eq!(config.model_providers["local"].requires_auth, Some(false));
        assert_eq!(config.shell_timeout_ms, 60_000);
    }

    #[test]
    fn a_malformed_file_names_the_path_and_line() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            "model = \"a\"\nmodel = = 3\n",
        )
        .unwrap();
        let err = Config::load(home.path().to_path_buf(), &[], &FakeEnv(HashMap::new()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml") && err.contains("line 2"),
            "{err}"
        );
        std::fs::write(home.path().join("config.toml"), "modle = \"a\"\n").unwrap();
        let err = Config::load(home.path().to_path_buf(), &[], &FakeEnv(HashMap::new()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("modle"), "{err}");
        std::fs::write(home.path().join("config.toml"), "sandbox = \"nope\"\n").unwrap();
        let err = Config::load(home.path().to_path_buf(), &[], &FakeEnv(HashMap::new()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml") && err.contains("nope") && err.contains("workspaceWrite"),
            "{err}"
        );
    }

    #[test]
    fn mcp_servers_are_read_with_their_defaults() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            r#"
[mcp_servers.everything]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-everything"]
env = { LOG_LEVEL = "info" }
cwd = "/tmp"
startup_timeout_sec = 2.5
enabled_tools = ["echo"]

[mcp_servers.remote]
url = "https://mcp.example.com/mcp"
bearer_token_env_var = "EXAMPLE_TOKEN"
http_headers = { "X-Team" = "a" }
tool_timeout_sec = 5
enabled = false
disabled_tools = ["drop"]
"#,
        )
        .unwrap();
        let config =
            Config::load(home.path().to_path_buf(), &[], &FakeEnv(HashMap::new())).unwrap();
        let everything = McpServerConfig {
            transport: McpTransportConfig::Stdio {
                command: "npx".into(),
                args: vec![
                    "-y".into(),
                    "@modelcontextprotocol/server-everything".into(),
                ],
                env: BTreeMap::from([("LOG_LEVEL".into(), "info".into())]),
                cwd: Some(PathBuf::from("/tmp")),
            },
            startup_timeout: Duration::from_millis(2500),
            tool_timeout: DEFAULT_MCP_TOOL_TIMEOUT,
            enabled: true,
            enabled_tools: Some(vec!["echo".into()]),
            disabled_tools: vec![],
        };
        let remote = McpServerConfig {
            transport: McpTransportConfig::Http {
                url: "https://mcp.example.com/mcp".into(),
                bearer_token_env_var: Some("EXAMPLE_TOKEN".into()),
                headers: BTreeMap::from([("X-Team".into(), "a".into())]),
            },
            startup_timeout: DEFAULT_MCP_STARTUP_TIMEOUT,
            tool_timeout: Duration::from_secs(5),
            enabled: false,
            enabled_tools: None,
            disabled_tools: vec!["drop".into()],
        };
        assert_eq!(
            config.mcp_servers,
            BTreeMap::from([("everything".into(), everything), ("remote".into(), remote)])
        );
    }

    #[test]
    fn context_keys_load_and_a_fallback_name_with_a_directory_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let env = FakeEnv(HashMap::new());
        let config = Config::load(home.path().to_path_buf(), &[], &env).unwrap();
        assert_eq!(
            (
                config.project_doc_max_bytes,
                config.project_doc_fallback_filenames.clone(),
                config.model_auto_compact_token_limit
            ),
            (32768, Vec::new(), None)
        );
        std::fs::write(
            home.path().join("config.toml"),
            "project_doc_max_bytes = 0\nproject_doc_fallback_filenames = [\"CLAUDE.md\"]\nmodel_auto_compact_token_limit = 5000\n",
        )
        .unwrap();
        let config = Config::load(home.path().to_path_buf(), &[], &env).unwrap();
        assert_eq!(
            (
                config.project_doc_max_bytes,
                config.project_doc_fallback_filenames,
                config.model_auto_compact_token_limit
            ),
            (0, vec!["CLAUDE.md".to_string()], Some(5000))
        );
        let err = Config::load(
            home.path().to_path_buf(),
            &["project_doc_fallback_filenames=[\"../x.md\"]".into()],
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("../x.md") && err.contains("plain file name"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_mcp_server_names_the_file_the_line_and_the_fix() {
        let cases = [
            (
                "model = \"m\"\n[mcp_servers.a]\ncommand = \"x\"\nurl = \"http://h/mcp\"\n",
                "not both",
            ),
            ("[mcp_servers.a]\nargs = [\"x\"]\n", "needs `command`"),
            ("[mcp_servers.a]\ncommand = \"x\"\ncomand = 1\n", "comand"),
            (
                "[mcp_servers.a]\ncommand = \"x\"\ntool_timeout_sec = -1\n",
                "above 0",
            ),
            ("[mcp_servers.a]\nurl = \"ftp://h\"\n", "http://"),
            (
                "[mcp_servers.a]\nurl = \"http://h\"\nenv = {}\n",
                "stdio servers",
            ),
            (
                "[mcp_servers.a]\ncommand = \"x\"\nhttp_headers = {}\n",
                "Streamable HTTP",
            ),
        ];
        for (text, expected) in cases {
            let home = tempfile::tempdir().unwrap();
            std::fs::write(home.path().join("config.toml"), text).unwrap();
            let err = Config::load(home.path().to_path_buf(), &[], &FakeEnv(HashMap::new()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("config.toml") && err.contains("line ") && err.contains(expected),
                "{text:?} gave {err}"
            );
        }
    }

    #[test]
    fn override_values_fall_back_to_strings() {
        assert_eq!(
            parse_override("model=gpt-5").unwrap().1,
            toml::Value::String("gpt-5".into())
        );
        assert_eq!(
            parse_override("max_message_bytes=1024").unwrap().1,
            toml::Value::Integer(1024)
        );
        assert!(parse_override("novalue").is_err());
    }
}
