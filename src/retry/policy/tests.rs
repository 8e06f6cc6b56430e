//! Unit tests of the retry policy's pure parts.

use super::*;

#[test]
fn backoff_doubles_up_to_the_max_with_at_most_a_quarter_off() {
    let policy = TransientRetryPolicy::new();
    for (attempt, full_ms) in [
        (0, 500),
        (1, 1000),
        (2, 2000),
        (3, 4000),
        (4, 8000),
        (9, 8000),
        (40, 8000),
    ] {
        for _ in 0..200 {
            let wait = policy.backoff(attempt).as_secs_f64() * 1000.0;
            assert!(
                wait <= full_ms as f64 && wait >= full_ms as f64 * 0.75,
                "{attempt}: {wait}"
            );
        }
    }
}

#[test]
fn idempotent_methods() {
    let policy = TransientRetryPolicy::new();
    for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
        let req = Request::builder().method(method).body(()).unwrap();
        assert!(policy.may_retry(&req), "{method}");
    }
    for method in ["POST", "PATCH", "CONNECT"] {
        let req = Request::builder().method(method).body(()).unwrap();
        assert!(!policy.may_retry(&req), "{method}");
        assert!(policy.clone().retry_non_idempotent(true).may_retry(&req));
        let keyed = Request::builder()
            .method(method)
            .header("Idempotency-Key", "k1")
            .body(())
            .unwrap();
        assert!(policy.may_retry(&keyed));
    }
}

#[derive(Debug)]
struct Wrapper(io::Error);
impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}
impl StdError for Wrapper {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn connection_errors_are_found_in_the_source_chain() {
    let refused = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
    assert!(is_connection_error(&refused));
    let reset: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionReset));
    assert!(is_connection_error(&*reset));
    let other = Wrapper(io::Error::from(io::ErrorKind::PermissionDenied));
    assert!(!is_connection_error(&other));
    let plain: BoxError = "nope".into();
    assert!(!is_connection_error(&*plain));
}
