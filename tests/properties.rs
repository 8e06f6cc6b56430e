//! Property tests of the public parsers the fuzz targets in `fuzz/` exercise, so CI checks the
//! same properties on stable Rust: key validation and the Retry-After parser. 256 cases each:
//! quick enough for `cargo test`. The parsers that are not public (error bodies, redaction,
//! Vault's answers) have theirs next to them, as unit tests.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::Empty;
use proptest::prelude::*;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bearer::retry::{parse_retry_after, MAX_RETRY_AFTER};
use tower_bearer::{ApiKey, BearerAuthLayer, KeyErrorKind, StaticKey, MAX_KEY_LEN};

/// Whether `text` shows any run of 8 consecutive characters of `secret`.
fn shows_more_than_7_chars(text: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .any(|w| text.contains(&w.iter().collect::<String>()))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any string: mostly visible ASCII (so many are valid keys), with the characters the rules
/// refuse mixed in: controls, spaces, look-alikes, zero-width and non-ASCII letters.
fn any_key_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[!-~]{1,24}",
        1 => Just(" ".to_owned()),
        1 => Just("\t".to_owned()),
        1 => Just("\r\n".to_owned()),
        1 => Just("\0".to_owned()),
        1 => Just("\u{7f}".to_owned()),
        1 => Just("\u{200b}".to_owned()),
        1 => Just("\u{a0}".to_owned()),
        1 => Just("а".to_owned()), // Cyrillic a
        1 => Just("ｓｋ".to_owned()), // fullwidth s k
        1 => Just("Bearer ".to_owned()),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// The rules, restated: non-empty, at most 4 KiB, visible ASCII only.
fn is_valid(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= MAX_KEY_LEN && raw.bytes().all(|b| b.is_ascii_graphic())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn key_validation_accepts_exactly_the_valid_keys(raw in any_key_text()) {
        match ApiKey::new(raw.as_str()) {
            Ok(key) => {
                prop_assert!(is_valid(&raw), "accepted {raw:?}");
                prop_assert_eq!(key.expose_secret(), raw.as_str());
            }
            Err(err) => {
                prop_assert!(!is_valid(&raw), "refused {raw:?}: {err}");
                prop_assert_eq!(err.kind(), KeyErrorKind::Invalid);
            }
        }
    }

    #[test]
    fn key_errors_never_contain_the_key(
        key in "[!-~]{8,40}",
        bad in prop_oneof![
            Just(" "), Just("\n"), Just("\r"), Just("\t"), Just("\0"), Just("\u{7f}"),
            Just("\u{1b}"), Just("\u{200b}"), Just("é"), Just("а"),
        ],
        at in 0usize..=40,
    ) {
        let at = at.min(key.len());
        let raw = format!("{}{bad}{}", &key[..at], &key[at..]);
        let err = ApiKey::new(raw.as_str()).unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            prop_assert!(!shows_more_than_7_chars(&text, &key), "{text}");
        }
        let prefixed = ApiKey::new(format!("Bearer {key}")).unwrap_err();
        prop_assert!(prefixed.to_string().contains("Bearer"));
        prop_assert!(!shows_more_than_7_chars(&prefixed.to_string(), &key));
        let long = ApiKey::new(key.repeat(MAX_KEY_LEN / key.len() + 1)).unwrap_err();
        let long_text = format!("{long} {long:?}");
        prop_assert!(!shows_more_than_7_chars(&long_text, &key));
    }

    #[test]
    fn valid_keys_show_at_most_7_characters(key in "[!-~]{16,200}") {
        let key_ = ApiKey::new(key.as_str()).unwrap();
        for text in [
            key_.fingerprint().to_owned(),
            format!("{key_:?}"),
            format!("{key_:#?}"),
            key_.to_string(),
        ] {
            prop_assert!(!shows_more_than_7_chars(&text, &key), "{text}");
        }
    }

    #[test]
    fn valid_keys_round_trip_into_a_bearer_header(key in "[!-~]{1,100}") {
        let api_key = ApiKey::new(key.as_str()).unwrap();
        let want = format!("Bearer {key}");
        prop_assert_eq!(api_key.header_value().as_bytes(), want.as_bytes());
        prop_assert!(api_key.header_value().is_sensitive());
        // And through the layer: the header the inner service gets.
        let seen = runtime().block_on(async {
            let svc = ServiceBuilder::new()
                .layer(BearerAuthLayer::new(StaticKey::new(api_key)))
                .service(service_fn(|req: Request<Empty<Bytes>>| async move {
                    let header = req.headers()[http::header::AUTHORIZATION].clone();
                    Ok::<_, Infallible>(Response::new(header))
                }));
            let req = Request::get("https://api.azerion.ai/v1/models").body(Empty::new()).unwrap();
            svc.oneshot(req).await.unwrap().into_body()
        });
        prop_assert_eq!(seen.as_bytes(), want.as_bytes());
        prop_assert!(seen.is_sensitive());
    }

    #[test]
    fn retry_after_never_panics_and_stays_under_the_cap(
        ms in prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
        secs in prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
        now in 0u64..(1 << 36),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [("retry-after-ms", ms), ("retry-after", secs)] {
            if let Some(Ok(value)) = value.map(|v| HeaderValue::from_bytes(&v)) {
                headers.insert(name, value);
            }
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        if let Some(wait) = parse_retry_after(&headers, now) {
            prop_assert!(wait <= MAX_RETRY_AFTER, "{wait:?}");
        }
    }

    #[test]
    fn retry_after_numbers_and_dates_parse_exactly(
        secs in 0u64..=4000,
        frac in prop::option::of(0u32..1000),
        ahead in 0u64..=8000,
        now in 0u64..(1 << 34),
    ) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        let mut headers = HeaderMap::new();
        let text = match frac {
            Some(f) => format!("{secs}.{f:03}"),
            None => secs.to_string(),
        };
        headers.insert("retry-after", text.parse().unwrap());
        let want = Duration::from_secs(secs) + Duration::from_millis(frac.unwrap_or(0).into());
        let got = parse_retry_after(&headers, now);
        if want <= MAX_RETRY_AFTER {
            let got = got.expect("a number under the cap parses");
            prop_assert!(got.abs_diff(want) < Duration::from_micros(1), "{got:?} vs {want:?}");
        } else {
            prop_assert_eq!(got, Some(MAX_RETRY_AFTER), "a longer wait reads as the cap");
        }
        let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
        headers.insert("retry-after", date.parse().unwrap());
        let got = parse_retry_after(&headers, now);
        let ahead = Duration::from_secs(ahead);
        prop_assert_eq!(got, Some(ahead.min(MAX_RETRY_AFTER)));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
