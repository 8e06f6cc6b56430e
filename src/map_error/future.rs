//! [`ResponseFuture`] of [`ErrorMapping`](crate::ErrorMapping), and the bounded read of an error
//! body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::BoxError;

use super::api_error::ApiError;
use super::config::{Config, DEFAULT_BODY_CAP};

/// Frames read in one poll before the read yields to the runtime.
const FRAMES_PER_POLL: usize = 64;

pin_project! {
    /// The response future of [`ErrorMapping`](crate::ErrorMapping).
    ///
    /// A success costs one status check on top of the inner future: no allocation, no boxing,
    /// the body untouched. A status of 400 or more makes it read the body (bounded by the cap
    /// and the timeout) in a boxed state, then fail with an [`ApiError`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        config: Config,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Calling { #[pin] future: F },
        Reading { read: Pin<Box<ReadBody<B>>> },
        Done,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, config: Config) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            config,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if response.status().as_u16() < 400 {
                        return Poll::Ready(Ok(response));
                    }
                    let read = ReadBody::start(response, *this.config);
                    this.state.set(State::Reading { read });
                }
                StateProj::Reading { read } => {
                    let error = ready!(read.as_mut().poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(Err(Box::new(error)));
                }
                StateProj::Done => panic!("ErrorMapping's ResponseFuture polled after completion"),
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Reading { .. } => "reading error body",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    /// Reads an error body into memory, up to the cap, until the deadline.
    struct ReadBody<B> {
        #[pin]
        body: B,
        head: Option<http::response::Parts>,
        buf: BytesMut,
        cap: usize,
        // the body has more than `buf`, or reading it failed or timed out
        incomplete: bool,
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

impl<B: Body> ReadBody<B> {
    #[cold]
    fn start(response: Response<B>, config: Config) -> Pin<Box<Self>> {
        let (head, body) = response.into_parts();
        let expected = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
        // Outside a tokio runtime there is no timer to set: read with no deadline.
        let deadline = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| Box::pin(tokio::time::sleep(config.body_timeout)));
        Box::pin(ReadBody {
            body,
            head: Some(head),
            // Trust a declared length only up to the default cap: a huge cap is a limit, not
            // a reason to allocate what the server claims up front.
            buf: BytesMut::with_capacity(expected.min(config.body_cap).min(DEFAULT_BODY_CAP)),
            cap: config.body_cap,
            incomplete: false,
            deadline,
        })
    }
}

impl<B> Future for ReadBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = ApiError;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ApiError> {
        let mut this = self.project();
        let mut frames = 0;
        loop {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Pending => {
                    if timed_out(this.deadline, cx) {
                        *this.incomplete = true;
                        break;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => break,
                Poll::Ready(Some(Err(error))) => {
                    let error: BoxError = error.into();
                    tracing::debug!(%error, read = this.buf.len(), "reading an error body failed");
                    *this.incomplete = true;
                    break;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        let room = *this.cap - this.buf.len();
                        if data.remaining() > room {
                            // Keep what fits, leave the rest unread.
                            this.buf.put((&mut data).take(room));
                            *this.incomplete = true;
                            break;
                        }
                        this.buf.put(data);
                        if this.buf.len() == *this.cap && this.body.is_end_stream() {
                            break;
                        }
                    }
                    frames += 1;
                    if frames == FRAMES_PER_POLL {
                        if timed_out(this.deadline, cx) {
                            *this.incomplete = true;
                            break;
                        }
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            }
        }
        let head = this.head.take().expect("ReadBody polled after completion");
        let body = this.buf.split().freeze();
        Poll::Ready(ApiError::read(
            head.status,
            head.headers,
            body,
            *this.incomplete,
        ))
    }
}

fn timed_out(deadline: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    match deadline {
        Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
        None => false,
    }
}
