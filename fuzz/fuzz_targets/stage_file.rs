//! The stage-file readers: any file content read as each stage reads its input (header checks,
//! then every record, then what the next stage computes from it) must end in records or a
//! clean error, never a panic.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use fraudctl::stagefile::{read_header, Rejected, StageReader, REJECTED_SCHEMA};
use fraudctl::transaction::Transaction;
use fraudctl::transform::{Derived, FeatureSpec, Recent};
use libfuzzer_sys::fuzz_target;

/// The default model's feature spec, as `transform` uses it.
fn spec() -> &'static FeatureSpec {
    static SPEC: OnceLock<FeatureSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../model/default/feature_spec.json"
        );
        FeatureSpec::load(path.as_ref()).expect("the default feature spec loads")
    })
}

/// Reads every record of `path` as `schema`, handing each to `each`; stops at the first error.
fn read_all<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    schema: &str,
    mut each: impl FnMut(T),
) {
    if let Ok(mut reader) = StageReader::<T>::open(path, schema) {
        let _ = reader.header().records();
        while let Ok(Some(record)) = reader.next_record() {
            each(record);
        }
    }
}

/// What `load` reads of a scored record (the `score` object aside: plain numbers and strings).
#[derive(serde::Deserialize)]
struct Scored {
    tx: Transaction,
    derived: Derived,
}

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write temp file");
    let path = file.path();
    let _ = read_header(path);
    // extract -> transform: canonical transactions, then their features.
    let mut values = Vec::new();
    read_all::<Transaction>(path, "fraudctl.raw", |tx| {
        let derived = Derived::of(&tx, &spec().time_zone);
        spec().compute(&tx, &derived, Some(&Recent::default()), &mut values);
    });
    // score -> load: the transaction as load encodes it for COPY.
    read_all::<Scored>(path, "fraudctl.scored", |r| {
        let _ = (r.tx.trans_time(), r.tx.amt_cents(), r.derived.age_years);
    });
    read_all::<Rejected>(path, REJECTED_SCHEMA, |_| {});
});
