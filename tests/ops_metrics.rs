//! Operations: the Prometheus endpoint (scraped directly and by a real Prometheus), the Grafana
//! dashboard's queries, and readiness while draining.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Every series README's "Operating subrelay" lists (as exposed: counters end in `_total`,
/// histograms are looked for by their `_count`).
const SERIES: &[&str] = &[
    "subrelay_requests_total",
    "subrelay_request_duration_seconds_count",
    "subrelay_time_to_first_token_seconds_count",
    "subrelay_upstream_attempts_total",
    "subrelay_failovers_total",
    "subrelay_account_state",
    "subrelay_account_demoted",
    "subrelay_tokens_total",
    "subrelay_cost_usd_total",
    "subrelay_in_flight_requests",
    "subrelay_queue_waiting",
    "subrelay_usage_pending",
    "subrelay_keepalive_bytes_total",
    "subrelay_token_refreshes_total",
    "subrelay_config_reloads_total",
    "subrelay_store_errors_total",
    "subrelay_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
];

/// A gateway with accounts `a` (answers as scripted) and `b`, and metrics on a port of its own.
async fn gateway_with_metrics(mock: &MockUpstream) -> (Gateway, String) {
    let yaml = config(mock, &[apikey("a", "tok-a"), apikey("b", "tok-b")], "")
        + "metrics:\n  listen: 127.0.0.1:0\n";
    let gw = Gateway::start(&yaml);
    let line = gw.wait_for_log("Prometheus metrics on http://").await;
    let at = line.find("http://").unwrap();
    let url: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    (gw, url)
}

async fn scrape(url: &str) -> String {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The sample lines (not comments) of `name`, exactly that series.
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// One success, one 401 (unknown key), one request that fails over from `a` (500) to `b`.
async fn send_the_three_requests(gw: &Gateway, mock: &MockUpstream) {
    let ok = post(gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(ok.status(), 200);
    let refused = client()
        .post(format!("{}/v1/responses", gw.url))
        .bearer_auth("sk-not-a-key")
        .json(&body("gpt-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    mock.script(
        "tok-a",
        vec![Behavior {
            status: Some(500),
            ..Default::default()
        }],
    );
    let failed_over = post(gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(failed_over.status(), 200);
    gw.wait_for_usage(2).await;
}

#[tokio::test]
async fn scrape_exposes_every_listed_series_and_counts_a_refused_request() {
    let mock = MockUpstream::start().await;
    let (gw, url) = gateway_with_metrics(&mock).await;
    send_the_three_requests(&gw, &mock).await;
    let text = scrape(&url).await;
    for name in SERIES {
        assert!(
            !samples(&text, name).is_empty(),
            "{name} missing in:\n{text}"
        );
    }
    let refused = samples(&text, "subrelay_requests_total")
        .into_iter()
        .find(|l| l.contains(r#"status="401""#))
        .unwrap_or_else(|| panic!("no 401 counted:\n{text}"));
    assert_eq!(
        refused,
        r#"subrelay_requests_total{protocol="responses",route="responses",status="401",group="-"} 1"#
    );
    assert!(
        text.contains(r#"subrelay_upstream_attempts_total{account="a",outcome="server_error"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"subrelay_failovers_total{protocol="responses"} 1"#),
        "{text}"
    );
    // Account `a` cooled down after its 500; each account shows exactly one current state.
    for account in ["a", "b"] {
        let states: Vec<&str> = samples(&text, "subrelay_account_state")
            .into_iter()
            .filter(|l| l.contains(&format!(r#"account="{account}""#)))
            .collect();
        assert_eq!(states.len(), 3, "{states:?}");
        assert_eq!(
            states.iter().filter(|l| l.ends_with(" 1")).count(),
            1,
            "{states:?}"
        );
    }
}

/// The metric names a PromQL expression reads (`subrelay_…` and `process_…` words).
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if word.starts_with("subrelay_") || word.starts_with("process_") {
                names.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

#[tokio::test]
async fn grafana_dashboard_queries_only_exposed_series() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana-dashboard.json"
    ))
    .unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"].as_str() {
            exprs.push(query.to_owned());
        }
    }
    let used: std::collections::BTreeSet<String> = exprs.iter().flat_map(|e| names_in(e)).collect();
    assert!(used.len() >= 10, "the dashboard reads too little: {used:?}");

    let mock = MockUpstream::start().await;
    let (gw, url) = gateway_with_metrics(&mock).await;
    send_the_three_requests(&gw, &mock).await;
    let exposition = scrape(&url).await;
    for name in &used {
        assert!(
            !samples(&exposition, name).is_empty(),
            "the dashboard queries {name}, which /metrics does not expose"
        );
    }
}

/// A Prometheus server of the test's own, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<String> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

async fn start_prometheus(binary: &str, target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: subrelay\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    // A free port for its web listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prometheus = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    for _ in 0..600 {
        let ready = client()
            .get(format!("{}/-/ready", prometheus.url))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return prometheus;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("prometheus did not become ready");
}

/// The value of the single series `query` returns, once Prometheus has scraped it.
async fn query_until(prometheus: &Prometheus, query: &str, want: f64) {
    let mut last = Value::Null;
    for _ in 0..300 {
        let response: Value = client()
            .get(format!("{}/api/v1/query", prometheus.url))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(response["status"], "success", "{query}: {response}");
        let value = response["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        if value == Some(want) {
            return;
        }
        last = response;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{query} never became {want}; last answer: {last}");
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_series_back() {
    let Some(binary) = prometheus_binary() else {
        if skip_or_fail("prometheus (Debian package `prometheus`)") {
            return;
        }
        unreachable!("skip_or_fail fails the test in CI");
    };
    let mock = MockUpstream::start().await;
    let (gw, url) = gateway_with_metrics(&mock).await;
    let target = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let prometheus = start_prometheus(&binary, &target).await;
    send_the_three_requests(&gw, &mock).await;
    query_until(
        &prometheus,
        r#"sum(subrelay_requests_total{job="subrelay",status="200"})"#,
        2.0,
    )
    .await;
    query_until(
        &prometheus,
        r#"subrelay_requests_total{job="subrelay",status="401",group="-"}"#,
        1.0,
    )
    .await;
    query_until(
        &prometheus,
        r#"subrelay_failovers_total{job="subrelay",protocol="responses"}"#,
        1.0,
    )
    .await;
    query_until(
        &prometheus,
        r#"subrelay_upstream_attempts_total{job="subrelay",account="a",outcome="server_error"}"#,
        1.0,
    )
    .await;
    query_until(
        &prometheus,
        r#"count(subrelay_build_info{job="subrelay"})"#,
        1.0,
    )
    .await;
}

async fn readyz(gw: &Gateway) -> Option<(u16, Value)> {
    let response = client()
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test]
async fn readyz_says_draining_on_sigterm_while_a_stream_still_finishes() {
    let mock = MockUpstream::start().await;
    let yaml = config(&mock, &[apikey("a", "tok-a")], "");
    let mut gw = Gateway::start_with_env(&yaml, &[("SERVER_DRAIN_DELAY", "3")]);
    let (status, ready) = readyz(&gw).await.unwrap();
    assert_eq!(
        (status, &ready["status"]),
        (200, &Value::from("ready")),
        "{ready}"
    );

    // About 6 s of events: open across the drain delay and past the listener's close.
    let mut stream = post(
        &gw,
        "/v1/responses",
        &body("gpt-5+events=30+interval_ms=200", true),
    )
    .await;
    assert_eq!(stream.status(), 200);
    let mut received = stream.chunk().await.unwrap().unwrap().to_vec();
    gw.sigterm();

    let mut draining = None;
    for _ in 0..100 {
        if let Some((503, body)) = readyz(&gw).await {
            draining = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let draining = draining.expect("/readyz never answered 503 after SIGTERM");
    assert_eq!(draining["reason"], "draining", "{draining}");
    assert_eq!(draining["status"], "not_ready", "{draining}");

    while let Some(chunk) = stream.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(received).unwrap();
    let events = event_types(&text);
    assert_eq!(
        events.last().map(String::as_str),
        Some("response.completed"),
        "{events:?}"
    );
    assert!(gw.wait_exit().success());
}

#[tokio::test]
async fn a_request_span_carries_request_id_key_account_and_attempt() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            status: Some(500),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // The failed first attempt's warning is logged inside the request's span.
    let line = gw.wait_for_log("attempt failed").await;
    let logged: Value = serde_json::from_str(&line).unwrap();
    let span = logged["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
        .unwrap_or_else(|| panic!("no request span on: {line}"));
    assert_eq!(span["request_id"], request_id.as_str(), "{line}");
    assert_eq!(span["key"], "tester", "{line}");
    assert_eq!(span["account"], "a", "{line}");
    assert_eq!(span["attempt"], 1, "{line}");
}

/// An OTLP/HTTP collector of the test's own: takes protobuf trace exports on `/v1/traces`.
async fn otlp_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&spans);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = std::sync::Arc::clone(&sink);
            async move {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        sink.lock().unwrap().extend(scope.spans);
                    }
                }
                // An empty ExportTraceServiceResponse.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

/// The last value given to `key` among a span's attributes, as text.
fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    span.attributes
        .iter()
        .rev()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            Any::StringValue(s) => s.clone(),
            Any::IntValue(n) => n.to_string(),
            other => format!("{other:?}"),
        })
}

// Multi-threaded: the collector must answer while the test thread waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_span_is_exported_over_otlp_with_its_attributes() {
    let (collector, spans) = otlp_receiver().await;
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            status: Some(500),
            ..Default::default()
        }],
    );
    let yaml = config(&mock, &[apikey("a", "tok-a"), apikey("b", "tok-b")], "")
        + &format!("telemetry:\n  otlp_endpoint: {collector}\n");
    let mut gw = Gateway::start(&yaml);
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    gw.wait_for_usage(1).await;
    // The exporter sends what it still holds when the process exits.
    gw.sigterm();
    assert!(gw.wait_exit().success());

    let spans = spans.lock().unwrap();
    let span = spans
        .iter()
        .find(|s| attribute(s, "request_id").as_deref() == Some(request_id.as_str()))
        .unwrap_or_else(|| panic!("no span of {request_id} among {} exported", spans.len()));
    assert_eq!(span.name, "request");
    assert_eq!(attribute(span, "key").as_deref(), Some("tester"));
    // It failed over: the span ends on the second account, second attempt.
    assert_eq!(attribute(span, "account").as_deref(), Some("b"));
    assert_eq!(attribute(span, "attempt").as_deref(), Some("2"));
}
