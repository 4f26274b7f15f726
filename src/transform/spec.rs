//! The feature spec a model ships (docs/feature-spec.md), parsed and checked: an unknown block
//! type, feature name or field is an error naming the spec file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::Failure;
use crate::zone::Zone;

pub const SPEC_SCHEMA: &str = "fraudctl.feature_spec";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    schema: String,
    version: u32,
    name: String,
    time_zone: String,
    blocks: Vec<BlockFile>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum BlockFile {
    Numeric {
        features: Vec<Numeric>,
    },
    OneHot {
        field: Field,
        categories: Vec<String>,
    },
    Hashing {
        fields: Vec<Field>,
        n_features: usize,
        #[serde(default = "alternate_sign_by_default")]
        alternate_sign: bool,
        #[serde(default)]
        prefix: Option<String>,
    },
    CardHistory {
        features: Vec<HistoryFeature>,
    },
}

/// A hashing block's `alternate_sign` when the spec does not say (scikit-learn's default).
fn alternate_sign_by_default() -> bool {
    true
}

/// The named numeric features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Numeric {
    Amt,
    LogAmt,
    Zip,
    Lat,
    Long,
    CityPop,
    LogCityPop,
    MerchLat,
    MerchLong,
    Gender,
    Hour,
    DayOfWeek,
    Age,
    DistanceKm,
}

/// The features of a `card_history` block: the card's earlier payments (docs/feature-spec.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum HistoryFeature {
    CardCount1h,
    CardCount24h,
    CardCount7d,
    CardCount30d,
    CardAmtSum1h,
    CardAmtSum24h,
    CardAmtSum7d,
    CardAmtRatio30d,
    CardSecsSincePrev,
    CardKmFromPrev,
    CardKmhFromPrev,
    CardCategories24h,
    CardNewCategory30d,
}

/// Transaction fields a one-hot or hashing block can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Category,
    State,
    Gender,
    Merchant,
    Job,
    City,
}

#[derive(Debug)]
pub enum Block {
    Numeric(Vec<Numeric>),
    OneHot {
        field: Field,
        index: HashMap<String, usize>,
        width: usize,
    },
    Hashing {
        fields: Vec<Field>,
        n_features: usize,
        alternate_sign: bool,
    },
    CardHistory(Vec<HistoryFeature>),
}

/// A checked feature spec.
#[derive(Debug)]
pub struct FeatureSpec {
    pub name: String,
    pub sha256: String,
    pub time_zone: Zone,
    pub blocks: Vec<Block>,
    pub columns: Vec<String>,
}

impl FeatureSpec {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read feature spec {}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| Failure::BadInput(format!("feature spec {}: {e}", path.display())).into())
    }

    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let file: SpecFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if file.schema != SPEC_SCHEMA || file.version != 1 {
            return Err(format!(
                "is {} version {}, expected {SPEC_SCHEMA} version 1",
                file.schema, file.version
            ));
        }
        let time_zone = Zone::named(&file.time_zone).ok_or_else(|| {
            format!(
                "time_zone {:?} is not an IANA time zone name",
                file.time_zone
            )
        })?;
        let mut columns = Vec::new();
        let mut blocks = Vec::new();
        for block in file.blocks {
            blocks.push(match block {
                BlockFile::Numeric { features } => {
                    columns.extend(features.iter().map(|f| f.name().to_string()));
                    Block::Numeric(features)
                }
                BlockFile::OneHot { field, categories } => {
                    let mut index = HashMap::new();
                    for (i, c) in categories.iter().enumerate() {
                        if index.insert(c.clone(), i).is_some() {
                            return Err(format!("one_hot block on {field:?} lists {c:?} twice"));
                        }
                        columns.push(format!("{}={c}", field.name()));
                    }
                    Block::OneHot {
                        field,
                        index,
                        width: categories.len(),
                    }
                }
                BlockFile::Hashing {
                    fields,
                    n_features,
                    alternate_sign,
                    prefix,
                } => {
                    if n_features == 0 || n_features > 1 << 20 {
                        return Err(format!(
                            "hashing block n_features {n_features} is not in 1..=1048576"
                        ));
                    }
                    let prefix = prefix.unwrap_or_else(|| "hash".into());
                    columns.extend((0..n_features).map(|i| format!("{prefix}_{i}")));
                    Block::Hashing {
                        fields,
                        n_features,
                        alternate_sign,
                    }
                }
                BlockFile::CardHistory { features } => {
                    columns.extend(features.iter().map(|f| f.name().to_string()));
                    Block::CardHistory(features)
                }
            });
        }
        if columns.is_empty() {
            return Err("lists no feature".into());
        }
        Ok(FeatureSpec {
            name: file.name,
            sha256: hex::encode(Sha256::digest(text)),
            time_zone,
            blocks,
            columns,
        })
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Whether the spec reads the cards' history (then `transform` needs the database).
    pub fn has_history(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(b, Block::CardHistory(_)))
    }

    /// Whether a history feature of the spec reads the earlier payments' merchants or
    /// categories (then the history keeps them).
    pub fn history_reads_details(&self) -> bool {
        self.blocks.iter().any(|b| match b {
            Block::CardHistory(features) => features.iter().any(|f| f.reads_details()),
            _ => false,
        })
    }
}

impl TryFrom<String> for HistoryFeature {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        HistoryFeature::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = HistoryFeature::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown card_history feature {name:?}, expected one of {}",
                    known.join(", ")
                )
            })
    }
}

impl HistoryFeature {
    pub const ALL: [HistoryFeature; 13] = [
        HistoryFeature::CardCount1h,
        HistoryFeature::CardCount24h,
        HistoryFeature::CardCount7d,
        HistoryFeature::CardCount30d,
        HistoryFeature::CardAmtSum1h,
        HistoryFeature::CardAmtSum24h,
        HistoryFeature::CardAmtSum7d,
        HistoryFeature::CardAmtRatio30d,
        HistoryFeature::CardSecsSincePrev,
        HistoryFeature::CardKmFromPrev,
        HistoryFeature::CardKmhFromPrev,
        HistoryFeature::CardCategories24h,
        HistoryFeature::CardNewCategory30d,
    ];

    /// Whether the feature reads the merchant or the category of earlier payments, not only
    /// their times and amounts.
    pub fn reads_details(self) -> bool {
        use HistoryFeature::*;
        matches!(
            self,
            CardKmFromPrev | CardKmhFromPrev | CardCategories24h | CardNewCategory30d
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            HistoryFeature::CardCount1h => "card_count_1h",
            HistoryFeature::CardCount24h => "card_count_24h",
            HistoryFeature::CardCount7d => "card_count_7d",
            HistoryFeature::CardCount30d => "card_count_30d",
            HistoryFeature::CardAmtSum1h => "card_amt_sum_1h",
            HistoryFeature::CardAmtSum24h => "card_amt_sum_24h",
            HistoryFeature::CardAmtSum7d => "card_amt_sum_7d",
            HistoryFeature::CardAmtRatio30d => "card_amt_ratio_30d",
            HistoryFeature::CardSecsSincePrev => "card_secs_since_prev",
            HistoryFeature::CardKmFromPrev => "card_km_from_prev",
            HistoryFeature::CardKmhFromPrev => "card_kmh_from_prev",
            HistoryFeature::CardCategories24h => "card_categories_24h",
            HistoryFeature::CardNewCategory30d => "card_new_category_30d",
        }
    }
}

impl Numeric {
    pub fn name(self) -> &'static str {
        match self {
            Numeric::Amt => "amt",
            Numeric::LogAmt => "log_amt",
            Numeric::Zip => "zip",
            Numeric::Lat => "lat",
            Numeric::Long => "long",
            Numeric::CityPop => "city_pop",
            Numeric::LogCityPop => "log_city_pop",
            Numeric::MerchLat => "merch_lat",
            Numeric::MerchLong => "merch_long",
            Numeric::Gender => "gender",
            Numeric::Hour => "hour",
            Numeric::DayOfWeek => "day_of_week",
            Numeric::Age => "age",
            Numeric::DistanceKm => "distance_km",
        }
    }
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Category => "category",
            Field::State => "state",
            Field::Gender => "gender",
            Field::Merchant => "merchant",
            Field::Job => "job",
            Field::City => "city",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_feature_and_block_are_errors() {
        let bad_feature =
            br#"{"schema":"fraudctl.feature_spec","version":1,"name":"x","time_zone":"UTC",
            "blocks":[{"type":"numeric","features":["amt","velocity_1h"]}]}"#;
        let err = FeatureSpec::parse(bad_feature).unwrap_err();
        assert!(err.contains("velocity_1h"), "{err}");
        let bad_block =
            br#"{"schema":"fraudctl.feature_spec","version":1,"name":"x","time_zone":"UTC",
            "blocks":[{"type":"embedding","field":"job"}]}"#;
        assert!(FeatureSpec::parse(bad_block)
            .unwrap_err()
            .contains("embedding"));
    }

    #[test]
    fn columns_follow_blocks() {
        let spec = br#"{"schema":"fraudctl.feature_spec","version":1,"name":"x","time_zone":"America/New_York",
            "blocks":[{"type":"one_hot","field":"state","categories":["NC","NY"]},
                      {"type":"hashing","fields":["merchant","job"],"n_features":3},
                      {"type":"numeric","features":["amt","distance_km"]}]}"#;
        let spec = FeatureSpec::parse(spec).unwrap();
        assert_eq!(
            spec.columns,
            [
                "state=NC",
                "state=NY",
                "hash_0",
                "hash_1",
                "hash_2",
                "amt",
                "distance_km"
            ]
        );
    }
}
