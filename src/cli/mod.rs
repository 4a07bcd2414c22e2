//! The command line: `serve`, `check-config`, `accounts`, `--version`, `--help`.

mod accounts;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, ProcessEnv};

/// Exit code of a configuration that cannot be used.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "subrelay",
    version,
    about = "Self-hosted AI API gateway: relays OpenAI Responses (Codex) requests through a pool of accounts with failover and proxy-proof keepalive.",
    after_help = "Configuration: a YAML file (--config) plus environment overrides (GATEWAY_STREAM_KEEPALIVE_INTERVAL=15 overrides gateway.stream_keepalive_interval). Every key is listed in docs/CONFIG.md."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (127.0.0.1:8080 unless configured otherwise).
    Serve {
        /// YAML config file; without it the built-in defaults and the environment apply.
        #[arg(long, short, env = "SUBRELAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print it with secrets redacted; exits 2 on an error.
    CheckConfig {
        #[arg(long, short, env = "SUBRELAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show the account pool of the running server (state, cooldowns, in-flight, token expiry),
    /// or act on one account. Needs admin.token in the config.
    Accounts {
        #[arg(long, short, env = "SUBRELAY_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// The server's address; by default server.host and server.port of the config.
        #[arg(long, global = true)]
        url: Option<String>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<AccountsAction>,
    },
    /// Print the reference table of every config key (the table in docs/CONFIG.md).
    #[command(hide = true)]
    ConfigReference,
}

#[derive(Subcommand)]
enum AccountsAction {
    /// Clear an account's cooldown or runtime disable.
    Reset { name: String },
    /// Refresh a sign-in account's token now.
    Refresh { name: String },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Accounts {
            config,
            url,
            json,
            action,
        } => {
            let config = match load(config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let action = match action {
                None => accounts::Action::List { json },
                Some(AccountsAction::Reset { name }) => accounts::Action::Reset(name),
                Some(AccountsAction::Refresh { name }) => accounts::Action::Refresh(name),
            };
            accounts::run(&config, url, action)
        }
        Command::ConfigReference => {
            print!("{}", config::reference::markdown_table());
            ExitCode::SUCCESS
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<config::Config, ExitCode> {
    config::load(path.as_deref(), &ProcessEnv).map_err(|e| {
        eprintln!("subrelay: configuration error: {e}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    crate::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("subrelay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("subrelay: {message}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    print!("{}", config.origin.effective_yaml);
    let source = config
        .origin
        .file
        .as_ref()
        .map_or("built-in defaults".to_owned(), |f| f.display().to_string());
    println!(
        "# valid: {} account(s), {} API key(s); from {source}",
        config.accounts.len(),
        config.api_keys.len()
    );
    for key in &config.origin.from_env {
        println!(
            "# {key} from environment variable {}",
            config::env_name(key)
        );
    }
    ExitCode::SUCCESS
}
