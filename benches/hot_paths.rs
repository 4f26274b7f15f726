//! Micro-benchmarks of the hot paths: `cargo bench` (or `cargo bench -- score` to filter).
//!
//! No benchmarking framework (it would be built by every `cargo test` as a dev-dependency): each
//! case runs for about a second after a warm-up, in batches, and the median time per item over
//! the batches is printed. Inputs are the real sample (../shared) and the shipped default model.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fraudctl::model::{TreeShap, XgbModel};
use fraudctl::pan::PanProtector;
use fraudctl::payments_api;
use fraudctl::transaction::{validate, Transaction};
use fraudctl::transform::{Derived, FeatureSpec, Recent};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared() -> PathBuf {
    std::env::var_os("FRAUDCTL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

/// Times `f` (which handles `items` items per call); prints the median ns per item.
fn bench(name: &str, items: usize, mut f: impl FnMut()) {
    if let Some(filter) = std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        if !name.contains(&filter) {
            return;
        }
    }
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        f();
    }
    let mut per_item = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) || per_item.len() < 5 {
        let t = Instant::now();
        f();
        per_item.push(t.elapsed().as_nanos() as f64 / items as f64);
    }
    per_item.sort_by(f64::total_cmp);
    let median = per_item[per_item.len() / 2];
    println!(
        "{name:<40} {median:>10.0} ns/record {:>12.0} records/s",
        1e9 / median
    );
}

fn main() {
    let body = std::fs::read_to_string(shared().join("fixtures/current-transactions.json"))
        .expect("../shared/fixtures/current-transactions.json (set FRAUDCTL_SHARED_DIR)");
    let rows: Vec<_> = payments_api::decode(&body)
        .expect("the fixture decodes")
        .into_iter()
        .map(|r| r.expect("the fixture's rows are valid"))
        .collect();
    bench("api body decode", rows.len(), || {
        black_box(payments_api::decode(black_box(&body)).unwrap());
    });

    let pan = PanProtector::new(b"benchmark-only-key-0123456789");
    bench("validate (incl. card hashing)", rows.len(), || {
        for row in &rows {
            black_box(validate(black_box(row), &pan).unwrap());
        }
    });

    let tx = validate(&rows[0], &pan).unwrap();
    let line = serde_json::to_string(&tx).unwrap();
    bench("raw.jsonl line parse", 1, || {
        black_box(serde_json::from_str::<Transaction>(black_box(&line)).unwrap());
    });

    let spec = FeatureSpec::load(&root().join("model/default/feature_spec.json")).unwrap();
    let mut values = Vec::new();
    bench("features (default spec)", 1, || {
        let derived = Derived::of(black_box(&tx), &spec.time_zone);
        spec.compute(&tx, &derived, Some(&Recent::default()), &mut values);
        black_box(&values);
    });
    let original = FeatureSpec::load(&root().join("model/original/feature_spec.json")).unwrap();
    bench("features (original 199-column spec)", 1, || {
        let derived = Derived::of(black_box(&tx), &original.time_zone);
        original.compute(&tx, &derived, Some(&Recent::default()), &mut values);
        black_box(&values);
    });

    // Rows that take different paths through the trees (one row over and over would let the
    // branch predictor learn its path): the sample's first transaction at other amounts, hours
    // and days.
    let model = XgbModel::load(&root().join("model/default/model.json")).unwrap();
    let batch = 2048;
    let mut rows: Vec<Vec<Option<f64>>> = Vec::with_capacity(batch);
    for i in 0..batch as i64 {
        let mut varied = tx.clone();
        varied.amt = ((i * 7919) % 150_000) as f64 / 100.0 + 1.0;
        varied.trans_time_ms += i * 3_700_000;
        let derived = Derived::of(&varied, &spec.time_zone);
        spec.compute(&varied, &derived, Some(&Recent::default()), &mut values);
        rows.push(values.iter().map(|v| Some(*v)).collect());
    }
    let mut next = rows.iter().cycle();
    bench("tree evaluation, one row at a time", 1, || {
        black_box(model.predict(black_box(next.next().unwrap())));
    });
    let mut rows_f32 = Vec::new();
    for row in &rows {
        XgbModel::push_row(&mut rows_f32, row);
    }
    let mut out = Vec::new();
    bench("tree evaluation, batch of 2048 rows", batch, || {
        model.predict_rows(black_box(&rows_f32), &mut out);
        black_box(&out);
    });
    let mut next = rows.iter().cycle();
    let shap = TreeShap::of(&model);
    bench("contributions (TreeSHAP), one row at a time", 1, || {
        black_box(shap.contributions(&model, black_box(next.next().unwrap())));
    });
}
