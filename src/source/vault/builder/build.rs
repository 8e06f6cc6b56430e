//! [`VaultKeySourceBuilder::build`]: every check of the options, and the source they make.

use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderValue, Uri};
use secrecy::ExposeSecret;

use super::{config, AuthChoice, VaultKeySourceBuilder};
use crate::source::vault::auth::{
    Auth, AuthMethod, Credential, TokenUrls, DEFAULT_KUBERNETES_JWT_PATH,
};
use crate::source::vault::transport::{cleartext_refusal, Endpoint, Origin, Transport, VAULT};
use crate::source::vault::{Inner, VaultKeySource};
use crate::KeyError;

impl VaultKeySourceBuilder {
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
        // An empty namespace is none (the Vault CLI's reading of VAULT_NAMESPACE="").
        let namespace_name = self
            .namespace
            .as_deref()
            .map(str::trim)
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned);
        let namespace = match &namespace_name {
            Some(ns) => Some(
                HeaderValue::from_str(ns)
                    .map_err(|_| config("namespace is not a valid header value"))?,
            ),
            None => None,
        };
        let redirect_origins = self
            .redirect_origins
            .iter()
            .map(|o| redirect_origin(o))
            .collect::<Result<Vec<_>, _>>()?;

        let (method, default_mount) = match self.auth.clone() {
            None => return Err(config(
                "no Vault token: call .token(..), .token_file(..), .approle_secret_id_file(..), \
                     .approle_secret_id_env(..) or .kubernetes(..), or use from_env",
            )),
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
            Some(AuthChoice::TokenFile(path)) => {
                if path.as_os_str().is_empty() {
                    return Err(config("token_file: the path is empty"));
                }
                (AuthMethod::TokenFile(Credential::File(path)), "token")
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
            &VAULT,
            self.timeout,
            self.allow_insecure_http,
            self.ca_cert.as_deref(),
            redirect_origins,
        )
        .map_err(config)?;
        let endpoint = Endpoint::new(transport, address.clone(), namespace);
        let read_url = endpoint.url(&api_path).map_err(config)?;
        let urls = TokenUrls {
            renew: endpoint.url("auth/token/renew-self").map_err(config)?,
            lookup: endpoint.url("auth/token/lookup-self").map_err(config)?,
            revoke: endpoint.url("auth/token/revoke-self").map_err(config)?,
        };
        let (login_path, login_url) = match method {
            AuthMethod::Token(_) | AuthMethod::TokenFile(_) => (String::new(), None),
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
        let auth = Auth::new(method, login_path, login_url, urls, self.renew_within);

        let mut origin = format!("vault {address} {api_path} (field {field}");
        if let Some(ns) = &namespace_name {
            origin.push_str(&format!(", namespace {ns}"));
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
                namespace: namespace_name,
            }),
        })
    }
}

/// An origin named in `allow_redirects_to`: `scheme://host[:port]`, nothing more.
fn redirect_origin(text: &str) -> Result<Origin, KeyError> {
    let bad = || {
        config(format!(
            "allow_redirects_to: {text:?} is not an origin such as https://vault-2.example.com:8200"
        ))
    };
    let uri: Uri = text
        .trim()
        .trim_end_matches('/')
        .parse()
        .map_err(|_| bad())?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(bad());
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad());
    }
    Origin::of(&uri).ok_or_else(bad)
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
    use crate::{KeyErrorKind, VaultKeySource};

    #[test]
    fn a_token_file_needs_a_path_and_shows_it() {
        let builder = || {
            VaultKeySource::builder()
                .address("http://127.0.0.1:8100")
                .mount("secret")
                .path("azerion")
                .field("api_key")
        };
        let err = builder().token_file("").build().unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Config);
        assert!(
            err.to_string().contains("token_file: the path is empty"),
            "{err}"
        );
        let source = builder().token_file("/run/agent/token").build().unwrap();
        let debug = format!("{source:?}");
        assert!(
            debug.contains("\"token file\"") && debug.contains("file /run/agent/token"),
            "{debug}"
        );
        let debug = format!("{:?}", builder().token_file("/run/agent/token"));
        assert!(debug.contains("\"token file\""), "{debug}");
    }

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
