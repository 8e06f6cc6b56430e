use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use super::service::{replay_copy, Shared};
use crate::cache::{Current, LoadFuture};
use crate::replay::can_replay;
use crate::KeyError;

/// What a sent request needs to handle a 401: which key it carried and, when it can be
/// replayed, a copy of itself.
pub(crate) struct Sent<S, B> {
    shared: Arc<Shared<S>>,
    generation: u64,
    replay: Option<(Request<B>, HeaderValue)>,
}

impl<S, B: 'static> Sent<S, B> {
    #[inline]
    pub(crate) fn new(
        shared: &Arc<Shared<S>>,
        generation: u64,
        req: &Request<B>,
        header: &HeaderValue,
    ) -> Self {
        Sent {
            shared: shared.clone(),
            generation,
            replay: replay_copy(&shared.config, req).map(|copy| (copy, header.clone())),
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
        let (mut copy, rejected) = self.replay?;
        let new_header = current.key.header_value();
        if current.generation == self.generation || new_header.as_bytes() == rejected.as_bytes() {
            return None; // same key: replaying would only be rejected again
        }
        if !can_replay(&copy) {
            tracing::debug!("401 not replayed: the request body cannot be sent again");
            return None;
        }
        let service = self.shared.replay_service()?;
        tracing::debug!(
            fingerprint = current.key.fingerprint(),
            "replaying after 401"
        );
        copy.headers_mut().insert(AUTHORIZATION, new_header.clone());
        Some((service, copy))
    }
}

pin_project! {
    /// Response future of [`BearerAuth`](crate::BearerAuth).
    ///
    /// With a cached key it only wraps the inner future; it loads the key first when there is
    /// none yet, and handles a 401 with one reload and at most one replay.
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
        Loading {
            load: LoadFuture,
            inner: Option<S>,
            req: Option<Request<B>>,
            shared: Arc<Shared<S>>,
        },
        Sending {
            #[pin]
            fut: S::Future,
            sent: Option<Sent<S, B>>,
        },
        Reloading {
            reload: LoadFuture,
            response: Option<S::Response>,
            sent: Option<Sent<S, B>>,
        },
        Readying {
            service: S,
            req: Option<Request<B>>,
        },
        Replaying {
            #[pin]
            fut: S::Future,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<S: Service<Request<B>>, B> ResponseFuture<S, B> {
    #[inline]
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
        ResponseFuture {
            state: State::Loading {
                load,
                inner: Some(inner),
                req: Some(req),
                shared,
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

const POLLED_AFTER_DONE: &str = "ResponseFuture polled after completion";

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: 'static,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Sending { fut, sent } => {
                    let response = ready!(fut.poll(cx)).map_err(Into::into)?;
                    if response.status() != StatusCode::UNAUTHORIZED {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(sent) = sent.take() else {
                        return Poll::Ready(Ok(response)); // the caller's own header
                    };
                    let reload = Box::pin(sent.shared.cache.clone().reject(sent.generation));
                    state.set(State::Reloading {
                        reload,
                        response: Some(response),
                        sent: Some(sent),
                    });
                }
                StateProj::Loading {
                    load,
                    inner,
                    req,
                    shared,
                } => {
                    let current = match ready!(load.as_mut().poll(cx)) {
                        Ok(current) => current,
                        Err(err) => return Poll::Ready(Err(err.into())),
                    };
                    let mut req = req.take().expect(POLLED_AFTER_DONE);
                    let mut inner = inner.take().expect(POLLED_AFTER_DONE);
                    let header = current.key.header_value().clone();
                    let sent = Sent::new(shared, current.generation, &req, &header);
                    req.headers_mut().insert(AUTHORIZATION, header);
                    let fut = inner.call(req);
                    state.set(State::Sending {
                        fut,
                        sent: Some(sent),
                    });
                }
                StateProj::Reloading {
                    reload,
                    response,
                    sent,
                } => {
                    let reloaded = ready!(reload.as_mut().poll(cx));
                    let response = response.take().expect(POLLED_AFTER_DONE);
                    let sent = sent.take().expect(POLLED_AFTER_DONE);
                    match sent.into_replay(reloaded) {
                        Some((service, req)) => state.set(State::Readying {
                            service,
                            req: Some(req),
                        }),
                        None => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Readying { service, req } => {
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let fut = service.call(req.take().expect(POLLED_AFTER_DONE));
                    state.set(State::Replaying { fut });
                }
                StateProj::Replaying { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect(POLLED_AFTER_DONE)))
                }
            }
        }
    }
}
