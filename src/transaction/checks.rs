//! The rules a canonical transaction keeps, whoever made it (extract's validation, a stage
//! file's reader): its identifier, time, amount and texts.

use crate::pan::holds_card_number;

/// Largest amount accepted, in the data set's currency.
pub const MAX_AMOUNT: f64 = 1_000_000.0;

/// Transaction times accepted, in epoch milliseconds: 2000-01-01 to 2100-01-01 (excluded).
pub(super) const TIME_RANGE_MS: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

pub(super) fn time_range_error(ms: i64) -> String {
    format!("current_time {ms} is not epoch milliseconds between 2000 and 2100")
}

/// A trans_num: 1 to 64 letters, digits, '-' or '_', holding no card number ([`holds_card_number`]:
/// it becomes a Message-ID, verdict links and log lines).
pub(super) fn check_identifier(trans_num: &str) -> Result<(), String> {
    if trans_num.is_empty()
        || trans_num.len() > 64
        || !trans_num
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "trans_num {trans_num:?} is not 1-64 letters, digits, '-' or '_'"
        ));
    }
    if holds_card_number(trans_num) {
        return Err(format!(
            "trans_num {trans_num:?} holds a card number: an identifier must not"
        ));
    }
    Ok(())
}

/// An amount: positive, at most [`MAX_AMOUNT`], in whole cents.
pub(super) fn check_amount(amt: f64) -> Result<(), String> {
    if !(amt > 0.0 && amt <= MAX_AMOUNT) {
        return Err(format!(
            "amt {amt} is not between 0 (excluded) and {MAX_AMOUNT}"
        ));
    }
    if ((amt * 100.0).round() - amt * 100.0).abs() > 1e-6 {
        return Err(format!("amt {amt} has more than two decimal places"));
    }
    Ok(())
}

/// Text a payment carries: not blank, at most 200 bytes, and no control character but tab
/// (a NUL cannot be stored; a newline or a carriage return would start a line of an email).
pub fn check_text(name: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() || text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{name} is empty or longer than {MAX_TEXT_BYTES} bytes"
        ));
    }
    match text.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "{name} holds the control character U+{:04X}: not text a payment carries",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// The longest text field, in bytes.
const MAX_TEXT_BYTES: usize = 200;
