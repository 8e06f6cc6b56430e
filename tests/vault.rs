//! `VaultKeySource` against the fixture Vault of `tests/support/vault_server.rs`, which answers
//! with the responses documented in Vault's API docs (not a live Vault).

mod support;
#[path = "support/vault_server.rs"]
mod vault_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{
    ApiKey, BearerAuthLayer, KeyError, KeyErrorKind, KeySource, RotationReason, VaultKeySource,
    VaultKeySourceBuilder,
};

use vault_server::*;

const SHORT: Duration = Duration::from_secs(3);

fn approle_token() -> String {
    client_token(APPROLE_LOGIN)
}
fn kubernetes_token() -> String {
    client_token(KUBERNETES_LOGIN)
}
fn role_id() -> String {
    request_field(APPROLE_LOGIN_REQUEST, "role_id")
}
fn secret_id() -> String {
    request_field(APPROLE_LOGIN_REQUEST, "secret_id")
}
fn jwt() -> String {
    request_field(KUBERNETES_LOGIN_REQUEST, "jwt")
}

/// Everything that must never appear in an error, a `Debug` string or a log line.
fn secrets() -> Vec<String> {
    vec![
        ROOT_TOKEN.to_owned(),
        approle_token(),
        kubernetes_token(),
        role_id(),
        secret_id(),
        jwt(),
        "sk-fixture-secret-value-0001".to_owned(),
    ]
}

/// A token-authenticated source for `secret/data/{path}`, field `field`.
fn source(f: &VaultFixture, path: &str, field: &str) -> VaultKeySourceBuilder {
    VaultKeySource::builder()
        .address(f.url())
        .token(ROOT_TOKEN)
        .mount("secret")
        .path(path)
        .field(field)
        .timeout(SHORT)
}

async fn load(source: &VaultKeySource) -> Result<ApiKey, KeyError> {
    source.load().await
}

/// Asserts the kind, that the message names every needle, and that neither the message nor
/// the `Debug` form holds a secret.
#[track_caller]
fn check(err: &KeyError, kind: KeyErrorKind, needles: &[&str]) {
    let msg = err.to_string();
    assert_eq!(err.kind(), kind, "{msg}");
    for needle in needles {
        assert!(msg.contains(needle), "{msg:?} does not name {needle:?}");
    }
    let debug = format!("{err:?}");
    for secret in secrets() {
        assert!(!msg.contains(&secret), "{msg:?} leaks a secret");
        assert!(!debug.contains(&secret), "{debug:?} leaks a secret");
    }
}

/// What every read error names: address, API path, field.
/// Loads `field` of `path`, which must fail with `kind`; checks the error as [`check`] does,
/// and that it names the origin and every needle.
async fn expect_error(
    f: &VaultFixture,
    path: &str,
    field: &str,
    kind: KeyErrorKind,
    needles: &[&str],
) -> KeyError {
    let err = load(&source(f, path, field).build().unwrap())
        .await
        .unwrap_err();
    let origin = origin(f, path, field);
    let mut all = vec![origin.as_str()];
    all.extend_from_slice(needles);
    check(&err, kind, &all);
    err
}

fn origin(f: &VaultFixture, path: &str, field: &str) -> String {
    format!("vault {} secret/data/{path} (field {field})", f.url())
}

// ---------------------------------------------------------------- reads

#[tokio::test]
async fn kv2_reads_the_documented_sample() {
    let f = VaultFixture::start().await;
    let key = load(&source(&f, "my-secret", "foo").build().unwrap())
        .await
        .unwrap();
    assert_eq!(key.expose_secret(), "bar");
    assert_eq!(key.refresh_hint(), Some(Duration::from_secs(300)));
    let seen = f.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/secret/data/my-secret");
    assert_eq!(seen[0].token.as_deref(), Some(ROOT_TOKEN));
    assert_eq!(seen[0].vault_request.as_deref(), Some("true"));
    assert_eq!(seen[0].namespace, None);
}

#[tokio::test]
async fn kv2_reads_the_full_envelope() {
    let f = VaultFixture::start().await;
    let key = load(&source(&f, "full", "foo").build().unwrap())
        .await
        .unwrap();
    assert_eq!(key.expose_secret(), "bar");
}

#[tokio::test]
async fn kv1_reads_data_field_and_uses_the_lease() {
    let f = VaultFixture::start().await;
    let s = source(&f, "my-secret", "foo")
        .mount("kv")
        .kv_version(1)
        .build()
        .unwrap();
    let key = load(&s).await.unwrap();
    assert_eq!(key.expose_secret(), "bar");
    assert_eq!(key.refresh_hint(), Some(Duration::from_secs(3600)));
    assert_eq!(f.seen()[0].path, "/v1/kv/my-secret");
    assert!(
        s.origin().contains("kv/my-secret (field foo)"),
        "{}",
        s.origin()
    );
}

#[tokio::test]
async fn explicit_refresh_after_wins() {
    let f = VaultFixture::start().await;
    let s = source(&f, "my-secret", "foo")
        .mount("kv")
        .kv_version(1)
        .refresh_after(Duration::from_secs(42))
        .build()
        .unwrap();
    let key = load(&s).await.unwrap();
    assert_eq!(key.refresh_hint(), Some(Duration::from_secs(42)));
}

#[tokio::test]
async fn namespace_header_is_sent_and_required() {
    let f = VaultFixture::start().await;
    f.require_namespace("ns1/");
    let with = source(&f, "my-secret", "foo")
        .namespace("ns1/")
        .build()
        .unwrap();
    assert_eq!(load(&with).await.unwrap().expose_secret(), "bar");
    assert_eq!(f.seen()[0].namespace.as_deref(), Some("ns1/"));
    assert!(with.origin().ends_with("(field foo, namespace ns1/)"));

    let without = source(&f, "my-secret", "foo").build().unwrap();
    let err = load(&without).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Denied,
        &["permission denied", "HTTP 403"],
    );
}

#[tokio::test]
async fn follows_a_standby_redirect_to_a_named_node() {
    let f = VaultFixture::start().await;
    let standby = standby(f.addr).await;
    let s = VaultKeySource::builder()
        .address(format!("http://{standby}"))
        .token(ROOT_TOKEN)
        .mount("secret")
        .path("my-secret")
        .field("foo")
        .allow_redirects_to([f.url()])
        .build()
        .unwrap();
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    let seen = f.seen();
    assert_eq!(seen.len(), 1, "the active node got the request once");
    assert_eq!(seen[0].token.as_deref(), Some(ROOT_TOKEN));
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let f = VaultFixture::start_tls().await;
    let s = source(&f, "my-secret", "foo")
        .ca_cert(test_ca_path())
        .build()
        .unwrap();
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    assert_eq!(f.seen()[0].token.as_deref(), Some(ROOT_TOKEN));
}

#[tokio::test]
async fn https_refuses_an_unknown_ca() {
    let f = VaultFixture::start_tls().await;
    expect_error(
        &f,
        "my-secret",
        "foo",
        KeyErrorKind::Unavailable,
        &["cannot connect", "certificate"],
    )
    .await;
    assert!(f.seen().is_empty(), "no request, so no token, went out");
}

// ---------------------------------------------------------------- errors, one per kind

#[tokio::test]
async fn error_403_permission_denied() {
    let f = VaultFixture::start().await;
    let s = VaultKeySource::builder()
        .address(f.url())
        .token("hvs.not-a-valid-token-0000000")
        .mount("secret")
        .path("my-secret")
        .field("foo")
        .build()
        .unwrap();
    let err = load(&s).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Denied,
        &[
            &origin(&f, "my-secret", "foo"),
            "permission denied",
            "HTTP 403",
        ],
    );
    assert!(!err.to_string().contains("hvs.not-a-valid-token"));
    assert_eq!(
        f.count("/v1/auth/approle/login"),
        0,
        "a static token never logs in"
    );
}

#[tokio::test]
async fn error_403_multierror_body() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Fail(403, DENIED_MULTIERROR.into()));
    let err = expect_error(
        &f,
        "my-secret",
        "foo",
        KeyErrorKind::Denied,
        &["permission denied", "HTTP 403"],
    )
    .await;
    assert!(!err.to_string().contains('\n'));
}

#[tokio::test]
async fn error_404_not_found() {
    let f = VaultFixture::start().await;
    expect_error(
        &f,
        "nothing-here",
        "api_key",
        KeyErrorKind::Missing,
        &["not found", "HTTP 404"],
    )
    .await;
}

#[tokio::test]
async fn error_404_deleted_version() {
    let f = VaultFixture::start().await;
    expect_error(
        &f,
        "deleted",
        "foo",
        KeyErrorKind::Missing,
        &["version 2", "deleted at 2018-03-22T02:40:00"],
    )
    .await;
}

#[tokio::test]
async fn error_404_destroyed_version() {
    let f = VaultFixture::start().await;
    expect_error(
        &f,
        "destroyed",
        "foo",
        KeyErrorKind::Missing,
        &["version 2", "destroyed"],
    )
    .await;
}

#[tokio::test]
async fn error_missing_field() {
    let f = VaultFixture::start().await;
    let err = expect_error(
        &f,
        "my-secret",
        "api_key",
        KeyErrorKind::Missing,
        &["no field \"api_key\"", "foo"],
    )
    .await;
    assert!(!err.to_string().contains("bar"), "names fields, not values");
}

#[tokio::test]
async fn error_field_not_a_string() {
    let f = VaultFixture::start().await;
    f.put_kv2_value(
        "azerion",
        "api_key",
        serde_json::json!({"nested": "sk-fixture-secret-value-0001"}),
    );
    expect_error(
        &f,
        "azerion",
        "api_key",
        KeyErrorKind::Invalid,
        &["an object, not a string"],
    )
    .await;
}

#[tokio::test]
async fn error_value_is_not_a_valid_key() {
    let f = VaultFixture::start().await;
    f.put_kv2("azerion", "api_key", "sk-fixture secret-value-0001");
    let err = expect_error(&f, "azerion", "api_key", KeyErrorKind::Invalid, &["space"]).await;
    assert!(!err.to_string().contains("secret-value"));
}

#[tokio::test]
async fn error_503_sealed() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Fail(503, SEALED.into()));
    let err = expect_error(
        &f,
        "my-secret",
        "foo",
        KeyErrorKind::Unavailable,
        &["Vault is sealed", "HTTP 503"],
    )
    .await;
    assert!(err.is_transient());
}

#[tokio::test]
async fn error_429_rate_limited() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Fail(429, RATE_LIMITED.into()));
    expect_error(
        &f,
        "my-secret",
        "foo",
        KeyErrorKind::Unavailable,
        &["rate limit", "HTTP 429"],
    )
    .await;
}

#[tokio::test]
async fn error_412_precondition_failed() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Fail(412, GENERIC_ERROR.into()));
    expect_error(
        &f,
        "my-secret",
        "foo",
        KeyErrorKind::Unavailable,
        &["precondition failed", "HTTP 412", "another message"],
    )
    .await;
}

#[tokio::test]
async fn error_500_and_other_5xx() {
    let f = VaultFixture::start().await;
    let s = source(&f, "my-secret", "foo").build().unwrap();
    f.set_mode(Mode::Fail(500, GENERIC_ERROR.into()));
    let err = load(&s).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Unavailable,
        &[
            &origin(&f, "my-secret", "foo"),
            "server error",
            "message; another message",
            "HTTP 500",
        ],
    );
    f.set_mode(Mode::Fail(502, String::new()));
    let err = load(&s).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Unavailable,
        &["server error (HTTP 502)"],
    );
}

#[tokio::test]
async fn error_malformed_json() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Fail(200, "<html>gateway says hello</html>".into()));
    expect_error(
        &f,
        "my-secret",
        "foo",
        KeyErrorKind::Unreadable,
        &["not valid JSON"],
    )
    .await;
}

#[tokio::test]
async fn error_body_over_the_cap() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Fail(200, " ".repeat(1024 * 1024 + 1)));
    let err = load(&source(&f, "my-secret", "foo").build().unwrap())
        .await
        .unwrap_err();
    check(&err, KeyErrorKind::Unavailable, &["larger than 1024 KiB"]);
}

#[tokio::test]
async fn error_connection_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let s = VaultKeySource::builder()
        .address(format!("http://{addr}"))
        .token(ROOT_TOKEN)
        .mount("secret")
        .path("azerion")
        .field("api_key")
        .build()
        .unwrap();
    let err = load(&s).await.unwrap_err();
    let origin = format!("vault http://{addr} secret/data/azerion (field api_key)");
    check(
        &err,
        KeyErrorKind::Unavailable,
        &[&origin, "cannot connect to", "refused"],
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn error_timeout() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Hang);
    let s = source(&f, "my-secret", "foo")
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = load(&s).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Timeout,
        &[&origin(&f, "my-secret", "foo"), "no answer within 200ms"],
    );
}

#[tokio::test]
async fn error_too_many_redirects() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Redirect(format!(
        "{}/v1/secret/data/my-secret",
        f.url()
    )));
    let err = load(&source(&f, "my-secret", "foo").build().unwrap())
        .await
        .unwrap_err();
    check(&err, KeyErrorKind::Config, &["more than 3 redirects"]);
    assert_eq!(f.seen().len(), 4, "the first request and 3 redirects");
}

#[tokio::test]
async fn error_redirect_to_clear_text_is_not_followed() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Redirect(
        "http://vault.example.com:8200/v1/secret/data/my-secret".into(),
    ));
    let err = load(&source(&f, "my-secret", "foo").build().unwrap())
        .await
        .unwrap_err();
    check(
        &err,
        KeyErrorKind::Config,
        &[
            "not following the redirect",
            "vault.example.com",
            "another origin",
        ],
    );
}

/// Issue 11 item 5: a redirect to another origin (here another port of loopback) carried the
/// token there; now only the same origin is followed unless the node is named.
#[tokio::test]
async fn redirect_to_another_origin_is_not_followed_by_default() {
    let f = VaultFixture::start().await;
    let standby = standby(f.addr).await;
    let s = VaultKeySource::builder()
        .address(format!("http://{standby}"))
        .token(ROOT_TOKEN)
        .mount("secret")
        .path("my-secret")
        .field("foo")
        .build()
        .unwrap();
    let err = load(&s).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Config,
        &["not following the redirect", &f.url(), "another origin"],
    );
    assert!(f.seen().is_empty(), "the other origin got nothing");
}

/// Issue 11 item 5: an https Vault redirecting to http://127.0.0.1 was followed (loopback
/// passes the clear-text rule); https → http is never followed, even to a named node.
#[tokio::test]
async fn https_never_redirects_to_http() {
    let plain = VaultFixture::start().await;
    let f = VaultFixture::start_tls().await;
    f.set_mode(Mode::Redirect(format!(
        "{}/v1/secret/data/my-secret",
        plain.url()
    )));
    let s = source(&f, "my-secret", "foo")
        .ca_cert(test_ca_path())
        .allow_redirects_to([plain.url()])
        .build()
        .unwrap();
    let err = load(&s).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Config,
        &["not following the redirect", "leaves https for clear text"],
    );
    assert!(plain.seen().is_empty(), "no token went out in clear text");
}

#[test]
fn allow_redirects_to_takes_origins_only() {
    let b = || {
        VaultKeySource::builder()
            .address("https://vault.example.com:8200")
            .token(ROOT_TOKEN)
            .mount("secret")
            .path("azerion")
            .field("api_key")
    };
    assert!(b()
        .allow_redirects_to(["https://vault-2.example.com:8200/"])
        .build()
        .is_ok());
    for bad in ["vault-2.example.com", "https://v/v1/x", "ftp://v"] {
        let err = b().allow_redirects_to([bad]).build().unwrap_err();
        check(&err, KeyErrorKind::Config, &["allow_redirects_to", bad]);
    }
}

// ---------------------------------------------------------------- auth methods

fn secret_id_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{}\n", secret_id())).unwrap();
    file
}

fn approle(f: &VaultFixture, file: &tempfile::NamedTempFile) -> VaultKeySourceBuilder {
    VaultKeySource::builder()
        .address(f.url())
        .approle_secret_id_file(role_id(), file.path())
        .mount("secret")
        .path("my-secret")
        .field("foo")
        .timeout(SHORT)
}

#[tokio::test]
async fn approle_logs_in_once_and_reuses_the_token() {
    let f = VaultFixture::start().await;
    let file = secret_id_file();
    let s = approle(&f, &file).build().unwrap();
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    let key = load(&s).await.unwrap();
    assert_eq!(key.refresh_hint(), Some(Duration::from_secs(300)));
    assert_eq!(f.count("/v1/auth/approle/login"), 1);
    assert_eq!(f.count("/v1/auth/token/renew-self"), 0);
    let seen = f.seen();
    let login: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let sample: Value = serde_json::from_str(APPROLE_LOGIN_REQUEST).unwrap();
    assert_eq!(login, sample);
    assert_eq!(seen[0].vault_request.as_deref(), Some("true"));
    assert!(seen[0].token.is_none());
    for read in &seen[1..] {
        assert_eq!(read.token.as_deref(), Some(approle_token().as_str()));
    }
}

#[tokio::test]
async fn approle_secret_id_from_env() {
    let _env = support::env_lock().await;
    let f = VaultFixture::start().await;
    std::env::set_var("TOWER_BEARER_TEST_SECRET_ID", secret_id());
    let builder = VaultKeySource::builder()
        .address(f.url())
        .approle_secret_id_env(role_id(), "TOWER_BEARER_TEST_SECRET_ID")
        .mount("secret")
        .path("my-secret")
        .field("foo");
    let result = load(&builder.clone().build().unwrap()).await;
    std::env::remove_var("TOWER_BEARER_TEST_SECRET_ID");
    assert_eq!(result.unwrap().expose_secret(), "bar");
    // Read at each login: a new source must log in, and finds the variable gone.
    let err = load(&builder.build().unwrap()).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Missing,
        &[
            "environment variable TOWER_BEARER_TEST_SECRET_ID",
            "is not set",
        ],
    );
}

#[tokio::test]
async fn approle_refused_login() {
    let f = VaultFixture::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "00000000-wrong-secret-id").unwrap();
    let err = load(&approle(&f, &file).build().unwrap())
        .await
        .unwrap_err();
    check(
        &err,
        KeyErrorKind::Denied,
        &[
            &origin(&f, "my-secret", "foo"),
            "AppRole login at auth/approle/login",
            "invalid role or secret ID",
            "HTTP 400",
        ],
    );
    assert!(!err.to_string().contains("wrong-secret-id"));
}

/// Issue 19 Low 8: a margin wider than the lease renewed at every load and hinted 5 s; it
/// is now capped at half the lease.
#[tokio::test]
async fn a_wide_renew_margin_is_capped_at_half_the_lease() {
    let f = VaultFixture::start().await;
    let file = secret_id_file();
    let s = approle(&f, &file)
        .renew_token_within(Duration::from_secs(86_400))
        .refresh_after(Duration::from_secs(3600))
        .build()
        .unwrap();
    let first = load(&s).await.unwrap();
    let hint = first.refresh_hint().unwrap();
    assert!(
        hint > Duration::from_secs(590) && hint <= Duration::from_secs(600),
        "read again by the renewal point, half of the 1200 s lease: {hint:?}"
    );
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/approle/login"), 1);
    assert_eq!(f.count("/v1/auth/token/renew-self"), 0, "not at every load");
}

/// Waits until `d` has passed since `since`: a lease has to age on the real clock (the
/// fixture runs on real sockets, which paused time cannot drive).
async fn until(since: tokio::time::Instant, d: Duration) {
    tokio::time::sleep_until(since + d).await;
}

#[tokio::test]
async fn approle_renews_the_token_before_its_lease_runs_out() {
    let f = VaultFixture::start().await;
    f.set_login_lease(2);
    let file = secret_id_file();
    let s = approle(&f, &file)
        .renew_token_within(Duration::from_secs(60)) // capped at half: 1 s
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/token/renew-self"), 0);
    until(t0, Duration::from_millis(1050)).await;
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/approle/login"), 1);
    assert_eq!(f.count("/v1/auth/token/renew-self"), 1);
    let renew = f
        .seen()
        .into_iter()
        .find(|r| r.path == "/v1/auth/token/renew-self")
        .unwrap();
    assert_eq!(renew.token.as_deref(), Some(approle_token().as_str()));
    let body: Value = serde_json::from_slice(&renew.body).unwrap();
    assert_eq!(body, serde_json::json!({"increment": "2s"}));
    let last = f.seen().pop().unwrap();
    assert_eq!(last.path, "/v1/secret/data/my-secret");
    assert_eq!(last.token.as_deref(), Some(approle_token().as_str()));
}

/// Nit of issue 19: a renewal answered with a zero lease made the token look immortal (never
/// renewed nor replaced again); it now logs in again.
#[tokio::test]
async fn a_renewal_with_no_lease_logs_in_again() {
    let f = VaultFixture::start().await;
    f.set_login_lease(2);
    f.set_renew_answer(&RENEW_SELF.replace("3600", "0"));
    let file = secret_id_file();
    let s = approle(&f, &file)
        .renew_token_within(Duration::from_secs(60))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    load(&s).await.unwrap();
    until(t0, Duration::from_millis(1050)).await;
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/token/renew-self"), 1);
    assert_eq!(f.count("/v1/auth/approle/login"), 2, "logged in again");
}

#[tokio::test]
async fn logs_in_again_when_vault_refuses_the_token() {
    let f = VaultFixture::start().await;
    let file = secret_id_file();
    let s = approle(&f, &file).build().unwrap();
    load(&s).await.unwrap();
    f.revoke(&approle_token());
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    assert_eq!(f.count("/v1/auth/approle/login"), 2);
    let paths: Vec<String> = f.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v1/auth/approle/login",
            "/v1/secret/data/my-secret",
            "/v1/secret/data/my-secret",  // 403
            "/v1/auth/token/lookup-self", // 403 too: the token is gone
            "/v1/auth/approle/login",
            "/v1/secret/data/my-secret",
        ]
    );
}

// ---------------------------------------------------------------- login discipline (issue 19)

/// Issue 19 High 1: a read denied by policy logged in again at every load (one login, one
/// token, one secret_id use each). Now `lookup-self` shows the token is fine: no login.
#[tokio::test]
async fn a_policy_denied_read_does_not_log_in_again() {
    let f = VaultFixture::start().await;
    let file = secret_id_file();
    let s = approle(&f, &file).build().unwrap();
    load(&s).await.unwrap();
    f.set_mode(Mode::Fail(403, DENIED.into()));
    for _ in 0..5 {
        let err = load(&s).await.unwrap_err();
        check(
            &err,
            KeyErrorKind::Denied,
            &["permission denied", "HTTP 403", "the token itself is valid"],
        );
    }
    assert_eq!(
        f.count("/v1/auth/approle/login"),
        1,
        "5 denied loads: no login"
    );
    assert_eq!(f.count("/v1/auth/token/lookup-self"), 5);
    f.set_mode(Mode::Normal);
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    assert_eq!(
        f.count("/v1/auth/approle/login"),
        1,
        "the same token reads on"
    );
}

/// Issue 19 High 1: logins forced by a refused token are rate-limited: a second refusal
/// within the interval does not log in again.
#[tokio::test]
async fn forced_logins_are_rate_limited() {
    let f = VaultFixture::start().await;
    let file = secret_id_file();
    let s = approle(&f, &file).build().unwrap();
    load(&s).await.unwrap();
    f.revoke(&approle_token());
    load(&s).await.unwrap(); // the first forced login is free
    assert_eq!(f.count("/v1/auth/approle/login"), 2);
    f.revoke(&approle_token());
    for _ in 0..3 {
        let err = load(&s).await.unwrap_err();
        check(
            &err,
            KeyErrorKind::Denied,
            &["permission denied", "lookup-self", "the next login waits"],
        );
    }
    assert_eq!(f.count("/v1/auth/approle/login"), 2, "no login storm");
}

/// Issue 19 High 2: a refused secret_id was sent again at every load until Vault locked the
/// role out. Now it is not sent again until the file changes.
#[tokio::test]
async fn a_refused_secret_id_is_not_sent_again_until_it_changes() {
    let f = VaultFixture::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "00000000-stale-secret-id").unwrap();
    let s = approle(&f, &file).build().unwrap();
    let path = file.path().display().to_string();
    let err = load(&s).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Denied,
        &[
            "invalid role or secret ID",
            "not sent again until the file",
            &path,
        ],
    );
    for _ in 0..3 {
        let err = load(&s).await.unwrap_err();
        check(
            &err,
            KeyErrorKind::Denied,
            &[
                "not logging in",
                "refused the same secret_id",
                &path,
                "invalid role or secret ID",
            ],
        );
        assert!(!err.to_string().contains("stale-secret-id"));
    }
    assert_eq!(f.count("/v1/auth/approle/login"), 1, "sent once");
    // A new secret_id in the file is tried at once.
    std::fs::write(file.path(), secret_id()).unwrap();
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    assert_eq!(f.count("/v1/auth/approle/login"), 2);
}

/// Issue 19 High 2, from a variable: a refused secret_id is tried again once the variable
/// holds another one.
#[tokio::test]
async fn a_refused_secret_id_from_a_variable_waits_for_a_new_value() {
    let _env = support::env_lock().await;
    const VAR: &str = "TOWER_BEARER_TEST_STALE_SECRET_ID";
    let f = VaultFixture::start().await;
    let _set = EnvGuard::new(&[(VAR, Some("00000000-stale-env-secret-id"))]);
    let s = VaultKeySource::builder()
        .address(f.url())
        .approle_secret_id_env(role_id(), VAR)
        .mount("secret")
        .path("my-secret")
        .field("foo")
        .build()
        .unwrap();
    for _ in 0..3 {
        let err = load(&s).await.unwrap_err();
        check(
            &err,
            KeyErrorKind::Denied,
            &[&format!("environment variable {VAR}")],
        );
        assert!(!err.to_string().contains("stale-env-secret-id"));
    }
    assert_eq!(f.count("/v1/auth/approle/login"), 1);
    let _fixed = EnvGuard::new(&[(VAR, Some(&secret_id()))]);
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    assert_eq!(f.count("/v1/auth/approle/login"), 2);
}

/// Issue 19 Low 13: read 403 → lookup-self → login → read were each allowed the whole
/// timeout; they now share one deadline.
#[tokio::test]
async fn one_deadline_bounds_the_whole_load() {
    let f = VaultFixture::start().await;
    let file = secret_id_file();
    let s = approle(&f, &file)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    load(&s).await.unwrap();
    f.revoke(&approle_token());
    f.set_delay(Duration::from_millis(200)); // each request fits the timeout; four do not
    let started = std::time::Instant::now();
    let err = load(&s).await.unwrap_err();
    check(&err, KeyErrorKind::Timeout, &["no answer within 500ms"]);
    // Ends at the deadline (500 ms), not after four requests (800 ms); slack for a busy CI.
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
}

/// Issue 19 Low 13: a load cut short after its login keeps the token for the next load.
#[tokio::test]
async fn a_load_cancelled_after_its_login_keeps_the_token() {
    let f = VaultFixture::start().await;
    f.set_mode(Mode::Hang);
    let file = secret_id_file();
    let s = approle(&f, &file).build().unwrap();
    let cut = tokio::time::timeout(Duration::from_millis(300), load(&s)).await;
    assert!(cut.is_err(), "cancelled while the read hangs");
    assert_eq!(f.count("/v1/auth/approle/login"), 1);
    f.set_mode(Mode::Normal);
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/approle/login"), 1, "the token was kept");
}

// ---------------------------------------------------------------- hints from the network

/// Issue 19 Medium 3: a KV v1 read carries the mount's default lease (32 days) when the
/// secret sets no `ttl`; that is no refresh hint.
#[tokio::test]
async fn kv1_without_ttl_refreshes_within_the_default() {
    let f = VaultFixture::start().await;
    f.put_kv1_body(
        "plain",
        r#"{"data":{"foo":"bar"},"lease_duration":2764800,"lease_id":"","renewable":false}"#,
    );
    let s = source(&f, "plain", "foo")
        .mount("kv")
        .kv_version(1)
        .build()
        .unwrap();
    let key = load(&s).await.unwrap();
    assert_eq!(key.refresh_hint(), Some(Duration::from_secs(300)));
}

/// Issue 11 item 3 / the brief's item 5: `lease_duration: u64::MAX` is valid JSON; the hint is
/// clamped (to a year), and a request through the layer neither panics nor fails.
#[tokio::test]
async fn a_huge_kv1_lease_is_clamped() {
    let f = VaultFixture::start().await;
    f.put_kv1_body(
        "huge",
        r#"{"data":{"foo":"sk-huge-lease-0001","ttl":"1h"},"lease_duration":18446744073709551615}"#,
    );
    let s = source(&f, "huge", "foo")
        .mount("kv")
        .kv_version(1)
        .build()
        .unwrap();
    let hint = load(&s).await.unwrap().refresh_hint().unwrap();
    assert!(hint <= Duration::from_secs(366 * 86_400), "{hint:?}");

    let api = api("sk-huge-lease-0001").await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(s))
        .service(support::client::<Full<Bytes>>());
    let request = Request::get(format!("http://{}/v1/models", api.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A login lease of `u64::MAX` seconds: no overflow, the key's hint stays the default.
#[tokio::test]
async fn a_huge_login_lease_is_clamped() {
    let f = VaultFixture::start().await;
    f.set_login_lease(u64::MAX);
    let file = secret_id_file();
    let s = approle(&f, &file)
        .renew_token_within(Duration::MAX)
        .build()
        .unwrap();
    let key = load(&s).await.unwrap();
    assert!(key.refresh_hint().unwrap() <= Duration::from_secs(300));
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/approle/login"), 1);
}

/// Nit of issue 19: `.namespace("")` left ", namespace " in the origin; empty is none.
#[tokio::test]
async fn an_empty_namespace_is_none() {
    let f = VaultFixture::start().await;
    let s = source(&f, "my-secret", "foo")
        .namespace(" ")
        .build()
        .unwrap();
    assert_eq!(s.origin(), origin(&f, "my-secret", "foo"));
    load(&s).await.unwrap();
    assert_eq!(f.seen()[0].namespace, None);
}

/// Issue 19 High 1: a replaced token was abandoned, alive. It is now revoked (`revoke-self`,
/// in the background, best effort) once the new login succeeds.
#[tokio::test]
async fn a_replaced_token_is_revoked() {
    let f = VaultFixture::start().await;
    f.set_unique_tokens();
    f.set_login_lease(2);
    f.set_renew_answer(&RENEW_SELF.replace("3600", "0")); // forces a new login
    let file = secret_id_file();
    let s = approle(&f, &file)
        .renew_token_within(Duration::from_secs(60))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    load(&s).await.unwrap();
    let first = format!("{}-1", approle_token());
    until(t0, Duration::from_millis(1050)).await;
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/approle/login"), 2);
    // The revocation runs in the background: poll for it, bounded.
    for _ in 0..200 {
        if !f.accepts(&first) {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await; // poll interval, bounded above
    }
    assert!(!f.accepts(&first), "the replaced token is revoked");
    let revoke = f
        .seen()
        .into_iter()
        .find(|r| r.path == "/v1/auth/token/revoke-self")
        .expect("revoke-self was called");
    assert_eq!(revoke.token.as_deref(), Some(first.as_str()));
    assert!(
        f.accepts(&format!("{}-2", approle_token())),
        "the new one lives"
    );
    load(&s).await.unwrap();
}

#[tokio::test]
async fn renewal_refused_logs_in_again() {
    let f = VaultFixture::start().await;
    f.set_login_lease(2);
    let file = secret_id_file();
    let s = approle(&f, &file)
        .renew_token_within(Duration::from_secs(60))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    load(&s).await.unwrap();
    f.revoke(&approle_token());
    until(t0, Duration::from_millis(1050)).await;
    load(&s).await.unwrap();
    assert_eq!(f.count("/v1/auth/token/renew-self"), 1);
    assert_eq!(f.count("/v1/auth/approle/login"), 2);
}

#[tokio::test]
async fn kubernetes_login_with_the_service_account_token() {
    let f = VaultFixture::start().await;
    let jwt_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwt_file.path(), jwt()).unwrap();
    let s = VaultKeySource::builder()
        .address(f.url())
        .kubernetes("dev-role")
        .kubernetes_jwt_file(jwt_file.path())
        .mount("secret")
        .path("my-secret")
        .field("foo")
        .build()
        .unwrap();
    assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
    let seen = f.seen();
    assert_eq!(seen[0].path, "/v1/auth/kubernetes/login");
    let login: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        login,
        serde_json::from_str::<Value>(KUBERNETES_LOGIN_REQUEST).unwrap()
    );
    assert_eq!(seen[1].token.as_deref(), Some(kubernetes_token().as_str()));
}

#[tokio::test]
async fn kubernetes_login_errors() {
    let f = VaultFixture::start().await;
    let jwt_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwt_file.path(), jwt()).unwrap();
    let base = VaultKeySource::builder()
        .address(f.url())
        .mount("secret")
        .path("my-secret")
        .field("foo")
        .kubernetes_jwt_file(jwt_file.path());
    let err = load(&base.clone().kubernetes("other-role").build().unwrap())
        .await
        .unwrap_err();
    check(
        &err,
        KeyErrorKind::Denied,
        &[
            "Kubernetes login at auth/kubernetes/login",
            "permission denied",
        ],
    );

    let missing = base
        .clone()
        .kubernetes("dev-role")
        .kubernetes_jwt_file("/nonexistent/serviceaccount/token")
        .build()
        .unwrap();
    let err = load(&missing).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Missing,
        &["service-account token", "/nonexistent/serviceaccount/token"],
    );

    let elsewhere = base
        .kubernetes("dev-role")
        .auth_mount("k8s-eu")
        .build()
        .unwrap();
    let err = load(&elsewhere).await.unwrap_err();
    check(
        &err,
        KeyErrorKind::Other,
        &["auth/k8s-eu/login", "HTTP 405"],
    );
    assert_eq!(f.count("/v1/auth/k8s-eu/login"), 1);
}

// ---------------------------------------------------------------- configuration

#[test]
fn build_rejects_bad_configuration() {
    let ok = || {
        VaultKeySource::builder()
            .address("https://vault.example.com:8200")
            .token(ROOT_TOKEN)
            .mount("secret")
            .path("azerion")
            .field("api_key")
    };
    let cases: Vec<(VaultKeySourceBuilder, &str)> = vec![
        (ok().address("http://vault.example.com:8200"), "clear text"),
        (ok().address(""), "no address"),
        (ok().address("vault.example.com"), "scheme://host"),
        (ok().mount("/"), "no mount"),
        (ok().path(""), "no path"),
        (ok().field(""), "no field"),
        (ok().kv_version(3), "kv_version(3)"),
        (ok().timeout(Duration::ZERO), "timeout"),
        (ok().token(""), "token is empty"),
        (
            ok().token("hvs.abc\r\nX-Evil: 1"),
            "not a valid header value",
        ),
        (ok().namespace("ns1/\u{1}x"), "namespace"),
        (ok().ca_cert("/nonexistent/ca.pem"), "/nonexistent/ca.pem"),
        (
            VaultKeySource::builder()
                .address("https://v:8200")
                .mount("m")
                .path("p")
                .field("f"),
            "no Vault token",
        ),
    ];
    for (builder, needle) in cases {
        let err = builder.build().unwrap_err();
        check(&err, KeyErrorKind::Config, &[needle]);
    }
    assert!(ok().build().is_ok());
    assert!(ok()
        .address("http://vault.example.com:8200")
        .allow_insecure_http(true)
        .build()
        .is_ok());
    assert!(ok().address("http://localhost:8200/").build().is_ok());
}

#[test]
fn ca_cert_without_certificates_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "not a certificate\n").unwrap();
    let err = VaultKeySource::builder()
        .address("https://vault.example.com:8200")
        .token(ROOT_TOKEN)
        .mount("secret")
        .path("azerion")
        .field("api_key")
        .ca_cert(file.path())
        .build()
        .unwrap_err();
    check(&err, KeyErrorKind::Config, &["holds no PEM certificate"]);
}

#[test]
fn debug_never_shows_tokens_or_credentials() {
    let builder = VaultKeySource::builder()
        .address("https://vault.example.com:8200")
        .approle_secret_id_env(role_id(), "SECRET_ID_VAR")
        .mount("secret")
        .path("azerion")
        .field("api_key");
    let with_token = builder.clone().token(ROOT_TOKEN);
    for text in [
        format!("{builder:?}"),
        format!("{:?}", builder.build().unwrap()),
        format!("{with_token:?}"),
        format!("{:#?}", with_token.build().unwrap()),
    ] {
        for secret in secrets() {
            assert!(!text.contains(&secret), "{text}");
        }
        assert!(text.contains("api_key"), "{text}");
    }
}

// ---------------------------------------------------------------- from_env

/// Sets and unsets variables, restoring them on drop.
struct EnvGuard(Vec<(&'static str, Option<std::ffi::OsString>)>);

impl EnvGuard {
    fn new(vars: &[(&'static str, Option<&str>)]) -> EnvGuard {
        let mut saved = Vec::new();
        for (name, value) in vars {
            saved.push((*name, std::env::var_os(name)));
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
        EnvGuard(saved)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (name, value) in self.0.drain(..) {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
}

#[tokio::test]
async fn from_env_follows_the_vault_cli() {
    let _lock = support::env_lock().await;
    let f = VaultFixture::start().await;
    f.require_namespace("ns1/");
    let home = tempfile::tempdir().unwrap();
    let url = f.url();
    let home_path = home.path().to_str().unwrap().to_owned();

    // VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE.
    {
        let _env = EnvGuard::new(&[
            ("VAULT_ADDR", Some(&url)),
            ("VAULT_TOKEN", Some(ROOT_TOKEN)),
            ("VAULT_NAMESPACE", Some("ns1/")),
            ("VAULT_CACERT", None),
            ("HOME", Some(&home_path)),
        ]);
        let s = VaultKeySource::from_env("secret", "my-secret", "foo").unwrap();
        assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
        let last = f.seen().pop().unwrap();
        assert_eq!(last.token.as_deref(), Some(ROOT_TOKEN));
        assert_eq!(last.namespace.as_deref(), Some("ns1/"));
    }

    // No VAULT_TOKEN: the token helper's file, ~/.vault-token.
    {
        std::fs::write(home.path().join(".vault-token"), format!("{ROOT_TOKEN}\n")).unwrap();
        let _env = EnvGuard::new(&[
            ("VAULT_ADDR", Some(&url)),
            ("VAULT_TOKEN", None),
            ("VAULT_NAMESPACE", Some("ns1/")),
            ("VAULT_CACERT", None),
            ("HOME", Some(&home_path)),
        ]);
        let s = VaultKeySource::from_env("secret", "my-secret", "foo").unwrap();
        assert_eq!(load(&s).await.unwrap().expose_secret(), "bar");
        assert_eq!(f.seen().pop().unwrap().token.as_deref(), Some(ROOT_TOKEN));
        std::fs::remove_file(home.path().join(".vault-token")).unwrap();

        // Neither: Missing, naming both places.
        let err = VaultKeySource::from_env("secret", "my-secret", "foo").unwrap_err();
        check(
            &err,
            KeyErrorKind::Missing,
            &["VAULT_TOKEN is not set", ".vault-token"],
        );
    }

    // No VAULT_ADDR: the CLI's default address. VAULT_CACERT is read at build.
    {
        let _env = EnvGuard::new(&[
            ("VAULT_ADDR", None),
            ("VAULT_TOKEN", Some(ROOT_TOKEN)),
            ("VAULT_NAMESPACE", None),
            ("VAULT_CACERT", None),
        ]);
        let s = VaultKeySource::from_env("secret", "azerion", "api_key").unwrap();
        assert_eq!(
            s.origin(),
            "vault https://127.0.0.1:8200 secret/data/azerion (field api_key)"
        );
        let _ca = EnvGuard::new(&[("VAULT_CACERT", Some("/nonexistent/vault-ca.pem"))]);
        let err = VaultKeySource::from_env("secret", "azerion", "api_key").unwrap_err();
        check(&err, KeyErrorKind::Config, &["/nonexistent/vault-ca.pem"]);
    }
}

/// Issue 19 Low 12: the CLI's TLS variables this source cannot honour were ignored silently
/// (`VAULT_SKIP_VERIFY=true` still verified, `VAULT_CLIENT_CERT` was not presented…).
#[tokio::test]
async fn from_env_refuses_the_tls_variables_it_does_not_support() {
    let _lock = support::env_lock().await;
    let base = [
        ("VAULT_ADDR", Some("https://vault.example.com:8200")),
        ("VAULT_TOKEN", Some(ROOT_TOKEN)),
        ("VAULT_CACERT", None),
        ("VAULT_CAPATH", None),
        ("VAULT_SKIP_VERIFY", None),
        ("VAULT_TLS_SERVER_NAME", None),
        ("VAULT_CLIENT_CERT", None),
        ("VAULT_CLIENT_KEY", None),
    ];
    let _env = EnvGuard::new(&base);
    assert!(VaultKeySource::from_env("secret", "azerion", "api_key").is_ok());
    for (name, value) in [
        ("VAULT_CAPATH", "/etc/vault/cas"),
        ("VAULT_SKIP_VERIFY", "true"),
        ("VAULT_TLS_SERVER_NAME", "vault.internal"),
        ("VAULT_CLIENT_CERT", "/etc/vault/client.pem"),
        ("VAULT_CLIENT_KEY", "/etc/vault/client.key"),
    ] {
        let _one = EnvGuard::new(&[(name, Some(value))]);
        let err = VaultKeySource::from_env("secret", "azerion", "api_key").unwrap_err();
        check(&err, KeyErrorKind::Config, &[name, "does not support"]);
    }
    let _off = EnvGuard::new(&[("VAULT_SKIP_VERIFY", Some("false"))]);
    assert!(VaultKeySource::from_env("secret", "azerion", "api_key").is_ok());
}

// ---------------------------------------------------------------- rotation end to end

/// The key each request to the API carried, and the status it got.
type ApiLog = Arc<Mutex<Vec<(Option<String>, u16)>>>;

/// An "API" on loopback that accepts only its current key.
struct Api {
    addr: std::net::SocketAddr,
    key: Arc<Mutex<String>>,
    seen: ApiLog,
}

async fn api(key: &str) -> Api {
    let current = Arc::new(Mutex::new(key.to_owned()));
    let seen = ApiLog::default();
    let (k, s) = (current.clone(), seen.clone());
    let addr = support::serve(move |req| {
        let (k, s) = (k.clone(), s.clone());
        async move {
            let sent = support::bearer(&req);
            let ok = sent.as_deref() == Some(k.lock().unwrap().as_str());
            let status = if ok { 200 } else { 401 };
            s.lock().unwrap().push((sent, status));
            support::respond(
                status,
                if ok {
                    "{\"data\":[]}"
                } else {
                    "{\"error\":\"invalid api key\"}"
                },
            )
        }
    })
    .await;
    Api {
        addr,
        key: current,
        seen,
    }
}

#[tokio::test]
async fn rotation_heals_through_one_401() {
    const OLD: &str = "sk-live-old-key-000000000000001";
    const NEW: &str = "sk-live-new-key-000000000000002";
    let f = VaultFixture::start().await;
    f.put_kv2("azerion", "api_key", OLD);
    let api = api(OLD).await;

    let events = Arc::new(Mutex::new(Vec::new()));
    let recorded = events.clone();
    let layer = BearerAuthLayer::new(source(&f, "azerion", "api_key").build().unwrap())
        .on_rotate(move |e| recorded.lock().unwrap().push(e.clone()));
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Full<Bytes>>());
    let request = || {
        Request::get(format!("http://{}/v1/models", api.addr))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let response = client.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The secret is rotated in Vault and the API revokes the old key.
    f.put_kv2("azerion", "api_key", NEW);
    *api.key.lock().unwrap() = NEW.to_owned();

    let response = client.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "healed through one 401");

    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (Some(OLD.to_owned()), 200),
            (Some(OLD.to_owned()), 401),
            (Some(NEW.to_owned()), 200),
        ]
    );
    let events = events.lock().unwrap().clone();
    let reasons: Vec<RotationReason> = events.iter().map(|e| e.reason()).collect();
    assert_eq!(reasons, [RotationReason::Initial, RotationReason::Rejected]);
    assert_eq!(events[1].old_fingerprint(), Some("sk-…0001"));
    assert_eq!(events[1].new_fingerprint(), "sk-…0002");
    assert_eq!(f.count("/v1/secret/data/azerion"), 2, "one read per key");
}
