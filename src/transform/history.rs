//! The cards' history for the `card_history` features (docs/feature-spec.md): every payment of
//! each card of a batch that was known when the batch was captured (the batch's own payments and
//! the earlier ones loaded in `payments_scored`), in time order, with running sums, so that each
//! feature is a few binary searches.
//!
//! Point in time: a payment's history is its card's payments strictly before its own time; a
//! payment at the same millisecond is not in it. Nothing here depends on the order in which
//! payments arrive: the same known payments give the same features, bit for bit.
//!
//! Memory: 48 bytes a payment of the batch and a loaded payment of its cards in the batch's time
//! span (two flat arrays, sorted by card and time), plus, while the database is read, the
//! batch's distinct cards (32 bytes each) and trans_nums (8 bytes each).

use std::collections::HashMap;

use super::features::haversine_km;
use super::spec::HistoryFeature;
use crate::transaction::Transaction;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// How far back the history goes: every feature reads at most the last 30 days.
pub const HORIZON_MS: i64 = 30 * DAY_MS;

/// A card: the first 128 bits of its `cc_hash`. The hash is an HMAC-SHA256, so two cards share
/// a prefix with a probability of about 2^-128 a pair.
type Card = u128;

/// The card of a `cc_hash` (64 hex digits), `None` for anything else.
fn card_of(cc_hash: &str) -> Option<Card> {
    if cc_hash.len() != 64 || !cc_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&cc_hash[..32], 16).ok()
}

/// What the history keeps of a payment.
#[derive(Debug, Clone, Copy)]
pub struct Payment {
    card: Card,
    time_ms: i64,
    merch_lat: f64,
    merch_long: f64,
    /// The amount in whole cents.
    cents: i32,
    category: u32,
}

/// Collects a batch's payments (first pass over `raw.jsonl`), then the loaded ones of its
/// cards ([`fetch_known`]), then [`Builder::finish`] orders them.
pub struct Builder {
    batch: Vec<Payment>,
    /// The batch's cards, in full (what the database query asks for).
    cards: Vec<[u8; 32]>,
    /// The batch's trans_nums (64 bits of their de-duplication keys): a loaded row with one of
    /// them is the same payment, counted once, from the batch.
    trans_nums: Vec<u64>,
    categories: HashMap<String, u32>,
    /// The batch's time span, `min..=max`.
    span: Option<(i64, i64)>,
}

impl Builder {
    /// A builder for a batch of about `records` payments.
    pub fn with_capacity(records: usize) -> Self {
        Builder {
            batch: Vec::with_capacity(records),
            cards: Vec::with_capacity(records),
            trans_nums: Vec::with_capacity(records),
            categories: HashMap::new(),
            span: None,
        }
    }

    /// A payment of the batch, read by [`BatchEntry::of`] (on any thread).
    pub fn add(&mut self, entry: BatchEntry) {
        let BatchEntry {
            full,
            trans_num,
            category,
            mut payment,
        } = entry;
        self.cards.push(full);
        self.trans_nums.push(trans_num);
        let t = payment.time_ms;
        self.span = Some(self.span.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
        payment.category = self.category_id(&category);
        self.batch.push(payment);
    }

    fn category_id(&mut self, category: &str) -> u32 {
        let next = self.categories.len() as u32;
        match self.categories.get(category) {
            Some(&id) => id,
            None => *self.categories.entry(category.to_string()).or_insert(next),
        }
    }

    fn payment(
        &mut self,
        card: Card,
        time_ms: i64,
        cents: i64,
        lat: f64,
        long: f64,
        category: &str,
    ) -> Payment {
        Payment {
            card,
            time_ms,
            merch_lat: lat,
            merch_long: long,
            cents: i32::try_from(cents).expect("amounts are validated under 10^6"),
            category: self.category_id(category),
        }
    }

    /// Orders the batch and the loaded payments by card and time and sums their amounts.
    pub fn finish(self, known: Vec<Payment>) -> CardHistory {
        CardHistory {
            batch: Timeline::new(self.batch),
            known: Timeline::new(known),
            categories: self.categories,
        }
    }
}

/// What the history takes of a payment of the batch, read where the record was parsed.
pub struct BatchEntry {
    full: [u8; 32],
    trans_num: u64,
    category: String,
    payment: Payment,
}

impl BatchEntry {
    /// `None` for a transaction whose `cc_hash` is not fraudctl's (its card has no history).
    pub fn of(tx: &Transaction) -> Option<Self> {
        let card = card_of(&tx.cc_hash)?;
        let mut full = [0u8; 32];
        hex::decode_to_slice(&tx.cc_hash, &mut full).ok()?;
        Some(BatchEntry {
            full,
            trans_num: trans_num_key(&tx.trans_num),
            category: tx.category.clone(),
            payment: Payment {
                card,
                time_ms: tx.trans_time_ms,
                merch_lat: tx.merch_lat,
                merch_long: tx.merch_long,
                cents: i32::try_from(tx.amt_cents()).expect("amounts are validated under 10^6"),
                category: 0,
            },
        })
    }
}

/// The 64 bits of a trans_num's de-duplication key that the history compares.
fn trans_num_key(trans_num: &str) -> u64 {
    crate::extract::trans_num_key(trans_num) as u64
}

/// Payments sorted by card and time, with the running sum of their amounts, and an index by
/// the cards' leading bits (cards are hash values, spread evenly: a bucket holds about one
/// card), so that finding a card's payments costs no search over the whole array.
struct Timeline {
    payments: Vec<Payment>,
    /// `cents_before[i]`: the sum of the amounts of `payments[..i]`.
    cents_before: Vec<i64>,
    /// `buckets[b]..buckets[b + 1]`: the payments whose card's leading bits are `b`.
    buckets: Vec<u32>,
    /// A card's bucket is `card >> shift`.
    shift: u32,
}

impl Timeline {
    fn new(mut payments: Vec<Payment>) -> Self {
        payments.sort_unstable_by_key(|p| (p.card, p.time_ms));
        payments.shrink_to_fit();
        let mut cents_before = Vec::with_capacity(payments.len() + 1);
        cents_before.push(0);
        let mut total = 0;
        for p in &payments {
            total += i64::from(p.cents);
            cents_before.push(total);
        }
        let bits = payments.len().next_power_of_two().trailing_zeros();
        let shift = 128 - bits;
        let bucket = |card: Card| {
            if bits == 0 {
                0
            } else {
                (card >> shift) as usize
            }
        };
        let mut buckets = vec![0u32; (1 << bits) + 1];
        for p in &payments {
            buckets[bucket(p.card) + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        Timeline {
            payments,
            cents_before,
            buckets,
            shift,
        }
    }

    /// `card`'s payments strictly before `t`.
    fn before(&self, card: Card, t: i64) -> Before<'_> {
        let b = if self.shift == 128 {
            0
        } else {
            (card >> self.shift) as usize
        };
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let bucket = &self.payments[lo..hi];
        let start = lo + bucket.partition_point(|p| p.card < card);
        let end = lo + bucket.partition_point(|p| (p.card, p.time_ms) < (card, t));
        Before {
            payments: &self.payments[start..end],
            cents_before: &self.cents_before[start..=end],
        }
    }
}

/// One card's payments before a time, in one timeline.
struct Before<'a> {
    payments: &'a [Payment],
    /// The running sums from the first of them on (one more than `payments`).
    cents_before: &'a [i64],
}

impl Before<'_> {
    /// The payments from `since` on: how many, their amounts in cents, and the slice.
    fn since(&self, since: i64) -> (u32, i64, &[Payment]) {
        let first = self.payments.partition_point(|p| p.time_ms < since);
        let cents = self.cents_before[self.payments.len()] - self.cents_before[first];
        let slice = &self.payments[first..];
        (slice.len() as u32, cents, slice)
    }
}

/// Every known payment of each card of a batch, by card and time.
pub struct CardHistory {
    /// The batch's own payments.
    batch: Timeline,
    /// The loaded payments of the batch's cards, captured before it.
    known: Timeline,
    categories: HashMap<String, u32>,
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
    /// The history of `tx` (a payment of the batch the history was built for): its card's
    /// payments before it, from the batch and from the database, taken together.
    pub fn recent(&self, tx: &Transaction) -> Recent {
        let mut recent = Recent {
            amount_cents: tx.amt_cents(),
            ..Recent::default()
        };
        let Some(card) = card_of(&tx.cc_hash) else {
            return recent;
        };
        let t = tx.trans_time_ms;
        let parts = [&self.batch, &self.known].map(|timeline| timeline.before(card, t));
        for (i, window) in WINDOWS_MS.into_iter().enumerate() {
            for part in &parts {
                let (count, cents, _) = part.since(t - window);
                recent.counts[i] += count;
                recent.cents[i] += cents;
            }
        }
        let month = parts.each_ref().map(|p| p.since(t - HORIZON_MS).2);
        if let Some(latest) = month
            .iter()
            .filter_map(|m| m.last())
            .map(|q| q.time_ms)
            .max()
        {
            // The latest payment; of several at that millisecond, the nearest merchant.
            let km = month
                .iter()
                .flat_map(|m| m.iter().rev().take_while(|q| q.time_ms == latest))
                .map(|q| haversine_km(q.merch_lat, q.merch_long, tx.merch_lat, tx.merch_long))
                .fold(f64::INFINITY, f64::min);
            recent.prev = Some((t - latest, km));
        }
        let day = parts.each_ref().map(|p| p.since(t - DAY_MS).2);
        recent.categories_24h = distinct(day.iter().flat_map(|d| d.iter().map(|q| q.category)));
        let category = self.categories.get(&tx.category);
        recent.category_seen = month
            .iter()
            .flat_map(|m| m.iter())
            .any(|q| Some(&q.category) == category);
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

/// Cards per query when reading their loaded payments.
#[cfg(feature = "services")]
const CARDS_PER_QUERY: usize = 5_000;

impl Builder {
    /// A payment loaded before the batch was captured, `None` when the batch holds the same
    /// trans_num (the batch's copy counts; `trans_nums` sorted first).
    #[allow(clippy::too_many_arguments)]
    fn known(
        &mut self,
        card: Card,
        trans_num: &str,
        time_ms: i64,
        cents: i64,
        merch_lat: f64,
        merch_long: f64,
        category: &str,
    ) -> Option<Payment> {
        if self
            .trans_nums
            .binary_search(&trans_num_key(trans_num))
            .is_ok()
        {
            return None;
        }
        Some(self.payment(card, time_ms, cents, merch_lat, merch_long, category))
    }
}

/// Reads from `payments_scored` the payments of the batch's cards that its history needs: in
/// its time span (from 30 days before its first payment to its last), and captured before the
/// batch (`captured_at`, the batch's own capture time). A few queries for any batch (cards in
/// bulk, never a query per payment), results streamed.
#[cfg(feature = "services")]
pub fn fetch_known(
    client: &mut postgres::Client,
    builder: &mut Builder,
    captured_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<Payment>> {
    use anyhow::Context;
    use postgres::fallible_iterator::FallibleIterator;

    let Some((first, last)) = builder.span else {
        return Ok(Vec::new());
    };
    let time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("validated times");
    let (from, to) = (time(first - HORIZON_MS), time(last));
    let statement = client
        .prepare(include_str!("sql/card_history.sql"))
        .context("preparing the card-history query (has `fraudctl migrate` run?)")?;
    let mut cards = std::mem::take(&mut builder.cards);
    cards.sort_unstable();
    cards.dedup();
    builder.trans_nums.sort_unstable();
    // Room for as many loaded payments as the batch has (a million-record batch of cards with
    // a day of history each: no reallocation, whose copy would briefly double the array).
    let mut known = Vec::with_capacity(builder.batch.len());
    for chunk in cards.chunks(CARDS_PER_QUERY) {
        let hashes: Vec<String> = chunk.iter().map(hex::encode).collect();
        let params: [&(dyn postgres::types::ToSql + Sync); 4] = [&hashes, &from, &to, &captured_at];
        let mut rows = client
            .query_raw(&statement, params)
            .context("reading the cards' history from payments_scored")?;
        while let Some(row) = rows.next().context("reading the cards' history")? {
            let Some(card) = card_of(row.get(0)) else {
                continue;
            };
            let time: chrono::DateTime<chrono::Utc> = row.get(2);
            let payment = builder.known(
                card,
                row.get(1),
                time.timestamp_millis(),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
            );
            known.extend(payment);
        }
    }
    Ok(known)
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
        let mut b = Builder::with_capacity(batch.len());
        batch
            .iter()
            .for_each(|tx| b.add(BatchEntry::of(tx).unwrap()));
        b.finish(Vec::new())
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
        let mut b = Builder::with_capacity(2);
        batch
            .iter()
            .for_each(|tx| b.add(BatchEntry::of(tx).unwrap()));
        let card = card_of(&batch[0].cc_hash).unwrap();
        b.trans_nums.sort_unstable();
        let known = [
            b.known(card, "q", T - HOUR_MS, 700, 1.0, 2.0, "c9"),
            // The batch's own payment, loaded before: counted once, from the batch.
            b.known(card, "p", T - 5, 700, 1.0, 2.0, "c9"),
        ];
        let known = known.into_iter().flatten().collect();
        let r = b.finish(known).recent(&batch[0]);
        assert_eq!(r.value(HistoryFeature::CardCount24h), 1.0);
        assert_eq!(r.value(HistoryFeature::CardAmtSum1h), 7.0);
        assert_eq!(r.value(HistoryFeature::CardNewCategory30d), 1.0);
    }
}
