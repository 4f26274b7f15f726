//! The payments API's columns: their names in order, and a column's position found when
//! compiling.

/// The 21 columns of the payments API, in order.
pub const API_COLUMNS: [&str; 21] = [
    "cc_num",
    "merchant",
    "category",
    "amt",
    "first",
    "last",
    "gender",
    "street",
    "city",
    "state",
    "zip",
    "lat",
    "long",
    "city_pop",
    "job",
    "dob",
    "trans_num",
    "merch_lat",
    "merch_long",
    "is_fraud",
    "current_time",
];

/// The position of a column in [`API_COLUMNS`]; in a constant, a name that is not one of them
/// does not compile.
pub const fn api_column(name: &str) -> usize {
    let mut i = 0;
    while i < API_COLUMNS.len() {
        if same_bytes(API_COLUMNS[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("not a payments-API column")
}

const fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
