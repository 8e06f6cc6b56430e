//! [`RetryDelay`]: the wait before a retry.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// The wait before a retry, returned by [`TransientRetryPolicy`](crate::TransientRetryPolicy)'s
    /// `Policy::retry`.
    pub struct RetryDelay {
        #[pin]
        sleep: Sleep,
        wait: Duration,
    }
}

impl RetryDelay {
    pub(super) fn new(wait: Duration) -> Self {
        RetryDelay {
            sleep: tokio::time::sleep(wait),
            wait,
        }
    }

    /// How long this wait is.
    pub fn duration(&self) -> Duration {
        self.wait
    }
}

impl Future for RetryDelay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }
}

impl fmt::Debug for RetryDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryDelay")
            .field("wait", &self.wait)
            .finish()
    }
}
