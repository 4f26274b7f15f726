//! The cards' history for the `card_history` features (docs/feature-spec.md): every payment of
//! each card of a batch that was known when the batch was captured (the batch's own payments and
//! the earlier ones loaded in `payments_scored`), in time order, with running sums, so that each
//! feature is a few binary searches.
//!
//! Point in time: a payment's history is its card's payments strictly before its own time; a
//! payment at the same millisecond is not in it. Nothing here depends on the order in which
//! payments arrive: the same known payments give the same features, bit for bit.

use std::collections::{HashMap, HashSet};

use super::features::haversine_km;
use super::spec::HistoryFeature;
use crate::transaction::Transaction;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// How far back the history goes: every feature reads at most the last 30 days.
pub const HORIZON_MS: i64 = 30 * DAY_MS;

/// What the history keeps of a payment.
#[derive(Debug, Clone, Copy)]
struct Payment {
    time_ms: i64,
    merch_lat: f64,
    merch_long: f64,
    /// The amount in whole cents.
    cents: i32,
    category: u32,
    card: u32,
}

/// A card's key: the 32 bytes of its `cc_hash`.
pub type CardKey = [u8; 32];

/// The `cc_hash` of a transaction or a row as a [`CardKey`] (`None`: not 64 hex digits).
pub fn card_key(cc_hash: &str) -> Option<CardKey> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(cc_hash, &mut key).ok()?;
    Some(key)
}

/// Collects the known payments of a batch's cards, then [`Builder::finish`] orders them.
#[derive(Default)]
pub struct Builder {
    cards: HashMap<CardKey, u32>,
    categories: HashMap<String, u32>,
    payments: Vec<Payment>,
    /// The batch's trans_nums (their de-duplication keys): a loaded row with one of them is the
    /// same payment, counted once, from the batch.
    batch: HashSet<u128>,
    /// The batch's time span, `min..=max`.
    span: Option<(i64, i64)>,
}

impl Builder {
    /// A payment of the batch (every valid record of `raw.jsonl`).
    pub fn add_batch(&mut self, tx: &Transaction) {
        let Some(key) = card_key(&tx.cc_hash) else {
            return; // not a fraudctl cc_hash: the card has no history to share
        };
        self.batch
            .insert(crate::extract::trans_num_key(&tx.trans_num));
        self.span = Some(match self.span {
            None => (tx.trans_time_ms, tx.trans_time_ms),
            Some((lo, hi)) => (lo.min(tx.trans_time_ms), hi.max(tx.trans_time_ms)),
        });
        let card = self.card_id(key);
        self.push(
            card,
            tx.trans_time_ms,
            tx.amt_cents(),
            tx.merch_lat,
            tx.merch_long,
            &tx.category,
        );
    }

    /// The cards of the batch so far.
    pub fn cards(&self) -> impl Iterator<Item = &CardKey> {
        self.cards.keys()
    }

    /// The time span of the history the batch needs: from 30 days before its first payment to
    /// its last (excluded); `None` for an empty batch.
    pub fn needed_span(&self) -> Option<(i64, i64)> {
        self.span.map(|(lo, hi)| (lo - HORIZON_MS, hi))
    }

    /// A payment loaded before the batch was captured. Ignored when the batch holds the same
    /// trans_num (counted once, from the batch) or its card is not in the batch.
    #[allow(clippy::too_many_arguments)]
    pub fn add_known(
        &mut self,
        card: &CardKey,
        trans_num: &str,
        time_ms: i64,
        cents: i64,
        merch_lat: f64,
        merch_long: f64,
        category: &str,
    ) {
        let Some(&card) = self.cards.get(card) else {
            return;
        };
        if self
            .batch
            .contains(&crate::extract::trans_num_key(trans_num))
        {
            return;
        }
        self.push(card, time_ms, cents, merch_lat, merch_long, category);
    }

    fn card_id(&mut self, key: CardKey) -> u32 {
        let next = self.cards.len() as u32;
        *self.cards.entry(key).or_insert(next)
    }

    fn push(&mut self, card: u32, time_ms: i64, cents: i64, lat: f64, long: f64, category: &str) {
        let next = self.categories.len() as u32;
        let category = match self.categories.get(category) {
            Some(&id) => id,
            None => *self.categories.entry(category.to_string()).or_insert(next),
        };
        self.payments.push(Payment {
            time_ms,
            merch_lat: lat,
            merch_long: long,
            cents: i32::try_from(cents).expect("amounts are validated under 10^6"),
            category,
            card,
        });
    }

    /// Orders each card's payments by time and sums their amounts.
    pub fn finish(mut self) -> CardHistory {
        self.payments.sort_unstable_by_key(|p| (p.card, p.time_ms));
        let mut ranges = vec![(0u32, 0u32); self.cards.len()];
        let mut cents_before = Vec::with_capacity(self.payments.len() + 1);
        let mut total = 0i64;
        cents_before.push(0);
        for (i, p) in self.payments.iter().enumerate() {
            let range = &mut ranges[p.card as usize];
            if range.1 == 0 {
                range.0 = i as u32;
            }
            range.1 = i as u32 + 1;
            total += i64::from(p.cents);
            cents_before.push(total);
        }
        self.batch = HashSet::new();
        CardHistory {
            cards: self.cards,
            ranges,
            categories: self.categories,
            payments: self.payments,
            cents_before,
        }
    }
}

/// Every known payment of each card of a batch, by card and time.
pub struct CardHistory {
    cards: HashMap<CardKey, u32>,
    /// Each card's payments: `payments[start..end]`.
    ranges: Vec<(u32, u32)>,
    categories: HashMap<String, u32>,
    payments: Vec<Payment>,
    /// `cents_before[i]`: the sum of the amounts of `payments[..i]` (sums over a range are a
    /// difference).
    cents_before: Vec<i64>,
}

/// What the features of one payment read from its history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recent {
    /// Payments in the last hour, 24 hours, 7 days and 30 days.
    counts: [u32; 4],
    /// Their amounts, in whole cents.
    cents: [i64; 4],
    /// Milliseconds since the previous payment, and the distance from its merchant.
    prev: Option<(i64, f64)>,
    categories_24h: u32,
    /// Whether a payment of the last 30 days had this payment's category.
    category_seen: bool,
    amount_cents: i64,
}

const WINDOWS_MS: [i64; 4] = [HOUR_MS, DAY_MS, 7 * DAY_MS, HORIZON_MS];

impl CardHistory {
    /// The history of `tx` (a payment of the batch the history was built for).
    pub fn recent(&self, tx: &Transaction) -> Recent {
        let mut recent = Recent {
            amount_cents: tx.amt_cents(),
            ..Recent::default()
        };
        let Some(&card) = card_key(&tx.cc_hash).and_then(|k| self.cards.get(&k)) else {
            return recent;
        };
        let (start, end) = self.ranges[card as usize];
        let (start, end) = (start as usize, end as usize);
        let card_payments = &self.payments[start..end];
        let t = tx.trans_time_ms;
        let before = card_payments.partition_point(|q| q.time_ms < t);
        let from =
            |window: i64| card_payments[..before].partition_point(|q| q.time_ms < t - window);
        for (i, window) in WINDOWS_MS.into_iter().enumerate() {
            let first = from(window);
            recent.counts[i] = (before - first) as u32;
            recent.cents[i] = self.cents_before[start + before] - self.cents_before[start + first];
        }
        let month = &card_payments[from(HORIZON_MS)..before];
        if let Some(last) = month.last() {
            // The latest payment; of several at that millisecond, the nearest merchant.
            let km = month
                .iter()
                .rev()
                .take_while(|q| q.time_ms == last.time_ms)
                .map(|q| haversine_km(q.merch_lat, q.merch_long, tx.merch_lat, tx.merch_long))
                .fold(f64::INFINITY, f64::min);
            recent.prev = Some((t - last.time_ms, km));
        }
        let day = &card_payments[from(DAY_MS)..before];
        recent.categories_24h = distinct(day.iter().map(|q| q.category));
        let category = self.categories.get(&tx.category);
        recent.category_seen = month.iter().any(|q| Some(&q.category) == category);
        recent
    }
}

/// The number of distinct values (a day's categories: a handful).
fn distinct(values: impl Iterator<Item = u32>) -> u32 {
    let mut seen: Vec<u32> = values.collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len() as u32
}

impl Recent {
    /// The value of one feature (NaN: missing, written `null`), exactly as the spec defines it.
    pub fn value(&self, feature: HistoryFeature) -> f64 {
        use HistoryFeature::*;
        let count = |i: usize| f64::from(self.counts[i]);
        let sum = |i: usize| self.cents[i] as f64 / 100.0;
        let (n, total) = (i64::from(self.counts[3]), self.cents[3]);
        let prev_ms = self.prev.map(|(ms, _)| ms as f64);
        let prev_km = self.prev.map(|(_, km)| km);
        match feature {
            CardCount1h => count(0),
            CardCount24h => count(1),
            CardCount7d => count(2),
            CardCount30d => count(3),
            CardAmtSum1h => sum(0),
            CardAmtSum24h => sum(1),
            CardAmtSum7d => sum(2),
            CardAmtRatio30d if n > 0 => (self.amount_cents * n) as f64 / total as f64,
            CardSecsSincePrev => prev_ms.map_or(f64::NAN, |ms| ms / 1000.0),
            CardKmFromPrev => prev_km.unwrap_or(f64::NAN),
            CardKmhFromPrev => match (prev_km, prev_ms) {
                (Some(km), Some(ms)) => km / (ms / 3_600_000.0),
                _ => f64::NAN,
            },
            CardCategories24h => f64::from(self.categories_24h),
            CardNewCategory30d if n > 0 => f64::from(u8::from(!self.category_seen)),
            CardAmtRatio30d | CardNewCategory30d => f64::NAN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pan::PanProtector;

    fn tx(card: &str, trans_num: &str, time_ms: i64, amt: f64, category: &str) -> Transaction {
        let row = serde_json::json!({
            "cc_num": card, "merchant": "m", "category": category, "amt": amt, "gender": "F",
            "city": "x", "state": "NC", "zip": 28372, "lat": 1.0, "long": 2.0, "city_pop": 10,
            "job": "j", "dob": "1955-11-07", "trans_num": trans_num, "merch_lat": 1.0,
            "merch_long": 2.0, "is_fraud": 0, "current_time": time_ms,
        });
        crate::transaction::validate(
            row.as_object().unwrap(),
            &PanProtector::new(b"0123456789abcdef"),
        )
        .unwrap()
    }

    const T: i64 = 1_600_000_000_000;
    const CARD: &str = "4497913965512794052";

    fn history(batch: &[Transaction]) -> CardHistory {
        let mut b = Builder::default();
        batch.iter().for_each(|tx| b.add_batch(tx));
        b.finish()
    }

    #[test]
    fn windows_include_their_start_and_exclude_the_payment_time() {
        let batch = [
            tx(CARD, "a", T - DAY_MS, 10.0, "c1"), // exactly 24 h before: in
            tx(CARD, "b", T - DAY_MS - 1, 20.0, "c2"), // just over: out of 24 h
            tx(CARD, "c", T, 30.0, "c1"),          // same millisecond: never
            tx(CARD, "d", T - HORIZON_MS - 1, 40.0, "c3"), // beyond 30 days
            tx(CARD, "p", T, 50.0, "c1"),
        ];
        let h = history(&batch);
        let r = h.recent(&batch[4]);
        assert_eq!(r.value(HistoryFeature::CardCount24h), 1.0);
        assert_eq!(r.value(HistoryFeature::CardCount30d), 2.0);
        assert_eq!(r.value(HistoryFeature::CardAmtSum24h), 10.0);
        assert_eq!(
            r.value(HistoryFeature::CardAmtRatio30d),
            (5000.0 * 2.0) / 3000.0
        );
        assert_eq!(r.value(HistoryFeature::CardSecsSincePrev), 86_400.0);
        assert_eq!(r.value(HistoryFeature::CardCategories24h), 1.0);
        assert_eq!(r.value(HistoryFeature::CardNewCategory30d), 0.0);
        // The first payment has no history.
        let first = h.recent(&batch[3]);
        assert_eq!(first.value(HistoryFeature::CardCount30d), 0.0);
        assert!(first.value(HistoryFeature::CardAmtRatio30d).is_nan());
        assert!(first.value(HistoryFeature::CardSecsSincePrev).is_nan());
    }

    #[test]
    fn loaded_payments_count_once_and_other_cards_never() {
        let batch = [
            tx(CARD, "p", T, 50.0, "c1"),
            tx("4111111111111111", "o", T - 1, 9.0, "c1"),
        ];
        let mut b = Builder::default();
        batch.iter().for_each(|tx| b.add_batch(tx));
        let key = card_key(&batch[0].cc_hash).unwrap();
        b.add_known(&key, "q", T - HOUR_MS, 700, 1.0, 2.0, "c9");
        b.add_known(&key, "p", T - 5, 700, 1.0, 2.0, "c9"); // the batch's own payment, loaded before
        b.add_known(&[7; 32], "z", T - 5, 700, 1.0, 2.0, "c9"); // a card not in the batch
        let r = b.finish().recent(&batch[0]);
        assert_eq!(r.value(HistoryFeature::CardCount24h), 1.0);
        assert_eq!(r.value(HistoryFeature::CardAmtSum1h), 7.0);
        assert_eq!(r.value(HistoryFeature::CardNewCategory30d), 1.0);
    }
}

/// Cards per query when reading their loaded payments.
#[cfg(feature = "services")]
const CARDS_PER_QUERY: usize = 5_000;

/// Reads from `payments_scored` the payments of the builder's cards that the batch's history
/// needs: in its time span, and captured before the batch (`captured_at`, the batch's own
/// capture time). Returns how many rows it read. A few queries for any batch (cards in bulk,
/// never a query per payment), results streamed.
#[cfg(feature = "services")]
pub fn fetch_known(
    client: &mut postgres::Client,
    builder: &mut Builder,
    captured_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<u64> {
    use anyhow::Context;
    use postgres::fallible_iterator::FallibleIterator;

    let Some((from_ms, to_ms)) = builder.needed_span() else {
        return Ok(0);
    };
    let time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("validated times");
    let (from, to) = (time(from_ms), time(to_ms));
    let statement = client
        .prepare(include_str!("sql/card_history.sql"))
        .context("preparing the card-history query (has `fraudctl migrate` run?)")?;
    let cards: Vec<String> = builder.cards().map(hex::encode).collect();
    let mut rows_read = 0u64;
    for chunk in cards.chunks(CARDS_PER_QUERY) {
        let params: [&(dyn postgres::types::ToSql + Sync); 4] = [&chunk, &from, &to, &captured_at];
        let mut rows = client
            .query_raw(&statement, params)
            .context("reading the cards' history from payments_scored")?;
        while let Some(row) = rows.next().context("reading the cards' history")? {
            let Some(card) = card_key(row.get(0)) else {
                continue;
            };
            builder.add_known(
                &card,
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
            );
            rows_read += 1;
        }
    }
    Ok(rows_read)
}
