use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use super::state::{is_ours, CloneState, Replay, ReplayWatch, Sent};
use crate::cache::LoadFuture;

/// Puts `$header` on `$req`, keeps what a 401 needs (unless the key is static), and calls
/// `$inner`, making the [`ResponseFuture`]: the one way a request leaves
/// the layer with the key on it.
///
/// A macro, not a function: through a function the request and the replay copy are moved
/// once more, which cost about 70 instructions per request under callgrind
/// (`benches/instructions.rs`). Here each part is built where the future holds it.
macro_rules! send_with_key {
    ($inner:expr, $state:expr, $req:ident, $header:expr, $generation:expr) => {{
        // `$req` is used where it is, a place: a `let` of it here was a copy of the whole
        // request (a `memcpy`) per request.
        let state: &::std::sync::Arc<$crate::auth::state::CloneState<_>> = $state;
        if state.config.static_key {
            $req.headers_mut()
                .insert(::http::header::AUTHORIZATION, $header);
            $crate::auth::future::ResponseFuture::sending($inner.call($req), None)
        } else {
            // Copied before the header goes on, so the copy never holds the key.
            let copy = if state.config.retry_on_unauthorized {
                $crate::replay::ReplayCopy::of(&$req)
            } else {
                None
            };
            $req.headers_mut()
                .insert(::http::header::AUTHORIZATION, $header);
            let sent = $crate::auth::state::Sent::new(state.clone(), $generation, copy);
            $crate::auth::future::ResponseFuture::sending($inner.call($req), Some(sent))
        }
    }};
}
pub(crate) use send_with_key;

pin_project! {
    /// Response future of [`BearerAuth`](crate::BearerAuth).
    ///
    /// With a cached key it only wraps the inner future; it loads the key first when there is
    /// none yet, and handles a 401 with one reload and at most one replay. Only those rarer
    /// paths allocate.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Sending {
            #[pin]
            fut: S::Future,
            sent: Option<Sent<S, B>>,
        },
        Replaying {
            #[pin]
            fut: S::Future,
            watch: ReplayWatch,
        },
        // Boxed: keeps the future as small as the hot path needs.
        Cold {
            cold: Box<Cold<S, B>>,
        },
    }
}

impl<S: Service<Request<B>>, B> fmt::Debug for ResponseFuture<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sending { .. } => "sending",
            State::Replaying { .. } => "replaying after a 401",
            State::Cold { cold } => match **cold {
                Cold::Loading { .. } => "loading the key",
                Cold::Reloading { .. } => "reloading the key after a 401",
                Cold::Readying { .. } => "waiting for the service to replay",
                Cold::Failed { .. } => "failed",
                Cold::Done => "done",
            },
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

enum Cold<S: Service<Request<B>>, B> {
    Loading {
        load: LoadFuture,
        inner: S,
        req: Request<B>,
        shared: Arc<CloneState<S>>,
    },
    Reloading {
        reload: LoadFuture,
        response: S::Response,
        sent: Sent<S, B>,
    },
    Readying {
        replay: Replay<S, B>,
    },
    Failed {
        error: BoxError,
    },
    Done,
}

impl<S: Service<Request<B>>, B> ResponseFuture<S, B> {
    #[inline(always)]
    pub(crate) fn sending(fut: S::Future, sent: Option<Sent<S, B>>) -> Self {
        ResponseFuture {
            state: State::Sending { fut, sent },
        }
    }

    pub(crate) fn loading(
        load: LoadFuture,
        inner: S,
        req: Request<B>,
        shared: Arc<CloneState<S>>,
    ) -> Self {
        ResponseFuture::cold(Cold::Loading {
            load,
            inner,
            req,
            shared,
        })
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture::cold(Cold::Failed { error })
    }

    fn cold(cold: Cold<S, B>) -> Self {
        ResponseFuture {
            state: State::Cold {
                cold: Box::new(cold),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: 'static,
{
    type Output = Result<Response<ResBody>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        // The hot path, small enough to inline: a response that is not a 401 to our key. The
        // replay copy stays where it is (dropped with the future), not moved out to be dropped.
        if let StateProj::Sending { fut, sent } = state.as_mut().project() {
            if sent.is_none() {
                // Nothing to look at (a static key, the caller's own header): the inner result
                // is converted where it lands, in the output. Matched out and wrapped again, it
                // was a copy of the whole `Response`, read right after it was written (7 ns
                // with `StaticKey` over an inner future that holds nothing; see BENCHMARKS.md).
                return fut.poll(cx).map_err(Into::into);
            }
            // Matched in place: the response is moved once, into the output (through `?` and
            // `map_err` it was moved twice, a copy of the whole `Response` each). Converted
            // first and looked at in the output, it counted 35 more instructions.
            match fut.poll(cx) {
                Poll::Ready(Ok(response)) if !is_ours(&response, sent) => {
                    return Poll::Ready(Ok(response))
                }
                Poll::Ready(Ok(response)) => {
                    let sent = sent.take();
                    state.set(unauthorized(response, sent));
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        poll_after_send(state, cx)
    }
}

/// A 401 to the key we sent: reload it (shared with every other request that got one).
#[cold]
fn unauthorized<S: Service<Request<B>>, B>(
    response: S::Response,
    sent: Option<Sent<S, B>>,
) -> State<S, B> {
    let Some(sent) = sent else {
        unreachable!("is_ours checked that a 401 had its Sent");
    };
    let reload = sent.reload();
    State::Cold {
        cold: Box::new(Cold::Reloading {
            reload,
            response,
            sent,
        }),
    }
}

/// Every state but the first send: the first load, the reload after a 401, the replay.
#[inline(never)]
fn poll_after_send<S, B, ResBody>(
    mut state: Pin<&mut State<S, B>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResBody>, BoxError>>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: 'static,
{
    loop {
        match state.as_mut().project() {
            StateProj::Sending { fut, sent } => {
                let response = ready!(fut.poll(cx)).map_err(Into::into)?;
                if !is_ours(&response, sent) {
                    return Poll::Ready(Ok(response));
                }
                let sent = sent.take();
                state.set(unauthorized(response, sent));
            }
            StateProj::Replaying { fut, watch } => {
                let response = ready!(fut.poll(cx)).map_err(Into::into)?;
                watch.answered(&response);
                return Poll::Ready(Ok(response));
            }
            StateProj::Cold { cold } => match ready!(poll_cold(cold, cx))? {
                Step::Send(sending) => state.set(sending.state),
                Step::Replay(fut, watch) => state.set(State::Replaying { fut, watch }),
                Step::Done(response) => return Poll::Ready(Ok(response)),
            },
        }
    }
}

// A transient return value of `poll_cold`, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Step<S: Service<Request<B>>, B> {
    Send(ResponseFuture<S, B>),
    Replay(S::Future, ReplayWatch),
    Done(S::Response),
}

/// Drives the boxed states: loading the first key, reloading after a 401, readying the replay.
fn poll_cold<S, B, ResBody>(
    cold: &mut Box<Cold<S, B>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Step<S, B>, BoxError>>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: 'static,
{
    // Each state is taken out, polled, and put back if it is not done: the box stays, the
    // moves are of a cold path's state.
    loop {
        match std::mem::replace(&mut **cold, Cold::Done) {
            Cold::Loading {
                mut load,
                mut inner,
                mut req,
                shared,
            } => {
                let Poll::Ready(loaded) = load.as_mut().poll(cx) else {
                    **cold = Cold::Loading {
                        load,
                        inner,
                        req,
                        shared,
                    };
                    return Poll::Pending;
                };
                let current = shared.cache.usable(loaded, &shared.config.load)?;
                let header = current.key.header_value().clone();
                let sending = send_with_key!(inner, &shared, req, header, current.generation);
                return Poll::Ready(Ok(Step::Send(sending)));
            }
            Cold::Reloading {
                mut reload,
                response,
                sent,
            } => {
                let Poll::Ready(reloaded) = reload.as_mut().poll(cx) else {
                    **cold = Cold::Reloading {
                        reload,
                        response,
                        sent,
                    };
                    return Poll::Pending;
                };
                match sent.into_replay(reloaded) {
                    Some(replay) => **cold = Cold::Readying { replay },
                    None => return Poll::Ready(Ok(Step::Done(response))),
                }
            }
            Cold::Readying { mut replay } => match replay.service.poll_ready(cx) {
                Poll::Pending => {
                    **cold = Cold::Readying { replay };
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Ready(Ok(())) => {
                    let (mut service, req, watch) = replay.into_parts();
                    return Poll::Ready(Ok(Step::Replay(service.call(req?), watch)));
                }
            },
            Cold::Failed { error } => return Poll::Ready(Err(error)),
            Cold::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}
