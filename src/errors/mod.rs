//! Typed API errors and transient retries: [`ErrorMappingLayer`] turns a non-success status into
//! an [`ApiError`]; [`TransientRetryLayer`] sends a request again after a 429, a 5xx or a refused
//! connection.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_bearer::{ApiError, ApiErrorKind, ErrorMappingLayer, TransientRetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let client = ServiceBuilder::new()
//!     .layer(TransientRetryLayer::new())
//!     .layer(ErrorMappingLayer::new())
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         // stands in for a real HTTP client (and the bearer layer)
//!         let body = r#"{"error":{"message":"The model `gpt-9` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#;
//!         Ok::<_, BoxError>(Response::builder().status(404).body(Full::new(Bytes::from(body)))?)
//!     }));
//!
//! let request = Request::get("https://api.azerion.ai/v1/models/gpt-9").body(Full::default())?;
//! let error = client.oneshot(request).await.unwrap_err();
//! let api = error.downcast_ref::<ApiError>().expect("a mapped status");
//! assert_eq!(api.kind(), ApiErrorKind::NotFound);
//! assert_eq!(api.code(), Some("model_not_found"));
//! assert_eq!(
//!     api.to_string(),
//!     "HTTP 404 Not Found (not found): The model `gpt-9` does not exist"
//! );
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
//!   [`ApiError`]s and takes the wait from [`ApiError::retry_after`]; the body of each failed
//!   attempt is read (within the cap) instead of dropped, so its connection can go back to the
//!   pool; and the caller gets the last attempt's `ApiError`. Outside the retry works too: the
//!   retry then sees raw responses and reads `Retry-After` from their headers, the bodies of
//!   the failed attempts are dropped unread (closing their connections), and only the final
//!   response is mapped.
//!
//! # Reading error bodies
//!
//! An error body is read up to a cap (64 KiB by default, [`ErrorMappingLayer::body_cap`]): past
//! that the body is dropped unread, and [`ApiError::body_truncated`] says so. A body that fails
//! mid-read, or stalls past [`ErrorMappingLayer::body_timeout`] (10 s), still gives an
//! `ApiError`, with what was read.

mod api_error;
mod body;
mod config;
mod future;
mod layer;
mod retry;
mod retry_after;
mod retry_layer;
mod service;

pub use api_error::{ApiError, ApiErrorKind};
pub(crate) use body::parse_error_body;
pub use config::{DEFAULT_BODY_CAP, DEFAULT_BODY_TIMEOUT};
pub use future::ResponseFuture;
pub use layer::ErrorMappingLayer;
pub use retry::{
    RetryDelay, TransientRetryPolicy, DEFAULT_BASE_BACKOFF, DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_RETRIES, DEFAULT_RETRY_AFTER_CAP,
};
pub use retry_after::{parse_retry_after, MAX_RETRY_AFTER};
pub use retry_layer::TransientRetryLayer;
pub use service::ErrorMapping;
