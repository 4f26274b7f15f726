//! The canonical transaction: what `extract` keeps of a payments-API row after validation.
//!
//! Validation never guesses: a field of the wrong type, out of range or missing rejects the
//! record with a reason naming the field. The card number is read as an exact integer (or a
//! digit string), never through a float, and replaced by its protected form.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::pan::{has_card_number_word, mask_digit_runs, mask_value, PanProtector};

/// The 21 columns of the payments API, in order.
pub const API_COLUMNS: [&str; 21] = [
    "cc_num",
    "merchant",
    "category",
    "amt",
    "first",
    "last",
    "gender",
    "street",
    "city",
    "state",
    "zip",
    "lat",
    "long",
    "city_pop",
    "job",
    "dob",
    "trans_num",
    "merch_lat",
    "merch_long",
    "is_fraud",
    "current_time",
];

/// The position of a column in [`API_COLUMNS`]; in a constant, a name that is not one of them
/// does not compile.
pub const fn api_column(name: &str) -> usize {
    let mut i = 0;
    while i < API_COLUMNS.len() {
        if same_bytes(API_COLUMNS[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("not a payments-API column")
}

const fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Largest amount accepted, in the data set's currency.
pub const MAX_AMOUNT: f64 = 1_000_000.0;

/// Transaction times accepted, in epoch milliseconds: 2000-01-01 to 2100-01-01 (excluded).
const TIME_RANGE_MS: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

fn time_range_error(ms: i64) -> String {
    format!("current_time {ms} is not epoch milliseconds between 2000 and 2100")
}

/// Reads `trans_time_ms` from a stage file with the range `validate` enforces, so that a
/// hand-edited file is refused as bad input rather than crashing a later stage.
fn time_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let ms = i64::deserialize(d)?;
    if TIME_RANGE_MS.contains(&ms) {
        Ok(ms)
    } else {
        Err(serde::de::Error::custom(time_range_error(ms)))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub trans_num: String,
    #[serde(deserialize_with = "time_in_range")]
    pub trans_time_ms: i64,
    pub cc_last4: String,
    pub cc_hash: String,
    pub merchant: String,
    pub category: String,
    pub amt: f64,
    pub gender: String,
    pub city: String,
    pub state: String,
    pub zip: u32,
    pub lat: f64,
    pub long: f64,
    pub city_pop: u64,
    pub job: String,
    pub dob: NaiveDate,
    pub merch_lat: f64,
    pub merch_long: f64,
    pub is_fraud: Option<bool>,
}

impl Transaction {
    pub fn trans_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.trans_time_ms).expect("validated when read")
    }

    /// The amount in cents (amounts are validated to carry at most two decimals).
    pub fn amt_cents(&self) -> i64 {
        (self.amt * 100.0).round() as i64
    }
}

/// Validates one row (column name → JSON value) into a [`Transaction`], or says why not. A
/// card number never survives in what it returns: free-text fields keep their digit runs
/// masked ("Shop ref ****4500"), a reason quoting a value has it masked, and a trans_num that
/// is a card number is refused.
pub fn validate(row: &Map<String, Value>, pan: &PanProtector) -> Result<Transaction, String> {
    validate_fields(row, pan).map_err(|reason| mask_digit_runs(&reason))
}

fn validate_fields(row: &Map<String, Value>, pan: &PanProtector) -> Result<Transaction, String> {
    let f = Fields(row);
    let cc_digits = f.card_number()?;
    let protected = pan.protect(&cc_digits);
    let trans_time_ms = f.integer("current_time")?;
    if !TIME_RANGE_MS.contains(&trans_time_ms) {
        return Err(time_range_error(trans_time_ms));
    }
    let trans_time = DateTime::from_timestamp_millis(trans_time_ms).expect("range checked");
    let amt = f.number("amt", 0.0, MAX_AMOUNT)?;
    if amt <= 0.0 {
        return Err(format!("amt {amt} must be positive"));
    }
    if ((amt * 100.0).round() - amt * 100.0).abs() > 1e-6 {
        return Err(format!("amt {amt} has more than two decimal places"));
    }
    let dob = f.date("dob")?;
    if dob >= trans_time.date_naive() || dob.year() < 1900 {
        return Err(format!(
            "dob {dob} is not a birth date before the transaction"
        ));
    }
    let gender = f.string("gender")?;
    if gender != "M" && gender != "F" {
        return Err(format!("gender {gender:?} is not \"M\" or \"F\""));
    }
    let state = f.string("state")?;
    if state.len() != 2 || !state.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("state {state:?} is not a two-letter code"));
    }
    let trans_num = f.string("trans_num")?;
    if trans_num.len() > 64
        || !trans_num
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "trans_num {trans_num:?} is not 1-64 letters, digits, '-' or '_'"
        ));
    }
    if has_card_number_word(&trans_num) {
        return Err(format!(
            "trans_num {trans_num:?} holds a card number: an identifier must not"
        ));
    }
    Ok(Transaction {
        trans_num,
        trans_time_ms,
        cc_last4: protected.last4,
        cc_hash: protected.hash,
        merchant: f.free_text("merchant")?,
        category: f.free_text("category")?,
        amt,
        gender,
        city: f.free_text("city")?,
        state,
        zip: u32::try_from(f.integer("zip")?)
            .ok()
            .filter(|z| *z <= 99_999)
            .ok_or("zip is not a 5-digit postal code")?,
        lat: f.number("lat", -90.0, 90.0)?,
        long: f.number("long", -180.0, 180.0)?,
        city_pop: u64::try_from(f.integer("city_pop")?)
            .ok()
            .filter(|p| *p <= 100_000_000)
            .ok_or("city_pop is not between 0 and 100000000")?,
        job: f.free_text("job")?,
        dob,
        merch_lat: f.number("merch_lat", -90.0, 90.0)?,
        merch_long: f.number("merch_long", -180.0, 180.0)?,
        is_fraud: f.label("is_fraud")?,
    })
}

/// Fields of a row that a rejected file never keeps: who the card holder is and where they
/// live (the reason names the field, and quotes its value when that value is the problem).
const PERSONAL: [&str; 7] = ["first", "last", "street", "dob", "zip", "lat", "long"];

/// Longest text a rejected record keeps of one value.
const KEPT_CHARS: usize = 200;

/// A row as kept in a rejected file: the card number reduced to its protected form, the card
/// holder's personal fields dropped, everything else as received (whatever its column name)
/// but with every digit run of card-number length masked and every text cut to 200
/// characters, so the reason can be checked.
pub fn redact(row: &Map<String, Value>, pan: &PanProtector) -> Value {
    let mut kept = Map::new();
    for (name, value) in row {
        match name.as_str() {
            n if PERSONAL.contains(&n) => {}
            "cc_num" => {
                let digits = match value {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    let p = pan.protect(&digits);
                    kept.insert("cc_last4".into(), Value::String(p.last4));
                    kept.insert("cc_hash".into(), Value::String(p.hash));
                } else {
                    kept.insert(
                        "cc_num".into(),
                        mask_value(&Value::String(digits), KEPT_CHARS),
                    );
                }
            }
            _ => {
                kept.insert(
                    crate::pan::cut(&mask_digit_runs(name), KEPT_CHARS),
                    mask_value(value, KEPT_CHARS),
                );
            }
        }
    }
    Value::Object(kept)
}

/// `YYYY-MM-DD` read without a format string (a million rows read two dates each); `None` for
/// any other form, which chrono's parser then reads (or refuses) as it always did.
pub fn canonical_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        decimal(&b[0..4])? as i32,
        decimal(&b[5..7])?,
        decimal(&b[8..10])?,
    )
}

/// The value of a run of ASCII digits (at most 9 of them), `None` if one is not a digit.
pub fn decimal(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(format!("missing field {name}")),
            Some(v) => Ok(v),
        }
    }

    /// A free-text field (merchant, city, job…), its digit runs of card-number length masked.
    fn free_text(&self, name: &str) -> Result<String, String> {
        self.string(name).map(|s| mask_digit_runs(&s))
    }

    fn string(&self, name: &str) -> Result<String, String> {
        match self.get(name)? {
            Value::String(s) if !s.trim().is_empty() && s.len() <= 200 => Ok(s.clone()),
            Value::String(_) => Err(format!("{name} is empty or longer than 200 characters")),
            other => Err(format!("{name} must be a string, got {}", kind(other))),
        }
    }

    fn number(&self, name: &str, min: f64, max: f64) -> Result<f64, String> {
        match self.get(name)? {
            Value::Number(n) => {
                let v = n
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or(format!("{name} is not a finite number"))?;
                if v < min || v > max {
                    return Err(format!("{name} {v} is outside [{min}, {max}]"));
                }
                Ok(v)
            }
            other => Err(format!("{name} must be a number, got {}", kind(other))),
        }
    }

    fn integer(&self, name: &str) -> Result<i64, String> {
        match self.get(name)? {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    return Ok(i);
                }
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
                    _ => Err(format!("{name} must be an integer, got {n}")),
                }
            }
            other => Err(format!("{name} must be an integer, got {}", kind(other))),
        }
    }

    fn date(&self, name: &str) -> Result<NaiveDate, String> {
        let s = self.string(name)?;
        canonical_date(&s)
            .or_else(|| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
            .ok_or_else(|| format!("{name} {s:?} is not a YYYY-MM-DD date"))
    }

    /// The card number as decimal digits: an exact JSON integer or a digit string, 11–19 digits.
    fn card_number(&self) -> Result<String, String> {
        let digits =
            match self.get("cc_num")? {
                Value::Number(n) if n.is_u64() => n.to_string(),
                Value::Number(_) => return Err(
                    "cc_num must be a whole number of 11-19 digits, got a float or negative number"
                        .into(),
                ),
                Value::String(s) => s.trim().to_string(),
                other => return Err(format!("cc_num must be a number, got {}", kind(other))),
            };
        if !(11..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "cc_num is not 11-19 digits (got {} characters)",
                digits.len()
            ));
        }
        Ok(digits)
    }

    fn label(&self, name: &str) -> Result<Option<bool>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(other) => Err(format!("{name} must be 0 or 1, got {other}")),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
