//! Secrets out of what fraudctl prints: a URL or connection string is shown from its parsed form
//! with its password and credential-like query values replaced by `***`.
//!
//! Used wherever a URL reaches a message, a log line, a rejected record's origin or a stage
//! summary (which Airflow pushes to XCom): database URLs (URL or `key=value` form), the payments
//! API URL (userinfo, `?token=`), the SMTP and SageMaker endpoints.

use url::Url;

/// What replaces a secret.
const HIDDEN: &str = "***";

/// Query keys whose value is a credential (compared in lower case, by substring: `api_key`,
/// `X-Amz-Signature`, `access_token` …).
const SECRET_KEYS: [&str; 9] = [
    "pass", "pwd", "token", "secret", "key", "sig", "auth", "cred", "session",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| key.contains(s))
}

/// `text` (a URL, or a libpq `key=value` connection string) with its secrets hidden. Text that
/// is neither is returned as it is.
pub fn url(text: &str) -> String {
    match Url::parse(text) {
        Ok(parsed) if parsed.has_host() || parsed.password().is_some() => parsed_url(text, parsed),
        _ if text.contains('=') && !text.contains("://") => key_value(text),
        _ => text.to_string(),
    }
}

/// Whether `text` carries a secret [`url`] would hide.
pub fn has_secret(text: &str) -> bool {
    url(text) != text
}

fn parsed_url(text: &str, mut parsed: Url) -> String {
    let original = parsed.to_string();
    if parsed.password().is_some() {
        parsed.set_password(Some(HIDDEN)).ok();
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    HIDDEN.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    let shown = parsed.to_string();
    // Nothing hidden: show it as given (the parser may have normalised it, e.g. added a "/").
    if shown == original {
        return text.to_string();
    }
    shown.replace("%2A%2A%2A", HIDDEN)
}

/// A libpq connection string `host=h password='a b' dbname=d`: each secret value (quoted with
/// single quotes and backslash escapes, or up to the next space) becomes `***`.
fn key_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (key_part, after) = rest.split_at(eq);
        let key = key_part
            .trim_end()
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or("");
        let value = &after[1..];
        let spaces = value.len() - value.trim_start().len();
        let value_len = spaces + value_length(&value[spaces..]);
        out.push_str(key_part);
        out.push('=');
        if is_secret_key(key) {
            out.push_str(&value[..spaces]);
            out.push_str(HIDDEN);
        } else {
            out.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
    }
    out.push_str(rest);
    out
}

/// Length in bytes of a `key=value` string's value (after the spaces that follow `=`): a quoted
/// value, or one up to the next whitespace.
fn value_length(value: &str) -> usize {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        quoted
            .char_indices()
            .find(|&(_, c)| {
                let end = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            })
            .map_or(value.len(), |(i, _)| i + 2)
    } else {
        value.find(char::is_whitespace).unwrap_or(value.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_hidden_in_every_form() {
        for (given, shown) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://u@h/db?sslmode=require&password=secret",
                "postgres://u@h/db?sslmode=require&password=***",
            ),
            (
                "host=h user=u password=secret dbname=db",
                "host=h user=u password=*** dbname=db",
            ),
            (
                "host=h password = 'sec ret\\'s' dbname=db",
                "host=h password = *** dbname=db",
            ),
            (
                "https://api:s3cr3t@pay.example/current-transactions?token=abc&page=2",
                "https://api:***@pay.example/current-transactions?token=***&page=2",
            ),
            (
                "http://127.0.0.1:8000/current-transactions",
                "http://127.0.0.1:8000/current-transactions",
            ),
            ("smtp://127.0.0.1:1025", "smtp://127.0.0.1:1025"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(url(given), shown, "{given}");
            assert_eq!(has_secret(given), given != shown, "{given}");
        }
    }
}
