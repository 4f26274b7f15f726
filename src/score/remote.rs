//! The `sagemaker` scorer's batching: features read in order, cut into CSV batches under the
//! endpoint's row and payload caps, a bounded number in flight, results written in input order;
//! a batch the endpoint cannot score goes to the local fallback (marked for re-scoring).
//!
//! The loop is: read a record → push it → when the batch is full, send it (waiting for the
//! oldest answer first when the in-flight limit is reached) → at the end, send the last batch
//! and drain every answer.

use anyhow::Result;
use serde_json::value::RawValue;

use super::challenger::Challenger;
use super::local::With;
use super::rules::Rules;
use super::sagemaker::{self, Endpoint, InFlight, SageMakerArgs};
use super::{feature_record, Output, ScoredBy, Why};
use crate::error::Failure;
use crate::model::LocalModel;
use crate::retry::ServiceError;
use crate::rules::Decision;
use crate::stagefile::StageReader;

/// A row of a SageMaker batch: its transaction and derived values, and its features when the
/// local fallback can use them as they are (computed with its own spec).
struct BatchRow {
    tx: Box<RawValue>,
    derived: Box<RawValue>,
    /// The record's features as it holds them: what the endpoint reads.
    sent: Box<RawValue>,
    features: Option<Vec<Option<f64>>>,
    /// The challenger's probability, with a challenger in shadow.
    challenger: Option<f64>,
}

impl BatchRow {
    /// The row's scored record, `features` what the model that scored it read.
    fn scored<'a>(&'a self, features: &'a RawValue) -> super::Scored<'a> {
        super::Scored {
            tx: &self.tx,
            derived: &self.derived,
            features,
        }
    }
}

/// One SageMaker batch: its CSV payload, and its rows, kept to write them once their scores
/// arrive.
#[derive(Default)]
struct Batch {
    payload: Vec<u8>,
    rows: Vec<BatchRow>,
}

/// What the local fallback scores from: the records' own features when they were computed with
/// its spec, else features it recomputes from the transaction with its spec, which it can only
/// do when that spec reads no card history (the history is `transform`'s to read).
fn fallback_reuses_features(local: &LocalModel, features_sha256: Option<&str>) -> Result<bool> {
    if features_sha256 == Some(local.spec.sha256.as_str()) {
        return Ok(true);
    }
    if local.spec.has_history() {
        return Err(Failure::Config(format!(
            "the local fallback model ({}) reads card history, but features.jsonl was computed with another feature spec: run `fraudctl transform` with the fallback model's spec, or set --fallback none",
            local.spec.name
        ))
        .into());
    }
    Ok(false)
}

/// The batches sent and not yet written, and what writing them needs.
struct Pending<'a> {
    endpoint: Endpoint,
    in_flight: InFlight<Batch>,
    fallback: Option<&'a LocalModel>,
    rules: Option<&'a Rules>,
    challenger: Option<&'a Challenger>,
    /// The version of the model that answered (the endpoint and its production variant).
    version: String,
    values: Vec<f64>,
}

pub(super) async fn score_sagemaker(
    input: &mut StageReader<serde_json::Value>,
    args: &SageMakerArgs,
    fallback: Option<&LocalModel>,
    with: With<'_>,
    out: &mut Output,
) -> Result<String> {
    let endpoint = Endpoint::connect(args).await?;
    let reuse = match fallback {
        Some(local) => fallback_reuses_features(
            local,
            input.header().meta["feature_spec"]["sha256"].as_str(),
        )?,
        None => false,
    };
    let mut pending = Pending {
        version: format!("sagemaker:{}", endpoint.name),
        endpoint,
        in_flight: InFlight::new(args.sagemaker_concurrency as usize),
        fallback,
        rules: with.rules,
        challenger: with.challenger,
        values: Vec::new(),
    };
    let max_bytes = args.sagemaker_max_payload_bytes as usize;
    let max_rows = args.sagemaker_max_rows as usize;
    let mut batch = Batch::default();
    let (mut features, mut row, mut records) = (Vec::new(), Vec::new(), 0u64);
    let mut challenger_values = Vec::new();
    while let Some(line) = input.next_line()? {
        records += 1;
        let r = feature_record(records, line, &mut features)?;
        row.clear();
        sagemaker::csv_row(&features, &mut row);
        if row.len() > max_bytes {
            return Err(Failure::BadInput(format!(
                "one feature row is {} bytes, over the {max_bytes}-byte payload limit",
                row.len()
            ))
            .into());
        }
        if batch.rows.len() >= max_rows || batch.payload.len() + row.len() > max_bytes {
            pending.send(std::mem::take(&mut batch), out).await?;
        }
        batch.payload.extend_from_slice(&row);
        batch.rows.push(BatchRow {
            tx: r.tx.to_owned(),
            derived: r.derived.to_owned(),
            sent: r.features.to_owned(),
            features: reuse.then(|| features.clone()),
            challenger: with
                .challenger
                .map(|c| {
                    c.values((records, &r), &features, &mut challenger_values)
                        .map(|()| c.model.model.predict(&challenger_values))
                })
                .transpose()?,
        });
    }
    if !batch.rows.is_empty() {
        pending.send(batch, out).await?;
    }
    while pending.write_oldest(out).await? {}
    Ok(pending.version)
}

/// How far the local copy's probability may be from the endpoint's for the same model (XGBoost's
/// f32 output, printed and parsed).
const SAME_MODEL_TOLERANCE: f64 = 1e-6;

impl Pending<'_> {
    /// The reasons of a predicted fraud the endpoint scored, from the local copy of the model
    /// when it is the endpoint's model: loaded (the fallback is local), fed the same features
    /// (computed with its spec) and giving the endpoint's probability for this payment. The
    /// endpoint's `model_version` names only the endpoint and its variant, so the payment's
    /// own score is what shows the model is the same. Else why they are unavailable.
    fn local_copy_reasons(&self, r: &BatchRow, p: f64) -> Result<Why> {
        let Some(local) = self.fallback else {
            return Ok(Why::Unavailable(
                "no local copy of the model is loaded (--fallback none)".into(),
            ));
        };
        let Some(features) = &r.features else {
            return Ok(Why::Unavailable(format!(
                "features.jsonl was computed with another feature spec than the local model's ({})",
                local.spec.name
            )));
        };
        let q = local.model.predict(features);
        if (q - p).abs() > SAME_MODEL_TOLERANCE {
            return Ok(Why::Unavailable(format!(
                "the local model {} gives this payment probability {q:.6}, the endpoint {p:.6}: the endpoint serves another model",
                local.version
            )));
        }
        Ok(Why::Reasons(local.reasons(r.tx.get(), features)?))
    }

    /// The rules' decision on a row the model scored `p` (on the row's features.jsonl values,
    /// which the rules were compiled for, whichever model scored it).
    fn decide(&self, r: &BatchRow, p: f64, threshold: f64) -> Result<Option<Decision>> {
        let Some(rules) = self.rules else {
            return Ok(None);
        };
        let values: Vec<Option<f64>> = serde_json::from_str(r.sent.get())?;
        let d = rules
            .decide(&r.tx, &values, p, threshold)
            .map_err(Failure::BadInput)?;
        Ok(Some(d))
    }

    /// The challenger's score of a row, with a challenger in shadow.
    fn challenger_score(&self, r: &BatchRow) -> Option<super::ChallengerScore<&str>> {
        self.challenger.zip(r.challenger).map(|(c, p)| c.score(p))
    }

    /// Sends `batch`, once there is room in flight (the oldest answers written first).
    async fn send(&mut self, mut batch: Batch, out: &mut Output) -> Result<()> {
        while self.in_flight.is_full() {
            self.write_oldest(out).await?;
        }
        let task = tokio::spawn(Endpoint::invoke(
            self.endpoint.client(),
            self.endpoint.name.clone(),
            std::mem::take(&mut batch.payload),
            batch.rows.len(),
        ));
        self.in_flight.push(task, batch);
        Ok(())
    }

    /// Waits for the oldest batch in flight and writes it; false when none was.
    async fn write_oldest(&mut self, out: &mut Output) -> Result<bool> {
        let Some((result, batch)) = self.in_flight.next().await else {
            return Ok(false);
        };
        self.write(result, batch, out)?;
        Ok(true)
    }

    fn write(
        &mut self,
        result: sagemaker::BatchResult,
        batch: Batch,
        out: &mut Output,
    ) -> Result<()> {
        let endpoint = &self.endpoint;
        match result {
            Ok((scores, variant)) => {
                self.version = format!("sagemaker:{}/{variant}", endpoint.name);
                for (r, p) in batch.rows.iter().zip(scores) {
                    let why = out.is_fraud(p).then(|| self.local_copy_reasons(r, p));
                    let by = (self.version.as_str(), ScoredBy::Sagemaker);
                    let d = self.decide(r, p, out.threshold)?;
                    let decided = self.rules.zip(d.as_ref());
                    let challenger = self.challenger_score(r);
                    out.write(&r.scored(&r.sent), p, by, why.transpose()?, decided, challenger)?;
                }
                Ok(())
            }
            Err(ServiceError::Unavailable(msg)) => {
                let Some(local) = self.fallback else {
                    return Err(Failure::Unavailable {
                        service: "SageMaker endpoint",
                        target: endpoint.target().to_string(),
                        detail: msg,
                    }
                    .into());
                };
                tracing::warn!(endpoint = endpoint.target(), rows = batch.rows.len(), error = %msg, "SageMaker unavailable, scoring the batch with the local model (marked needs_rescore)");
                for r in &batch.rows {
                    let (computed, read);
                    let (features, inputs) = match &r.features {
                        Some(features) => (features, &*r.sent),
                        None => {
                            computed = local.features_of_tx(r.tx.get(), &mut self.values)?;
                            read = serde_json::value::to_raw_value(&computed)?;
                            (&computed, &*read)
                        }
                    };
                    let p = local.model.predict(features);
                    let why = out
                        .is_fraud(p)
                        .then(|| local.reasons(r.tx.get(), features).map(Why::Reasons));
                    let by = (local.version.as_str(), ScoredBy::LocalFallback);
                    let d = self.decide(r, p, out.threshold)?;
                    let decided = self.rules.zip(d.as_ref());
                    let challenger = self.challenger_score(r);
                    out.write(&r.scored(inputs), p, by, why.transpose()?, decided, challenger)?;
                }
                Ok(())
            }
            Err(ServiceError::Refused(msg)) => Err(Failure::Config(format!(
                "SageMaker endpoint {} refused the request: {msg}; check {} and that it serves the model for this feature spec",
                endpoint.target(),
                crate::setting::name::<super::SageMakerArgs>("sagemaker_endpoint"),
            ))
            .into()),
        }
    }
}
