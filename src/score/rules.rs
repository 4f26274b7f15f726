//! The rules in `score` (`--rules`, docs/rules.md): loaded with their lists when the stage
//! starts, a payment's decision after the model, and what its scored record says of it.

use std::path::Path;

use anyhow::Result;
use serde_json::value::RawValue;

use super::{DecisionOut, Reason, ScoreOut, Why};
use crate::db::DbArgs;
use crate::rules::lists::ListEntries;
use crate::rules::{Decision, Outcome, Payment, RuleSet, Subject};

/// A rule set in force, with the entries of the lists it reads.
pub(super) struct Rules {
    set: RuleSet,
    lists: ListEntries,
}

impl Rules {
    /// The rules of `path`, compiled for features of `columns` (features.jsonl's, in order);
    /// their lists read from `db` when a rule names one.
    pub(super) fn load(
        path: Option<&Path>,
        columns: &[String],
        db: &DbArgs,
    ) -> Result<Option<Rules>> {
        let Some(path) = path else {
            return Ok(None);
        };
        let set = RuleSet::load(path, columns)?;
        let lists = match set.reads_lists() {
            true => ListEntries::load(&mut db.connect()?, &set.lists)?,
            false => ListEntries::none(),
        };
        tracing::info!(version = %set.version, rules = set.rules.len(), lists = ?set.lists, "rules in force");
        Ok(Some(Rules { set, lists }))
    }

    /// The decision on a payment (`tx` its transaction, `values` the model's inputs) the model
    /// scored `probability`; the error says what of the record could not be read.
    pub(super) fn decide(
        &self,
        tx: &RawValue,
        values: &[Option<f64>],
        probability: f64,
        threshold: f64,
    ) -> Result<Decision, String> {
        let payment: Payment =
            serde_json::from_str(tx.get()).map_err(|e| format!("its transaction: {e}"))?;
        let s = Subject {
            payment: &payment,
            features: values,
            probability,
            threshold,
        };
        Ok(self.set.decide(&s, &self.lists, probability >= threshold))
    }

    /// `score` as `d` decided it: a fraud when the decision is an alert.
    pub(super) fn apply<'a>(&'a self, score: ScoreOut<'a>, d: &Decision) -> ScoreOut<'a> {
        let rules = &self.set.rules;
        ScoreOut {
            predicted_fraud: d.action == Outcome::Alert,
            decision: Some(DecisionOut {
                rule_set: &self.set.version,
                action: d.action.name(),
                rule: d.rule.map(|i| rules[i].id.as_str()),
                matched: d.matched.iter().map(|&i| rules[i].id.as_str()).collect(),
            }),
            ..score
        }
    }

    /// An alert's reasons with its deciding rule first, in the rule's own words.
    pub(super) fn reasons(&self, d: &Decision, why: Option<Why>) -> Option<Why> {
        let Some(rule) = d.rule.filter(|_| d.action == Outcome::Alert) else {
            return why;
        };
        let rule = &self.set.rules[rule];
        let first = Reason {
            feature: format!("rule:{}", rule.id),
            value: None,
            contribution: 0.0,
            text: format!("rule {}: {}", rule.id, rule.description),
        };
        Some(match why {
            Some(Why::Reasons(mut reasons)) => {
                reasons.insert(0, first);
                Why::Reasons(reasons)
            }
            _ => Why::Reasons(vec![first]),
        })
    }
}
