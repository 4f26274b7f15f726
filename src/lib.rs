//! fraudctl: a fraud-detection data pipeline over files and PostgreSQL.
//!
//! One module per stage (`extract`, `transform`, `score`, `load`, `alert`) and per operator
//! command (`migrate`, `report`, `simulator` for `serve-payments`), each with its options (clap
//! `Args`, which are also its configuration) and a `run` function that tests call directly; the
//! `fraudctl` binary only parses arguments and dispatches. Stages exchange JSON Lines files in a
//! run directory ([`stagefile`], docs/stage-files.md); the library without its `services`
//! feature (what the fuzz targets build) keeps the parsers, validation and stage-file code only.

#[cfg(feature = "services")]
pub mod alert;
#[cfg(feature = "services")]
pub mod audit;
#[cfg(feature = "services")]
pub mod backtest;
pub mod challenger;
pub mod dataset;
#[cfg(feature = "services")]
pub mod db;
pub mod error;
#[cfg(feature = "services")]
pub mod explain;
pub mod extract;
#[cfg(feature = "services")]
pub mod live;
#[cfg(feature = "services")]
pub mod load;
#[cfg(feature = "services")]
pub mod migrate;
pub mod model;
pub mod pan;
pub mod parallel;
pub mod payments_api;
pub mod progress;
pub mod redact;
#[cfg(feature = "services")]
pub mod report;
pub mod retry;
pub mod rules;
pub mod rundir;
#[cfg(feature = "services")]
pub mod score;
pub mod setting;
#[cfg(feature = "services")]
pub mod simulator;
pub mod stagefile;
pub mod transaction;
pub mod transform;
pub mod verdict;
pub mod zone;
