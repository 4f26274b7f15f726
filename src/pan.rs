//! Card numbers (PANs) never leave `extract` in clear: they become their last four digits plus a
//! keyed hash (HMAC-SHA256, key from `FRAUDCTL_PAN_HASH_KEY`) that joins a card's payments
//! without revealing it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{secret_from_env, Failure};

pub const KEY_VAR: &str = "FRAUDCTL_PAN_HASH_KEY";

#[derive(Clone)]
pub struct PanProtector {
    mac: Hmac<Sha256>,
}

/// What is kept of a card number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedPan {
    pub last4: String,
    pub hash: String,
}

impl PanProtector {
    pub fn from_env() -> Result<Self, Failure> {
        let key = secret_from_env(KEY_VAR, "the card-number hashing key")?;
        if key.len() < 16 {
            return Err(Failure::Config(format!(
                "{KEY_VAR} must be at least 16 characters (a random secret, e.g. `openssl rand -hex 32`)"
            )));
        }
        Ok(Self::new(key.as_bytes()))
    }

    pub fn new(key: &[u8]) -> Self {
        PanProtector {
            mac: Hmac::new_from_slice(key).expect("HMAC takes keys of any size"),
        }
    }

    /// `digits` must be the card number's decimal digits.
    pub fn protect(&self, digits: &str) -> ProtectedPan {
        let mut p = ProtectedPan {
            last4: String::new(),
            hash: String::new(),
        };
        self.protect_into(digits, &mut p.last4, &mut p.hash);
        p
    }

    /// [`PanProtector::protect`] into `last4` and `hash` (replacing what they held: their memory
    /// is reused).
    pub fn protect_into(&self, digits: &str, last4: &mut String, hash: &mut String) {
        let mut mac = self.mac.clone();
        mac.update(digits.as_bytes());
        let mut hex = [0u8; 64];
        hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex).expect("32 bytes");
        hash.clear();
        hash.push_str(std::str::from_utf8(&hex).expect("hex digits"));
        last4.clear();
        last4.push_str(&digits[digits.len().saturating_sub(4)..]);
    }
}

/// The fewest digits a card number of the data set has (its shortest PANs have 11).
const PAN_MIN_DIGITS: usize = 11;
/// The most digits a card number has (ISO/IEC 7812).
const PAN_MAX_DIGITS: usize = 19;

/// A run of digits in a text, grouped or not by single spaces or dashes: `start..end` in bytes,
/// how many digits, and the last four (fewer in a shorter run).
struct DigitRun {
    start: usize,
    end: usize,
    digits: usize,
    last4: [u8; 4],
}

impl DigitRun {
    fn last4(&self) -> &str {
        let kept = &self.last4[4 - self.digits.min(4)..];
        std::str::from_utf8(kept).expect("ASCII digits")
    }
}

/// The digit runs of `text`, in order ("4497 9139 6551 2794 052" is one run of 19 digits).
fn digit_runs(text: &str) -> impl Iterator<Item = DigitRun> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == bytes.len() {
            return None;
        }
        let start = i;
        let (mut digits, mut last4) = (0, [0u8; 4]);
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                last4 = [last4[1], last4[2], last4[3], bytes[i]];
                digits += 1;
                i += 1;
            } else if matches!(bytes[i], b' ' | b'-')
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            {
                i += 1;
            } else {
                break;
            }
        }
        Some(DigitRun {
            start,
            end: i,
            digits,
            last4,
        })
    })
}

/// Masks every run of 11 or more digits in a text down to its last four digits, wherever it
/// stands (inside a word, a number, a merchant name, a log line). Digits grouped by single
/// spaces or dashes count as one run ("4497 9139 6551 2794 052" is a card number too).
pub fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    mask_digit_runs_into(text, &mut out);
    out
}

/// [`mask_digit_runs`] into `out` (replacing what it held: its memory is reused).
pub fn mask_digit_runs_into(text: &str, out: &mut String) {
    out.clear();
    let mut copied = 0;
    for run in digit_runs(text).filter(|r| r.digits >= PAN_MIN_DIGITS) {
        out.push_str(&text[copied..run.start]);
        out.push_str("****");
        out.push_str(run.last4());
        copied = run.end;
    }
    out.push_str(&text[copied..]);
}

/// Whether a text holds a card number standing as a word of its own: 11 to 19 digits (grouped or
/// not) with no letter or digit right before or after. What an identifier must not be; a long
/// run inside a hexadecimal identifier ("3cb54a4893511…") is part of the identifier.
pub fn has_card_number_word(text: &str) -> bool {
    let bytes = text.as_bytes();
    let alnum = |i: Option<usize>| {
        i.and_then(|i| bytes.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    digit_runs(text).any(|r| {
        (PAN_MIN_DIGITS..=PAN_MAX_DIGITS).contains(&r.digits)
            && !alnum(r.start.checked_sub(1))
            && !alnum(Some(r.end))
    })
}

/// A JSON value as kept for diagnosis: every string (object keys too) with its digit runs
/// masked and cut to `max_chars`, every number whose text holds a digit run of card-number
/// length replaced by its masked text.
pub fn mask_value(value: &serde_json::Value, max_chars: usize) -> serde_json::Value {
    use serde_json::Value;
    let text = |s: &str| Value::String(cut(&mask_digit_runs(s), max_chars));
    match value {
        Value::String(s) => text(s),
        Value::Number(n) => {
            let shown = n.to_string();
            if mask_digit_runs(&shown) == shown {
                value.clone()
            } else {
                text(&shown)
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| mask_value(v, max_chars)).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    (
                        cut(&mask_digit_runs(k), max_chars),
                        mask_value(v, max_chars),
                    )
                })
                .collect(),
        ),
        Value::Null | Value::Bool(_) => value.clone(),
    }
}

/// `text` cut to at most `max_chars` characters, ending with "…" when it was cut.
pub fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// A text kept for diagnosis, at most `max_chars` characters, its digit runs masked. Cut first
/// (a few characters beyond the limit, so a card number across the cut is masked whole), then
/// masked, then cut to the limit: a 50 MB body costs no more than its first few kilobytes.
pub fn masked_excerpt(text: &str, max_chars: usize) -> String {
    const MARGIN: usize = 64;
    let head = match text.char_indices().nth(max_chars + MARGIN) {
        None => text,
        Some((end, _)) => &text[..end],
    };
    let masked = cut(&mask_digit_runs(head), max_chars);
    if head.len() < text.len() && !masked.ends_with('…') {
        masked + "…"
    } else {
        masked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_last_four_and_a_keyed_hash() {
        let p = PanProtector::new(b"0123456789abcdef").protect("4497913965512794052");
        assert_eq!(p.last4, "4052");
        assert_eq!(p.hash.len(), 64);
        assert_ne!(
            p.hash,
            PanProtector::new(b"another key 12345")
                .protect("4497913965512794052")
                .hash
        );
    }

    #[test]
    fn masks_long_digit_runs_only() {
        assert_eq!(
            mask_digit_runs("[4497913965512794052,\"x\",60.16,28372]"),
            "[****4052,\"x\",60.16,28372]"
        );
        assert_eq!(
            mask_digit_runs(
                "card 4497 9139 6551 2794 052 or 4497-9139-6551-2794-052, 2019-01-01 12"
            ),
            "card ****4052 or ****4052, 2019-01-01 12"
        );
        assert_eq!(
            mask_digit_runs("Shop ref 4767265376804500 ok, é4532015112830366é"),
            "Shop ref ****4500 ok, é****0366é"
        );
    }

    #[test]
    fn a_card_number_word_is_told_from_a_hex_identifier() {
        for pan_like in [
            "4767265376804500",
            "ref-4767265376804500",
            "4767-2653-7680-4500_x",
        ] {
            assert!(has_card_number_word(pan_like), "{pan_like}");
        }
        for id in [
            "0b242abb623afc578575680df30655b9",
            "12345678901234abcdef",
            "a4767265376804500",
            "t1",
            "12345678901234567890123",
        ] {
            assert!(!has_card_number_word(id), "{id}");
        }
    }

    #[test]
    fn values_kept_for_diagnosis_are_masked_whatever_their_place() {
        let row = serde_json::json!({
            "card_number": 4767265376804500u64,
            "lat": 4532015112830366.0,
            "merchant": "m".repeat(300),
            "4767265376804500": ["x 4767 2653 7680 4500", 60.16, null, true],
        });
        let kept = mask_value(&row, 200).to_string();
        assert!(
            !kept.contains("4767265376804500") && !kept.contains("4532015112830366"),
            "{kept}"
        );
        assert!(kept.contains("****4500") && kept.contains("****0366") && kept.contains("60.16"));
        assert!(kept.contains(&format!("{}…", "m".repeat(200))), "{kept}");
    }

    #[test]
    fn an_excerpt_masks_a_card_number_across_its_cut() {
        let body = format!(
            "{}4767265376804500{}",
            "x".repeat(4090),
            "y".repeat(50_000_000)
        );
        let kept = masked_excerpt(&body, 4096);
        assert!(
            kept.ends_with("x****…") || kept.ends_with('…'),
            "{}",
            &kept[4000..]
        );
        assert!(!kept.contains("476726"), "{}", &kept[4000..]);
        assert!(kept.chars().count() <= 4097);
    }
}
