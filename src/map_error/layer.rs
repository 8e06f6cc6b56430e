//! [`ErrorMappingLayer`].

use std::time::Duration;

use tower_layer::Layer;

use super::config::Config;
use super::service::ErrorMapping;

/// Turns every response with a status of 400 or more into an [`ApiError`](crate::ApiError).
///
/// Responses below 400 go back untouched, their body still streaming. For the others the body
/// is read, up to [`body_cap`](ErrorMappingLayer::body_cap) bytes and for at most
/// [`body_timeout`](ErrorMappingLayer::body_timeout), and the service fails with an
/// [`ApiError`](crate::ApiError) as a [`tower::BoxError`]. See the [module docs](crate::map_error)
/// for an example, and [where the layers go](crate::retry#where-the-layers-go) for its place in a
/// stack with the retry.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::ErrorMappingLayer;
///
/// let layer = ErrorMappingLayer::new()
///     .body_cap(16 * 1024)
///     .body_timeout(Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ErrorMappingLayer {
    config: Config,
}

impl ErrorMappingLayer {
    /// A layer with a 64 KiB body cap and a 10 s body timeout.
    pub fn new() -> Self {
        ErrorMappingLayer {
            config: Config::default(),
        }
    }

    /// Reads at most `cap` bytes of an error body (default 64 KiB). The rest is not read: the
    /// body is dropped, which closes the connection if it had more to send.
    pub fn body_cap(mut self, cap: usize) -> Self {
        self.config.body_cap = cap;
        self
    }

    /// Gives up reading an error body after `timeout` (default 10 s), keeping what was read.
    ///
    /// The timer is tokio's: it needs a tokio runtime with time enabled (outside one, the body
    /// is read with no time limit).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.config.body_timeout = timeout;
        self
    }
}

impl Default for ErrorMappingLayer {
    fn default() -> Self {
        ErrorMappingLayer::new()
    }
}

impl<S> Layer<S> for ErrorMappingLayer {
    type Service = ErrorMapping<S>;

    fn layer(&self, inner: S) -> ErrorMapping<S> {
        ErrorMapping::with_config(inner, self.config)
    }
}
