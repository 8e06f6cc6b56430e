//! A stand-in for the Azerion AI API on 127.0.0.1: a real HTTP server that checks
//! `Authorization: Bearer`, serves `GET /v1/models` in the OpenAI-compatible list shape, answers
//! bad keys with an error body, and can revoke keys. The response shapes follow the fixtures in
//! `tests/fixtures/azerion/` (the models list and the 401 body are the OpenAI convention, assumed
//! for Azerion; the generic error body is Azerion's documented one).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

/// The models the stand-in lists.
pub const MODELS: [&str; 2] = ["meta.llama3-1-405b-instruct-v1:0", "model-id-1"];

/// A running stand-in API. Dropping it does not stop the server; the runtime's end does.
#[derive(Clone)]
pub struct StandInApi {
    addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    accepted: Mutex<HashSet<String>>,
    requests: AtomicUsize,
    unauthorized: AtomicUsize,
}

impl StandInApi {
    /// Starts the server, accepting `keys`.
    pub async fn start(keys: &[&str]) -> StandInApi {
        let state = Arc::new(State::default());
        state
            .accepted
            .lock()
            .unwrap()
            .extend(keys.iter().map(|k| k.to_string()));
        let handler_state = state.clone();
        let addr = super::serve(move |req| {
            let state = handler_state.clone();
            async move { state.handle(req).await }
        })
        .await;
        StandInApi { addr, state }
    }

    /// `http://127.0.0.1:<port>/v1`, the counterpart of `azerion::BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts accepting `key`.
    pub fn accept(&self, key: &str) {
        self.state.accepted.lock().unwrap().insert(key.to_owned());
    }

    /// Stops accepting `key`, at once, as a provider does when a key is revoked.
    pub fn revoke(&self, key: &str) {
        self.state.accepted.lock().unwrap().remove(key);
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 401 so far.
    pub fn unauthorized(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }
}

impl State {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let request_id = format!("req_standin_{n:06}");
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let known = token
            .as_ref()
            .is_some_and(|t| self.accepted.lock().unwrap().contains(t));
        if !known {
            self.unauthorized.fetch_add(1, Ordering::SeqCst);
            let message = if token.is_some() {
                "Incorrect API key provided."
            } else {
                "Missing bearer authentication in header."
            };
            return error(
                StatusCode::UNAUTHORIZED,
                message,
                "invalid_request_error",
                "invalid_api_key",
                &request_id,
            );
        }
        let (parts, body) = req.into_parts();
        // Bodies are small JSON documents; refuse anything over 1 MiB.
        let body = match Limited::new(body, 1 << 20).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large.",
                    "invalid_request_error",
                    "body_too_large",
                    &request_id,
                )
            }
        };
        let path = parts.uri.path();
        match (&parts.method, path) {
            (&Method::GET, "/v1/models") => json(StatusCode::OK, models_list(), &request_id),
            (&Method::GET, p) if p.starts_with("/v1/models/") => {
                let id = &p["/v1/models/".len()..];
                if MODELS.contains(&id) {
                    json(StatusCode::OK, model(id), &request_id)
                } else {
                    error(
                        StatusCode::NOT_FOUND,
                        &format!("The model '{id}' does not exist"),
                        "invalid_request_error",
                        "model_not_found",
                        &request_id,
                    )
                }
            }
            (&Method::POST, "/v1/chat/completions") => chat(&body, &request_id),
            _ => error(
                StatusCode::NOT_FOUND,
                "Unknown endpoint.",
                "invalid_request_error",
                "unknown_url",
                &request_id,
            ),
        }
    }
}

fn chat(body: &[u8], request_id: &str) -> Response<Full<Bytes>> {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
            "invalid_request_error",
            "invalid_json",
            request_id,
        );
    };
    let model = request["model"].as_str().unwrap_or_default();
    if !MODELS.contains(&model) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("The model '{model}' does not exist"),
            "invalid_request_error",
            "model_not_found",
            request_id,
        );
    }
    let reply = serde_json::json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "The stand-in API says hello."},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 6, "total_tokens": 7}
    });
    json(StatusCode::OK, reply, request_id)
}

fn model(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "object": "model", "created": 1_686_935_002, "owned_by": "organization-owner"})
}

fn models_list() -> serde_json::Value {
    serde_json::json!({"object": "list", "data": MODELS.iter().map(|id| model(id)).collect::<Vec<_>>()})
}

fn json(status: StatusCode, value: serde_json::Value, request_id: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", request_id)
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}

/// The Azerion error body: `{"error":{"message","type","code","status_code"}}`.
fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "code": code, "status_code": status.as_u16()}
    });
    json(status, body, request_id)
}
