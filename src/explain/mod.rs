//! `fraudctl explain`: why each payment of a run scored as it did. Reads the run's
//! `features.jsonl`, or, for payments named by `--trans-num` without a run directory, the model
//! inputs `payments_scored` stored when it loaded them, and prints, one JSON line a payment, its
//! margin, probability, every feature's TreeSHAP contribution (plus the bias) and its top
//! reasons in words, from the local model: what `score` writes as a predicted fraud's
//! `reasons`, for any payment.

mod stored;

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::Failure;
use crate::model::{LocalModel, Reason};
use crate::rundir::{require_input, FEATURES};
use crate::score::{feature_record, same_spec};
use crate::stagefile::StageReader;
use crate::transaction::Transaction;
use crate::transform::FEATURES_SCHEMA;

/// Options of `fraudctl explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// Run directory whose features.jsonl is explained (read only). Without it, the payments
    /// of --trans-num are explained from payments_scored (--database-url): the model inputs
    /// stored when they were loaded, wherever their run directory went.
    #[arg(
        long,
        env = "FRAUDCTL_RUN_DIR",
        value_name = "DIR",
        required_unless_present = "trans_nums"
    )]
    pub run_dir: Option<PathBuf>,

    /// fraud_db, read when there is no --run-dir.
    #[command(flatten)]
    pub db: crate::db::DbArgs,

    /// Directory of the model to explain (model.json and feature_spec.json): the one that
    /// scored the run, whose feature spec computed its features.
    #[arg(long, env = "FRAUDCTL_MODEL_DIR", default_value = "model/default")]
    pub model_dir: PathBuf,

    /// Explain only this payment; repeat the flag for several [default: every payment of the
    /// run]. A trans_num the run (or, without --run-dir, payments_scored) does not hold is an
    /// error (exit 4), after the others are printed.
    #[arg(long = "trans-num", value_name = "TRANS_NUM")]
    pub trans_nums: Vec<String>,
}

/// One printed line.
#[derive(serde::Serialize)]
struct Line<'a> {
    trans_num: &'a str,
    margin: f64,
    probability: f64,
    contributions: Contributions<'a>,
    reasons: &'a [Reason],
}

/// `{feature: contribution, …, "bias": value}`, in the model's column order.
struct Contributions<'a> {
    names: &'a [String],
    values: &'a [f64],
}

impl Serialize for Contributions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (name, value) in self.names.iter().zip(self.values) {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("bias", &self.values[self.names.len()])?;
        map.end()
    }
}

/// Prints the explanation of the run's payments (those of `--trans-num`, else every one) to
/// `out`; returns how many were printed.
pub fn run(args: &ExplainArgs, out: &mut impl Write) -> Result<u64> {
    let local = LocalModel::load(&args.model_dir)?;
    let Some(run_dir) = &args.run_dir else {
        return stored::explain(args, &local, out);
    };
    let path = run_dir.join(FEATURES);
    require_input(&path, "transform")?;
    let mut input = StageReader::<serde_json::Value>::open(&path, FEATURES_SCHEMA)?;
    let spec_meta = input.header().meta["feature_spec"].clone();
    same_spec(&path, &spec_meta, &local, &args.model_dir)?;
    let mut wanted: HashSet<&str> = args.trans_nums.iter().map(String::as_str).collect();
    let every = wanted.is_empty();
    let (mut values, mut record, mut printed) = (Vec::new(), 0u64, 0u64);
    while let Some(line) = input.next_line()? {
        record += 1;
        let r = feature_record(record, line, &mut values)?;
        let tx: Transaction = serde_json::from_str(r.tx.get())
            .map_err(|e| Failure::BadInput(format!("{} record {record}: {e}", path.display())))?;
        if !every && !wanted.remove(tx.trans_num.as_str()) {
            continue;
        }
        print_one(&local, &tx, &values, out)
            .with_context(|| format!("printing the explanation of record {record}"))?;
        printed += 1;
    }
    finish(out, printed, &local, wanted, &path.display().to_string())
}

/// Flushes what was printed; an error naming the payments `place` does not hold.
fn finish(
    out: &mut impl Write,
    printed: u64,
    local: &LocalModel,
    missing: HashSet<&str>,
    place: &str,
) -> Result<u64> {
    out.flush().context("writing to stdout")?;
    tracing::info!(printed, model_version = %local.version, "explained");
    if !missing.is_empty() {
        let mut missing: Vec<&str> = missing.into_iter().collect();
        missing.sort_unstable();
        return Err(Failure::BadInput(format!(
            "{place} holds no payment with trans_num {}",
            missing.join(", ")
        ))
        .into());
    }
    Ok(printed)
}

fn print_one(
    local: &LocalModel,
    tx: &Transaction,
    values: &[Option<f64>],
    out: &mut impl Write,
) -> Result<()> {
    local.check_width(values, || "the record".into())?;
    let e = local.explain(tx, values);
    let line = Line {
        trans_num: &tx.trans_num,
        margin: f64::from(e.margin),
        probability: e.probability,
        contributions: Contributions {
            names: &local.spec.columns,
            values: &e.contributions,
        },
        reasons: &e.reasons,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    Ok(())
}
