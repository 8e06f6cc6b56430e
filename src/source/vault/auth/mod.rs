//! The Vault token: a static one, one read from a file at each load (a Vault Agent's or
//! Proxy's sink, which the agent rotates), or one had by logging in (AppRole, Kubernetes),
//! renewed with `renew-self` before its lease runs out and replaced by logging in again when it
//! expires or Vault refuses it.
//!
//! The token lives in a [`SecretString`] and goes out only as a sensitive `X-Vault-Token`
//! header. Login credentials (the AppRole secret_id, the service-account JWT) are read from
//! their file or variable at each login, so rotated credentials are picked up.
//!
//! Login discipline (issue 19): a 403 on the read is taken as a refused token only when
//! `lookup-self` is refused too; the held token is kept until a new login succeeds, and a
//! replaced token is revoked (`revoke-self`, best effort); logins forced by a refused token
//! are rate-limited; a credential Vault refused is not sent again until it changes, or for
//! five minutes.

use std::fmt;
use std::time::Duration;

use http::{Method, StatusCode, Uri};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::error::{status_error, transport_error, Step};
use super::transport::Endpoint;
use crate::{KeyError, KeyErrorKind};

mod credential;
mod guard;
mod lease;
mod requests;

pub(crate) use credential::Credential;
use credential::Digester;
use guard::Guards;
use guard::FORCED_LOGIN_INTERVAL;
pub(crate) use lease::MAX_LEASE;
use lease::{Held, Next};

/// Where Kubernetes puts a pod's service-account token.
pub(crate) const DEFAULT_KUBERNETES_JWT_PATH: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How the source gets its Vault token.
pub(crate) enum AuthMethod {
    /// A token given as it is (`.token(..)`, `VAULT_TOKEN`, `~/.vault-token`): never renewed.
    Token(SecretString),
    /// A token read from a file at each load and after a 403 (`.token_file(..)`): the sink of
    /// a Vault Agent or Vault Proxy, which renews and replaces it. Never renewed here.
    TokenFile(Credential),
    /// `POST auth/{mount}/login` with `role_id` and `secret_id`.
    AppRole {
        role_id: SecretString,
        secret_id: Credential,
    },
    /// `POST auth/{mount}/login` with `role` and the service-account `jwt`.
    Kubernetes { role: String, jwt: Credential },
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

/// What `lookup-self` says of a token.
pub(crate) enum Check {
    /// The token is valid: a 403 on the read is the policy's.
    Valid,
    /// Refused too (401/403): the token is gone, or may not even look itself up.
    Refused,
    /// No usable answer (sealed, timeout, 5xx…): cannot tell.
    Unknown(KeyError),
}

/// The token-management URLs, all under `auth/token/`.
pub(crate) struct TokenUrls {
    pub(crate) renew: Uri,
    pub(crate) lookup: Uri,
    pub(crate) revoke: Uri,
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    guards: Guards,
}

/// The auth method and, for logins, the token currently held.
pub(crate) struct Auth {
    method: AuthMethod,
    login_url: Option<Uri>,
    login_path: String,
    urls: TokenUrls,
    renew_within: Option<Duration>,
    digester: Digester,
    state: tokio::sync::Mutex<State>,
}

impl Auth {
    pub(crate) fn new(
        method: AuthMethod,
        login_path: String,
        login_url: Option<Uri>,
        urls: TokenUrls,
        renew_within: Option<Duration>,
    ) -> Auth {
        Auth {
            method,
            login_url,
            login_path,
            urls,
            renew_within,
            digester: Digester::new(),
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    pub(crate) fn method_name(&self) -> &'static str {
        match self.method {
            AuthMethod::Token(_) => "token",
            AuthMethod::TokenFile(_) => "token file",
            AuthMethod::AppRole { .. } => "AppRole",
            AuthMethod::Kubernetes { .. } => "Kubernetes",
        }
    }

    fn current(&self, h: &Held, fresh: bool) -> Token {
        Token {
            secret: h.token.clone(),
            fresh,
            can_relogin: true,
            renew_in: h.renew_in(Instant::now(), self.renew_within),
        }
    }

    /// The token to send now: logs in, or renews, first when needed.
    pub(crate) async fn token(
        &self,
        vault: &Endpoint,
        deadline: Instant,
    ) -> Result<Token, KeyError> {
        match &self.method {
            AuthMethod::Token(token) => {
                return Ok(Token {
                    secret: token.clone(),
                    fresh: false,
                    can_relogin: false,
                    renew_in: None,
                })
            }
            AuthMethod::TokenFile(file) => {
                return Ok(Token {
                    secret: read_token_file(file).await?,
                    fresh: false,
                    // A 403 may be cured: the agent may have written a new token since.
                    can_relogin: true,
                    renew_in: None,
                });
            }
            AuthMethod::AppRole { .. } | AuthMethod::Kubernetes { .. } => {}
        }
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let next = match &state.held {
            Some(h) => h.next(Instant::now(), self.renew_within),
            None => Next::Login,
        };
        match (next, state.held.as_mut()) {
            (Next::Use, Some(_)) => {}
            (Next::Renew, Some(h)) => match self.renew(vault, h, deadline).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "Vault token renewal failed; the token is used until it expires");
                }
                Err(e) => {
                    tracing::info!(error = %e, "Vault token renewal refused; logging in again");
                    let new = self.login(&mut state.guards, vault, deadline).await?;
                    return Ok(self.install(state, new, vault));
                }
            },
            _ => {
                let new = self.login(&mut state.guards, vault, deadline).await?;
                return Ok(self.install(state, new, vault));
            }
        }
        // Used or renewed: the token held, not fresh from a login.
        match &state.held {
            Some(h) => Ok(self.current(h, false)),
            None => Err(KeyError::new(KeyErrorKind::Other, "no Vault token held")),
        }
    }

    /// Where the token is read from, when it is read from a file (`token_file`).
    pub(crate) fn token_file(&self) -> Option<&Credential> {
        match &self.method {
            AuthMethod::TokenFile(file) => Some(file),
            _ => None,
        }
    }

    /// Asks Vault (`GET auth/token/lookup-self`) whether `token` is still valid.
    pub(crate) async fn check(&self, vault: &Endpoint, token: &Token, deadline: Instant) -> Check {
        let step = Step::Lookup;
        let url = self.urls.lookup.clone();
        match vault
            .call(Method::GET, url, Some(&token.secret), None, deadline)
            .await
        {
            Ok(reply) if reply.status.is_success() => Check::Valid,
            Ok(reply)
                if matches!(
                    reply.status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) =>
            {
                Check::Refused
            }
            Ok(reply) => Check::Unknown(status_error(step, &reply)),
            Err(e) => Check::Unknown(transport_error(step, e)),
        }
    }

    /// Replaces `refused` (a token Vault refused, confirmed by `lookup-self`) by logging in
    /// again, at most once per [`FORCED_LOGIN_INTERVAL`]. The old token stays held until the
    /// login succeeds, and is then revoked.
    pub(crate) async fn replace(
        &self,
        vault: &Endpoint,
        refused: &Token,
        deadline: Instant,
    ) -> Result<Token, KeyError> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if let Some(h) = &state.held {
            if h.token.expose_secret() != refused.secret.expose_secret() {
                // Another load has replaced it already.
                return Ok(self.current(h, false));
            }
        }
        let now = Instant::now();
        if let Some(wait) = state.guards.forced_login_wait(now) {
            return Err(KeyError::new(
                KeyErrorKind::Denied,
                format!(
                    "Vault refused the token (auth/token/lookup-self too), and the source logged \
                     in again less than {}s ago: the next login waits {}s",
                    FORCED_LOGIN_INTERVAL.as_secs(),
                    wait.as_secs().max(1)
                ),
            ));
        }
        state.guards.forced_login(now);
        let new = self.login(&mut state.guards, vault, deadline).await?;
        Ok(self.install(state, new, vault))
    }

    /// Holds `new` (before any other await, so a cancelled load keeps it) and revokes the
    /// token it replaces, in the background, best effort.
    fn install(&self, state: &mut State, new: Held, vault: &Endpoint) -> Token {
        let token = self.current(&new, true);
        if let Some(old) = state.held.replace(new) {
            let held = state.held.as_ref().map(|h| h.token.expose_secret());
            if held != Some(old.token.expose_secret()) {
                self.revoke_later(vault, old.token);
            }
        }
        token
    }
}

/// The token in `file`, trimmed; refused (naming the file, never the content) when it cannot
/// go in a header.
async fn read_token_file(file: &Credential) -> Result<SecretString, KeyError> {
    let token = file.read("the Vault token").await?;
    if http::HeaderValue::from_str(token.expose_secret()).is_err() {
        return Err(KeyError::new(
            KeyErrorKind::Invalid,
            format!(
                "the Vault token from {}: is not a valid header value (a control character \
                 or a non-ASCII byte inside?)",
                file.describe()
            ),
        ));
    }
    Ok(token)
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Auth");
        d.field("method", &self.method_name());
        match &self.method {
            AuthMethod::Token(_) => {}
            AuthMethod::TokenFile(file) => {
                d.field("token", &file.describe());
            }
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
mod tests;
