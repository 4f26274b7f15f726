//! Reads a CSV in the data set's layout (fraudTrain.csv / fraudTest.csv): the leading unnamed
//! index column, `trans_date_trans_time, cc_num, …, is_fraud`. Cells become the JSON values the
//! API would send, so both sources share one validator.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use serde_json::{Map, Number, Value};

use super::{Collector, SourceStats};

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

pub(crate) fn read(
    path: &Path,
    max_records: u64,
    collector: &mut Collector,
) -> Result<SourceStats> {
    let mut reader = csv::ReaderBuilder::new()
        .from_path(path)
        .with_context(|| format!("cannot open CSV {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .clone();
    if !headers.iter().any(|h| h == "trans_date_trans_time") {
        anyhow::bail!(crate::error::Failure::BadInput(format!(
            "{} is not in the data set's layout: no trans_date_trans_time column",
            path.display()
        )));
    }
    let mut record = csv::StringRecord::new();
    let mut line = 1u64;
    while collector.records() < max_records {
        line += 1;
        let origin = || format!("csv:{} line {line}", path.display());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let row = to_row(&headers, &record);
                collector.row(&row, &origin())?;
            }
            Err(e) if e.is_io_error() => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
            Err(e) => collector.unreadable(format!("unreadable CSV row: {e}"), &origin(), "")?,
        }
    }
    Ok(SourceStats::default())
}

fn to_row(headers: &csv::StringRecord, record: &csv::StringRecord) -> Map<String, Value> {
    let mut row = Map::new();
    for (name, cell) in headers.iter().zip(record.iter()) {
        let value = if name == "trans_date_trans_time" {
            match NaiveDateTime::parse_from_str(cell, "%Y-%m-%d %H:%M:%S") {
                Ok(t) => Value::from(t.and_utc().timestamp_millis()),
                Err(_) => Value::String(cell.to_string()),
            }
        } else if NUMERIC.contains(&name) {
            number(cell).unwrap_or_else(|| Value::String(cell.to_string()))
        } else {
            Value::String(cell.to_string())
        };
        let key = if name == "trans_date_trans_time" {
            "current_time"
        } else {
            name
        };
        if !key.is_empty() {
            row.insert(key.to_string(), value);
        }
    }
    row
}

/// An exact integer when the cell is one (card numbers keep all their digits), else a float.
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
