//! The edges of a request: auth, body limits and encodings, discovery routes, and a client that
//! disconnects mid-stream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn missing_unknown_and_disabled_keys_get_openai_shaped_401s() {
    let mock = MockUpstream::start().await;
    let mut yaml = config(&mock, &[apikey("a", "tok-a")], "");
    yaml.push_str("");
    let yaml = yaml.replace(
        "api_keys:\n",
        "api_keys:\n  - key: sk-disabled\n    enabled: false\n",
    );
    let gw = Gateway::start(&yaml);
    let url = gw.responses_url();
    let cases = [
        (None, "missing_api_key"),
        (
            Some(("authorization", "Bearer sk-wrong")),
            "invalid_api_key",
        ),
        (Some(("x-api-key", "sk-disabled")), "api_key_disabled"),
    ];
    for (header, code) in cases {
        let mut request = client().post(&url).json(&body("gpt-5", false));
        if let Some((k, v)) = header {
            request = request.header(k, v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["error"]["code"], code);
        assert!(v["error"]["message"].is_string());
    }
    assert_eq!(mock.total_calls(), 0);
}

#[tokio::test]
async fn bad_json_is_400_and_too_large_is_413_in_openai_shape() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a")],
        "  max_body_size: 2048\n",
    ));
    let response = client()
        .post(gw.responses_url())
        .bearer_auth(KEY)
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let mut big = body("gpt-5", false);
    big["instructions"] = Value::String("x".repeat(4096));
    let response = post(&gw, "/v1/responses", &big).await;
    assert_eq!(response.status(), 413);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");

    // Chunked, without a Content-Length: the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 1500]), Ok(vec![b' '; 1500])];
    let response = client()
        .post(gw.responses_url())
        .bearer_auth(KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(mock.total_calls(), 0);
}

#[tokio::test]
async fn gzip_and_zstd_request_bodies_are_accepted_and_forwarded_decoded() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    let plain = serde_json::to_vec(&body("gpt-5", false)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gzip = gz.finish().unwrap();
    let zstd =
        ruzstd::encoding::compress_to_vec(&plain[..], ruzstd::encoding::CompressionLevel::Fastest);
    for (encoding, bytes) in [("gzip", gzip), ("zstd", zstd)] {
        let response = client()
            .post(gw.responses_url())
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{encoding}");
    }
    for sent in mock.requests() {
        assert_eq!(&sent.body[..], &plain[..]);
        assert!(sent.headers.get("content-encoding").is_none());
    }
}

#[tokio::test]
async fn models_health_and_probes() {
    let mock = MockUpstream::start().await;
    let mut yaml = config(&mock, &[oauth("codex", "tok-c")], "");
    yaml.push_str("    models: [gpt-5.1-codex, gpt-5.1-codex-mini]\n");
    let gw = Gateway::start(&yaml);
    let response = client()
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt-5.1-codex", "gpt-5.1-codex-mini"]);
    let response = client()
        .get(format!("{}/v1/models", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let c = client();
    assert_eq!(
        c.get(format!("{}/healthz", gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(c.head(&gw.url).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&gw.url).send().await.unwrap().status(), 200);
    let response = c.get(format!("{}/nope", gw.url)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unknown_route");
    // A model outside the account's list has no account.
    let response = post(&gw, "/v1/responses", &body("gpt-4o", false)).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_still_gets_its_usage_recorded() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            events: Some(20),
            event_interval: Duration::from_millis(100),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    let mut response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    // Read the first real chunk, then go away.
    let first = response.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(response);
    let records = gw.wait_for_usage(1).await;
    let r = &records[0];
    assert_eq!(r["client_disconnected"], true);
    assert_eq!(
        r["tokens"]["output"], 7,
        "usage read from the upstream after the client left: {r}"
    );
    assert_eq!(mock.completed(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_during_a_compact_keepalive_still_gets_usage_recorded() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            delay_headers: Duration::from_secs(7),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[oauth("a", "tok-a")],
        "  openai_compact_nonstream_keepalive_interval: 5\n",
    ));
    let mut response = post(&gw, "/v1/responses/compact", &body("gpt-5.1-codex", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(&response.chunk().await.unwrap().unwrap()[..], b"\n");
    drop(response);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["client_disconnected"], true, "{}", records[0]);
    assert_eq!(
        records[0]["tokens"]["output"], 7,
        "the upstream call was completed"
    );
    assert_eq!(mock.completed(), 1);
}

/// The same refusal on an Anthropic route and on an OpenAI route: each in its route's shape,
/// with the same status and wording.
#[tokio::test]
async fn refusals_on_messages_are_anthropic_shaped_and_on_responses_openai_shaped() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    // (method, path under /v1/{messages,responses}, status, OpenAI code, Anthropic type)
    let cases = [
        ("GET", "", 405, "method_not_allowed", "not_found_error"),
        // No API key.
        ("POST", "", 401, "missing_api_key", "authentication_error"),
        ("POST", "/batches", 404, "unknown_route", "not_found_error"),
    ];
    for (method, rest, status, code, anthropic_type) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let anthropic = client()
            .request(method.clone(), format!("{}/v1/messages{rest}", gw.url))
            .json(&body("claude-sonnet-4-5", false))
            .send()
            .await
            .unwrap();
        assert_eq!(anthropic.status(), status, "{method} /v1/messages{rest}");
        let a: Value = anthropic.json().await.unwrap();
        assert_eq!(a["type"], "error", "{method} /v1/messages{rest}: {a}");
        assert_eq!(a["error"]["type"], anthropic_type, "{a}");
        assert!(a["error"].get("code").is_none(), "{a}");

        let openai = client()
            .request(method.clone(), format!("{}/v1/responses{rest}", gw.url))
            .json(&body("gpt-5", false))
            .send()
            .await
            .unwrap();
        assert_eq!(openai.status(), status, "{method} /v1/responses{rest}");
        let o: Value = openai.json().await.unwrap();
        assert!(o.get("type").is_none(), "{method} /v1/responses{rest}: {o}");
        assert_eq!(o["error"]["code"], code, "{o}");
        assert_eq!(
            a["error"]["message"].as_str().unwrap(),
            o["error"]["message"]
                .as_str()
                .unwrap()
                .replace("/v1/responses", "/v1/messages"),
            "the same words in either shape"
        );
    }
    assert_eq!(mock.total_calls(), 0);
}
