//! Presets for the [Azerion AI API](https://docs.azerion.ai), an OpenAI-compatible API that
//! takes `Authorization: Bearer sk-…`.
//!
//! ```
//! use tower_bearer::azerion;
//!
//! let layer = azerion::layer(); // AZERION_API_KEY, sent to api.azerion.ai only
//! let models = format!("{}/models", azerion::BASE_URL);
//! # assert_eq!(models, "https://api.azerion.ai/v1/models");
//! ```

/// The API's base URL, version included.
pub const BASE_URL: &str = "https://api.azerion.ai/v1";

/// The host the presets restrict the key to.
pub const HOST: &str = "api.azerion.ai";

/// The environment variable that conventionally holds the key.
pub const API_KEY_VAR: &str = "AZERION_API_KEY";

/// A [`BearerAuthLayer`](crate::BearerAuthLayer) reading the key from `AZERION_API_KEY` and
/// sending it to `api.azerion.ai` only.
///
/// Add options as on any layer, e.g. `azerion::layer().on_rotate(...)`.
#[cfg(feature = "env")]
#[cfg_attr(docsrs, doc(cfg(feature = "env")))]
pub fn layer() -> crate::BearerAuthLayer {
    crate::BearerAuthLayer::new(crate::EnvKeySource::azerion()).restrict_to_hosts([HOST])
}
