//! Validation of a payments-API row (an API body's object, or a CSV record read as the API
//! would send it) into a [`Transaction`]: never guessing, a field of the wrong type, out of
//! range or missing rejects the record with a reason naming the field; the card number read as
//! an exact integer (or a digit string), never through a float, and replaced by its protected
//! form.

use chrono::NaiveDate;
use serde_json::{Map, Number, Value};

use super::checks::check_text;
use super::columns::{api_column, API_COLUMNS};
use super::json::decimal_text;
use super::Transaction;
use crate::pan::{mask_digit_runs, mask_digit_runs_into, PanProtector};

/// A value of a row as validation reads it: a value of an API body, or a CSV cell as the API
/// would send its column ([`crate::dataset::Layout`]), without a map between them.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Json(&'a Value),
    /// A string (a CSV text cell, or a cell that does not read as its column's type).
    Text(&'a str),
    Number(Number),
}

impl<'a> Cell<'a> {
    fn text(&self) -> Option<&'a str> {
        match *self {
            Cell::Json(Value::String(s)) => Some(s),
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }

    fn number(&self) -> Option<&Number> {
        match self {
            Cell::Json(Value::Number(n)) | Cell::Number(n) => Some(n),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Cell::Json(v) => kind(v),
            Cell::Text(_) => "a string",
            Cell::Number(_) => "a number",
        }
    }

    /// The value as JSON (for a reason quoting it).
    fn json(&self) -> Value {
        match self {
            Cell::Json(v) => (*v).clone(),
            Cell::Text(s) => Value::from(*s),
            Cell::Number(n) => Value::Number(n.clone()),
        }
    }
}

/// A row validation reads: the value of each payments-API column, by its index in
/// [`API_COLUMNS`] (`None` when the row has no such column).
pub trait Row {
    fn field(&self, column: usize) -> Option<Cell<'_>>;
}

/// An API body's row (column name → JSON value).
impl Row for Map<String, Value> {
    fn field(&self, column: usize) -> Option<Cell<'_>> {
        self.get(API_COLUMNS[column]).map(Cell::Json)
    }
}

/// The index of a payments-API column, computed when compiling.
macro_rules! col {
    ($name:literal) => {
        const { api_column($name) }
    };
}

/// Validates one row into a [`Transaction`], or says why not. A card number never survives in
/// what it returns: free-text fields keep their digit runs masked ("Shop ref ****4500"), a
/// reason quoting a value has it masked, and a trans_num that is a card number is refused.
pub fn validate(row: &impl Row, pan: &PanProtector) -> Result<Transaction, String> {
    let mut tx = Transaction::default();
    validate_into(row, pan, &mut tx).map(|()| tx)
}

/// [`validate`] into `tx`, reusing the memory of its strings (a worker validates a million
/// rows); after an error, what `tx` holds is unspecified.
pub fn validate_into(
    row: &impl Row,
    pan: &PanProtector,
    tx: &mut Transaction,
) -> Result<(), String> {
    validate_fields(&Fields(row), pan, tx).map_err(|reason| mask_digit_runs(&reason))
}

fn validate_fields<R: Row>(
    f: &Fields<R>,
    pan: &PanProtector,
    tx: &mut Transaction,
) -> Result<(), String> {
    let mut digits = [0u8; 20];
    pan.protect_into(
        f.card_number(&mut digits)?,
        &mut tx.cc_last4,
        &mut tx.cc_hash,
    );
    tx.trans_time_ms = f.integer(col!("current_time"))?;
    tx.amt = f.number(col!("amt"))?;
    tx.dob = f.date(col!("dob"))?;
    set(&mut tx.gender, f.string(col!("gender"))?);
    set(&mut tx.state, f.string(col!("state"))?);
    set(&mut tx.trans_num, f.string(col!("trans_num"))?);
    f.free_text(col!("merchant"), &mut tx.merchant)?;
    f.free_text(col!("category"), &mut tx.category)?;
    f.free_text(col!("city"), &mut tx.city)?;
    tx.zip =
        u32::try_from(f.integer(col!("zip"))?).map_err(|_| "zip is not a 5-digit postal code")?;
    tx.lat = f.number(col!("lat"))?;
    tx.long = f.number(col!("long"))?;
    tx.city_pop = u64::try_from(f.integer(col!("city_pop"))?)
        .map_err(|_| "city_pop is not between 0 and 100000000")?;
    f.free_text(col!("job"), &mut tx.job)?;
    tx.merch_lat = f.number(col!("merch_lat"))?;
    tx.merch_long = f.number(col!("merch_long"))?;
    tx.is_fraud = f.label(col!("is_fraud"))?;
    tx.check()
}

/// `to` made `text`, in the memory it has.
fn set(to: &mut String, text: &str) {
    to.clear();
    to.push_str(text);
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

struct Fields<'a, R>(&'a R);

impl<'a, R: Row> Fields<'a, R> {
    fn get(&self, column: usize) -> Result<Cell<'a>, String> {
        match self.0.field(column) {
            None | Some(Cell::Json(Value::Null)) => {
                Err(format!("missing field {}", API_COLUMNS[column]))
            }
            Some(v) => Ok(v),
        }
    }

    /// A free-text field (merchant, city, job…) into `to`, its digit runs of card-number length
    /// masked.
    fn free_text(&self, column: usize, to: &mut String) -> Result<(), String> {
        self.string(column)
            .map(|text| mask_digit_runs_into(text, to))
    }

    /// A text field, checked before anything is made of it ([`check_text`]).
    fn string(&self, column: usize) -> Result<&'a str, String> {
        let name = API_COLUMNS[column];
        let field = self.get(column)?;
        let text = field
            .text()
            .ok_or_else(|| format!("{name} must be a string, got {}", field.kind()))?;
        check_text(name, text).map(|()| text)
    }

    fn number(&self, column: usize) -> Result<f64, String> {
        let name = API_COLUMNS[column];
        let field = self.get(column)?;
        let n = field
            .number()
            .ok_or_else(|| format!("{name} must be a number, got {}", field.kind()))?;
        n.as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{name} is not a finite number"))
    }

    fn integer(&self, column: usize) -> Result<i64, String> {
        let name = API_COLUMNS[column];
        let field = self.get(column)?;
        let n = field
            .number()
            .ok_or_else(|| format!("{name} must be an integer, got {}", field.kind()))?;
        if let Some(i) = n.as_i64() {
            return Ok(i);
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            _ => Err(format!("{name} must be an integer, got {n}")),
        }
    }

    fn date(&self, column: usize) -> Result<NaiveDate, String> {
        let s = self.string(column)?;
        canonical_date(s)
            .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .ok_or_else(|| format!("{} {s:?} is not a YYYY-MM-DD date", API_COLUMNS[column]))
    }

    /// The card number as decimal digits: an exact JSON integer (written in `buf`) or a digit
    /// string, 11–19 digits.
    fn card_number<'b>(&self, buf: &'b mut [u8; 20]) -> Result<&'b str, String>
    where
        'a: 'b,
    {
        let field = self.get(col!("cc_num"))?;
        let digits = match (field.number().and_then(Number::as_u64), field.text()) {
            (Some(n), _) => decimal_text(n, buf),
            (None, _) if field.number().is_some() => {
                return Err(
                    "cc_num must be a whole number of 11-19 digits, got a float or negative number"
                        .into(),
                )
            }
            (None, Some(s)) => s.trim(),
            (None, None) => return Err(format!("cc_num must be a number, got {}", field.kind())),
        };
        if !(11..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "cc_num is not 11-19 digits (got {} characters)",
                digits.len()
            ));
        }
        Ok(digits)
    }

    fn label(&self, column: usize) -> Result<Option<bool>, String> {
        let field = match self.0.field(column) {
            None | Some(Cell::Json(Value::Null)) => return Ok(None),
            Some(Cell::Json(Value::Bool(b))) => return Ok(Some(*b)),
            Some(field) => field,
        };
        match field.number().and_then(Number::as_u64) {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            _ => Err(format!(
                "{} must be 0 or 1, got {}",
                API_COLUMNS[column],
                field.json()
            )),
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
