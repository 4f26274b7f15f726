//! The canonical transaction: what `extract` keeps of a payments-API row after validation.
//!
//! Validation never guesses: a field of the wrong type, out of range or missing rejects the
//! record with a reason naming the field. The card number is read as an exact integer (or a
//! digit string), never through a float, and replaced by its protected form.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::{Map, Number, Value};

use crate::pan::{
    holds_card_number, mask_digit_runs, mask_digit_runs_into, mask_value, PanProtector,
};

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

    /// Appends the transaction's JSON line (with its newline) to `out`: what serde_json writes
    /// for it, byte for byte (`write_line_is_what_serde_json_writes` holds them equal), at a
    /// fraction of the cost (extract writes a million): the keys are written whole, and a string
    /// that needs no escaping is copied.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.reserve(1024);
        let mut line = JsonLine(out);
        line.text(b"{\"trans_num\":", &self.trans_num);
        line.int(b",\"trans_time_ms\":", self.trans_time_ms);
        line.text(b",\"cc_last4\":", &self.cc_last4);
        line.text(b",\"cc_hash\":", &self.cc_hash);
        line.text(b",\"merchant\":", &self.merchant);
        line.text(b",\"category\":", &self.category);
        line.float(b",\"amt\":", self.amt);
        line.text(b",\"gender\":", &self.gender);
        line.text(b",\"city\":", &self.city);
        line.text(b",\"state\":", &self.state);
        line.uint(b",\"zip\":", self.zip.into());
        line.float(b",\"lat\":", self.lat);
        line.float(b",\"long\":", self.long);
        line.uint(b",\"city_pop\":", self.city_pop);
        line.text(b",\"job\":", &self.job);
        line.date(b",\"dob\":", self.dob);
        line.float(b",\"merch_lat\":", self.merch_lat);
        line.float(b",\"merch_long\":", self.merch_long);
        line.put(b",\"is_fraud\":");
        line.put(match self.is_fraud {
            None => b"null",
            Some(true) => b"true",
            Some(false) => b"false",
        });
        if let Some(ms) = self.captured_at_ms {
            line.int(b",\"captured_at_ms\":", ms);
        }
        line.put(b"}\n");
    }
}

/// A JSON line being written ([`Transaction::write_line`]): numbers by serde_json's own
/// formatter, a string that needs escaping by serde_json.
struct JsonLine<'a>(&'a mut Vec<u8>);

impl JsonLine<'_> {
    /// `key` is the key with its separators: `,"name":`.
    fn text(&mut self, key: &[u8], text: &str) {
        self.put(key);
        // Every byte looked at: with no early exit the compiler can vectorise the loop.
        let plain = text.bytes().fold(true, |plain, b| {
            plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
        });
        if plain {
            self.put(b"\"");
            self.put(text.as_bytes());
            self.put(b"\"");
        } else {
            serde_json::to_writer(&mut *self, text).expect("writing to memory");
        }
    }

    fn int(&mut self, key: &[u8], value: i64) {
        self.put(key);
        CompactFormatter
            .write_i64(self, value)
            .expect("writing to memory");
    }

    fn uint(&mut self, key: &[u8], value: u64) {
        self.put(key);
        CompactFormatter
            .write_u64(self, value)
            .expect("writing to memory");
    }

    fn float(&mut self, key: &[u8], value: f64) {
        self.put(key);
        let written = if value.is_finite() {
            CompactFormatter.write_f64(self, value)
        } else {
            CompactFormatter.write_null(self)
        };
        written.expect("writing to memory");
    }

    /// A date as chrono writes it: `"YYYY-MM-DD"` for the years 0 to 9999.
    fn date(&mut self, key: &[u8], date: NaiveDate) {
        self.put(key);
        match u32::try_from(date.year()) {
            Ok(year) if year <= 9999 => {
                self.put(b"\"");
                self.padded(year, 4);
                self.put(b"-");
                self.padded(date.month(), 2);
                self.put(b"-");
                self.padded(date.day(), 2);
                self.put(b"\"");
            }
            _ => serde_json::to_writer(&mut *self, &date).expect("writing to memory"),
        }
    }

    /// `n` in decimal, with leading zeros to `width` digits.
    fn padded(&mut self, n: u32, width: usize) {
        let mut buf = [0u8; 20];
        let digits = decimal_text(n.into(), &mut buf);
        (digits.len()..width).for_each(|_| self.put(b"0"));
        self.put(digits.as_bytes());
    }

    /// Copies `bytes` (inlined: a key's copy is then a few moves, not a call to `memcpy`).
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl std::io::Write for JsonLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.put(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// A trans_num: 1 to 64 letters, digits, '-' or '_', holding no card number ([`holds_card_number`]:
/// it becomes a Message-ID, verdict links and log lines).
fn check_identifier(trans_num: &str) -> Result<(), String> {
    if trans_num.is_empty()
        || trans_num.len() > 64
        || !trans_num
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "trans_num {trans_num:?} is not 1-64 letters, digits, '-' or '_'"
        ));
    }
    if holds_card_number(trans_num) {
        return Err(format!(
            "trans_num {trans_num:?} holds a card number: an identifier must not"
        ));
    }
    Ok(())
}

/// An amount: positive, at most [`MAX_AMOUNT`], in whole cents.
fn check_amount(amt: f64) -> Result<(), String> {
    if !(amt > 0.0 && amt <= MAX_AMOUNT) {
        return Err(format!(
            "amt {amt} is not between 0 (excluded) and {MAX_AMOUNT}"
        ));
    }
    if ((amt * 100.0).round() - amt * 100.0).abs() > 1e-6 {
        return Err(format!("amt {amt} has more than two decimal places"));
    }
    Ok(())
}

/// Text a payment carries: not blank, at most 200 bytes, and no control character but tab
/// (a NUL cannot be stored; a newline or a carriage return would start a line of an email).
pub fn check_text(name: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() || text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{name} is empty or longer than {MAX_TEXT_BYTES} bytes"
        ));
    }
    match text.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "{name} holds the control character U+{:04X}: not text a payment carries",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// The longest text field, in bytes.
const MAX_TEXT_BYTES: usize = 200;

/// `to` made `text`, in the memory it has.
fn set(to: &mut String, text: &str) {
    to.clear();
    to.push_str(text);
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

/// `n` in decimal, written at the end of `buf`.
fn decimal_text(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).expect("ASCII digits")
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

    /// `write_line` writes what serde_json writes, whatever the strings, numbers and dates hold.
    #[test]
    fn write_line_is_what_serde_json_writes() {
        use rand::{Rng, SeedableRng};
        let texts = [
            "plain",
            "",
            "quote \" in",
            "back\\slash",
            "tab\tand\nnewline",
            "\u{1}\u{1f}",
            "del \u{7f}",
            "é ü ß",
            "emoji 🎉",
            "</script>",
            "fraud_Rippin, Kub and Mann",
        ];
        let dates = [
            (1900, 1, 1),
            (1988, 3, 9),
            (2099, 12, 31),
            (999, 5, 6),
            (1, 1, 1),
            (9999, 12, 31),
            (10000, 1, 1),
            (-5, 7, 8),
        ];
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut text = || texts[rng.gen_range(0..texts.len())].to_string();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(8);
        for i in 0..2000 {
            let mut float = || match rng.gen_range(0..4) {
                0 => rng.gen_range(-180.0..180.0),
                1 => f64::from(rng.gen_range(0..100_000)) / 100.0,
                2 => rng.gen::<f64>() * 10f64.powi(rng.gen_range(-30..30)),
                _ => [0.0, -0.0, 1e21, 1e-7, f64::MAX, f64::NAN, f64::INFINITY][i % 7],
            };
            let (y, m, d) = dates[i % dates.len()];
            let tx = Transaction {
                trans_num: text(),
                trans_time_ms: [0, -1, i64::MAX, i64::MIN, 1_600_000_000_000][i % 5],
                cc_last4: text(),
                cc_hash: text(),
                merchant: text(),
                category: text(),
                amt: float(),
                gender: text(),
                city: text(),
                state: text(),
                zip: [0, 28654, u32::MAX][i % 3],
                lat: float(),
                long: float(),
                city_pop: [0, 3495, u64::MAX][i % 3],
                job: text(),
                dob: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
                merch_lat: float(),
                merch_long: float(),
                is_fraud: [None, Some(true), Some(false)][i % 3],
                captured_at_ms: [None, Some(1_600_000_000_123)][i % 2],
            };
            let mut expected = serde_json::to_vec(&tx).unwrap();
            expected.push(b'\n');
            let mut line = b"before ".to_vec();
            tx.write_line(&mut line);
            assert_eq!(
                String::from_utf8_lossy(&line[7..]),
                String::from_utf8_lossy(&expected),
                "{tx:?}"
            );
        }
    }
}
