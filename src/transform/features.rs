//! Feature computation for one transaction, exactly as docs/feature-spec.md defines it (the
//! training script implements the same definitions; parity tests hold them equal).

use chrono::{Datelike, Timelike};
use serde::Serialize;

use super::geo::haversine_km;
use super::history::Recent;
use super::murmur3::murmur3_32;
use super::spec::{Block, FeatureSpec, Field, Numeric};
use crate::transaction::Transaction;
use crate::zone::Zone;

/// Spec-independent values that `load` stores beside the score.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct Derived {
    pub age_years: f64,
    pub distance_km: f64,
    pub hour: u32,
    pub day_of_week: u32,
}

impl Derived {
    pub fn of(tx: &Transaction, zone: &Zone) -> Self {
        let local = zone.local(tx.trans_time());
        let days = (local.date_naive() - tx.dob).num_days();
        Derived {
            age_years: days as f64 / 365.25,
            distance_km: haversine_km(tx.lat, tx.long, tx.merch_lat, tx.merch_long),
            hour: local.hour(),
            day_of_week: local.weekday().num_days_from_monday(),
        }
    }
}

fn field(tx: &Transaction, f: Field) -> &str {
    match f {
        Field::Category => &tx.category,
        Field::State => &tx.state,
        Field::Gender => &tx.gender,
        Field::Merchant => &tx.merchant,
        Field::Job => &tx.job,
        Field::City => &tx.city,
    }
}

fn numeric(tx: &Transaction, derived: &Derived, n: Numeric) -> f64 {
    match n {
        Numeric::Amt => tx.amt,
        Numeric::LogAmt => (1.0 + tx.amt).ln(),
        Numeric::Zip => f64::from(tx.zip),
        Numeric::Lat => tx.lat,
        Numeric::Long => tx.long,
        Numeric::CityPop => tx.city_pop as f64,
        Numeric::LogCityPop => (1.0 + tx.city_pop as f64).ln(),
        Numeric::MerchLat => tx.merch_lat,
        Numeric::MerchLong => tx.merch_long,
        Numeric::Gender => {
            if tx.gender == "F" {
                1.0
            } else {
                0.0
            }
        }
        Numeric::Hour => f64::from(derived.hour),
        Numeric::DayOfWeek => f64::from(derived.day_of_week),
        Numeric::Age => derived.age_years,
        Numeric::DistanceKm => derived.distance_km,
    }
}

impl FeatureSpec {
    /// Writes the spec's columns for `tx` into `out` (cleared first). `recent` is the card's
    /// history, which a spec with a `card_history` block needs (see [`FeatureSpec::has_history`]).
    pub fn compute(
        &self,
        tx: &Transaction,
        derived: &Derived,
        recent: Option<&Recent>,
        out: &mut Vec<f64>,
    ) {
        out.clear();
        for block in &self.blocks {
            match block {
                Block::CardHistory(features) => {
                    let recent = recent.expect("the card history of a spec that reads it");
                    out.extend(features.iter().map(|f| recent.value(*f)));
                }
                Block::Numeric(features) => {
                    out.extend(features.iter().map(|n| numeric(tx, derived, *n)))
                }
                Block::OneHot {
                    field: f,
                    index,
                    width,
                } => {
                    let start = out.len();
                    out.resize(start + width, 0.0);
                    if let Some(i) = index.get(field(tx, *f)) {
                        out[start + i] = 1.0;
                    }
                }
                Block::Hashing {
                    fields,
                    n_features,
                    alternate_sign,
                } => {
                    let start = out.len();
                    out.resize(start + n_features, 0.0);
                    for f in fields {
                        let h = murmur3_32(field(tx, *f).as_bytes(), 0) as i32;
                        let n = *n_features as i64;
                        let index = if h == i32::MIN {
                            (i64::from(i32::MAX) - (n - 1)) % n
                        } else {
                            i64::from(h).abs() % n
                        };
                        let sign = if *alternate_sign && h < 0 { -1.0 } else { 1.0 };
                        out[start + index as usize] += sign;
                    }
                }
            }
        }
    }
}
