//! Golden cases for the translators, stored as files so a reviewer reads them as wire data.
//!
//! A case is one JSON file `tests/translate/<direction>/<name>.json` with a `"description"` and
//! any of these parts, each checked when present:
//! - `"request"`: the client's body, and `"target"`: `{"upstream_model": …, "codex_backend": …}`
//!   (default: the request's model, `false`); with `"upstream_request"` (the expected upstream
//!   body, compared as JSON values) or `"untranslatable"` (`{"field": …}`: the expected refusal).
//! - `"upstream_events"`: the upstream's SSE events, each `{"event": name-or-null, "data": JSON
//!   value or string}`, and `"client_events"`: the expected client events in the same form; the
//!   translator is fed each event, then `finish` (or `fail` when the case has `"fail": {"code":
//!   …, "message": …}` after the events; a translator that reports a malformed event gets
//!   `fail` with code `bad_upstream_answer`, as the relay does after output). With a `"request"`,
//!   the translator is made by
//!   `stream_for` from it, else by `stream`.
//! - `"upstream_json"` and `"client_json"`: a whole answer each way.
//!
//! `"client_model"` (default: the request's `model`, else `"client-model"`) is the name the
//! client asked for. When a case has a `"request"`, the answer parts go through
//! `stream_for`/`json_for` with it.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde_json::Value;

use super::{Target, Translation};
use crate::protocol::sse::SseScanner;

/// Runs every case of `tests/translate/<direction>/` through `T`; panics with every mismatch.
/// Returns the number of cases run (callers assert a minimum so an empty folder cannot pass).
pub fn run_all<T: Translation>(direction: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/translate")
        .join(direction);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable case");
        let case: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        if let Err(why) = run_case::<T>(&case) {
            failures.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "golden cases failed:\n{}",
        failures.join("\n\n")
    );
    files.len()
}

fn run_case<T: Translation>(case: &Value) -> Result<(), String> {
    let client_model = case["client_model"]
        .as_str()
        .or_else(|| case["request"]["model"].as_str())
        .unwrap_or("client-model")
        .to_string();
    if let Some(request) = case.get("request") {
        let body = serde_json::to_vec(request).expect("serialisable");
        let target = Target {
            upstream_model: case["target"]["upstream_model"]
                .as_str()
                .unwrap_or(&client_model)
                .to_string(),
            codex_backend: case["target"]["codex_backend"].as_bool().unwrap_or(false),
        };
        let got = T::request(&body, &target);
        match (
            case.get("upstream_request"),
            case.get("untranslatable"),
            got,
        ) {
            (Some(want), _, Ok(got)) => {
                let got: Value = serde_json::from_slice(&got.body)
                    .map_err(|e| format!("translated request is not JSON: {e}"))?;
                same("upstream_request", want, &got)?;
            }
            (_, Some(want), Err(refusal)) => {
                if want["field"].as_str() != Some(refusal.field.as_str()) {
                    return Err(format!(
                        "refused on {:?}, expected {}",
                        refusal.field, want["field"]
                    ));
                }
            }
            (_, Some(_), Ok(got)) => {
                return Err(format!(
                    "expected a refusal, got {}",
                    String::from_utf8_lossy(&got.body)
                ))
            }
            (_, None, Err(refusal)) => return Err(format!("unexpected refusal: {refusal}")),
            (None, None, Ok(_)) => {}
        }
    }
    if let Some(events) = case.get("upstream_events") {
        let mut translator = match case.get("request") {
            Some(request) => T::stream_for(
                &serde_json::to_vec(request).expect("serialisable"),
                &client_model,
            ),
            None => T::stream(&client_model),
        };
        let mut out = BytesMut::new();
        let mut scanner = SseScanner::new();
        for event in events.as_array().ok_or("upstream_events is not a list")? {
            scanner.feed(&frame(event), |e| translator.event(&e, &mut out));
        }
        // A malformed event ends the stream the way the relay ends it (after output).
        let malformed = translator.malformed().map(str::to_owned);
        if let Some(why) = &malformed {
            if case.get("fail").is_none() {
                translator.fail("bad_upstream_answer", why, &mut out);
            }
        }
        match case.get("fail") {
            _ if malformed.is_some() => {}
            Some(fail) => translator.fail(
                fail["code"].as_str().unwrap_or("upstream_error"),
                fail["message"].as_str().unwrap_or(""),
                &mut out,
            ),
            None => translator.finish(&mut out),
        }
        let got = parse_events(&out)?;
        let want = case.get("client_events").ok_or("client_events missing")?;
        same("client_events", want, &Value::Array(got))?;
    }
    if let Some(upstream) = case.get("upstream_json") {
        let body = serde_json::to_vec(upstream).expect("serialisable");
        let got = match case.get("request") {
            Some(request) => T::json_for(
                &body,
                &serde_json::to_vec(request).expect("serialisable"),
                &client_model,
            )?,
            None => T::json(&body, &client_model)?,
        };
        let got: Value =
            serde_json::from_slice(&got).map_err(|e| format!("client JSON is not JSON: {e}"))?;
        let want = case.get("client_json").ok_or("client_json missing")?;
        same("client_json", want, &got)?;
    }
    Ok(())
}

/// One case event as SSE bytes.
fn frame(event: &Value) -> Vec<u8> {
    let mut text = String::new();
    if let Some(name) = event["event"].as_str() {
        text.push_str(&format!("event: {name}\n"));
    }
    let data = match &event["data"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.push_str(&format!("data: {data}\n\n"));
    text.into_bytes()
}

/// The translator's output back into case form. Data that is JSON is compared as JSON.
fn parse_events(out: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("output is not UTF-8: {e}"))?;
    if !text.is_empty() && !text.ends_with("\n\n") {
        return Err(format!("output does not end with a whole event: {text:?}"));
    }
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let mut name = Value::Null;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Value::String(n.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push(d);
            } else {
                return Err(format!("unexpected line in output: {line:?}"));
            }
        }
        let data = data.join("\n");
        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        events.push(serde_json::json!({"event": name, "data": data}));
    }
    Ok(events)
}

/// Compares expected and actual; in the expected value, the string `"<any>"` matches anything
/// (ids and timestamps the translator makes up).
fn same(what: &str, want: &Value, got: &Value) -> Result<(), String> {
    if matches(want, got) {
        Ok(())
    } else {
        Err(format!(
            "{what} differs\n  expected: {}\n  got:      {}",
            want, got
        ))
    }
}

fn matches(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::String(w), _) if w == "<any>" => true,
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(w, g)| matches(w, g))
        }
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, w)| g.get(k).is_some_and(|g| matches(w, g)))
        }
        _ => want == got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_matches_everything_and_objects_must_have_the_same_keys() {
        let want = serde_json::json!({"id": "<any>", "n": [1, 2]});
        assert!(matches(
            &want,
            &serde_json::json!({"id": "x1", "n": [1, 2]})
        ));
        assert!(!matches(
            &want,
            &serde_json::json!({"id": "x1", "n": [1, 2], "extra": 0})
        ));
        assert!(!matches(
            &want,
            &serde_json::json!({"id": "x1", "n": [2, 1]})
        ));
    }

    #[test]
    fn output_events_are_parsed_back_with_json_data() {
        let events = parse_events(b"event: a\ndata: {\"x\":1}\n\ndata: [DONE]\n\n").unwrap();
        assert_eq!(
            Value::Array(events),
            serde_json::json!([{"event": "a", "data": {"x": 1}}, {"event": null, "data": "[DONE]"}])
        );
        assert!(parse_events(b"data: {}\n").is_err());
    }
}
