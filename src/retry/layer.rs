//! [`TransientRetryLayer`]: tower's `Retry` with a [`TransientRetryPolicy`].

use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::TpsBudget;
use tower::retry::Retry;
use tower_layer::Layer;

use super::policy::TransientRetryPolicy;

/// Retries transient failures with a [`TransientRetryPolicy`]: tower's
/// [`Retry`](tower::retry::Retry) with that policy, and the policy's setters.
///
/// Put it outside the bearer layer, so that each attempt gets the current key; see
/// [where the layers go](crate::retry#where-the-layers-go) for a whole stack.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::TransientRetryLayer;
///
/// let layer = TransientRetryLayer::new()
///     .max_retries(3)
///     .base_backoff(Duration::from_millis(200))
///     .retry_after_cap(Duration::from_secs(20));
/// ```
///
/// # Clone
///
/// tower's `Retry` clones the inner service for every request, to send it again through the
/// clone, so the inner service must be `Clone`. Clones of the layer, and the services they
/// make, share the policy's retry budget.
#[derive(Clone, Debug, Default)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct TransientRetryLayer {
    policy: TransientRetryPolicy,
}

impl TransientRetryLayer {
    /// A layer with [`TransientRetryPolicy::new`]'s defaults.
    pub fn new() -> Self {
        TransientRetryLayer::default()
    }

    /// A layer with `policy`.
    pub fn with_policy(policy: TransientRetryPolicy) -> Self {
        TransientRetryLayer { policy }
    }

    /// See [`TransientRetryPolicy::max_retries`].
    pub fn max_retries(self, n: u32) -> Self {
        self.map(|p| p.max_retries(n))
    }

    /// See [`TransientRetryPolicy::base_backoff`].
    pub fn base_backoff(self, wait: Duration) -> Self {
        self.map(|p| p.base_backoff(wait))
    }

    /// See [`TransientRetryPolicy::max_backoff`].
    pub fn max_backoff(self, wait: Duration) -> Self {
        self.map(|p| p.max_backoff(wait))
    }

    /// See [`TransientRetryPolicy::retry_after_cap`].
    pub fn retry_after_cap(self, wait: Duration) -> Self {
        self.map(|p| p.retry_after_cap(wait))
    }

    /// See [`TransientRetryPolicy::retry_non_idempotent`].
    pub fn retry_non_idempotent(self, yes: bool) -> Self {
        self.map(|p| p.retry_non_idempotent(yes))
    }

    /// See [`TransientRetryPolicy::budget`].
    pub fn budget(self, budget: impl Into<Arc<TpsBudget>>) -> Self {
        self.map(|p| p.budget(budget))
    }

    /// The policy the services of this layer start from.
    pub fn policy(&self) -> &TransientRetryPolicy {
        &self.policy
    }

    fn map(self, f: impl FnOnce(TransientRetryPolicy) -> TransientRetryPolicy) -> Self {
        TransientRetryLayer {
            policy: f(self.policy),
        }
    }
}

impl<S> Layer<S> for TransientRetryLayer {
    type Service = Retry<TransientRetryPolicy, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(self.policy.clone(), inner)
    }
}
