//! What the network sources (Vault, OAuth2) share around a load: one deadline for all of it,
//! and how a JSON answer's unexpected value is named in an error.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::{KeyError, KeyErrorKind};

/// Runs `fetch` under one deadline, `budget` from now, that every request of the load shares
/// (`fetch` gets it, for the requests it makes); past it, a `Timeout`. Errors are named after
/// `origin`.
pub(crate) async fn within_budget<F, T>(
    budget: Duration,
    origin: &str,
    fetch: impl FnOnce(Instant) -> F,
) -> Result<T, KeyError>
where
    F: Future<Output = Result<T, KeyError>>,
{
    // A budget too large for the clock: as good as none (a day is past any layer timeout).
    let deadline = Instant::now()
        .checked_add(budget)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
    let result = match tokio::time::timeout_at(deadline, fetch(deadline)).await {
        Ok(result) => result,
        Err(_) => Err(KeyError::new(
            KeyErrorKind::Timeout,
            format!("no answer within {budget:?} (the whole load)"),
        )),
    };
    result.map_err(|e| e.with_origin(origin.to_owned()))
}

/// What kind of JSON value `v` is, for a message that must not quote it.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
