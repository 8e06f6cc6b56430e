//! The HTTP API of an [`OpenBao`] dev server, as root unless said otherwise: mounts, KV
//! writes, policies, tokens, AppRole, quotas, seal and unseal.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::OpenBao;

impl OpenBao {
    /// Calls the HTTP API as root: `(status, body or null)`.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(&self.root, method, path, body).await
    }

    /// Calls the HTTP API with `token`.
    pub async fn api_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.api_in("", token, method, path, body).await
    }

    /// Calls the HTTP API with `token` in `namespace` (none when empty).
    pub async fn api_in(
        &self,
        namespace: &str,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}/v1/{path}", self.url()))
            .header("x-vault-token", token);
        if !namespace.is_empty() {
            request = request.header("x-vault-namespace", namespace);
        }
        let request = request
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let response = crate::support::client::<Full<Bytes>>()
            .request(request)
            .await
            .expect("OpenBao answers");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// As [`api`](Self::api), asserting a 2xx.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.api(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {value}"
        );
        value
    }

    /// Mounts a KV engine of `version` at `path`.
    pub async fn mount_kv(&self, path: &str, version: u8) {
        let options = json!({ "version": version.to_string() });
        self.ok(
            Method::POST,
            &format!("sys/mounts/{path}"),
            Some(json!({ "type": "kv", "options": options })),
        )
        .await;
    }

    /// Writes an ACL policy.
    pub async fn policy(&self, name: &str, hcl: &str) {
        self.ok(
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    /// A token with these policies only (no default policy unless named).
    pub async fn token(&self, policies: &[&str], no_default_policy: bool) -> String {
        let v = self
            .ok(
                Method::POST,
                "auth/token/create",
                Some(json!({ "policies": policies, "no_default_policy": no_default_policy, "ttl": "1h" })),
            )
            .await;
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    /// Enables AppRole at `auth/approle` (again is fine).
    pub async fn enable_approle(&self) {
        let (status, body) = self
            .api(
                Method::POST,
                "sys/auth/approle",
                Some(json!({ "type": "approle" })),
            )
            .await;
        let already = status == 400 && body.to_string().contains("already in use");
        assert!(status == 204 || already, "enable approle: {status} {body}");
    }

    /// An AppRole role with `options` (e.g. `token_policies`, `secret_id_num_uses`); returns
    /// its role_id.
    pub async fn role(&self, role: &str, options: Value) -> String {
        self.enable_approle().await;
        self.ok(
            Method::POST,
            &format!("auth/approle/role/{role}"),
            Some(options),
        )
        .await;
        let v = self
            .ok(
                Method::GET,
                &format!("auth/approle/role/{role}/role-id"),
                None,
            )
            .await;
        v["data"]["role_id"].as_str().unwrap().to_owned()
    }

    /// A new secret_id of `role`.
    pub async fn secret_id(&self, role: &str) -> String {
        let v = self
            .ok(
                Method::POST,
                &format!("auth/approle/role/{role}/secret-id"),
                None,
            )
            .await;
        v["data"]["secret_id"].as_str().unwrap().to_owned()
    }

    /// How many uses `secret_id` of `role` has left (0 for unlimited, or gone).
    pub async fn secret_id_uses_left(&self, role: &str, secret_id: &str) -> u64 {
        let (_, v) = self
            .api(
                Method::POST,
                &format!("auth/approle/role/{role}/secret-id/lookup"),
                Some(json!({ "secret_id": secret_id })),
            )
            .await;
        v["data"]["secret_id_num_uses"].as_u64().unwrap_or(0)
    }

    /// The accessors of the live tokens AppRole issued for `role`.
    pub async fn role_token_accessors(&self, role: &str) -> Vec<String> {
        let v = self
            .ok(
                Method::from_bytes(b"LIST").unwrap(),
                "auth/token/accessors",
                None,
            )
            .await;
        let mut found = Vec::new();
        for accessor in v["data"]["keys"].as_array().unwrap() {
            let (status, info) = self
                .api(
                    Method::POST,
                    "auth/token/lookup-accessor",
                    Some(json!({ "accessor": accessor })),
                )
                .await;
            if status == 200 && info["data"]["meta"]["role_name"] == role {
                found.push(accessor.as_str().unwrap().to_owned());
            }
        }
        found
    }

    /// Revokes every live token of `role`.
    pub async fn revoke_role_tokens(&self, role: &str) {
        for accessor in self.role_token_accessors(role).await {
            self.ok(
                Method::POST,
                "auth/token/revoke-accessor",
                Some(json!({ "accessor": accessor })),
            )
            .await;
        }
    }

    /// Whether the login of `role_id` is locked out (`sys/locked-users`).
    pub async fn locked_out(&self, role_id: &str) -> bool {
        let v = self.ok(Method::GET, "sys/locked-users", None).await;
        v.to_string().contains(role_id)
    }

    /// Writes `data` as a new version of KV v2 secret `path` in `mount`.
    pub async fn kv2_put(&self, mount: &str, path: &str, data: Value) {
        self.ok(
            Method::POST,
            &format!("{mount}/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await;
    }

    /// An AppRole role with a role_id and a secret_id chosen by the test: the same ones work
    /// again on a restarted (empty) server.
    pub async fn role_with_ids(&self, role: &str, options: Value, role_id: &str, secret_id: &str) {
        self.role(role, options).await;
        self.ok(
            Method::POST,
            &format!("auth/approle/role/{role}/role-id"),
            Some(json!({ "role_id": role_id })),
        )
        .await;
        self.ok(
            Method::POST,
            &format!("auth/approle/role/{role}/custom-secret-id"),
            Some(json!({ "secret_id": secret_id })),
        )
        .await;
    }

    /// Revokes `token` (and its children).
    pub async fn revoke_token(&self, token: &str) {
        self.ok(
            Method::POST,
            "auth/token/revoke",
            Some(json!({ "token": token })),
        )
        .await;
    }

    /// `auth/token/lookup` of `token`: its `data` (ttl, accessor, last_renewal_time …), or
    /// `None` when the token is gone.
    pub async fn lookup_token(&self, token: &str) -> Option<Value> {
        let (status, v) = self
            .api(
                Method::POST,
                "auth/token/lookup",
                Some(json!({ "token": token })),
            )
            .await;
        (status == 200).then(|| v["data"].clone())
    }

    /// `auth/token/lookup-accessor`: the `data` of the token with `accessor`, if it lives.
    pub async fn lookup_accessor(&self, accessor: &str) -> Option<Value> {
        let (status, v) = self
            .api(
                Method::POST,
                "auth/token/lookup-accessor",
                Some(json!({ "accessor": accessor })),
            )
            .await;
        (status == 200).then(|| v["data"].clone())
    }

    /// A rate-limit quota `name` on `path` (`sys/quotas/rate-limit/{name}`), e.g.
    /// `{"path": "kv/", "rate": 1, "interval": "5s"}`.
    pub async fn rate_limit(&self, name: &str, options: Value) {
        self.ok(
            Method::POST,
            &format!("sys/quotas/rate-limit/{name}"),
            Some(options),
        )
        .await;
    }

    /// Removes the rate-limit quota `name`.
    pub async fn remove_rate_limit(&self, name: &str) {
        self.ok(
            Method::DELETE,
            &format!("sys/quotas/rate-limit/{name}"),
            None,
        )
        .await;
    }

    /// Whether a quota's 429 carries `Retry-After` and `X-Ratelimit-*` (server-wide).
    pub async fn rate_limit_headers(&self, on: bool) {
        self.ok(
            Method::POST,
            "sys/quotas/config",
            Some(json!({ "enable_rate_limit_response_headers": on })),
        )
        .await;
    }

    /// Seals the server (`sys/seal`): every request then gets 503 "Vault is sealed".
    pub async fn seal(&self) {
        self.ok(Method::PUT, "sys/seal", None).await;
        assert_eq!(self.health(), Some(503), "sealed");
    }

    /// Unseals it with the dev server's unseal key (`sys/unseal`).
    pub async fn unseal(&self) {
        let key = self.unseal_key();
        let v = self
            .ok(Method::PUT, "sys/unseal", Some(json!({ "key": key })))
            .await;
        assert_eq!(v["sealed"], false, "unsealed: {v}");
    }
}
