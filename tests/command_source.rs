//! `CommandKeySource` against real processes: `#!/bin/sh` scripts written to a temporary
//! directory, for every output format and every failure; a helper past its timeout, or whose
//! load is dropped, is killed and reaped; and a layer's single flight runs the helper once for
//! 100 concurrent requests.

#![cfg(all(unix, feature = "command"))]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{RwLock, RwLockReadGuard};
use tower_bearer::{ApiKey, CommandKeySource, KeyError, KeyErrorKind, KeySource};

/// What the scripts print as their token: no error may show any of it.
const TOKEN: &str = "tok-SECRET-0123456789abcdefghij";
const SECRET: &str = "SECRET-0123456789";

/// Writing an executable while another thread forks can leave the child holding the file open
/// for writing until it execs, and the exec of the script then fails with "text file busy".
/// Scripts are written under the write lock; helpers run under read locks.
static FORKS: RwLock<()> = RwLock::const_new(());

/// A temporary directory and the scripts in it.
struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `#!/bin/sh` and `body` to an executable file `name`.
    async fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        let _no_forks = FORKS.write().await;
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// Holds off script writes while helpers run.
async fn forks() -> RwLockReadGuard<'static, ()> {
    FORKS.read().await
}

async fn load(source: &CommandKeySource) -> Result<ApiKey, KeyError> {
    let _forks = forks().await;
    source.load().await
}

/// A helper running `body`, with `TOKEN` in its environment.
async fn helper(scripts: &Scripts, body: &str) -> CommandKeySource {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("helper-{}", NEXT.fetch_add(1, Ordering::SeqCst));
    CommandKeySource::new(scripts.script(&name, body).await).env("TOKEN", TOKEN)
}

/// The error of a load, checked for what no error may show.
async fn failure(source: &CommandKeySource) -> KeyError {
    let err = load(source).await.expect_err("the load fails");
    let shown = format!("{err} | {err:?}");
    assert!(!shown.contains(SECRET), "{shown} shows the output");
    let origin = format!(
        "credential helper {}",
        Path::new(source.program()).display()
    );
    assert_eq!(err.origin(), Some(origin.as_str()), "{shown}");
    err
}

#[tokio::test]
async fn plain_text_runs_the_program_directly_with_its_arguments_and_environment() {
    let scripts = Scripts::new();
    // No shell between us and the program: an argument with spaces and `;` arrives whole.
    let body = r#"[ "$#" = 3 ] && [ "$1" = 'two words; echo pwned' ] && [ "$2" = '$HOME' ] \
        && [ "$3" = '*' ] && [ "$EXTRA" = 'from env()' ] && [ -n "$PATH" ] || exit 9
printf '  %s\n\n' "$TOKEN""#;
    let source = helper(&scripts, body)
        .await
        .arg("two words; echo pwned")
        .args(["$HOME", "*"])
        .env("EXTRA", "from env()")
        .refresh_after(Duration::from_secs(90));
    let key = load(&source).await.unwrap();
    assert_eq!(key.expose_secret(), TOKEN);
    assert_eq!(key.refresh_hint(), Some(Duration::from_secs(90)));
    assert_eq!(key.expiry(), None);
    assert_eq!(
        source.describe(),
        Some(format!(
            "credential helper {}",
            Path::new(source.program()).display()
        ))
    );
    let debug = format!("{source:?}");
    assert!(
        !debug.contains("from env()") && !debug.contains("pwned"),
        "{debug}"
    );
}

#[tokio::test]
async fn exec_credential_and_oauth2_json_give_the_expiry() {
    let scripts = Scripts::new();
    for version in ["v1", "v1beta1"] {
        let source = helper(
            &scripts,
            &format!(
                r#"cat <<EOF
{{
  "apiVersion": "client.authentication.k8s.io/{version}",
  "kind": "ExecCredential",
  "status": {{"token": "$TOKEN", "expirationTimestamp": "2099-01-01T00:00:00Z"}}
}}
EOF"#
            ),
        )
        .await
        .refresh_after(Duration::from_secs(90));
        let key = load(&source).await.unwrap();
        assert_eq!(key.expose_secret(), TOKEN);
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(4_070_908_800);
        assert_eq!(key.expiry(), Some(expected), "{version}");
        assert_eq!(key.refresh_hint(), None, "the expiry replaces the hint");
    }

    let source = helper(
        &scripts,
        r#"printf '{"access_token":"%s","token_type":"Bearer","expires_in":3600}' "$TOKEN""#,
    )
    .await;
    let before = SystemTime::now();
    let key = load(&source).await.unwrap();
    let expiry = key.expiry().expect("an expiry");
    assert!(expiry >= before + Duration::from_secs(3600));
    assert!(expiry <= SystemTime::now() + Duration::from_secs(3600));
}

#[tokio::test]
async fn every_failure_has_its_kind_and_a_cause_without_the_output() {
    use KeyErrorKind::*;
    let scripts = Scripts::new();
    let print = r#"printf '%s\n' "$TOKEN""#;
    let cases: Vec<(&str, String, KeyErrorKind, &str)> = vec![
        (
            "non-zero exit, stderr quoted",
            format!("{print}\necho '  ' >&2\necho 'error: not logged in' >&2\necho 'second line' >&2\nexit 3"),
            Unavailable,
            "exited with status 3 (stderr: error: not logged in)",
        ),
        (
            "stderr echoing the token is redacted",
            "echo \"refusing token $TOKEN for now\" >&2\nexit 1".to_owned(),
            Unavailable,
            "exited with status 1 (stderr: refusing token [redacted] for now)",
        ),
        (
            "a long stderr line is cut",
            format!("{print}\nprintf 'x%.0s' $(seq 1 5000) >&2\nexit 1"),
            Unavailable,
            "exited with status 1 (stderr: xxxxxxxxxx",
        ),
        ("killed by a signal", format!("{print}\nkill -KILL $$"), Unavailable, "was killed by signal 9 (SIGKILL)"),
        ("no output", "true".to_owned(), Missing, "printed nothing on stdout"),
        (
            "no output, stderr quoted",
            "echo 'no credentials configured' >&2".to_owned(),
            Missing,
            "printed nothing on stdout (stderr: no credentials configured)",
        ),
        ("two lines", format!("{print}\n{print}"), Invalid, "more than one line"),
        (
            "malformed JSON",
            r#"printf '{\n  "access_token": "%s",\n  "expires_in": 3600,,\n}' "$TOKEN""#.to_owned(),
            Invalid,
            "malformed JSON (a syntax error at line 3, column 22)",
        ),
        (
            "ExecCredential without a token",
            r#"printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"expirationTimestamp":"2099-01-01T00:00:00Z","x":"%s"}}' "$TOKEN""#.to_owned(),
            Missing,
            "without status.token",
        ),
        (
            "expired",
            r#"printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"2001-01-01T00:00:00Z"}}' "$TOKEN""#.to_owned(),
            Expired,
            "printed a token that expired",
        ),
        (
            "absurd expires_in",
            r#"printf '{"access_token":"%s","expires_in":1e400}' "$TOKEN""#.to_owned(),
            Invalid,
            "malformed JSON",
        ),
        (
            "huge expires_in",
            r#"printf '{"access_token":"%s","expires_in":99999999999999999999}' "$TOKEN""#.to_owned(),
            Invalid,
            "expires_in is not a whole number",
        ),
        (
            "over 64 KiB",
            format!("{print}\nhead -c 70000 /dev/zero | tr '\\0' k"),
            Invalid,
            "printed more than 65536 bytes",
        ),
    ];
    for (name, body, kind, needle) in cases {
        let err = failure(&helper(&scripts, &body).await).await;
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert!(
            err.cause().starts_with(needle) || err.cause().contains(needle),
            "{name}: {err}"
        );
    }
}

#[tokio::test]
async fn a_program_that_cannot_be_run_is_a_config_error() {
    use std::os::unix::fs::PermissionsExt;
    let scripts = Scripts::new();
    let missing = CommandKeySource::new(scripts.path("not-there"));
    let err = failure(&missing).await;
    assert_eq!(err.kind(), KeyErrorKind::Config);
    assert!(err.cause().starts_with("was not found"), "{err}");

    let bare = CommandKeySource::new("tower-bearer-no-such-helper-0451");
    assert_eq!(failure(&bare).await.kind(), KeyErrorKind::Config);

    let not_executable = scripts.script("not-executable", "echo hi").await;
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = failure(&CommandKeySource::new(&not_executable)).await;
    assert_eq!(err.kind(), KeyErrorKind::Config);
    assert!(err.cause().contains("permission denied"), "{err}");

    let no_shebang = scripts.path("no-shebang");
    {
        let _no_forks = FORKS.write().await;
        std::fs::write(&no_shebang, b"\x7fELF-not-really\n").unwrap();
        std::fs::set_permissions(&no_shebang, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let err = failure(&CommandKeySource::new(&no_shebang)).await;
    assert_eq!(err.kind(), KeyErrorKind::Config, "{err}");
    assert!(
        err.cause().contains("not a program the system can run"),
        "{err}"
    );
}

#[tokio::test]
async fn a_noisy_stderr_does_not_block_the_helper() {
    let scripts = Scripts::new();
    let source = helper(
        &scripts,
        r#"head -c 1000000 /dev/zero | tr '\0' e >&2
printf '%s\n' "$TOKEN""#,
    )
    .await;
    assert_eq!(load(&source).await.unwrap().expose_secret(), TOKEN);
}

/// Whether process `pid` is gone (not even a zombie waiting to be reaped), within 5 s.
#[cfg(target_os = "linux")]
async fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The PID the helper wrote to `file`, once it is there (5 s at most).
async fn pid_in(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the helper wrote no PID to {}", file.display());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_helper_past_its_timeout_is_killed_and_reaped() {
    let scripts = Scripts::new();
    let pid_file = scripts.path("pid");
    let source = helper(&scripts, "echo $$ > \"$PID_FILE\"\nexec sleep 30")
        .await
        .env("PID_FILE", &pid_file)
        .timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = failure(&source).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), KeyErrorKind::Timeout);
    assert_eq!(err.cause(), "did not finish within 200ms and was killed");
    let pid = pid_in(&pid_file).await;
    assert!(gone(pid).await, "the helper {pid} is still there");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_load_kills_the_helper() {
    let scripts = Scripts::new();
    let pid_file = scripts.path("pid");
    let source = helper(&scripts, "echo $$ > \"$PID_FILE\"\nexec sleep 30")
        .await
        .env("PID_FILE", &pid_file);
    let pid = {
        let _forks = forks().await;
        let load = source.load();
        tokio::select! {
            _ = load => panic!("the helper finished"),
            pid = pid_in(&pid_file) => pid,
        }
        // The load future is dropped here, the helper still sleeping.
    };
    assert!(gone(pid).await, "the helper {pid} is still there");
}

#[tokio::test]
async fn one_run_serves_100_concurrent_requests_through_the_layer() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use support::stand_in::StandInApi;
    use tower::{ServiceBuilder, ServiceExt};

    let scripts = Scripts::new();
    let runs = scripts.path("runs");
    let source = helper(
        &scripts,
        "echo run >> \"$RUNS\"\nsleep 0.3\nprintf '%s\\n' \"$TOKEN\"",
    )
    .await
    .env("RUNS", &runs);
    let api = StandInApi::start(&[TOKEN]).await;
    let client = ServiceBuilder::new()
        .layer(tower_bearer::BearerAuthLayer::new(source).restrict_to_hosts(["127.0.0.1"]))
        .service(support::client::<Empty<Bytes>>());
    let models = format!("{}/models", api.base_url());

    let _forks = forks().await;
    let requests = (0..100).map(|_| {
        let request = http::Request::get(&models).body(Empty::new()).unwrap();
        client.clone().oneshot(request)
    });
    let responses = futures_util::future::join_all(requests).await;
    for response in responses {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        "run\n",
        "the helper ran once"
    );
    assert_eq!(api.requests(), 100);
}
