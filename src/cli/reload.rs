//! `subrelay reload`: asks the running server to re-read its configuration file (as SIGHUP
//! does) and prints what took effect and what needs a restart.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::admin_client::call;
use crate::config::Config;

pub fn run(config: &Config, url: Option<String>, json: bool) -> ExitCode {
    match call(config, url, Method::POST, "/admin/api/reload", None) {
        Ok(report) if json => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", describe(&report));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("subrelay: the configuration was not reloaded: {message}");
            ExitCode::FAILURE
        }
    }
}

fn describe(report: &Value) -> String {
    let list = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let file = report["file"].as_str().unwrap_or("the configuration file");
    let applied = list("applied");
    let restart = list("restart_needed");
    let mut text = if applied.is_empty() {
        format!("reloaded {file}: nothing that applies live changed\n")
    } else {
        format!("reloaded {file}: in effect now: {}\n", applied.join(", "))
    };
    if !restart.is_empty() {
        text.push_str(&format!(
            "changed but applied only after a restart: {}\n",
            restart.join(", ")
        ));
    }
    text
}
