//! Transient retries: [`TransientRetryLayer`] sends a request again after a 408, 409, 429 or 5xx
//! (not 501) or a refused connection, with backoff, honouring `Retry-After`, within a budget.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_bearer::map_error::ErrorMappingLayer;
//! use tower_bearer::retry::TransientRetryLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let seen = calls.clone();
//! let client = ServiceBuilder::new()
//!     .layer(TransientRetryLayer::new())
//!     .layer(ErrorMappingLayer::new())
//!     .service(service_fn(move |_req: Request<Full<Bytes>>| {
//!         // stands in for a real HTTP client (and the bearer layer): busy once, then fine
//!         let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
//!         async move {
//!             let response = match first {
//!                 true => Response::builder().status(503).header("retry-after", "0"),
//!                 false => Response::builder().status(200),
//!             };
//!             Ok::<_, BoxError>(response.body(Full::new(Bytes::from("{}")))?)
//!         }
//!     }));
//!
//! let request = Request::get("https://api.azerion.ai/v1/models").body(Full::default())?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 2, "the 503 was retried once");
//! # Ok(()) }
//! ```
//!
//! # Where the layers go
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(TransientRetryLayer::new())   // 1. outermost: each attempt runs through all below
//!     .layer(ErrorMappingLayer::new())     // 2. each attempt's status ≥ 400 becomes an ApiError
//!     .layer(BearerAuthLayer::new(source)) // 3. each attempt gets the key current at that time
//!     .service(client)
//! ```
//!
//! - **The retry goes outside the bearer layer.** It keeps a copy of the request as the caller
//!   made it, without the `Authorization` header, and each attempt goes through the bearer
//!   layer again: a key rotated between two attempts (by a 401 elsewhere, a refresh, or a
//!   [`KeyHandle::rotate`](crate::KeyHandle::rotate)) is picked up. Inside, it would resend the
//!   header of the first attempt. A 401 is the bearer layer's business (one reload, one replay);
//!   the transient retry does not retry it.
//! - **The error mapping goes inside the retry** (the order above). The retry then sees
//!   [`ApiError`](crate::ApiError)s and takes the wait from
//!   [`ApiError::retry_after`](crate::ApiError::retry_after); the body of each failed attempt is
//!   read (within the cap) instead of dropped, so its connection can go back to the pool; and
//!   the caller gets the last attempt's `ApiError`. Outside the retry works too: the retry then
//!   sees raw responses and reads `Retry-After` from their headers, the bodies of the failed
//!   attempts are dropped unread (closing their connections), and only the final response is
//!   mapped.

mod budget;
mod future;
mod layer;
mod policy;
mod retry_after;

pub use future::RetryDelay;
pub use layer::TransientRetryLayer;
pub use policy::{
    TransientRetryPolicy, DEFAULT_BASE_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_AFTER_CAP,
};
pub use retry_after::{parse_retry_after, MAX_RETRY_AFTER};
