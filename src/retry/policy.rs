//! [`TransientRetryPolicy`]: which failures are transient, which requests may be sent again,
//! and how long to wait.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response};
use tower::retry::budget::TpsBudget;
use tower::retry::Policy;
use tower::BoxError;

use super::budget::{default_budget, Allowance};
use super::future::RetryDelay;
use super::retry_after::parse_retry_after;
use crate::map_error::{is_transient_status, ApiError};
use crate::replay::{can_replay, try_clone_request};

/// Default for [`TransientRetryPolicy::max_retries`]: 2 (so 3 attempts in all).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default for [`TransientRetryPolicy::base_backoff`]: 0.5 s.
pub const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Default for [`TransientRetryPolicy::max_backoff`]: 8 s.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Default for [`TransientRetryPolicy::retry_after_cap`]: 60 s.
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// The header whose presence makes any method retryable.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A [`tower::retry::Policy`] that sends a request again after a transient failure.
///
/// **What is retried:** a response (or an [`ApiError`]) with status 408, 409, 429, or 5xx but
/// 501, and a connection error: an error whose [source chain](std::error::Error::source) holds an
/// [`io::Error`] of kind `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted` or
/// `TimedOut` (hyper-util's client reports a refused connection that way). Nothing else: not
/// 401 (the bearer layer handles it), not a timeout of your own, not a body error.
///
/// **Which requests:** only idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), unless
/// [`retry_non_idempotent`](TransientRetryPolicy::retry_non_idempotent) is set or the request
/// has an `Idempotency-Key` header; and only requests whose body can be sent again, by the same
/// rules as the bearer layer's 401 replay (`Full<Bytes>`, `Empty<Bytes>`, `String`, or a
/// [`ReplayableBody`](crate::ReplayableBody) that was small enough). Other requests are sent once.
///
/// **How often and when:** at most [`max_retries`](TransientRetryPolicy::max_retries) (2) times.
/// Retry *n* (from 0) waits `base_backoff · 2ⁿ` (0.5 s, 1 s, 2 s, …), at most `max_backoff`
/// (8 s), less a random 0–25 % (jitter, so that clients do not retry in step). When the
/// server says how long to wait (`retry-after-ms` or `Retry-After`, see
/// [`parse_retry_after`](super::parse_retry_after)), that wait is used instead, with no
/// jitter. A server wait longer than [`retry_after_cap`](TransientRetryPolicy::retry_after_cap)
/// (60 s) is not retried at all: the caller gets the failure at once, with
/// [`ApiError::retry_after`] telling how long the server asked for (a quota that resets
/// tomorrow is not asked again in a minute). A `Retry-After` that is absent or unparseable is
/// not such a wait: the computed backoff applies.
///
/// **How much:** every request deposits into a [`TpsBudget`] and every retry withdraws from it;
/// when it is empty, failures go back to the caller unretried. The default budget lets retries
/// add 20 % to the load over a 10 s window, plus one retry a second, so a sustained outage is
/// not made worse.
///
/// The waits are tokio timers: the policy needs a tokio runtime with time enabled. The result
/// the caller gets after the last attempt is that attempt's, unchanged.
///
/// Errors must be [`tower::BoxError`], as they are from [`BearerAuth`](crate::BearerAuth) and
/// [`ErrorMapping`](crate::ErrorMapping); wrap another client in `.map_err(BoxError::from)`.
///
/// ```
/// use std::time::Duration;
/// use tower::retry::RetryLayer;
/// use tower_bearer::TransientRetryPolicy;
///
/// let policy = TransientRetryPolicy::new()
///     .max_retries(3)
///     .max_backoff(Duration::from_secs(4));
/// let layer = RetryLayer::new(policy); // or TransientRetryLayer
/// ```
///
/// # Clone
///
/// Clones share the budget (so do the services of one
/// [`TransientRetryLayer`](crate::TransientRetryLayer)); the settings are the clone's own.
/// tower's `Retry` clones the policy for every request, and that clone counts the request's
/// retries against [`max_retries`](TransientRetryPolicy::max_retries).
#[derive(Clone)]
#[must_use = "a policy does nothing until a retry layer uses it"]
pub struct TransientRetryPolicy {
    config: Config,
    allowance: Allowance,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    max_retries: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    retry_after_cap: Duration,
    retry_non_idempotent: bool,
}

impl TransientRetryPolicy {
    /// A policy with the defaults described above.
    pub fn new() -> Self {
        TransientRetryPolicy {
            config: Config {
                max_retries: DEFAULT_MAX_RETRIES,
                base_backoff: DEFAULT_BASE_BACKOFF,
                max_backoff: DEFAULT_MAX_BACKOFF,
                retry_after_cap: DEFAULT_RETRY_AFTER_CAP,
                retry_non_idempotent: false,
            },
            allowance: Allowance::new(Arc::new(default_budget())),
        }
    }

    /// Retries a request at most `n` times (default 2). `0` turns retries off.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.config.max_retries = n;
        self
    }

    /// The wait before the first retry, doubled for each next one (default 0.5 s).
    pub fn base_backoff(mut self, wait: Duration) -> Self {
        self.config.base_backoff = wait;
        self
    }

    /// The longest computed wait between two attempts (default 8 s).
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.config.max_backoff = wait;
        self
    }

    /// The longest wait taken from the server's `Retry-After` (default 60 s). When the server
    /// asks for a longer one, the request is not retried: the failure goes back to the caller
    /// at once (with [`ApiError::retry_after`] set, when the error mapping is inside).
    pub fn retry_after_cap(mut self, wait: Duration) -> Self {
        self.config.retry_after_cap = wait;
        self
    }

    /// Retries requests of any method, not only idempotent ones (default false). A request with
    /// an `Idempotency-Key` header is retried whatever this says.
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.config.retry_non_idempotent = yes;
        self
    }

    /// The retry budget (default: `TpsBudget::new(10 s, 1, 0.2)`, i.e. 20 % of requests plus
    /// one a second). Pass an `Arc<TpsBudget>` to share one budget between several policies.
    pub fn budget(mut self, budget: impl Into<Arc<TpsBudget>>) -> Self {
        self.allowance.budget = budget.into();
        self
    }

    fn may_retry<B>(&self, req: &Request<B>) -> bool {
        self.config.retry_non_idempotent
            || is_idempotent(req.method())
            || req.headers().contains_key(IDEMPOTENCY_KEY)
    }

    /// The computed wait before retry number `attempt` (from 0), with jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .config
            .base_backoff
            .saturating_mul(1u32 << attempt.min(31));
        let wait = doubled.min(self.config.max_backoff);
        wait.mul_f64(1.0 - 0.25 * fastrand::f64())
    }
}

impl Default for TransientRetryPolicy {
    fn default() -> Self {
        TransientRetryPolicy::new()
    }
}

impl fmt::Debug for TransientRetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransientRetryPolicy")
            .field("max_retries", &self.config.max_retries)
            .field("base_backoff", &self.config.base_backoff)
            .field("max_backoff", &self.config.max_backoff)
            .field("retry_after_cap", &self.config.retry_after_cap)
            .field("retry_non_idempotent", &self.config.retry_non_idempotent)
            .field("budget", &self.allowance.budget)
            .field("attempts", &self.allowance.attempts)
            .finish()
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Why a result may be retried: `Some(wait the server asked for)`, or `None` when it may not.
fn transient<ResBody>(result: &Result<Response<ResBody>, BoxError>) -> Option<Option<Duration>> {
    match result {
        Ok(response) if is_transient_status(response.status()) => {
            Some(parse_retry_after(response.headers(), SystemTime::now()))
        }
        Ok(_) => None,
        Err(error) => match error.downcast_ref::<ApiError>() {
            Some(api) => api.is_retryable().then(|| api.retry_after()),
            None => is_connection_error(&**error).then_some(None),
        },
    }
}

/// Whether `error`, or an error in its source chain, is an I/O error that a new attempt may
/// not meet: the connection was refused, reset, aborted or timed out.
pub(crate) fn is_connection_error(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    let mut depth = 0;
    while let Some(error) = current {
        if error.is::<crate::KeyError>() {
            return false; // the key store's trouble: the key cache backs off on its own
        }
        if let Some(io) = error.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::TimedOut
            ) {
                return true;
            }
        }
        depth += 1;
        if depth > 32 {
            break; // a source chain with a cycle
        }
        current = error.source();
    }
    false
}

impl<B, ResBody> Policy<Request<B>, Response<ResBody>, BoxError> for TransientRetryPolicy
where
    B: 'static,
{
    type Future = RetryDelay;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<ResBody>, BoxError>,
    ) -> Option<RetryDelay> {
        let server_wait = transient(result)?;
        if self.allowance.used_up(self.config.max_retries) || !can_replay(req) {
            return None;
        }
        if let Some(wait) = server_wait.filter(|w| *w > self.config.retry_after_cap) {
            // The server will not take it sooner: retrying early only spends its quota (and ours).
            tracing::debug!(
                method = %req.method(),
                wait_s = wait.as_secs(),
                cap_s = self.config.retry_after_cap.as_secs(),
                "transient failure not retried: the server asked to wait longer than retry_after_cap"
            );
            return None;
        }
        if !self.allowance.withdraw() {
            tracing::debug!(
                method = %req.method(),
                "transient failure not retried: the retry budget is spent"
            );
            return None;
        }
        let wait = match server_wait {
            Some(wait) => wait,
            None => self.backoff(self.allowance.attempts),
        };
        self.allowance.count_retry();
        tracing::debug!(
            method = %req.method(),
            attempt = self.allowance.attempts,
            wait_ms = wait.as_millis() as u64,
            status = result.as_ref().ok().map(|r| r.status().as_u16()),
            "retrying after a transient failure"
        );
        Some(RetryDelay::new(wait))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        self.allowance.on_call();
        if self.allowance.used_up(self.config.max_retries) || !self.may_retry(req) {
            return None;
        }
        try_clone_request(req)
    }
}

#[cfg(test)]
mod tests;
