//! `fraudctl transform`: canonical transactions (`raw.jsonl`) → model features
//! (`features.jsonl`), driven by the feature spec the model ships.

mod features;
mod geo;
mod history;
mod murmur3;
mod spec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use features::Derived;
use history::CardHistory;
pub use history::Recent;
pub use spec::{Block, FeatureSpec, Field, HistoryFeature, Numeric};

use crate::challenger::ChallengerArgs;
use crate::extract::RAW_SCHEMA;
use crate::pan::masked_excerpt;
use crate::parallel::{self, Chunk};
use crate::rundir::{log_started, require_input, RunArgs, RunDir};
use crate::stagefile::{Header, Rejected, StageReader, StageWriter, REJECTED_SCHEMA};
use crate::transaction::Transaction;

pub const FEATURES_SCHEMA: &str = "fraudctl.features";

/// The default model's feature spec (`--feature-spec`).
pub const DEFAULT_FEATURE_SPEC: &str = "model/default/feature_spec.json";

/// Options of `fraudctl transform`.
#[derive(Debug, Clone, Args)]
pub struct TransformArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Feature spec shipped with the model (model/<name>/feature_spec.json); decides the columns
    /// and their order.
    #[arg(long, env = "FRAUDCTL_FEATURE_SPEC", default_value = DEFAULT_FEATURE_SPEC)]
    pub feature_spec: PathBuf,

    #[command(flatten)]
    pub challenger: ChallengerArgs,

    /// The database whose `payments_scored` holds the cards' earlier payments: read only when
    /// the spec has a `card_history` block.
    #[cfg(feature = "services")]
    #[command(flatten)]
    pub db: crate::db::DbArgs,
}

/// A record of `features.jsonl`, as read by `score`. The features stay JSON text until
/// [`FeatureRecord::values`] reads them into a buffer the caller reuses (no allocation a record).
#[derive(Deserialize)]
pub struct FeatureRecord<'a> {
    #[serde(borrow)]
    pub tx: &'a RawValue,
    #[serde(borrow)]
    pub derived: &'a RawValue,
    #[serde(borrow)]
    pub features: &'a RawValue,
    /// The challenger's features, when its spec is not the model's (header
    /// `meta.challenger_feature_spec`).
    #[serde(borrow, default)]
    pub challenger_features: Option<&'a RawValue>,
}

impl FeatureRecord<'_> {
    /// The features into `out` (cleared first): a finite number each, or `null` for a missing
    /// value. The text is valid JSON already (serde checked it), so a comma can only separate
    /// elements or sit inside a string or a nested value, which then fails as not a number.
    pub fn values(&self, out: &mut Vec<Option<f64>>) -> Result<(), String> {
        read_values("features", self.features, out)
    }

    /// The challenger's features into `out`, as [`FeatureRecord::values`] reads the model's.
    pub fn challenger_values(&self, out: &mut Vec<Option<f64>>) -> Result<(), String> {
        let features = self
            .challenger_features
            .ok_or("it has no \"challenger_features\"")?;
        read_values("challenger_features", features, out)
    }
}

/// A record's array of features (`name`) into `out` (cleared first).
fn read_values(name: &str, features: &RawValue, out: &mut Vec<Option<f64>>) -> Result<(), String> {
    out.clear();
    let inner = features
        .get()
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("\"{name}\" is not an array"))?;
    if inner.trim().is_empty() {
        return Ok(());
    }
    for item in inner.split(',').map(str::trim) {
        out.push(match item {
            "null" => None,
            _ => Some(
                item.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        format!("\"{name}\" holds {item}, not a finite number or null")
                    })?,
            ),
        });
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct TransformSummary {
    pub stage: &'static str,
    pub run_id: String,
    pub records: u64,
    pub rejected: u64,
    pub feature_spec: String,
    pub columns: usize,
    /// Earlier payments of the batch's cards read from the database (specs with card history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_payments: Option<u64>,
}

pub fn run(args: &TransformArgs) -> Result<TransformSummary> {
    let dir = RunDir::open(&args.run, "transform")?;
    let specs = Specs::load(args)?;
    require_input(&dir.raw(), "extract")?;
    let input = StageReader::<Transaction>::open(&dir.raw(), RAW_SCHEMA)?;
    // Before anything is written: a database that cannot be read fails the stage (exit 3).
    let history = match specs.has_history() {
        true => Some(card_history(args, specs.history_reads_details(), &dir)?),
        false => None,
    };
    log_started("transform", input.header().records());
    let meta = specs.meta();
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
    let raw_path = dir.raw();
    parallel::map_chunks(
        "transform",
        input.blocks(),
        || (Vec::new(), Vec::new()),
        |values, chunk| {
            let history = history.as_ref().map(|(h, _)| h);
            Ok(transform_chunk(&specs, history, &raw_path, chunk, values))
        },
        |done| {
            output.write_lines(&done.lines, done.records)?;
            done.rejected.iter().try_for_each(|r| rejected.write(r))
        },
    )?;
    let rejected_n = rejected.records();
    rejected.finish(BTreeMap::new())?;
    let header = output.finish(BTreeMap::from([("rejected".to_string(), rejected_n)]))?;
    Ok(TransformSummary {
        stage: "transform",
        run_id: dir.run_id,
        records: header.records(),
        rejected: rejected_n,
        columns: specs.model.width(),
        feature_spec: specs.model.name,
        known_payments: history.map(|(_, known)| known),
    })
}

/// The history of the batch's cards: the batch itself (a first pass over `raw.jsonl`) and the
/// payments loaded before it was captured; with how many of those were read.
#[cfg(feature = "services")]
fn card_history(args: &TransformArgs, details: bool, dir: &RunDir) -> Result<(CardHistory, u64)> {
    let captured_at = dir.captured_at()?;
    let mut client = args.db.connect()?;
    let batch = StageReader::<Transaction>::open(&dir.raw(), RAW_SCHEMA)?;
    let records = batch.header().records() as usize;
    let mut builder =
        history::Builder::with_capacity(records, details, captured_at.timestamp_millis());
    parallel::map_chunks(
        "transform (the batch's card history)",
        batch.blocks(),
        || (),
        |_, chunk| {
            // Records that are not transactions are rejected by the second pass; they have no
            // place in anyone's history either.
            Ok(chunk
                .lines()
                .filter_map(|(_, line)| serde_json::from_str::<Transaction>(line).ok())
                .filter_map(|tx| history::BatchEntry::of(&tx, details))
                .collect::<Vec<_>>())
        },
        |entries| {
            entries.into_iter().for_each(|e| builder.add(e));
            Ok(())
        },
    )?;
    let count = history::fetch_known(&mut client, &mut builder)?;
    tracing::info!(known_payments = count, "read the cards' earlier payments");
    Ok((builder.finish(), count))
}

/// A library built without the `services` feature (the fuzz build) has no database client.
#[cfg(not(feature = "services"))]
fn card_history(_: &TransformArgs, _: bool, _: &RunDir) -> Result<(CardHistory, u64)> {
    Err(crate::error::Failure::Config(
        "this fraudctl was built without the `services` feature: it cannot read card history"
            .into(),
    )
    .into())
}

/// What one chunk of `raw.jsonl` became.
struct Transformed {
    /// `features.jsonl` lines.
    lines: Vec<u8>,
    records: u64,
    rejected: Vec<Rejected>,
}

/// The feature specs of a run: the model's, and the challenger's when it differs (a challenger
/// with the model's spec reads the model's features).
struct Specs {
    model: FeatureSpec,
    challenger: Option<FeatureSpec>,
    /// Whether the challenger's hours are another zone's (then its derived values are its own).
    challenger_zone_differs: bool,
}

impl Specs {
    fn load(args: &TransformArgs) -> Result<Self> {
        let model = FeatureSpec::load(&args.feature_spec)?;
        let challenger = match args.challenger.feature_spec() {
            Some(path) => Some(FeatureSpec::load(&path)?).filter(|c| c.sha256 != model.sha256),
            None => None,
        };
        let challenger_zone_differs = challenger
            .as_ref()
            .is_some_and(|c| c.time_zone != model.time_zone);
        Ok(Specs {
            model,
            challenger,
            challenger_zone_differs,
        })
    }

    fn all(&self) -> impl Iterator<Item = &FeatureSpec> {
        std::iter::once(&self.model).chain(&self.challenger)
    }

    fn has_history(&self) -> bool {
        self.all().any(FeatureSpec::has_history)
    }

    fn history_reads_details(&self) -> bool {
        self.all().any(FeatureSpec::history_reads_details)
    }

    /// The header's `meta`: which spec made `features` (and `challenger_features`).
    fn meta(&self) -> serde_json::Value {
        let describe = |s: &FeatureSpec| serde_json::json!({ "name": s.name, "sha256": s.sha256, "columns": s.columns });
        let mut meta = serde_json::json!({ "feature_spec": describe(&self.model) });
        if let Some(challenger) = &self.challenger {
            meta["challenger_feature_spec"] = describe(challenger);
        }
        meta
    }
}

/// Turns each line of a chunk into a `features.jsonl` record: `{"tx": <the raw line as is>,
/// "derived": {...}, "features": [...]}` (and `"challenger_features": [...]` with a challenger
/// of another spec), or a rejected record.
fn transform_chunk(
    specs: &Specs,
    history: Option<&CardHistory>,
    raw_path: &Path,
    chunk: &Chunk,
    (values, challenger_values): &mut (Vec<f64>, Vec<f64>),
) -> Transformed {
    let spec = &specs.model;
    let mut done = Transformed {
        lines: Vec::with_capacity(chunk.len() * 1024),
        records: 0,
        rejected: Vec::new(),
    };
    for (record, line) in chunk.lines() {
        // A raw.jsonl line is a whole canonical transaction: once it parses, it is copied into
        // the output as it is, not serialised again.
        match serde_json::from_str::<Transaction>(line) {
            Ok(tx) => {
                let derived = Derived::of(&tx, &spec.time_zone);
                let recent = history.map(|h| h.recent(&tx));
                spec.compute(&tx, &derived, recent.as_ref(), values);
                let out = &mut done.lines;
                out.extend_from_slice(b"{\"tx\":");
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b",\"derived\":");
                serde_json::to_writer(&mut *out, &derived).expect("numbers serialise");
                out.extend_from_slice(b",\"features\":");
                serde_json::to_writer(&mut *out, values).expect("numbers serialise");
                if let Some(challenger) = &specs.challenger {
                    let own = specs
                        .challenger_zone_differs
                        .then(|| Derived::of(&tx, &challenger.time_zone));
                    let derived = own.as_ref().unwrap_or(&derived);
                    challenger.compute(&tx, derived, recent.as_ref(), challenger_values);
                    out.extend_from_slice(b",\"challenger_features\":");
                    serde_json::to_writer(&mut *out, challenger_values).expect("numbers serialise");
                }
                out.extend_from_slice(b"}\n");
                done.records += 1;
            }
            Err(e) => done.rejected.push(Rejected {
                reason: masked_excerpt(&format!("not a canonical transaction: {e}"), 1000),
                origin: format!("{} line {}", raw_path.display(), record + 1),
                record: None,
                body: Some(masked_excerpt(line, 4096)),
            }),
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::FeatureRecord;

    fn values(features: &str) -> Result<Vec<Option<f64>>, String> {
        let line = format!(r#"{{"tx":{{}},"derived":{{}},"features":{features}}}"#);
        let record: FeatureRecord = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        let mut out = vec![Some(9.0)];
        record.values(&mut out).map(|()| out)
    }

    #[test]
    fn features_read_as_serde_reads_them() {
        assert_eq!(
            values("[4.97, null,-0.5e1 ,1E+2,0.1,\n3]"),
            Ok(vec![
                Some(4.97),
                None,
                Some(-5.0),
                Some(100.0),
                Some(0.1),
                Some(3.0)
            ])
        );
        assert_eq!(values("[ ]"), Ok(vec![]));
        // The shortest text serde_json writes for an f64 reads back as the same bits.
        let x = 1.7867469274045107f64;
        assert_eq!(
            values(&serde_json::to_string(&[x]).unwrap()),
            Ok(vec![Some(x)])
        );
    }

    #[test]
    fn anything_but_numbers_and_null_is_refused() {
        for bad in [
            "[\"1,2\"]",
            "[[1],2]",
            "[true]",
            "[{\"a\":1}]",
            "[1e400]",
            "{}",
            "3",
        ] {
            let err = values(bad).unwrap_err();
            assert!(
                err.contains("not a finite number") || err.contains("not an array"),
                "{bad}: {err}"
            );
        }
    }
}
