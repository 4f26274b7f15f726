//! The `local` scorer: the model of --model-dir ([`LocalModel`]) evaluated in-process on every
//! core, with the rules and a challenger in shadow beside it.

use anyhow::Result;

use super::challenger::Challenger;
use super::rules::Rules;
use super::{feature_record, push_scored, Output, Score, ScoreOut, Scored, ScoredBy, Why};
use crate::error::Failure;
use crate::model::{LocalModel, XgbModel};
use crate::parallel::{self, Chunk};
use crate::rules::Decision;
use crate::stagefile::BlockReader;
use crate::transform::FeatureRecord;

/// What is applied beside the model: the rules, a challenger in shadow.
#[derive(Clone, Copy)]
pub(super) struct With<'a> {
    pub rules: Option<&'a Rules>,
    pub challenger: Option<&'a Challenger>,
}

/// What a chunk's scoring reuses from one chunk to the next.
#[derive(Default)]
struct Buffers {
    /// The model's rows, its probabilities, one record's features.
    rows: Vec<f32>,
    probabilities: Vec<f64>,
    values: Vec<Option<f64>>,
    /// Every record's features one after the other (what the rules read).
    kept: Vec<Option<f64>>,
    /// The same three for the challenger.
    challenger_rows: Vec<f32>,
    challenger_probabilities: Vec<f64>,
    challenger_values: Vec<Option<f64>>,
}

pub(super) fn score_local(
    input: BlockReader,
    local: &LocalModel,
    with: With,
    out: &mut Output,
) -> Result<()> {
    let threshold = out.threshold;
    parallel::map_chunks(
        "score",
        input,
        Buffers::default,
        |b, chunk| score_chunk(local, with, threshold, b, chunk),
        |(lines, records, frauds)| {
            out.frauds += frauds;
            out.writer.write_lines(&lines, records)
        },
    )
}

/// A chunk's scored records (`scored.jsonl` lines), with how many records and predicted frauds.
fn score_chunk(
    local: &LocalModel,
    with: With,
    threshold: f64,
    b: &mut Buffers,
    chunk: &Chunk,
) -> Result<(Vec<u8>, u64, u64)> {
    let records = read_chunk(local, with, b, chunk)?;
    local.model.predict_rows(&b.rows, &mut b.probabilities);
    let mut scores: Vec<_> = b
        .probabilities
        .iter()
        .map(|p| Score::new(*p, threshold, &local.version, ScoredBy::Local))
        .collect();
    if let Some(c) = with.challenger {
        c.model
            .model
            .predict_rows(&b.challenger_rows, &mut b.challenger_probabilities);
        for (score, p) in scores.iter_mut().zip(&b.challenger_probabilities) {
            score.challenger = Some(c.score(*p));
        }
    }
    let decisions = match with.rules {
        Some(rules) => decide_all(rules, &records, &mut scores, &b.kept)?,
        None => vec![None; records.len()],
    };
    // Only the (few) alerts pay for their reasons, all of the chunk's at once.
    let frauds: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i].predicted_fraud)
        .collect();
    let contributions = local.shap.contributions_of(&local.model, &b.rows, &frauds);
    let mut of_fraud = contributions.chunks(local.model.num_features + 1);
    let mut lines = Vec::with_capacity(chunk.len() * 1024);
    for (((_, record), score), decision) in records.iter().zip(scores).zip(&decisions) {
        let mut why = match score.predicted_fraud {
            true => {
                record.values(&mut b.values).map_err(Failure::BadInput)?;
                let phi = of_fraud.next().expect("one row of contributions a fraud");
                let tx = record.tx.get();
                Some(Why::Reasons(local.reasons_with(tx, &b.values, phi)?))
            }
            false => None,
        };
        if let (Some(rules), Some(d)) = (with.rules, decision) {
            why = rules.reasons(d, why);
        }
        let scored = Scored {
            tx: record.tx,
            derived: record.derived,
            features: record.features,
        };
        push_scored(&mut lines, &scored, &score.with_why(why.as_ref()));
    }
    Ok((lines, chunk.len() as u64, frauds.len() as u64))
}

/// A chunk's records, their model rows (and the challenger's, and the values the rules read)
/// into `b`.
fn read_chunk<'c>(
    local: &LocalModel,
    with: With,
    b: &mut Buffers,
    chunk: &'c Chunk,
) -> Result<Vec<(u64, FeatureRecord<'c>)>> {
    let mut records = Vec::with_capacity(chunk.len());
    b.rows.clear();
    b.kept.clear();
    b.challenger_rows.clear();
    for (no, line) in chunk.lines() {
        let record = feature_record(no, line, &mut b.values)?;
        local.check_width(&b.values, || format!("features record {no}"))?;
        XgbModel::push_row(&mut b.rows, &b.values);
        if with.rules.is_some() {
            b.kept.extend_from_slice(&b.values); // what the rules read, parsed once
        }
        if let Some(c) = with.challenger {
            c.values((no, &record), &b.values, &mut b.challenger_values)?;
            XgbModel::push_row(&mut b.challenger_rows, &b.challenger_values);
        }
        records.push((no, record));
    }
    Ok(records)
}

/// The rules' decision on each record of a chunk, applied to its score; `values` holds the
/// records' features one after the other.
fn decide_all<'a>(
    rules: &'a Rules,
    records: &[(u64, FeatureRecord)],
    scores: &mut [ScoreOut<'a>],
    values: &[Option<f64>],
) -> Result<Vec<Option<Decision>>> {
    let mut decisions = Vec::with_capacity(records.len());
    let width = values.len() / records.len().max(1);
    let rows = values.chunks(width.max(1));
    for (((no, record), score), values) in records.iter().zip(scores.iter_mut()).zip(rows) {
        let d = rules
            .decide(record.tx, values, score.probability, score.threshold)
            .map_err(|e| Failure::BadInput(format!("features record {no}: {e}")))?;
        *score = rules.apply(score.clone(), &d);
        decisions.push(Some(d));
    }
    Ok(decisions)
}
