//! The `agent-server` binary: CLI, configuration, logging, and wiring the server together.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent_server::api::{self, App, AppHooks, sessions_cli};
use agent_server::auth::AuthSettings;
use agent_server::auth::cli::{self, AuthCommand};
use agent_server::config::{self, Config, ProcessEnv};
use agent_server::rpc::{Connection, ServeConfig};
use agent_server::transport::FramingChoice;
use clap::{Parser, Subcommand};

mod exec;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "agent-server",
    version,
    about = "A headless AI coding agent served over JSON-RPC 2.0 on stdin/stdout"
)]
struct Cli {
    /// Home directory (auth.json, config.toml, sessions/); default $AGENT_SERVER_HOME or ~/.agent-server.
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Override a config.toml key: -c key=value (value parsed as TOML, else taken as a string).
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE", global = true)]
    overrides: Vec<String>,
    /// Message framing on stdin/stdout.
    #[arg(long, value_enum, default_value_t = FramingChoice::Auto)]
    framing: FramingChoice,
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; default $RUST_LOG or warn.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    log_file: Option<PathBuf>,
    /// New sessions are kept in memory only, never stored (like `-c ephemeral=true`).
    #[arg(long, global = true)]
    ephemeral: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the protocol's JSON Schema into a directory.
    Schema {
        /// Output directory.
        #[arg(long, default_value = "schema/json")]
        out: PathBuf,
    },
    /// Log in: with --api-key the key is read from stdin; with --device-code the ChatGPT
    /// device-code login (open a URL on any device, type a code); otherwise the ChatGPT browser
    /// login.
    Login {
        /// Read an OpenAI API key from stdin (never from the command line).
        #[arg(long, conflicts_with_all = ["device_code", "no_browser"])]
        api_key: bool,
        /// Log in from a machine no browser can reach (SSH, containers, remote IDEs): prints a
        /// URL to open on any device and a code to type there, then waits.
        #[arg(long, conflicts_with = "no_browser")]
        device_code: bool,
        /// Print the login URL but do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Log out: delete auth.json.
    Logout,
    /// Show the credentials in use.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one prompt through a server child process and print the conversation.
    Exec(exec::ExecArgs),
    /// Serve the Agent Client Protocol (ACP) on stdin/stdout, for ACP editors such as Zed.
    Acp,
    /// List, show, export or delete stored sessions.
    #[command(subcommand)]
    Sessions(sessions_cli::SessionsCommand),
    /// MCP servers configured in config.toml.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
}

#[derive(Subcommand, Debug)]
enum McpCommand {
    /// Start every enabled server, then print its status and tools (exit status 1 when one failed).
    List {
        /// Print the list as JSON (the shape of the mcp/list result).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.ephemeral {
        cli.overrides.push("ephemeral=true".into());
    }
    if let Err(err) = init_logging(cli.log_level.as_deref(), cli.log_file.as_deref()) {
        return fail(&format!("cannot start logging: {err}"));
    }
    if let Some(Command::Schema { out }) = &cli.command {
        return match agent_server_schema::export::write(out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&format!(
                "cannot write the schema into {}: {err}",
                out.display()
            )),
        };
    }
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string()),
    };
    let command = match cli.command.take() {
        Some(Command::Sessions(command)) => return sessions_cli::run(command, config),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    let code = match command {
        None | Some(Command::Schema { .. }) => runtime.block_on(serve(config, cli.framing)),
        Some(Command::Acp) => runtime.block_on(serve_acp(config)),
        Some(Command::Exec(args)) => {
            runtime.block_on(exec::run(&args, cli.home.as_deref(), &cli.overrides))
        }
        Some(Command::Login {
            api_key,
            device_code,
            no_browser,
        }) => {
            let command = if api_key {
                AuthCommand::LoginApiKey
            } else if device_code {
                AuthCommand::LoginDeviceCode
            } else {
                AuthCommand::LoginChatGpt {
                    open_browser: !no_browser,
                }
            };
            runtime.block_on(auth_command(command, &config))
        }
        Some(Command::Logout) => runtime.block_on(auth_command(AuthCommand::Logout, &config)),
        Some(Command::Status { json }) => {
            runtime.block_on(auth_command(AuthCommand::Status { json }, &config))
        }
        Some(Command::Sessions(_)) => ExitCode::SUCCESS,
        Some(Command::Mcp {
            command: McpCommand::List { json },
        }) => runtime.block_on(mcp_list(&config, json)),
    };
    // The blocking thread reading stdin may still be parked in read(2); do not wait for it.
    runtime.shutdown_background();
    code
}

async fn auth_command(command: AuthCommand, config: &Config) -> ExitCode {
    let http = match api::http_client() {
        Ok(http) => http,
        Err(err) => return fail(&format!("cannot build the HTTP client: {err}")),
    };
    let requires = agent_server::model::default_provider_needs_openai_auth(config);
    let settings = AuthSettings::from_config(config, requires);
    let mut out = std::io::stdout();
    match cli::run(command, settings, http, &mut std::io::stdin(), &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "agent-server: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn mcp_list(config: &Config, json: bool) -> ExitCode {
    let http = match api::http_client() {
        Ok(http) => http,
        Err(err) => return fail(&format!("cannot build the HTTP client: {err}")),
    };
    let mut out = std::io::stdout();
    match agent_server::mcp::cli::list(config, http, json, &mut out).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "agent-server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a start-up failure on stderr and exits with status 2.
fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "agent-server: {message}");
    ExitCode::from(2)
}

fn load_config(cli: &Cli) -> Result<Config, config::ConfigError> {
    let home = config::resolve_home(cli.home.clone(), &ProcessEnv)?;
    config::prepare_home(&home)?;
    Config::load(home, &cli.overrides, &ProcessEnv)
}

/// Logs go to stderr or a file, never stdout: stdout belongs to the protocol.
fn init_logging(level: Option<&str>, file: Option<&std::path::Path>) -> std::io::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("warn")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder.with_writer(Arc::new(file)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

async fn serve(config: Config, framing: FramingChoice) -> ExitCode {
    let max_command_timeout = std::time::Duration::from_millis(config.shell_max_timeout_ms);
    if let Err(err) = agent_server::prepare_process(&config.home, max_command_timeout) {
        return fail(&format!(
            "cannot make the server's /proc entries unreadable to commands: {err}"
        ));
    }
    let http = match api::http_client() {
        Ok(http) => http,
        Err(err) => return fail(&format!("cannot build the HTTP client: {err}")),
    };
    let connection = Connection::new(ServeConfig {
        framing,
        max_message_bytes: config.max_message_bytes,
    });
    let app = App::new(config, connection.peer(), connection.stop_token(), http);
    // In the background, right after the first reply: nothing waits for them.
    api::start_configured_mcp(&app);
    let mcp = Arc::clone(&app.mcp);
    let signals = stop_on_signal(connection.stop_token());
    connection
        .run(
            api::methods(Arc::clone(&app)),
            Arc::new(AppHooks(Arc::clone(&app))),
            tokio::io::stdin(),
            Box::new(std::io::stdout()),
        )
        .await;
    signals.abort();
    // Every turn has ended: leave the store's file whole for the next process.
    app.sessions.flush_store();
    // Every MCP server (and whatever it started) goes with the server, however it stopped.
    mcp.shutdown().await;
    ExitCode::SUCCESS
}

/// The ACP profile: same home, config and auth; only the wire differs.
async fn serve_acp(config: Config) -> ExitCode {
    let http = match api::http_client() {
        Ok(http) => http,
        Err(err) => return fail(&format!("cannot build the HTTP client: {err}")),
    };
    let stop = CancellationToken::new();
    let signals = stop_on_signal(stop.clone());
    agent_server::acp::serve(config, http, stop).await;
    signals.abort();
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT stop the server like `shutdown`.
fn stop_on_signal(stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for signals");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
        stop.cancel();
    })
}
