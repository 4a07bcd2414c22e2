//! The response body: prepared chunks written one by one, then a scripted ending.
//!
//! Every byte of an answer is computed before the headers leave; the body only decides *when*
//! each chunk goes (a pause between stream events) and *how* the answer ends: cleanly, cut (the
//! connection is dropped, so a chunked body never gets its terminating chunk and the client sees
//! a body error), or hanging (nothing more, connection open, until the client goes away).
//! It also tells the ledger when the final chunk was handed to the connection, which is what
//! `MockUpstream::completed` counts.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::ledger::Ledger;

/// Pause before cutting a connection, so the headers and chunks already handed to hyper reach the
/// socket first: hyper drops its unflushed write buffer when a body fails, and the client must
/// see exactly the events before the cut, then a broken body.
const CUT_GRACE: Duration = Duration::from_millis(10);

/// How a body ends once its chunks are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A clean end; the answer counts as completed.
    Complete,
    /// The connection is dropped abruptly.
    Cut,
    /// Nothing more is sent and the body never ends.
    Hang,
}

/// One piece of a body: a prepared chunk, or a chunk repeated (the hostile modes: a line of many
/// megabytes, a long preamble, a stream without end) so that its bytes are never all in memory.
#[derive(Clone, Debug)]
pub(crate) enum Segment {
    Once(Bytes),
    /// `piece` again and again: `left` bytes in all (the last copy cut short), or forever.
    Repeat {
        piece: Bytes,
        left: Option<usize>,
    },
}

impl Segment {
    fn is_empty(&self) -> bool {
        match self {
            Self::Once(bytes) => bytes.is_empty(),
            Self::Repeat { piece, left } => piece.is_empty() || *left == Some(0),
        }
    }
}

/// A body made of prepared chunks.
pub(crate) struct MockBody {
    chunks: VecDeque<Segment>,
    interval: Duration,
    pause: Option<Pin<Box<Sleep>>>,
    ending: Ending,
    /// Announces a complete answer; `None` for bodies that are not counted (control routes) or
    /// once announced.
    ledger: Option<Arc<Ledger>>,
    /// Whether the client may be told the length up front (plain JSON answers).
    known_length: bool,
    cut: CutState,
    /// Counts the API answer in flight until the body is dropped.
    pub(crate) in_flight: Option<crate::ledger::InFlight>,
}

/// Progress of a [`Ending::Cut`] once the chunks are out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CutState {
    NotYet,
    Grace,
    Done,
}

impl MockBody {
    /// A body written as the given chunks, `interval` apart, then ended as `ending`.
    pub(crate) fn chunks(chunks: Vec<Bytes>, interval: Duration, ending: Ending) -> Self {
        Self::segments(
            chunks.into_iter().map(Segment::Once).collect(),
            interval,
            ending,
        )
    }

    /// A body written as the given segments, one chunk at a time, `interval` apart.
    pub(crate) fn segments(segments: Vec<Segment>, interval: Duration, ending: Ending) -> Self {
        Self {
            chunks: segments.into_iter().filter(|s| !s.is_empty()).collect(),
            interval,
            pause: None,
            ending,
            ledger: None,
            known_length: false,
            cut: CutState::NotYet,
            in_flight: None,
        }
    }

    /// A single-chunk body whose length is announced with `content-length`.
    pub(crate) fn full(bytes: Bytes) -> Self {
        let mut body = Self::chunks(vec![bytes], Duration::ZERO, Ending::Complete);
        body.known_length = true;
        body
    }

    /// An empty body.
    pub(crate) fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// Counts this body in the ledger's `completed` once it was written to its end.
    pub(crate) fn counted(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The next chunk to write, taken from the front segment.
    fn next_chunk(&mut self) -> Option<Bytes> {
        match self.chunks.front_mut()? {
            Segment::Once(_) => match self.chunks.pop_front() {
                Some(Segment::Once(bytes)) => Some(bytes),
                _ => None,
            },
            Segment::Repeat { piece, left } => {
                let chunk = match left {
                    None => piece.clone(),
                    Some(left) => {
                        let take = (*left).min(piece.len());
                        *left -= take;
                        piece.slice(..take)
                    }
                };
                if *left == Some(0) {
                    self.chunks.pop_front();
                }
                Some(chunk)
            }
        }
    }

    fn announce_complete(&mut self) {
        if let Some(ledger) = self.ledger.take() {
            ledger.finish();
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        if let Some(chunk) = this.next_chunk() {
            if !this.chunks.is_empty() {
                if !this.interval.is_zero() {
                    this.pause = Some(Box::pin(tokio::time::sleep(this.interval)));
                }
            } else {
                if this.ending == Ending::Complete {
                    // Counted before hyper receives the chunk, so a client that has read the
                    // whole answer always finds it counted.
                    this.announce_complete();
                }
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match this.ending {
            Ending::Complete => {
                this.announce_complete();
                Poll::Ready(None)
            }
            Ending::Cut => match this.cut {
                CutState::NotYet => {
                    this.cut = CutState::Grace;
                    this.pause = Some(Box::pin(tokio::time::sleep(CUT_GRACE)));
                    Pin::new(this).poll_frame(cx)
                }
                CutState::Grace => {
                    this.cut = CutState::Done;
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "subrelay-mock: scripted cut",
                    ))))
                }
                CutState::Done => Poll::Ready(None),
            },
            Ending::Hang => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ending == Ending::Complete && self.chunks.is_empty() && self.pause.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.known_length && self.ending == Ending::Complete {
            let len: usize = self
                .chunks
                .iter()
                .map(|segment| match segment {
                    Segment::Once(bytes) => bytes.len(),
                    Segment::Repeat { left, .. } => left.unwrap_or(0),
                })
                .sum();
            SizeHint::with_exact(len as u64)
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn complete_body_is_counted_once() {
        let ledger = Arc::new(Ledger::new());
        let body = MockBody::chunks(
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            Duration::from_millis(1),
            Ending::Complete,
        )
        .counted(ledger.clone());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"ab");
        assert_eq!(ledger.completed(), 1);
    }

    #[tokio::test]
    async fn cut_body_fails_and_is_not_counted() {
        let ledger = Arc::new(Ledger::new());
        let mut body =
            MockBody::chunks(vec![Bytes::from_static(b"a")], Duration::ZERO, Ending::Cut)
                .counted(ledger.clone());
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"a"));
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(ledger.completed(), 0);
    }

    #[tokio::test]
    async fn repeated_segments_are_cut_to_their_size() {
        let body = MockBody::segments(
            vec![
                Segment::Once(Bytes::from_static(b"<")),
                Segment::Repeat {
                    piece: Bytes::from_static(b"abc"),
                    left: Some(7),
                },
                Segment::Once(Bytes::from_static(b">")),
            ],
            Duration::ZERO,
            Ending::Complete,
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"<abcabca>");
    }

    #[tokio::test]
    async fn endless_segment_never_ends() {
        let mut body = MockBody::segments(
            vec![Segment::Repeat {
                piece: Bytes::from_static(b"x"),
                left: None,
            }],
            Duration::ZERO,
            Ending::Complete,
        );
        for _ in 0..10_000 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        assert!(!body.is_end_stream());
    }

    #[tokio::test]
    async fn hanging_body_never_ends() {
        let mut body = MockBody::chunks(vec![], Duration::ZERO, Ending::Hang);
        let waited = tokio::time::timeout(Duration::from_millis(20), body.frame()).await;
        assert!(waited.is_err());
    }
}
