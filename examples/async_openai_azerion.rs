//! async-openai against the Azerion AI API, the key from the bearer layer, with no key and no
//! network:
//!
//! ```sh
//! cargo run --example async_openai_azerion --features async-openai
//! ```
//!
//! It starts a stand-in for the Azerion AI API on 127.0.0.1, keeps the key in a file, lists the
//! models and asks for a chat completion through an `async_openai::Client` whose middleware
//! stack has `AuthLayer` in it, rotates the key (the old one revoked at once), lists them again
//! — healed through one 401 — and shows a 404 as async-openai's own error.
//!
//! With a real key, the same client calls the real API over TLS:
//!
//! ```sh
//! AZERION_API_KEY=sk-... cargo run --example async_openai_azerion --features async-openai -- --live
//! ```

mod support;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use tower::ServiceBuilder;
use tower_bearer::async_openai::AuthLayer;
use tower_bearer::{azerion, BearerAuthLayer, FileKeySource};

use support::stand_in::{StandInApi, MODELS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // reqwest's TLS without a provider of its own: ring, as the rest of this crate uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::args().any(|a| a == "--live") {
        return live().await;
    }

    // 1. A stand-in for https://api.azerion.ai/v1 on a random port of 127.0.0.1.
    let first_key = new_key();
    let api = StandInApi::start(&[&first_key]).await;
    println!("1. Started a stand-in Azerion API at {}", api.base_url());

    // 2. The key lives in a file, never in the code.
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("azerion-api-key");
    write_key(&key_file, &first_key)?;
    println!("2. Wrote the API key to {}", key_file.display());

    // 3. async-openai with the layer in its middleware stack. The config holds no key: the
    //    layer's replaces whatever it would send.
    let layer = BearerAuthLayer::new(FileKeySource::new(&key_file))
        .restrict_to_hosts(["127.0.0.1"]) // the key goes nowhere else
        .on_rotate(|event| println!("   on_rotate: {event}"));
    let openai = client(AuthLayer::new(layer), &api.base_url());

    let models = openai.models().list().await?;
    let ids: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    println!("3. Models: {ids:?}");
    let reply = chat(&openai, MODELS[1]).await?;
    println!("   Chat completion: {reply}");

    // 4. Rotate: a new key in the file, the old one revoked at the API at once.
    let second_key = new_key();
    write_key(&key_file, &second_key)?;
    api.accept(&second_key);
    api.revoke(&first_key);
    println!("4. Rotated the key; the old one is revoked");

    // 5. The same client: a 401, a reload, one replay (rebuilt by async-openai's factory).
    let models = openai.models().list().await?;
    println!(
        "5. Models again: {} (healed; the API answered {} request(s) with 401)",
        models.data.len(),
        api.unauthorized()
    );

    // 6. Errors other than a healed 401 are async-openai's own.
    match openai.models().retrieve("no-such-model").await {
        Err(OpenAIError::ApiError(error)) => println!(
            "6. A missing model: HTTP {}, code {:?}",
            error.status_code.as_u16(),
            error.api_error.code
        ),
        other => println!("6. Unexpected: {other:?}"),
    }
    Ok(())
}

/// An async-openai client for `base`, its requests through `auth`.
fn client(auth: AuthLayer, base: &str) -> Client<OpenAIConfig> {
    let service = ServiceBuilder::new()
        .layer(auth)
        .service(ReqwestService::new(reqwest::Client::new()));
    let config = OpenAIConfig::new().with_api_base(base).with_api_key("");
    Client::with_config(config).with_http_service(service)
}

async fn chat(openai: &Client<OpenAIConfig>, model: &str) -> Result<String, OpenAIError> {
    let request = CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessage::from("Say hello in five words.").into()])
        .max_completion_tokens(32u32)
        .build()?;
    let response = openai.chat().create(request).await?;
    Ok(response
        .choices
        .into_iter()
        .next()
        .and_then(|choice| choice.message.content)
        .unwrap_or_default())
}

/// The real API: the key from `AZERION_API_KEY` (or `AZERION_API_KEY_FILE`), sent to
/// `api.azerion.ai` only, over TLS.
async fn live() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let auth = AuthLayer::new(azerion::layer());
    if let Err(err) = auth.handle().ready().await {
        eprintln!("No API key: {err}");
        std::process::exit(1);
    }
    let openai = client(auth, azerion::BASE_URL);
    let models = match openai.models().list().await {
        Ok(models) => models,
        Err(OpenAIError::ApiError(error)) => {
            // The status and the code only: a server's message may echo the key.
            eprintln!(
                "Error: HTTP {}, code {:?}",
                error.status_code.as_u16(),
                error.api_error.code
            );
            std::process::exit(1);
        }
        Err(err) => return Err(err.into()),
    };
    for model in &models.data {
        println!("{}", model.id);
    }
    let model = std::env::var("AZERION_MODEL")
        .ok()
        .or_else(|| models.data.first().map(|m| m.id.clone()));
    if let Some(model) = model {
        println!("{model}: {}", chat(&openai, &model).await?);
    }
    Ok(())
}

/// A fresh key, different at every run.
fn new_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("sk-standin-{nanos:024}")
}

fn write_key(path: &Path, key: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{key}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
