//! `OAuth2ClientCredentials` against a real authorization server (oxide-auth behind axum, on
//! loopback, `tests/support/oauth2_server/`): what each refusal and outage becomes, that no
//! error, `Debug` string or log line holds the secret or a token, what goes on the wire, and
//! the configuration checks of `build`.

#[path = "support/oauth2_client.rs"]
mod oauth2_client;
#[path = "support/oauth2_server/mod.rs"]
mod oauth2_server;
mod support;

use std::time::Duration;

use oauth2_client::*;
use oauth2_server::{AuthServer, Setup, CLIENT_ID, CLIENT_SECRET};
use tower_bearer::{
    BearerAuthLayer, KeyErrorKind, KeySource, OAuth2ClientAuth, OAuth2ClientCredentials,
    OAuth2ClientCredentialsBuilder,
};

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_secret_is_denied_with_the_servers_code() {
    let (dispatch, logs) = support::logs::capture();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let server = AuthServer::start(Setup::default()).await;
    let wrong = "WrongSecretWrongSecret42";
    let built = source(&server).client_secret(wrong).build().unwrap();
    let err = built.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    let msg = err.to_string();
    let origin = format!(
        "oauth2 token endpoint {} (client {CLIENT_ID})",
        server.token_url()
    );
    assert!(msg.starts_with(&origin), "{msg}");
    assert!(msg.contains("(invalid_client)"), "{msg}");
    assert!(msg.contains("HTTP 401"), "{msg}");
    // Through the layer: the request fails with the same error, and nothing reaches the API.
    let (client, handle) = client(BearerAuthLayer::new(built.clone()));
    let err = key_error(call(&client, &server).await);
    assert_eq!(err.kind(), KeyErrorKind::Denied);
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert_eq!(server.api_seen().len(), 0);
    let everything = format!(
        "{err} {err:?} {built:?} {:?} {:?} {}",
        handle.status(),
        source(&server).client_secret(wrong),
        logs.text()
    );
    secret_free(&everything, &server, &[wrong]);
    assert!(!logs.text().is_empty(), "the failure was logged");
}

#[tokio::test]
async fn credentials_in_the_body_scopes_and_params_reach_the_server() {
    let server = AuthServer::start(Setup {
        credentials_in_body: true,
        secret: "p@ss w/rd&more=+%".into(),
        ..Setup::default()
    })
    .await;
    let source = source(&server)
        .client_secret("p@ss w/rd&more=+%")
        .client_auth(OAuth2ClientAuth::RequestBody)
        .scope("reports.read")
        .param("audience", "https://api.example.com/")
        .param("resource", "urn:a")
        .param("resource", "urn:b")
        .build()
        .unwrap();
    let key = source.load().await.unwrap();
    assert_eq!(key.expose_secret(), server.issued()[0]);
    let request = &server.requests()[0];
    assert_eq!(request.authorization, None);
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(&str, &str)> = request
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        form,
        [
            ("grant_type", "client_credentials"),
            ("scope", "invoices reports.read"),
            ("audience", "https://api.example.com/"),
            ("resource", "urn:a"),
            ("resource", "urn:b"),
            ("client_id", CLIENT_ID),
            ("client_secret", "p@ss w/rd&more=+%"),
        ]
    );
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_first() {
    let server = AuthServer::start(Setup::default()).await;
    let source = source(&server)
        .client_secret("p@ss w/rd:1")
        .build()
        .unwrap();
    // oxide-auth compares the Basic password as sent, so it refuses the encoded form of a
    // secret with such characters (`OAuth2ClientAuth::Basic` says so); what matters here is
    // what went on the wire.
    let _ = source.load().await;
    let basic = server.requests()[0].authorization.clone().unwrap();
    assert_eq!(
        basic,
        format!(
            "Basic {}",
            base64(&format!("{CLIENT_ID}:p%40ss+w%2Frd%3A1"))
        )
    );
    let form = &server.requests()[0].form;
    assert!(form
        .iter()
        .all(|(k, _)| k != "client_secret" && k != "client_id"));
}

#[tokio::test]
async fn refusals_and_outages_have_their_kinds() {
    let server = AuthServer::start(Setup::default()).await;
    // The server takes credentials by Basic only: in the body they are an invalid request.
    let err = source(&server)
        .client_auth(OAuth2ClientAuth::RequestBody)
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Config, "{err}");
    assert!(err.to_string().contains("(invalid_request)"), "{err}");
    // An unknown client.
    let err = source(&server)
        .client_id("nobody")
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    // 503 with Retry-After, 429 without.
    server.fail_with(503, Some("7"));
    let err = source(&server).build().unwrap().load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("down for maintenance"), "{err}");
    server.fail_with(429, None);
    let err = source(&server).build().unwrap().load().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.retry_after()),
        (KeyErrorKind::Unavailable, None)
    );
    server.recover();
    source(&server).build().unwrap().load().await.unwrap();
    // Nothing listening.
    let closed = support::closed_port().await;
    let err = OAuth2ClientCredentials::builder()
        .token_url(format!("http://{closed}/oauth2/token"))
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn over_https_with_a_private_ca() {
    let server = AuthServer::start(Setup {
        tls: true,
        ..Setup::default()
    })
    .await;
    assert!(server.token_url().starts_with("https://127.0.0.1:"));
    let key = source(&server)
        .ca_cert(AuthServer::ca_cert())
        .build()
        .unwrap()
        .load()
        .await
        .unwrap();
    assert_eq!(key.expose_secret(), server.issued()[0]);
    // Without the CA, the public roots do not know the certificate.
    let err = source(&server).build().unwrap().load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn the_secret_from_a_variable_is_read_at_each_load() {
    let _env = support::env_lock().await;
    let var = "TOWER_BEARER_TEST_OAUTH2_CLIENT_SECRET";
    let server = AuthServer::start(Setup::default()).await;
    let source = source(&server).client_secret_env(var).build().unwrap();
    std::env::remove_var(var);
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("client secret variable {var}: is not set")),
        "{err}"
    );
    assert_eq!(server.token_requests(), 0);
    std::env::set_var(var, CLIENT_SECRET);
    source.load().await.unwrap();
    std::env::set_var(var, "NotTheSecretAnyMore");
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    std::env::remove_var(var);
    secret_free(
        &format!("{err} {err:?} {source:?}"),
        &server,
        &["NotTheSecretAnyMore"],
    );
}

#[test]
fn clear_text_to_another_host_is_refused_at_build() {
    let err = OAuth2ClientCredentials::builder()
        .token_url("http://auth.example.com/oauth2/token")
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Config);
    assert_eq!(
        err.to_string(),
        "oauth2 client credentials configuration: token URL http://auth.example.com/oauth2/token: \
         plain http:// to auth.example.com, which is not loopback, would send the client secret \
         in clear text; use https:// or allow_insecure_http(true)"
    );
    OAuth2ClientCredentials::builder()
        .token_url("http://auth.example.com/oauth2/token")
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .allow_insecure_http(true)
        .build()
        .unwrap();
}

#[test]
fn every_configuration_mistake_is_a_clear_config_error() {
    let ok = || {
        OAuth2ClientCredentials::builder()
            .token_url("https://auth.example.com/oauth2/token")
            .client_id(CLIENT_ID)
            .client_secret(CLIENT_SECRET)
    };
    let cases: Vec<(OAuth2ClientCredentialsBuilder, &str)> = vec![
        (OAuth2ClientCredentials::builder(), "no token URL"),
        (ok().token_url("  "), "no token URL"),
        (ok().token_url("not a url"), "is not a URL"),
        (ok().token_url("/oauth2/token"), "must be absolute"),
        (ok().token_url("ftp://auth.example.com/t"), "scheme must be http or https"),
        (ok().client_id(" "), "no client id"),
        (ok().client_id("a\nb"), "control character"),
        (
            OAuth2ClientCredentials::builder()
                .token_url("https://auth.example.com/t")
                .client_id(CLIENT_ID),
            "no client secret: call .client_secret(..), .client_secret_file(..) or .client_secret_env(..)",
        ),
        (ok().client_secret(" "), "the client secret is empty"),
        (ok().client_secret_env(""), "is not a variable name"),
        (ok().scope("a\\b"), "RFC 6749 section 3.3"),
        (ok().param("scope", "x"), "use .scope(..)"),
        (ok().param("client_secret", "x"), "the source sets client_secret itself"),
        (ok().param("", "x"), "a parameter needs a name"),
        (ok().timeout(Duration::ZERO), "timeout must be more than zero"),
        (ok().default_lifetime(Duration::ZERO), "default_lifetime must be more than zero"),
        (ok().ca_cert("/nonexistent/ca.pem"), "CA certificate file /nonexistent/ca.pem"),
    ];
    for (builder, needle) in cases {
        let debug = format!("{builder:?}");
        assert!(!debug.contains(CLIENT_SECRET), "{debug}");
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Config, "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("oauth2 client credentials configuration: "),
            "{msg}"
        );
        assert!(msg.contains(needle), "{msg:?} does not say {needle:?}");
        assert!(!msg.contains(CLIENT_SECRET), "{msg}");
    }
}
