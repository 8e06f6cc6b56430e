//! [`ReplayableBody`]: a streaming body that keeps what it sent, up to a cap.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tower::BoxError;

use super::DEFAULT_REPLAY_CAP;

/// A streaming request body that can be replayed once it has been sent, if it was small enough.
///
/// Wrap a streaming body (an incoming request being proxied, a channel) in it when the request
/// should survive a 401 replay or a transient retry. It keeps each frame it sends (by reference
/// count for `Bytes` frames) until the cap; past the cap it drops what it kept and the request
/// is not replayed. A body already at its end when wrapped (an empty GET's, which a client never
/// polls) is replayable at once. In-memory bodies (`Full<Bytes>`, `Empty<Bytes>`, `String`) need
/// no wrapper.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower_bearer::ReplayableBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = ReplayableBody::new(Full::new(Bytes::from_static(b"{\"model\":\"x\"}")));
/// let collected = body.collect().await.unwrap().to_bytes();
/// assert_eq!(collected, "{\"model\":\"x\"}");
/// # }
/// ```
pub struct ReplayableBody {
    state: State,
}

enum State {
    /// The original, streaming and recording.
    Recording {
        inner: UnsyncBoxBody<Bytes, BoxError>,
        tape: Arc<Mutex<Tape>>,
    },
    /// A replay, playing back a finished tape.
    Replaying { tape: Arc<Mutex<Tape>>, next: usize },
}

struct Tape {
    frames: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    len: usize,
    cap: usize,
    /// The original went past the cap: nothing is kept.
    overflowed: bool,
    /// The original reached its end.
    complete: bool,
}

impl ReplayableBody {
    /// Wraps `body`, keeping up to 64 KiB for a replay.
    pub fn new<B>(body: B) -> ReplayableBody
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        ReplayableBody::with_cap(body, DEFAULT_REPLAY_CAP)
    }

    /// Wraps `body`, keeping up to `cap` bytes for a replay.
    pub fn with_cap<B>(body: B, cap: usize) -> ReplayableBody
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let inner = body
            .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            .map_err(Into::into)
            .boxed_unsync();
        // A body already at its end (an empty GET's) is never polled by hyper: it is a complete
        // recording of nothing from the start, or it could never be replayed.
        let complete = inner.is_end_stream();
        ReplayableBody {
            state: State::Recording {
                inner,
                tape: Arc::new(Mutex::new(Tape {
                    frames: Vec::new(),
                    trailers: None,
                    len: 0,
                    cap,
                    overflowed: false,
                    complete,
                })),
            },
        }
    }

    /// A body already recorded in full: `frames`, then `trailers`. Replayable at once, so a
    /// replay does not depend on how far the client got in sending the original.
    #[cfg(feature = "grpc")]
    pub(crate) fn recorded(frames: Vec<Bytes>, trailers: Option<HeaderMap>) -> ReplayableBody {
        let len = frames.iter().map(Bytes::len).sum();
        ReplayableBody {
            state: State::Replaying {
                tape: Arc::new(Mutex::new(Tape {
                    frames,
                    trailers,
                    len,
                    cap: len,
                    overflowed: false,
                    complete: true,
                })),
                next: 0,
            },
        }
    }

    fn tape(&self) -> &Arc<Mutex<Tape>> {
        match &self.state {
            State::Recording { tape, .. } | State::Replaying { tape, .. } => tape,
        }
    }

    pub(super) fn replay_handle(&self) -> ReplayableBody {
        ReplayableBody {
            state: State::Replaying {
                tape: self.tape().clone(),
                next: 0,
            },
        }
    }

    pub(super) fn can_replay(&self) -> bool {
        let tape = lock(self.tape());
        tape.complete && !tape.overflowed
    }
}

fn lock(tape: &Mutex<Tape>) -> std::sync::MutexGuard<'_, Tape> {
    // A panic while holding the lock cannot leave the tape half-written in a way that matters:
    // `complete` is set last.
    tape.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Body for ReplayableBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.state {
            State::Recording { inner, tape } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                let mut tape = lock(tape);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        tape.record(frame);
                        // A body of known length is complete with its last byte: a server that
                        // answers 401 at once may never let the client poll for the end.
                        if inner.is_end_stream() {
                            tape.complete = true;
                        }
                    }
                    Poll::Ready(None) => tape.complete = true,
                    _ => {}
                }
                polled
            }
            State::Replaying { tape, next } => {
                let tape = lock(tape);
                if !tape.complete || tape.overflowed {
                    return Poll::Ready(Some(Err(
                        "the request body cannot be replayed: it was not kept in full".into(),
                    )));
                }
                let i = *next;
                *next += 1;
                Poll::Ready(match tape.frames.get(i) {
                    Some(data) => Some(Ok(Frame::data(data.clone()))),
                    None if i == tape.frames.len() => {
                        tape.trailers.clone().map(|t| Ok(Frame::trailers(t)))
                    }
                    None => None,
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Recording { inner, tape } => {
                let end = inner.is_end_stream();
                if end {
                    // A client that sees the end does not poll again: what was sent is the
                    // whole body.
                    lock(tape).complete = true;
                }
                end
            }
            State::Replaying { tape, next } => {
                let tape = lock(tape);
                tape.complete
                    && !tape.overflowed
                    && (*next > tape.frames.len()
                        || (*next == tape.frames.len() && tape.trailers.is_none()))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Recording { inner, .. } => inner.size_hint(),
            State::Replaying { tape, .. } => {
                let tape = lock(tape);
                if tape.complete && !tape.overflowed {
                    SizeHint::with_exact(tape.len as u64)
                } else {
                    SizeHint::default()
                }
            }
        }
    }
}

impl Tape {
    fn record(&mut self, frame: &Frame<Bytes>) {
        if self.overflowed {
            return;
        }
        if let Some(data) = frame.data_ref() {
            self.len += data.len();
            if self.len > self.cap {
                self.overflowed = true;
                self.frames = Vec::new();
                return;
            }
            self.frames.push(data.clone());
        } else if let Some(trailers) = frame.trailers_ref() {
            self.trailers = Some(trailers.clone());
        }
    }
}

impl fmt::Debug for ReplayableBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tape = lock(self.tape());
        f.debug_struct("ReplayableBody")
            .field("replaying", &matches!(self.state, State::Replaying { .. }))
            .field("kept_bytes", &tape.len)
            .field("cap", &tape.cap)
            .field("complete", &tape.complete)
            .field("overflowed", &tape.overflowed)
            .finish()
    }
}
