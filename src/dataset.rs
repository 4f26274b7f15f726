//! The data set's CSV layout (fraudTrain.csv / fraudTest.csv, and the shared sample): a leading
//! unnamed index column, `trans_date_trans_time, cc_num, …, is_fraud`. One reading of it for
//! `extract --from-csv` and `serve-payments --csv`: each cell becomes the JSON value the payments
//! API would send for its column, and `trans_date_trans_time` (read as UTC) becomes
//! `current_time` in epoch milliseconds, so both go through the API's validation.

use chrono::NaiveDateTime;

use crate::transaction::{canonical_date, decimal};
use serde_json::{Map, Number, Value};

/// The column holding the transaction time, and its format.
pub const TIME_COLUMN: &str = "trans_date_trans_time";
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Columns whose cells are numbers in the API's bodies.
const NUMERIC: [&str; 9] = [
    "cc_num",
    "amt",
    "zip",
    "lat",
    "long",
    "city_pop",
    "merch_lat",
    "merch_long",
    "is_fraud",
];

/// Whether a CSV's header is the data set's layout.
pub fn is_layout(headers: &csv::StringRecord) -> bool {
    headers.iter().any(|h| h == TIME_COLUMN)
}

/// A time cell in epoch milliseconds (UTC), `None` when it is not one.
pub fn time_ms(cell: &str) -> Option<i64> {
    canonical_time(cell)
        .or_else(|| NaiveDateTime::parse_from_str(cell, TIME_FORMAT).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// The data set's own form, `2019-01-01 00:00:18`, read without a format string (the CSV path
/// reads a million of them); any other form goes to chrono's parser.
fn canonical_time(cell: &str) -> Option<NaiveDateTime> {
    let b = cell.as_bytes();
    if b.len() != 19 || [b[10], b[13], b[16]] != *b" ::" {
        return None;
    }
    let n = |r: std::ops::Range<usize>| decimal(&b[r]);
    canonical_date(&cell[..10])?.and_hms_opt(n(11..13)?, n(14..16)?, n(17..19)?)
}

/// How a column's cells are read.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Time,
    Number,
    Text,
}

/// The API's name of a CSV column and how its cells are read; `None` for the index column.
fn column(name: &str) -> Option<(&str, Kind)> {
    match name {
        "" => None,
        TIME_COLUMN => Some(("current_time", Kind::Time)),
        n if NUMERIC.contains(&n) => Some((n, Kind::Number)),
        n => Some((n, Kind::Text)),
    }
}

/// A cell as the API sends its column: `None` when it stays a string (text, or a cell that
/// does not read as its column's type: validation then says why).
fn value(kind: Kind, cell: &str) -> Option<Value> {
    match kind {
        Kind::Time => time_ms(cell).map(Value::from),
        Kind::Number => number(cell),
        Kind::Text => None,
    }
}

/// A CSV row as the API's row (column → value), `current_time` from the time column.
pub fn row(headers: &csv::StringRecord, record: &csv::StringRecord) -> Map<String, Value> {
    let mut row = Map::new();
    for (name, cell) in headers.iter().zip(record.iter()) {
        if let Some((key, kind)) = column(name) {
            row.insert(
                key.to_string(),
                value(kind, cell).unwrap_or_else(|| Value::from(cell)),
            );
        }
    }
    row
}

/// [`row`] for every record of one header, into a reused map: a record as long as the header
/// costs no look-up and no allocation but the strings that grow (the CSV extract reads a
/// million).
pub struct RowFiller {
    /// For each of the row's keys, in the map's order: its column and how it is read.
    slots: Vec<(usize, Kind)>,
}

impl RowFiller {
    pub fn new(headers: &csv::StringRecord) -> Self {
        let mut keys = std::collections::BTreeMap::new();
        for (i, name) in headers.iter().enumerate() {
            if let Some((key, kind)) = column(name) {
                keys.insert(key, (i, kind)); // a repeated column: the last one, as `row`
            }
        }
        RowFiller {
            slots: keys.into_values().collect(),
        }
    }

    /// `record`'s row (of `headers`, the header this was made for) into `row`.
    pub fn fill(
        &self,
        headers: &csv::StringRecord,
        record: &csv::StringRecord,
        row: &mut Map<String, Value>,
    ) {
        if row.len() != self.slots.len() || record.len() != headers.len() {
            *row = self::row(headers, record);
            return;
        }
        for ((_, kept), &(i, kind)) in row.iter_mut().zip(&self.slots) {
            let cell = &record[i];
            match (kept, value(kind, cell)) {
                (Value::String(text), None) => {
                    text.clear();
                    text.push_str(cell);
                }
                (kept, value) => *kept = value.unwrap_or_else(|| Value::from(cell)),
            }
        }
    }
}

/// An exact integer when the cell is one (card numbers keep all their digits), else a finite
/// float.
fn number(cell: &str) -> Option<Value> {
    if let Ok(u) = cell.parse::<u64>() {
        return Some(Value::from(u));
    }
    if let Ok(i) = cell.parse::<i64>() {
        return Some(Value::from(i));
    }
    cell.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_become_the_apis_values() {
        let headers = csv::StringRecord::from(vec!["", TIME_COLUMN, "cc_num", "amt", "zip", "job"]);
        let record = csv::StringRecord::from(vec![
            "7",
            "2019-01-01 00:00:18",
            "4497913965512794052",
            "4.97",
            "2x",
            "Doctor",
        ]);
        let row = row(&headers, &record);
        assert_eq!(row["current_time"], 1_546_300_818_000i64);
        assert_eq!(row["cc_num"].to_string(), "4497913965512794052");
        assert_eq!(row["amt"], 4.97);
        assert_eq!(
            row["zip"], "2x",
            "not a number: kept for validation to refuse"
        );
        assert_eq!(row["job"], "Doctor");
        assert!(!row.contains_key(""), "the index column is dropped");
    }
}
