//! Pure parsing of Vault's JSON bodies: KV reads, logins and renewals, and error lists.
//!
//! Nothing here does I/O or knows the address, so each function can be fed any bytes (the
//! property tests below do). Errors carry causes that never include a secret value: at most
//! field names, versions, timestamps and Vault's own `errors` strings, capped.

use crate::source::https::json_type;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::redact::safe_message;

/// At most this many of Vault's `errors`/`warnings` strings go into a message…
const MAX_MESSAGES: usize = 3;
/// …each cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 200;
/// At most this many field names are listed when the wanted field is missing.
const MAX_FIELD_NAMES: usize = 8;

/// A secret value read from a KV engine.
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub struct KvSecret {
    /// The field's value.
    pub value: SecretString,
    /// KV v1's `lease_duration`, when Vault set one (> 0) and the secret has a `ttl` field.
    pub lease: Option<Duration>,
    /// KV v2's `metadata.version`, when present.
    pub version: Option<u64>,
}

impl fmt::Debug for KvSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvSecret")
            .field("lease", &self.lease)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a KV body did not yield the field. `Display` is a cause for a `KeyError`.
#[derive(Debug, Clone, PartialEq, Eq)]
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub enum KvError {
    /// Not JSON, or not the JSON of a KV read.
    Malformed(String),
    /// KV v2: `data.data` is null because the version was deleted (soft delete).
    Deleted {
        /// The version, from the metadata.
        version: Option<u64>,
        /// The metadata's `deletion_time`, capped.
        at: Option<String>,
    },
    /// KV v2: `data.data` is null because the version was destroyed.
    Destroyed {
        /// The version, from the metadata.
        version: Option<u64>,
    },
    /// The secret has no such field; the names it has (up to a few) are listed.
    MissingField {
        /// The field asked for.
        field: String,
        /// The first few of the fields it has.
        available: Vec<String>,
        /// How many more it has.
        more: usize,
    },
    /// The field is there but is not a string.
    NotAString {
        /// The field asked for.
        field: String,
        /// The JSON type it has.
        found: &'static str,
    },
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn version(v: &Option<u64>) -> String {
            v.map_or_else(|| "the latest version".into(), |v| format!("version {v}"))
        }
        match self {
            KvError::Malformed(why) => write!(f, "Vault's answer is not a KV read: {why}"),
            KvError::Deleted { version: v, at } => {
                write!(f, "{} of the secret was deleted", version(v))?;
                if let Some(at) = at {
                    write!(f, " at {at}")?;
                }
                f.write_str("; undelete it or write a new version")
            }
            KvError::Destroyed { version: v } => write!(
                f,
                "{} of the secret was destroyed; write a new version",
                version(v)
            ),
            KvError::MissingField {
                field,
                available,
                more,
            } => {
                write!(f, "the secret has no field {field:?}")?;
                if available.is_empty() {
                    f.write_str(" (it has no fields)")
                } else {
                    write!(f, " (its fields: {}", available.join(", "))?;
                    if *more > 0 {
                        write!(f, " and {more} more")?;
                    }
                    f.write_str(")")
                }
            }
            KvError::NotAString { field, found } => {
                write!(f, "field {field:?} is {found}, not a string")
            }
        }
    }
}

/// Reads `field` out of the body of a KV read: `data.data.{field}` for KV v2,
/// `data.{field}` for KV v1.
///
/// Takes both the trimmed samples of Vault's docs and the full response envelope
/// (`request_id`, `lease_id`, `wrap_info`, …). A KV v2 body whose `data.data` is null (what
/// Vault sends, with a 404, for a deleted or destroyed version) gives
/// [`KvError::Deleted`]/[`KvError::Destroyed`] with the version from the metadata.
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub fn parse_kv_response(kv_version: u8, body: &[u8], field: &str) -> Result<KvSecret, KvError> {
    let mut root = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(KvError::Malformed(format!(
                "the body is {}, not an object",
                json_type(&other)
            )))
        }
        Err(e) => return Err(KvError::Malformed(json_error(&e))),
    };
    let lease = root
        .get("lease_duration")
        .and_then(Value::as_u64)
        .filter(|&s| s > 0)
        .map(Duration::from_secs);
    let mut data = match root.remove("data") {
        Some(Value::Object(data)) => data,
        Some(Value::Null) | None => {
            return Err(KvError::Malformed(
                "it has no \"data\" object (a KV read always has one)".into(),
            ))
        }
        Some(other) => {
            return Err(KvError::Malformed(format!(
                "\"data\" is {}, not an object",
                json_type(&other)
            )))
        }
    };
    let (mut fields, version) = if kv_version == 1 {
        (data, None)
    } else {
        let metadata = match data.remove("metadata") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let version = metadata.get("version").and_then(Value::as_u64);
        match data.remove("data") {
            Some(Value::Object(inner)) => (inner, version),
            Some(Value::Null) => return Err(deleted_or_destroyed(&metadata, version)),
            None => {
                return Err(KvError::Malformed(
                    "it has no \"data.data\" object; is the mount KV version 1? \
                     (then set kv_version(1))"
                        .into(),
                ))
            }
            Some(other) => {
                return Err(KvError::Malformed(format!(
                    "\"data.data\" is {}, not an object",
                    json_type(&other)
                )))
            }
        }
    };
    // KV v1 answers every read with a lease (the mount's default, 32 days, when the secret
    // sets none); only a secret's own `ttl` field makes it a refresh hint.
    let lease = lease.filter(|_| kv_version == 1 && fields.contains_key("ttl"));
    match fields.remove(field) {
        Some(Value::String(value)) => Ok(KvSecret {
            value: SecretString::from(value),
            lease,
            version,
        }),
        Some(other) => Err(KvError::NotAString {
            field: field.to_owned(),
            found: json_type(&other),
        }),
        None => {
            let mut names: Vec<String> = fields.keys().cloned().collect();
            names.sort();
            let more = names.len().saturating_sub(MAX_FIELD_NAMES);
            names.truncate(MAX_FIELD_NAMES);
            let available = names.iter().map(|n| cap(n, 64)).collect();
            Err(KvError::MissingField {
                field: field.to_owned(),
                available,
                more,
            })
        }
    }
}

fn deleted_or_destroyed(meta: &Map<String, Value>, version: Option<u64>) -> KvError {
    if meta.get("destroyed").and_then(Value::as_bool) == Some(true) {
        return KvError::Destroyed { version };
    }
    let at = meta
        .get("deletion_time")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(|t| cap(t, 64));
    KvError::Deleted { version, at }
}

/// The token a login or `renew-self` handed out, with its lease.
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub struct AuthInfo {
    /// The token.
    pub client_token: SecretString,
    /// Zero: the token does not expire.
    pub lease: Duration,
    /// Whether `renew-self` may extend it.
    pub renewable: bool,
}

impl fmt::Debug for AuthInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthInfo")
            .field("lease", &self.lease)
            .field("renewable", &self.renewable)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AuthEnvelope {
    auth: Option<AuthBlock>,
}

#[derive(Deserialize)]
struct AuthBlock {
    client_token: Option<String>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

/// Reads the `auth` block of a login or `renew-self` answer.
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub fn parse_auth_response(body: &[u8]) -> Result<AuthInfo, String> {
    let envelope: AuthEnvelope = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let auth = envelope
        .auth
        .ok_or_else(|| "the answer has no \"auth\" block".to_owned())?;
    let token = auth
        .client_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the answer's \"auth\" block has no client_token".to_owned())?;
    Ok(AuthInfo {
        client_token: SecretString::from(token),
        lease: Duration::from_secs(auth.lease_duration),
        renewable: auth.renewable,
    })
}

/// Vault's own `errors` (then `warnings`) strings from an error body, whitespace folded, each
/// capped, at most a few: `"permission denied"`, `"Vault is sealed"`. Empty when there are none
/// or the body is not JSON.
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub fn vault_messages(body: &[u8]) -> Vec<String> {
    let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let strings = |key: &str| -> Vec<String> {
        match root.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(fold_whitespace)
                .filter(|s| !s.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut messages = strings("errors");
    if messages.is_empty() {
        messages = strings("warnings");
    }
    let total = messages.len();
    messages.truncate(MAX_MESSAGES);
    let mut messages: Vec<String> = messages
        .into_iter()
        // Vault echoes no secret, but a proxy or a plugin might: redact what looks like a
        // token or a key (and cut, as `cap` would).
        .map(|m| safe_message(&m, MAX_MESSAGE_CHARS))
        .collect();
    if total > MAX_MESSAGES {
        messages.push(format!("and {} more", total - MAX_MESSAGES));
    }
    messages
}

/// Folds runs of whitespace (Vault's multierror bodies hold `\n\t* `) into one space.
fn fold_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts `s` to `max` characters, marking the cut, and drops control characters.
pub(crate) fn cap(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().filter(|c| !c.is_control()).count() > max {
        out.push('…');
    }
    out
}

/// serde_json's message names a line and column, never the input, so it is safe to show.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "the body ends early",
        Category::Syntax => "the body is not valid JSON",
        Category::Data => "the body has an unexpected shape",
        Category::Io => "the body could not be read",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
