use std::env::VarError;
use std::fmt;

use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

/// Reads the key from an environment variable, at every load.
///
/// Reading at each load (not once at start-up) means a process that re-execs or a test that sets
/// the variable later sees the current value. An unset, empty or non-Unicode variable, or an
/// invalid key, is a [`KeyError`] that names the variable (and never its value).
///
/// ```
/// use tower_bearer::{BearerAuthLayer, EnvKeySource};
///
/// let layer = BearerAuthLayer::new(EnvKeySource::azerion()); // reads AZERION_API_KEY
/// let other = BearerAuthLayer::new(EnvKeySource::new("MY_API_KEY"));
/// ```
#[derive(Clone)]
pub struct EnvKeySource {
    var: String,
}

impl EnvKeySource {
    /// Reads the variable named `var`.
    pub fn new(var: impl Into<String>) -> EnvKeySource {
        EnvKeySource { var: var.into() }
    }

    /// Reads `AZERION_API_KEY`, the Azerion AI API's variable.
    pub fn azerion() -> EnvKeySource {
        EnvKeySource::new(crate::azerion::API_KEY_VAR)
    }

    /// The variable's name.
    pub fn var(&self) -> &str {
        &self.var
    }

    fn read(&self) -> Result<ApiKey, KeyError> {
        let origin = format!("environment variable {}", self.var);
        let value = match std::env::var(&self.var) {
            Ok(value) => value,
            Err(VarError::NotPresent) => {
                return Err(KeyError::new(KeyErrorKind::Missing, "is not set").with_origin(origin))
            }
            Err(VarError::NotUnicode(_)) => {
                return Err(
                    KeyError::new(KeyErrorKind::Unreadable, "is not valid Unicode")
                        .with_origin(origin),
                )
            }
        };
        if value.is_empty() {
            return Err(
                KeyError::new(KeyErrorKind::Missing, "is set but empty").with_origin(origin)
            );
        }
        ApiKey::new(value).map_err(|e| e.with_origin(origin))
    }
}

impl KeySource for EnvKeySource {
    fn load(&self) -> KeyFuture<'_> {
        let result = self.read();
        Box::pin(async move { result })
    }

    fn describe(&self) -> Option<String> {
        Some(format!("environment variable {}", self.var))
    }
}

impl fmt::Debug for EnvKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvKeySource")
            .field("var", &self.var)
            .finish()
    }
}
