//! The canonical transaction: what `extract` keeps of a payments-API row after validation
//! (`validate.rs`), the rules it keeps whoever made it (`checks.rs`), its JSON line
//! (`json.rs`); the API's columns (`columns.rs`); what a rejected file keeps of a row
//! (`redacted.rs`).

mod checks;
mod columns;
mod json;
mod redacted;
mod validate;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::pan::mask_digit_runs;

use checks::{check_amount, check_identifier, time_range_error, TIME_RANGE_MS};
pub use checks::{check_text, MAX_AMOUNT};
pub use columns::{api_column, API_COLUMNS};
pub use redacted::redacted_row;
pub use validate::{canonical_date, decimal, validate, validate_into, Cell, Row};

/// The canonical transaction's fields, written once: [`Transaction`] and the form a stage file's
/// record is read in before [`Transaction::check`] are both made from this list.
macro_rules! canonical_transaction {
    ($($(#[$attr:meta])* $name:ident: $ty:ty,)*) => {
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(try_from = "Unchecked")]
        pub struct Transaction {
            $($(#[$attr])* pub $name: $ty,)*
        }

        /// A transaction as a stage file holds it: any field it does not know is refused, and
        /// what it holds is checked ([`Transaction::check`]), so that a hand-edited file cannot
        /// feed a later stage what extract would have refused.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Unchecked {
            $($(#[$attr])* $name: $ty,)*
        }

        impl TryFrom<Unchecked> for Transaction {
            type Error = String;

            fn try_from(read: Unchecked) -> Result<Self, String> {
                let tx = Transaction { $($name: read.$name,)* };
                tx.check().map(|()| tx)
            }
        }
    };
}

canonical_transaction! {
    trans_num: String,
    trans_time_ms: i64,
    cc_last4: String,
    cc_hash: String,
    merchant: String,
    category: String,
    amt: f64,
    gender: String,
    city: String,
    state: String,
    zip: u32,
    lat: f64,
    long: f64,
    city_pop: u64,
    job: String,
    dob: NaiveDate,
    merch_lat: f64,
    merch_long: f64,
    is_fraud: Option<bool>,
    /// When this payment was captured (epoch milliseconds: the API's response that carried it
    /// arrived); absent from files that predate it and from a CSV, whose capture is the file's
    /// (the header's `created_at`). What the card history orders payments by knowledge with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    captured_at_ms: Option<i64>,
}

impl Transaction {
    /// The rules a canonical transaction keeps, whoever made it: extract's validation ends
    /// with them, and every reader of a stage file checks them again. The first rule broken,
    /// in words naming the field.
    pub fn check(&self) -> Result<(), String> {
        check_identifier(&self.trans_num)?;
        if !TIME_RANGE_MS.contains(&self.trans_time_ms) {
            return Err(time_range_error(self.trans_time_ms));
        }
        if let Some(ms) = self.captured_at_ms.filter(|ms| !TIME_RANGE_MS.contains(ms)) {
            return Err(format!(
                "captured_at_ms {ms} is not epoch milliseconds between 2000 and 2100"
            ));
        }
        check_amount(self.amt)?;
        if self.cc_last4.len() != 4 || !self.cc_last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err("cc_last4 is not the card's last four digits".into());
        }
        if self.cc_hash.len() != 64 || !self.cc_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("cc_hash is not a card hash (64 hexadecimal digits)".into());
        }
        for (name, text) in [
            ("merchant", &self.merchant),
            ("category", &self.category),
            ("city", &self.city),
            ("job", &self.job),
        ] {
            check_text(name, text)?;
            if mask_digit_runs(text) != *text {
                return Err(format!("{name} holds a card number"));
            }
        }
        if self.gender != "M" && self.gender != "F" {
            return Err(format!("gender {:?} is not \"M\" or \"F\"", self.gender));
        }
        if self.state.len() != 2 || !self.state.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("state {:?} is not a two-letter code", self.state));
        }
        if self.zip > 99_999 {
            return Err("zip is not a 5-digit postal code".into());
        }
        if self.city_pop > 100_000_000 {
            return Err("city_pop is not between 0 and 100000000".into());
        }
        for (name, value, bound) in [
            ("lat", self.lat, 90.0),
            ("long", self.long, 180.0),
            ("merch_lat", self.merch_lat, 90.0),
            ("merch_long", self.merch_long, 180.0),
        ] {
            if !(-bound..=bound).contains(&value) {
                return Err(format!("{name} {value} is outside [-{bound}, {bound}]"));
            }
        }
        if self.dob >= self.trans_time().date_naive() || self.dob.year() < 1900 {
            return Err(format!(
                "dob {} is not a birth date before the transaction",
                self.dob
            ));
        }
        Ok(())
    }

    pub fn trans_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.trans_time_ms).expect("validated when read")
    }

    /// The amount in cents (amounts are validated to carry at most two decimals).
    pub fn amt_cents(&self) -> i64 {
        (self.amt * 100.0).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::pan::PanProtector;

    /// What the stage_file fuzz target exercises: a raw file edited to hold a time chrono cannot
    /// represent made `transform` panic in `trans_time()`; it is now refused when read.
    #[test]
    fn a_stage_file_time_out_of_range_is_refused_when_read() {
        let pan = PanProtector::new(b"0123456789abcdef");
        let fixture: Value = serde_json::from_str(
            r#"{"cc_num": 4497913965512794052, "merchant": "m", "category": "c", "amt": 1.5,
                "gender": "F", "city": "x", "state": "NC", "zip": 28372, "lat": 1.0,
                "long": 2.0, "city_pop": 10, "job": "j", "dob": "1955-11-07",
                "trans_num": "t1", "merch_lat": 1.0, "merch_long": 2.0, "is_fraud": 0,
                "current_time": 1730134684025}"#,
        )
        .unwrap();
        let tx = validate(fixture.as_object().unwrap(), &pan).unwrap();
        let mut record = serde_json::to_value(&tx).unwrap();
        assert!(serde_json::from_value::<Transaction>(record.clone()).is_ok());
        for bad in [i64::MAX, -62_135_596_800_001_000, 4_102_444_800_000] {
            record["trans_time_ms"] = Value::from(bad);
            let err = serde_json::from_value::<Transaction>(record.clone())
                .unwrap_err()
                .to_string();
            assert!(err.contains("between 2000 and 2100"), "{err}");
        }
    }
}
