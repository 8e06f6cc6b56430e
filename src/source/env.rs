use std::ffi::OsString;
use std::fmt;
#[cfg(feature = "file")]
use std::sync::{Arc, Mutex};

use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

/// Reads the key from an environment variable, or from the file another variable names, at
/// every load.
///
/// Reading at each load (not once at start-up) means a process that re-execs or a test that sets
/// the variable later sees the current value. An unset, empty or non-Unicode variable, or an
/// invalid key, is a [`KeyError`] that names the variable (and never its value).
///
/// # The `_FILE` convention
///
/// As Docker's and many images' entrypoints do, `EnvKeySource::new("X")` also reads `X_FILE`:
/// when `X` is unset (or empty) and `X_FILE` names a file, the key is read from that file with
/// everything [`FileKeySource`](crate::FileKeySource) does: trimmed, re-read at each load and
/// every 60 s (the key's refresh hint), Kubernetes' symlink swap seen as one change, a warning
/// when the file is readable by others. Errors then name the file and the variable that named
/// it. Reading a file needs the `file` feature (on by default); without it, `X_FILE` is a
/// [`Config`](KeyErrorKind::Config) error that says so.
///
/// | `X` | `X_FILE` | the key |
/// |---|---|---|
/// | a value | unset or empty | `X`'s value |
/// | unset or empty | a path | the file's contents |
/// | a value | a path | none: a `Config` error naming both variables (set only one) |
/// | unset | unset or empty | none: `Missing`, "is not set" |
/// | empty | unset or empty | none: `Missing`, "is set but empty" |
///
/// An empty variable counts as unset when choosing between the two, so a placeholder `X=` left
/// by a deployment template does not hide `X_FILE`.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, EnvKeySource};
///
/// let layer = BearerAuthLayer::new(EnvKeySource::azerion()); // AZERION_API_KEY(_FILE)
/// let other = BearerAuthLayer::new(EnvKeySource::new("MY_API_KEY")); // MY_API_KEY(_FILE)
/// ```
#[derive(Clone)]
pub struct EnvKeySource {
    var: String,
    file_var: String,
    /// The file source for the path `X_FILE` named last, kept so its state (the one-time
    /// permission warning, the single blocking read) lasts across loads.
    #[cfg(feature = "file")]
    file: Arc<Mutex<Option<super::FileKeySource>>>,
}

/// What the two variables say to do.
enum Pick {
    Done(Result<ApiKey, KeyError>),
    #[cfg_attr(not(feature = "file"), allow(dead_code))]
    File(OsString),
}

impl EnvKeySource {
    /// Reads the variable named `var`, or the file named by `{var}_FILE`.
    ///
    /// ```
    /// # use tower_bearer::EnvKeySource;
    /// let source = EnvKeySource::new("MY_API_KEY");
    /// assert_eq!(source.var(), "MY_API_KEY");
    /// assert_eq!(source.file_var(), "MY_API_KEY_FILE");
    /// ```
    pub fn new(var: impl Into<String>) -> EnvKeySource {
        let var = var.into();
        EnvKeySource {
            file_var: format!("{var}_FILE"),
            var,
            #[cfg(feature = "file")]
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Reads `AZERION_API_KEY`, the Azerion AI API's variable, or the file named by
    /// `AZERION_API_KEY_FILE`.
    pub fn azerion() -> EnvKeySource {
        EnvKeySource::new(crate::azerion::API_KEY_VAR)
    }

    /// The variable's name.
    ///
    /// ```
    /// # use tower_bearer::EnvKeySource;
    /// assert_eq!(EnvKeySource::azerion().var(), "AZERION_API_KEY");
    /// ```
    pub fn var(&self) -> &str {
        &self.var
    }

    /// The name of the variable that may name a key file instead: the variable's name and
    /// `_FILE`.
    ///
    /// ```
    /// # use tower_bearer::EnvKeySource;
    /// assert_eq!(EnvKeySource::azerion().file_var(), "AZERION_API_KEY_FILE");
    /// ```
    pub fn file_var(&self) -> &str {
        &self.file_var
    }

    fn pick(&self) -> Pick {
        let origin = format!("environment variable {}", self.var);
        let value = std::env::var_os(&self.var);
        let path = std::env::var_os(&self.file_var).filter(|p| !p.is_empty());
        let has_value = value.as_ref().is_some_and(|v| !v.is_empty());
        match (value, path) {
            (Some(_), Some(_)) if has_value => Pick::Done(Err(KeyError::new(
                KeyErrorKind::Config,
                format!(
                    "both {} and {} are set; set only one of them",
                    self.var, self.file_var
                ),
            )
            .with_origin(format!(
                "environment variables {} and {}",
                self.var, self.file_var
            )))),
            (_, Some(path)) => Pick::File(path),
            (None, None) => {
                let empty_file_var = std::env::var_os(&self.file_var).is_some();
                let cause = if empty_file_var {
                    format!("is not set, and {} is set but empty", self.file_var)
                } else {
                    // As before `_FILE` was read: `describe` and the docs name `X_FILE`.
                    "is not set".to_owned()
                };
                Pick::Done(Err(
                    KeyError::new(KeyErrorKind::Missing, cause).with_origin(origin)
                ))
            }
            (Some(value), None) => Pick::Done(read_value(value).map_err(|e| e.with_origin(origin))),
        }
    }

    /// Reads the key from the file at `path`, named by `X_FILE`.
    #[cfg(feature = "file")]
    async fn read_file(&self, path: OsString) -> Result<ApiKey, KeyError> {
        let path = std::path::PathBuf::from(path);
        let source = {
            let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(source) if source.path() == path => source.clone(),
                _ => slot.insert(super::FileKeySource::new(&path)).clone(),
            }
        };
        source.load().await.map_err(|e| {
            e.with_origin(format!(
                "key file {} (named by environment variable {})",
                path.display(),
                self.file_var
            ))
        })
    }

    #[cfg(not(feature = "file"))]
    async fn read_file(&self, _path: OsString) -> Result<ApiKey, KeyError> {
        Err(KeyError::new(
            KeyErrorKind::Config,
            "names a key file, but reading key files needs tower-bearer's `file` feature",
        )
        .with_origin(format!("environment variable {}", self.file_var)))
    }
}

/// The key in a variable's value.
fn read_value(value: OsString) -> Result<ApiKey, KeyError> {
    let value = value
        .into_string()
        .map_err(|_| KeyError::new(KeyErrorKind::Unreadable, "is not valid Unicode"))?;
    if value.is_empty() {
        return Err(KeyError::new(KeyErrorKind::Missing, "is set but empty"));
    }
    ApiKey::new(value)
}

impl KeySource for EnvKeySource {
    fn load(&self) -> KeyFuture<'_> {
        match self.pick() {
            Pick::Done(result) => Box::pin(async move { result }),
            Pick::File(path) => Box::pin(self.read_file(path)),
        }
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "environment variable {} (or the file named by {})",
            self.var, self.file_var
        ))
    }
}

impl fmt::Debug for EnvKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvKeySource")
            .field("var", &self.var)
            .field("file_var", &self.file_var)
            .finish()
    }
}

#[cfg(all(test, not(feature = "file")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_the_file_feature_the_file_variable_is_a_config_error() {
        let var = format!("TB_ENV_NO_FILE_FEATURE_{}", std::process::id());
        std::env::set_var(format!("{var}_FILE"), "/run/secrets/api-key");
        let err = EnvKeySource::new(&var).load().await.unwrap_err();
        std::env::remove_var(format!("{var}_FILE"));
        assert_eq!(err.kind(), KeyErrorKind::Config);
        assert_eq!(
            err.to_string(),
            format!(
                "environment variable {var}_FILE: names a key file, but reading key files needs \
                 tower-bearer's `file` feature"
            )
        );
    }
}
