//! Explaining payments from `payments_scored`: the model inputs `load` stored with each payment
//! (`features`, V21) and the transaction's columns the reasons read.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{Context, Result};
use postgres::Row;

use super::{finish, print_one, ExplainArgs};
use crate::error::Failure;
use crate::model::LocalModel;
use crate::transaction::Transaction;

const QUERY: &str = "SELECT trans_num, (extract(epoch FROM trans_time) * 1000)::int8,
        cc_last4, merchant, category, amt::float8, gender, city, state, city_pop,
        merch_lat, merch_long, model_version, scorer, features
    FROM payments_scored WHERE trans_num = ANY($1)";

/// Explains the payments of `--trans-num` as stored, in the order asked.
pub(super) fn explain(args: &ExplainArgs, local: &LocalModel, out: &mut impl Write) -> Result<u64> {
    let mut client = args.db.connect()?;
    let rows = client
        .query(QUERY, &[&args.trans_nums])
        .context("reading the payments from payments_scored")?;
    let mut missing: HashSet<&str> = args.trans_nums.iter().map(String::as_str).collect();
    let mut printed = 0u64;
    for row in &rows {
        let trans_num: &str = row.get(0);
        let values = inputs(row, local)?;
        print_one(local, &transaction(row), &values, out)
            .with_context(|| format!("printing the explanation of {trans_num}"))?;
        missing.remove(trans_num);
        printed += 1;
    }
    finish(out, printed, local, missing, "payments_scored")
}

/// The stored inputs of a row, if the model in --model-dir is the one that scored it.
fn inputs(row: &Row, local: &LocalModel) -> Result<Vec<Option<f64>>> {
    let (trans_num, version, scorer): (&str, &str, &str) = (row.get(0), row.get(12), row.get(13));
    let Some(values) = row.get::<_, Option<Vec<Option<f64>>>>(14) else {
        return Err(Failure::BadInput(format!(
            "payment {trans_num} was loaded before its model inputs were stored (V21): explain it from its run directory with --run-dir"
        ))
        .into());
    };
    if version != local.version && scorer != "sagemaker" {
        return Err(Failure::BadInput(format!(
            "payment {trans_num} was scored by model {version}, the model in --model-dir is {}: give that model's directory",
            local.version
        ))
        .into());
    }
    local.check_width(&values, || format!("payment {trans_num}'s stored inputs"))?;
    Ok(values)
}

/// What the explanation reads of the transaction (its reasons' wording): the stored columns.
fn transaction(row: &Row) -> Transaction {
    Transaction {
        trans_num: row.get(0),
        trans_time_ms: row.get(1),
        cc_last4: row.get(2),
        merchant: row.get(3),
        category: row.get(4),
        amt: row.get(5),
        gender: row.get(6),
        city: row.get(7),
        state: row.get(8),
        city_pop: u64::try_from(row.get::<_, i64>(9)).unwrap_or_default(),
        merch_lat: row.get(10),
        merch_long: row.get(11),
        ..Transaction::default()
    }
}
