//! Kept for compatibility: the error mapping now lives in [`map_error`](crate::map_error) and the
//! transient retry in [`retry`](crate::retry). Every item this module held is re-exported here
//! under its old path (`tower_bearer::errors::ApiError`, …); new code should use the new modules
//! or the crate root.
//!
//! ```
//! // The old paths name the very same items as the new ones.
//! use tower_bearer::errors::{ApiError, ErrorMappingLayer, TransientRetryLayer};
//!
//! let _: tower_bearer::map_error::ErrorMappingLayer = ErrorMappingLayer::new();
//! let _: tower_bearer::retry::TransientRetryLayer = TransientRetryLayer::new();
//! let _: Option<tower_bearer::ApiError> = None::<ApiError>;
//! ```

pub use crate::map_error::{
    ApiError, ApiErrorKind, ErrorMapping, ErrorMappingLayer, ResponseFuture, DEFAULT_BODY_CAP,
    DEFAULT_BODY_TIMEOUT,
};
pub use crate::retry::{
    parse_retry_after, RetryDelay, TransientRetryLayer, TransientRetryPolicy, DEFAULT_BASE_BACKOFF,
    DEFAULT_MAX_BACKOFF, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_AFTER_CAP, MAX_RETRY_AFTER,
};
