//! The command line: `serve`, `check-config`, `accounts`, `keys`, `usage`, `audit`, `reload`,
//! `store copy`, `completions`,
//! `--version`, `--help`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "the CLI talks to a terminal and reads its files before (or without) a server"
)]

mod accounts;
mod admin_client;
mod audit;
mod completions;
mod keys;
mod prices;
mod reload;
mod store;
mod usage;

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
    about = "Self-hosted AI API gateway: relays OpenAI Responses, Chat Completions and Anthropic Messages requests (Codex CLI, Claude Code, the SDKs) through a pool of accounts with failover and proxy-proof keepalive.",
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
    /// List, create or disable API keys on the running server (needs admin.token).
    Keys {
        #[arg(long, short, env = "SUBRELAY_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// The server's address; by default server.host and server.port of the config.
        #[arg(long, global = true)]
        url: Option<String>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<KeysAction>,
    },
    /// List, set or delete model prices (USD per million tokens) on the running server; they
    /// are kept in the store, shared by every instance (needs admin.token).
    Prices {
        #[arg(long, short, env = "SUBRELAY_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// The server's address; by default server.host and server.port of the config.
        #[arg(long, global = true)]
        url: Option<String>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<PricesAction>,
    },
    /// Usage of the running server: totals per key and per day, and the latest requests.
    Usage {
        #[arg(long, short, env = "SUBRELAY_CONFIG")]
        config: Option<PathBuf>,
        /// The server's address; by default server.host and server.port of the config.
        #[arg(long)]
        url: Option<String>,
        /// How far back, e.g. 24h, 7d, 30m.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// Only this key (its name).
        #[arg(long)]
        key: Option<String>,
        /// How many of the latest requests to list.
        #[arg(long, default_value_t = 20)]
        last: u32,
        /// Print the admin API's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The running server's audit trail: who changed which key, account, group or setting,
    /// when and from where, newest first (needs admin.token).
    Audit {
        #[arg(long, short, env = "SUBRELAY_CONFIG")]
        config: Option<PathBuf>,
        /// The server's address; by default server.host and server.port of the config.
        #[arg(long)]
        url: Option<String>,
        /// How many entries, 1–1000.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only actions starting with this, e.g. `key.` or `account.update`.
        #[arg(long)]
        action: Option<String>,
        /// How far back, e.g. 24h, 7d.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make the running server re-read its configuration file (as SIGHUP does): accounts, keys,
    /// groups, prices, gateway.* and log.level change without a restart (needs admin.token).
    Reload {
        #[arg(long, short, env = "SUBRELAY_CONFIG")]
        config: Option<PathBuf>,
        /// The server's address; by default server.host and server.port of the config.
        #[arg(long)]
        url: Option<String>,
        /// Print the admin API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Work on a store without a running server.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Print the reference table of every config key (the table in docs/CONFIG.md).
    #[command(hide = true)]
    ConfigReference,
    /// Print a shell completion script, e.g. `subrelay completions bash > /etc/bash_completion.d/subrelay`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy a single-instance SQLite store (groups, keys, accounts with their sealed credentials,
    /// sign-in tokens, account state, secrets, usage) into a PostgreSQL database for
    /// `storage.backend: postgres`. Rows already there are kept; a second run adds nothing.
    Copy {
        /// `sqlite:PATH`: the source's data directory (or its subrelay.db). No subrelay may be
        /// running on it.
        #[arg(long)]
        from: String,
        /// `postgres://user:password@host:port/database`, or env:NAME / file:PATH holding it.
        #[arg(long)]
        to: String,
        /// The source's storage.encryption_key (64 hex digits, env:NAME or file:PATH); without
        /// it, the encryption.key file of the source's data directory. The instances on the
        /// destination must use the same key.
        #[arg(long, env = "STORAGE_ENCRYPTION_KEY")]
        encryption_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// List every key (this is also the default).
    List,
    /// Create a key and print it (the only time it is shown).
    Create {
        name: String,
        /// The account group that serves the key (default: `default`).
        #[arg(long)]
        group: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Spending limit in USD per UTC day.
        #[arg(long)]
        daily_spend: Option<f64>,
        /// Spending limit in USD per calendar month.
        #[arg(long)]
        monthly_spend: Option<f64>,
        /// A model the key may use (repeat for more; default: every model).
        #[arg(long = "model")]
        models: Vec<String>,
        /// How long the key is valid, e.g. 30d.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Requests of this key in flight at once.
        #[arg(long)]
        concurrency: Option<u32>,
    },
    /// Disable a key: its requests get 401 from now on.
    Disable { name: String },
}

#[derive(Subcommand)]
enum PricesAction {
    /// The price table in effect, with where each price comes from (the default).
    List,
    /// Set a model's price, USD per million tokens (refused for a model the config prices).
    Set {
        model: String,
        #[arg(long)]
        input: f64,
        #[arg(long)]
        output: f64,
        /// Input served from the prompt cache (default: the input price).
        #[arg(long)]
        cached_input: Option<f64>,
        /// Anthropic prompt-cache writes (default: 0).
        #[arg(long)]
        cache_creation: Option<f64>,
    },
    /// Delete a price set with `set`: the shipped price, if any, applies again.
    Delete { model: String },
}

#[derive(Subcommand)]
enum AccountsAction {
    /// Clear an account's cooldown or runtime disable.
    Reset { name: String },
    /// Refresh a sign-in account's token now.
    Refresh { name: String },
    /// Probe an account now with its platform's cheapest request (no quota used); a pass brings
    /// an account out for an error back. Exits non-zero when the probe failed.
    Test { name: String },
    /// Sign a ChatGPT (openai) or Claude (anthropic) account in: prints the provider's link
    /// (OAuth authorization code with PKCE), reads back the address it led to (or the code),
    /// and creates the account on the running server.
    Login {
        /// `openai` or `anthropic`.
        #[arg(value_parser = ["openai", "anthropic"])]
        platform: String,
        /// The new account's name.
        #[arg(long)]
        name: String,
        /// The account's upstream base URL (default: the platform's).
        #[arg(long)]
        base_url: Option<String>,
        /// Groups, comma-separated (default: default).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        /// Lower is tried first (default 0).
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
    },
}

pub fn run() -> ExitCode {
    // A command's code, or the code of the configuration error that stopped it.
    match command(Cli::parse().command) {
        Ok(code) | Err(code) => code,
    }
}

fn command(command: Command) -> Result<ExitCode, ExitCode> {
    Ok(match command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Accounts {
            config,
            url,
            json,
            action,
        } => {
            let config = load(config)?;
            let action = match action {
                None => accounts::Action::List { json },
                Some(AccountsAction::Reset { name }) => accounts::Action::Reset(name),
                Some(AccountsAction::Refresh { name }) => accounts::Action::Refresh(name),
                Some(AccountsAction::Test { name }) => accounts::Action::Test(name),
                Some(AccountsAction::Login {
                    platform,
                    name,
                    base_url,
                    groups,
                    priority,
                }) => {
                    let mut finish = serde_json::json!({ "name": name });
                    if let Some(v) = base_url {
                        finish["base_url"] = v.into();
                    }
                    if let Some(v) = groups {
                        finish["groups"] = v.into();
                    }
                    if let Some(v) = priority {
                        finish["priority"] = v.into();
                    }
                    return Ok(accounts::login(&config, url, &platform, finish));
                }
            };
            accounts::run(&config, url, action)
        }
        Command::Keys {
            config,
            url,
            json,
            action,
        } => {
            let config = load(config)?;
            let action = match action {
                None | Some(KeysAction::List) => keys::Action::List { json },
                Some(KeysAction::Create {
                    name,
                    group,
                    rpm,
                    daily_spend,
                    monthly_spend,
                    models,
                    expires_in,
                    concurrency,
                }) => keys::Action::Create(keys::NewKey {
                    name,
                    group,
                    rpm,
                    daily_spend,
                    monthly_spend,
                    models,
                    expires_in,
                    concurrency,
                }),
                Some(KeysAction::Disable { name }) => keys::Action::Disable(name),
            };
            keys::run(&config, url, action)
        }
        Command::Prices {
            config,
            url,
            json,
            action,
        } => {
            let config = load(config)?;
            let action = match action {
                None | Some(PricesAction::List) => prices::Action::List { json },
                Some(PricesAction::Set {
                    model,
                    input,
                    output,
                    cached_input,
                    cache_creation,
                }) => prices::Action::Set {
                    model,
                    input,
                    output,
                    cached_input,
                    cache_creation,
                },
                Some(PricesAction::Delete { model }) => prices::Action::Delete(model),
            };
            prices::run(&config, url, action)
        }
        Command::Audit {
            config,
            url,
            limit,
            action,
            since,
            json,
        } => {
            let config = load(config)?;
            audit::run(
                &config,
                url,
                &audit::Query {
                    limit,
                    action,
                    since,
                    json,
                },
            )
        }
        Command::Reload { config, url, json } => {
            let config = load(config)?;
            reload::run(&config, url, json)
        }
        Command::Usage {
            config,
            url,
            since,
            key,
            last,
            json,
        } => {
            let config = load(config)?;
            usage::run(
                &config,
                url,
                &usage::Query {
                    since,
                    key,
                    last,
                    json,
                },
            )
        }
        Command::Store {
            action:
                StoreAction::Copy {
                    from,
                    to,
                    encryption_key,
                },
        } => store::copy_command(store::CopyArgs {
            from,
            to,
            encryption_key,
        }),
        Command::ConfigReference => {
            print!("{}", config::reference::markdown_table());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => completions::run(shell),
    })
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
    // Held to the end of `serve`: dropping it exports the spans still queued.
    let _telemetry = crate::telemetry::init(&config.log, &config.telemetry);
    // Single-threaded: the main runtime is worker 0 (src/server/workers.rs); `server.workers`
    // adds threads with runtimes of their own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
            // Once, on stderr: a terminal shows stdout and stderr together, so logging it too
            // printed it twice.
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
