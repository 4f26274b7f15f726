//! Card numbers (PANs) never leave `extract` in clear: they become their last four digits plus a
//! keyed hash (HMAC-SHA256, key from `FRAUDCTL_PAN_HASH_KEY`) that joins a card's payments
//! without revealing it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{key_from_env, Failure};

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
        let key = key_from_env(KEY_VAR, "the card-number hashing key")?;
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

/// The zero of each of Unicode's decimal-digit blocks (category Nd, Unicode 18.0, as
/// `icu_properties_data` 2.4.0 has them; `mask_card_numbers()` in SQL, migrations/V15, holds the
/// same list); every block is ten code points, 0 to 9.
const DIGIT_ZEROS: [u32; 77] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11DE0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE,
    0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit of any script ('4', '４', '٤', '𝟒'), `None` for anything else.
pub fn digit_value(c: char) -> Option<u8> {
    let code = c as u32;
    let block = DIGIT_ZEROS
        .partition_point(|&zero| zero <= code)
        .checked_sub(1)?;
    let value = code - DIGIT_ZEROS[block];
    (value < 10).then_some(value as u8)
}

/// A chain of `text` that holds a card number: `start..end` in bytes, from its first digit to
/// its last, and its last four digits (ASCII).
struct CardChain {
    start: usize,
    end: usize,
    last4: [u8; 4],
}

/// The chains of `text` that hold a card number, in order. A chain is a maximal sequence of
/// digits (of any script) separated only by characters that are neither digits nor ASCII
/// letters, any number of them ("4111 1111.1111_1111", "4111 -/ 1111", "٤١١١ ١١١١"); it holds
/// a card number when 11 to 19 consecutive digits of it pass the Luhn check (the whole chain
/// then counts: the card number is all a reader could take from it). The rule is
/// tests/fixtures/card_numbers.json's, which SQL's `mask_card_numbers()` follows too.
fn card_chains(text: &str) -> Vec<CardChain> {
    let mut found = Vec::new();
    // Fewer than 11 ASCII digits in an ASCII text: no chain can hold a card number.
    if text.len() < PAN_MIN_DIGITS
        || (text.is_ascii() && text.bytes().filter(u8::is_ascii_digit).count() < PAN_MIN_DIGITS)
    {
        return found;
    }
    let mut digits: Vec<u8> = Vec::new();
    let (mut start, mut end) = (0, 0);
    let mut close = |digits: &mut Vec<u8>, start: usize, end: usize| {
        if has_luhn_window(digits) {
            let last4 = std::array::from_fn(|i| b'0' + digits[digits.len() - 4 + i]);
            found.push(CardChain { start, end, last4 });
        }
        digits.clear();
    };
    for (at, c) in text.char_indices() {
        if let Some(value) = digit_value(c) {
            if digits.is_empty() {
                start = at;
            }
            digits.push(value);
            end = at + c.len_utf8();
        } else if c.is_ascii_alphabetic() && !digits.is_empty() {
            close(&mut digits, start, end);
        }
    }
    if !digits.is_empty() {
        close(&mut digits, start, end);
    }
    found
}

/// Whether 11 to 19 consecutive `digits` (values 0-9) pass the Luhn check: for each last digit,
/// the checksum is summed leftwards, every second digit doubled.
fn has_luhn_window(digits: &[u8]) -> bool {
    const DOUBLED: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
    (PAN_MIN_DIGITS..=digits.len()).any(|end| {
        let mut sum = 0;
        digits[..end]
            .iter()
            .rev()
            .take(PAN_MAX_DIGITS)
            .enumerate()
            .any(|(k, &d)| {
                sum += if k % 2 == 1 {
                    DOUBLED[usize::from(d)]
                } else {
                    u32::from(d)
                };
                k + 1 >= PAN_MIN_DIGITS && sum % 10 == 0
            })
    })
}

/// Masks every card number in a text down to its last four digits, whatever separates its
/// digits and whatever their script ([`card_chains`]: "4111.1111.1111.1111", "４１１１…" and
/// "Shop ref 4111111111111111" become "****1111", "Shop ref ****1111"). Long numbers that hold
/// no 11 to 19 digits passing the Luhn check stay readable.
pub fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    mask_digit_runs_into(text, &mut out);
    out
}

/// [`mask_digit_runs`] into `out` (replacing what it held: its memory is reused).
pub fn mask_digit_runs_into(text: &str, out: &mut String) {
    out.clear();
    let mut copied = 0;
    for chain in card_chains(text) {
        out.push_str(&text[copied..chain.start]);
        out.push_str("****");
        out.push_str(std::str::from_utf8(&chain.last4).expect("ASCII digits"));
        copied = chain.end;
    }
    out.push_str(&text[copied..]);
}

/// Whether an identifier holds a card number ([`card_chains`]) other than digits inside a
/// hexadecimal identifier: a run of plain digits in a word of hexadecimal digits with at least
/// one letter a-f ("3cb54a4893511…", the data set's trans_nums, some with 11 or more digits in
/// a row). "4111_1111_1111_1111", "z4111111111111111", "ref-4111111111111111" hold one.
pub fn holds_card_number(id: &str) -> bool {
    let in_word = |b: &u8| b.is_ascii_alphanumeric();
    card_chains(id).iter().any(|chain| {
        let bytes = id.as_bytes();
        let before = bytes[..chain.start].iter().rev().take_while(|b| in_word(b));
        let after = bytes[chain.end..].iter().take_while(|b| in_word(b));
        let around: Vec<u8> = before.chain(after).copied().collect();
        let plain = bytes[chain.start..chain.end].iter().all(u8::is_ascii_digit);
        let hex_word =
            around.iter().all(u8::is_ascii_hexdigit) && around.iter().any(u8::is_ascii_alphabetic);
        !(plain && hex_word)
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

    /// tests/fixtures/card_numbers.json: the rule's corpus, which SQL's `mask_card_numbers()`
    /// is held to as well.
    fn corpus() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/card_numbers.json")).unwrap()
    }

    fn texts(list: &serde_json::Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect()
    }

    #[test]
    fn card_numbers_are_masked_whatever_separates_their_digits_and_whatever_their_script() {
        let corpus = corpus();
        for pair in corpus["masked"].as_array().unwrap() {
            let [given, expected] = [0, 1].map(|i| pair[i].as_str().unwrap());
            assert_eq!(mask_digit_runs(given), expected, "{given:?}");
        }
        for kept in texts(&corpus["kept"]) {
            assert_eq!(mask_digit_runs(kept), kept, "{kept:?}");
        }
    }

    #[test]
    fn an_identifier_holding_a_card_number_is_told_from_a_hex_identifier() {
        let corpus = corpus();
        for id in texts(&corpus["identifiers"]["refused"]) {
            assert!(holds_card_number(id), "{id:?} holds a card number");
        }
        for id in texts(&corpus["identifiers"]["accepted"]) {
            assert!(!holds_card_number(id), "{id:?} holds no card number");
        }
    }

    #[test]
    fn every_decimal_digit_block_folds_to_its_values() {
        for zero in DIGIT_ZEROS {
            for value in 0..10 {
                let c = char::from_u32(zero + value).unwrap();
                assert_eq!(digit_value(c), Some(value as u8), "U+{:04X}", zero + value);
            }
        }
        for other in ['a', '/', '\u{B2}', '\u{2167}', '\u{FF21}', '\u{1D7CD}'] {
            assert_eq!(digit_value(other), None, "{other:?}");
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
        // The float's text is "4532015112830366.0": its chain of digits ends with the 0.
        assert!(kept.contains("****4500") && kept.contains("****3660") && kept.contains("60.16"));
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
