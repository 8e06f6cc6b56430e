//! `EnvKeySource`'s `_FILE` convention: `X` unset and `X_FILE` set reads the key from that
//! file (as `FileKeySource` does); both set is a `Config` error; empty counts as unset.
//!
//! The environment is the process's: every test holds `ENV` while it sets variables, and
//! names them uniquely.

#![cfg(all(feature = "env", feature = "file"))]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::sync::{Mutex, MutexGuard};
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{azerion, BearerAuthLayer, EnvKeySource, KeyErrorKind, KeySource};

const KEY_A: &str = "sk-env-file-key-0123456789AAAA";
const KEY_B: &str = "sk-env-file-key-0123456789BBBB";
const KEY_ENV: &str = "sk-env-value-key-0123456789CCCC";

/// Held by a test while it sets variables (an async mutex: the tests hold it across awaits).
static ENV: Mutex<()> = Mutex::const_new(());

/// The environment, held; and a variable name no other test uses.
async fn env() -> (MutexGuard<'static, ()>, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let guard = ENV.lock().await;
    (
        guard,
        format!("TB_ENV_FILE_TEST_{}_{n}", std::process::id()),
    )
}

/// Sets `var` (`None`: removes it).
fn set(var: &str, value: Option<&str>) {
    match value {
        Some(value) => std::env::set_var(var, value),
        None => std::env::remove_var(var),
    }
}

/// Writes `contents` to `path`, readable by its owner only (no permission warning).
fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[tokio::test]
async fn only_the_file_variable_reads_the_file_as_the_file_source_does() {
    let (_env, var) = env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    write_private(&path, &format!("  {KEY_A}\n"));
    let file_var = format!("{var}_FILE");
    set(&var, None);
    set(&file_var, path.to_str());

    let key = EnvKeySource::new(&var).load().await.unwrap();
    assert_eq!(key.expose_secret(), KEY_A);
    assert_eq!(key.refresh_hint(), Some(Duration::from_secs(60)));

    // An empty X counts as unset: a placeholder does not hide X_FILE.
    set(&var, Some(""));
    let key = EnvKeySource::new(&var).load().await.unwrap();
    assert_eq!(key.expose_secret(), KEY_A);

    // An empty X_FILE counts as unset: X is read as before.
    set(&var, Some(KEY_ENV));
    set(&file_var, Some(""));
    let key = EnvKeySource::new(&var).load().await.unwrap();
    assert_eq!(key.expose_secret(), KEY_ENV);
    assert_eq!(key.refresh_hint(), None);

    // Neither has a value.
    set(&var, None);
    let err = EnvKeySource::new(&var).load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert_eq!(
        err.to_string(),
        format!("environment variable {var}: is not set, and {file_var} is set but empty")
    );
    set(&file_var, None);
}

#[tokio::test]
async fn both_set_is_a_config_error_naming_both_variables_and_neither_value() {
    let (_env, var) = env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret-path-3141592653");
    write_private(&path, KEY_A);
    let file_var = format!("{var}_FILE");
    set(&var, Some(KEY_ENV));
    set(&file_var, path.to_str());

    let err = EnvKeySource::new(&var).load().await.unwrap_err();
    set(&var, None);
    set(&file_var, None);
    assert_eq!(err.kind(), KeyErrorKind::Config);
    let shown = format!("{err} {err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "environment variables {var} and {file_var}: both {var} and {file_var} are set; \
             set only one of them"
        )
    );
    for value in ["0123456789", "3141592653"] {
        assert!(!shown.contains(value), "{shown}");
    }
}

#[tokio::test]
async fn a_missing_file_is_missing_and_names_the_file_and_the_variable() {
    let (_env, var) = env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-there");
    let file_var = format!("{var}_FILE");
    set(&var, None);
    set(&file_var, path.to_str());

    let err = EnvKeySource::new(&var).load().await.unwrap_err();
    set(&file_var, None);
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert_eq!(
        err.to_string(),
        format!(
            "key file {} (named by environment variable {file_var}): does not exist",
            path.display()
        )
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_rotated_file_is_picked_up_through_the_layer() {
    use std::os::unix::fs::symlink;
    use support::stand_in::StandInApi;

    let (_env, var) = env().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // kubelet's layout: api-key -> ..data/api-key, ..data -> ..<timestamp>/
    std::fs::create_dir(d.join("..2027_01_01")).unwrap();
    write_private(&d.join("..2027_01_01/api-key"), KEY_A);
    symlink("..2027_01_01", d.join("..data")).unwrap();
    symlink("..data/api-key", d.join("api-key")).unwrap();
    let file_var = format!("{var}_FILE");
    set(&var, None);
    set(&file_var, d.join("api-key").to_str());

    let api = StandInApi::start(&[KEY_A]).await;
    let (events, hook) = support::recorder();
    let client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::new(EnvKeySource::new(&var))
                .restrict_to_hosts(["127.0.0.1"])
                .on_rotate(hook),
        )
        .service(support::client::<Empty<Bytes>>());
    let models = format!("{}/models", api.base_url());
    let get = || http::Request::get(&models).body(Empty::new()).unwrap();
    let response = client.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();

    // The atomic swap, and the old key revoked at once.
    std::fs::create_dir(d.join("..2027_01_02")).unwrap();
    write_private(&d.join("..2027_01_02/api-key"), KEY_B);
    symlink("..2027_01_02", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    api.accept(KEY_B);
    api.revoke(KEY_A);

    let response = client.clone().oneshot(get()).await.unwrap();
    set(&file_var, None);
    assert_eq!(response.status(), 200, "healed through one 401");
    assert_eq!(api.unauthorized(), 1);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].old_fingerprint(), Some("sk-…AAAA"));
    assert_eq!(events[1].new_fingerprint(), "sk-…BBBB");
}

#[cfg(unix)]
#[tokio::test]
async fn a_file_readable_by_others_gets_the_file_sources_warning_once() {
    use std::os::unix::fs::PermissionsExt;
    let (_env, var) = env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    std::fs::write(&path, KEY_A).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file_var = format!("{var}_FILE");
    set(&var, None);
    set(&file_var, path.to_str());

    let (dispatch, logs) = support::logs::capture();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let source = EnvKeySource::new(&var);
    for _ in 0..3 {
        assert_eq!(source.load().await.unwrap().expose_secret(), KEY_A);
    }
    set(&file_var, None);
    let text = logs.text();
    assert_eq!(
        text.matches("readable by group or others").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("0123456789"), "{text}");
}

#[test]
fn the_azerion_source_reads_azerion_api_key_file() {
    let source = azerion::key_source();
    assert_eq!(source.var(), azerion::API_KEY_VAR);
    assert_eq!(source.file_var(), azerion::API_KEY_FILE_VAR);
    assert_eq!(azerion::API_KEY_FILE_VAR, "AZERION_API_KEY_FILE");
    assert_eq!(
        source.describe().as_deref(),
        Some("environment variable AZERION_API_KEY (or the file named by AZERION_API_KEY_FILE)")
    );
}
