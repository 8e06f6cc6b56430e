//! Running the helper: its pipes, read side by side with caps; how it ended; killing and
//! reaping it.

use std::future::Future;
use std::io;
use std::process::ExitStatus;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use zeroize::Zeroizing;

use crate::{KeyError, KeyErrorKind};

/// The most a helper may print on stdout; more is an error, never a truncated key.
pub(super) const STDOUT_CAP: usize = 64 * 1024;
/// The most of a helper's stderr kept (the rest is read and dropped, so the helper never
/// blocks on a full pipe).
const STDERR_CAP: usize = 16 * 1024;
/// How long to wait for a killed helper to be reaped before leaving it to tokio's reaper.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// How long the pipes are read after the helper exited: what it printed is in the pipe by
/// then, but a process it started in the background (an agent, a cache daemon) may hold them
/// open for ever.
const AFTER_EXIT: Duration = Duration::from_millis(250);

/// Reads stdout and stderr side by side (a helper blocked on one full pipe would never close
/// the other) into `out` and `err` while waiting for the helper to exit; stops at once when
/// stdout fails. After the exit, the pipes get [`AFTER_EXIT`] to reach their end, then what
/// was read is what the helper printed. The caller kills and reaps the helper on an error.
pub(super) async fn run_to_end(
    child: &mut Child,
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    out: &mut Zeroizing<Vec<u8>>,
    err: &mut Zeroizing<Vec<u8>>,
) -> Result<ExitStatus, KeyError> {
    let reads = async {
        let mut stdout = std::pin::pin!(read_stdout(stdout, out));
        let mut stderr = std::pin::pin!(read_stderr(stderr, err));
        let (mut out_done, mut err_done) = (None, false);
        std::future::poll_fn(|cx| {
            if out_done.is_none() {
                if let Poll::Ready(read) = stdout.as_mut().poll(cx) {
                    out_done = Some(read);
                }
            }
            if !err_done {
                err_done = stderr.as_mut().poll(cx).is_ready();
            }
            match out_done.take() {
                Some(Err(e)) => Poll::Ready(Err(e)),
                Some(Ok(())) if err_done => Poll::Ready(Ok(())),
                other => {
                    out_done = other;
                    Poll::Pending
                }
            }
        })
        .await
    };
    let mut reads = std::pin::pin!(reads);
    let mut read = None;
    let exit = {
        let mut wait = std::pin::pin!(child.wait());
        std::future::poll_fn(|cx| {
            if read.is_none() {
                if let Poll::Ready(done) = reads.as_mut().poll(cx) {
                    read = Some(done);
                }
            }
            if matches!(read, Some(Err(_))) {
                return Poll::Ready(None);
            }
            wait.as_mut().poll(cx).map(Some)
        })
        .await
    };
    let status = match exit {
        None => return Err(read.and_then(Result::err).expect("stdout failed")),
        Some(Err(e)) => {
            return Err(KeyError::new(
                KeyErrorKind::Other,
                format!("could not be waited for: {e}"),
            ))
        }
        Some(Ok(status)) => status,
    };
    let read = match read {
        Some(done) => done,
        None => match tokio::time::timeout(AFTER_EXIT, reads.as_mut()).await {
            Ok(done) => done,
            Err(_) => {
                tracing::debug!(
                    "the credential helper exited, but a process it started keeps its output \
                     open; using what it printed"
                );
                Ok(())
            }
        },
    };
    read.map(|()| status)
}

/// Reads stdout to its end, refusing more than [`STDOUT_CAP`] bytes. The buffer is zeroed on
/// drop, and sized up front so it never moves (leaving a copy behind).
async fn read_stdout(
    stdout: impl AsyncRead + Unpin,
    buf: &mut Zeroizing<Vec<u8>>,
) -> Result<(), KeyError> {
    stdout
        .take(STDOUT_CAP as u64 + 1)
        .read_to_end(buf)
        .await
        .map_err(|e| {
            KeyError::new(
                KeyErrorKind::Unreadable,
                format!("stdout could not be read: {e}"),
            )
        })?;
    if buf.len() > STDOUT_CAP {
        return Err(KeyError::new(
            KeyErrorKind::Invalid,
            format!("printed more than {STDOUT_CAP} bytes; a credential helper prints one token"),
        ));
    }
    Ok(())
}

/// Reads stderr to its end, keeping the first [`STDERR_CAP`] bytes. A read error ends it.
async fn read_stderr(mut stderr: impl AsyncRead + Unpin, buf: &mut Zeroizing<Vec<u8>>) {
    let kept = (&mut stderr).take(STDERR_CAP as u64).read_to_end(buf).await;
    if kept.is_ok() {
        let mut rest = [0u8; 4096];
        while let Ok(1..) = stderr.read(&mut rest).await {}
    }
}

/// Kills the helper and waits (a little) for it to be reaped; past that, dropping the child
/// leaves it to tokio's reaper.
pub(super) async fn reap(child: &mut Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
}

pub(super) fn spawn_error(e: io::Error) -> KeyError {
    let (kind, cause) = match e.kind() {
        io::ErrorKind::NotFound => (
            KeyErrorKind::Config,
            "was not found (it is run without a shell: give a path, or a name in PATH)".to_owned(),
        ),
        io::ErrorKind::PermissionDenied => (
            KeyErrorKind::Config,
            "cannot be run: permission denied (is it executable?)".to_owned(),
        ),
        _ if is_exec_format_error(&e) => (
            KeyErrorKind::Config,
            "is not a program the system can run (a script needs a #! line)".to_owned(),
        ),
        _ => (
            KeyErrorKind::Unavailable,
            format!("could not be started: {e}"),
        ),
    };
    KeyError::new(kind, cause).with_source(e)
}

#[cfg(unix)]
fn is_exec_format_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOEXEC)
}

#[cfg(not(unix))]
fn is_exec_format_error(_e: &io::Error) -> bool {
    false
}

/// How a helper that did not succeed ended.
pub(super) fn failure(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return match signal_name(signal) {
                Some(name) => format!("was killed by signal {signal} ({name})"),
                None => format!("was killed by signal {signal}"),
            };
        }
    }
    format!("ended without success ({status})")
}

#[cfg(unix)]
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}
