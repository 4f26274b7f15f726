//! The record a stage could not use, as its rejected file keeps it.

use serde::{Deserialize, Serialize};

/// Schema of the rejected files.
pub const REJECTED_SCHEMA: &str = "fraudctl.rejected";

/// A record a stage could not use, with the reason. Card numbers are already protected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejected {
    pub reason: String,
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}
