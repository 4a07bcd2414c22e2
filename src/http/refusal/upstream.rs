//! The refusal of a request that reached upstreams and got no usable answer: why, in the
//! client's terms. The relay decides the [`UpstreamWhy`] from its last failure
//! (`relay::failure::refusal`); the status, kind and wording live here.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

/// Why every account tried failed, as the client is told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamWhy {
    /// The upstream answered 429.
    RateLimited { retry_after: Option<Duration> },
    /// The upstream answered 401 or 403: the gateway's credentials, not the client's key.
    CredentialsRejected { status: u16 },
    /// The upstream answered 402.
    Billing,
    /// The upstream answered 529.
    Overloaded,
    /// Any other upstream status (a 5xx, say).
    Status { status: u16 },
    /// No connection (refused, DNS, TLS).
    Unreachable,
    /// No response headers in time.
    NoHeaders,
    /// The connection broke while reading the answer.
    Broken,
    /// The stream went silent too long.
    Stalled,
    /// The stream sent no real output in time (`gateway.first_token_timeout`).
    NoFirstToken,
    /// The upstream's stream failed for a reason of the request's own (not worth another account).
    RequestRefused { detail: String },
    /// The upstream's stream failed before any output.
    ResponseFailed,
    /// An answer the gateway cannot use.
    Unusable { detail: String },
    /// The client left; nobody reads this answer, but it is recorded.
    ClientGone,
    /// The gateway is out of file descriptors or sockets.
    OutOfResources,
    /// A request error from the upstream whose body is not JSON (an HTML page from a proxy,
    /// say): told in the route's shape instead of being labelled `application/json` as it is.
    NotJson { status: StatusCode, summary: String },
}

/// A request every tried account failed: the last failure, in the client's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRefusal {
    pub why: UpstreamWhy,
    /// Accounts tried.
    pub tried: usize,
    /// `upstream_status_429`, the stream's own error code, or the failure kind.
    pub code: String,
    pub request_id: String,
    /// A request error from the upstream (a 400, say), given to a JSON client as it came: its
    /// status and body replace the rendered ones; a stream already committed is told `why`.
    pub passthrough: Option<(StatusCode, Bytes)>,
}

impl UpstreamRefusal {
    pub(super) fn status(&self) -> StatusCode {
        if let Some((status, _)) = &self.passthrough {
            return *status;
        }
        match &self.why {
            UpstreamWhy::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamWhy::CredentialsRejected { .. }
            | UpstreamWhy::Billing
            | UpstreamWhy::Status { .. }
            | UpstreamWhy::Unreachable
            | UpstreamWhy::Broken
            | UpstreamWhy::ResponseFailed
            | UpstreamWhy::Unusable { .. }
            | UpstreamWhy::ClientGone => StatusCode::BAD_GATEWAY,
            UpstreamWhy::Overloaded | UpstreamWhy::OutOfResources => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamWhy::NoHeaders | UpstreamWhy::Stalled | UpstreamWhy::NoFirstToken => {
                StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamWhy::RequestRefused { .. } => StatusCode::BAD_REQUEST,
            UpstreamWhy::NotJson { status, .. } => *status,
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match &self.why {
            UpstreamWhy::RateLimited { .. } => "rate_limit_error",
            UpstreamWhy::CredentialsRejected { .. }
            | UpstreamWhy::Billing
            | UpstreamWhy::Status { .. }
            | UpstreamWhy::Unreachable
            | UpstreamWhy::Broken
            | UpstreamWhy::ResponseFailed
            | UpstreamWhy::Unusable { .. }
            | UpstreamWhy::ClientGone => "upstream_error",
            UpstreamWhy::Overloaded => "overloaded_error",
            UpstreamWhy::NoHeaders | UpstreamWhy::Stalled | UpstreamWhy::NoFirstToken => {
                "timeout_error"
            }
            UpstreamWhy::RequestRefused { .. } | UpstreamWhy::NotJson { .. } => {
                "invalid_request_error"
            }
            UpstreamWhy::OutOfResources => "service_unavailable",
        }
    }

    pub(super) fn message(&self) -> Cow<'static, str> {
        let tried = if self.tried == 1 {
            Cow::Borrowed("the account tried")
        } else {
            Cow::Owned(format!("all {} accounts tried", self.tried))
        };
        let what = match &self.why {
            UpstreamWhy::RateLimited { .. } => format!("upstream rate limit reached on {tried}"),
            UpstreamWhy::CredentialsRejected { status } => format!(
                "upstream rejected the credentials of {tried} (status {status}); the gateway's operator must renew them"
            ),
            UpstreamWhy::Billing => {
                format!("upstream refused {tried} for billing reasons (status 402)")
            }
            UpstreamWhy::Overloaded => format!("upstream overloaded on {tried} (status 529)"),
            UpstreamWhy::Status { status } => {
                format!("upstream error on {tried} (status {status})")
            }
            UpstreamWhy::Unreachable => format!("could not connect to the upstream of {tried}"),
            UpstreamWhy::NoHeaders => format!("the upstream of {tried} did not answer in time"),
            UpstreamWhy::Broken => format!("the upstream connection broke on {tried}"),
            UpstreamWhy::Stalled => format!("the upstream stream stalled on {tried}"),
            UpstreamWhy::NoFirstToken => {
                format!("the upstream stream of {tried} sent no output in time")
            }
            UpstreamWhy::RequestRefused { detail } => {
                format!("upstream refused the request: {detail}")
            }
            UpstreamWhy::ResponseFailed => format!("the upstream response failed on {tried}"),
            UpstreamWhy::Unusable { detail } => {
                format!("unusable upstream answer on {tried}: {detail}")
            }
            UpstreamWhy::ClientGone => {
                "the client went away before the upstream answer ended".to_owned()
            }
            UpstreamWhy::OutOfResources => "the gateway is out of local resources (open files or sockets) and cannot reach an upstream now; retry shortly".to_owned(),
            UpstreamWhy::NotJson { status, summary } => format!(
                "the upstream refused the request (status {}){summary}",
                status.as_u16()
            ),
        };
        Cow::Owned(format!("{what} (request {})", self.request_id))
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match &self.why {
            UpstreamWhy::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}
