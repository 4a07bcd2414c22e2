//! What `subrelay keys` and `subrelay usage` share: one call to the running server's admin API
//! (address and token from the config), and aligned text tables.

use crate::config::Config;

/// Sends one request and returns the JSON answer, or a message for the person at the terminal.
pub fn call(
    config: &Config,
    url: Option<String>,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let Some(token) = &config.admin.token else {
        return Err(no_token(config));
    };
    let base = url.unwrap_or_else(|| {
        let host = match config.server.host.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" => "[::1]",
            other => other,
        };
        format!("http://{host}:{}", config.server.port)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        // The agent tells the audit trail the change came from the CLI (`cli`, not
        // `admin-token`).
        let mut request = reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .header(
                reqwest::header::USER_AGENT,
                format!("{}{}", crate::admin::CLI_AGENT, env!("CARGO_PKG_VERSION")),
            )
            .bearer_auth(token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            format!("cannot reach subrelay at {base}: {e} (is it running? --url sets the address)")
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(serde_json::Value::Null);
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("unreadable answer from {base}: {e}"))?;
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            return Err(format!("{status}: {message}"));
        }
        Ok(body)
    })
}

/// Why the CLI has no admin token, and what to pass: the CLI reads the token (and the server's
/// address) from the same config as the server, `--config FILE` or `SUBRELAY_CONFIG`, with the
/// environment override `ADMIN_TOKEN` on top.
fn no_token(config: &Config) -> String {
    let env = crate::config::env_name("admin.token");
    match &config.origin.file {
        None => format!(
            "no admin token: pass the running server's config file with --config FILE (or SUBRELAY_CONFIG=FILE), or its admin token in the environment variable {env} (--url sets the address if it is not 127.0.0.1:8080)"
        ),
        Some(file) => format!(
            "{} has no admin.token, and the environment variable {env} is not set: a server started with this file has its admin API off. Set admin.token there (for example `admin: {{token: env:{env}}}`), restart the server, and run this again with {env} set",
            file.display()
        ),
    }
}

/// Rows under a header, columns padded to their widest cell.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.to_vec());
    }
    out
}

/// A JSON value as a table cell: `-` for null.
pub fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Unix seconds as an RFC 3339 time (UTC).
pub fn time(secs: &serde_json::Value) -> String {
    secs.as_u64().map_or("-".to_owned(), |s| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
            .to_string()
    })
}
