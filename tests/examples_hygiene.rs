//! The examples are what people copy: a check of their sources that they show the safe way.
//! (They run in CI; their behaviour against real servers is tested through
//! `examples/support/`, shared with the integration tests.)

use std::path::Path;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn no_example_prints_a_raw_error_body() {
    // `ApiError`'s Display is the redacted, one-line message; the raw body may echo the key.
    for name in [
        "quickstart.rs",
        "azerion_models.rs",
        "custom_key_source.rs",
        "vault.rs",
        "axum_gateway.rs",
        "credential_helper.rs",
        "oauth2_client_credentials.rs",
        "grpc_client.rs",
        "async_openai_azerion.rs",
    ] {
        let source = example(name);
        for raw in ["api.body()", "api_error.body()", ".body())"] {
            for line in source.lines().filter(|l| l.contains(raw)) {
                let code = line.split("//").next().unwrap_or_default();
                assert!(
                    !(code.contains("print") || code.contains("from_utf8_lossy")),
                    "{name} prints a raw error body: {line}"
                );
            }
        }
    }
}

#[test]
fn the_custom_source_example_sets_scope_timeout_and_a_body_cap() {
    let source = example("custom_key_source.rs");
    for needle in [".restrict_to_hosts(", ".load_timeout(", "Limited::new("] {
        assert!(
            source.contains(needle),
            "custom_key_source.rs does not show {needle}"
        );
    }
}
