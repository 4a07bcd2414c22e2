//! `subrelay accounts`: the pool's state as a table, and actions on one account, by asking the
//! running server's admin API.

use std::process::ExitCode;

use super::admin_client;
use crate::config::Config;
use crate::pool::AccountView;

pub enum Action {
    List {
        json: bool,
    },
    Reset(String),
    Refresh(String),
    /// Probe the account now (its platform's cheapest request).
    Test(String),
}

pub fn run(config: &Config, url: Option<String>, action: Action) -> ExitCode {
    let (method, path) = match &action {
        Action::List { .. } => (reqwest::Method::GET, "/admin/api/accounts".to_owned()),
        Action::Reset(name) => (
            reqwest::Method::POST,
            format!("/admin/api/accounts/{name}/reset"),
        ),
        Action::Refresh(name) => (
            reqwest::Method::POST,
            format!("/admin/api/accounts/{name}/refresh"),
        ),
        Action::Test(name) => (
            reqwest::Method::POST,
            format!("/admin/api/accounts/{name}/test"),
        ),
    };
    let body = match admin_client::call(config, url, method, &path, None) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("subrelay: {message}");
            return ExitCode::FAILURE;
        }
    };
    match action {
        Action::List { json: true } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            )
        }
        Action::List { json: false } => {
            let accounts: Vec<AccountView> =
                serde_json::from_value(body["accounts"].clone()).unwrap_or_default();
            print!("{}", table(&accounts));
        }
        Action::Reset(name) => println!(
            "account {name} reset: {}",
            body["account"]["state"].as_str().unwrap_or("?")
        ),
        Action::Refresh(name) => println!(
            "account {name} refreshed; token expires {}",
            body["account"]["token_expires_at"]
                .as_str()
                .unwrap_or("(unknown)")
        ),
        Action::Test(name) => {
            let ok = body["probe"]["ok"].as_bool() == Some(true);
            println!(
                "account {name} test {}: {}; now {}",
                if ok { "passed" } else { "failed" },
                body["probe"]["detail"].as_str().unwrap_or("?"),
                body["account"]["state"].as_str().unwrap_or("?")
            );
            if !ok {
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `subrelay accounts login`: the sign-in flow of the dashboard, at the terminal. `finish`
/// holds the account fields (name, base URL, groups, priority).
pub fn login(
    config: &Config,
    url: Option<String>,
    platform: &str,
    mut finish: serde_json::Value,
) -> ExitCode {
    let started = match admin_client::call(
        config,
        url.clone(),
        reqwest::Method::POST,
        "/admin/api/oauth/start",
        Some(serde_json::json!({ "platform": platform })),
    ) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("subrelay: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!("Open this link, sign in, then paste the address it leads to (or the code):");
    println!("{}", started["authorize_url"].as_str().unwrap_or_default());
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() || line.trim().is_empty() {
        eprintln!("subrelay: no address or code given; nothing was created");
        return ExitCode::FAILURE;
    }
    finish["flow"] = started["flow"].clone();
    finish["callback"] = line.trim().into();
    match admin_client::call(
        config,
        url,
        reqwest::Method::POST,
        "/admin/api/oauth/finish",
        Some(finish),
    ) {
        Ok(body) => {
            println!(
                "account {} signed in and added to the pool",
                body["account"]["name"].as_str().unwrap_or("?")
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("subrelay: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The accounts as an aligned text table.
pub fn table(accounts: &[AccountView]) -> String {
    let header = [
        "NAME",
        "PLATFORM",
        "TYPE",
        "STATE",
        "COOLDOWN",
        "IN-FLIGHT",
        "TOKEN EXPIRES",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 8]> = accounts
        .iter()
        .map(|a| {
            let cooldown = match (&a.cooldown_until, &a.cooldown_reason, &a.disabled_reason) {
                (Some(until), Some(why), _) => format!("until {until} ({why})"),
                (_, _, Some(why)) => why.clone(),
                _ => "-".to_owned(),
            };
            let limit = if a.concurrency == 0 {
                "∞".to_owned()
            } else {
                a.concurrency.to_string()
            };
            let mut error = a.last_error.clone().unwrap_or_else(|| "-".to_owned());
            if error.chars().count() > 60 {
                error = error.chars().take(57).collect::<String>() + "...";
            }
            [
                a.name.clone(),
                a.platform.to_string(),
                a.kind.to_string(),
                if a.performance.demoted {
                    format!("{} (demoted)", a.state)
                } else {
                    a.state.clone()
                },
                cooldown,
                format!("{}/{limit}", a.in_flight),
                a.token_expires_at.clone().unwrap_or_else(|| "-".to_owned()),
                error,
            ]
        })
        .collect();
    admin_client::table(header, &rows)
}
