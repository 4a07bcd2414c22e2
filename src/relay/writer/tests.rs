//! The downstream writer under paused time: when keepalives go out, what the client sees in
//! each state, and that nothing is written after the end or to a client that left.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::time::{sleep, Instant};

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

/// Every body frame with the time (since `start`) it reached the client.
async fn frames(response: Response, start: Instant) -> Vec<(Duration, Bytes)> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            out.push((start.elapsed(), data));
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn json_keepalive_starts_one_interval_after_the_wait_and_precedes_the_body() {
    let start = Instant::now();
    let (mut w, head) = DownstreamWriter::new(BodyMode::Json, Some(secs(10)), "req_1");
    let task = tokio::spawn(async move {
        w.wait(sleep(secs(25))).await;
        assert_eq!(w.state(), WriterState::Committed);
        assert!(w.can_fail_over(), "only whitespace went out");
        w.finish(
            StatusCode::OK,
            json_headers(),
            Bytes::from_static(b"{\"ok\":1}"),
        )
        .await;
        assert_eq!(w.state(), WriterState::Closed);
        w.keepalives_sent()
    });
    let response = head.await.unwrap();
    assert_eq!(
        start.elapsed(),
        secs(10),
        "head goes out with the first keepalive"
    );
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h[CONTENT_TYPE], "application/json");
    assert_eq!(h[CACHE_CONTROL], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get(http::header::CONTENT_LENGTH).is_none());
    let got = frames(response, start).await;
    assert_eq!(
        got,
        vec![
            (secs(10), Bytes::from_static(b"\n")),
            (secs(20), Bytes::from_static(b"\n")),
            (secs(25), Bytes::from_static(b"{\"ok\":1}")),
        ]
    );
    assert_eq!(task.await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_fast_failure_keeps_its_real_status() {
    let (mut w, head) = DownstreamWriter::new(BodyMode::Json, Some(secs(10)), "req_1");
    tokio::spawn(async move {
        w.wait(sleep(secs(9))).await;
        w.finish(
            StatusCode::TOO_MANY_REQUESTS,
            json_headers(),
            Bytes::from_static(b"{\"error\":{}}"),
        )
        .await;
    });
    let response = head.await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["x-request-id"], "req_1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "{\"error\":{}}");
}

#[tokio::test(start_paused = true)]
async fn the_interval_runs_on_across_waits_of_several_attempts() {
    let start = Instant::now();
    let (mut w, head) = DownstreamWriter::new(BodyMode::Json, Some(secs(5)), "r");
    tokio::spawn(async move {
        // Two failed attempts of 4 s each, then a success after 3 s more.
        w.wait(sleep(secs(4))).await;
        w.wait(sleep(secs(4))).await;
        w.wait(sleep(secs(3))).await;
        w.finish(StatusCode::OK, json_headers(), Bytes::from_static(b"{}"))
            .await;
    });
    let got = frames(head.await.unwrap(), start).await;
    let times: Vec<Duration> = got.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![secs(5), secs(10), secs(11)]);
}

#[tokio::test(start_paused = true)]
async fn sse_keepalive_is_a_comment_and_output_ends_failover() {
    let start = Instant::now();
    let (mut w, head) = DownstreamWriter::new(BodyMode::Sse, Some(secs(10)), "r");
    tokio::spawn(async move {
        w.wait(sleep(secs(12))).await;
        assert_eq!(w.state(), WriterState::Committed);
        w.write_output(
            HeaderMap::new(),
            Bytes::from_static(b"event: a\ndata: {}\n\n"),
        )
        .await;
        assert_eq!(w.state(), WriterState::Output);
        assert!(!w.can_fail_over());
        // Idle after output: a comment an interval after the last write.
        w.wait(sleep(secs(15))).await;
        w.close();
        // Nothing after the end.
        w.write_output(HeaderMap::new(), Bytes::from_static(b"late"))
            .await;
        w.wait(sleep(secs(30))).await;
    });
    let response = head.await.unwrap();
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let got = frames(response, start).await;
    assert_eq!(
        got,
        vec![
            (secs(10), Bytes::from_static(b": keepalive\n\n")),
            (secs(12), Bytes::from_static(b"event: a\ndata: {}\n\n")),
            (secs(22), Bytes::from_static(b": keepalive\n\n")),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn keepalive_off_writes_nothing_while_waiting() {
    let start = Instant::now();
    let (mut w, head) = DownstreamWriter::new(BodyMode::Json, None, "r");
    tokio::spawn(async move {
        w.wait(sleep(secs(100))).await;
        w.finish(StatusCode::OK, json_headers(), Bytes::from_static(b"{}"))
            .await;
    });
    let response = head.await.unwrap();
    assert_eq!(start.elapsed(), secs(100));
    // A complete body: hyper sends it with a Content-Length.
    assert_eq!(http_body::Body::size_hint(response.body()).exact(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_left_stops_the_keepalive_and_the_wait_still_completes() {
    let (mut w, head) = DownstreamWriter::new(BodyMode::Json, Some(secs(5)), "r");
    drop(head);
    let finished = tokio::spawn(async move {
        let value = w
            .wait(async {
                sleep(secs(60)).await;
                42
            })
            .await;
        assert!(w.client_gone());
        assert_eq!(w.keepalives_sent(), 0);
        w.finish(StatusCode::OK, json_headers(), Bytes::from_static(b"{}"))
            .await;
        value
    });
    assert_eq!(
        finished.await.unwrap(),
        42,
        "the upstream call is completed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_after_commit_is_noticed() {
    let (mut w, head) = DownstreamWriter::new(BodyMode::Sse, Some(secs(5)), "r");
    let task = tokio::spawn(async move {
        w.wait(sleep(secs(6))).await;
        // the client reads the head, then goes away
        sleep(secs(1)).await;
        w.wait(sleep(secs(20))).await;
        w.write_output(HeaderMap::new(), Bytes::from_static(b"data: x\n\n"))
            .await;
        (w.client_gone(), w.keepalives_sent())
    });
    let response = head.await.unwrap();
    drop(response);
    let (gone, sent) = task.await.unwrap();
    assert!(gone);
    assert_eq!(
        sent, 1,
        "no keepalive reached a dead connection after it closed"
    );
}
