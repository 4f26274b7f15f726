//! What a rejected file keeps of a row it could not use: the row without what identifies the
//! card holder, the card number protected.

use serde_json::{Map, Value};

use crate::pan::{mask_digit_runs, mask_value, PanProtector};

/// Fields of a row that a rejected file never keeps: who the card holder is and where they
/// live (the reason names the field, and quotes its value when that value is the problem).
const PERSONAL: [&str; 7] = ["first", "last", "street", "dob", "zip", "lat", "long"];

/// Longest text a rejected record keeps of one value.
const KEPT_CHARS: usize = 200;

/// A row as kept in a rejected file: the card number reduced to its protected form, the card
/// holder's personal fields dropped, everything else as received (whatever its column name)
/// but with every digit run of card-number length masked and every text cut to 200
/// characters, so the reason can be checked.
pub fn redacted_row(row: &Map<String, Value>, pan: &PanProtector) -> Value {
    let mut kept = Map::new();
    for (name, value) in row {
        match name.as_str() {
            n if PERSONAL.contains(&n) => {}
            "cc_num" => {
                let digits = match value {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    let p = pan.protect(&digits);
                    kept.insert("cc_last4".into(), Value::String(p.last4));
                    kept.insert("cc_hash".into(), Value::String(p.hash));
                } else {
                    kept.insert(
                        "cc_num".into(),
                        mask_value(&Value::String(digits), KEPT_CHARS),
                    );
                }
            }
            _ => {
                kept.insert(
                    crate::pan::cut(&mask_digit_runs(name), KEPT_CHARS),
                    mask_value(value, KEPT_CHARS),
                );
            }
        }
    }
    Value::Object(kept)
}
