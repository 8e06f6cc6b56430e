//! A tonic request body made replayable: what it has ready now is taken whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::body::Body as TonicBody;
use tonic::Status;

use crate::ReplayableBody;

/// Takes the frames `body` has ready now, without waiting, up to `cap` bytes.
///
/// A unary or server-streaming call's body is its one message, encoded when first polled:
/// ready at once, and so recorded in full before it is sent, and replayable whatever the
/// server answers and however far the client got in sending it. A client-streaming or
/// bidirectional call's body waits for the caller's next message: what was ready is sent
/// first, the rest streams as it comes, recorded up to `cap` (replayable only if it ended
/// within the cap before the rejection). Nothing here waits, so a stream that waits for a
/// response before sending more is never held up.
pub(super) fn take_ready(mut body: TonicBody, cap: usize) -> ReplayableBody {
    let mut frames = Vec::new();
    let mut len = 0usize;
    // No task to wake: a body that is not ready is handed on, and whoever polls it next
    // registers their own waker.
    let mut cx = Context::from_waker(Waker::noop());
    let error = loop {
        if body.is_end_stream() {
            return ReplayableBody::recorded(frames, None);
        }
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => return ReplayableBody::recorded(frames, None),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    len = len.saturating_add(data.len());
                    frames.push(data);
                    if len > cap {
                        break None;
                    }
                }
                // Trailers end a body.
                Err(frame) => return ReplayableBody::recorded(frames, frame.into_trailers().ok()),
            },
            Poll::Ready(Some(Err(status))) => break Some(status),
            Poll::Pending => break None,
        }
    };
    let rest = Prefixed {
        frames: frames.into(),
        error,
        rest: body,
    };
    ReplayableBody::with_cap(rest, cap)
}

pin_project! {
    /// The frames already taken from a body, then an error taken with them, or the rest of it.
    struct Prefixed {
        frames: VecDeque<Bytes>,
        error: Option<Status>,
        #[pin]
        rest: TonicBody,
    }
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if let Some(data) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(status) = this.error.take() {
            return Poll::Ready(Some(Err(status)));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.error.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let taken: u64 = self.frames.iter().map(|f| f.len() as u64).sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(taken));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(taken));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{can_replay, try_clone_request};
    use http_body_util::{BodyExt, Full, StreamBody};
    use tokio::sync::mpsc;

    fn data(frame: Frame<Bytes>) -> Bytes {
        frame.into_data().unwrap()
    }

    #[tokio::test]
    async fn a_ready_body_is_recorded_whole() {
        let body = TonicBody::new(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")));
        let req = http::Request::new(take_ready(body, 64));
        let copy = try_clone_request(&req).unwrap();
        assert!(can_replay(&copy), "replayable before anything was sent");
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        let again = copy.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent, "\0\0\0\0\x02hi");
        assert_eq!(again, sent);
    }

    #[tokio::test]
    async fn a_waiting_stream_is_handed_on_in_order() {
        let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, Status>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
            .await
            .unwrap();
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let req = http::Request::new(take_ready(TonicBody::new(StreamBody::new(stream)), 64));
        let copy = try_clone_request(&req).unwrap();
        assert!(!can_replay(&copy), "not ended yet");
        let mut body = req.into_body();
        assert_eq!(data(body.frame().await.unwrap().unwrap()), "one");
        tx.send(Ok(Frame::data(Bytes::from_static(b"two"))))
            .await
            .unwrap();
        assert_eq!(data(body.frame().await.unwrap().unwrap()), "two");
        drop(tx);
        assert!(body.frame().await.is_none());
        assert!(can_replay(&copy), "ended within the cap");
        let again = copy.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(again, "onetwo");
    }

    #[tokio::test]
    async fn more_than_the_cap_is_sent_but_not_kept() {
        let body = TonicBody::new(Full::new(Bytes::from(vec![1u8; 100])));
        let req = http::Request::new(take_ready(body, 10));
        let copy = try_clone_request(&req).unwrap();
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), 100);
        assert!(!can_replay(&copy));
    }

    #[tokio::test]
    async fn an_error_taken_early_is_passed_on_after_the_data() {
        let frames: Vec<Result<Frame<Bytes>, Status>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err(Status::internal("encoding failed")),
        ];
        let stream = futures_util::stream::iter(frames);
        let mut body = take_ready(TonicBody::new(StreamBody::new(stream)), 64);
        assert_eq!(data(body.frame().await.unwrap().unwrap()), "a");
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("encoding failed"), "{err}");
    }
}
