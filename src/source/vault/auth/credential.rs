//! Login credentials: read from their file or variable at each login into buffers that are
//! zeroed when dropped, turned into a login body that is zeroed when hyper is done with it,
//! and remembered (after a refusal) only as a keyed digest.

use std::path::PathBuf;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::source::secret_file::read_capped;
use crate::{KeyError, KeyErrorKind};

/// Credentials files bigger than this are the wrong file (a JWT is a few KiB).
const CREDENTIAL_CAP: usize = 64 * 1024;

/// Where a login credential is read from, at each login.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    File(PathBuf),
    Env(String),
}

impl Credential {
    /// `file /path` or `environment variable NAME`: for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Credential::File(path) => format!("file {}", path.display()),
            Credential::Env(var) => format!("environment variable {var}"),
        }
    }

    /// The credential, trimmed. Every intermediate buffer is zeroed when dropped.
    pub(crate) async fn read(&self, what: &str) -> Result<SecretString, KeyError> {
        let fail = |kind, cause: String| {
            KeyError::new(kind, format!("{what} from {}: {cause}", self.describe()))
        };
        let bytes: Zeroizing<Vec<u8>> = match self {
            Credential::Env(var) => match std::env::var(var) {
                Ok(v) => Zeroizing::new(v.into_bytes()),
                Err(std::env::VarError::NotPresent) => {
                    return Err(fail(KeyErrorKind::Missing, "is not set".into()))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(fail(
                        KeyErrorKind::Unreadable,
                        "is not valid Unicode".into(),
                    ))
                }
            },
            Credential::File(path) => {
                let path = path.clone();
                match tokio::task::spawn_blocking(move || read_capped(&path, CREDENTIAL_CAP)).await
                {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(e)) => {
                        let kind = match e.kind() {
                            std::io::ErrorKind::NotFound => KeyErrorKind::Missing,
                            _ => KeyErrorKind::Unreadable,
                        };
                        return Err(fail(kind, e.to_string()));
                    }
                    Err(join) => return Err(fail(KeyErrorKind::Other, join.to_string())),
                }
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(fail(KeyErrorKind::Unreadable, "is not valid UTF-8".into()));
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail(KeyErrorKind::Missing, "is empty".into()));
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }
}

#[derive(Serialize)]
struct AppRoleLogin<'a> {
    role_id: &'a str,
    secret_id: &'a str,
}

#[derive(Serialize)]
struct KubernetesLogin<'a> {
    role: &'a str,
    jwt: &'a str,
}

/// The AppRole login body, in a buffer zeroed once the last copy of the `Bytes` is dropped.
pub(crate) fn approle_body(role_id: &SecretString, secret_id: &SecretString) -> Bytes {
    let (role_id, secret_id) = (role_id.expose_secret(), secret_id.expose_secret());
    json_body(
        &AppRoleLogin { role_id, secret_id },
        role_id.len() + secret_id.len(),
    )
}

/// The Kubernetes login body, zeroed like [`approle_body`].
pub(crate) fn kubernetes_body(role: &str, jwt: &SecretString) -> Bytes {
    let jwt = jwt.expose_secret();
    json_body(&KubernetesLogin { role, jwt }, role.len() + jwt.len())
}

fn json_body(value: &impl Serialize, text_len: usize) -> Bytes {
    // JSON escaping makes a character at most 6 bytes (`\u001f`): reserve for the worst case so
    // the buffer never grows (a reallocation would free a copy without zeroing it).
    let mut buf = Zeroizing::new(Vec::with_capacity(text_len.saturating_mul(6) + 64));
    serde_json::to_writer(&mut *buf, value).expect("serialising strings cannot fail");
    Bytes::from_owner(buf)
}

/// A keyed digest of credentials (HMAC-SHA-256 under a key made per source): enough to tell
/// "the same credential as the one Vault refused" without keeping the credential.
pub(crate) struct Digester(ring::hmac::Key);

impl Digester {
    pub(crate) fn new() -> Digester {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            let seed: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed)
        });
        Digester(key)
    }

    /// The digest of `parts`, each length-prefixed so that no two lists collide.
    pub(crate) fn digest(&self, parts: &[&str]) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_bodies_are_json() {
        let body = approle_body(
            &SecretString::from("r\"1".to_owned()),
            &SecretString::from("s\u{1}".to_owned()),
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"role_id": "r\"1", "secret_id": "s\u{1}"})
        );
        let body = kubernetes_body("dev", &SecretString::from("eyJ".to_owned()));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"role": "dev", "jwt": "eyJ"}));
    }

    #[test]
    fn digests_tell_credentials_apart() {
        let d = Digester::new();
        assert_eq!(d.digest(&["a", "b"]), d.digest(&["a", "b"]));
        assert_ne!(d.digest(&["a", "b"]), d.digest(&["a", "c"]));
        assert_ne!(d.digest(&["ab", ""]), d.digest(&["a", "b"]));
        assert_ne!(
            Digester::new().digest(&["a"]),
            d.digest(&["a"]),
            "keyed per source"
        );
    }
}
