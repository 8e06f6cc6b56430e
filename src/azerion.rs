//! Presets for the [Azerion AI API](https://docs.azerion.ai), an OpenAI-compatible API that
//! takes `Authorization: Bearer sk-…`.
//!
//! ```
//! use tower_bearer::azerion;
//!
//! let layer = azerion::layer(); // AZERION_API_KEY (or AZERION_API_KEY_FILE), to api.azerion.ai only
//! let models = format!("{}/models", azerion::BASE_URL);
//! # assert_eq!(models, "https://api.azerion.ai/v1/models");
//! ```

/// The API's base URL, version included.
pub const BASE_URL: &str = "https://api.azerion.ai/v1";

/// The host the presets restrict the key to.
pub const HOST: &str = "api.azerion.ai";

/// The environment variable that conventionally holds the key.
pub const API_KEY_VAR: &str = "AZERION_API_KEY";

/// The environment variable that may name a file holding the key instead (a Docker or
/// Kubernetes secret), read when [`API_KEY_VAR`] is unset.
///
/// ```
/// assert_eq!(tower_bearer::azerion::API_KEY_FILE_VAR, "AZERION_API_KEY_FILE");
/// ```
pub const API_KEY_FILE_VAR: &str = "AZERION_API_KEY_FILE";

/// The Azerion key source: `AZERION_API_KEY`, else the file named by `AZERION_API_KEY_FILE`
/// (both set is an error; see [`EnvKeySource`](crate::EnvKeySource) for the rules).
///
/// ```
/// use tower_bearer::azerion;
///
/// let source = azerion::key_source();
/// assert_eq!(source.var(), "AZERION_API_KEY");
/// assert_eq!(source.file_var(), "AZERION_API_KEY_FILE");
/// ```
#[cfg(feature = "env")]
#[cfg_attr(docsrs, doc(cfg(feature = "env")))]
pub fn key_source() -> crate::EnvKeySource {
    crate::EnvKeySource::azerion()
}

/// A [`BearerAuthLayer`](crate::BearerAuthLayer) reading the key from [`key_source`]
/// (`AZERION_API_KEY`, else the file named by `AZERION_API_KEY_FILE`) and sending it to
/// `api.azerion.ai` only.
///
/// Add options as on any layer, e.g. `azerion::layer().on_rotate(...)`.
///
/// ```
/// let layer = tower_bearer::azerion::layer().on_rotate(|event| eprintln!("{event}"));
/// ```
#[cfg(feature = "env")]
#[cfg_attr(docsrs, doc(cfg(feature = "env")))]
pub fn layer() -> crate::BearerAuthLayer {
    crate::BearerAuthLayer::new(key_source()).restrict_to_hosts([HOST])
}
