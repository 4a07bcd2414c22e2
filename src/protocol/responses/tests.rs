use super::*;

#[test]
fn inspect_reads_routing_facts_only() {
    let got = inspect(br#"{"model":"gpt-5","input":[{"type":"compaction","encrypted_content":"x"}],"stream":true,"prompt_cache_key":"pk"}"#).unwrap();
    assert_eq!(got.model, "gpt-5");
    assert!(got.stream);
    assert_eq!(got.prompt_cache_key.as_deref(), Some("pk"));
    assert!(!inspect(br#"{"model":"m"}"#).unwrap().stream);
    assert_eq!(
        inspect(b"[1]").unwrap_err(),
        "the request body must be a JSON object"
    );
    assert_eq!(
        inspect(br#"{"input":"hi"}"#).unwrap_err(),
        "`model` is required"
    );
    assert!(inspect(b"{\"model\":")
        .unwrap_err()
        .starts_with("the request body is not valid JSON"));
}

#[test]
fn codex_normalisation_edits_top_level_fields_and_copies_the_rest_verbatim() {
    let body = br#"{"model":"gpt-5","input":"hello","store":true,"reasoning":{"effort":"high","x":1.50},"unknown":[1, 2]}"#;
    let out = rewrite(
        body,
        &BodyEdits {
            codex: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(
        text.contains(r#""reasoning":{"effort":"high","x":1.50}"#),
        "{text}"
    );
    assert!(text.contains(r#""unknown":[1, 2]"#), "{text}");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["store"], false);
    assert_eq!(v["stream"], true);
    assert_eq!(v["input"][0]["role"], "user");
    assert_eq!(v["input"][0]["content"], "hello");
    assert_eq!(v["instructions"], DEFAULT_INSTRUCTIONS);

    let compact = rewrite(
        br#"{"model":"gpt-5","input":[],"instructions":"keep","store":false,"stream":false,"prompt_cache_key":"client"}"#,
        &BodyEdits {
            codex: Some(true),
            model: Some("upstream-model"),
            prompt_cache_key: Some("derived"),
        },
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&compact).unwrap();
    assert!(v.get("store").is_none() && v.get("stream").is_none());
    assert_eq!(v["instructions"], "keep");
    assert_eq!(v["model"], "upstream-model");
    assert_eq!(v["prompt_cache_key"], "derived");
}

#[test]
fn usage_from_json_and_terminal_events() {
    let usage = usage_of_json(br#"{"id":"r","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":6,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":16}}"#).unwrap().unwrap();
    assert_eq!(
        usage,
        TokenUsage {
            input: 10,
            cached_input: 4,
            cache_creation: 0,
            output: 6,
            reasoning: 2,
            unparsed: false,
        }
    );
    assert!(usage_of_json(b"not json").is_err());
    let (t, _) = read_terminal(br#"{"type":"response.failed","response":{"id":"resp_1","error":{"code":"rate_limit_exceeded","message":"slow down"}}}"#);
    assert_eq!(t.response_id.as_deref(), Some("resp_1"));
    assert_eq!(t.error_code.as_deref(), Some("rate_limit_exceeded"));
    let (t, _) = read_terminal(br#"{"type":"error","code":"server_error","message":"boom"}"#);
    assert_eq!(t.error_message.as_deref(), Some("boom"));
}

#[test]
fn aggregation_rebuilds_empty_output_from_items() {
    let mut agg = Aggregator::default();
    agg.on_output_item_done(
        br#"{"type":"response.output_item.done","output_index":1,"item":{"id":"b"}}"#,
    );
    agg.on_output_item_done(
        br#"{"type":"response.output_item.done","output_index":0,"item":{"id":"a"}}"#,
    );
    agg.on_terminal(
        br#"{"type":"response.completed","response":{"id":"r","object":"response","output":[]}}"#,
    );
    let v: Value = serde_json::from_slice(&agg.finish().unwrap()).unwrap();
    assert_eq!(v["output"][0]["id"], "a");
    assert_eq!(v["output"][1]["id"], "b");
    assert!(Aggregator::default().finish().is_none());
}

#[test]
fn failed_event_is_a_valid_sse_event() {
    let event = failed_event(Some("resp_9"), "stream_stalled", "no data");
    let text = std::str::from_utf8(&event).unwrap();
    assert!(text.starts_with("event: response.failed\ndata: {"));
    assert!(text.ends_with("}\n\n"));
    let data: Value =
        serde_json::from_str(text["event: response.failed\ndata: ".len()..].trim()).unwrap();
    assert_eq!(data["response"]["id"], "resp_9");
    assert_eq!(data["response"]["error"]["code"], "stream_stalled");
}

#[test]
fn a_usage_object_of_the_wrong_types_is_unparsed_not_zero() {
    let usage = usage_of_json(br#"{"id":"r","usage":{"input_tokens":"lots","output_tokens":6}}"#)
        .unwrap()
        .unwrap();
    assert!(usage.unparsed);
    assert_eq!(usage.input + usage.output, 0);
    // In a terminal event the rest of the event is still read.
    let (t, usage) = read_terminal(
        br#"{"type":"response.completed","response":{"id":"resp_9","usage":{"input_tokens":-1}}}"#,
    );
    assert_eq!(t.response_id.as_deref(), Some("resp_9"));
    assert!(usage.unwrap().unparsed);
    // No usage, or null, is not garbage.
    assert!(usage_of_json(br#"{"id":"r","usage":null}"#)
        .unwrap()
        .is_none());
    let (_, usage) = read_terminal(br#"{"type":"response.completed","response":{"id":"r"}}"#);
    assert!(usage.is_none());
    let fine = usage_of_json(br#"{"usage":{"input_tokens":1}}"#)
        .unwrap()
        .unwrap();
    assert!(!fine.unparsed);
}
