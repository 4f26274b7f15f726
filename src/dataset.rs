//! The data set's CSV layout (fraudTrain.csv / fraudTest.csv, and the shared sample): a leading
//! unnamed index column, `trans_date_trans_time, cc_num, …, is_fraud`. One reading of it for
//! `extract --from-csv` and `serve-payments --csv`: each cell becomes the JSON value the payments
//! API would send for its column, and `trans_date_trans_time` (read as UTC) becomes
//! `current_time` in epoch milliseconds, so both go through the API's validation.

use chrono::NaiveDateTime;
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
    NaiveDateTime::parse_from_str(cell, TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// A CSV row as the API's row (column → value), `current_time` from the time column. A cell
/// that does not read as its column's type stays a string (validation then says why).
pub fn row(headers: &csv::StringRecord, record: &csv::StringRecord) -> Map<String, Value> {
    let mut row = Map::new();
    for (name, cell) in headers.iter().zip(record.iter()) {
        let (key, value) = match name {
            "" => continue, // the index column
            TIME_COLUMN => ("current_time", time_ms(cell).map(Value::from)),
            n if NUMERIC.contains(&n) => (n, number(cell)),
            n => (n, None),
        };
        row.insert(key.to_string(), value.unwrap_or_else(|| Value::from(cell)));
    }
    row
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
