//! Responses over WebSocket, upstream side (issue 18): turns of a downstream socket that reach a
//! ChatGPT sign-in account go over one upstream WebSocket to the fake Codex backend, which counts
//! upgrades, turns and POSTs so each test proves which transport was used.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Nothing in these tests should take this long; it only stops a hung test.
const HUNG: Duration = Duration::from_secs(30);

async fn connect(gw: &Gateway) -> Ws {
    let url = format!("{}/v1/responses", gw.url.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    ws
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

fn last_type(events: &[Value]) -> &str {
    events.last().unwrap()["type"].as_str().unwrap()
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
        "instructions": "be brief",
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

/// The `response.create` messages the fake upstream received, with their credential.
fn upstream_turns(mock: &MockUpstream) -> Vec<(String, Value)> {
    mock.requests()
        .iter()
        .filter(|r| r.method.as_str() == "WS")
        .map(|r| {
            (
                r.credential.clone().unwrap_or_default(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect()
}

async fn gateway(accounts: &[Acct<'_>]) -> (MockUpstream, Gateway) {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, accounts, ""));
    (mock, gw)
}

#[tokio::test]
async fn turns_to_a_signin_account_share_one_upstream_socket_and_continue_by_previous_response_id()
{
    let (mock, gw) = gateway(&[oauth("a", "tok-a")]).await;
    let mut ws = connect(&gw).await;

    // A prewarm (answered by the gateway), then three turns, each with only its new items.
    let developer = json!({"type": "message", "role": "developer", "content": "be brief"});
    let mut prewarm = create(json!([developer]), None);
    prewarm["generate"] = json!(false);
    send(&mut ws, prewarm).await;
    let warm = response_id(&turn_events(&mut ws).await);
    let mut previous = warm;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        send(&mut ws, create(json!([user(text)]), Some(&previous))).await;
        let events = turn_events(&mut ws).await;
        assert_eq!(last_type(&events), "response.completed", "{events:?}");
        previous = response_id(&events);
        ids.push(previous.clone());
    }

    assert_eq!(mock.websocket_upgrades(), 1, "one upstream socket");
    assert_eq!(mock.websocket_turns(), 3);
    assert_eq!(mock.posts(), 0, "no turn went over HTTP");
    let upgrade = mock
        .requests()
        .into_iter()
        .find(|r| r.method == http::Method::GET)
        .unwrap();
    assert_eq!(upgrade.path, "/backend-api/codex/responses");
    assert_eq!(upgrade.headers["authorization"], "Bearer tok-a");
    assert_eq!(upgrade.headers["chatgpt-account-id"], "acct-a");

    let turns = upstream_turns(&mock);
    assert_eq!(turns.len(), 3);
    // The first turn on the new socket: the whole conversation, prewarm's input included.
    let first = &turns[0].1;
    assert_eq!(first["type"], "response.create");
    assert!(first.get("previous_response_id").is_none(), "{first}");
    assert_eq!(first["input"], json!([developer, user("one")]));
    // Later turns: the socket holds the conversation.
    for (i, (_, turn)) in turns.iter().enumerate().skip(1) {
        assert_eq!(turn["previous_response_id"], ids[i - 1].as_str(), "{turn}");
        let text = ["one", "two", "three"][i];
        assert_eq!(turn["input"], json!([user(text)]), "{turn}");
        assert_eq!(turn["store"], false);
    }

    let records = gw.wait_for_usage(3).await;
    assert_eq!(records.len(), 3, "one usage row per turn");
    assert!(
        records
            .iter()
            .all(|r| r["transport"] == "websocket" && r["account"] == "a"),
        "{records:?}"
    );
    assert!(
        records.iter().all(|r| r["tokens"]["output"] == 7),
        "usage read from each turn's response.completed: {records:?}"
    );

    // The downstream socket closes: so does the upstream one.
    assert_eq!(mock.open_websockets(), 1);
    ws.close(None).await.unwrap();
    let closed = async {
        while mock.open_websockets() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HUNG, closed)
        .await
        .expect("the upstream socket outlived the downstream one");
}

#[tokio::test]
async fn an_upstream_that_refuses_the_upgrade_is_bridged_over_http_and_not_asked_again() {
    for status in [404, 426] {
        let (mock, gw) = gateway(&[oauth("a", "tok-a")]).await;
        mock.refuse_websocket(Some(status));
        let mut ws = connect(&gw).await;
        send(&mut ws, create(json!([user("one")]), None)).await;
        let events = turn_events(&mut ws).await;
        assert_eq!(last_type(&events), "response.completed", "{events:?}");
        let first = response_id(&events);
        send(&mut ws, create(json!([user("two")]), Some(&first))).await;
        let events = turn_events(&mut ws).await;
        assert_eq!(last_type(&events), "response.completed", "{events:?}");
        // A second downstream socket does not try either.
        let mut other = connect(&gw).await;
        send(&mut other, create(json!([user("three")]), None)).await;
        assert_eq!(
            last_type(&turn_events(&mut other).await),
            "response.completed"
        );

        assert_eq!(mock.websocket_upgrades(), 1, "{status}: asked once");
        assert_eq!(mock.websocket_turns(), 0, "{status}");
        assert_eq!(mock.posts(), 3, "{status}: every turn bridged over HTTP");
        let records = gw.wait_for_usage(3).await;
        assert!(records.iter().all(|r| r["transport"] == "websocket"));
    }
}

#[tokio::test]
async fn an_upgrade_answered_429_fails_over_like_a_post_and_is_not_taken_for_a_refusal() {
    let (mock, gw) = gateway(&[oauth("a", "tok-a"), oauth("b", "tok-b")]).await;
    mock.refuse_websocket_for("tok-a", 429);
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("one")]), None)).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(last_type(&events), "response.completed", "{events:?}");

    // `a`'s 429 moved the turn to `b` over its own socket; `a` was not bridged over HTTP.
    assert_eq!(mock.websocket_upgrades(), 2);
    assert_eq!(mock.posts(), 0);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["account"], "b");
    let attempts = records[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["account"], "a");
    assert_eq!(attempts[0]["status"], 429, "{attempts:?}");
}

#[tokio::test]
async fn a_failure_before_the_first_event_moves_the_turn_to_a_new_socket_with_the_whole_input() {
    let (mock, gw) = gateway(&[oauth("a", "tok-a"), oauth("b", "tok-b")]).await;
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("one")]), None)).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(last_type(&events), "response.completed");
    let first = response_id(&events);

    // The next turn fails on `a` before any output: it goes to `b`, whose new socket gets the
    // whole conversation.
    mock.script(
        "tok-a",
        vec![Behavior {
            fail_before_output: true,
            ..Default::default()
        }],
    );
    send(&mut ws, create(json!([user("two")]), Some(&first))).await;
    let events = turn_events(&mut ws).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(last_type(&events), "response.completed", "{kinds:?}");
    assert!(!kinds.contains(&"response.failed"), "{kinds:?}");

    assert_eq!(mock.websocket_upgrades(), 2, "one socket per account");
    assert_eq!(mock.posts(), 0);
    let turns = upstream_turns(&mock);
    assert_eq!(turns.len(), 3);
    assert_eq!(turns[1].0, "tok-a");
    assert_eq!(turns[1].1["previous_response_id"], first.as_str());
    assert_eq!(turns[1].1["input"], json!([user("two")]));
    let (credential, rebuilt) = &turns[2];
    assert_eq!(credential, "tok-b");
    assert!(rebuilt.get("previous_response_id").is_none(), "{rebuilt}");
    let input = rebuilt["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "user, assistant, user: {input:?}");
    assert_eq!(input[0], user("one"));
    assert_eq!(input[1]["role"], "assistant");
    assert_eq!(input[2], user("two"));

    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[1]["account"], "b");
    assert_eq!(records[1]["attempts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_upstream_socket_cut_after_output_is_an_in_protocol_failure_and_the_socket_goes_on() {
    let (mock, gw) = gateway(&[oauth("a", "tok-a")]).await;
    mock.script(
        "tok-a",
        vec![Behavior {
            events: Some(6),
            cut_after: Some(6),
            ..Default::default()
        }],
    );
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("one")]), None)).await;
    let events = turn_events(&mut ws).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"response.output_text.delta"),
        "output went out first: {kinds:?}"
    );
    assert!(
        matches!(last_type(&events), "response.failed" | "error"),
        "{kinds:?}"
    );

    // The downstream socket survives; the next turn opens a new upstream socket.
    send(&mut ws, create(json!([user("two")]), None)).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(last_type(&events), "response.completed");
    assert_eq!(mock.websocket_upgrades(), 2);
    assert_eq!(mock.posts(), 0);
    let records = gw.wait_for_usage(2).await;
    assert!(records.iter().all(|r| r["transport"] == "websocket"));
}

#[tokio::test]
async fn an_upstream_that_forgot_the_previous_response_gets_the_whole_conversation_on_the_same_socket(
) {
    let (mock, gw) = gateway(&[oauth("a", "tok-a")]).await;
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("one")]), None)).await;
    let first = response_id(&turn_events(&mut ws).await);
    mock.websocket_forgets(true);
    send(&mut ws, create(json!([user("two")]), Some(&first))).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(last_type(&events), "response.completed", "{events:?}");

    assert_eq!(mock.websocket_upgrades(), 1, "the same socket");
    let turns = upstream_turns(&mock);
    assert_eq!(turns.len(), 3, "one, two as a continuation, two whole");
    assert_eq!(turns[1].1["previous_response_id"], first.as_str());
    let whole = &turns[2].1;
    assert!(whole.get("previous_response_id").is_none(), "{whole}");
    assert_eq!(whole["input"].as_array().unwrap().len(), 3, "{whole}");
    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[1]["status"], 200);
}

#[tokio::test]
async fn an_upstream_message_over_max_event_bytes_before_output_fails_over() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(
        &mock,
        &[oauth("a", "tok-a"), oauth("b", "tok-b")],
        "  max_event_bytes: 65536\n",
    ));
    // `a` answers with one event of 200 kB before any output.
    mock.script(
        "tok-a",
        vec![Behavior {
            huge_line: Some(200_000),
            ..Default::default()
        }],
    );
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("one")]), None)).await;
    let events = turn_events(&mut ws).await;
    assert_eq!(last_type(&events), "response.completed", "{events:?}");
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["account"], "b", "{records:?}");
    // Refused by the socket's own message limit as it arrived (a transport error), not read
    // whole and then refused by the SSE scan (`bad_upstream_answer`).
    assert_eq!(
        records[0]["attempts"][0]["outcome"], "transport_error",
        "{records:?}"
    );
    assert_eq!(mock.websocket_upgrades(), 2);
    assert_eq!(mock.posts(), 0);
}

#[tokio::test]
async fn an_api_key_account_is_still_reached_over_http() {
    let (mock, gw) = gateway(&[apikey("k", "tok-k")]).await;
    let mut ws = connect(&gw).await;
    send(&mut ws, create(json!([user("one")]), None)).await;
    assert_eq!(last_type(&turn_events(&mut ws).await), "response.completed");
    assert_eq!(mock.websocket_upgrades(), 0);
    assert_eq!(mock.posts(), 1);
}

// === through the account's proxy ===

/// One sign-in account whose base URL names `upstream.invalid` (only the test proxies resolve
/// it), through `proxy`.
fn proxied_config(mock: &MockUpstream, proxy: &str) -> String {
    format!(
        "api_keys:\n  - key: {KEY}\n    name: tester\naccounts:\n  - name: a\n    platform: openai\n    type: oauth\n    base_url: http://upstream.invalid:{}/backend-api/codex\n    access_token: tok-a\n    chatgpt_account_id: acct-a\n    proxy: '{proxy}'\n",
        mock.addr().port()
    )
}

/// Two turns on one downstream socket to a proxied sign-in account: both over one upstream
/// socket (no POST), the second continuing by `previous_response_id`.
async fn two_turns_through(mock: &MockUpstream, gw: &Gateway) {
    let mut ws = connect(gw).await;
    send(&mut ws, create(json!([user("one")]), None)).await;
    let first = turn_events(&mut ws).await;
    assert_eq!(last_type(&first), "response.completed", "{first:?}");
    send(
        &mut ws,
        create(json!([user("two")]), Some(&response_id(&first))),
    )
    .await;
    let second = turn_events(&mut ws).await;
    assert_eq!(last_type(&second), "response.completed", "{second:?}");
    assert_eq!(mock.websocket_upgrades(), 1, "one upstream socket");
    assert_eq!(mock.websocket_turns(), 2);
    assert_eq!(mock.posts(), 0, "no turn went over HTTP");
    let records = gw.wait_for_usage(2).await;
    assert!(
        records.iter().all(|r| r["transport"] == "websocket"),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_proxied_signin_account_reaches_the_upstream_websocket_through_its_http_proxy() {
    let mock = MockUpstream::start().await;
    let proxy = common::http_proxy::HttpProxy::start().await;
    let with_auth = proxy
        .url
        .replace("http://", "http://proxy-user:proxy-pass@");
    let gw = Gateway::start(&proxied_config(&mock, &with_auth));
    two_turns_through(&mock, &gw).await;
    // The upgrade can only have arrived through the proxy (the name resolves nowhere else),
    // and the proxy saw it as a CONNECT tunnel with the account's proxy credentials.
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with(&format!(
            "connect upstream.invalid:{} http/1.1",
            mock.addr().port()
        )),
        "{head}"
    );
    // base64("proxy-user:proxy-pass")
    assert!(
        head.contains(
            "proxy-authorization: basic cHJveHktdXNlcjpwcm94eS1wYXNz"
                .to_ascii_lowercase()
                .as_str()
        ),
        "{head}"
    );
}

#[tokio::test]
async fn a_proxied_signin_account_reaches_the_upstream_websocket_through_socks5h_and_socks5() {
    for (scheme, names_asked) in [("socks5h", true), ("socks5", false)] {
        let mock = MockUpstream::start().await;
        let proxy = common::socks::Socks5::start().await;
        let url = proxy.url.replace("socks5://", &format!("{scheme}://"));
        let upstream = format!("upstream.invalid:{}", mock.addr().port());
        if !names_asked {
            // The gateway resolves the name itself with `socks5`: give it one that resolves.
            let gw = Gateway::start(
                &proxied_config(&mock, &url).replace("upstream.invalid", "localhost"),
            );
            two_turns_through(&mock, &gw).await;
            assert_eq!(proxy.connections(), 1, "{scheme}");
            assert_eq!(proxy.names(), [None], "{scheme}: an address was asked for");
            continue;
        }
        let gw = Gateway::start(&proxied_config(&mock, &url));
        two_turns_through(&mock, &gw).await;
        assert_eq!(proxy.connections(), 1, "{scheme}");
        assert_eq!(
            proxy.names(),
            [Some(upstream.split(':').next().unwrap().to_owned())],
            "{scheme}: the proxy resolved the name"
        );
    }
}
