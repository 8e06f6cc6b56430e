//! The server's plumbing: serving a router on loopback (plain or TLS) so that it can be taken
//! down with its connections, the password policy, and decoding a form body to record it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use oxide_auth::primitives::registrar::{PasswordPolicy, RegistrarError};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// Plain comparison in place of Argon2 (see the module docs).
pub(super) struct PlainPasswords;

impl PasswordPolicy for PlainPasswords {
    fn store(&self, _client_id: &str, passphrase: &[u8]) -> Vec<u8> {
        passphrase.to_vec()
    }
    fn check(&self, _: &str, passphrase: &[u8], stored: &[u8]) -> Result<(), RegistrarError> {
        if passphrase == stored {
            Ok(())
        } else {
            Err(RegistrarError::Unspecified)
        }
    }
}

/// A TLS acceptor with the fixture certificate for 127.0.0.1 and localhost.
pub(super) fn acceptor() -> tokio_rustls::TlsAcceptor {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault/tls");
    let pem = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let certs = rustls_pemfile::certs(&mut &pem("server.pem")[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &pem("server.key")[..])
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Serves `app` on a new port of 127.0.0.1, over TLS with an acceptor. The connections are
/// tasks of the returned task's own, so aborting it closes the port and cuts them.
pub(super) async fn spawn(
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let response = app.oneshot(req.map(axum::body::Body::new)).await;
                        Ok::<_, Infallible>(response.unwrap_or_else(|e| match e {}))
                    }
                });
            let tls = tls.clone();
            connections.spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = http.serve_connection(io, service).await;
                    }
                    // A client that refuses the certificate ends the handshake.
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, service).await;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A form body, decoded (`+` as space, `%XX`).
pub(super) fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
