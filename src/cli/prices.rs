//! `subrelay prices list|set|delete`: the price table through the running server's admin API.
//! Prices set here live in the store, so every instance sharing it uses them.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{json, Value};

use super::admin_client::{call, cell, table};
use crate::config::Config;

pub enum Action {
    List {
        json: bool,
    },
    /// USD per million tokens.
    Set {
        model: String,
        input: f64,
        output: f64,
        cached_input: Option<f64>,
        cache_creation: Option<f64>,
    },
    Delete(String),
}

pub fn run(config: &Config, url: Option<String>, action: Action) -> ExitCode {
    let outcome = match action {
        Action::List { json } => {
            call(config, url, Method::GET, "/admin/api/prices", None).map(|body| {
                if json {
                    serde_json::to_string_pretty(&body).unwrap_or_default() + "\n"
                } else {
                    list_table(&body)
                }
            })
        }
        Action::Set {
            model,
            input,
            output,
            cached_input,
            cache_creation,
        } => {
            let body = json!({
                "input": input,
                "output": output,
                "cached_input": cached_input,
                "cache_creation": cache_creation,
            });
            call(config, url, Method::PUT, &path(&model), Some(body)).map(|body| {
                format!(
                    "price of {} set: input {}, cached input {}, output {}, cache writes {} (USD per million tokens)\n",
                    cell(&body["model"]),
                    cell(&body["input"]),
                    cell(&body["cached_input"]),
                    cell(&body["output"]),
                    cell(&body["cache_creation"]),
                )
            })
        }
        Action::Delete(model) => call(config, url, Method::DELETE, &path(&model), None).map(|_| {
            format!("price of {model} deleted: the shipped price (if any) applies again\n")
        }),
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

/// The model's admin API path, its name percent-encoded (a name may hold `/` or `:`).
fn path(model: &str) -> String {
    let mut out = String::from("/admin/api/prices/");
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn list_table(body: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<[String; 6]> = body["prices"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|p| {
            [
                cell(&p["model"]),
                cell(&p["input"]),
                cell(&p["cached_input"]),
                cell(&p["output"]),
                cell(&p["cache_creation"]),
                cell(&p["source"]),
            ]
        })
        .collect();
    table(
        [
            "MODEL",
            "INPUT",
            "CACHED INPUT",
            "OUTPUT",
            "CACHE WRITES",
            "SOURCE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_model_name_is_one_path_segment() {
        assert_eq!(super::path("gpt-5.1"), "/admin/api/prices/gpt-5.1");
        assert_eq!(super::path("org/m:7b"), "/admin/api/prices/org%2Fm%3A7b");
    }
}
