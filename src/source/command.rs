use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::process::Command;
use zeroize::Zeroizing;

use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

mod output;
mod process;
mod rfc3339;
mod stderr;

/// How long a credential helper may run by default before it is killed.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::source::DEFAULT_COMMAND_TIMEOUT;
///
/// assert_eq!(DEFAULT_COMMAND_TIMEOUT, Duration::from_secs(10));
/// ```
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a credential helper program for each key: a cloud CLI, `vault`, a company tool, a
/// Kubernetes exec plugin.
///
/// The program is run directly (no shell, no splitting of strings), with the caller's
/// environment plus what [`env`](CommandKeySource::env) adds, stdin closed, at each load (first
/// use, refresh, after a 401, on a manual rotation). The layer's single flight means one run at
/// a time, however many requests wait for the key.
///
/// What it prints on stdout (64 KiB at most) is read as:
/// - **plain text**: one line, surrounding whitespace trimmed, the key as it is;
/// - **a Kubernetes `ExecCredential`** (`client.authentication.k8s.io/v1` or `v1beta1`):
///   `status.token`, and `status.expirationTimestamp` (RFC 3339) as the key's
///   [expiry](ApiKey::expires_at);
/// - **an OAuth2 token response**: `access_token`, and `expires_in` (seconds, from now) as the
///   expiry; a `token_type` other than `Bearer` is refused.
///
/// Output whose first non-blank character is `{` is JSON. When the output gives no expiry,
/// the key gets the hint set with [`refresh_after`](CommandKeySource::refresh_after) (none by
/// default: the key is then used until the server rejects it).
///
/// The helper is killed (and reaped) when it runs past its [timeout](CommandKeySource::timeout)
/// (10 s by default), and when the load is dropped, for instance by the layer's own load
/// timeout ([`BearerAuthLayer::load_timeout`](crate::BearerAuthLayer::load_timeout), 5 s by
/// default: raise it for a slower helper). Only the helper's own process is killed: a helper
/// that starts programs of its own should `exec` the last one, and leave none running with its
/// stdout open (the output ends only when every holder of the pipe has closed it).
///
/// # Errors
///
/// Every error's origin is `credential helper <program>`; none quotes stdout. Stderr is quoted
/// only as its first line, at most 200 characters, with anything that looks like a secret
/// redacted.
///
/// | failure | kind |
/// |---|---|
/// | program not found, not executable, not a program the system can run | [`Config`](KeyErrorKind::Config) |
/// | could not be started for another reason (out of processes, say) | [`Unavailable`](KeyErrorKind::Unavailable) |
/// | non-zero exit status, killed by a signal | [`Unavailable`](KeyErrorKind::Unavailable) |
/// | ran past its timeout | [`Timeout`](KeyErrorKind::Timeout) |
/// | printed nothing; JSON without a token | [`Missing`](KeyErrorKind::Missing) |
/// | more than 64 KiB, more than one line, malformed JSON, a token that is not a valid key | [`Invalid`](KeyErrorKind::Invalid) |
/// | not UTF-8 | [`Unreadable`](KeyErrorKind::Unreadable) |
/// | an OAuth2 error response | [`Denied`](KeyErrorKind::Denied) |
/// | a token already expired | [`Expired`](KeyErrorKind::Expired) |
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{BearerAuthLayer, CommandKeySource};
///
/// let source = CommandKeySource::new("gcloud")
///     .args(["auth", "print-access-token"])
///     .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
///     .timeout(Duration::from_secs(20))
///     .refresh_after(Duration::from_secs(45 * 60));
/// let layer = BearerAuthLayer::new(source)
///     .load_timeout(Duration::from_secs(25))
///     .restrict_to_hosts(["api.example.com"]);
/// ```
///
/// It needs a tokio runtime with I/O enabled (`#[tokio::main]` has it).
#[derive(Clone)]
pub struct CommandKeySource {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
    refresh_after: Option<Duration>,
}

impl CommandKeySource {
    /// Runs `program`: a path, or a name looked up in `PATH`.
    ///
    /// ```
    /// # use tower_bearer::CommandKeySource;
    /// let source = CommandKeySource::new("/usr/local/bin/print-api-key");
    /// assert_eq!(source.program(), "/usr/local/bin/print-api-key");
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> CommandKeySource {
        CommandKeySource {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            refresh_after: None,
        }
    }

    /// Adds one argument, passed as it is (no shell, no splitting).
    ///
    /// ```
    /// # use tower_bearer::CommandKeySource;
    /// let source = CommandKeySource::new("vault").arg("kv").arg("get").arg("-field=api_key");
    /// ```
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> CommandKeySource {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments, each passed as it is.
    ///
    /// ```
    /// # use tower_bearer::CommandKeySource;
    /// let source = CommandKeySource::new("vault").args(["kv", "get", "-field=api_key", "secret/azerion"]);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> CommandKeySource
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets a variable in the helper's environment, on top of the caller's.
    ///
    /// Values of 8 bytes or more are redacted from the stderr an error quotes, so a secret the
    /// helper needs can be passed this way; `Debug` shows the names only.
    ///
    /// ```
    /// # use tower_bearer::CommandKeySource;
    /// let source = CommandKeySource::new("print-token").env("PROFILE", "production");
    /// ```
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> CommandKeySource {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets how long the helper may run before it is killed (default 10 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_bearer::CommandKeySource;
    /// let source = CommandKeySource::new("print-token").timeout(Duration::from_secs(3));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> CommandKeySource {
        self.timeout = timeout;
        self
    }

    /// Sets the refresh hint of a key whose output gives no expiry (plain text, or JSON
    /// without one): the helper runs again after `ttl`. None by default.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_bearer::CommandKeySource;
    /// let source = CommandKeySource::new("print-token").refresh_after(Duration::from_secs(300));
    /// ```
    pub fn refresh_after(mut self, ttl: Duration) -> CommandKeySource {
        self.refresh_after = Some(ttl);
        self
    }

    /// The program run.
    ///
    /// ```
    /// # use tower_bearer::CommandKeySource;
    /// let source = CommandKeySource::new("print-token").arg("--profile=prod");
    /// assert_eq!(source.program(), "print-token");
    /// ```
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    fn origin(&self) -> String {
        format!("credential helper {}", Path::new(&self.program).display())
    }

    async fn run(&self) -> Result<ApiKey, KeyError> {
        tracing::debug!(program = %Path::new(&self.program).display(), "running the credential helper");
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(process::spawn_error)?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            process::reap(&mut child).await;
            return Err(KeyError::new(
                KeyErrorKind::Other,
                "its output pipes were not set up",
            ));
        };
        let timeout = self.timeout;
        // Sized up front so they never move (leaving a copy behind); zeroed on drop.
        let mut stdout_buf = Zeroizing::new(Vec::with_capacity(process::STDOUT_CAP + 64));
        let mut stderr_buf = Zeroizing::new(Vec::new());
        let run = process::run_to_end(&mut child, stdout, stderr, &mut stdout_buf, &mut stderr_buf);
        // Not in the match's scrutinee: the future, which borrows the child, must be gone
        // before the arms reap it.
        let outcome = tokio::time::timeout(timeout, run).await;
        let (stdout, stderr) = (&stdout_buf, &stderr_buf);
        let status = match outcome {
            Ok(Ok(status)) => status,
            Ok(Err(err)) => {
                process::reap(&mut child).await;
                return Err(err);
            }
            Err(_) => {
                process::reap(&mut child).await;
                return Err(KeyError::new(
                    KeyErrorKind::Timeout,
                    format!("did not finish within {timeout:?} and was killed"),
                ));
            }
        };
        if !status.success() {
            let quote = self
                .quote(stderr)
                .map_or(String::new(), |q| format!(" (stderr: {q})"));
            return Err(KeyError::new(
                KeyErrorKind::Unavailable,
                format!("{}{quote}", process::failure(status)),
            ));
        }
        output::parse(stdout, SystemTime::now(), self.refresh_after).map_err(|err| {
            let printed_nothing =
                err.kind() == KeyErrorKind::Missing && err.cause().starts_with("printed nothing");
            // A helper that succeeded but printed nothing may have put its token on stderr by
            // mistake: a stderr that reads as one would be a valid key is not quoted.
            let quote = match printed_nothing && !looks_like_a_key(stderr) {
                true => self.quote(stderr),
                false => None,
            };
            match quote {
                Some(q) => KeyError::new(
                    KeyErrorKind::Missing,
                    format!("{} (stderr: {q})", err.cause()),
                ),
                None => err,
            }
        })
    }

    /// The quote of `stderr` an error may carry, with the values given by `env` and `arg`
    /// taken out (either may be a secret the helper echoes).
    fn quote(&self, stderr: &[u8]) -> Option<String> {
        let envs = self.envs.iter().filter_map(|(_, v)| v.to_str());
        let args = self.args.iter().filter_map(|a| a.to_str());
        let secrets: Vec<&str> = envs.chain(args).collect();
        stderr::excerpt(stderr, &secrets)
    }
}

impl KeySource for CommandKeySource {
    fn load(&self) -> KeyFuture<'_> {
        Box::pin(async move { self.run().await.map_err(|e| e.with_origin(self.origin())) })
    }

    fn describe(&self) -> Option<String> {
        Some(self.origin())
    }
}

impl fmt::Debug for CommandKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Arguments and values may be secrets: their count and the variables' names only.
        let names: Vec<&OsStr> = self.envs.iter().map(|(k, _)| k.as_os_str()).collect();
        f.debug_struct("CommandKeySource")
            .field("program", &self.program)
            .field("args", &self.args.len())
            .field("env", &names)
            .field("timeout", &self.timeout)
            .field("refresh_after", &self.refresh_after)
            .finish()
    }
}

/// Whether any line of `stderr` would pass as a key on its own (one word of visible ASCII).
fn looks_like_a_key(stderr: &[u8]) -> bool {
    String::from_utf8_lossy(stderr)
        .lines()
        .any(|line| ApiKey::new(line.trim()).is_ok())
}
