//! async-openai 0.43 through `async_openai::AuthLayer`, against the stand-in Azerion API on
//! loopback (models, a chat completion, a rotation healed, a 404 as async-openai's own error),
//! and a multipart upload replayed after a 401 from a server that reads the whole body.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::retry::{OpenAIRetry, OpenAIRetryLayer};
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use async_openai::types::files::{CreateFileRequest, FileInput, FilePurpose};
use async_openai::Client;
use http_body_util::BodyExt;
use support::stand_in::{StandInApi, MODELS};
use tower::ServiceBuilder;
use tower_bearer::async_openai::{Auth, AuthLayer};
use tower_bearer::{BearerAuthLayer, FileKeySource, KeyError, RotationEvent, ScopeError};

const OLD: &str = "sk-openai-old-key-00000000";
const NEW: &str = "sk-openai-new-key-11111111";

type OpenAi = Client<OpenAIConfig>;

fn key_file(key: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    write_key(&path, key);
    (dir, path)
}

fn write_key(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// An async-openai client for `base` whose requests go through `layer`, above async-openai's
/// own retry layer, as a user's stack would be. The config's own key is a decoy the server
/// would refuse: only the layer's key can get through.
fn client(layer: BearerAuthLayer, base: &str) -> OpenAi {
    // reqwest's TLS (for the example's --live) has no provider of its own here: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let service: Auth<OpenAIRetry<ReqwestService>> = ServiceBuilder::new()
        .layer(AuthLayer::new(layer))
        .layer(OpenAIRetryLayer::default())
        .service(ReqwestService::new(reqwest::Client::new()));
    let config = OpenAIConfig::new()
        .with_api_base(base)
        .with_api_key("sk-decoy-not-accepted-000");
    Client::with_config(config).with_http_service(service)
}

fn rotations(layer: BearerAuthLayer) -> (BearerAuthLayer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let layer = layer.on_rotate(move |event: &RotationEvent| {
        sink.lock().unwrap().push(format!("{:?}", event.reason()));
    });
    (layer, seen)
}

#[tokio::test]
async fn models_and_a_chat_completion_heal_through_a_rotation() {
    let api = StandInApi::start(&[OLD]).await;
    let (_dir, path) = key_file(OLD);
    let (layer, rotated) =
        rotations(BearerAuthLayer::new(FileKeySource::new(&path)).restrict_to_hosts(["127.0.0.1"]));
    let handle = layer.handle();
    let openai = client(layer, &api.base_url());

    let models = openai.models().list().await.unwrap();
    let ids: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, MODELS);
    assert_eq!(api.unauthorized(), 0, "the layer's key, not the decoy");

    // Rotated: the new key in the file, the old one revoked at once.
    write_key(&path, NEW);
    api.accept(NEW);
    api.revoke(OLD);
    let chat = CreateChatCompletionRequestArgs::default()
        .model(MODELS[1])
        .messages([ChatCompletionRequestUserMessage::from("Hello").into()])
        .build()
        .unwrap();
    let reply = openai.chat().create(chat).await.unwrap();
    assert_eq!(
        reply.choices[0].message.content.as_deref(),
        Some("The stand-in API says hello.")
    );
    assert_eq!(api.unauthorized(), 1, "one 401, then the replay");
    assert_eq!(api.requests(), 3);
    assert_eq!(handle.status().replays(), 1);
    assert_eq!(handle.fingerprint().as_deref(), Some("sk-…1111"));
    assert_eq!(
        rotated.lock().unwrap().len(),
        2,
        "{:?}",
        rotated.lock().unwrap()
    );
}

#[tokio::test]
async fn a_404_is_async_openais_own_error() {
    let api = StandInApi::start(&[OLD]).await;
    let (_dir, path) = key_file(OLD);
    let openai = client(
        BearerAuthLayer::new(FileKeySource::new(&path)),
        &api.base_url(),
    );
    let err = openai.models().retrieve("no-such-model").await.unwrap_err();
    let OpenAIError::ApiError(response) = err else {
        panic!("not an ApiError: {err:?}");
    };
    assert_eq!(response.status_code, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(response.api_error.code.as_deref(), Some("model_not_found"));
    assert_eq!(api.unauthorized(), 0);
}

#[tokio::test]
async fn the_layers_own_errors_are_boxed_and_nothing_is_sent() {
    let api = StandInApi::start(&[OLD]).await;
    let (dir, path) = key_file(OLD);

    // Out of scope: refused when the request is built, before it leaves.
    let scoped =
        BearerAuthLayer::new(FileKeySource::new(&path)).restrict_to_hosts(["api.azerion.ai"]);
    let err = client(scoped, &api.base_url())
        .models()
        .list()
        .await
        .unwrap_err();
    let OpenAIError::Boxed(boxed) = &err else {
        panic!("not boxed: {err:?}");
    };
    let refused = boxed.downcast_ref::<ScopeError>().expect("a ScopeError");
    assert_eq!(refused.host(), Some("127.0.0.1"));

    // No key: a KeyError naming the file, never a request with the decoy.
    let missing = BearerAuthLayer::new(FileKeySource::new(dir.path().join("missing")));
    let err = client(missing, &api.base_url())
        .models()
        .list()
        .await
        .unwrap_err();
    let OpenAIError::Boxed(boxed) = &err else {
        panic!("not boxed: {err:?}");
    };
    let key_error = boxed.downcast_ref::<KeyError>().expect("a KeyError");
    assert!(key_error.to_string().contains("missing"), "{key_error}");
    assert_eq!(api.requests(), 0);
}

/// A server for `POST /v1/files` that reads the whole multipart body and answers 401 to any
/// key but the accepted one; it records each request's key and body.
async fn files_server(
    accepted: Arc<Mutex<String>>,
) -> (SocketAddr, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let addr = support::serve(move |req: http::Request<hyper::body::Incoming>| {
        let (accepted, sink) = (accepted.clone(), sink.clone());
        async move {
            let token = support::bearer(&req).unwrap_or_default();
            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
            sink.lock().unwrap().push((token.clone(), body));
            if *accepted.lock().unwrap() != token {
                return support::respond(
                    401,
                    r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                );
            }
            support::respond(
                200,
                r#"{"id":"file-1","object":"file","bytes":11,"created_at":1700000000,"filename":"train.jsonl","purpose":"fine-tune"}"#,
            )
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test]
async fn a_multipart_upload_is_rebuilt_for_the_replay() {
    let accepted = Arc::new(Mutex::new(OLD.to_owned()));
    let (addr, seen) = files_server(accepted.clone()).await;
    let (dir, path) = key_file(OLD);
    let upload = dir.path().join("train.jsonl");
    std::fs::write(&upload, "{\"a\":\"b\"}\n").unwrap();
    let openai = client(
        BearerAuthLayer::new(FileKeySource::new(&path)),
        &format!("http://{addr}/v1"),
    );
    let request = || CreateFileRequest {
        file: FileInput::from(upload.as_path()),
        purpose: FilePurpose::FineTune,
        expires_after: None,
    };
    openai.files().create(request()).await.unwrap();

    write_key(&path, NEW);
    *accepted.lock().unwrap() = NEW.to_owned();
    let file = openai.files().create(request()).await.unwrap();
    assert_eq!(file.id, "file-1");
    let seen = seen.lock().unwrap();
    let tokens: Vec<_> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tokens, [OLD, OLD, NEW]);
    // The file was read again for the replay: each body the server read holds it whole.
    for (_, body) in &seen[1..] {
        let body = String::from_utf8_lossy(body);
        assert!(body.contains("{\"a\":\"b\"}\n"), "{body}");
        assert!(body.contains("filename=\"train.jsonl\""), "{body}");
    }
}
