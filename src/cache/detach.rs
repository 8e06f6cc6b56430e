//! Loads that outlive the request that asked for them, and survive a panicking source.
//!
//! A load runs inside whichever request started it. If that request is cancelled (a caller's
//! timeout shorter than the source's latency, `select!`, tower's `Buffer`), a load run inline
//! dies with it and the next request starts over: a slow source would never finish one. So a
//! load runs as a task of its own on the caller's runtime, and requests wait for its outcome.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{Current, LoadFuture};
use crate::{KeyError, KeyErrorKind};

/// Runs `load` as a task of its own when there is a runtime (inline otherwise) and resolves to
/// its outcome. Dropping the returned future does not cancel the load.
pub(crate) fn detached<F>(load: F) -> LoadFuture
where
    F: Future<Output = Result<Arc<Current>, KeyError>> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Box::pin(load);
    };
    let task = runtime.spawn(load);
    Box::pin(async move {
        task.await.unwrap_or_else(|join| {
            Err(KeyError::new(
                KeyErrorKind::Other,
                format!("the key load did not finish: {join}"),
            ))
        })
    })
}

pin_project! {
    /// A source's load future, with a panic turned into an error: a bug in one source must not
    /// unwind through every request that finds the key due.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        CatchUnwind { inner }
    }
}

impl<T, F> Future for CatchUnwind<F>
where
    F: Future<Output = Result<T, KeyError>>,
{
    type Output = Result<T, KeyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| drop(payload)));
                Poll::Ready(Err(KeyError::new(
                    KeyErrorKind::Other,
                    "the key source panicked while loading",
                )))
            }
        }
    }
}
