use super::*;
use crate::translate::golden;

#[test]
fn golden_cases() {
    let ran = golden::run_all::<ResponsesViaChat>("responses_via_chat");
    assert!(ran >= 25, "only {ran} golden cases");
}

/// Prints the translator's answers for the cases in `$RVC_CASES` (a folder of case files
/// without expectations), to review and freeze them as golden cases.
#[test]
#[ignore = "a tool for writing golden cases, not a test"]
fn print_answers() {
    use bytes::BytesMut;
    use serde_json::Value;
    let Ok(dir) = std::env::var("RVC_CASES") else {
        return;
    };
    let mut all = serde_json::Map::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let model = case["client_model"]
            .as_str()
            .or_else(|| case["request"]["model"].as_str())
            .unwrap_or("client-model")
            .to_string();
        let mut got = serde_json::Map::new();
        if let Some(request) = case.get("request") {
            let target = Target {
                upstream_model: case["target"]["upstream_model"]
                    .as_str()
                    .unwrap_or(&model)
                    .into(),
                codex_backend: false,
            };
            match ResponsesViaChat::request(&serde_json::to_vec(request).unwrap(), &target) {
                Ok(t) => {
                    got.insert(
                        "upstream_request".into(),
                        serde_json::from_slice(&t.body).unwrap(),
                    );
                }
                Err(e) => {
                    got.insert(
                        "untranslatable".into(),
                        serde_json::json!({"field": e.field, "message": e.message}),
                    );
                }
            }
        }
        if let Some(events) = case["upstream_events"].as_array() {
            let mut t = ResponsesViaChat::stream(&model);
            let mut out = BytesMut::new();
            let mut scanner = crate::protocol::sse::SseScanner::new();
            for e in events {
                let data = match &e["data"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                scanner.feed(format!("data: {data}\n\n").as_bytes(), |ev| {
                    t.event(&ev, &mut out)
                });
            }
            match case.get("fail") {
                Some(f) => t.fail(
                    f["code"].as_str().unwrap(),
                    f["message"].as_str().unwrap(),
                    &mut out,
                ),
                None => t.finish(&mut out),
            }
            let text = String::from_utf8(out.to_vec()).unwrap();
            let events: Vec<Value> = text
                .split("\n\n")
                .filter(|b| !b.is_empty())
                .map(|b| {
                    let mut lines = b.lines();
                    let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                    let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                    serde_json::json!({"event": name, "data": serde_json::from_str::<Value>(data).unwrap()})
                })
                .collect();
            got.insert("client_events".into(), Value::Array(events));
        }
        if let Some(upstream) = case.get("upstream_json") {
            let body =
                ResponsesViaChat::json(&serde_json::to_vec(upstream).unwrap(), &model).unwrap();
            got.insert("client_json".into(), serde_json::from_slice(&body).unwrap());
        }
        all.insert(
            file.file_name().unwrap().to_string_lossy().into(),
            Value::Object(got),
        );
    }
    println!("RVC-BEGIN{}RVC-END", Value::Object(all));
}
