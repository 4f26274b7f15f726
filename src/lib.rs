//! fraudctl: a fraud-detection data pipeline over files and PostgreSQL.
//!
//! One module per stage (`extract`, `transform`, `score`, `load`, `alert`) and per command
//! (`live`, `backtest`, `explain`, `migrate`, `report`, `simulator` for `serve-payments`), each
//! with its options (clap `Args`, which are also its configuration) and a `run` function that
//! tests call directly; the `fraudctl` binary only parses arguments and dispatches. Stages
//! exchange JSON Lines files in a run directory ([`stagefile`], docs/stage-files.md); the model
//! runtime ([`model`]) knows no stage. The modules below are listed in those groups. The library
//! without its `services` feature (what the fuzz targets build) keeps the parsers, validation
//! and stage-file code only.

// The stages, one module each: options (`Args`) and `run`.
#[cfg(feature = "services")]
pub mod alert;
pub mod extract;
#[cfg(feature = "services")]
pub mod load;
#[cfg(feature = "services")]
pub mod score;
pub mod transform;

// The always-on path and the operator commands.
#[cfg(feature = "services")]
pub mod backtest;
#[cfg(feature = "services")]
pub mod explain;
#[cfg(feature = "services")]
pub mod live;
#[cfg(feature = "services")]
pub mod migrate;
#[cfg(feature = "services")]
pub mod report;
#[cfg(feature = "services")]
pub mod simulator;

// The contracts the stages share: stage files, the canonical transaction and the formats it is
// read from, card protection, verdict links.
pub mod dataset;
pub mod pan;
pub mod payments_api;
pub mod rundir;
pub mod stagefile;
pub mod transaction;
pub mod verdict;

// What decides: the model runtime, the rules and lists, a challenger's setting.
pub mod challenger;
pub mod model;
pub mod rules;

// Infrastructure: errors and exit codes, retries, the database, parallelism, progress, settings
// and secrets in messages, time zones.
#[cfg(feature = "services")]
pub mod audit;
#[cfg(feature = "services")]
pub mod db;
pub mod error;
pub mod parallel;
pub mod progress;
pub mod redact;
pub mod retry;
pub mod setting;
pub mod zone;
