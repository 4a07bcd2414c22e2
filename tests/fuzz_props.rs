//! Property tests (issue 13's fuzz suite) for the parts that read hostile bytes without I/O: the
//! SSE scanner, the request body reader (size limit, gzip/zstd), and the request inspectors.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256, in CI); a local fuzzing run
//! sets it high, e.g. `PROPTEST_CASES=200000 cargo test --test fuzz_props`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use std::io::Write;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use serde_json::Value;
use subrelay::protocol::sse::SseScanner;
use subrelay::protocol::{Protocol, Wire};

/// `PROPTEST_CASES` cases (default 256); no regression files written into the source tree.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// === the SSE scanner ===

/// One reported event: name, raw bytes, data.
type Event = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Every event the scanner reports, the bytes it kept pending and the bytes it examined.
fn scan_in_chunks(stream: &[u8], cuts: &[usize]) -> (Vec<Event>, usize, u64) {
    let mut scanner = SseScanner::new();
    let mut events = Vec::new();
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(stream.len());
    for end in bounds {
        scanner.feed(&stream[at..end], |e| {
            events.push((e.name().to_vec(), e.raw().to_vec(), e.data().into_owned()))
        });
        at = end;
        // Memory is bounded by the unfinished event: never more than the bytes fed so far.
        assert!(scanner.pending() <= end);
    }
    (events, scanner.pending(), scanner.examined())
}

/// A stream of well-formed events: `(event name, data lines)`, some comment-only keepalives,
/// LF or CRLF framing.
fn event_stream() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    let name = "[a-z_.]{1,24}";
    let line = "[ -~]{0,40}".prop_filter("no framing bytes", |l: &String| !l.contains('\n'));
    let event = (
        prop::option::of(name),
        prop::collection::vec(line, 1..4),
        any::<bool>(),
        any::<bool>(),
    );
    prop::collection::vec(event, 0..20).prop_map(|events| {
        let mut bytes = Vec::new();
        let mut names = Vec::new();
        for (name, data, crlf, keepalive) in events {
            let nl: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            if keepalive {
                bytes.extend_from_slice(b": keepalive");
                bytes.extend_from_slice(nl);
                bytes.extend_from_slice(nl);
            }
            if let Some(name) = &name {
                bytes.extend_from_slice(b"event: ");
                bytes.extend_from_slice(name.as_bytes());
                bytes.extend_from_slice(nl);
            }
            for line in &data {
                bytes.extend_from_slice(b"data: ");
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(nl);
            }
            bytes.extend_from_slice(nl);
            names.push(name.unwrap_or_default());
        }
        (bytes, names)
    })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, arbitrarily chunked, give exactly the events of one chunk, the same
    /// pending tail, and a search cost linear in the input.
    #[test]
    fn sse_chunking_never_changes_the_events(
        stream in prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), any::<u8>()],
            0..600,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let (whole, whole_pending, _) = scan_in_chunks(&stream, &[]);
        let (chunked, pending, examined) = scan_in_chunks(&stream, &cuts);
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(pending, whole_pending);
        prop_assert!(examined <= stream.len() as u64 + 2 * (cuts.len() as u64 + 1));
    }

    /// Well-formed events are all found, named by their `event:` line, with their data.
    #[test]
    fn sse_finds_every_well_formed_event(
        (stream, names) in event_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let (events, pending, _) = scan_in_chunks(&stream, &cuts);
        prop_assert_eq!(pending, 0);
        let found: Vec<String> = events
            .iter()
            .map(|(name, _, _)| String::from_utf8(name.clone()).unwrap())
            .collect();
        // An event without `event:` is named by its data's JSON "type", absent here: "".
        prop_assert_eq!(found, names);
    }
}

// === the request body reader ===

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
}

fn read(body: Vec<u8>, encoding: Option<&str>, limit: usize) -> Result<Bytes, StatusCode> {
    let mut headers = HeaderMap::new();
    if let Some(encoding) = encoding {
        headers.insert("content-encoding", HeaderValue::from_str(encoding).unwrap());
    }
    RUNTIME
        .with(|rt| {
            rt.block_on(subrelay::http::body::read_body(
                Body::from(body),
                &headers,
                limit,
            ))
        })
        .map_err(|e| e.status())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes under any encoding: an answer or a clear refusal, never a panic, and never more
    /// than the limit.
    #[test]
    fn body_reader_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        encoding in prop::option::of(prop_oneof![
            Just("gzip"), Just("zstd"), Just("identity"), Just("br"), Just(" GZIP ")
        ]),
        limit in 1usize..4096,
    ) {
        match read(body, encoding, limit) {
            Ok(out) => prop_assert!(out.len() <= limit),
            Err(status) => prop_assert!(status.is_client_error(), "{status}"),
        }
    }

    /// Bytes that look like a zstd frame (the magic number first) are decoded or refused.
    #[test]
    fn body_reader_survives_zstd_lookalikes(
        rest in prop::collection::vec(any::<u8>(), 0..512),
        limit in 1usize..4096,
    ) {
        let mut body = vec![0x28, 0xb5, 0x2f, 0xfd];
        body.extend_from_slice(&rest);
        match read(body, Some("zstd"), limit) {
            Ok(out) => prop_assert!(out.len() <= limit),
            Err(status) => prop_assert!(status.is_client_error(), "{status}"),
        }
    }

    /// gzip round-trips exactly under the limit and is refused with 413 over it.
    #[test]
    fn body_reader_inflates_gzip_up_to_the_limit(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        limit in 1usize..4096,
    ) {
        let compressed = gzip(&data);
        // The compressed size counts against the limit too, before inflating.
        let result = read(compressed.clone(), Some("gzip"), limit.max(compressed.len()));
        if data.len() <= limit.max(compressed.len()) {
            prop_assert_eq!(result.unwrap(), Bytes::from(data));
        } else {
            prop_assert_eq!(result.unwrap_err(), StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
}

// === the request inspectors ===

const PROTOCOLS: [Protocol; 3] = [Protocol::Responses, Protocol::Chat, Protocol::Messages];

/// JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Request bodies: objects that often carry the routing keys, with right or wrong types.
fn request_value() -> impl Strategy<Value = Value> {
    let model = prop_oneof![
        3 => "[ a-z0-9.+-]{0,16}".prop_map(Value::String),
        1 => json_value(),
    ];
    let stream = prop_oneof![3 => any::<bool>().prop_map(Value::Bool), 1 => json_value()];
    let metadata = prop_oneof![
        3 => prop::option::of(".{0,10}").prop_map(|u| serde_json::json!({ "user_id": u })),
        1 => json_value(),
    ];
    let options = prop_oneof![
        3 => any::<bool>().prop_map(|b| serde_json::json!({ "include_usage": b })),
        1 => json_value(),
    ];
    (
        prop::option::of(model),
        prop::option::of(stream),
        prop::option::of(metadata),
        prop::option::of(options),
        prop::option::of("[a-z]{0,8}"),
        json_value(),
    )
        .prop_map(
            |(model, stream, metadata, options, prompt_cache_key, other)| {
                let mut map = serde_json::Map::new();
                if let Some(v) = model {
                    map.insert("model".into(), v);
                }
                if let Some(v) = stream {
                    map.insert("stream".into(), v);
                }
                if let Some(v) = metadata {
                    map.insert("metadata".into(), v);
                }
                if let Some(v) = options {
                    map.insert("stream_options".into(), v);
                }
                if let Some(v) = prompt_cache_key {
                    map.insert("prompt_cache_key".into(), Value::String(v));
                }
                map.insert("input".into(), other);
                Value::Object(map)
            },
        )
}

/// What a full parse says `inspect` must return: `None` where it must refuse the body.
/// (model, stream, prompt_cache_key, user_id, include_usage)
type Expected = (String, bool, Option<String>, Option<String>, bool);

fn reference(protocol: Protocol, v: &Value) -> Option<Expected> {
    let object = v.as_object()?;
    let model = match object.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return None,
    };
    let optional_bool = |key: &str, within: &serde_json::Map<String, Value>| match within.get(key) {
        None | Some(Value::Null) => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => None,
    };
    let stream = optional_bool("stream", object)?;
    let mut expected = (model, stream, None, None, false);
    // OpenAI's Responses and Chat APIs both take a `prompt_cache_key` (the conversation's
    // identity).
    if matches!(protocol, Protocol::Responses | Protocol::Chat) {
        match object.get("prompt_cache_key") {
            None | Some(Value::Null) => {}
            Some(Value::String(k)) => expected.2 = Some(k.clone()),
            Some(_) => return None,
        }
    }
    match protocol {
        Protocol::Responses => {}
        Protocol::Chat => {
            let include_usage = one_field(object.get("stream_options"), "include_usage")?;
            expected.4 = match include_usage {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return None,
            };
        }
        Protocol::Messages => match one_field(object.get("metadata"), "user_id")? {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) => expected.3 = Some(u.clone()).filter(|u| !u.is_empty()),
            Some(_) => return None,
        },
    }
    Some(expected)
}

/// The one field of a nested struct the inspectors read (`stream_options.include_usage`,
/// `metadata.user_id`): `Err` (as `None`) where the struct cannot be read. Like serde, which the
/// inspectors use, a struct may also be written as an array of its fields in order (`[true]`);
/// the upstream judges such a body, the gateway only routes it.
#[allow(clippy::option_option, reason = "refused / absent / present")]
fn one_field<'a>(value: Option<&'a Value>, key: &str) -> Option<Option<&'a Value>> {
    match value {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(fields)) => Some(fields.get(key)),
        Some(Value::Array(items)) if items.len() <= 1 => Some(items.first()),
        Some(_) => None,
    }
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes: an answer or a message, never a panic.
    #[test]
    fn inspect_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for protocol in PROTOCOLS {
            let _ = protocol.inspect(&body);
        }
    }

    /// Valid JSON: `inspect` agrees with a full parse on every routing fact, and refuses
    /// exactly the bodies the full parse says it must.
    #[test]
    fn inspect_agrees_with_a_full_parse(v in prop_oneof![1 => json_value(), 4 => request_value()]) {
        let body = serde_json::to_vec(&v).unwrap();
        for protocol in PROTOCOLS {
            let got = protocol.inspect(&body).ok().map(|i| {
                (i.model, i.stream, i.prompt_cache_key, i.user_id, i.include_usage)
            });
            prop_assert_eq!(got, reference(protocol, &v), "{:?} {}", protocol, v);
        }
    }
}
