//! fraudctl: a fraud-detection data pipeline over files and PostgreSQL.
//!
//! One module per stage (`extract`, `transform`, `score`, `load`), each with its options (clap
//! `Args`, which are also its configuration) and a `run` function that tests call directly; the
//! `fraudctl` binary only parses arguments and dispatches. Stages exchange JSON Lines files in a
//! run directory ([`stagefile`], docs/stage-files.md).

pub mod alert;
pub mod db;
pub mod error;
pub mod extract;
pub mod load;
pub mod migrate;
pub mod pan;
pub mod parallel;
pub mod payments_api;
pub mod report;
pub mod retry;
pub mod rundir;
pub mod score;
pub mod simulator;
pub mod stagefile;
pub mod transaction;
pub mod transform;
