//! The data the tests feed the stages: the shared sample, the recorded API response made into
//! bodies ([`ApiRow`]), and the scan for card numbers in clear.

use super::{default_model, ok, sample_csv, shared, RunDir};

/// extract (from the sample CSV, at most `n` rows) + transform with the default model's spec.
pub fn features_from_sample(dir: &RunDir, n: u32) {
    ok(dir
        .stage("extract")
        .arg("--from-csv")
        .arg(sample_csv())
        .args(["--max-records", &n.to_string()]));
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
}

/// The card numbers of the sample, in clear.
pub fn sample_pans() -> std::collections::HashSet<String> {
    let mut reader = csv::Reader::from_path(sample_csv()).expect("sample CSV");
    reader
        .records()
        .map(|r| r.expect("CSV row")[2].to_string())
        .collect()
}

/// The card numbers of `pans` that appear in `text`, with where: written in digits of any script,
/// whole or split into groups by anything but letters ("4497 9139 6551 2794 052",
/// "4497.9139…", "４４９７…", "4497 -/ 9139…"): a card number is the digits of consecutive
/// whole groups of a chain (groups of digits joined by characters that are neither digits nor
/// ASCII letters). A card number inside a longer group of digits (a probability's decimals)
/// does not count.
pub fn card_numbers_in(text: &str, pans: &std::collections::HashSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    let mut chains: Vec<(usize, Vec<String>)> = vec![(0, vec![])];
    let mut in_group = false;
    for (at, c) in text.char_indices() {
        match fraudctl::pan::digit_value(c) {
            Some(d) => {
                let (start, groups) = chains.last_mut().expect("a chain");
                if groups.is_empty() {
                    *start = at;
                }
                if !in_group {
                    groups.push(String::new());
                }
                groups
                    .last_mut()
                    .expect("a group")
                    .push(char::from(b'0' + d));
                in_group = true;
            }
            None => {
                in_group = false;
                if c.is_ascii_alphabetic() && !chains.last().expect("a chain").1.is_empty() {
                    chains.push((at, vec![]));
                }
            }
        }
    }
    for (start, groups) in &chains {
        for first in 0..groups.len() {
            let mut joined = String::new();
            for group in &groups[first..] {
                joined.push_str(group);
                if joined.len() > 19 {
                    break;
                }
                if pans.contains(&joined) {
                    let context: String = text[*start..].chars().take(60).collect();
                    found.push(format!("{joined} in {context:?}"));
                }
            }
        }
    }
    found
}

/// One transaction as the payments API sends it, made from the recorded response
/// (`shared/fixtures/current-transactions.json`): change its values or column names, then take
/// its `body()`.
#[derive(Clone)]
pub struct ApiRow {
    columns: Vec<String>,
    row: Vec<serde_json::Value>,
}

/// 2020-06-21T23:30:00Z: late in the evening (UTC, the spec's time zone), when the sample's
/// frauds happen. A fixed time, so predictions do not depend on when the tests run.
pub const EVENING_MS: i64 = 1_592_782_200_000;

impl ApiRow {
    /// The recorded row, with trans_num `trans_num` and the time [`EVENING_MS`].
    pub fn recorded(trans_num: &str) -> Self {
        let fixture: String = serde_json::from_str(
            &std::fs::read_to_string(shared().join("fixtures/current-transactions.json"))
                .expect("fixture"),
        )
        .expect("the fixture is a JSON string");
        let doc: serde_json::Value = serde_json::from_str(&fixture).expect("split document");
        let columns = doc["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column name").to_string())
            .collect();
        let row = doc["data"][0].as_array().expect("a data row").clone();
        ApiRow { columns, row }
            .set("trans_num", trans_num.into())
            .set("current_time", EVENING_MS.into())
    }

    fn position(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// The row with column `name` set to `value`.
    pub fn set(mut self, name: &str, value: serde_json::Value) -> Self {
        let i = self.position(name);
        self.row[i] = value;
        self
    }

    /// The row with column `from` named `to`.
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        let i = self.position(from);
        self.columns[i] = to.to_string();
        self
    }

    /// The response body, a JSON string holding the split document (as the real API sends).
    pub fn body(&self) -> String {
        let doc = serde_json::json!({"columns": self.columns, "index": [0], "data": [self.row]});
        serde_json::Value::String(doc.to_string()).to_string()
    }
}
