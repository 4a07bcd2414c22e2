//! `subrelay keys create|list|disable`: API keys through the running server's admin API. The
//! raw key of a new key is printed once; the server keeps only its keyed hash.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{json, Value};

use super::admin_client::{call, cell, table, time};
use crate::config::Config;

pub enum Action {
    List { json: bool },
    Create(NewKey),
    Disable(String),
}

pub struct NewKey {
    pub name: String,
    pub group: Option<String>,
    pub rpm: Option<u32>,
    pub daily_spend: Option<f64>,
    pub monthly_spend: Option<f64>,
    pub models: Vec<String>,
    /// How long the key is valid, from now.
    pub expires_in: Option<std::time::Duration>,
    pub concurrency: Option<u32>,
}

pub fn run(config: &Config, url: Option<String>, action: Action) -> ExitCode {
    let outcome = match action {
        Action::List { json } => {
            call(config, url, Method::GET, "/admin/api/keys", None).map(|body| {
                if json {
                    serde_json::to_string_pretty(&body).unwrap_or_default() + "\n"
                } else {
                    list_table(&body)
                }
            })
        }
        Action::Create(new) => {
            let expires_at = new.expires_in.map(|d| {
                crate::store::now_secs() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
            });
            let body = json!({
                "name": new.name,
                "group": new.group,
                "rpm_limit": new.rpm,
                "daily_spend_limit": new.daily_spend,
                "monthly_spend_limit": new.monthly_spend,
                "allowed_models": (!new.models.is_empty()).then_some(new.models),
                "expires_at": expires_at,
                "concurrency": new.concurrency,
            });
            call(config, url, Method::POST, "/admin/api/keys", Some(body)).map(|body| {
                format!(
                    "created key {} (group {})\n\n    {}\n\nThis is the only time the key is shown: the server keeps only a hash of it.\n",
                    cell(&body["key"]["name"]),
                    cell(&body["key"]["group"]),
                    cell(&body["api_key"]),
                )
            })
        }
        Action::Disable(name) => call(
            config,
            url,
            Method::POST,
            &format!("/admin/api/keys/{name}/disable"),
            None,
        )
        .map(|_| format!("key {name} disabled: its requests now get 401\n")),
    };
    match outcome {
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

fn list_table(body: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<[String; 9]> = body["keys"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|k| {
            let hint = match (k["prefix"].as_str(), k["suffix"].as_str()) {
                (Some(p), Some(s)) if !p.is_empty() => format!("{p}…{s}"),
                _ => "…".to_owned(),
            };
            let limit = |v: &Value, unit: &str| match v.as_f64() {
                Some(n) if n > 0.0 => format!("{n}{unit}"),
                _ => "-".to_owned(),
            };
            let models = k["allowed_models"]
                .as_array()
                .map_or("any".to_owned(), |m| {
                    m.iter().map(cell).collect::<Vec<_>>().join(",")
                });
            [
                cell(&k["name"]),
                hint,
                cell(&k["group"]),
                if k["enabled"] == true { "yes" } else { "no" }.to_owned(),
                time(&k["expires_at"]),
                limit(&k["rpm_limit"], "/min"),
                format!(
                    "{} / {}",
                    limit(&k["daily_spend_limit"], "$/day"),
                    limit(&k["monthly_spend_limit"], "$/month")
                ),
                models,
                cell(&k["source"]),
            ]
        })
        .collect();
    table(
        [
            "NAME", "KEY", "GROUP", "ENABLED", "EXPIRES", "RPM", "SPENDING", "MODELS", "SOURCE",
        ],
        &rows,
    )
}
