//! The bearer layer: [`BearerAuthLayer`], [`BearerAuth`] and its [`ResponseFuture`].
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_bearer::{ApiKey, BearerAuthLayer, StaticKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let key = ApiKey::new("sk-example-000000000000")?;
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(StaticKey::new(key)))
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         // stands in for a real HTTP client
//!         let auth = req.headers()["authorization"].clone();
//!         assert!(auth.is_sensitive());
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
//!             auth.to_str().unwrap().to_owned(),
//!         ))))
//!     }));
//!
//! let request = Request::get("https://api.azerion.ai/v1/models").body(Full::default())?;
//! let response = client.oneshot(request).await?;
//! # assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```

#[cfg(any(feature = "grpc", feature = "async-openai"))]
pub(crate) mod adapter;
mod future;
mod layer;
mod rejection;
mod scope;
mod service;
mod state;

pub use future::ResponseFuture;
pub use layer::BearerAuthLayer;
pub use rejection::Rejection;
pub use scope::ScopeError;
pub use service::BearerAuth;
