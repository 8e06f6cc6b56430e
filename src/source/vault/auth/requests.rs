//! The requests of token management: login (with the refused-credential guard), renewal,
//! and the background revocation of a replaced token.

use http::Method;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::credential::{approle_body, kubernetes_body};
use super::guard::{Guards, REFUSED_LOGIN_BACKOFF};
use super::lease::{lease_secs, Held, MAX_LEASE};
use super::{Auth, AuthMethod};
use crate::source::vault::error::{auth_body_error, status_error, transport_error, Step};
use crate::source::vault::response::parse_auth_response;
use crate::source::vault::transport::Endpoint;
use crate::{KeyError, KeyErrorKind};

impl Auth {
    pub(super) fn revoke_later(&self, vault: &Endpoint, token: SecretString) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (vault, url) = (vault.clone(), self.urls.revoke.clone());
        runtime.spawn(async move {
            let deadline = Instant::now()
                .checked_add(vault.timeout())
                .unwrap_or_else(|| Instant::now() + MAX_LEASE);
            match vault
                .call(Method::POST, url, Some(&token), None, deadline)
                .await
            {
                Ok(reply) if reply.status.is_success() => {
                    tracing::debug!("revoked the replaced Vault token");
                }
                Ok(reply) => {
                    let e = status_error(Step::Revoke, &reply);
                    tracing::debug!(error = %e, "could not revoke the replaced Vault token");
                }
                Err(e) => {
                    let e = transport_error(Step::Revoke, e);
                    tracing::debug!(error = %e, "could not revoke the replaced Vault token");
                }
            }
        });
    }

    pub(super) async fn login(
        &self,
        guards: &mut Guards,
        vault: &Endpoint,
        deadline: Instant,
    ) -> Result<Held, KeyError> {
        let (name, what, from, digest, body) = match &self.method {
            AuthMethod::Token(_) | AuthMethod::TokenFile(_) => {
                return Err(KeyError::new(
                    KeyErrorKind::Config,
                    "a Vault token given as it is, or read from a file, cannot log in again",
                ))
            }
            AuthMethod::AppRole { role_id, secret_id } => {
                let secret = secret_id.read("the AppRole secret_id").await?;
                let digest = self.digester.digest(&[
                    "approle",
                    role_id.expose_secret(),
                    secret.expose_secret(),
                ]);
                let body = approle_body(role_id, &secret);
                ("AppRole", "secret_id", secret_id.describe(), digest, body)
            }
            AuthMethod::Kubernetes { role, jwt } => {
                let secret = jwt.read("the service-account token").await?;
                let digest = self
                    .digester
                    .digest(&["kubernetes", role, secret.expose_secret()]);
                let body = kubernetes_body(role, &secret);
                (
                    "Kubernetes",
                    "service-account token",
                    jwt.describe(),
                    digest,
                    body,
                )
            }
        };
        let step = Step::Login(name, &self.login_path);
        let now = Instant::now();
        if let Some(r) = guards.still_refused(&digest, now) {
            return Err(KeyError::new(
                KeyErrorKind::Denied,
                format!(
                    "{step}: not logging in: Vault refused the same {what} ({from}) {}s ago \
                     ({}); it is not sent again until the {from} changes, or for {}s",
                    r.ago.as_secs(),
                    r.cause,
                    r.wait.as_secs().max(1)
                ),
            ));
        }
        let Some(url) = self.login_url.clone() else {
            return Err(KeyError::new(
                KeyErrorKind::Config,
                format!("{step}: no login URL"),
            ));
        };
        let reply = vault
            .call(Method::POST, url, None, Some(body), deadline)
            .await
            .map_err(|e| transport_error(step, e))?;
        if !reply.status.is_success() {
            let e = status_error(step, &reply);
            if e.kind() != KeyErrorKind::Denied {
                return Err(e);
            }
            guards.refused(digest, e.cause().to_owned(), now);
            return Err(KeyError::new(
                KeyErrorKind::Denied,
                format!(
                    "{}; this {what} is not sent again until the {from} changes, or for {} min",
                    e.cause(),
                    REFUSED_LOGIN_BACKOFF.as_secs() / 60
                ),
            ));
        }
        guards.accepted();
        let info = parse_auth_response(&reply.body).map_err(|why| auth_body_error(step, &why))?;
        tracing::debug!(
            method = name,
            lease = ?info.lease,
            renewable = info.renewable,
            "logged in to Vault"
        );
        Ok(Held::new(info.client_token, info.lease, info.renewable))
    }

    pub(super) async fn renew(
        &self,
        vault: &Endpoint,
        held: &mut Held,
        deadline: Instant,
    ) -> Result<(), KeyError> {
        let step = Step::Renew;
        let body = serde_json::json!({ "increment": format!("{}s", held.granted.as_secs()) });
        let reply = vault
            .call(
                Method::POST,
                self.urls.renew.clone(),
                Some(&held.token),
                Some(body.to_string().into()),
                deadline,
            )
            .await
            .map_err(|e| transport_error(step, e))?;
        if !reply.status.is_success() {
            return Err(status_error(step, &reply));
        }
        // The answer names the same token; only its lease matters.
        let info = parse_auth_response(&reply.body).map_err(|why| auth_body_error(step, &why))?;
        if info.lease.is_zero() {
            // Not "never expires": a token with a lease cannot gain an infinite one.
            return Err(KeyError::new(
                KeyErrorKind::Other,
                format!("{step}: Vault granted no lease (the token is at its end)"),
            ));
        }
        held.obtained = Instant::now();
        held.lease = lease_secs(info.lease.as_secs());
        held.renewable = info.renewable;
        tracing::debug!(lease = ?held.lease, "renewed the Vault token");
        Ok(())
    }
}
