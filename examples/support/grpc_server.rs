//! A gRPC server for the example and the tests: the health service (tonic-health's generated
//! code, so no protoc) over h2c on 127.0.0.1, checking `authorization: Bearer <key>` against
//! the one key it accepts. Not part of the library.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The health service, refusing any key but the accepted one: `Check` with a trailers-only
/// UNAUTHENTICATED (what a handler's or an interceptor's error is), `Watch` with a response
/// that begins and then ends with UNAUTHENTICATED in its trailers.
#[derive(Clone, Default)]
pub struct Checked {
    accepted: Arc<Mutex<String>>,
    /// (method, token) of every call that reached the server.
    seen: Arc<Mutex<Vec<(&'static str, String)>>>,
}

impl Checked {
    /// From now on, accepts `key` and no other.
    pub fn accept(&self, key: &str) {
        *self.accepted.lock().unwrap() = key.to_owned();
    }

    /// The method and key of every call that reached the server, in order.
    pub fn seen(&self) -> Vec<(&'static str, String)> {
        self.seen.lock().unwrap().clone()
    }

    fn admit<T>(&self, method: &'static str, req: &Request<T>) -> bool {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let ok = *self.accepted.lock().unwrap() == token;
        self.seen.lock().unwrap().push((method, token));
        ok
    }
}

type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for Checked {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !self.admit("check", &req) {
            return Err(Status::unauthenticated("invalid token"));
        }
        Ok(Response::new(serving()))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let item = match self.admit("watch", &req) {
            true => Ok(serving()),
            false => Err(Status::unauthenticated("token revoked")),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([item]))))
    }
}

fn serving() -> HealthCheckResponse {
    HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    }
}

/// Serves `service` over h2c on a random port of 127.0.0.1, until the runtime ends.
pub async fn start_server(service: Checked) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(HealthServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}
