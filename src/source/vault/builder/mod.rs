//! [`VaultKeySourceBuilder`]: the options, their checks at `build`, and the Vault CLI's
//! environment variables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::auth::Credential;
use super::env::{cli_token, env_var, refuse_unsupported_tls_vars};
use crate::{KeyError, KeyErrorKind};

mod build;

/// Default bound on a whole load (every request it makes to Vault). Below the layer's default load timeout (5 s), so
/// a slow Vault is reported as such rather than as a slow load.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);
/// Where the Vault CLI looks when `VAULT_ADDR` is unset.
const CLI_DEFAULT_ADDR: &str = "https://127.0.0.1:8200";
const CONFIG_ORIGIN: &str = "vault key source configuration";

/// Options of a [`VaultKeySource`](crate::VaultKeySource); made by
/// [`VaultKeySource::builder`](crate::VaultKeySource::builder).
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
    redirect_origins: Vec<String>,
}

#[derive(Clone)]
enum AuthChoice {
    Token(SecretString),
    TokenFile(PathBuf),
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
            redirect_origins: Vec::new(),
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

    /// Reads the Vault token from this file at each load, and again when Vault refuses it:
    /// the token sink of a [Vault Agent or Vault Proxy](https://developer.hashicorp.com/vault/docs/agent-and-proxy/autoauth/sinks/file)
    /// doing the auto-auth, which renews the token and writes a new one when it logs in
    /// again. The file's content is trimmed; a response-wrapped or encrypted sink is not
    /// supported.
    ///
    /// The source never renews this token nor logs in: the agent does. After a 403 it reads
    /// the file again and, when the agent has written a new token, reads the secret once more
    /// with it; otherwise it asks `auth/token/lookup-self` whether the policy or the token is
    /// at fault, and says so. Errors name the file, never the token.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_bearer::KeyError> {
    /// let source = tower_bearer::VaultKeySource::builder()
    ///     .address("http://127.0.0.1:8100") // a local Vault Proxy (loopback: plain http allowed)
    ///     .token_file("/run/vault-agent/token")
    ///     .mount("secret")
    ///     .path("azerion")
    ///     .field("api_key")
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Some(AuthChoice::TokenFile(path.into()));
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

    /// The Vault Enterprise namespace (sent as `X-Vault-Namespace`), e.g. `ns1/`. An empty
    /// (or blank) namespace means none, as with the Vault CLI.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The KV engine's version: 2 (the default) or 1.
    pub fn kv_version(mut self, version: u8) -> Self {
        self.kv_version = version;
        self
    }

    /// Bounds a whole load (default 4 s): every request it makes to Vault (the read, and when
    /// the token is refused, `lookup-self`, the login and the second read), redirects and
    /// reading the answers included, share this one deadline.
    ///
    /// Keep it below the layer's
    /// [`load_timeout`](crate::BearerAuthLayer::load_timeout) (5 s by default) so a slow
    /// Vault is reported as one. A token had by a login is kept by the source as soon as the
    /// login answers, so a load cut short after its login does not lose (or leak) the token.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts the CA certificates in this PEM file (read at `build`) and nothing else: for a
    /// Vault with a private CA. As with the Vault CLI's `VAULT_CACERT`, the public (webpki)
    /// roots are then not trusted.
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
    /// third of the lease). The margin is capped at half the lease, so a margin wider than
    /// the lease does not renew (and re-read the key) at every load.
    pub fn renew_token_within(mut self, margin: Duration) -> Self {
        self.renew_within = Some(margin);
        self
    }

    /// Lets redirects (`307`/`308`, e.g. from a standby node to the active one) go to these
    /// origins, e.g. `["https://vault-1.example.com:8200", "https://vault-2.example.com:8200"]`,
    /// besides the request's own. By default a redirect is followed only to the same origin
    /// (scheme, host and port): the token and login bodies go nowhere else. A redirect from
    /// `https://` to `http://` is never followed, named or not. Checked at `build`.
    pub fn allow_redirects_to<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redirect_origins = origins.into_iter().map(Into::into).collect();
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
    /// `VAULT_NAMESPACE`, the CA from `VAULT_CACERT` (trusted alone, as the CLI does). Read
    /// now, once.
    ///
    /// Fails with `Missing` when a token is needed and neither `VAULT_TOKEN` nor
    /// `~/.vault-token` has one, and with `Config` for a variable that is not Unicode, and for
    /// the CLI's TLS variables this source does not support rather than ignore them:
    /// `VAULT_CAPATH`, `VAULT_SKIP_VERIFY` (unless false), `VAULT_TLS_SERVER_NAME`,
    /// `VAULT_CLIENT_CERT` and `VAULT_CLIENT_KEY`. The messages name the variables and
    /// files, never their contents.
    pub fn cli_env(mut self) -> Result<Self, KeyError> {
        refuse_unsupported_tls_vars()?;
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
            Some(AuthChoice::TokenFile(_)) => "token file",
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
            .field("redirect_origins", &self.redirect_origins)
            .finish_non_exhaustive()
    }
}

fn config(cause: impl Into<String>) -> KeyError {
    KeyError::new(KeyErrorKind::Config, cause.into()).with_origin(CONFIG_ORIGIN)
}
