//! The history's payments loaded before the batch: read from `payments_scored`, a few queries
//! for any batch (cards in bulk, never a query per payment), within the time windows the batch's
//! payments need.

use super::{card_of, Builder, Part, HORIZON_MS};

/// Cards per query when reading their loaded payments.
const CARDS_PER_QUERY: usize = 5_000;

/// The time windows a batch's history reads, card by card: `(card, since, until)` in epoch
/// milliseconds, the 30 days before each of the card's payments of the batch, overlapping ones
/// merged. `cards` (each payment's card and time) is sorted first. Bounded by each card's own
/// payments: one payment dated years back reads that card's month then, nobody else's years.
fn windows(cards: &mut [([u8; 32], i64)]) -> Vec<([u8; 32], i64, i64)> {
    cards.sort_unstable();
    let mut windows: Vec<([u8; 32], i64, i64)> = Vec::new();
    for &(card, t) in cards.iter() {
        match windows.last_mut() {
            Some((last, _, until)) if *last == card && t - HORIZON_MS <= *until => *until = t,
            _ => windows.push((card, t - HORIZON_MS, t)),
        }
    }
    windows
}

/// Reads from `payments_scored` the payments of the batch's cards that its history needs: in the
/// 30 days before each of the card's payments ([`windows`]), and captured no later than the
/// batch's latest payment was (`captured_at`). A few queries for any batch (cards in bulk, never
/// a query per payment), results streamed. How many were kept.
pub fn fetch_known(client: &mut postgres::Client, builder: &mut Builder) -> anyhow::Result<u64> {
    use anyhow::Context;
    use postgres::fallible_iterator::FallibleIterator;

    let time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("validated times");
    let statement = client
        .prepare(include_str!("../sql/card_history.sql"))
        .context("preparing the card-history query (has `fraudctl migrate` run?)")?;
    let latest = builder
        .captured
        .map_or(builder.batch_captured_ms, |(_, hi)| hi);
    let captured_at = time(latest);
    let windows = windows(&mut std::mem::take(&mut builder.cards));
    builder.trans_nums.sort_unstable();
    // Room for as many loaded payments as the batch has (a million-record batch of cards with
    // a day of history each: no reallocation, whose copy would briefly double the array).
    builder.known = Part::with_capacity(builder.batch.payments.len(), builder.details);
    let mut kept = 0;
    for chunk in windows.chunks(CARDS_PER_QUERY) {
        let hashes: Vec<String> = chunk.iter().map(|(card, ..)| hex::encode(card)).collect();
        let since: Vec<_> = chunk.iter().map(|&(_, since, _)| time(since)).collect();
        let until: Vec<_> = chunk.iter().map(|&(.., until)| time(until)).collect();
        let params: [&(dyn postgres::types::ToSql + Sync); 4] =
            [&hashes, &since, &until, &captured_at];
        let mut rows = client
            .query_raw(&statement, params)
            .context("reading the cards' history from payments_scored")?;
        while let Some(row) = rows.next().context("reading the cards' history")? {
            let Some(card) = card_of(row.get(0)) else {
                continue;
            };
            let time: chrono::DateTime<chrono::Utc> = row.get(2);
            let captured: chrono::DateTime<chrono::Utc> = row.get(7);
            let detail = || (row.get(4), row.get(5), row.get(6));
            kept += u64::from(builder.known(
                card,
                row.get(1),
                (time.timestamp_millis(), captured.timestamp_millis()),
                row.get(3),
                detail,
            ));
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::history::DAY_MS;

    /// A card's windows cover the 30 days before each of its payments, merged where they
    /// overlap: one payment years back adds that card's month then, not the years between.
    #[test]
    fn history_windows_are_bounded_card_by_card() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let year = 365 * DAY_MS;
        let mut cards = vec![
            (a, 10 * DAY_MS),
            (b, 5),
            (a, 0),
            (a, 20 * year),
            (a, 20 * year - DAY_MS),
        ];
        assert_eq!(
            windows(&mut cards),
            vec![
                (a, -HORIZON_MS, 10 * DAY_MS),
                (a, 20 * year - DAY_MS - HORIZON_MS, 20 * year),
                (b, 5 - HORIZON_MS, 5),
            ]
        );
    }
}
