//! The Vault token: a static one, or one had by logging in (AppRole, Kubernetes), renewed with
//! `renew-self` before its lease runs out and had again by logging in on 403 or expiry.
//!
//! The token lives in a [`SecretString`] and goes out only as a sensitive `X-Vault-Token`
//! header. Login credentials (the AppRole secret_id, the service-account JWT) are read from
//! their file or variable at each login, so rotated credentials are picked up.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Uri};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::error::{auth_body_error, status_error, transport_error, Step};
use super::response::parse_auth_response;
use super::transport::Endpoint;
use crate::{KeyError, KeyErrorKind};

/// Where Kubernetes puts a pod's service-account token.
pub(crate) const DEFAULT_KUBERNETES_JWT_PATH: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Credentials files bigger than this are the wrong file (a JWT is a few KiB).
const CREDENTIAL_CAP: u64 = 64 * 1024;

/// How the source gets its Vault token.
pub(crate) enum AuthMethod {
    /// A token given as it is (`.token(..)`, `VAULT_TOKEN`, `~/.vault-token`): never renewed.
    Token(SecretString),
    /// `POST auth/{mount}/login` with `role_id` and `secret_id`.
    AppRole {
        role_id: SecretString,
        secret_id: Credential,
    },
    /// `POST auth/{mount}/login` with `role` and the service-account `jwt`.
    Kubernetes { role: String, jwt: Credential },
}

/// Where a login credential is read from, at each login.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    File(PathBuf),
    Env(String),
}

impl Credential {
    fn describe(&self) -> String {
        match self {
            Credential::File(path) => format!("file {}", path.display()),
            Credential::Env(var) => format!("environment variable {var}"),
        }
    }

    async fn read(&self, what: &str) -> Result<SecretString, KeyError> {
        let fail = |kind, cause: String| {
            KeyError::new(kind, format!("{what} from {}: {cause}", self.describe()))
        };
        let text = match self {
            Credential::Env(var) => match std::env::var(var) {
                Ok(v) => v,
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
                let read = tokio::task::spawn_blocking(move || {
                    let mut text = String::new();
                    std::fs::File::open(&path)?
                        .take(CREDENTIAL_CAP + 1)
                        .read_to_string(&mut text)?;
                    if text.len() as u64 > CREDENTIAL_CAP {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("is larger than {} KiB", CREDENTIAL_CAP / 1024),
                        ));
                    }
                    Ok::<_, std::io::Error>(text)
                })
                .await;
                match read {
                    Ok(Ok(text)) => text,
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
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail(KeyErrorKind::Missing, "is empty".into()));
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }
}

/// The token to send, and what the source may do with it.
pub(crate) struct Token {
    pub(crate) secret: SecretString,
    /// Had from a login during this load: a 403 to it will not be cured by logging in again.
    pub(crate) fresh: bool,
    /// A login method is configured: a 403 may be cured by logging in again.
    pub(crate) can_relogin: bool,
    /// How long until the token should be renewed (or re-had): keys are refreshed by then.
    pub(crate) renew_in: Option<Duration>,
}

/// A token from a login, with its lease.
struct Held {
    token: SecretString,
    obtained: Instant,
    /// Zero: the token never expires.
    lease: Duration,
    /// The lease the login granted, asked for again at each renewal.
    granted: Duration,
    renewable: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    Use,
    Renew,
    Login,
}

impl Held {
    fn left(&self, now: Instant) -> Duration {
        self.lease
            .saturating_sub(now.saturating_duration_since(self.obtained))
    }

    /// What to do with this token at `now`: use it; renew it once less than `renew_within`
    /// (default a third of the lease) is left; log in again when it is not renewable or about
    /// to expire.
    fn next(&self, now: Instant, renew_within: Option<Duration>) -> Next {
        if self.lease.is_zero() {
            return Next::Use;
        }
        let left = self.left(now);
        let safety = (self.lease / 10).min(Duration::from_secs(10));
        if left <= safety {
            return Next::Login;
        }
        if left <= renew_within.unwrap_or(self.lease / 3) {
            return if self.renewable {
                Next::Renew
            } else {
                Next::Login
            };
        }
        Next::Use
    }

    fn renew_in(&self, now: Instant, renew_within: Option<Duration>) -> Option<Duration> {
        if self.lease.is_zero() {
            return None;
        }
        let within = renew_within.unwrap_or(self.lease / 3);
        Some(self.left(now).saturating_sub(within))
    }
}

/// The auth method and, for logins, the token currently held.
pub(crate) struct Auth {
    method: AuthMethod,
    login_url: Option<Uri>,
    login_path: String,
    renew_url: Uri,
    renew_within: Option<Duration>,
    held: tokio::sync::Mutex<Option<Held>>,
}

impl Auth {
    pub(crate) fn new(
        method: AuthMethod,
        login_path: String,
        login_url: Option<Uri>,
        renew_url: Uri,
        renew_within: Option<Duration>,
    ) -> Auth {
        Auth {
            method,
            login_url,
            login_path,
            renew_url,
            renew_within,
            held: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn method_name(&self) -> &'static str {
        match self.method {
            AuthMethod::Token(_) => "token",
            AuthMethod::AppRole { .. } => "AppRole",
            AuthMethod::Kubernetes { .. } => "Kubernetes",
        }
    }

    /// The token to send now: logs in, or renews, first when needed.
    pub(crate) async fn token(&self, vault: &Endpoint) -> Result<Token, KeyError> {
        if let AuthMethod::Token(token) = &self.method {
            return Ok(Token {
                secret: token.clone(),
                fresh: false,
                can_relogin: false,
                renew_in: None,
            });
        }
        let mut held = self.held.lock().await;
        let next = match &*held {
            Some(h) => h.next(Instant::now(), self.renew_within),
            None => Next::Login,
        };
        let mut fresh = false;
        match (next, held.as_mut()) {
            (Next::Renew, Some(h)) => match self.renew(vault, h).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "Vault token renewal failed; the token is used until it expires");
                }
                Err(e) => {
                    tracing::info!(error = %e, "Vault token renewal refused; logging in again");
                    *held = Some(self.login(vault).await?);
                    fresh = true;
                }
            },
            (Next::Use, Some(_)) => {}
            _ => {
                *held = Some(self.login(vault).await?);
                fresh = true;
            }
        }
        let h = held.as_ref().expect("a token is held after a login");
        Ok(Token {
            secret: h.token.clone(),
            fresh,
            can_relogin: true,
            renew_in: h.renew_in(Instant::now(), self.renew_within),
        })
    }

    /// Drops `token` if it is still the one held (Vault refused it), so the next
    /// [`token`](Auth::token) logs in again.
    pub(crate) async fn forget(&self, token: &Token) {
        let mut held = self.held.lock().await;
        if held
            .as_ref()
            .is_some_and(|h| h.token.expose_secret() == token.secret.expose_secret())
        {
            *held = None;
        }
    }

    async fn login(&self, vault: &Endpoint) -> Result<Held, KeyError> {
        let (name, body) = match &self.method {
            AuthMethod::Token(_) => unreachable!("a static token never logs in"),
            AuthMethod::AppRole { role_id, secret_id } => {
                let secret_id = secret_id.read("the AppRole secret_id").await?;
                let body = serde_json::json!({
                    "role_id": role_id.expose_secret(),
                    "secret_id": secret_id.expose_secret(),
                });
                ("AppRole", body)
            }
            AuthMethod::Kubernetes { role, jwt } => {
                let jwt = jwt.read("the service-account token").await?;
                let body = serde_json::json!({ "role": role, "jwt": jwt.expose_secret() });
                ("Kubernetes", body)
            }
        };
        let step = Step::Login(name, &self.login_path);
        let url = self
            .login_url
            .clone()
            .expect("login methods have a login URL");
        let body = Bytes::from(body.to_string());
        let reply = vault
            .call(Method::POST, url, None, Some(body))
            .await
            .map_err(|e| transport_error(step, e))?;
        if !reply.status.is_success() {
            return Err(status_error(step, &reply));
        }
        let info = parse_auth_response(&reply.body).map_err(|why| auth_body_error(step, &why))?;
        tracing::debug!(
            method = name,
            lease = ?info.lease,
            renewable = info.renewable,
            "logged in to Vault"
        );
        Ok(Held {
            token: info.client_token,
            obtained: Instant::now(),
            lease: info.lease,
            granted: info.lease,
            renewable: info.renewable,
        })
    }

    async fn renew(&self, vault: &Endpoint, held: &mut Held) -> Result<(), KeyError> {
        let step = Step::Renew;
        let body = serde_json::json!({ "increment": format!("{}s", held.granted.as_secs()) });
        let reply = vault
            .call(
                Method::POST,
                self.renew_url.clone(),
                Some(&held.token),
                Some(Bytes::from(body.to_string())),
            )
            .await
            .map_err(|e| transport_error(step, e))?;
        if !reply.status.is_success() {
            return Err(status_error(step, &reply));
        }
        // The answer names the same token; only its lease matters.
        let info = parse_auth_response(&reply.body).map_err(|why| auth_body_error(step, &why))?;
        held.obtained = Instant::now();
        held.lease = info.lease;
        held.renewable = info.renewable;
        tracing::debug!(lease = ?info.lease, "renewed the Vault token");
        Ok(())
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Auth");
        d.field("method", &self.method_name());
        match &self.method {
            AuthMethod::Token(_) => {}
            AuthMethod::AppRole { secret_id, .. } => {
                d.field("login", &self.login_path)
                    .field("secret_id", &secret_id.describe());
            }
            AuthMethod::Kubernetes { role, jwt } => {
                d.field("login", &self.login_path)
                    .field("role", role)
                    .field("jwt", &jwt.describe());
            }
        }
        d.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(lease: u64, renewable: bool, at: Instant) -> Held {
        Held {
            token: SecretString::from("t".to_owned()),
            obtained: at,
            lease: Duration::from_secs(lease),
            granted: Duration::from_secs(lease),
            renewable,
        }
    }

    #[test]
    fn lease_lifecycle() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let h = held(1200, true, t0);
        assert_eq!(h.next(t0, None), Next::Use);
        assert_eq!(h.next(t0 + s(799), None), Next::Use);
        assert_eq!(h.next(t0 + s(800), None), Next::Renew); // a third left
        assert_eq!(h.next(t0 + s(1190), None), Next::Login); // about to expire
        assert_eq!(h.next(t0 + s(5000), None), Next::Login); // expired
        assert_eq!(h.renew_in(t0, None), Some(s(800)));
        assert_eq!(h.renew_in(t0 + s(900), None), Some(s(0)));
        // A wide margin renews at once; a narrow one late.
        assert_eq!(h.next(t0, Some(s(86_400))), Next::Renew);
        assert_eq!(h.next(t0 + s(1000), Some(s(60))), Next::Use);
        assert_eq!(h.next(t0 + s(1150), Some(s(60))), Next::Renew);
    }

    #[test]
    fn not_renewable_logs_in_again_instead() {
        let t0 = Instant::now();
        let h = held(1200, false, t0);
        assert_eq!(h.next(t0 + Duration::from_secs(800), None), Next::Login);
    }

    #[test]
    fn no_lease_never_expires() {
        let t0 = Instant::now();
        let h = held(0, false, t0);
        assert_eq!(h.next(t0 + Duration::from_secs(1 << 30), None), Next::Use);
        assert_eq!(h.renew_in(t0, None), None);
    }
}
