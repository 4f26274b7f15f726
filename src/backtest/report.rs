//! What a backtest reports: per rule and for the whole decision, payments matched, alerts a
//! day, precision and recall against the labels and the analysts' verdicts, and how the
//! candidate's alerts differ from the pipeline's.

use std::io::Write;

use serde::Serialize;

use super::{BacktestArgs, Format};
use crate::rules::{Action, Decision, RuleSet};

/// What is known of a payment's truth: the source's label, the latest analyst verdict.
pub(super) struct Tally {
    pub label: Option<bool>,
    pub verdict: Option<bool>,
}

/// Counts over a set of payments (a rule's matches, the candidate's alerts).
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub payments: u64,
    pub per_day: f64,
    /// Labelled frauds among them, and the precision and recall that makes.
    pub label_frauds: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Analysts' verdicts among them: fraud, not fraud, and the precision they make.
    pub verdict_fraud: u64,
    pub verdict_not_fraud: u64,
    pub verdict_precision: Option<f64>,
}

impl Counts {
    fn add(&mut self, t: &Tally) {
        self.payments += 1;
        self.label_frauds += u64::from(t.label == Some(true));
        self.verdict_fraud += u64::from(t.verdict == Some(true));
        self.verdict_not_fraud += u64::from(t.verdict == Some(false));
    }

    fn finish(&mut self, days: f64, all_label_frauds: u64) {
        let share = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        self.per_day = self.payments as f64 / days;
        self.precision = share(self.label_frauds, self.payments);
        self.recall = share(self.label_frauds, all_label_frauds);
        self.verdict_precision = share(
            self.verdict_fraud,
            self.verdict_fraud + self.verdict_not_fraud,
        );
    }
}

#[derive(Debug, Serialize)]
pub struct RuleCounts {
    pub id: String,
    pub action: Action,
    #[serde(flatten)]
    pub counts: Counts,
}

/// A backtest's result (printed as a table, or as JSON with `--format json`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub days: f64,
    pub model_version: String,
    pub threshold: f64,
    pub rule_set: Option<String>,
    /// Payments of the period, and those stored before their model inputs were (not decided).
    pub payments: u64,
    pub without_inputs: u64,
    pub label_frauds: u64,
    pub rules: Vec<RuleCounts>,
    /// The candidate's alerts.
    pub alerts: Counts,
    /// The pipeline's alerts then (payments_scored.predicted_fraud).
    pub live_alerts: Counts,
    /// Payments the candidate decides otherwise than the pipeline did.
    pub differences: u64,
    /// Labelled frauds the candidate alerts and the pipeline did not, and the reverse.
    pub caught_not_live: u64,
    pub missed_live_caught: u64,
    /// The first differences (trans_num), for a look.
    pub first_differences: Vec<String>,
}

impl Report {
    pub(super) fn new(
        args: &BacktestArgs,
        model: &str,
        threshold: f64,
        rules: Option<&RuleSet>,
    ) -> Self {
        let days = ((args.to - args.from).num_days() + 1) as f64;
        let rule_counts = rules.map_or(Vec::new(), |set| {
            set.rules
                .iter()
                .map(|r| RuleCounts {
                    id: r.id.clone(),
                    action: r.action,
                    counts: Counts::default(),
                })
                .collect()
        });
        Report {
            from: args.from.to_string(),
            to: args.to.to_string(),
            days,
            model_version: model.to_string(),
            threshold,
            rule_set: rules.map(|s| s.version.clone()),
            payments: 0,
            without_inputs: 0,
            label_frauds: 0,
            rules: rule_counts,
            alerts: Counts::default(),
            live_alerts: Counts::default(),
            differences: 0,
            caught_not_live: 0,
            missed_live_caught: 0,
            first_differences: Vec::new(),
        }
    }

    /// A payment: the candidate's alert or not, the pipeline's, what is known of it.
    pub(super) fn add(
        &mut self,
        trans_num: &str,
        alert: bool,
        live: bool,
        t: &Tally,
        d: Option<&Decision>,
    ) {
        self.payments += 1;
        let fraud = t.label == Some(true);
        self.label_frauds += u64::from(fraud);
        for &i in d.map_or(&[][..], |d| &d.matched) {
            self.rules[i].counts.add(t);
        }
        if alert {
            self.alerts.add(t);
        }
        if live {
            self.live_alerts.add(t);
        }
        if alert != live {
            self.differences += 1;
            if self.first_differences.len() < 10 {
                self.first_differences.push(trans_num.to_string());
            }
            self.caught_not_live += u64::from(alert && fraud);
            self.missed_live_caught += u64::from(live && fraud);
        }
    }

    /// The shares, once every payment is counted.
    pub(super) fn finish(mut self) -> Self {
        let (days, frauds) = (self.days, self.label_frauds);
        for r in &mut self.rules {
            r.counts.finish(days, frauds);
        }
        self.alerts.finish(days, frauds);
        self.live_alerts.finish(days, frauds);
        self
    }

    pub fn write(&self, format: Format, out: &mut impl Write) -> anyhow::Result<()> {
        match format {
            Format::Json => writeln!(out, "{}", serde_json::to_string(self)?)?,
            Format::Table => self.table(out)?,
        }
        Ok(())
    }

    fn table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "Backtest {} to {} ({} days): {} payments decided, {} labelled frauds among them; {} without stored inputs, not decided",
            self.from, self.to, self.days, self.payments, self.label_frauds, self.without_inputs
        )?;
        writeln!(
            out,
            "model {} at {}, rules {}\n",
            self.model_version,
            self.threshold,
            self.rule_set.as_deref().unwrap_or("none")
        )?;
        let names: Vec<String> = self
            .rules
            .iter()
            .map(|r| {
                let action = serde_json::to_value(r.action).unwrap_or_default();
                format!("rule {} ({})", r.id, action.as_str().unwrap_or(""))
            })
            .collect();
        let w = names.iter().map(String::len).max().unwrap_or(0).max(22);
        writeln!(
            out,
            "{:<w$} {:>7} {:>9} {:>8} {:>9} {:>7} {:>12}",
            "", "matched", "a day", "label", "precision", "recall", "verdicts f/n"
        )?;
        let line = |out: &mut dyn Write, name: &str, c: &Counts| {
            let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.1} %", v * 100.0));
            writeln!(
                out,
                "{name:<w$} {:>7} {:>9.1} {:>8} {:>9} {:>7} {:>12}",
                c.payments,
                c.per_day,
                c.label_frauds,
                pct(c.precision),
                pct(c.recall),
                format!("{}/{}", c.verdict_fraud, c.verdict_not_fraud)
            )
        };
        for (name, r) in names.iter().zip(&self.rules) {
            line(out, name, &r.counts)?;
        }
        line(out, "candidate's alerts", &self.alerts)?;
        line(out, "the pipeline's alerts", &self.live_alerts)?;
        writeln!(
            out,
            "\n{} payments decided otherwise than the pipeline did: {} labelled frauds the candidate alerts and the pipeline did not, {} the reverse",
            self.differences, self.caught_not_live, self.missed_live_caught
        )
    }
}
