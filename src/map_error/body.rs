//! A pure, total parser for JSON error bodies.
//!
//! Shapes understood, first match wins:
//!
//! | body | `message` | `type` / `code` / `param` |
//! |------|-----------|---------------------------|
//! | `{"error":{"message":..,"type":..,"code":..,"param":..}}` (Azerion, OpenAI) | `error.message` | from `error` |
//! | `{"error":"text"}` | `error` | top level |
//! | `{"message":"text"}` | `message` | top level |
//! | `{"detail":"text"}` (FastAPI) | `detail` | top level |
//! | `{"detail":[{"msg":..},..]}` (FastAPI validation) | every `msg`, joined with `; ` | top level |
//! | `{"errors":["text",..]}` or `{"errors":[{"message":..},..]}` (Vault, JSON:API, GraphQL) | every message, joined with `; ` | top level |
//!
//! A `code` may be a string or a number (a number is kept as its decimal text). Anything else —
//! a body that is not JSON, not an object, truncated, or empty — gives no fields at all.

use serde_json::{Map, Value};

/// What an error body says, as far as it could be understood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub struct ErrorBody {
    /// The message (`error.message`, `message`, `detail`, `errors`…).
    pub message: Option<String>,
    /// The error's `type`.
    pub error_type: Option<String>,
    /// The error's `code`, a number as its text.
    pub code: Option<String>,
    /// The error's `param`.
    pub param: Option<String>,
}

/// The most messages taken from a list (`detail` or `errors`) before the rest is dropped.
const MAX_LISTED: usize = 8;

/// Parses `bytes` as an error body. Never fails: what cannot be understood is left `None`.
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub fn parse_error_body(bytes: &[u8]) -> ErrorBody {
    let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return ErrorBody::default();
    };
    if *first != b'{' {
        // Not a JSON object: HTML from a proxy, plain text, an array. Skip the JSON parser.
        return ErrorBody::default();
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => from_object(&map),
        _ => ErrorBody::default(),
    }
}

fn from_object(map: &Map<String, Value>) -> ErrorBody {
    if let Some(Value::Object(inner)) = map.get("error") {
        let mut parsed = fields(inner);
        parsed.message = text(inner.get("message"))
            .or_else(|| text(inner.get("msg")))
            .or_else(|| text(inner.get("detail")))
            .or_else(|| text(map.get("message")));
        return parsed;
    }
    let mut parsed = fields(map);
    parsed.message = text(map.get("error"))
        .or_else(|| text(map.get("message")))
        .or_else(|| detail(map.get("detail")))
        .or_else(|| list(map.get("errors")));
    parsed
}

/// `type`, `code` and `param` of one object.
fn fields(map: &Map<String, Value>) -> ErrorBody {
    ErrorBody {
        message: None,
        error_type: text(map.get("type")),
        code: scalar(map.get("code")),
        param: scalar(map.get("param")),
    }
}

/// A non-empty string.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A non-empty string, or a number or boolean as its text.
fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => text(Some(other)),
    }
}

/// FastAPI's `detail`: a string, or a list of `{"loc":..,"msg":..,"type":..}`.
fn detail(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Array(_) => list(value),
        Value::Object(obj) => item_message(obj),
        other => text(Some(other)),
    }
}

/// A list of strings or of objects carrying a message, joined with `; `.
fn list(value: Option<&Value>) -> Option<String> {
    let Value::Array(items) = value? else {
        return text(value);
    };
    let mut out = String::new();
    for message in items
        .iter()
        .filter_map(|item| match item {
            Value::Object(obj) => item_message(obj),
            other => text(Some(other)),
        })
        .take(MAX_LISTED)
    {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&message);
    }
    (!out.is_empty()).then_some(out)
}

fn item_message(obj: &Map<String, Value>) -> Option<String> {
    let message = text(obj.get("message"))
        .or_else(|| text(obj.get("msg")))
        .or_else(|| text(obj.get("detail")))
        .or_else(|| text(obj.get("title")))?;
    // FastAPI names the field in `loc`: ["body", "messages", 0, "role"].
    match obj.get("loc") {
        Some(Value::Array(loc)) if !loc.is_empty() => {
            let path: Vec<String> = loc
                .iter()
                .map(|part| match part {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            Some(format!("{}: {message}", path.join(".")))
        }
        _ => Some(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ErrorBody {
        parse_error_body(s.as_bytes())
    }

    #[test]
    fn azerion_documented_shape() {
        let body = parse(include_str!(
            "../../tests/fixtures/azerion/error_documented.json"
        ));
        assert_eq!(
            body.message.as_deref(),
            Some("Description of what went wrong")
        );
        assert_eq!(body.error_type.as_deref(), Some("error_type"));
        assert_eq!(body.code.as_deref(), Some("specific_error_code"));
        assert_eq!(body.param, None);
    }

    #[test]
    fn openai_shape_with_numeric_code_and_param() {
        let body = parse(
            r#"{"error":{"message":"bad","type":"invalid_request_error","code":429,"param":"model"}}"#,
        );
        assert_eq!(body.message.as_deref(), Some("bad"));
        assert_eq!(body.code.as_deref(), Some("429"));
        assert_eq!(body.param.as_deref(), Some("model"));
        let body = parse(r#"{"error":{"message":"x","code":null,"param":null}}"#);
        assert_eq!(body.code, None);
        assert_eq!(body.param, None);
    }

    #[test]
    fn flat_shapes() {
        assert_eq!(
            parse(r#"{"error":"nope","code":"c1"}"#),
            ErrorBody {
                message: Some("nope".into()),
                code: Some("c1".into()),
                ..ErrorBody::default()
            }
        );
        assert_eq!(
            parse(r#"{"message":"m","type":"t"}"#).message.as_deref(),
            Some("m")
        );
        assert_eq!(
            parse(r#"{"detail":"Not authenticated"}"#)
                .message
                .as_deref(),
            Some("Not authenticated")
        );
    }

    #[test]
    fn lists() {
        let fastapi = r#"{"detail":[{"loc":["body","model"],"msg":"field required","type":"value_error.missing"},{"loc":["body","messages",0],"msg":"bad role","type":"x"}]}"#;
        assert_eq!(
            parse(fastapi).message.as_deref(),
            Some("body.model: field required; body.messages.0: bad role")
        );
        assert_eq!(
            parse(r#"{"errors":["permission denied"]}"#)
                .message
                .as_deref(),
            Some("permission denied")
        );
        assert_eq!(
            parse(r#"{"errors":[{"message":"a"},{"detail":"b"},42,{"x":1}]}"#)
                .message
                .as_deref(),
            Some("a; b")
        );
        assert_eq!(parse(r#"{"errors":[]}"#).message, None);
        let many = format!("{{\"errors\":[{}]}}", vec!["\"e\""; 100].join(","));
        assert_eq!(
            parse(&many).message.unwrap().matches('e').count(),
            MAX_LISTED
        );
    }

    #[test]
    fn anything_else_gives_nothing() {
        for body in [
            "",
            "   ",
            "<html><body>502 Bad Gateway</body></html>",
            "upstream connect error",
            "[1,2,3]",
            "null",
            r#"{"error":{"message":"cut of"#,
            r#"{"status":"fail"}"#,
            r#"{"message":""}"#,
            r#"{"message":42}"#,
        ] {
            assert_eq!(parse(body).message, None, "{body:?}");
        }
        assert_eq!(
            parse(r#"{"error":{"type":"t"},"message":"outer"}"#)
                .message
                .as_deref(),
            Some("outer")
        );
        assert_eq!(
            parse(r#"{"error":{"type":"only_type"}}"#)
                .error_type
                .as_deref(),
            Some("only_type")
        );
    }
}
