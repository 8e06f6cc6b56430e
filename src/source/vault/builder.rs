//! [`VaultKeySourceBuilder`]: the options, their checks at `build`, and the Vault CLI's
//! environment variables.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Uri};
use secrecy::{ExposeSecret, SecretString};

use super::auth::{Auth, AuthMethod, Credential, DEFAULT_KUBERNETES_JWT_PATH};
use super::env::{cli_token, env_var};
use super::transport::{cleartext_refusal, Endpoint, Transport};
use super::{Inner, VaultKeySource};
use crate::{KeyError, KeyErrorKind};

/// Default bound on each request to Vault. Below the layer's default load timeout (5 s), so
/// a slow Vault is reported as such rather than as a slow load.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);
/// Where the Vault CLI looks when `VAULT_ADDR` is unset.
const CLI_DEFAULT_ADDR: &str = "https://127.0.0.1:8200";
const CONFIG_ORIGIN: &str = "vault key source configuration";

/// Options of a [`VaultKeySource`]; made by [`VaultKeySource::builder`].
///
/// Required: an address, a way to get a token (`token`, `approle_*` or `kubernetes`), a
/// mount, a path and a field. Every setter replaces the value set before; the auth methods
/// replace each other. Nothing is checked or read before [`build`](Self::build), which
/// reports each mistake as a [`KeyError`] of kind `Config` (or `Missing` for a missing token
/// in the environment).
#[derive(Clone)]
#[must_use]
pub struct VaultKeySourceBuilder {
    address: Option<String>,
    auth: Option<AuthChoice>,
    auth_mount: Option<String>,
    kubernetes_jwt: Option<PathBuf>,
    mount: Option<String>,
    path: Option<String>,
    field: Option<String>,
    namespace: Option<String>,
    kv_version: u8,
    timeout: Duration,
    ca_cert: Option<PathBuf>,
    refresh_after: Option<Duration>,
    renew_within: Option<Duration>,
    allow_insecure_http: bool,
}

#[derive(Clone)]
enum AuthChoice {
    Token(SecretString),
    AppRole {
        role_id: SecretString,
        secret_id: Credential,
    },
    Kubernetes {
        role: String,
    },
}

impl VaultKeySourceBuilder {
    pub(crate) fn new() -> Self {
        VaultKeySourceBuilder {
            address: None,
            auth: None,
            auth_mount: None,
            kubernetes_jwt: None,
            mount: None,
            path: None,
            field: None,
            namespace: None,
            kv_version: 2,
            timeout: DEFAULT_TIMEOUT,
            ca_cert: None,
            refresh_after: None,
            renew_within: None,
            allow_insecure_http: false,
        }
    }

    /// Vault's address, e.g. `https://vault.example.com:8200` (a path prefix is kept).
    /// Plain `http://` only to loopback unless [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn address(mut self, url: impl Into<String>) -> Self {
        self.address = Some(url.into());
        self
    }

    /// Uses this Vault token as it is (not renewed, no login).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(AuthChoice::Token(SecretString::from(token.into())));
        self
    }

    /// Logs in with AppRole (`POST /v1/auth/approle/login`), the `secret_id` read from a file
    /// at each login (trimmed), so a rotated secret_id is picked up.
    pub fn approle_secret_id_file(
        mut self,
        role_id: impl Into<String>,
        secret_id_file: impl Into<PathBuf>,
    ) -> Self {
        self.auth = Some(AuthChoice::AppRole {
            role_id: SecretString::from(role_id.into()),
            secret_id: Credential::File(secret_id_file.into()),
        });
        self
    }

    /// Logs in with AppRole (`POST /v1/auth/approle/login`), the `secret_id` read from an
    /// environment variable at each login.
    pub fn approle_secret_id_env(
        mut self,
        role_id: impl Into<String>,
        secret_id_var: impl Into<String>,
    ) -> Self {
        self.auth = Some(AuthChoice::AppRole {
            role_id: SecretString::from(role_id.into()),
            secret_id: Credential::Env(secret_id_var.into()),
        });
        self
    }

    /// Logs in with Kubernetes auth (`POST /v1/auth/kubernetes/login`) as `role`, with the
    /// pod's service-account token, read at each login from
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token` (see
    /// [`kubernetes_jwt_file`](Self::kubernetes_jwt_file)).
    pub fn kubernetes(mut self, role: impl Into<String>) -> Self {
        self.auth = Some(AuthChoice::Kubernetes { role: role.into() });
        self
    }

    /// Reads the service-account token for Kubernetes auth from this file instead.
    pub fn kubernetes_jwt_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubernetes_jwt = Some(path.into());
        self
    }

    /// Where the login method is mounted, if not at its default (`approle`, `kubernetes`):
    /// `auth_mount("k8s-eu")` logs in at `/v1/auth/k8s-eu/login`.
    pub fn auth_mount(mut self, mount: impl Into<String>) -> Self {
        self.auth_mount = Some(mount.into());
        self
    }

    /// The KV engine's mount, e.g. `secret`.
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = Some(mount.into());
        self
    }

    /// The secret's path in the mount, e.g. `azerion` or `team/azerion`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The secret's field that holds the key, e.g. `api_key`.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The Vault Enterprise namespace (sent as `X-Vault-Namespace`), e.g. `ns1/`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The KV engine's version: 2 (the default) or 1.
    pub fn kv_version(mut self, version: u8) -> Self {
        self.kv_version = version;
        self
    }

    /// Bounds each request to Vault, redirects and reading the answer included (default 4 s).
    ///
    /// Keep it below the layer's
    /// [`load_timeout`](crate::BearerAuthLayer::load_timeout) (5 s by default) so a slow
    /// Vault is reported as one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also trusts the CA certificates in this PEM file (read at `build`), besides the
    /// webpki roots: for a Vault with a private CA.
    pub fn ca_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(pem_file.into());
        self
    }

    /// Reads the key again after `ttl` (default: a KV v1 lease when Vault sets one, else
    /// 5 minutes), so a rotated secret is picked up before the API rejects the old key.
    pub fn refresh_after(mut self, ttl: Duration) -> Self {
        self.refresh_after = Some(ttl);
        self
    }

    /// Renews a token had by login once less than `margin` of its lease is left (default: a
    /// third of the lease).
    pub fn renew_token_within(mut self, margin: Duration) -> Self {
        self.renew_within = Some(margin);
        self
    }

    /// Allows plain `http://` to a Vault that is not on loopback. Off by default: the Vault
    /// token would cross the network in clear text.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Fills what is not set yet from the Vault CLI's environment: the address from
    /// `VAULT_ADDR` (default `https://127.0.0.1:8200`), the token from `VAULT_TOKEN` or else
    /// `~/.vault-token` (only when no auth method is set), the namespace from
    /// `VAULT_NAMESPACE`, the CA from `VAULT_CACERT`. Read now, once.
    ///
    /// Fails with `Missing` when a token is needed and neither `VAULT_TOKEN` nor
    /// `~/.vault-token` has one, and with `Config` for a variable that is not Unicode. The
    /// messages name the variables and files, never their contents.
    pub fn cli_env(mut self) -> Result<Self, KeyError> {
        if self.address.is_none() {
            self.address = Some(env_var("VAULT_ADDR")?.unwrap_or_else(|| CLI_DEFAULT_ADDR.into()));
        }
        if self.namespace.is_none() {
            self.namespace = env_var("VAULT_NAMESPACE")?;
        }
        if self.ca_cert.is_none() {
            self.ca_cert = env_var("VAULT_CACERT")?.map(PathBuf::from);
        }
        if self.auth.is_none() {
            self.auth = Some(AuthChoice::Token(cli_token()?));
        }
        Ok(self)
    }

    /// Checks the options, reads the CA file if any, and builds the source. Connects to
    /// nothing: Vault is first asked at the first load.
    pub fn build(self) -> Result<VaultKeySource, KeyError> {
        let address = self.address.as_deref().map(str::trim).unwrap_or("");
        if address.is_empty() {
            return Err(config(
                "no address: call .address(\"https://vault.example.com:8200\") or use from_env",
            ));
        }
        let address = address.trim_end_matches('/').to_owned();
        let uri: Uri = address
            .parse()
            .map_err(|e| config(format!("address {address:?} is not a URL: {e}")))?;
        if uri.authority().is_none() || uri.scheme().is_none() {
            return Err(config(format!(
                "address {address:?} must be scheme://host[:port], e.g. https://vault.example.com:8200"
            )));
        }
        if uri.query().is_some() {
            return Err(config(format!("address {address:?} must have no query")));
        }
        if let Some(why) = cleartext_refusal(&uri, self.allow_insecure_http) {
            return Err(config(format!("address {address}: {why}")));
        }
        let mount = segment("mount", self.mount.as_deref())?;
        let path = segment("path", self.path.as_deref())?;
        let field = match self.field.as_deref() {
            Some(f) if !f.is_empty() => f.to_owned(),
            _ => return Err(config("no field: call .field(\"api_key\")")),
        };
        let api_path = match self.kv_version {
            1 => format!("{mount}/{path}"),
            2 => format!("{mount}/data/{path}"),
            v => {
                return Err(config(format!(
                    "kv_version({v}): the KV engine has versions 1 and 2"
                )))
            }
        };
        if self.timeout.is_zero() {
            return Err(config("timeout must be more than zero"));
        }
        let namespace = match &self.namespace {
            Some(ns) if !ns.trim().is_empty() => Some(
                HeaderValue::from_str(ns.trim())
                    .map_err(|_| config("namespace is not a valid header value"))?,
            ),
            _ => None,
        };

        let (method, default_mount) = match self.auth.clone() {
            None => {
                return Err(config(
                    "no Vault token: call .token(..), .approle_secret_id_file(..), \
                     .approle_secret_id_env(..) or .kubernetes(..), or use from_env",
                ))
            }
            Some(AuthChoice::Token(token)) => {
                let t = token.expose_secret();
                if t.trim().is_empty() {
                    return Err(config("the Vault token is empty"));
                }
                if HeaderValue::from_str(t).is_err() {
                    return Err(config(
                        "the Vault token is not a valid header value (a newline or control character?)",
                    ));
                }
                (AuthMethod::Token(token), "token")
            }
            Some(AuthChoice::AppRole { role_id, secret_id }) => {
                if role_id.expose_secret().trim().is_empty() {
                    return Err(config("the AppRole role_id is empty"));
                }
                (AuthMethod::AppRole { role_id, secret_id }, "approle")
            }
            Some(AuthChoice::Kubernetes { role }) => {
                if role.trim().is_empty() {
                    return Err(config("the Kubernetes role is empty"));
                }
                let jwt = self
                    .kubernetes_jwt
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBERNETES_JWT_PATH));
                let jwt = Credential::File(jwt);
                (AuthMethod::Kubernetes { role, jwt }, "kubernetes")
            }
        };

        let transport = Transport::new(
            self.timeout,
            self.allow_insecure_http,
            self.ca_cert.as_deref(),
        )
        .map_err(config)?;
        let endpoint = Endpoint::new(transport, address.clone(), namespace);
        let read_url = endpoint.url(&api_path).map_err(config)?;
        let renew_url = endpoint.url("auth/token/renew-self").map_err(config)?;
        let (login_path, login_url) = match method {
            AuthMethod::Token(_) => (String::new(), None),
            _ => {
                let auth_mount = segment(
                    "auth mount",
                    Some(self.auth_mount.as_deref().unwrap_or(default_mount)),
                )?;
                let login_path = format!("auth/{auth_mount}/login");
                let url = endpoint.url(&login_path).map_err(config)?;
                (login_path, Some(url))
            }
        };
        let auth = Auth::new(method, login_path, login_url, renew_url, self.renew_within);

        let mut origin = format!("vault {address} {api_path} (field {field}");
        if let Some(ns) = &self.namespace {
            origin.push_str(&format!(", namespace {}", ns.trim()));
        }
        origin.push(')');
        Ok(VaultKeySource {
            inner: Arc::new(Inner {
                endpoint,
                auth,
                read_url,
                api_path,
                field,
                kv_version: self.kv_version,
                refresh_after: self.refresh_after,
                origin,
                namespace: self.namespace.map(|ns| ns.trim().to_owned()),
            }),
        })
    }
}

impl Default for VaultKeySourceBuilder {
    fn default() -> Self {
        VaultKeySourceBuilder::new()
    }
}

impl fmt::Debug for VaultKeySourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            None => "none",
            Some(AuthChoice::Token(_)) => "token",
            Some(AuthChoice::AppRole { .. }) => "AppRole",
            Some(AuthChoice::Kubernetes { .. }) => "Kubernetes",
        };
        f.debug_struct("VaultKeySourceBuilder")
            .field("address", &self.address)
            .field("auth", &auth)
            .field("mount", &self.mount)
            .field("path", &self.path)
            .field("field", &self.field)
            .field("namespace", &self.namespace)
            .field("kv_version", &self.kv_version)
            .field("timeout", &self.timeout)
            .field("ca_cert", &self.ca_cert)
            .field("refresh_after", &self.refresh_after)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

fn config(cause: impl Into<String>) -> KeyError {
    KeyError::new(KeyErrorKind::Config, cause.into()).with_origin(CONFIG_ORIGIN)
}

/// A mount or path: slashes around it trimmed, not empty, no `..`, percent-encoded.
fn segment(what: &str, value: Option<&str>) -> Result<String, KeyError> {
    let value = value.unwrap_or("").trim().trim_matches('/');
    if value.is_empty() {
        return Err(config(format!(
            "no {what}: call .{}(..)",
            what.replace(' ', "_")
        )));
    }
    if value
        .split('/')
        .any(|part| part == ".." || part == "." || part.is_empty())
    {
        return Err(config(format!(
            "{what} {value:?} has an empty, \".\" or \"..\" segment"
        )));
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_trimmed_and_encoded() {
        assert_eq!(
            segment("path", Some("/team/azerion/")).unwrap(),
            "team/azerion"
        );
        assert_eq!(segment("path", Some("a b?c")).unwrap(), "a%20b%3Fc");
        assert!(segment("path", Some("a/../b")).is_err());
        assert!(segment("path", Some("a//b")).is_err());
        assert!(segment("mount", Some("/")).is_err());
        assert!(segment("mount", None).is_err());
    }
}
