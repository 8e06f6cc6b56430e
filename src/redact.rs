//! Making a server's message fit for a log line, in one linear pass: for `ApiError`'s `Display`
//! and `Debug` and for the Vault source's error messages. A leaf: it imports nothing of the crate.
//!
//! The text is read as words (runs of visible ASCII) made of tokens (runs of
//! [token bytes](is_token_byte)) and the punctuation between them. A secret is redacted from where
//! it starts to the end of its word: keys may hold any visible ASCII (`!`, `:`, `"`, `#`…), and
//! stopping at the first odd character would show the rest.
//!
//! What counts as a secret:
//! - a token, or a part of a token after a character that is not a letter or digit, that starts
//!   like a key or a token: `sk-`, `sk_` (OpenAI-style keys), `hvs.`, `hvb.`, `hvr.` (Vault),
//!   `eyJ` (a JWT, or any base64 JSON), `AIza` (Google API keys), or Vault's legacy `s.`, `b.`,
//!   `r.` followed by 20 letters or digits;
//! - the value of a parameter whose name ends in `key`, `token`, `secret`, `password`, `passwd`,
//!   `signature` or is `bearer`, `auth`, `authorization`, `sig` (`?key=AIza…`,
//!   `&access_token=…`);
//! - the word after `Bearer` or `Basic`, whatever separates them: `Bearer tok`, `Bearer: tok`,
//!   `Bearer "tok"`, `Bearer=tok`, `Basic dXNlcjpwYXNz`.
//!
//! A candidate shorter than 8 characters is shown: it cannot be much of a key.
//!
//! Each byte is looked at a bounded number of times (the end of a word is found once per word,
//! not once per token, and the look-ahead and look-behind of a candidate are bounded): the work
//! is linear in the input, whatever it holds. The tests count the steps.

/// `message` made fit for a log line: at most `max` characters (then `…`), control characters
/// as spaces, and secrets redacted (see the module docs).
// `pub` for the fuzz targets (`crate::fuzzing`, under `cfg(fuzzing)`); crate-private otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub fn safe_message(message: &str, max: usize) -> String {
    Redactor::new(message, max).run().0
}

/// The shortest candidate that is redacted.
const MIN_SECRET: usize = 8;
/// How many letters or digits follow Vault's legacy `s.`, `b.`, `r.` in a token (at least).
const LEGACY_VAULT_BODY: usize = 20;
/// The longest parameter name looked at before a `=`.
const MAX_NAME: usize = 32;

/// How keys and tokens begin.
const SECRET_PREFIXES: [&[u8]; 7] = [b"sk-", b"sk_", b"hvs.", b"hvb.", b"hvr.", b"eyJ", b"AIza"];
/// Parameter names (or their endings) whose values are secrets, lowercase.
const SECRET_NAME_ENDINGS: [&[u8]; 6] = [
    b"key",
    b"token",
    b"secret",
    b"password",
    b"passwd",
    b"signature",
];
const SECRET_NAMES: [&[u8]; 4] = [b"bearer", b"auth", b"authorization", b"sig"];

struct Redactor<'a> {
    text: &'a str,
    max: usize,
    out: String,
    shown: usize,
    /// Bytes looked at so far: the measure of work the tests bound.
    steps: usize,
}

/// Why [`Redactor::push`] stopped: the output is full (and marked with `…`).
struct Full;

impl<'a> Redactor<'a> {
    fn new(text: &'a str, max: usize) -> Self {
        Redactor {
            text,
            max,
            out: String::with_capacity(text.len().min(max.saturating_add(16))),
            shown: 0,
            steps: 0,
        }
    }

    /// The redacted text and the steps it took.
    fn run(mut self) -> (String, usize) {
        let _ = self.redact();
        (self.out, self.steps)
    }

    fn redact(&mut self) -> Result<(), Full> {
        let bytes = self.text.as_bytes();
        let mut i = 0;
        // The end of the word that holds `i`, once found; valid while `i < word_end`.
        let mut word_end = 0;
        // After `Bearer`: the next token is a secret.
        let mut after_bearer = false;
        while i < bytes.len() {
            if self.shown >= self.max {
                self.out.push('…');
                return Err(Full);
            }
            self.steps += 1;
            if !is_token_byte(bytes[i]) {
                let c = self.text[i..].chars().next().unwrap_or(' ');
                self.push(if c.is_control() { ' ' } else { c })?;
                let separator = c.is_whitespace() || matches!(c, ':' | '"' | '\'');
                after_bearer &= separator;
                i += c.len_utf8();
                continue;
            }
            let end = i + self.scan(&bytes[i..], is_token_byte);
            if word_end <= i {
                word_end = i + self.scan(&bytes[i..], |b| b.is_ascii_graphic());
            }
            let token = &bytes[i..end];
            let secret_at = if after_bearer {
                Some(0)
            } else {
                self.secret_start(token)
            };
            // `Basic` too: a server quoting the header it got quotes base64 credentials.
            after_bearer =
                token.eq_ignore_ascii_case(b"bearer") || token.eq_ignore_ascii_case(b"basic");
            match secret_at {
                Some(at) if word_end - (i + at) >= MIN_SECRET => {
                    self.push_str(&self.text[i..i + at])?;
                    self.push_str("[redacted]")?;
                    i = word_end;
                    after_bearer = false;
                }
                _ => {
                    self.push_str(&self.text[i..end])?;
                    i = end;
                }
            }
        }
        Ok(())
    }

    /// How many bytes at the start of `bytes` pass `keep`, counting each as a step.
    fn scan(&mut self, bytes: &[u8], keep: impl Fn(u8) -> bool) -> usize {
        let n = bytes.iter().position(|&b| !keep(b)).unwrap_or(bytes.len());
        self.steps += n;
        n
    }

    /// Where the first secret in `token` starts, if one does.
    fn secret_start(&mut self, token: &[u8]) -> Option<usize> {
        for p in 0..token.len() {
            self.steps += 1;
            if token[p] == b'=' && p + 1 < token.len() && self.names_a_secret(&token[..p]) {
                return Some(p + 1);
            }
            let boundary = p == 0 || !token[p - 1].is_ascii_alphanumeric();
            if boundary && self.starts_a_secret(&token[p..]) {
                return Some(p);
            }
        }
        None
    }

    /// Whether `rest` begins like a key or a token.
    fn starts_a_secret(&mut self, rest: &[u8]) -> bool {
        if SECRET_PREFIXES.iter().any(|p| rest.starts_with(p)) {
            return true;
        }
        if rest.len() > 2 && matches!(rest[0], b's' | b'b' | b'r') && rest[1] == b'.' {
            let body = &rest[2..rest.len().min(2 + LEGACY_VAULT_BODY)];
            self.steps += body.len();
            return body.len() == LEGACY_VAULT_BODY && body.iter().all(u8::is_ascii_alphanumeric);
        }
        false
    }

    /// Whether the parameter name that ends `before` (a `=` follows it) is a secret's.
    fn names_a_secret(&mut self, before: &[u8]) -> bool {
        let is_name = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-');
        let len = before
            .iter()
            .rev()
            .take(MAX_NAME + 1)
            .take_while(|b| is_name(b))
            .count();
        self.steps += len;
        if len == 0 || len > MAX_NAME {
            return false;
        }
        let name = &before[before.len() - len..];
        let ends_with = |end: &[u8]| {
            name.len() >= end.len() && name[name.len() - end.len()..].eq_ignore_ascii_case(end)
        };
        SECRET_NAME_ENDINGS.iter().any(|end| ends_with(end))
            || SECRET_NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
    }

    fn push(&mut self, c: char) -> Result<(), Full> {
        if self.shown >= self.max {
            // Cut inside a word: mark it, even if nothing follows the word.
            self.out.push('…');
            return Err(Full);
        }
        self.out.push(c);
        self.shown += 1;
        self.steps += 1;
        Ok(())
    }

    fn push_str(&mut self, s: &str) -> Result<(), Full> {
        s.chars().try_for_each(|c| self.push(c))
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Whether `text` shows any run of 8 consecutive characters of `secret`: the leak the tests of
/// every message that may quote a secret look for.
#[cfg(test)]
pub(crate) fn shows_more_than_7_chars(text: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .any(|w| text.contains(&w.iter().collect::<String>()))
}

#[cfg(test)]
mod tests;
