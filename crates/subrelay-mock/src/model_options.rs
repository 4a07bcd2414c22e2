//! Behaviour chosen by the model name, for callers that cannot script the mock.
//!
//! The demo and the benchmarks run the mock as a separate binary and only control what they send,
//! so a request may carry options after `+` in its `model`:
//! `gpt-5.1-codex+delay_ms=12000+events=20+interval_ms=5`. The part before the first `+` is the
//! model echoed in answers. An unknown option is an error naming it, so a typo never silently
//! turns into a default answer.

use std::fmt;
use std::time::Duration;

use crate::behavior::Behavior;

/// The options this parser knows, listed in error messages.
const KNOWN: &str = "status=N, retry_after=S, delay_ms=N, events=N, interval_ms=N, fail, cut=N, \
                     hang=N, hang_headers, refuse_stream, text_bytes=N, tokens=N, garbage_usage, huge_line=N, \
                     preamble_bytes=N, endless, at=N, echo_auth, text_error, calls=N, error_chunk=N, malformed=N, \
                     legacy_error";

/// A model option that could not be understood; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionError(String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits `model+opt+opt` into the model name and the option text (if any).
pub(crate) fn split_model(model: &str) -> (&str, Option<&str>) {
    match model.split_once('+') {
        Some((name, options)) => (name, Some(options)),
        None => (model, None),
    }
}

/// Builds the behaviour described by the option text (the part after the first `+`).
pub(crate) fn parse(options: &str) -> Result<Behavior, OptionError> {
    let mut behavior = Behavior::default();
    for option in options.split('+').filter(|o| !o.is_empty()) {
        let (key, value) = match option.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (option, None),
        };
        match key {
            "status" => behavior.status = Some(number(key, value)?),
            "retry_after" => {
                let seconds: u64 = number(key, value)?;
                behavior
                    .headers
                    .push(("retry-after".to_owned(), seconds.to_string()));
            }
            "delay_ms" => behavior.delay_headers = Duration::from_millis(number(key, value)?),
            "events" => behavior.events = Some(number(key, value)?),
            "interval_ms" => behavior.event_interval = Duration::from_millis(number(key, value)?),
            "fail" => behavior.fail_before_output = flag(key, value)?,
            "cut" => behavior.cut_after = Some(number(key, value)?),
            "hang" => behavior.hang_after = Some(number(key, value)?),
            "hang_headers" => behavior.hang_before_headers = flag(key, value)?,
            "refuse_stream" => behavior.refuse_stream = flag(key, value)?,
            "text_bytes" => behavior.text_bytes = Some(number(key, value)?),
            "garbage_usage" => behavior.garbage_usage = flag(key, value)?,
            // Every token count of the answer's usage (up to u64::MAX: a hostile upstream).
            "tokens" => {
                let n: u64 = number(key, value)?;
                behavior.usage = Some(crate::behavior::Usage {
                    input: n,
                    cached: n,
                    output: n,
                    reasoning: n,
                    cache_creation: n,
                });
            }
            "huge_line" => behavior.huge_line = Some(number(key, value)?),
            "preamble_bytes" => behavior.preamble_bytes = Some(number(key, value)?),
            "endless" => behavior.endless = flag(key, value)?,
            "at" => behavior.hostile_at = Some(number(key, value)?),
            "echo_auth" => behavior.echo_credential = flag(key, value)?,
            "text_error" => behavior.text_error = flag(key, value)?,
            "calls" => behavior.tool_calls = Some(number(key, value)?),
            "error_chunk" => behavior.error_chunk_after = Some(number(key, value)?),
            "legacy_error" => behavior.legacy_error_chunk = flag(key, value)?,
            "malformed" => behavior.malformed_event_at = Some(number(key, value)?),
            _ => {
                return Err(OptionError(format!(
                    "unknown model option '{option}' (known: {KNOWN})"
                )))
            }
        }
    }
    Ok(behavior)
}

fn number<T: std::str::FromStr>(key: &str, value: Option<&str>) -> Result<T, OptionError> {
    let Some(text) = value else {
        return Err(OptionError(format!(
            "model option '{key}' needs a value ({key}=N)"
        )));
    };
    text.parse().map_err(|_| {
        OptionError(format!(
            "model option '{key}={text}' needs a non-negative integer"
        ))
    })
}

fn flag(key: &str, value: Option<&str>) -> Result<bool, OptionError> {
    match value {
        None => Ok(true),
        Some(text) => Err(OptionError(format!(
            "model option '{key}={text}' takes no value (write '{key}')"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_model_name_from_its_options() {
        assert_eq!(split_model("gpt-5"), ("gpt-5", None));
        assert_eq!(
            split_model("gpt-5.1-codex+delay_ms=5+fail"),
            ("gpt-5.1-codex", Some("delay_ms=5+fail"))
        );
    }

    #[test]
    fn reads_every_option() {
        let b = parse(
            "status=429+retry_after=7+delay_ms=12+events=20+interval_ms=5+fail+cut=2+hang=4+hang_headers+text_bytes=100",
        )
        .unwrap();
        assert_eq!(b.status, Some(429));
        assert_eq!(b.headers, vec![("retry-after".to_owned(), "7".to_owned())]);
        assert_eq!(b.delay_headers, Duration::from_millis(12));
        assert_eq!(b.events, Some(20));
        assert_eq!(b.event_interval, Duration::from_millis(5));
        assert!(b.fail_before_output);
        assert_eq!(b.cut_after, Some(2));
        assert_eq!(b.hang_after, Some(4));
        assert!(b.hang_before_headers);
        assert_eq!(b.text_bytes, Some(100));
        assert!(parse("garbage_usage").unwrap().garbage_usage);
        assert!(parse("refuse_stream").unwrap().refuse_stream);
        let huge = parse("tokens=18446744073709551615").unwrap().usage.unwrap();
        assert_eq!((huge.input, huge.output), (u64::MAX, u64::MAX));
    }

    #[test]
    fn reads_the_hostile_options() {
        let b =
            parse("huge_line=1048576+at=4+preamble_bytes=9+endless+echo_auth+text_error").unwrap();
        assert_eq!(b.huge_line, Some(1 << 20));
        assert_eq!(b.hostile_at, Some(4));
        assert_eq!(b.preamble_bytes, Some(9));
        assert!(b.endless && b.echo_credential && b.text_error);
        let b = parse("error_chunk=2+legacy_error").unwrap();
        assert_eq!(b.error_chunk_after, Some(2));
        assert_eq!(parse("malformed=1").unwrap().malformed_event_at, Some(1));
        assert!(b.legacy_error_chunk);
    }

    #[test]
    fn errors_name_the_option() {
        let err = parse("events=3+sloww").unwrap_err().to_string();
        assert!(err.contains("'sloww'"), "{err}");
        let err = parse("events=x").unwrap_err().to_string();
        assert!(err.contains("'events=x'"), "{err}");
        let err = parse("delay_ms").unwrap_err().to_string();
        assert!(err.contains("'delay_ms'"), "{err}");
        let err = parse("fail=1").unwrap_err().to_string();
        assert!(err.contains("'fail=1'"), "{err}");
    }
}
