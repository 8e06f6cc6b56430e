//! Bad input, one table: keys that break each validation rule, key files and environment
//! variables that are wrong in every way, Retry-After values that must be ignored, and error
//! bodies that are cut, not UTF-8, absurdly nested or 100 MiB long.
//!
//! Every case runs in its own task (a panic is reported with the case's name) and must give
//! an error (or, for Retry-After, an `ApiError` with the value ignored) whose `Display` or
//! `Debug` names what was wrong, and that shows no more than 7 characters of the secret.

#![cfg(all(feature = "env", feature = "file"))]

mod support;
#[cfg(feature = "vault")]
#[path = "support/vault_server.rs"]
mod vault_server;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{
    ApiError, ApiKey, EnvKeySource, ErrorMappingLayer, FileKeySource, KeyErrorKind, KeySource,
    MAX_KEY_LEN,
};

/// The secret part of the keys below: no case may show 8 consecutive characters of it.
const SECRET: &str = "0123456789abcdefXYZ";
const KEY: &str = "sk-0123456789abcdefXYZ";

/// The file source reads at most this much of a file.
const FILE_READ_CAP: usize = 64 * 1024;
const HUGE: u64 = 100 * 1024 * 1024;

enum Input {
    Key(String),
    File(FileCase),
    Env(EnvCase),
    /// `(header name, raw value)` pairs on a 429.
    RetryAfter(Vec<(&'static str, Vec<u8>)>),
    /// A status and a whole body, through `ApiError::new`.
    ErrorBody(u16, Vec<u8>),
    /// A 100 MiB error body from a loopback server, through `ErrorMappingLayer`.
    HugeErrorBodyOverLoopback,
    /// What the fixture Vault answers to every read of the KV `version` mount: a `VaultKeySource`
    /// (token auth, field `api_key`) loads from it.
    #[cfg(feature = "vault")]
    Vault {
        version: u8,
        status: u16,
        body: String,
    },
}

enum FileCase {
    Contents(Vec<u8>),
    /// A sparse file of 100 MiB (`set_len`): nothing but NUL bytes.
    Sparse100MiB,
    /// A FIFO whose writer offers 100 MiB: counts what the source actually read.
    Fifo,
    Directory,
    Missing,
}

enum EnvCase {
    Unset,
    Value(&'static str),
    NotUnicode,
}

struct Case {
    name: &'static str,
    input: Input,
    /// Each must appear in the error's `Display` or `Debug`.
    expect: &'static [&'static str],
    kind: Option<KeyErrorKind>,
}

fn case(
    name: &'static str,
    input: Input,
    kind: Option<KeyErrorKind>,
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        input,
        expect,
        kind,
    }
}

fn key(raw: impl Into<String>) -> Input {
    Input::Key(raw.into())
}

fn file(contents: impl Into<Vec<u8>>) -> Input {
    Input::File(FileCase::Contents(contents.into()))
}

fn retry_after(name: &'static str, value: &[u8]) -> Input {
    Input::RetryAfter(vec![(name, value.to_vec())])
}

fn cases() -> Vec<Case> {
    use KeyErrorKind::*;
    let invalid = Some(Invalid);
    vec![
        // Keys: every validation rule.
        case("key: empty", key(""), invalid, &["the key is empty"]),
        case("key: whitespace only", key(" \t  "), invalid, &["only whitespace"]),
        case(
            "key: 4 KiB + 1",
            key(format!("sk-{SECRET}{}", "k".repeat(MAX_KEY_LEN + 1 - 3 - SECRET.len()))),
            invalid,
            &["4097 bytes long", "limit of 4096 bytes"],
        ),
        case("key: pasted Bearer prefix", key(format!("Bearer {KEY}")), invalid, &["\"Bearer \" prefix"]),
        case("key: pasted bearer prefix, lower case", key(format!("bearer {KEY}")), invalid, &["\"Bearer \" prefix"]),
        case("key: CR LF (header injection)", key(format!("{KEY}\r\nX-Evil: 1")), invalid, &["carriage return (CR) at byte 22"]),
        case("key: trailing LF", key(format!("{KEY}\n")), invalid, &["line feed (LF) at byte 22"]),
        case("key: NUL", key("sk-0123\x00456789abcdefXYZ"), invalid, &["NUL byte at byte 7"]),
        case("key: tab", key(format!("{KEY}\t")), invalid, &["a tab at byte 22"]),
        case("key: DEL", key(format!("sk-\u{7f}{SECRET}")), invalid, &["DEL character at byte 3"]),
        case("key: inner space", key(format!("sk- {SECRET}")), invalid, &["a space at byte 3"]),
        case("key: leading space", key(format!(" {KEY}")), invalid, &["a space at byte 0"]),
        case("key: escape (control)", key(format!("{KEY}\u{1b}[0m")), invalid, &["control character at byte 22"]),
        case("key: Cyrillic look-alike a", key(format!("sk-{SECRET}а")), invalid, &["non-ASCII character at byte 22"]),
        case("key: fullwidth sk", key(format!("ｓｋ-{SECRET}")), invalid, &["non-ASCII character at byte 0"]),
        case("key: zero-width space", key(format!("sk-\u{200b}{SECRET}")), invalid, &["non-ASCII character at byte 3"]),
        case("key: no-break space", key(format!("sk-{SECRET}\u{a0}")), invalid, &["non-ASCII character at byte 22"]),
        case("key: BOM", key(format!("\u{feff}{KEY}")), invalid, &["non-ASCII character at byte 0"]),
        // Files.
        case("file: binary, not UTF-8", file(b"\xff\xfe\x00sk-0123456789abcdefXYZ".to_vec()), Some(Unreadable), &["is not UTF-8 text (invalid byte at offset 0)"]),
        case("file: binary, NUL inside UTF-8", file("sk-0123\x00456789abcdefXYZ\n"), invalid, &["NUL byte at byte 7"]),
        case("file: UTF-8 BOM before the key", file(format!("\u{feff}{KEY}\n")), invalid, &["non-ASCII character at byte 0"]),
        case("file: two keys on two lines", file(format!("{KEY}\nsk-second-0123456789abcdef\n")), invalid, &["more than one line"]),
        case("file: empty", file(Vec::new()), Some(Missing), &["is empty"]),
        case("file: only newlines", file(b"\n\r\n\n".to_vec()), Some(Missing), &["is empty"]),
        case("file: 64 KiB + 1", file(vec![b'k'; FILE_READ_CAP + 1]), invalid, &["larger than 65536 bytes"]),
        case("file: 100 MiB sparse", Input::File(FileCase::Sparse100MiB), invalid, &["larger than 65536 bytes"]),
        // Nobody writes: opening it the usual way would block a thread for good.
        case("file: a FIFO", Input::File(FileCase::Fifo), Some(Unreadable), &["not a regular file"]),
        case("file: a directory", Input::File(FileCase::Directory), Some(Unreadable), &["is a directory, not a file"]),
        case("file: missing", Input::File(FileCase::Missing), Some(Missing), &["does not exist"]),
        // Environment variables.
        case("env: unset", Input::Env(EnvCase::Unset), Some(Missing), &["is not set"]),
        case("env: empty", Input::Env(EnvCase::Value("")), Some(Missing), &["is set but empty"]),
        case("env: whitespace", Input::Env(EnvCase::Value("   ")), invalid, &["only whitespace"]),
        case("env: trailing newline", Input::Env(EnvCase::Value("sk-0123456789abcdefXYZ\n")), invalid, &["line feed (LF) at byte 22"]),
        case("env: not unicode", Input::Env(EnvCase::NotUnicode), Some(Unreadable), &["is not valid Unicode"]),
        // Retry-After: each ignored (no error of its own: the retry falls back to its backoff).
        case("retry-after: negative", retry_after("retry-after", b"-1"), None, &["retry_after: None"]),
        case("retry-after: NaN", retry_after("retry-after", b"NaN"), None, &["retry_after: None"]),
        case("retry-after: infinity", retry_after("retry-after", b"inf"), None, &["retry_after: None"]),
        case("retry-after: exponent", retry_after("retry-after", b"1e999"), None, &["retry_after: None"]),
        // (a wait over the cap is not bad input: it is kept, see transient_retry's long waits)
        case("retry-after: garbage", retry_after("retry-after", b"soon, maybe"), None, &["retry_after: None"]),
        case("retry-after: date in the past", retry_after("retry-after", b"Wed, 21 Oct 2015 07:28:00 GMT"), None, &["retry_after: None"]),
        case("retry-after: impossible date", retry_after("retry-after", b"Wed, 32 Oct 2015 07:28:00 GMT"), None, &["retry_after: None"]),
        case("retry-after: not UTF-8", retry_after("retry-after", b"\xff\xfe1"), None, &["retry_after: None"]),
        case("retry-after-ms: negative", retry_after("retry-after-ms", b"-500"), None, &["retry_after: None"]),
        // Error bodies.
        case("error body: truncated JSON", Input::ErrorBody(500, br#"{"error":{"message":"upstream fail"#.to_vec()), None, &["HTTP 500 Internal Server Error (server error)", "message: None", "body_len: 34"]),
        case("error body: invalid UTF-8 in JSON", Input::ErrorBody(400, b"{\"error\":{\"message\":\"bad \xff\xfe\"}}".to_vec()), None, &["HTTP 400 Bad Request (bad request)", "message: None"]),
        case("error body: invalid UTF-8, not JSON", Input::ErrorBody(502, b"\xff\xfe\xfd<html>".to_vec()), None, &["HTTP 502 Bad Gateway (server error)", "message: None"]),
        case("error body: nested 100,000 deep", Input::ErrorBody(500, format!("{}1{}", "{\"error\":".repeat(100_000), "}".repeat(100_000)).into_bytes()), None, &["HTTP 500", "message: None"]),
        case("error body: echoes the key", Input::ErrorBody(401, format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. Also Bearer {KEY}","code":"{KEY}"}}}}"#).into_bytes()), None, &["Incorrect API key provided: [redacted] Also Bearer [redacted]"]),
        case("error body: 100 MiB over loopback", Input::HugeErrorBodyOverLoopback, None, &["HTTP 500", "body_len: 65536", "body_truncated: true"]),
    ]
}

/// Vault answers with the wrong types, missing parts, huge or echoing bodies.
#[cfg(feature = "vault")]
fn vault_cases() -> Vec<Case> {
    use serde_json::{json, Value};
    use vault_server::{kv2_body, ROOT_TOKEN};
    use KeyErrorKind::*;
    let invalid = Some(Invalid);
    let kv2 = |status: u16, body: String| Input::Vault {
        version: 2,
        status,
        body,
    };
    let field = |value: Value| kv2(200, kv2_body("api_key", &value));
    let many: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("field_{i:05}"), Value::from(KEY)))
        .collect();
    vec![
        case("vault: data is an array", kv2(200, json!({"data": [KEY]}).to_string()), Some(Unreadable), &["\"data\" is an array, not an object"]),
        case("vault: data.data is a string", kv2(200, json!({"data": {"data": KEY, "metadata": {}}}).to_string()), Some(Unreadable), &["\"data.data\" is a string, not an object"]),
        case("vault: no data", kv2(200, json!({"request_id": "r-1", "warnings": null}).to_string()), Some(Unreadable), &["no \"data\" object"]),
        case("vault: data is null", kv2(200, json!({"data": null}).to_string()), Some(Unreadable), &["no \"data\" object"]),
        case("vault: a v1 answer on a v2 mount", kv2(200, json!({"data": {"api_key": KEY}}).to_string()), Some(Unreadable), &["no \"data.data\" object", "kv_version(1)"]),
        case("vault: field is a number", field(json!(42)), invalid, &["field \"api_key\" is a number, not a string"]),
        case("vault: field is null", field(Value::Null), invalid, &["field \"api_key\" is null, not a string"]),
        case("vault: field is a boolean", field(json!(true)), invalid, &["is a boolean, not a string"]),
        case("vault: field is an object holding the key", field(json!({"value": KEY})), invalid, &["is an object, not a string"]),
        case("vault: field is an array of keys", field(json!([KEY, KEY])), invalid, &["is an array, not a string"]),
        case("vault: field missing among 20,000 holding keys (800 KiB)", kv2(200, json!({"data": {"data": many, "metadata": {"version": 1}}}).to_string()), Some(Missing), &["has no field \"api_key\"", "field_00000", "and 19992 more"]),
        case("vault: value with a space", field(json!("sk-0123 456789abcdefXYZ")), invalid, &["field \"api_key\" does not hold a valid key", "a space at byte 7"]),
        case("vault: value with a Bearer prefix", field(json!(format!("Bearer {KEY}"))), invalid, &["\"Bearer \" prefix"]),
        case("vault: value of 5,000 bytes", field(json!(format!("{KEY}{}", "k".repeat(5000 - KEY.len())))), invalid, &["5000 bytes long"]),
        case("vault: value with a zero-width space", field(json!(format!("sk-\u{200b}{SECRET}"))), invalid, &["non-ASCII character at byte 3"]),
        case("vault: body nested 10,000 deep", kv2(200, format!("{}\"{KEY}\"{}", "{\"data\":".repeat(10_000), "}".repeat(10_000))), Some(Unreadable), &["not valid JSON"]),
        case("vault: body is an array", kv2(200, json!([{"data": {"data": {"api_key": KEY}}}]).to_string()), Some(Unreadable), &["the body is an array, not an object"]),
        case("vault: truncated JSON", kv2(200, format!("{{\"data\":{{\"data\":{{\"api_key\":\"{KEY}")), Some(Unreadable), &["ends early"]),
        case("vault: a v1 field that is a boolean, lease of the wrong type", Input::Vault { version: 1, status: 200, body: json!({"lease_duration": "soon", "data": {"api_key": true}}).to_string() }, invalid, &["kv/azerion", "is a boolean, not a string"]),
        case("vault: deleted version, version as a string", kv2(200, json!({"data": {"data": null, "metadata": {"version": "3", "deletion_time": "2026-01-01T00:00:00Z"}}}).to_string()), Some(Missing), &["the latest version of the secret was deleted at 2026-01-01T00:00:00Z"]),
        case("vault: an error body echoing the token and the key", kv2(500, json!({"errors": [format!("token {ROOT_TOKEN} may not read {KEY}")]}).to_string()), Some(Unavailable), &["server error", "HTTP 500"]),
        case("vault: an error body of the wrong shape", kv2(403, json!({"errors": {"permission": "denied"}, "warnings": [1, 2]}).to_string()), Some(Denied), &["permission denied (HTTP 403"]),
    ]
}

/// What a case produced.
struct Outcome {
    display: String,
    debug: String,
    kind: Option<KeyErrorKind>,
}

fn from_key_error(err: tower_bearer::KeyError) -> Outcome {
    Outcome {
        display: err.to_string(),
        debug: format!("{err:?}"),
        kind: Some(err.kind()),
    }
}

fn from_api_error(err: &ApiError) -> Outcome {
    Outcome {
        display: err.to_string(),
        debug: format!("{err:?}"),
        kind: None,
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

fn run(name: &'static str, input: Input, dir: PathBuf) -> BoxFuture {
    Box::pin(async move {
        match input {
            Input::Key(raw) => from_key_error(ApiKey::new(raw).expect_err(name)),
            Input::File(case) => {
                let path = dir.join("api-key");
                match case {
                    FileCase::Contents(bytes) => {
                        std::fs::write(&path, bytes).unwrap();
                    }
                    FileCase::Sparse100MiB => {
                        std::fs::File::create(&path).unwrap().set_len(HUGE).unwrap();
                    }
                    FileCase::Fifo => {
                        make_fifo(&path);
                    }
                    FileCase::Directory => {
                        std::fs::create_dir(&path).unwrap();
                    }
                    FileCase::Missing => {}
                }
                let source = FileKeySource::new(&path);
                let err = tokio::time::timeout(Duration::from_secs(20), source.load())
                    .await
                    .expect("the file source gave up in time")
                    .expect_err(name);
                let outcome = from_key_error(err);
                let origin = format!("key file {}: ", path.display());
                assert!(
                    outcome.display.starts_with(&origin),
                    "{name}: {}",
                    outcome.display
                );
                outcome
            }
            Input::Env(case) => {
                // A variable of this case's own: tests run in parallel.
                let var = format!("TOWER_BEARER_BAD_INPUT_{}", fastrand::u64(..));
                match case {
                    EnvCase::Unset => {}
                    EnvCase::Value(v) => std::env::set_var(&var, v),
                    EnvCase::NotUnicode => set_not_unicode(&var),
                }
                let err = EnvKeySource::new(var.clone()).load().await.expect_err(name);
                std::env::remove_var(&var);
                let outcome = from_key_error(err);
                let origin = format!("environment variable {var}: ");
                assert!(
                    outcome.display.starts_with(&origin),
                    "{name}: {}",
                    outcome.display
                );
                outcome
            }
            Input::RetryAfter(pairs) => {
                let mut headers = HeaderMap::new();
                for (header, value) in pairs {
                    headers.append(header, HeaderValue::from_bytes(&value).unwrap());
                }
                let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, headers, Bytes::new());
                assert_eq!(err.retry_after(), None, "{name}");
                assert_eq!(err.to_string(), "HTTP 429 Too Many Requests (rate limited)");
                from_api_error(&err)
            }
            Input::ErrorBody(status, body) => {
                let status = StatusCode::from_u16(status).unwrap();
                let err = ApiError::new(status, HeaderMap::new(), Bytes::from(body));
                from_api_error(&err)
            }
            Input::HugeErrorBodyOverLoopback => huge_error_body_over_loopback().await,
            #[cfg(feature = "vault")]
            Input::Vault {
                version,
                status,
                body,
            } => {
                let fixture = vault_server::VaultFixture::start().await;
                fixture.set_mode(vault_server::Mode::Fail(status, body));
                let source = tower_bearer::VaultKeySource::builder()
                    .address(fixture.url())
                    .token(vault_server::ROOT_TOKEN)
                    .mount(if version == 1 { "kv" } else { "secret" })
                    .kv_version(version)
                    .path("azerion")
                    .field("api_key")
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let err = source.load().await.expect_err(name);
                let outcome = from_key_error(err);
                let origin = format!("vault {} ", fixture.url());
                assert!(
                    outcome.display.starts_with(&origin),
                    "{name}: {}",
                    outcome.display
                );
                outcome
            }
        }
    })
}

#[cfg(unix)]
fn set_not_unicode(var: &str) {
    use std::os::unix::ffi::OsStrExt;
    std::env::set_var(
        var,
        std::ffi::OsStr::from_bytes(b"sk-0123\xff456789abcdefXYZ"),
    );
}

#[cfg(not(unix))]
fn set_not_unicode(var: &str) {
    // Windows variables are UTF-16; an unpaired surrogate is the non-Unicode case there.
    use std::os::windows::ffi::OsStringExt;
    std::env::set_var(var, std::ffi::OsString::from_wide(&[0x73, 0xd800, 0x6b]));
}

/// Makes `path` a FIFO and starts a thread that offers 100 MiB through it, 64 KiB at a time,
/// until the reader goes away. Returns the bytes the pipe took.
fn make_fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo (coreutils) runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

async fn huge_error_body_over_loopback() -> Outcome {
    let total_chunks = (HUGE as usize) / support::CHUNK_LEN;
    let (addr, produced, rx) = support::serve_huge_error(total_chunks, true).await;
    let client = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let result: Result<Response<_>, BoxError> = client.oneshot(req).await;
    let err = result.expect_err("a 500 maps to an error");
    let err = err.downcast_ref::<ApiError>().expect("an ApiError");
    assert_eq!(err.body().len(), 64 * 1024);
    assert!(err.body_truncated());
    let outcome = from_api_error(err);
    // The client stopped at the cap and closed the connection; the server's body goes with it.
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the server saw the connection close")
        .unwrap();
    let made = produced.load(Ordering::SeqCst);
    println!("100 MiB error body: the server made {made} of {total_chunks} chunks of 64 KiB");
    assert!(
        made < total_chunks / 4,
        "{made} of {total_chunks} chunks pulled"
    );
    outcome
}

/// Whether `text` shows any run of 8 consecutive characters of `secret`.
fn shows_more_than_7_chars(text: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .any(|w| text.contains(&w.iter().collect::<String>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gives_a_clear_error_without_the_secret() {
    // The environment cases set and read variables.
    let _env = support::env_lock().await;
    #[allow(unused_mut)]
    let mut cases = cases();
    #[cfg(feature = "vault")]
    cases.extend(vault_cases());
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let total = cases.len();
    for (
        i,
        Case {
            name,
            input,
            expect,
            kind,
        },
    ) in cases.into_iter().enumerate()
    {
        let case_dir = dir.path().join(i.to_string());
        std::fs::create_dir(&case_dir).unwrap();
        // Its own task: a panic is caught and reported with the case's name.
        let outcome = match tokio::spawn(run(name, input, case_dir)).await {
            Ok(outcome) => outcome,
            Err(join) => {
                failures.push(format!("{name}: panicked: {join}"));
                continue;
            }
        };
        let both = format!("{} | {}", outcome.display, outcome.debug);
        for needle in expect {
            if !both.contains(needle) {
                failures.push(format!("{name}: {needle:?} not in {both:?}"));
            }
        }
        if kind.is_some() && outcome.kind != kind {
            failures.push(format!("{name}: kind {:?}, want {kind:?}", outcome.kind));
        }
        if shows_more_than_7_chars(&both, SECRET) || both.contains("sk-01234") {
            failures.push(format!("{name}: leaks the secret: {both}"));
        }
        #[cfg(feature = "vault")]
        if shows_more_than_7_chars(&both, vault_server::ROOT_TOKEN) {
            failures.push(format!("{name}: leaks the Vault token: {both}"));
        }
        println!("{name}: {}", outcome.display);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
