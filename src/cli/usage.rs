//! `subrelay usage [--since 24h] [--key NAME]`: totals per key and per day, then the latest
//! requests, from the running server's admin API.

use std::process::ExitCode;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::admin_client::{call, cell, table};
use crate::config::Config;

pub struct Query {
    pub since: Duration,
    pub key: Option<String>,
    /// Latest requests to list.
    pub last: u32,
    pub json: bool,
}

pub fn run(config: &Config, url: Option<String>, query: &Query) -> ExitCode {
    match report(config, url, query) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("subrelay: {message}");
            ExitCode::FAILURE
        }
    }
}

fn report(config: &Config, url: Option<String>, query: &Query) -> Result<String, String> {
    let from = crate::store::now_secs() - i64::try_from(query.since.as_secs()).unwrap_or(0);
    let mut filter = format!("from={from}");
    if let Some(key) = &query.key {
        filter.push_str(&format!("&key={}", encode(key)));
    }
    let by_key = call(
        config,
        url.clone(),
        Method::GET,
        &format!("/admin/api/usage/totals?by=key&{filter}"),
        None,
    )?;
    let by_day = call(
        config,
        url.clone(),
        Method::GET,
        &format!("/admin/api/usage/totals?by=day&{filter}"),
        None,
    )?;
    let rows = call(
        config,
        url,
        Method::GET,
        &format!("/admin/api/usage?limit={}&{filter}", query.last.max(1)),
        None,
    )?;
    if query.json {
        let all = serde_json::json!({ "by_key": by_key, "by_day": by_day, "requests": rows });
        return Ok(serde_json::to_string_pretty(&all).unwrap_or_default() + "\n");
    }
    let since = humantime::format_duration(query.since);
    let mut out = format!("usage in the last {since}\n\n");
    out.push_str(&totals_table("KEY", &by_key));
    out.push('\n');
    out.push_str(&totals_table("DAY (UTC)", &by_day));
    out.push('\n');
    out.push_str(&format!(
        "latest requests ({} of {})\n",
        rows["rows"].as_array().map_or(0, Vec::len),
        cell(&rows["total"])
    ));
    out.push_str(&rows_table(&rows));
    Ok(out)
}

fn totals_table(first: &str, body: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<[String; 5]> = body["totals"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|t| {
            [
                cell(&t["bucket"]),
                cell(&t["requests"]),
                cell(&t["input_tokens"]),
                cell(&t["output_tokens"]),
                format!("${:.4}", t["cost_usd"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    table([first, "REQUESTS", "INPUT", "OUTPUT", "COST"], &rows)
}

fn rows_table(body: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<[String; 8]> = body["rows"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|r| {
            let at = r["at_ms"].as_u64().map_or("-".to_owned(), |ms| {
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                    .to_string()
            });
            let cost = if r["priced"] == false {
                "unpriced".to_owned()
            } else {
                format!("${:.4}", r["cost_usd"].as_f64().unwrap_or(0.0))
            };
            [
                at,
                cell(&r["key"]),
                cell(&r["account"]),
                cell(&r["model"]),
                cell(&r["status"]),
                cell(&r["input_tokens"]),
                cell(&r["output_tokens"]),
                cost,
            ]
        })
        .collect();
    table(
        [
            "TIME", "KEY", "ACCOUNT", "MODEL", "STATUS", "INPUT", "OUTPUT", "COST",
        ],
        &rows,
    )
}

/// Percent-encodes a query value (key names are simple, but a space or `&` must not break it).
pub(super) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
