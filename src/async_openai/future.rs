//! [`ResponseFuture`] of [`Auth`](super::Auth): the send, and after a rejection the reload and
//! the one replay, rebuilt from the request factory.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use ::async_openai::error::OpenAIError;
use ::async_openai::middleware::HttpRequestFactory;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::with_key;
use crate::auth::adapter::Adapter;
use crate::cache::{Current, LoadFuture};

/// What a sent request needs if its key is rejected.
pub(super) struct Sent<S> {
    pub(super) generation: u64,
    pub(super) factory: HttpRequestFactory,
    /// A service to replay with; `None` when replays are off (the key is still reloaded).
    pub(super) replay: Option<S>,
    pub(super) adapter: Arc<Adapter>,
}

pub(super) enum Cold<S> {
    Loading {
        load: LoadFuture,
        service: S,
        factory: HttpRequestFactory,
        adapter: Arc<Adapter>,
    },
    Reloading {
        reload: LoadFuture,
        response: reqwest::Response,
        sent: Sent<S>,
    },
    Readying {
        service: S,
        factory: HttpRequestFactory,
        current: Arc<Current>,
        adapter: Arc<Adapter>,
    },
    Failed {
        error: OpenAIError,
    },
    Done,
}

pin_project! {
    /// Response future of [`Auth`](super::Auth).
    ///
    /// With a cached key it wraps the inner future and checks the response's status; it loads
    /// the key first when there is none, and after a rejection reloads it and sends the
    /// request once more, rebuilt by the factory with the new key. Only those rarer paths
    /// allocate.
    pub struct ResponseFuture<S>
    where
        S: Service<HttpRequestFactory>,
    {
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<HttpRequestFactory>,
    {
        Sending {
            #[pin]
            fut: S::Future,
            sent: Option<Sent<S>>,
        },
        Replaying {
            #[pin]
            fut: S::Future,
        },
        Cold {
            cold: Box<Cold<S>>,
        },
    }
}

impl<S: Service<HttpRequestFactory>> ResponseFuture<S> {
    pub(super) fn sending(fut: S::Future, sent: Option<Sent<S>>) -> Self {
        ResponseFuture {
            state: State::Sending { fut, sent },
        }
    }

    pub(super) fn cold(cold: Cold<S>) -> Self {
        ResponseFuture {
            state: State::Cold {
                cold: Box::new(cold),
            },
        }
    }
}

impl<S: Service<HttpRequestFactory>> fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sending { .. } => "sending",
            State::Replaying { .. } => "replaying after a rejection",
            State::Cold { cold } => match **cold {
                Cold::Loading { .. } => "loading the key",
                Cold::Reloading { .. } => "reloading the key after a rejection",
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

pub(super) fn key_error(err: crate::KeyError) -> OpenAIError {
    OpenAIError::Boxed(Box::new(err))
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<HttpRequestFactory, Response = reqwest::Response> + Clone,
    S::Error: Into<OpenAIError>,
{
    type Output = Result<reqwest::Response, OpenAIError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Sending { fut, sent } => {
                    let response = ready!(fut.poll(cx)).map_err(Into::into)?;
                    let Some(sent) = sent.take_if(|s| {
                        s.adapter
                            .is_rejection(response.status(), response.headers())
                    }) else {
                        return Poll::Ready(Ok(response));
                    };
                    let reload = sent.adapter.reject(sent.generation);
                    state.set(State::Cold {
                        cold: Box::new(Cold::Reloading {
                            reload,
                            response,
                            sent,
                        }),
                    });
                }
                StateProj::Replaying { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Cold { cold } => match ready!(poll_cold(cold, cx))? {
                    Step::Send(next) => state.set(next.state),
                    Step::Replay(fut) => state.set(State::Replaying { fut }),
                    Step::Done(response) => return Poll::Ready(Ok(response)),
                },
            }
        }
    }
}

// A transient return value of `poll_cold`, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Step<S: Service<HttpRequestFactory>> {
    Send(ResponseFuture<S>),
    Replay(S::Future),
    Done(reqwest::Response),
}

/// The boxed states: the first load, the reload after a rejection, readying the replay.
fn poll_cold<S>(cold: &mut Box<Cold<S>>, cx: &mut Context<'_>) -> Poll<Result<Step<S>, OpenAIError>>
where
    S: Service<HttpRequestFactory, Response = reqwest::Response> + Clone,
    S::Error: Into<OpenAIError>,
{
    loop {
        match std::mem::replace(&mut **cold, Cold::Done) {
            Cold::Loading {
                mut load,
                mut service,
                factory,
                adapter,
            } => {
                let Poll::Ready(loaded) = load.as_mut().poll(cx) else {
                    **cold = Cold::Loading {
                        load,
                        service,
                        factory,
                        adapter,
                    };
                    return Poll::Pending;
                };
                let current = adapter.loaded(loaded).map_err(key_error)?;
                let keyed = with_key(&factory, current.key.header_value(), &adapter);
                let sent = adapter.handles_rejections().then(|| Sent {
                    generation: current.generation,
                    replay: adapter.replays().then(|| service.clone()),
                    factory,
                    adapter: adapter.clone(),
                });
                let fut = service.call(keyed);
                return Poll::Ready(Ok(Step::Send(ResponseFuture::sending(fut, sent))));
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
                let Sent {
                    generation,
                    factory,
                    replay,
                    adapter,
                } = sent;
                let (Some(service), Some(current)) =
                    (replay, adapter.replay_key(generation, reloaded))
                else {
                    return Poll::Ready(Ok(Step::Done(response)));
                };
                // The rejection's body is not read: dropping it frees its connection.
                drop(response);
                let factory = with_key(&factory, current.key.header_value(), &adapter);
                **cold = Cold::Readying {
                    service,
                    factory,
                    current,
                    adapter,
                };
            }
            Cold::Readying {
                mut service,
                factory,
                current,
                adapter,
            } => match service.poll_ready(cx) {
                Poll::Pending => {
                    **cold = Cold::Readying {
                        service,
                        factory,
                        current,
                        adapter,
                    };
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Ready(Ok(())) => {
                    // Counted and reported when sent; never with a key that expired meanwhile.
                    adapter.replay_now(&current).map_err(key_error)?;
                    return Poll::Ready(Ok(Step::Replay(service.call(factory))));
                }
            },
            Cold::Failed { error } => return Poll::Ready(Err(error)),
            Cold::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}
