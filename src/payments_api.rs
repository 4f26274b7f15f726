//! The payments API's body format: a JSON *string* whose content is a pandas "split" document
//! `{"columns": [...], "index": [...], "data": [[...], ...]}`.

use serde_json::{Map, Value};

/// A decoded body: one entry per data row, each a row (column → value) or the reason the row
/// cannot be read.
pub type Rows = Vec<Result<Map<String, Value>, String>>;

/// Decodes a response body. Accepts the document itself as well as the JSON string wrapping it
/// (what the real API sends). An error is a body that cannot be read at all.
pub fn decode(body: &str) -> Result<Rows, String> {
    let outer: Value = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let doc = match outer {
        Value::String(inner) => serde_json::from_str(&inner)
            .map_err(|e| format!("body string does not hold a JSON document: {e}"))?,
        doc => doc,
    };
    let Value::Object(mut doc) = doc else {
        return Err("document is not a JSON object with columns and data".into());
    };
    let columns: Vec<String> = match doc.remove("columns") {
        Some(Value::Array(cols)) => cols
            .into_iter()
            .map(|c| match c {
                Value::String(s) => Ok(s),
                other => Err(format!("column name {other} is not a string")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("document has no \"columns\" array".into()),
    };
    let Some(Value::Array(data)) = doc.remove("data") else {
        return Err("document has no \"data\" array".into());
    };
    Ok(data
        .into_iter()
        .enumerate()
        .map(|(i, row)| match row {
            Value::Array(values) if values.len() == columns.len() => {
                Ok(columns.iter().cloned().zip(values).collect())
            }
            Value::Array(values) => Err(format!(
                "data row {i} has {} values for {} columns",
                values.len(),
                columns.len()
            )),
            other => Err(format!("data row {i} is not an array: {other}")),
        })
        .collect())
}

/// Encodes rows the way the real API does (a JSON string holding the split document).
pub fn encode(columns: &[&str], index: &[u64], rows: &[Vec<Value>]) -> String {
    let doc = serde_json::json!({ "columns": columns, "index": index, "data": rows });
    Value::String(doc.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_double_encoded_and_plain_documents() {
        let plain = r#"{"columns":["a","b"],"index":[1],"data":[[1,"x"],[2]]}"#;
        let wrapped = Value::String(plain.into()).to_string();
        for body in [plain, wrapped.as_str()] {
            let rows = decode(body).unwrap();
            assert_eq!(rows[0].as_ref().unwrap()["b"], "x");
            assert!(rows[1]
                .as_ref()
                .unwrap_err()
                .contains("1 values for 2 columns"));
        }
        assert!(decode("<html>").unwrap_err().contains("not JSON"));
        assert!(decode("\"{\\\"columns\\\": [\"").is_err());
    }
}
