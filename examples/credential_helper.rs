//! The key from a credential helper program, with no key and no network:
//!
//! ```sh
//! cargo run --example credential_helper
//! ```
//!
//! It starts a stand-in for the Azerion AI API on 127.0.0.1 and writes a small helper script
//! (as `gcloud auth print-access-token`, `az account get-access-token` or a company tool
//! would be) that prints an OAuth2 token response: the token, and how long it lives. The layer
//! runs the helper once for 20 concurrent requests (single flight), then again when the token
//! is rotated and revoked (one 401, healed).
//!
//! Any program works: plain text (one line), a Kubernetes `ExecCredential` or an OAuth2 token
//! response on stdout. Unix only, for the `#!/bin/sh` script.

mod support;

#[cfg(unix)]
#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    demo::run().await
}

#[cfg(not(unix))]
fn main() {
    println!("This example writes a #!/bin/sh helper script: run it on Linux or macOS.");
}

#[cfg(unix)]
mod demo {
    use std::path::Path;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use bytes::Bytes;
    use http::Request;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::{BoxError, ServiceBuilder, ServiceExt};
    use tower_bearer::{BearerAuthLayer, CommandKeySource};

    use super::support::stand_in::StandInApi;

    /// The helper: prints the token the "identity provider" (this example) last issued, as an
    /// OAuth2 token response, and notes each run. Its stderr would be quoted (one line,
    /// redacted) in an error if it failed; its stdout never is.
    const HELPER: &str = r#"#!/bin/sh
echo run >> "$DEMO_RUNS"
token=$(cat "$DEMO_TOKEN_FILE") || exit 1
printf '{"access_token":"%s","token_type":"Bearer","expires_in":3600}\n' "$token"
"#;

    pub(super) async fn run() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let (token_file, runs) = (dir.path().join("token"), dir.path().join("runs"));

        // 1. A stand-in API, and the token it accepts, where the helper will find it.
        let first = new_token(1);
        let api = StandInApi::start(&[&first]).await;
        write_private(&token_file, &first)?;
        println!("1. Started a stand-in Azerion API at {}", api.base_url());

        // 2. The helper script (a real one would be installed, not written here).
        let helper = dir.path().join("print-token");
        write_private(&helper, HELPER)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700))?;
        }
        println!("2. Wrote the credential helper {}", helper.display());

        // 3. The layer: the helper runs with no shell, its own variables on top of ours, and
        //    is killed if it takes more than 5 s.
        let source = CommandKeySource::new(&helper)
            .env("DEMO_TOKEN_FILE", &token_file)
            .env("DEMO_RUNS", &runs)
            .timeout(Duration::from_secs(5));
        let auth = BearerAuthLayer::new(source)
            .restrict_to_hosts(["127.0.0.1"])
            .on_rotate(|event| println!("   on_rotate: {event}"));
        let client = ServiceBuilder::new()
            .layer(auth)
            .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
        let models = format!("{}/models", api.base_url());
        let get = || Request::get(&models).body(Empty::<Bytes>::new());

        // 4. Twenty requests at once: the helper runs once.
        let requests = (0..20).map(|_| {
            let client = client.clone();
            let request = get();
            async move { client.oneshot(request?).await }
        });
        let mut ok = 0;
        for response in futures_util::future::join_all(requests).await {
            ok += usize::from(response?.status() == 200);
        }
        println!(
            "3. 20 concurrent requests: {ok} answered 200; the helper ran {} time(s)",
            count_runs(&runs)
        );

        // 5. The provider rotates the token and revokes the old one at once.
        let second = new_token(2);
        write_private(&token_file, &second)?;
        api.accept(&second);
        api.revoke(&first);
        let status = client.clone().oneshot(get()?).await?.status();
        println!(
            "4. After a rotation: {status}, healed through {} 401; the helper ran {} time(s) in all",
            api.unauthorized(),
            count_runs(&runs)
        );
        Ok(())
    }

    fn count_runs(runs: &Path) -> usize {
        std::fs::read_to_string(runs).map_or(0, |text| text.lines().count())
    }

    /// A fresh demo token. Real ones come from the identity provider.
    fn new_token(n: u64) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "tok-helper-{n}-{:016x}",
            nanos as u64 ^ 0x5eed_5eed_5eed_5eed
        )
    }

    /// Writes `contents` readable by its owner only.
    fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
}
