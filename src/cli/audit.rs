//! `subrelay audit [--limit N] [--action PREFIX] [--since 7d] [--json]`: the running server's
//! audit trail (who changed which key, account, group or setting, when, from where), newest
//! first, from the admin API.

use std::process::ExitCode;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::admin_client::{call, cell, table};
use super::usage::encode;
use crate::config::Config;

pub struct Query {
    /// Rows, 1–1000.
    pub limit: u32,
    /// Actions starting with this.
    pub action: Option<String>,
    /// How far back.
    pub since: Option<Duration>,
    pub json: bool,
}

pub fn run(config: &Config, url: Option<String>, query: &Query) -> ExitCode {
    let mut path = format!("/admin/api/audit?limit={}", query.limit.clamp(1, 1000));
    if let Some(action) = &query.action {
        path.push_str(&format!("&action={}", encode(action)));
    }
    if let Some(since) = query.since {
        let from = crate::store::now_secs() - i64::try_from(since.as_secs()).unwrap_or(0);
        path.push_str(&format!("&since={from}"));
    }
    match call(config, url, Method::GET, &path, None) {
        Ok(page) if query.json => {
            print!(
                "{}",
                serde_json::to_string_pretty(&page).unwrap_or_default() + "\n"
            );
            ExitCode::SUCCESS
        }
        Ok(page) => {
            print!("{}", describe(&page));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("subrelay: {message}");
            ExitCode::FAILURE
        }
    }
}

fn describe(page: &Value) -> String {
    let empty = Vec::new();
    let entries = page["entries"].as_array().unwrap_or(&empty);
    if entries.is_empty() {
        return "no audit entries\n".to_owned();
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            let time = e["at_ms"].as_i64().map_or("-".to_owned(), |ms| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs()),
                )
                .to_string()
            });
            [
                time,
                cell(&e["actor"]),
                cell(&e["client"]),
                cell(&e["action"]),
                cell(&e["target"]),
                changed(&e["before"], &e["after"]),
            ]
        })
        .collect();
    let mut out = table(
        ["TIME", "WHO", "CLIENT", "ACTION", "TARGET", "CHANGED"],
        &rows,
    );
    if page["next_cursor"].is_i64() {
        out.push_str("(more: raise --limit, or page with GET /admin/api/audit?cursor=)\n");
    }
    out
}

/// The top-level fields whose value differs between before and after (`-` for a creation or
/// deletion, which changes the whole thing).
fn changed(before: &Value, after: &Value) -> String {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return "-".to_owned();
    };
    let fields: Vec<&str> = after
        .iter()
        .filter(|(field, value)| before.get(*field) != Some(value))
        .map(|(field, _)| field.as_str())
        .filter(|field| {
            *field != "restart_needed" && *field != "requested_by" && *field != "updated_at"
        })
        .collect();
    if fields.is_empty() {
        "-".to_owned()
    } else {
        fields.join(",")
    }
}
