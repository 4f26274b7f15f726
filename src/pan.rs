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
        let mut mac = self.mac.clone();
        mac.update(digits.as_bytes());
        ProtectedPan {
            last4: digits[digits.len().saturating_sub(4)..].to_string(),
            hash: hex::encode(mac.finalize().into_bytes()),
        }
    }
}

/// Masks every run of 11 or more digits in free text (an unparseable body kept for diagnosis)
/// down to its last four digits. Digits grouped by single spaces or dashes count as one run
/// ("4497 9139 6551 2794 052" is a card number too).
pub fn mask_digit_runs(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = String::new();
        while i < chars.len() {
            if chars[i].is_ascii_digit() {
                digits.push(chars[i]);
                i += 1;
            } else if matches!(chars[i], ' ' | '-')
                && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())
            {
                i += 1;
            } else {
                break;
            }
        }
        if digits.len() >= 11 {
            out.push_str("****");
            out.push_str(&digits[digits.len() - 4..]);
        } else {
            out.extend(&chars[start..i]);
        }
    }
    out
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
    }
}
