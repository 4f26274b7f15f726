//! Reads a CSV in the data set's layout ([`crate::dataset`]) into the collector, row by row, so
//! that a file goes through the API's validation.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Collector, SourceStats};
use crate::dataset;

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
    if !dataset::is_layout(&headers) {
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
                let row = dataset::row(&headers, &record);
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
