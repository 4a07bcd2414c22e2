//! Scripted behaviour and bookkeeping: per-credential steps, model-name fallback, statuses with
//! headers, delays, cuts, hangs, counts and records.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use subrelay_mock::{Behavior, MockUpstream, Usage};
use support::*;

#[tokio::test]
async fn steps_are_popped_per_credential_then_the_model_decides() {
    let mock = MockUpstream::start().await;
    mock.script(
        "a",
        vec![
            Behavior {
                status: Some(429),
                headers: vec![
                    ("retry-after".into(), "7".into()),
                    ("x-codex-primary-used-percent".into(), "100".into()),
                ],
                ..Behavior::default()
            },
            Behavior {
                events: Some(1),
                usage: Some(Usage {
                    input: 100,
                    cached: 40,
                    output: 5,
                    reasoning: 1,
                    ..Usage::default()
                }),
                ..Behavior::default()
            },
        ],
    );
    let body = codex_body("gpt-5.1-codex+events=4");

    let limited = post(&mock.url(), CODEX, "a", &body).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(limited.headers()["x-codex-primary-used-percent"], "100");
    let error = json_of(limited).await;
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(error["error"]["param"], Value::Null);
    assert!(error["error"]["message"].is_string());
    assert!(error["error"]["type"].is_string());

    // Another credential is not affected by "a"'s script.
    let other = read_sse(post(&mock.url(), CODEX, "b", &body).await).await;
    assert_eq!(names(&other), success_order(4));

    let second = read_sse(post(&mock.url(), CODEX, "a", &body).await).await;
    assert_eq!(names(&second), success_order(1));
    let usage = &second.last().unwrap().data["response"]["usage"];
    assert_eq!(usage["input_tokens"], 100);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 40);
    assert_eq!(usage["total_tokens"], 105);

    // Queue empty: back to the model options.
    let third = read_sse(post(&mock.url(), CODEX, "a", &body).await).await;
    assert_eq!(names(&third), success_order(4));

    assert_eq!(mock.calls("a"), 3);
    assert_eq!(mock.calls("b"), 1);
    assert_eq!(mock.total_calls(), 4);
    assert_eq!(
        mock.completed(),
        4,
        "error bodies written to their end count too"
    );
}

#[tokio::test]
async fn refused_bodies_do_not_consume_a_step_and_headers_ride_on_success() {
    let mock = MockUpstream::start().await;
    mock.script(
        "a",
        vec![Behavior {
            headers: vec![("x-codex-primary-used-percent".into(), "42".into())],
            ..Behavior::default()
        }],
    );
    let mut refused = codex_body("m");
    refused["store"] = json!(true);
    assert_eq!(post(&mock.url(), CODEX, "a", &refused).await.status(), 400);

    let ok = post(&mock.url(), CODEX, "a", &codex_body("m")).await;
    assert_eq!(ok.headers()["x-codex-primary-used-percent"], "42");
    assert_eq!(names(&read_sse(ok).await), success_order(3));
}

#[tokio::test]
async fn model_options_give_status_and_retry_after() {
    let mock = MockUpstream::start().await;
    let response = post(
        &mock.url(),
        API,
        "k",
        &json!({"model": "gpt-5+status=503+retry_after=2"}),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(json_of(response).await["error"]["type"], "server_error");
}

#[tokio::test]
async fn api_key_header_is_a_credential_too() {
    let mock = MockUpstream::start().await;
    mock.script(
        "sk-x",
        vec![Behavior {
            status: Some(401),
            ..Behavior::default()
        }],
    );
    let response = reqwest::Client::new()
        .post(format!("{}{API}", mock.url()))
        .header("x-api-key", "sk-x")
        .body(json!({"model": "gpt-5"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(mock.calls("sk-x"), 1);
}

#[tokio::test]
async fn cut_mid_stream_ends_the_body_with_an_error() {
    let mock = MockUpstream::start().await;
    for interval in [Duration::ZERO, Duration::from_millis(2)] {
        mock.script(
            "tok",
            vec![Behavior {
                cut_after: Some(4),
                event_interval: interval,
                ..Behavior::default()
            }],
        );
        let response = post(&mock.url(), CODEX, "tok", &codex_body("m")).await;
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => received.extend_from_slice(&bytes),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(
            failed,
            "a cut stream must not end cleanly (interval {interval:?})"
        );
        let events = parse_sse(std::str::from_utf8(&received).unwrap());
        assert_eq!(names(&events), success_order(3)[..4]);
    }
    assert_eq!(mock.completed(), 0);

    // The model-name form, beyond the end: clamped before the terminal event.
    let response = post(&mock.url(), CODEX, "tok", &codex_body("m+cut=99")).await;
    assert!(response.text().await.is_err());
    assert_eq!(mock.completed(), 0);
}

#[tokio::test]
async fn hang_after_keeps_the_stream_open_without_a_terminal_event() {
    let mock = MockUpstream::start().await;
    let response = post(&mock.url(), CODEX, "tok", &codex_body("m+hang=2+events=2")).await;
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_millis(150), async {
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.unwrap());
        }
    })
    .await;
    assert!(read.is_err(), "the stream must still be open");
    let events = parse_sse(std::str::from_utf8(&received).unwrap());
    assert_eq!(names(&events), ["response.created", "response.in_progress"]);
    assert_eq!(mock.completed(), 0);
}

#[tokio::test]
async fn delays_are_counted_on_arrival() {
    let mock = MockUpstream::start().await;
    mock.script(
        "slow",
        vec![Behavior {
            delay_headers: Duration::from_millis(150),
            ..Behavior::default()
        }],
    );
    let url = mock.url();
    let started = Instant::now();
    let pending =
        tokio::spawn(async move { post(&url, CODEX, "slow", &codex_body("m")).await.status() });
    while mock.calls("slow") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !pending.is_finished(),
        "counted while the headers are still held back"
    );
    assert_eq!(pending.await.unwrap(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    // Never answering: the client gives up, the call is still counted.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let body = codex_body("m+hang_headers");
    let never = client
        .post(format!("{}{CODEX}", mock.url()))
        .bearer_auth("never")
        .body(body.to_string())
        .send()
        .await;
    assert!(never.unwrap_err().is_timeout());
    assert_eq!(mock.calls("never"), 1);
}

#[tokio::test]
async fn records_counts_and_reset() {
    let mock = MockUpstream::start().await;
    let body = codex_body("m");
    let response = reqwest::Client::new()
        .post(format!("{}{CODEX}?trace=1", mock.url()))
        .bearer_auth("tok")
        .header("chatgpt-account-id", "acc-1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    response.text().await.unwrap();

    let records = mock.requests();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.method, http::Method::POST);
    assert_eq!(record.path, "/backend-api/codex/responses?trace=1");
    assert_eq!(record.credential.as_deref(), Some("tok"));
    assert_eq!(record.headers["chatgpt-account-id"], "acc-1");
    assert_eq!(serde_json::from_slice::<Value>(&record.body).unwrap(), body);

    let counts = json_of(
        reqwest::get(format!("{}/__mock/calls", mock.url()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        counts,
        json!({"total": 1, "completed": 1, "by_credential": {"tok": 1}})
    );

    mock.script(
        "tok",
        vec![Behavior {
            status: Some(500),
            ..Behavior::default()
        }],
    );
    let reset = reqwest::Client::new()
        .post(format!("{}/__mock/reset", mock.url()))
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    assert_eq!(
        (mock.total_calls(), mock.completed(), mock.calls("tok")),
        (0, 0, 0)
    );
    assert!(mock.requests().is_empty());
    // The script went too.
    assert_eq!(post(&mock.url(), CODEX, "tok", &body).await.status(), 200);
    mock.reset();
    assert_eq!(mock.total_calls(), 0);
}

#[tokio::test]
async fn dropping_the_mock_stops_serving() {
    let mock = MockUpstream::start().await;
    let url = mock.url();
    drop(mock);
    tokio::task::yield_now().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(client.post(format!("{url}{CODEX}")).send().await.is_err());
}

#[tokio::test]
async fn dropping_the_mock_ends_hanging_answers() {
    let mock = MockUpstream::start().await;
    let response = post(&mock.url(), CODEX, "tok", &codex_body("m+hang=1")).await;
    let mut stream = response.bytes_stream();
    assert!(
        stream.next().await.unwrap().is_ok(),
        "the first event arrives"
    );
    drop(mock);
    let rest = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    let rest = rest.expect("the connection must close when the mock is dropped");
    assert!(
        !matches!(rest, Some(Ok(_))),
        "no more data after the drop: {rest:?}"
    );
}

#[tokio::test]
async fn a_scripted_status_can_carry_another_error_code() {
    let mock = MockUpstream::start().await;
    mock.script(
        "a",
        vec![
            Behavior {
                status: Some(402),
                error_code: Some("deactivated_workspace".into()),
                ..Behavior::default()
            },
            Behavior {
                status: Some(402),
                ..Behavior::default()
            },
        ],
    );
    let body = codex_body("gpt-5.1-codex");
    let first = post(&mock.url(), CODEX, "a", &body).await;
    assert_eq!(first.status(), 402);
    let error = json_of(first).await;
    assert_eq!(error["error"]["code"], "deactivated_workspace");
    assert!(error["error"]["message"].is_string());
    // Control: without it, the status's usual code (none for a 402).
    let second = json_of(post(&mock.url(), CODEX, "a", &body).await).await;
    assert_eq!(second["error"]["code"], Value::Null);
}
