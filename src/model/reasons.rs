//! "Why it fired" in plain words: a predicted fraud's features that pushed its score up most
//! (their TreeSHAP contributions, `shap.rs`), each said the one way the alert email and the
//! dashboard both show (`text`): `amount 841.89, 12× this card's 30-day average`, `02:14 at
//! night`, `category is not grocery_pos`, …
//!
//! The words say what the payment was, with its values: never a card number (values are
//! numbers, and any free text is masked with [`mask_digit_runs`]), and never the cardholder's
//! home (a `zip`, `lat` or `long` feature is said without its value, which is left out:
//! `payments_scored` keeps no home location).

use chrono::Timelike;
use serde::Serialize;

use crate::pan::mask_digit_runs;
use crate::transaction::Transaction;
use crate::transform::{Block, FeatureSpec, Field, HistoryFeature, Numeric};
use crate::zone::Zone;

/// What a reason about the cardholder's profile (not about the payment) adds.
const PROFILE: &str = ": a profile pattern, nothing to check";

/// How many reasons a predicted fraud gets.
pub const TOP_REASONS: usize = 3;

/// One reason: a feature, its value (`null` when missing or left out), its contribution to the
/// margin (log-odds, > 0) and the words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub feature: String,
    pub value: Option<f64>,
    pub contribution: f64,
    pub text: String,
}

/// What a column of the spec is, for its words.
#[derive(Debug, Clone)]
enum Column {
    Numeric(Numeric),
    OneHot {
        field: Field,
        category: String,
    },
    History(HistoryFeature),
    /// A hashing block's column: only its name says anything.
    Hashed,
}

/// The words of a model's columns, built once from its feature spec.
#[derive(Debug)]
pub struct Explainer {
    names: Vec<String>,
    columns: Vec<Column>,
    /// The `card_amt_ratio_30d` column, when the spec has it (said beside the amount).
    ratio_30d: Option<usize>,
    time_zone: Zone,
}

impl Explainer {
    pub fn new(spec: &FeatureSpec) -> Self {
        let mut columns = Vec::with_capacity(spec.width());
        for block in &spec.blocks {
            match block {
                Block::Numeric(features) => {
                    columns.extend(features.iter().map(|n| Column::Numeric(*n)))
                }
                Block::CardHistory(features) => {
                    columns.extend(features.iter().map(|h| Column::History(*h)))
                }
                Block::Hashing { n_features, .. } => {
                    columns.extend((0..*n_features).map(|_| Column::Hashed))
                }
                Block::OneHot {
                    field,
                    index,
                    width,
                } => {
                    let mut categories = vec![String::new(); *width];
                    for (category, i) in index {
                        categories[*i] = category.clone();
                    }
                    columns.extend(categories.into_iter().map(|category| Column::OneHot {
                        field: *field,
                        category,
                    }));
                }
            }
        }
        let ratio_30d = columns
            .iter()
            .position(|c| matches!(c, Column::History(HistoryFeature::CardAmtRatio30d)));
        Explainer {
            names: spec.columns.clone(),
            columns,
            ratio_30d,
            time_zone: spec.time_zone.clone(),
        }
    }

    /// The [`TOP_REASONS`] features with the largest positive contributions (`contributions`:
    /// one per feature, then the bias, which is no reason), largest first. A feature whose words
    /// repeat an earlier reason's (`amt` and `log_amt` both say the amount) is passed over for
    /// the next one.
    pub fn reasons(
        &self,
        tx: &Transaction,
        values: &[Option<f64>],
        contributions: &[f64],
    ) -> Vec<Reason> {
        let mut order: Vec<usize> = (0..self.columns.len())
            .filter(|&i| contributions[i] > 0.0)
            .collect();
        order.sort_by(|&a, &b| contributions[b].total_cmp(&contributions[a]));
        let mut reasons: Vec<Reason> = Vec::with_capacity(TOP_REASONS);
        for i in order {
            let text = self.text(i, tx, values);
            if reasons.iter().any(|r| r.text == text) {
                continue;
            }
            reasons.push(Reason {
                feature: self.names[i].clone(),
                value: if self.is_home(i) { None } else { values[i] },
                contribution: contributions[i],
                text,
            });
            if reasons.len() == TOP_REASONS {
                break;
            }
        }
        reasons
    }

    /// Whether column `i` is the cardholder's home location (said without its value).
    fn is_home(&self, i: usize) -> bool {
        matches!(
            self.columns[i],
            Column::Numeric(Numeric::Zip | Numeric::Lat | Numeric::Long)
        )
    }

    /// The words of column `i` for this payment.
    fn text(&self, i: usize, tx: &Transaction, values: &[Option<f64>]) -> String {
        let name = &self.names[i];
        if self.is_home(i) {
            return "the cardholder's home location".to_string();
        }
        match (&self.columns[i], values[i]) {
            (Column::Numeric(n), Some(v)) => self.numeric(*n, v, tx, values),
            (Column::History(h), v) => history(*h, v, tx),
            (Column::OneHot { field, category }, Some(v)) => {
                let category = mask_digit_runs(category);
                match v == 0.0 {
                    true => format!("{} is not {category}", field.name()),
                    false => format!("{} {category}", field.name()),
                }
            }
            (Column::Hashed, Some(v)) => format!("{name} = {v}"),
            (_, None) => format!("{name} missing"),
        }
    }

    fn numeric(&self, n: Numeric, v: f64, tx: &Transaction, values: &[Option<f64>]) -> String {
        match n {
            Numeric::Amt | Numeric::LogAmt => {
                let ratio = self.ratio_30d.and_then(|i| values[i]);
                match ratio {
                    Some(r) => format!(
                        "amount {}, {} this card's 30-day average",
                        money(tx.amt),
                        times(r)
                    ),
                    None => format!("amount {}", money(tx.amt)),
                }
            }
            Numeric::Hour => {
                let local = self.time_zone.local(tx.trans_time());
                let (h, m) = (local.hour(), local.minute());
                format!("{h:02}:{m:02} {}", part_of_day(h))
            }
            Numeric::DayOfWeek => {
                const DAYS: [&str; 7] = [
                    "Monday",
                    "Tuesday",
                    "Wednesday",
                    "Thursday",
                    "Friday",
                    "Saturday",
                    "Sunday",
                ];
                format!("on a {}", DAYS.get(v as usize).unwrap_or(&"day"))
            }
            Numeric::Age => format!("cardholder aged {}", v.floor()),
            Numeric::DistanceKm => {
                format!("merchant {} km from the cardholder's home", whole(v))
            }
            // Who the cardholder is, not what happened: said as such, so that an analyst does
            // not look for something to check there.
            Numeric::Gender => format!(
                "the cardholder's gender ({}){PROFILE}",
                if v == 1.0 { "female" } else { "male" }
            ),
            Numeric::CityPop | Numeric::LogCityPop => format!(
                "the size of the cardholder's town ({} people){PROFILE}",
                whole(tx.city_pop as f64)
            ),
            other => format!("{} = {v}", other.name()),
        }
    }
}

/// The words of a card-history feature (docs/feature-spec.md, "card_history"); `None` is a
/// payment whose card has no earlier payment in the last 30 days.
fn history(h: HistoryFeature, v: Option<f64>, tx: &Transaction) -> String {
    use HistoryFeature::*;
    let Some(v) = v else {
        return "no earlier payment on this card in the last 30 days".to_string();
    };
    let window = match h {
        CardCount1h | CardAmtSum1h => "the last hour",
        CardCount24h | CardAmtSum24h | CardCategories24h => "the last 24 hours",
        CardCount7d | CardAmtSum7d => "the last 7 days",
        _ => "the last 30 days",
    };
    match h {
        CardCount1h | CardCount24h | CardCount7d | CardCount30d => {
            format!("{} payment on this card in {window}", ordinal(v as u64 + 1))
        }
        CardAmtSum1h | CardAmtSum24h | CardAmtSum7d if v == 0.0 => {
            format!("nothing spent on this card in {window} before")
        }
        CardAmtSum1h | CardAmtSum24h | CardAmtSum7d => {
            format!("{} spent on this card in {window}", money(v))
        }
        CardAmtRatio30d => format!("amount {} this card's 30-day average", times(v)),
        CardSecsSincePrev => format!("{} since this card's previous payment", duration(v)),
        CardKmFromPrev => format!("merchant {} km from this card's previous one", whole(v)),
        CardKmhFromPrev => format!("{} km/h from this card's previous payment", whole(v)),
        CardCategories24h => format!("{} categories on this card in {window}", whole(v)),
        CardNewCategory30d => {
            let category = mask_digit_runs(&tx.category);
            match v == 1.0 {
                true => format!("first {category} payment on this card in {window}"),
                false => format!("{category} bought on this card before in {window}"),
            }
        }
    }
}

fn part_of_day(hour: u32) -> &'static str {
    match hour {
        6..=11 => "in the morning",
        12..=17 => "in the afternoon",
        18..=21 => "in the evening",
        _ => "at night",
    }
}

/// `1234.5` → `1,234.50`.
pub(crate) fn money(v: f64) -> String {
    let cents = (v.abs() * 100.0).round() as u64;
    let sign = if v < 0.0 && cents > 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", grouped(cents / 100), cents % 100)
}

/// `1234.4` → `1,234`.
fn whole(v: f64) -> String {
    let sign = if v < -0.5 { "-" } else { "" };
    format!("{sign}{}", grouped(v.abs().round() as u64))
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A ratio: `12×` from 10 on, `2.5×` below (`3×`, not `3.0×`).
fn times(r: f64) -> String {
    if r >= 10.0 {
        return format!("{}×", whole(r));
    }
    let tenths = format!("{r:.1}");
    format!("{}×", tenths.strip_suffix(".0").unwrap_or(&tenths))
}

fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{}{suffix}", grouped(n))
}

fn duration(secs: f64) -> String {
    let (n, unit) = match secs {
        s if s < 120.0 => (s, "seconds"),
        s if s < 7200.0 => (s / 60.0, "minutes"),
        s if s < 172_800.0 => (s / 3600.0, "hours"),
        s => (s / 86_400.0, "days"),
    };
    format!("{} {unit}", whole(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(blocks: &str) -> FeatureSpec {
        let text = format!(
            r#"{{"schema":"fraudctl.feature_spec","version":1,"name":"t","time_zone":"America/New_York","blocks":{blocks}}}"#
        );
        FeatureSpec::parse(text.as_bytes()).unwrap()
    }

    /// 2019-01-02 07:14:05 UTC = 02:14 in New York; amount 841.89; category shopping_net. Made
    /// as it stands, unchecked: its merchant holds a card number, which no reason may show.
    fn tx() -> Transaction {
        Transaction {
            trans_num: "t1".into(),
            trans_time_ms: 1_546_413_245_000,
            cc_last4: "4052".into(),
            cc_hash: "h".into(),
            merchant: "fraud_Kirlin 4497913965512794052".into(),
            category: "shopping_net".into(),
            amt: 841.89,
            gender: "F".into(),
            city: "Pembroke".into(),
            state: "NC".into(),
            zip: 28372,
            lat: 34.69,
            long: -79.18,
            city_pop: 14783,
            job: "Doctor".into(),
            dob: chrono::NaiveDate::from_ymd_opt(1935, 11, 7).unwrap(),
            merch_lat: 34.38,
            merch_long: -78.62,
            is_fraud: None,
            captured_at_ms: None,
        }
    }

    /// The words of each column of `spec` for `values`, in column order.
    fn words(spec: &FeatureSpec, values: &[Option<f64>]) -> Vec<String> {
        let explainer = Explainer::new(spec);
        (0..values.len())
            .map(|i| explainer.text(i, &tx(), values))
            .collect()
    }

    #[test]
    fn each_numeric_phrase() {
        let s = spec(
            r#"[{"type":"numeric","features":["amt","hour","age","distance_km","gender","city_pop","day_of_week","merch_lat"]}]"#,
        );
        let values = [841.89, 2.0, 83.4, 131.6, 1.0, 14783.0, 2.0, 34.38].map(Some);
        assert_eq!(
            words(&s, &values),
            [
                "amount 841.89",
                "02:14 at night",
                "cardholder aged 83",
                "merchant 132 km from the cardholder's home",
                "the cardholder's gender (female): a profile pattern, nothing to check",
                "the size of the cardholder's town (14,783 people): a profile pattern, nothing to check",
                "on a Wednesday",
                "merch_lat = 34.38",
            ]
        );
    }

    #[test]
    fn amount_with_and_without_the_30_day_ratio() {
        let s = spec(
            r#"[{"type":"numeric","features":["amt"]},{"type":"card_history","features":["card_amt_ratio_30d"]}]"#,
        );
        assert_eq!(
            words(&s, &[Some(841.89), Some(12.2)]),
            [
                "amount 841.89, 12× this card's 30-day average",
                "amount 12× this card's 30-day average"
            ]
        );
        // No earlier payment: the ratio is missing, the amount is said alone.
        assert_eq!(
            words(&s, &[Some(841.89), None]),
            [
                "amount 841.89",
                "no earlier payment on this card in the last 30 days"
            ]
        );
        assert_eq!(times(2.46), "2.5×");
        assert_eq!(times(3.01), "3×");
    }

    #[test]
    fn card_history_phrases() {
        let s = spec(
            r#"[{"type":"card_history","features":["card_amt_sum_24h","card_count_1h","card_amt_sum_1h","card_secs_since_prev","card_new_category_30d","card_count_24h"]}]"#,
        );
        let values = [
            Some(1234.5),
            Some(3.0),
            Some(0.0),
            Some(185.0),
            Some(1.0),
            Some(10.0),
        ];
        assert_eq!(
            words(&s, &values),
            [
                "1,234.50 spent on this card in the last 24 hours",
                "4th payment on this card in the last hour",
                "nothing spent on this card in the last hour before",
                "3 minutes since this card's previous payment",
                "first shopping_net payment on this card in the last 30 days",
                "11th payment on this card in the last 24 hours",
            ]
        );
    }

    #[test]
    fn one_hot_at_one_and_at_zero() {
        let s = spec(
            r#"[{"type":"one_hot","field":"category","categories":["grocery_pos","shopping_net"]}]"#,
        );
        assert_eq!(
            words(&s, &[Some(0.0), Some(1.0)]),
            ["category is not grocery_pos", "category shopping_net"]
        );
    }

    #[test]
    fn top_three_positive_without_repeated_words_or_home_or_card_numbers() {
        let s = spec(
            r#"[{"type":"numeric","features":["amt","log_amt","zip","hour","age"]},
                {"type":"one_hot","field":"merchant","categories":["fraud_Kirlin 4497913965512794052"]}]"#,
        );
        let values = [841.89, 6.74, 28372.0, 2.0, 83.0, 1.0].map(Some);
        let contributions = [2.0, 1.5, 1.2, -0.3, 0.4, 0.9, -3.0];
        let reasons = Explainer::new(&s).reasons(&tx(), &values, &contributions);
        let said: Vec<(&str, Option<f64>, &str)> = reasons
            .iter()
            .map(|r| (r.feature.as_str(), r.value, r.text.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                ("amt", Some(841.89), "amount 841.89"),
                ("zip", None, "the cardholder's home location"),
                (
                    "merchant=fraud_Kirlin 4497913965512794052",
                    Some(1.0),
                    "merchant fraud_Kirlin ****4052"
                ),
            ]
        );
        assert!(!mask_digit_runs("4497913965512794052").contains("4497913965512794052"));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(0.5), "0.50");
        assert_eq!(whole(999.6), "1,000");
        assert_eq!(ordinal(2), "2nd");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(23), "23rd");
    }
}
