//! The payments API's response body, as `extract` handles it: decode the split document, then
//! validate and redact every row. Any input must give rows or reasons, never a panic.
#![no_main]

use fraudctl::pan::{mask_digit_runs, PanProtector};
use fraudctl::payments_api::decode;
use fraudctl::transaction::{redacted_row, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let pan = PanProtector::new(b"fuzzing-key-0123456789");
    match decode(body) {
        Ok(rows) => {
            for row in rows.into_iter().flatten() {
                if let Ok(tx) = validate(&row, &pan) {
                    // What later stages derive from a valid transaction must hold too.
                    let _ = tx.trans_time();
                    let _ = tx.amt_cents();
                }
                let _ = redacted_row(&row, &pan);
            }
        }
        Err(_) => {
            let _ = mask_digit_runs(body);
        }
    }
});
