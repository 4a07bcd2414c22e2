//! The access log (`log.access`): one line per request under the tracing target `access`, written
//! when the answer is settled, with `key=value` fields an operator can grep:
//!
//! `request_id route method status key account model duration_ms bytes`
//!
//! `key` is the API key's *name*, never the key; `-` marks what a request did not get to (no key
//! before authentication, no account before one was tried, no request id on routes that are not
//! relayed). `route` is the request's path, cut to [`MAX_PATH_CHARS`] (axum's matched-path
//! feature is off, so not the route template); never the query string. `bytes` is the body
//! handed to the connection.
//!
//! Who writes the line: relayed routes write their own (a refusal at once, a relayed answer when
//! the relay task has finished, so it knows the account and the streamed bytes); the other routes
//! (`/v1/models`, `/healthz`, `/`, the admin API and dashboard) go through [`layer`]; the
//! fallbacks (404, 405) write theirs in their handler.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;
use tokio::time::Instant;

/// Longest unknown path written to the log (a path can be as long as the request line allows).
pub const MAX_PATH_CHARS: usize = 200;

/// `-` for what a request did not get to.
pub const NONE: &str = "-";

/// One access line's facts.
pub struct Access<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub key: Option<&'a str>,
    pub account: Option<&'a str>,
    pub model: Option<&'a str>,
    pub started: Instant,
    pub bytes: u64,
}

impl Access<'_> {
    pub fn write(&self) {
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            target: "access",
            request_id = self.request_id,
            route = self.route,
            method = self.method,
            status = self.status,
            key = self.key.unwrap_or(NONE),
            account = self.account.unwrap_or(NONE),
            model = self.model.filter(|m| !m.is_empty()).unwrap_or(NONE),
            duration_ms,
            bytes = self.bytes,
        );
    }
}

/// The route of a request as logged: its path, cut short.
pub fn route_of(path: &str) -> String {
    match path.char_indices().nth(MAX_PATH_CHARS) {
        Some((at, _)) => format!("{}…", &path[..at]),
        None => path.to_owned(),
    }
}

/// The size of an answer's body when it is known up front (a complete body), else 0.
pub fn body_len(response: &Response) -> u64 {
    response.body().size_hint().exact().unwrap_or(0)
}

/// Whether the access log is on (`log.access`): the state of [`layer`].
#[derive(Debug, Clone, Copy)]
pub struct AccessLogOn(pub bool);

/// Middleware for the routes that do not log themselves.
pub async fn layer(State(on): State<AccessLogOn>, request: Request, next: Next) -> Response {
    if !on.0 {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let route = route_of(request.uri().path());
    let response = next.run(request).await;
    Access {
        request_id: NONE,
        method: method.as_str(),
        route: &route,
        status: response.status().as_u16(),
        key: None,
        account: None,
        model: None,
        started,
        bytes: body_len(&response),
    }
    .write();
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_paths_are_cut_and_short_ones_kept() {
        assert_eq!(super::route_of("/v1/nothing"), "/v1/nothing");
        let long = "/".repeat(super::MAX_PATH_CHARS + 50);
        let cut = super::route_of(&long);
        assert_eq!(cut.chars().count(), super::MAX_PATH_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
