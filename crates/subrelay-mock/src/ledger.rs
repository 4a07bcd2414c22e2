//! The mock's memory: what arrived, what is scripted, what was answered to the end.
//!
//! Tests assert on it ("the second account got one call", "the stream the client abandoned never
//! completed"), so it is updated at well-defined moments: a request is counted and recorded as
//! soon as its body has been read, before any scripted delay, so a test can see a call that is
//! still hanging; an answer counts as completed only when its final byte was handed to the
//! connection. Token-endpoint requests are recorded too but counted apart, in the token desk.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::behavior::Behavior;
use crate::oauth::TokenDesk;
use crate::quota::Quota;

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The request method.
    pub method: Method,
    /// Path and query (`/v1/responses?x=1`).
    pub path: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The raw body bytes, as received (not decompressed).
    pub body: Bytes,
    /// The token of `Authorization: Bearer <token>`, else `x-api-key`; `None` on the token
    /// endpoints (the refresh token travels in the body).
    pub credential: Option<String>,
}

/// Counters and records shared by the server and its handle.
#[derive(Debug)]
pub(crate) struct Ledger {
    book: Mutex<Book>,
    /// Kept apart from the book so finishing a body never takes the lock.
    completed: AtomicUsize,
    /// API answers begun and not yet dropped, and the most there ever were at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Whether `requests()` keeps copies; long benchmark runs turn it off to stay flat in memory.
    keep_records: AtomicBool,
    /// The token endpoints' own counts and tokens.
    pub(crate) tokens: TokenDesk,
}

#[derive(Debug, Default)]
struct Book {
    total: usize,
    by_credential: HashMap<String, usize>,
    scripts: HashMap<String, VecDeque<Behavior>>,
    requests: Vec<RecordedRequest>,
    quotas: HashMap<String, Quota>,
    /// WebSocket upgrade requests on the Responses routes, refused ones included.
    upgrades: usize,
    /// `response.create` messages received over WebSockets.
    turns: usize,
    /// POST requests on any API route.
    posts: usize,
    /// Answer upgrades with this status instead of 101.
    refuse_websocket: Option<u16>,
    /// The same, for one credential's upgrades.
    refuse_websocket_for: HashMap<String, u16>,
    /// WebSocket sessions open now.
    open_websockets: usize,
    /// Every `previous_response_id` is unknown (an upstream that lost a socket's state).
    websocket_forgets: bool,
}

/// The counts served by `GET /__mock/calls`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct CallCounts {
    pub total: usize,
    pub completed: usize,
    pub by_credential: BTreeMap<String, usize>,
}

impl Ledger {
    pub(crate) fn new() -> Self {
        Self {
            book: Mutex::new(Book::default()),
            completed: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            keep_records: AtomicBool::new(true),
            tokens: TokenDesk::new(),
        }
    }

    /// A poisoned lock only means a panicking test thread; the counts are still meaningful.
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request and keeps a copy of it (when records are kept).
    pub(crate) fn arrive(
        &self,
        request: &http::request::Parts,
        body: &Bytes,
        credential: Option<&str>,
    ) {
        let record = self.record(request, body, credential);
        let mut book = self.book();
        book.total += 1;
        if request.method == Method::POST {
            book.posts += 1;
        }
        if let Some(credential) = credential {
            match book.by_credential.get_mut(credential) {
                Some(count) => *count += 1,
                None => {
                    book.by_credential.insert(credential.to_owned(), 1);
                }
            }
        }
        if let Some(record) = record {
            book.requests.push(record);
        }
    }

    /// Counts a WebSocket upgrade request (not an API call) and keeps a copy of it.
    pub(crate) fn note_upgrade<B>(&self, request: &http::Request<B>, credential: Option<&str>) {
        let record = self
            .keep_records
            .load(Ordering::Relaxed)
            .then(|| RecordedRequest {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
                headers: request.headers().clone(),
                body: Bytes::new(),
                credential: credential.map(str::to_owned),
            });
        let mut book = self.book();
        book.upgrades += 1;
        if let Some(record) = record {
            book.requests.push(record);
        }
    }

    /// Counts one `response.create` message as an API call, recorded with the method `WS`.
    pub(crate) fn note_turn(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
        credential: Option<&str>,
    ) {
        let mut parts = http::Request::new(()).into_parts().0;
        parts.method = Method::from_bytes(b"WS").unwrap_or(Method::GET);
        parts.uri = path.parse().unwrap_or_default();
        parts.headers = headers.clone();
        self.arrive(&parts, body, credential);
        self.book().turns += 1;
    }

    /// A WebSocket session opened (`true`) or ended.
    pub(crate) fn websocket_open(&self, open: bool) {
        let mut book = self.book();
        if open {
            book.open_websockets += 1;
        } else {
            book.open_websockets = book.open_websockets.saturating_sub(1);
        }
    }

    pub(crate) fn websocket_forgets(&self) -> bool {
        self.book().websocket_forgets
    }

    pub(crate) fn set_websocket_forgets(&self, forgets: bool) {
        self.book().websocket_forgets = forgets;
    }

    pub(crate) fn open_websockets(&self) -> usize {
        self.book().open_websockets
    }

    pub(crate) fn websocket_refusal(&self, credential: Option<&str>) -> Option<u16> {
        let book = self.book();
        credential
            .and_then(|c| book.refuse_websocket_for.get(c).copied())
            .or(book.refuse_websocket)
    }

    pub(crate) fn set_websocket_refusal_for(&self, credential: &str, status: u16) {
        self.book()
            .refuse_websocket_for
            .insert(credential.to_owned(), status);
    }

    pub(crate) fn set_websocket_refusal(&self, status: Option<u16>) {
        self.book().refuse_websocket = status;
    }

    /// Upgrades, turns and POSTs so far.
    pub(crate) fn transports(&self) -> (usize, usize, usize) {
        let book = self.book();
        (book.upgrades, book.turns, book.posts)
    }

    /// Keeps a copy of a token-endpoint request (when records are kept) without counting it as
    /// an API call; its credential is `None` (the refresh token travels in the body).
    pub(crate) fn note_token_request(&self, request: &http::request::Parts, body: &Bytes) {
        if let Some(record) = self.record(request, body, None) {
            self.book().requests.push(record);
        }
    }

    fn record(
        &self,
        request: &http::request::Parts,
        body: &Bytes,
        credential: Option<&str>,
    ) -> Option<RecordedRequest> {
        self.keep_records
            .load(Ordering::Relaxed)
            .then(|| RecordedRequest {
                method: request.method.clone(),
                path: request.uri.path_and_query().map_or_else(
                    || request.uri.path().to_owned(),
                    |pq| pq.as_str().to_owned(),
                ),
                headers: request.headers.clone(),
                body: body.clone(),
                credential: credential.map(str::to_owned),
            })
    }

    /// Pops the next scripted step for this credential, if one is queued.
    pub(crate) fn next_step(&self, credential: Option<&str>) -> Option<Behavior> {
        let credential = credential?;
        let mut book = self.book();
        if book.scripts.is_empty() {
            return None;
        }
        let queue = book.scripts.get_mut(credential)?;
        let step = queue.pop_front();
        if queue.is_empty() {
            book.scripts.remove(credential);
        }
        step
    }

    /// Appends steps to this credential's queue.
    pub(crate) fn script(&self, credential: &str, steps: Vec<Behavior>) {
        if steps.is_empty() {
            return;
        }
        self.book()
            .scripts
            .entry(credential.to_owned())
            .or_default()
            .extend(steps);
    }

    /// Gives this credential usage windows (replacing any it had).
    pub(crate) fn set_quota(&self, credential: &str, quota: Quota) {
        self.book().quotas.insert(credential.to_owned(), quota);
    }

    pub(crate) fn quota(&self, credential: &str) -> Option<Quota> {
        self.book().quotas.get(credential).cloned()
    }

    /// One call on this credential's windows, if it has any: what to report, and whether the
    /// call is refused (a window is full).
    pub(crate) fn spend_quota(
        &self,
        credential: Option<&str>,
        free: bool,
    ) -> Option<(Quota, bool)> {
        let credential = credential?;
        let mut book = self.book();
        book.quotas.get_mut(credential).map(|q| q.spend(free))
    }

    /// One API answer begins: in flight until the returned guard drops (with its body).
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.max_in_flight.fetch_max(now, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::Acquire)
    }

    /// Marks one answer as written to its end.
    pub(crate) fn finish(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn calls(&self, credential: &str) -> usize {
        self.book()
            .by_credential
            .get(credential)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn total_calls(&self) -> usize {
        self.book().total
    }

    pub(crate) fn completed(&self) -> usize {
        self.completed.load(Ordering::Relaxed)
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.book().requests.clone()
    }

    pub(crate) fn counts(&self) -> CallCounts {
        let book = self.book();
        CallCounts {
            total: book.total,
            completed: self.completed(),
            by_credential: book
                .by_credential
                .iter()
                .map(|(credential, count)| (credential.clone(), *count))
                .collect(),
        }
    }

    pub(crate) fn set_keep_records(&self, keep: bool) {
        self.keep_records.store(keep, Ordering::Relaxed);
    }

    /// Clears counts, records and scripts, and the token desk's calls and tokens.
    pub(crate) fn reset(&self) {
        let mut book = self.book();
        *book = Book::default();
        self.completed.store(0, Ordering::Relaxed);
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Acquire), Ordering::Release);
        drop(book);
        self.tokens.reset();
    }
}

/// An API answer in flight (see [`Ledger::enter`]).
pub(crate) struct InFlight(Arc<Ledger>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
