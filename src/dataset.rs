//! The data set's CSV layout (fraudTrain.csv / fraudTest.csv, and the shared sample): a leading
//! unnamed index column, `trans_date_trans_time, cc_num, …, is_fraud`. One reading of it for
//! `extract --from-csv` and `serve-payments --csv`: each cell becomes the JSON value the payments
//! API would send for its column, and `trans_date_trans_time` (read as UTC) becomes
//! `current_time` in epoch milliseconds, so both go through the API's validation.

use chrono::NaiveDateTime;

use crate::transaction::{canonical_date, decimal, Cell, Row, API_COLUMNS};
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

/// A cell as the API sends its column: a number (a time in epoch milliseconds), or `None` when it
/// stays a string (text, or a cell that does not read as its column's type: validation then
/// says why).
fn read(kind: Kind, cell: &str) -> Option<Number> {
    match kind {
        Kind::Time => time_ms(cell).map(Number::from),
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
                read(kind, cell).map_or_else(|| Value::from(cell), Value::Number),
            );
        }
    }
    row
}

/// Where each payments-API column is in the records of one header, and how its cells are
/// read: [`row`] without the map (the CSV extract reads a million records).
pub struct Layout {
    /// For each API column, the CSV column it is read from (a repeated one: the last, as `row`).
    columns: [Option<(usize, Kind)>; API_COLUMNS.len()],
    /// The header's length.
    width: usize,
}

impl Layout {
    pub fn new(headers: &csv::StringRecord) -> Self {
        let mut columns = [None; API_COLUMNS.len()];
        for (i, name) in headers.iter().enumerate() {
            if let Some((key, kind)) = column(name) {
                if let Some(c) = API_COLUMNS.iter().position(|c| *c == key) {
                    columns[c] = Some((i, kind));
                }
            }
        }
        Layout {
            columns,
            width: headers.len(),
        }
    }

    /// A record of the header this was made for, as validation reads it (a record of another
    /// length is unreadable, never validated).
    pub fn row<'a>(&'a self, record: &'a csv::StringRecord) -> CsvRow<'a> {
        debug_assert_eq!(record.len(), self.width, "a record of the header's length");
        CsvRow {
            layout: self,
            record,
        }
    }
}

/// A CSV record seen as the API's row ([`Layout::row`]).
pub struct CsvRow<'a> {
    layout: &'a Layout,
    record: &'a csv::StringRecord,
}

impl Row for CsvRow<'_> {
    fn field(&self, column: usize) -> Option<Cell<'_>> {
        let (i, kind) = self.layout.columns[column]?;
        let cell = self.record.get(i)?;
        Some(read(kind, cell).map_or(Cell::Text(cell), Cell::Number))
    }
}

/// An exact integer when the cell is one (card numbers keep all their digits), else a finite
/// float.
fn number(cell: &str) -> Option<Number> {
    if let Ok(u) = cell.parse::<u64>() {
        return Some(u.into());
    }
    if let Ok(i) = cell.parse::<i64>() {
        return Some(i.into());
    }
    cell.parse::<f64>().ok().and_then(Number::from_f64)
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

    /// The map and the layout are two readings of one record: validation says the same of both,
    /// valid or not, whatever a cell holds or a header repeats.
    #[test]
    fn a_record_validates_alike_through_the_layout_and_the_map() {
        let pan = crate::pan::PanProtector::new(b"0123456789abcdef");
        let header = ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,\
            street,city,state,zip,lat,long,city_pop,job,dob,trans_num,unix_time,merch_lat,\
            merch_long,is_fraud";
        let good = "0,2019-01-01 00:00:18,2703186189652095,\"fraud_Rippin Kub\",misc_net,\
            4.97,J,B,F,561 Perry Cove,Moravian Falls,NC,28654,36.0788,-81.1781,3495,\
            Psychologist,1988-03-09,0b242abb623afc578575680df30655b9,1325376018,36.011293,\
            -82.048315,0";
        let cells: Vec<&str> = good.split(',').collect();
        let mut records = vec![good.to_string()];
        // Each cell in turn emptied, made a word, a float, a negative number, a card number.
        for (i, bad) in (1..cells.len()).flat_map(|i| {
            ["", "x", "1.5", "-3", "4497913965512794052", "2019-01-01"].map(|b| (i, b))
        }) {
            let mut changed = cells.clone();
            changed[i] = bad;
            records.push(changed.join(","));
        }
        let headers = [
            header.to_string(),
            header.replace("is_fraud", "current_time"), // a column named as the API's
            header.replace(",job,", ",dob,"),           // a repeated column: the last wins
            header.replace(",amt,", ",amount,"),        // a column missing
        ];
        for header in &headers {
            let headers = csv::StringRecord::from(header.split(',').collect::<Vec<_>>());
            let layout = Layout::new(&headers);
            for text in &records {
                let record = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(text.as_bytes())
                    .records()
                    .next()
                    .unwrap()
                    .unwrap();
                assert_eq!(record.len(), headers.len(), "{text}");
                let through_map = crate::transaction::validate(&row(&headers, &record), &pan);
                let through_layout = crate::transaction::validate(&layout.row(&record), &pan);
                assert_eq!(through_map, through_layout, "{header}\n{text}");
            }
        }
    }
}
