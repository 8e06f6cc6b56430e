//! Helpers of the real-server tests: secrets must never show, and an AppRole setup.

use std::time::Duration;

use http::Method;
use serde_json::json;
use tower_bearer::{KeyError, VaultKeySource, VaultKeySourceBuilder};

use crate::openbao::{unique, OpenBao};

/// A load's whole budget in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Asserts that no message or `Debug` form of `err` holds any of `secrets`.
#[track_caller]
pub fn no_secret(err: &KeyError, secrets: &[&str]) {
    let (msg, debug) = (err.to_string(), format!("{err:?}"));
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!msg.contains(secret), "{msg:?} leaks a secret");
        assert!(!debug.contains(secret), "{debug:?} leaks a secret");
    }
}

/// A KV v1 mount with one secret `app` holding `api_key`, a policy `read-{mount}` allowing
/// read on `{mount}/{readable}` only, and an AppRole role with that policy. Returns the
/// mount, the role and its role_id.
pub async fn approle_setup(
    bao: &OpenBao,
    readable: &str,
    role_options: serde_json::Value,
) -> Setup {
    let mount = unique("kv1");
    bao.mount_kv(&mount, 1).await;
    bao.ok(
        Method::POST,
        &format!("{mount}/app"),
        Some(json!({ "api_key": "sk-openbao-app-key-0001" })),
    )
    .await;
    let policy = format!("read-{mount}");
    bao.policy(
        &policy,
        &format!(r#"path "{mount}/{readable}" {{ capabilities = ["read"] }}"#),
    )
    .await;
    let role = unique("role");
    let mut options = json!({ "token_policies": policy, "token_ttl": "1h" });
    options
        .as_object_mut()
        .unwrap()
        .extend(role_options.as_object().unwrap().clone());
    let role_id = bao.role(&role, options).await;
    Setup {
        mount,
        policy,
        role,
        role_id,
    }
}

pub struct Setup {
    pub mount: String,
    pub policy: String,
    pub role: String,
    pub role_id: String,
}

pub fn secret_file(secret_id: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), secret_id).unwrap();
    file
}

pub fn approle_source(
    bao: &OpenBao,
    s: &Setup,
    file: &tempfile::NamedTempFile,
    path: &str,
) -> VaultKeySourceBuilder {
    VaultKeySource::builder()
        .address(bao.url())
        .approle_secret_id_file(&s.role_id, file.path())
        .mount(&s.mount)
        .kv_version(1)
        .path(path)
        .field("api_key")
        .timeout(TIMEOUT)
}
