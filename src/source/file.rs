use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::secret_file::open_nonblocking;
use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

/// Reads no more than this from a key file: a key is at most 4 KiB, so anything much bigger
/// is the wrong file, and must not be read into memory whole.
const READ_CAP: u64 = 64 * 1024;

/// How often a file key is re-read by default, so a rotated file is picked up without a 401.
pub const DEFAULT_FILE_REFRESH: Duration = Duration::from_secs(60);

/// Reads the key from a file, at every load: a Kubernetes secret volume, a Docker secret, a
/// file a sidecar writes.
///
/// Surrounding whitespace is trimmed (a trailing newline is normal); the key must be on one
/// line. Symlinks are followed, so Kubernetes' atomic `..data` swap is seen as one change.
/// Each key carries a refresh hint (60 s by default) so a rotated file is picked up even
/// before the server rejects the old key. On Unix a warning is logged once when the file is
/// readable by group or others.
///
/// Errors name the path and the cause (missing, permission denied, a directory, empty, not
/// UTF-8, more than one line, too big, invalid key), never the contents.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{BearerAuthLayer, FileKeySource};
///
/// let source = FileKeySource::new("/var/run/secrets/azerion/api-key")
///     .refresh_after(Duration::from_secs(30));
/// let layer = BearerAuthLayer::new(source);
/// ```
#[derive(Clone)]
pub struct FileKeySource {
    path: Arc<Path>,
    refresh_after: Option<Duration>,
    warned_permissions: Arc<AtomicBool>,
    /// Held by the blocking read in flight, until it returns: a read stuck in the kernel (a
    /// hung network mount) keeps one thread, not one per timed-out load.
    reading: Arc<tokio::sync::Mutex<()>>,
}

impl FileKeySource {
    /// Reads the key from `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileKeySource {
        FileKeySource {
            path: Arc::from(path.into()),
            refresh_after: Some(DEFAULT_FILE_REFRESH),
            warned_permissions: Arc::new(AtomicBool::new(false)),
            reading: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Sets how long a loaded key is used before the file is read again (default 60 s).
    pub fn refresh_after(mut self, ttl: Duration) -> FileKeySource {
        self.refresh_after = Some(ttl);
        self
    }

    /// Never re-reads the file by itself: only a 401 or a manual rotation does.
    pub fn no_refresh(mut self) -> FileKeySource {
        self.refresh_after = None;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<ApiKey, KeyError> {
        let origin = || format!("key file {}", self.path.display());
        let fail = |kind, cause: String| KeyError::new(kind, cause).with_origin(origin());
        let io_fail = |what: &str, e: io::Error| {
            let (kind, cause) = match e.kind() {
                io::ErrorKind::NotFound => (KeyErrorKind::Missing, "does not exist".to_owned()),
                io::ErrorKind::PermissionDenied => {
                    (KeyErrorKind::Unreadable, "permission denied".to_owned())
                }
                _ => (KeyErrorKind::Unreadable, format!("cannot be {what}: {e}")),
            };
            KeyError::new(kind, cause).with_origin(origin())
        };

        let file = open_nonblocking(&self.path).map_err(|e| io_fail("opened", e))?;
        let meta = file.metadata().map_err(|e| io_fail("inspected", e))?;
        if meta.is_dir() {
            return Err(fail(
                KeyErrorKind::Unreadable,
                "is a directory, not a file".into(),
            ));
        }
        if !meta.is_file() {
            return Err(fail(
                KeyErrorKind::Unreadable,
                "is not a regular file (a FIFO, socket or device); a key file must be a \
                 regular file"
                    .into(),
            ));
        }
        self.warn_if_exposed(&meta);
        let mut bytes = Vec::new();
        file.take(READ_CAP + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_fail("read", e))?;
        if bytes.len() as u64 > READ_CAP {
            return Err(fail(
                KeyErrorKind::Invalid,
                format!("is larger than {READ_CAP} bytes; a key file holds one key"),
            ));
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            fail(
                KeyErrorKind::Unreadable,
                format!(
                    "is not UTF-8 text (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            )
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(fail(KeyErrorKind::Missing, "is empty".into()));
        }
        if key.contains(['\n', '\r']) {
            return Err(fail(
                KeyErrorKind::Invalid,
                "has more than one line; a key file holds one key".into(),
            ));
        }
        let key = ApiKey::new(key).map_err(|e| e.with_origin(origin()))?;
        Ok(match self.refresh_after {
            Some(ttl) => key.refresh_after(ttl),
            None => key,
        })
    }

    #[cfg(unix)]
    fn warn_if_exposed(&self, meta: &std::fs::Metadata) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 && !self.warned_permissions.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %self.path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "key file is readable by group or others; chmod 600 it"
            );
        }
    }

    #[cfg(not(unix))]
    fn warn_if_exposed(&self, _meta: &std::fs::Metadata) {
        let _ = &self.warned_permissions;
        let _ = Ordering::Relaxed;
    }
}

impl KeySource for FileKeySource {
    fn load(&self) -> KeyFuture<'_> {
        Box::pin(async move {
            // One blocking read at a time: wait for the one in flight (the cache's load
            // timeout bounds the wait), and hand the permit to the thread, which lets go when
            // its read returns, whether or not anyone still waits for it.
            let permit = self.reading.clone().lock_owned().await;
            let this = self.clone();
            // File I/O blocks; keep it off the async worker threads, but log where the caller
            // logs: carry its subscriber and span over to the blocking thread.
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let span = tracing::Span::current();
            let read = move || {
                let _permit = permit;
                let _span = span.enter();
                tracing::dispatcher::with_default(&dispatch, || this.read())
            };
            match tokio::task::spawn_blocking(read).await {
                Ok(result) => result,
                Err(join) => Err(KeyError::new(
                    KeyErrorKind::Other,
                    format!("reading the key file failed: {join}"),
                )
                .with_origin(format!("key file {}", self.path.display()))),
            }
        })
    }

    fn describe(&self) -> Option<String> {
        Some(format!("key file {}", self.path.display()))
    }
}

impl fmt::Debug for FileKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeySource")
            .field("path", &self.path)
            .field("refresh_after", &self.refresh_after)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_load_waits_for_the_blocking_read_in_flight_instead_of_starting_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-file-test-key-000000\n").unwrap();
        let source = FileKeySource::new(&path);
        // A read stuck in the kernel holds the permit.
        let stuck = source.reading.clone().lock_owned().await;
        let waited = tokio::time::timeout(Duration::from_secs(5), source.load()).await;
        assert!(
            waited.is_err(),
            "a second read started beside the stuck one"
        );
        drop(stuck);
        let key = source.load().await.unwrap();
        assert_eq!(key.expose_secret(), "sk-file-test-key-000000");
    }
}
