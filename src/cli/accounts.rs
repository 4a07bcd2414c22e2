//! `subrelay accounts`: the pool's state as a table, and actions on one account, by asking the
//! running server's admin API.

use std::process::ExitCode;

use crate::config::Config;
use crate::pool::AccountView;

pub enum Action {
    List { json: bool },
    Reset(String),
    Refresh(String),
}

pub fn run(config: &Config, url: Option<String>, action: Action) -> ExitCode {
    let Some(token) = &config.admin.token else {
        eprintln!("subrelay: the admin API is off; set admin.token in the config (the server must use the same value)");
        return ExitCode::from(2);
    };
    let base = url.unwrap_or_else(|| {
        let host = match config.server.host.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" => "[::1]",
            other => other,
        };
        format!("http://{host}:{}", config.server.port)
    });
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
    let client = reqwest::Client::new();
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
    };
    let answer = runtime.block_on(async {
        let response = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach subrelay at {base}: {e} (is it running? --url sets the address)"
                )
            })?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("unreadable answer from {base}: {e}"))?;
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned();
            return Err(format!("{status}: {message}"));
        }
        Ok(body)
    });
    let body = match answer {
        Ok(body) => body,
        Err(message) => {
            eprintln!("subrelay: {message}");
            return ExitCode::FAILURE;
        }
    };
    match action {
        Action::List { json: true } => println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ),
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
    }
    ExitCode::SUCCESS
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
                a.platform.clone(),
                a.kind.clone(),
                a.state.clone(),
                cooldown,
                format!("{}/{limit}", a.in_flight),
                a.token_expires_at.clone().unwrap_or_else(|| "-".to_owned()),
                error,
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    for row in &rows {
        line(row);
    }
    out
}
