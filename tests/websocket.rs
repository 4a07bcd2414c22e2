//! Responses over WebSocket (issue 18): the real binary, a tokio-tungstenite client (and a raw
//! socket for frames no well-behaved client sends), the fake upstream reached over the HTTP
//! bridge (API-key accounts) or, in the Codex CLI test with a sign-in account, over an upstream
//! WebSocket (`tests/websocket_upstream.rs` has the rest of that side).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Nothing in these tests should take this long; it only stops a hung test.
const HUNG: Duration = Duration::from_secs(30);

fn ws_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.replacen("http://", "ws://", 1))
}

async fn connect_to(base: &str, path: &str, key: &str) -> Result<Ws, Box<dyn std::error::Error>> {
    let mut request = ws_url(base, path).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    request
        .headers_mut()
        .insert("openai-beta", "responses_websockets=2026-02-06".parse()?);
    let (ws, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(response.status(), 101);
    Ok(ws)
}

async fn connect(gw: &Gateway) -> Ws {
    connect_to(&gw.url, "/v1/responses", KEY).await.unwrap()
}

async fn send(ws: &mut Ws, message: Value) {
    ws.send(Message::text(message.to_string())).await.unwrap();
}

/// The events of one turn, up to its last (`response.completed`, `response.failed`, `error`).
async fn turn_events(ws: &mut Ws) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(HUNG, ws.next())
            .await
            .expect("hung")
            .expect("socket ended")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        events.push(event);
        if matches!(
            kind.as_str(),
            "response.completed" | "response.failed" | "response.incomplete" | "error"
        ) {
            return events;
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn response_id(events: &[Value]) -> String {
    events.last().unwrap()["response"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn create(input: Value, previous: Option<&str>) -> Value {
    let mut message = json!({
        "type": "response.create",
        "model": "gpt-5",
        "stream": true,
        "store": false,
        "input": input,
    });
    if let Some(previous) = previous {
        message["previous_response_id"] = json!(previous);
    }
    message
}

fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

/// The `input` of each upstream Responses request, in order.
fn upstream_inputs(mock: &MockUpstream) -> Vec<Vec<Value>> {
    mock.requests()
        .iter()
        .filter(|r| r.path.ends_with("/responses"))
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(body.get("previous_response_id").is_none(), "{body}");
            assert_eq!(body["stream"], true);
            body["input"].as_array().unwrap().clone()
        })
        .collect()
}

async fn gateway(accounts: &[Acct<'_>], extra: &str) -> (MockUpstream, Gateway) {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, accounts, extra));
    (mock, gw)
}

#[tokio::test]
async fn a_prewarm_then_turns_with_only_new_items_reach_the_upstream_as_the_whole_conversation() {
    let (mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    let mut ws = connect(&gw).await;

    // 1. prewarm: answered without an upstream call.
    let developer = json!({"type": "message", "role": "developer", "content": "be brief"});
    let mut prewarm = create(json!([developer]), None);
    prewarm["generate"] = json!(false);
    send(&mut ws, prewarm).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(types(&events), ["response.created", "response.completed"]);
    assert_eq!(events[1]["response"]["output"], json!([]));
    assert_eq!(mock.total_calls(), 0, "a prewarm calls no upstream");
    let warm = response_id(&events);

    // 2. the turn: only the user's message, continuing the prewarm.
    send(&mut ws, create(json!([user("hi")]), Some(&warm))).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert!(types(&events).contains(&"response.output_text.delta"));
    let first = response_id(&events);

    // 3. a tool result, without the call (or anything else) it continues.
    let result = json!({"type": "function_call_output", "call_id": "call_1", "output": "42"});
    send(&mut ws, create(json!([result]), Some(&first))).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");

    let inputs = upstream_inputs(&mock);
    assert_eq!(inputs.len(), 2, "two turns, two upstream requests");
    assert_eq!(inputs[0], vec![developer.clone(), user("hi")]);
    let second = &inputs[1];
    assert_eq!(second.len(), 4, "{second:?}");
    assert_eq!(second[..2], [developer, user("hi")]);
    assert_eq!(
        second[2]["role"], "assistant",
        "turn 2's output item: {second:?}"
    );
    assert!(
        second[2].get("id").is_none(),
        "output ids are not sent back"
    );
    assert_eq!(second[3], result);

    let records = gw.wait_for_usage(2).await;
    assert!(
        records.iter().all(|r| r["transport"] == "websocket"),
        "{records:?}"
    );
    assert!(records.iter().all(|r| r["endpoint"] == "responses"));
}

#[tokio::test]
async fn an_unknown_previous_response_is_an_error_event_and_the_socket_goes_on() {
    let (mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("hi")]), Some("resp_nowhere"))).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(types(&events), ["error"]);
    assert_eq!(events[0]["status"], 400);
    assert_eq!(events[0]["error"]["code"], "previous_response_not_found");
    assert_eq!(mock.total_calls(), 0);
    // The same socket serves the next turn.
    send(&mut ws, create(json!([user("hi")]), None)).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
}

#[tokio::test]
async fn a_turn_the_upstream_refuses_is_an_error_event_and_the_socket_survives() {
    let (mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    mock.script(
        "tok-a",
        vec![Behavior {
            status: Some(400),
            ..Default::default()
        }],
    );
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("hi")]), None)).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(types(&events), ["error"]);
    assert_eq!(events[0]["status"], 400);
    send(&mut ws, create(json!([user("again")]), None)).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[0]["status"], 400);
    assert_eq!(records[1]["status"], 200);
}

#[tokio::test]
async fn a_failure_before_the_first_event_moves_the_turn_to_the_next_account_unseen() {
    let (mock, gw) = gateway(&[apikey("a", "tok-a"), apikey("b", "tok-b")], "").await;
    mock.script(
        "tok-a",
        vec![Behavior {
            fail_before_output: true,
            ..Default::default()
        }],
    );
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("hi")]), None)).await;
    let events = turn_events(&mut ws).await;
    let kinds = types(&events);
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    assert!(!kinds.contains(&"response.failed"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "response.created").count(),
        1
    );
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["account"], "b");
    assert_eq!(records[0]["attempts"].as_array().unwrap().len(), 2);
    // Both accounts got the whole input.
    let inputs = upstream_inputs(&mock);
    assert_eq!(inputs[0], inputs[1]);
}

#[tokio::test]
async fn a_client_that_vanishes_mid_turn_still_gets_its_turn_recorded() {
    let (mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    mock.script(
        "tok-a",
        vec![Behavior {
            events: Some(20),
            event_interval: Duration::from_millis(100),
            ..Default::default()
        }],
    );
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("hi")]), None)).await;
    // Read up to the first delta, then drop the connection without a close.
    loop {
        let message = tokio::time::timeout(HUNG, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if message
            .to_text()
            .unwrap_or_default()
            .contains("output_text.delta")
        {
            break;
        }
    }
    drop(ws);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["transport"], "websocket");
    assert_eq!(records[0]["client_disconnected"], true, "{:?}", records[0]);
    assert_eq!(
        records[0]["tokens"]["output"], 7,
        "the upstream was read to its usage"
    );
}

#[tokio::test]
async fn the_upgrade_is_authenticated_like_http_on_every_responses_route() {
    let (_mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    for path in [
        "/v1/responses",
        "/responses",
        "/backend-api/codex/responses",
    ] {
        let error = connect_to(&gw.url, path, "sk-wrong").await.err().unwrap();
        let text = error.to_string();
        assert!(text.contains("401"), "{path}: {text}");
        let mut ws = connect_to(&gw.url, path, KEY).await.unwrap();
        send(&mut ws, create(json!([user("hi")]), None)).await;
        let events = turn_events(&mut ws).await;
        assert_eq!(
            events.last().unwrap()["type"],
            "response.completed",
            "{path}"
        );
    }
    // The upgrades have access lines of their own: the 101s and the refusals (written before
    // the turns' usage lines, so they are read once those are).
    gw.wait_for_usage(3).await;
    let logs = gw.logs();
    let upgrades = |status: &str| {
        logs.iter()
            .filter(|l| l.contains("\"method\":\"GET\"") && l.contains(status))
            .count()
    };
    assert_eq!(upgrades("\"status\":101"), 3, "{logs:?}");
    assert_eq!(upgrades("\"status\":401"), 3, "{logs:?}");
    // A plain GET is still refused as before.
    let plain = client()
        .get(format!("{}/v1/responses", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 405);
}

// === bad frames: the close codes ===

/// The code of the server's close frame (pings and other frames before it are skipped).
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(HUNG, ws.next()).await.expect("hung") {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) | None => return 0,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn a_message_over_max_body_size_is_closed_with_1009() {
    let (_mock, gw) = gateway(&[apikey("a", "tok-a")], "  max_body_size: 4096\n").await;
    let mut ws = connect(&gw).await;
    // Positive control: a message under the limit is served.
    send(&mut ws, create(json!([user("hi")]), None)).await;
    assert_eq!(
        turn_events(&mut ws).await.last().unwrap()["type"],
        "response.completed"
    );
    send(&mut ws, create(json!([user(&"x".repeat(8192))]), None)).await;
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test]
async fn a_binary_message_is_closed_with_1003() {
    let (_mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    let mut ws = connect(&gw).await;
    ws.send(Message::binary(b"{}".to_vec())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1003);
}

/// A raw socket through the upgrade, for frames a client library refuses to send.
async fn raw_socket(gw: &Gateway) -> TcpStream {
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "GET /v1/responses HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(HUNG, tcp.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        answer.push(byte[0]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    tcp
}

/// One frame with FIN set; `first` is the first byte's bits besides FIN (opcode, RSV).
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut out = vec![
        0x80 | first,
        (payload.len() as u8) | if masked { 0x80 } else { 0 },
    ];
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The code of the server's close frame on a raw socket.
async fn raw_close_code(tcp: &mut TcpStream) -> u16 {
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(HUNG, tcp.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        let len = usize::from(head[1] & 0x7f);
        assert!(len < 126, "a short control frame was expected");
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[tokio::test]
async fn text_that_is_not_utf8_is_closed_with_1007() {
    let (_mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    let mut tcp = raw_socket(&gw).await;
    tcp.write_all(&frame(0x1, b"{\"a\":\"\xff\xfe\"}", true))
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1007);
}

#[tokio::test]
async fn an_unmasked_frame_or_reserved_bits_are_closed_with_1002() {
    let (_mock, gw) = gateway(&[apikey("a", "tok-a")], "").await;
    let mut tcp = raw_socket(&gw).await;
    tcp.write_all(&frame(0x1, b"{}", false)).await.unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1002, "unmasked");
    let mut tcp = raw_socket(&gw).await;
    tcp.write_all(&frame(0x40 | 0x1, b"{}", true))
        .await
        .unwrap();
    assert_eq!(
        raw_close_code(&mut tcp).await,
        1002,
        "RSV1 without an extension"
    );
    // Positive control: the same frame well-formed is answered (an `error` event: `{}` is no
    // response.create), not closed.
    let mut tcp = raw_socket(&gw).await;
    tcp.write_all(&frame(0x1, b"{}", true)).await.unwrap();
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0] & 0x0f, 0x1, "a text frame");
}

// === keepalive ===

/// A turn whose upstream is silent for 12 s, through nginx with `proxy_read_timeout 7s`
/// (`stream_keepalive_interval` is 5 s at least).
async fn stalled_turn_through_nginx(keepalive: u64) -> Option<Vec<Value>> {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            delay_headers: Duration::from_secs(12),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a")],
        &format!("  stream_keepalive_interval: {keepalive}\n"),
    ));
    let nginx = common::nginx::Nginx::start(&gw.url, 7)?;
    let mut ws = connect_to(&nginx.url, "/v1/responses", KEY).await.unwrap();
    send(&mut ws, create(json!([user("hi")]), None)).await;
    let mut events = Vec::new();
    while let Some(Ok(message)) = tokio::time::timeout(HUNG, ws.next()).await.unwrap() {
        if let Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).unwrap();
            let done = event["type"] == "response.completed";
            events.push(event);
            if done {
                break;
            }
        }
    }
    Some(events)
}

#[tokio::test]
async fn pings_keep_a_stalled_turn_alive_past_nginx_read_timeout() {
    let Some(events) = stalled_turn_through_nginx(5).await else {
        return;
    };
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    // Control: without pings nginx cuts the same turn.
    let Some(events) = stalled_turn_through_nginx(0).await else {
        return;
    };
    assert!(
        !events.iter().any(|e| e["type"] == "response.completed"),
        "{events:?}"
    );
}

#[tokio::test]
async fn websocket_turns_show_as_such_in_the_admin_api() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&admin_common::store_config(&mock, data.path(), ""));
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("hi")]), None)).await;
    turn_events(&mut ws).await;
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    let rows = admin_common::wait_for_stored_usage(&gw, 2).await;
    let mut transports: Vec<&str> = rows
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    transports.sort_unstable();
    assert_eq!(transports, ["http", "websocket"]);
}

// === hardening limits ===

#[tokio::test]
async fn open_websockets_hold_their_connection_slots() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start_with_env(
        &config(&mock, &[apikey("a", "tok-a")], ""),
        &[("SERVER_MAX_CONNECTIONS", "2")],
    );
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(&gw).await;
        send(&mut ws, create(json!([user("hi")]), None)).await;
        turn_events(&mut ws).await;
        open.push(ws);
    }
    // Both upgraded sockets still count: a third connection is closed at once.
    assert!(connect_to(&gw.url, "/v1/responses", KEY).await.is_err());
    gw.wait_for_log("server.max_connections (2) reached").await;
    // Once one closes, its slot is free again.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    drop(first);
    let deadline = std::time::Instant::now() + HUNG;
    loop {
        if let Ok(mut ws) = connect_to(&gw.url, "/v1/responses", KEY).await {
            send(&mut ws, create(json!([user("hi")]), None)).await;
            assert_eq!(
                turn_events(&mut ws).await.last().unwrap()["type"],
                "response.completed"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_upgrade_request_whose_head_never_ends_is_closed_by_the_header_timeout() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start_with_env(
        &config(&mock, &[apikey("a", "tok-a")], ""),
        &[("SERVER_HEADER_READ_TIMEOUT", "1")],
    );
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"GET /v1/responses HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(HUNG, tcp.read(&mut buf))
        .await
        .expect("the socket stayed open")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer: {:?}", &buf[..n]);
}

// === the real Codex CLI ===

/// Runs `codex exec "say hi"` (with `supports_websockets = true`) through a gateway serving
/// these accounts (behind nginx when asked); `None` when the Codex CLI (or nginx) is missing on
/// a developer machine.
async fn codex_cli_turn(
    accounts: &[Acct<'_>],
    through_nginx: bool,
) -> Option<(MockUpstream, Gateway, Vec<Value>, Option<String>)> {
    let codex = std::env::var("SUBRELAY_TEST_CODEX").unwrap_or_else(|_| "codex".into());
    let found = std::process::Command::new(&codex)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip_or_fail("the Codex CLI (python3 tests/run installs it, or set SUBRELAY_TEST_CODEX)");
        return None;
    }
    let (mock, gw) = gateway(accounts, "").await;
    let nginx = match through_nginx {
        true => Some(common::nginx::Nginx::start(&gw.url, 60)?),
        false => None,
    };
    let base = nginx.as_ref().map_or(gw.url.as_str(), |n| n.url.as_str());
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    tokio::fs::write(
        home.path().join("config.toml"),
        format!(
            "model = \"gpt-5\"\nmodel_provider = \"subrelay\"\n\n[model_providers.subrelay]\nname = \"subrelay\"\nbase_url = \"{}/v1\"\nwire_api = \"responses\"\nenv_key = \"SUBRELAY_TEST_KEY\"\nsupports_websockets = true\n",
            base
        ),
    )
    .await
    .unwrap();
    let run = tokio::process::Command::new(&codex)
        .args(["exec", "--skip-git-repo-check", "say hi"])
        .current_dir(work.path())
        .env("CODEX_HOME", home.path())
        .env("SUBRELAY_TEST_KEY", KEY)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("codex hung")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(subrelay_mock::DEFAULT_TEXT),
        "{stdout}\n{stderr}"
    );
    let records = gw.wait_for_usage(1).await;
    assert!(
        records.iter().all(|r| r["transport"] == "websocket"),
        "no fallback to HTTP: {records:?}"
    );
    // nginx logs an upgraded request when its socket closes (Codex has exited).
    let access_log = match &nginx {
        Some(nginx) => Some(nginx.access_log_with(is_upgrade_line).await),
        None => None,
    };
    Some((mock, gw, records, access_log))
}

/// nginx's access-log line for the Responses WebSocket upgrade it passed on.
fn is_upgrade_line(line: &str) -> bool {
    line.trim() == "GET /v1/responses 101"
}

#[tokio::test]
async fn codex_cli_with_supports_websockets_runs_its_turn_over_one_socket() {
    let Some((mock, _gw, records, _)) = codex_cli_turn(&[apikey("a", "tok-a")], false).await else {
        return;
    };
    // Its prewarm was answered by the gateway: the upstream saw the turn only.
    assert_eq!(mock.total_calls(), records.len());
}

#[tokio::test]
async fn codex_cli_through_nginx_reaches_a_signin_account_over_an_upstream_websocket() {
    let Some((mock, _gw, records, access_log)) = codex_cli_turn(&[oauth("a", "tok-a")], true).await
    else {
        return;
    };
    // nginx's own record: the upgrade answered 101 (the positive control that the log is
    // written and read), and no Responses request fell back to a POST.
    let access_log = access_log.unwrap();
    assert!(
        access_log.lines().any(is_upgrade_line),
        "nginx passed the upgrade on: {access_log}"
    );
    assert!(
        !access_log
            .lines()
            .any(|l| l.starts_with("POST /v1/responses")),
        "no fallback POST: {access_log}"
    );
    assert_eq!(mock.websocket_upgrades(), 1, "one upstream socket");
    assert_eq!(mock.websocket_turns(), records.len());
    assert_eq!(mock.posts(), 0, "no turn went over HTTP");
}

// === bounds and endings ===

#[tokio::test]
async fn a_turn_past_websocket_max_history_bytes_is_answered_then_the_socket_closes() {
    let (_mock, gw) = gateway(
        &[apikey("a", "tok-a")],
        "  websocket_max_history_bytes: 65536\n",
    )
    .await;
    let mut ws = connect(&gw).await;
    // Positive control: a small turn leaves the socket open for the next.
    send(&mut ws, create(json!([user("hi")]), None)).await;
    let first = response_id(&turn_events(&mut ws).await);
    send(
        &mut ws,
        create(json!([user(&"x".repeat(70_000))]), Some(&first)),
    )
    .await;
    let events = turn_events(&mut ws).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert_eq!(close_code(&mut ws).await, 1000);
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed() {
    let (_mock, gw) = gateway(&[apikey("a", "tok-a")], "  stream_keepalive_interval: 5\n").await;
    // A raw socket answers nothing: it gets pings, then a close.
    let mut tcp = raw_socket(&gw).await;
    let mut pings = 0;
    let code = loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(HUNG, tcp.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        tcp.read_exact(&mut payload).await.unwrap();
        match head[0] & 0x0f {
            0x9 => pings += 1,
            0x8 => break u16::from_be_bytes([payload[0], payload[1]]),
            other => panic!("opcode {other}"),
        }
    };
    assert_eq!((pings, code), (2, 1008));
}

#[tokio::test]
async fn shutdown_closes_an_idle_socket_with_1001() {
    let (_mock, mut gw) = gateway(&[apikey("a", "tok-a")], "").await;
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("hi")]), None)).await;
    turn_events(&mut ws).await;
    gw.sigterm();
    assert_eq!(close_code(&mut ws).await, 1001);
    drop(ws);
    assert!(gw.wait_exit().success());
}
