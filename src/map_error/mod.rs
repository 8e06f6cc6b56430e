//! Typed API errors: [`ErrorMappingLayer`] turns a response with a status of 400 or more into an
//! [`ApiError`].
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_bearer::map_error::{ApiError, ApiErrorKind, ErrorMappingLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let client = ServiceBuilder::new()
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
//! With the transient retry, the error mapping goes inside it: see
//! [where the layers go](crate::retry#where-the-layers-go).
//!
//! # Reading error bodies
//!
//! An error body is read up to a cap (64 KiB by default, [`ErrorMappingLayer::body_cap`]): past
//! that the body is dropped unread, and [`ApiError::body_truncated`] says so. A body that fails
//! mid-read, or stalls past [`ErrorMappingLayer::body_timeout`] (10 s), still gives an
//! `ApiError`, with what was read.

mod api_error;
// `pub(crate)`: `crate::fuzzing` reaches the body parser.
pub(crate) mod body;
mod config;
mod future;
mod layer;
mod service;

pub(crate) use api_error::is_transient_status;
pub use api_error::{ApiError, ApiErrorKind};
pub use config::{DEFAULT_BODY_CAP, DEFAULT_BODY_TIMEOUT};
pub use future::ResponseFuture;
pub use layer::ErrorMappingLayer;
pub use service::ErrorMapping;
