use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use super::service::{replay_copy, Shared};
use crate::cache::{Current, LoadFuture};
use crate::replay::ReplayCopy;
use crate::KeyError;

/// What a sent request needs to handle a 401: which key it carried and, when it can be
/// replayed, a copy of itself. Kept small: it lives in every response future.
pub(crate) struct Sent<S, B> {
    shared: Arc<Shared<S>>,
    generation: u64,
    copy: Option<ReplayCopy<B>>,
}

impl<S, B> Sent<S, B> {
    #[inline(always)]
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        generation: u64,
        copy: Option<ReplayCopy<B>>,
    ) -> Self {
        Sent {
            shared,
            generation,
            copy,
        }
    }
}

impl<S: Clone, B: 'static> Sent<S, B> {
    /// The replay to send after a reload, if there is one: a new key, a body that can be had
    /// again, and a service to send it with.
    fn into_replay(self, reloaded: Result<Arc<Current>, KeyError>) -> Option<(S, Request<B>)> {
        let current = match reloaded {
            Ok(current) => current,
            Err(err) => {
                tracing::warn!(error = %err, "key reload after 401 failed; returning the 401");
                return None;
            }
        };
        let copy = self.copy?;
        if !self.shared.cache.is_new_key(self.generation, &current) {
            return None; // the key that was just rejected: replaying would only be rejected again
        }
        if !copy.can_replay() {
            tracing::debug!("401 not replayed: the request body cannot be sent again");
            return None;
        }
        let service = self.shared.replay_service()?;
        let Some(mut copy) = copy.into_request() else {
            tracing::debug!("401 not replayed: the request head did not parse back");
            return None;
        };
        tracing::debug!(
            fingerprint = current.key.fingerprint(),
            "replaying after 401"
        );
        copy.headers_mut()
            .insert(AUTHORIZATION, current.key.header_value().clone());
        Some((service, copy))
    }
}

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
        shared: Arc<Shared<S>>,
    },
    Reloading {
        reload: LoadFuture,
        response: S::Response,
        sent: Sent<S, B>,
    },
    Readying {
        service: S,
        req: Request<B>,
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
        shared: Arc<Shared<S>>,
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
            let response = ready!(fut.poll(cx)).map_err(Into::into)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Poll::Ready(Ok(response));
            }
            let Some(sent) = sent.take() else {
                return Poll::Ready(Ok(response)); // the caller's own header: not ours to handle
            };
            state.set(unauthorized(response, sent));
        }
        poll_after_send(state, cx)
    }
}

/// A 401 to the key we sent: reload it (shared with every other request that got one).
#[cold]
fn unauthorized<S: Service<Request<B>>, B>(response: S::Response, sent: Sent<S, B>) -> State<S, B> {
    let shared = &sent.shared;
    let reload = Box::pin(
        shared
            .cache
            .clone()
            .reject(sent.generation, shared.config.load.clone()),
    );
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
                match sent.take() {
                    Some(sent) if response.status() == StatusCode::UNAUTHORIZED => {
                        state.set(unauthorized(response, sent));
                    }
                    _ => return Poll::Ready(Ok(response)),
                }
            }
            StateProj::Replaying { fut } => return fut.poll(cx).map_err(Into::into),
            StateProj::Cold { cold } => match ready!(poll_cold(cold, cx))? {
                Step::Send(fut, sent) => state.set(State::Sending { fut, sent }),
                Step::Replay(fut) => state.set(State::Replaying { fut }),
                Step::Done(response) => return Poll::Ready(Ok(response)),
            },
        }
    }
}

// A transient return value of `poll_cold`, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Step<S: Service<Request<B>>, B> {
    Send(S::Future, Option<Sent<S, B>>),
    Replay(S::Future),
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
                let current = match load.as_mut().poll(cx) {
                    Poll::Pending => {
                        **cold = Cold::Loading {
                            load,
                            inner,
                            req,
                            shared,
                        };
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(current)) => current,
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                };
                let sent = (!shared.config.static_key).then(|| {
                    let copy = replay_copy(&shared.config, &req);
                    Sent::new(shared, current.generation, copy)
                });
                req.headers_mut()
                    .insert(AUTHORIZATION, current.key.header_value().clone());
                return Poll::Ready(Ok(Step::Send(inner.call(req), sent)));
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
                    Some((service, req)) => **cold = Cold::Readying { service, req },
                    None => return Poll::Ready(Ok(Step::Done(response))),
                }
            }
            Cold::Readying { mut service, req } => match service.poll_ready(cx) {
                Poll::Pending => {
                    **cold = Cold::Readying { service, req };
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(Step::Replay(service.call(req)))),
            },
            Cold::Failed { error } => return Poll::Ready(Err(error)),
            Cold::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}
