//! Signed, expiring verdict links: each alert email carries two ("Confirmed fraud", "Not fraud")
//! that open the dashboard, which verifies the token and records the analyst's verdict only on a
//! confirming click (docs/verdict-links.md defines the token; the dashboard's Python verifies the
//! same format, and `tests/fixtures/verdict_vectors.json` keeps the two in step).
//!
//! The key comes from the environment only (`FRAUDCTL_VERDICT_KEY`, at least 32 bytes); the
//! settings a stage needs to issue links are [`VerdictArgs`], which the alert stage flattens.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use clap::Args;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::error::{key_from_env, Failure, MIN_KEY_BYTES};

/// The environment variable holding the signing key (never a flag).
pub const KEY_VAR: &str = "FRAUDCTL_VERDICT_KEY";
/// The shortest key accepted, in bytes.
/// The token format's version, its first field.
pub const VERSION: &str = "v1";
/// The dashboard's query parameter that carries the token.
pub const QUERY_PARAMETER: &str = "verdict";
/// The longest trans_num a token carries (as `extract` accepts them).
pub const MAX_TRANS_NUM_CHARS: usize = 64;

/// Options for issuing verdict links (flattened into the stage that sends them). The key is
/// read from FRAUDCTL_VERDICT_KEY, environment only; the dashboard's address is the caller's
/// (the alert stage's `--report-url`).
#[derive(Debug, Clone, Args)]
pub struct VerdictArgs {
    /// Hours a verdict link stays valid after its alert is sent (1 to 720). The links are
    /// signed with FRAUDCTL_VERDICT_KEY (environment only, at least 32 bytes); without it the
    /// alerts carry no verdict links.
    #[arg(long, env = "FRAUDCTL_VERDICT_TTL_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u32).range(1..=720))]
    pub verdict_ttl_hours: u32,
}

impl VerdictArgs {
    /// The signing key, from FRAUDCTL_VERDICT_KEY (a configuration error, exit 5, otherwise).
    pub fn key(&self) -> Result<VerdictKey, Failure> {
        VerdictKey::from_env()
    }

    /// When a link issued at `now` expires.
    pub fn expires_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::hours(i64::from(self.verdict_ttl_hours))
    }

    /// Both tokens of one alert, expiring [`Self::expires_at`] `now`.
    pub fn links(
        &self,
        key: &VerdictKey,
        trans_num: &str,
        now: DateTime<Utc>,
    ) -> Result<VerdictLinks, TokenError> {
        let expires_at = self.expires_at(now);
        let issue = |verdict| -> Result<String, TokenError> {
            Ok(token(key, &Claim::new(trans_num, verdict, expires_at)?))
        };
        Ok(VerdictLinks {
            trans_num: trans_num.to_string(),
            fraud: issue(Verdict::Fraud)?,
            not_fraud: issue(Verdict::NotFraud)?,
            expires_at: truncated(expires_at),
        })
    }
}

/// The two tokens of an alert ("Confirmed fraud", "Not fraud"), as the email links them
/// ([`url`]) and the alert stage registers them ([`sha256`]) before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictLinks {
    pub trans_num: String,
    pub fraud: String,
    pub not_fraud: String,
    pub expires_at: DateTime<Utc>,
}

impl VerdictLinks {
    /// Each token with its verdict.
    pub fn tokens(&self) -> [(Verdict, &str); 2] {
        [
            (Verdict::Fraud, &self.fraud),
            (Verdict::NotFraud, &self.not_fraud),
        ]
    }
}

/// The SHA-256 of a whole token: what `alert_verdicts` and `issued_verdict_tokens` store.
pub fn sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The dashboard link of a token: `BASE_URL/?verdict=TOKEN` (the token needs no URL encoding).
pub fn url(base_url: &str, token: &str) -> String {
    format!(
        "{}/?{QUERY_PARAMETER}={token}",
        base_url.trim_end_matches('/')
    )
}

/// The signing key. Its bytes are never shown (`Debug` prints a placeholder).
#[derive(Clone)]
pub struct VerdictKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for VerdictKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerdictKey(…)")
    }
}

impl VerdictKey {
    /// From FRAUDCTL_VERDICT_KEY.
    pub fn from_env() -> Result<Self, Failure> {
        Self::new(key_from_env(KEY_VAR, "the verdict-link signing key")?.as_bytes())
    }

    /// From the key's bytes: at least [`MIN_KEY_BYTES`].
    pub fn new(key: &[u8]) -> Result<Self, Failure> {
        if key.len() < MIN_KEY_BYTES {
            return Err(Failure::Config(format!(
                "{KEY_VAR} must be at least {MIN_KEY_BYTES} bytes (a random secret, e.g. `openssl rand -hex 32`)"
            )));
        }
        Ok(VerdictKey {
            mac: Hmac::new_from_slice(key).expect("HMAC takes keys of any size"),
        })
    }

    fn mac_of(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac
    }
}

/// The analyst's verdict a link proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fraud,
    NotFraud,
}

impl Verdict {
    /// As the token and the database write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fraud => "fraud",
            Verdict::NotFraud => "not_fraud",
        }
    }

    fn parse(text: &str) -> Option<Verdict> {
        match text {
            "fraud" => Some(Verdict::Fraud),
            "not_fraud" => Some(Verdict::NotFraud),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token says: this verdict on this payment, until then (whole seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub trans_num: String,
    pub verdict: Verdict,
    pub expires_at: DateTime<Utc>,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Not a token of this format (or a claim that cannot be put in one).
    #[error("not a verdict token: {0}")]
    Malformed(&'static str),
    /// The signature does not match: changed, or signed with another key.
    #[error("the verdict token's signature does not match (changed, or signed with another key)")]
    BadSignature,
    /// Authentic, but past its expiry.
    #[error("the verdict link expired at {0}")]
    Expired(DateTime<Utc>),
}

impl TokenError {
    /// The case's name, as the test vectors and the dashboard name it.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired(_) => "expired",
        }
    }
}

impl Claim {
    /// A claim, checked: trans_num 1–64 of `[A-Za-z0-9_-]`, an expiry after 1970 (kept to the
    /// second).
    pub fn new(
        trans_num: &str,
        verdict: Verdict,
        expires_at: DateTime<Utc>,
    ) -> Result<Claim, TokenError> {
        if !valid_trans_num(trans_num) {
            return Err(TokenError::Malformed(
                "trans_num must be 1-64 letters, digits, '-' or '_'",
            ));
        }
        if expires_at.timestamp() < 1 {
            return Err(TokenError::Malformed("expiry before 1970"));
        }
        Ok(Claim {
            trans_num: trans_num.to_string(),
            verdict,
            expires_at: truncated(expires_at),
        })
    }

    /// The signed part: `v1.TRANS_NUM.VERDICT.EXPIRES`.
    fn signed_text(&self) -> String {
        format!(
            "{VERSION}.{}.{}.{}",
            self.trans_num,
            self.verdict,
            self.expires_at.timestamp()
        )
    }
}

fn truncated(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).expect("a whole second of a valid time")
}

fn valid_trans_num(text: &str) -> bool {
    (1..=MAX_TRANS_NUM_CHARS).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token of a claim: `v1.TRANS_NUM.VERDICT.EXPIRES.SIGNATURE` (docs/verdict-links.md).
pub fn token(key: &VerdictKey, claim: &Claim) -> String {
    let signed = claim.signed_text();
    let signature = hex::encode(key.mac_of(&signed).finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// The dashboard link proposing `verdict` on `trans_num` until `expires_at`.
pub fn link(
    base_url: &str,
    key: &VerdictKey,
    trans_num: &str,
    verdict: Verdict,
    expires_at: DateTime<Utc>,
) -> Result<String, TokenError> {
    let claim = Claim::new(trans_num, verdict, expires_at)?;
    Ok(url(base_url, &token(key, &claim)))
}

/// The claim of an authentic, unexpired token. Checked in this order: its form, its signature
/// (compared in constant time), then its expiry against `now`.
pub fn verify(key: &VerdictKey, token: &str, now: DateTime<Utc>) -> Result<Claim, TokenError> {
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or(TokenError::Malformed("no signature"))?;
    let claim = parse_signed(signed)?;
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(TokenError::Malformed(
            "the signature is not 64 lowercase hex digits",
        ));
    }
    let signature = hex::decode(signature).map_err(|_| TokenError::Malformed("signature"))?;
    key.mac_of(signed)
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    if now >= claim.expires_at {
        return Err(TokenError::Expired(claim.expires_at));
    }
    Ok(claim)
}

/// `v1.TRANS_NUM.VERDICT.EXPIRES`, each field in its canonical form.
fn parse_signed(signed: &str) -> Result<Claim, TokenError> {
    let fields: Vec<&str> = signed.split('.').collect();
    let [version, trans_num, verdict, expires] = fields[..] else {
        return Err(TokenError::Malformed("not five fields"));
    };
    if version != VERSION {
        return Err(TokenError::Malformed("unknown version"));
    }
    let verdict = Verdict::parse(verdict).ok_or(TokenError::Malformed("unknown verdict"))?;
    let canonical = !expires.is_empty()
        && expires.len() <= 10
        && !expires.starts_with('0')
        && expires.bytes().all(|b| b.is_ascii_digit());
    let seconds: i64 = match canonical {
        true => expires
            .parse()
            .map_err(|_| TokenError::Malformed("expiry"))?,
        false => return Err(TokenError::Malformed("the expiry is not Unix seconds")),
    };
    let expires_at = DateTime::from_timestamp(seconds, 0).ok_or(TokenError::Malformed("expiry"))?;
    Claim::new(trans_num, verdict, expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/fixtures/verdict_vectors.json, shared with the dashboard's tests.
    #[derive(serde::Deserialize)]
    struct Vectors {
        key: String,
        now: i64,
        valid: Vec<Valid>,
        invalid: Vec<Invalid>,
    }

    #[derive(serde::Deserialize)]
    struct Valid {
        trans_num: String,
        verdict: String,
        expires_at: i64,
        token: String,
    }

    #[derive(serde::Deserialize)]
    struct Invalid {
        name: String,
        token: String,
        error: String,
    }

    fn vectors() -> (Vectors, VerdictKey, DateTime<Utc>) {
        let v: Vectors =
            serde_json::from_str(include_str!("../tests/fixtures/verdict_vectors.json")).unwrap();
        let key = VerdictKey::new(v.key.as_bytes()).unwrap();
        let now = DateTime::from_timestamp(v.now, 0).unwrap();
        (v, key, now)
    }

    #[test]
    fn the_shared_vectors_sign_and_verify_as_written() {
        let (v, key, now) = vectors();
        assert!(!v.valid.is_empty());
        for case in &v.valid {
            let verdict = Verdict::parse(&case.verdict).unwrap();
            let expires = DateTime::from_timestamp(case.expires_at, 0).unwrap();
            let claim = Claim::new(&case.trans_num, verdict, expires).unwrap();
            assert_eq!(token(&key, &claim), case.token, "{}", case.trans_num);
            assert_eq!(verify(&key, &case.token, now), Ok(claim));
        }
    }

    #[test]
    fn the_shared_vectors_refuse_what_they_should() {
        let (v, key, now) = vectors();
        let mut codes: Vec<&str> = Vec::new();
        for case in &v.invalid {
            let got = verify(&key, &case.token, now).map(|c| c.trans_num);
            let code = got.as_ref().map_err(TokenError::code).err();
            assert_eq!(code, Some(case.error.as_str()), "{}: {got:?}", case.name);
            codes.push(code.unwrap());
        }
        for needed in ["malformed", "bad_signature", "expired"] {
            assert!(codes.contains(&needed), "no vector refused as {needed}");
        }
    }

    #[test]
    fn another_key_is_a_bad_signature() {
        let (v, _, now) = vectors();
        let other = VerdictKey::new(&[b'x'; 32]).unwrap();
        assert_eq!(
            verify(&other, &v.valid[0].token, now),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn links_open_the_dashboard_with_the_token_and_expire_after_the_ttl() {
        let key = VerdictKey::new(&[7; 32]).unwrap();
        let now = DateTime::from_timestamp(1_780_000_000, 500).unwrap();
        let args = VerdictArgs {
            verdict_ttl_hours: 2,
        };
        let links = args.links(&key, "t-1", now).unwrap();
        let token = &links.fraud;
        assert_eq!(
            url("http://dash.example:8501/", token),
            format!("http://dash.example:8501/?verdict={token}")
        );
        let claim = verify(&key, token, now).unwrap();
        assert_eq!(claim.verdict, Verdict::Fraud);
        assert_eq!(claim.expires_at.timestamp(), 1_780_000_000 + 7200);
        assert!(links.not_fraud.contains(".not_fraud."));
        let later = now + Duration::hours(2);
        assert!(matches!(
            verify(&key, token, later),
            Err(TokenError::Expired(_))
        ));
    }

    #[test]
    fn claims_that_cannot_be_put_in_a_token_are_refused() {
        let key = VerdictKey::new(&[7; 32]).unwrap();
        let at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        for bad in ["", "a.b", "a b", "é", &"x".repeat(65)] {
            let got = link("http://d", &key, bad, Verdict::Fraud, at);
            assert!(matches!(got, Err(TokenError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_short_key_is_a_configuration_error_that_does_not_show_it() {
        let err = VerdictKey::new(b"short-secret-value").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::CONFIG);
        assert!(!err.to_string().contains("short-secret-value"), "{err}");
        assert_eq!(
            format!("{:?}", VerdictKey::new(&[1; 32]).unwrap()),
            "VerdictKey(…)"
        );
    }
}
