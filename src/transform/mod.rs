//! `fraudctl transform`: canonical transactions (`raw.jsonl`) → model features
//! (`features.jsonl`), driven by the feature spec the model ships.

mod features;
mod murmur3;
mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use features::{haversine_km, Derived};
pub use spec::FeatureSpec;

use crate::extract::RAW_SCHEMA;
use crate::rundir::{require_input, RunArgs, RunDir};
use crate::stagefile::{Header, Rejected, StageReader, StageWriter, REJECTED_SCHEMA};
use crate::transaction::Transaction;

pub const FEATURES_SCHEMA: &str = "fraudctl.features";

/// Options of `fraudctl transform`.
#[derive(Debug, Clone, Args)]
pub struct TransformArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Feature spec shipped with the model (model/<name>/feature_spec.json); decides the columns
    /// and their order.
    #[arg(
        long,
        env = "FRAUDCTL_FEATURE_SPEC",
        default_value = "model/default/feature_spec.json"
    )]
    pub feature_spec: PathBuf,
}

/// A record of `features.jsonl`, as written.
#[derive(Serialize)]
struct FeatureRecordOut<'a> {
    tx: &'a RawValue,
    derived: Derived,
    features: &'a [f64],
}

/// A record of `features.jsonl`, as read by `score`.
#[derive(Deserialize)]
pub struct FeatureRecord<'a> {
    #[serde(borrow)]
    pub tx: &'a RawValue,
    #[serde(borrow)]
    pub derived: &'a RawValue,
    pub features: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct TransformSummary {
    pub stage: &'static str,
    pub run_id: String,
    pub records: u64,
    pub rejected: u64,
    pub feature_spec: String,
    pub columns: usize,
}

pub fn run(args: &TransformArgs) -> Result<TransformSummary> {
    let dir = RunDir::open(&args.run)?;
    let spec = FeatureSpec::load(&args.feature_spec)?;
    require_input(&dir.raw(), "extract")?;
    let mut input = StageReader::<Transaction>::open(&dir.raw(), RAW_SCHEMA)?;
    let meta = serde_json::json!({
        "feature_spec": { "name": spec.name, "sha256": spec.sha256, "columns": spec.columns },
    });
    let mut output = StageWriter::create(
        &dir.features(),
        Header::new(FEATURES_SCHEMA, &dir.run_id, "transform", meta),
    )?;
    let mut rejected = StageWriter::create(
        &dir.features_rejected(),
        Header::new(
            REJECTED_SCHEMA,
            &dir.run_id,
            "transform",
            serde_json::Value::Null,
        ),
    )?;
    let mut values = Vec::with_capacity(spec.width());
    let mut line_no = 1u64;
    while let Some(line) = input.next_line()? {
        line_no += 1;
        let parsed = serde_json::from_str::<Transaction>(line)
            .map_err(|e| e.to_string())
            .and_then(|tx| {
                serde_json::from_str::<&RawValue>(line)
                    .map(|raw| (tx, raw))
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok((tx, raw)) => {
                let derived = Derived::of(&tx, spec.time_zone);
                spec.compute(&tx, &derived, &mut values);
                output.write(&FeatureRecordOut {
                    tx: raw,
                    derived,
                    features: &values,
                })?;
            }
            Err(reason) => rejected.write(&Rejected {
                reason: format!("not a canonical transaction: {reason}"),
                origin: format!("{} line {line_no}", dir.raw().display()),
                record: None,
                body: Some(crate::pan::mask_digit_runs(line)),
            })?,
        }
    }
    let rejected_n = rejected.records();
    rejected.finish(BTreeMap::new())?;
    let header = output.finish(BTreeMap::from([("rejected".to_string(), rejected_n)]))?;
    Ok(TransformSummary {
        stage: "transform",
        run_id: dir.run_id,
        records: header.records(),
        rejected: rejected_n,
        columns: spec.width(),
        feature_spec: spec.name,
    })
}
