//! The cards' history for the `card_history` features (docs/feature-spec.md): every payment of
//! each card of a batch that was known when the batch was captured (the batch's own payments and
//! the earlier ones loaded in `payments_scored`), in time order, with running sums, so that each
//! feature is a few binary searches.
//!
//! Point in time: a payment's history is its card's payments strictly before its own time; a
//! payment at the same millisecond is not in it. Nothing here depends on the order in which
//! payments arrive: the same known payments give the same features, bit for bit.
//!
//! Memory: 40 bytes a payment of the batch and a loaded payment of its cards in the 30 days
//! before each of its payments (two flat arrays, sorted by card and time, and their running
//! sums), 24 more for a spec whose features read the payments' merchants or categories; plus,
//! while the database is read, the batch's cards and times (40 bytes a payment), the time
//! windows read (48 bytes each, about one a card) and trans_nums (8 bytes each).
//!
//! This file is the algorithm; `loaded.rs` reads the loaded payments from PostgreSQL.

#[cfg(feature = "services")]
mod loaded;

use std::collections::HashMap;

use super::geo::haversine_km;
use super::spec::HistoryFeature;
use crate::transaction::Transaction;

#[cfg(feature = "services")]
pub use loaded::fetch_known;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// How far back the history goes: every feature reads at most the last 30 days.
pub const HORIZON_MS: i64 = 30 * DAY_MS;

/// A card: the first 128 bits of its `cc_hash`, as two 64-bit halves (ordered as the 128-bit
/// number; aligned to 8 bytes, not 16, so that a [`Payment`] is 40 bytes, not 48). The hash is
/// an HMAC-SHA256, so two cards share a prefix with a probability of about 2^-128 a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Card(u64, u64);

impl Card {
    /// The card's bucket in an index of `2^bits` buckets: its leading bits.
    fn bucket(self, bits: u32) -> usize {
        if bits == 0 {
            0
        } else {
            (self.0 >> (64 - bits)) as usize
        }
    }
}

/// The card of a `cc_hash` (64 hex digits), `None` for anything else.
fn card_of(cc_hash: &str) -> Option<Card> {
    if cc_hash.len() != 64 || !cc_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let half = |range: std::ops::Range<usize>| u64::from_str_radix(&cc_hash[range], 16).ok();
    Some(Card(half(0..16)?, half(16..32)?))
}

/// What the history keeps of every payment: 40 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Payment {
    card: Card,
    time_ms: i64,
    /// When it was captured (epoch ms): a payment is in the history of those captured no
    /// earlier.
    captured_ms: i64,
    /// The amount in whole cents.
    cents: i32,
    /// Where its [`Detail`] is, in a history that keeps them.
    detail: u32,
}

/// What only some features read of a payment (the previous merchant's distance, the
/// categories): kept, 24 bytes a payment more, when the spec reads one of them.
#[derive(Debug, Clone, Copy)]
struct Detail {
    merch_lat: f64,
    merch_long: f64,
    category: u32,
}

/// Payments as they are collected, in any order, and their details (none when the history
/// keeps none).
#[derive(Default)]
struct Part {
    payments: Vec<Payment>,
    details: Vec<Detail>,
}

impl Part {
    fn with_capacity(payments: usize, details: bool) -> Self {
        Part {
            payments: Vec::with_capacity(payments),
            details: Vec::with_capacity(if details { payments } else { 0 }),
        }
    }

    fn push(
        &mut self,
        card: Card,
        time_ms: i64,
        captured_ms: i64,
        cents: i64,
        detail: Option<Detail>,
    ) {
        let index = self.details.len() as u32;
        self.details.extend(detail);
        self.payments.push(Payment {
            card,
            time_ms,
            captured_ms,
            cents: i32::try_from(cents).expect("amounts are validated under 10^6"),
            detail: index,
        });
    }
}

/// Collects a batch's payments (first pass over `raw.jsonl`), then the loaded ones of its
/// cards ([`fetch_known`]), then [`Builder::finish`] orders them.
pub struct Builder {
    batch: Part,
    known: Part,
    /// Whether the payments' details are kept (the spec reads them).
    details: bool,
    /// The batch's cards, in full (what the database query asks for), and their payments' times.
    cards: Vec<([u8; 32], i64)>,
    /// The batch's trans_nums (64 bits of their de-duplication keys): a loaded row with one of
    /// them is the same payment, counted once, from the batch.
    trans_nums: Vec<u64>,
    categories: HashMap<String, u32>,
    /// The earliest and latest capture of the batch's payments (epoch ms).
    captured: Option<(i64, i64)>,
    /// The capture of a payment that does not say its own: the batch's (`raw.jsonl`'s header).
    batch_captured_ms: i64,
}

impl Builder {
    /// A builder for a batch of about `records` payments captured at `batch_captured_ms` (each
    /// payment's own capture time, where it has one, instead), keeping their details if
    /// `details` ([`crate::transform::FeatureSpec::history_reads_details`]).
    pub fn with_capacity(records: usize, details: bool, batch_captured_ms: i64) -> Self {
        Builder {
            batch: Part::with_capacity(records, details),
            known: Part::default(),
            details,
            cards: Vec::with_capacity(records),
            trans_nums: Vec::with_capacity(records),
            categories: HashMap::new(),
            captured: None,
            batch_captured_ms,
        }
    }

    /// A payment of the batch, read by [`BatchEntry::of`] (on any thread).
    pub fn add(&mut self, entry: BatchEntry) {
        self.cards.push((entry.full, entry.time_ms));
        self.trans_nums.push(entry.trans_num);
        let c = entry.captured_ms.unwrap_or(self.batch_captured_ms);
        self.captured = Some(
            self.captured
                .map_or((c, c), |(lo, hi)| (lo.min(c), hi.max(c))),
        );
        let detail = entry
            .detail
            .map(|(lat, long, category)| self.detail(lat, long, &category));
        self.batch
            .push(entry.card, entry.time_ms, c, entry.cents, detail);
    }

    fn detail(&mut self, merch_lat: f64, merch_long: f64, category: &str) -> Detail {
        let next = self.categories.len() as u32;
        let category = match self.categories.get(category) {
            Some(&id) => id,
            None => *self.categories.entry(category.to_string()).or_insert(next),
        };
        Detail {
            merch_lat,
            merch_long,
            category,
        }
    }

    /// Orders the batch and the loaded payments by card and time and sums their amounts.
    pub fn finish(self) -> CardHistory {
        let Builder {
            batch,
            known,
            details,
            cards,
            trans_nums,
            categories,
            captured,
            batch_captured_ms,
        } = self;
        drop((cards, trans_nums));
        CardHistory {
            batch: Timeline::new(batch),
            known: Timeline::new(known),
            categories,
            details,
            captured_together: captured.is_none_or(|(lo, hi)| lo == hi),
            batch_captured_ms,
        }
    }
}

/// What the history takes of a payment of the batch, read where the record was parsed.
pub struct BatchEntry {
    full: [u8; 32],
    trans_num: u64,
    card: Card,
    time_ms: i64,
    /// Its own capture time, if it has one.
    captured_ms: Option<i64>,
    cents: i64,
    /// The merchant's place and the category, for a history that keeps them.
    detail: Option<(f64, f64, String)>,
}

impl BatchEntry {
    /// `None` for a transaction whose `cc_hash` is not fraudctl's (its card has no history).
    pub fn of(tx: &Transaction, details: bool) -> Option<Self> {
        let card = card_of(&tx.cc_hash)?;
        let mut full = [0u8; 32];
        hex::decode_to_slice(&tx.cc_hash, &mut full).ok()?;
        Some(BatchEntry {
            full,
            trans_num: trans_num_key(&tx.trans_num),
            card,
            time_ms: tx.trans_time_ms,
            captured_ms: tx.captured_at_ms,
            cents: tx.amt_cents(),
            detail: details.then(|| (tx.merch_lat, tx.merch_long, tx.category.clone())),
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
    /// The payments' details (empty when the history keeps none), in the order collected.
    details: Vec<Detail>,
    /// `cents_before[i]`: the sum of the amounts of `payments[..i]`.
    cents_before: Vec<i64>,
    /// `buckets[b]..buckets[b + 1]`: the payments whose card's leading bits are `b`.
    buckets: Vec<u32>,
    /// How many leading bits of a card make its bucket.
    bits: u32,
}

impl Timeline {
    fn new(part: Part) -> Self {
        let Part {
            mut payments,
            mut details,
        } = part;
        details.shrink_to_fit();
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
        let mut buckets = vec![0u32; (1 << bits) + 1];
        for p in &payments {
            buckets[p.card.bucket(bits) + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        Timeline {
            payments,
            details,
            cents_before,
            buckets,
            bits,
        }
    }

    /// `card`'s payments strictly before `t`.
    fn before(&self, card: Card, t: i64) -> Before<'_> {
        let b = card.bucket(self.bits);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let bucket = &self.payments[lo..hi];
        let start = lo + bucket.partition_point(|p| p.card < card);
        let end = lo + bucket.partition_point(|p| (p.card, p.time_ms) < (card, t));
        Before {
            payments: &self.payments[start..end],
            cents_before: &self.cents_before[start..=end],
            details: &self.details,
        }
    }
}

/// One card's payments before a time, in one timeline.
struct Before<'a> {
    payments: &'a [Payment],
    /// The running sums from the first of them on (one more than `payments`).
    cents_before: &'a [i64],
    /// The timeline's details.
    details: &'a [Detail],
}

impl<'a> Before<'a> {
    /// The payments from `since` on: how many, their amounts in cents, and the slice.
    fn since(&self, since: i64) -> (u32, i64, &[Payment]) {
        let first = self.payments.partition_point(|p| p.time_ms < since);
        let cents = self.cents_before[self.payments.len()] - self.cents_before[first];
        let slice = &self.payments[first..];
        (slice.len() as u32, cents, slice)
    }

    /// The details of `payments`, from the same timeline.
    fn details(&self, payments: &'a [Payment]) -> impl Iterator<Item = &'a Detail> + 'a {
        let details = self.details;
        payments.iter().map(move |p| &details[p.detail as usize])
    }

    /// These payments as a payment captured at `captured` knew them: those from `since` on
    /// that were captured no later (a copy in `own` when some were captured later; else these
    /// as they are).
    fn known_by<'o>(self, captured: i64, since: i64, own: &'o mut Known) -> Before<'o>
    where
        'a: 'o,
    {
        let (_, _, window) = self.since(since);
        if window.iter().all(|q| q.captured_ms <= captured) {
            return self;
        }
        own.payments.clear();
        own.payments
            .extend(window.iter().filter(|q| q.captured_ms <= captured));
        own.cents_before.clear();
        own.cents_before.push(0);
        let mut total = 0;
        for q in &own.payments {
            total += i64::from(q.cents);
            own.cents_before.push(total);
        }
        Before {
            payments: &own.payments,
            cents_before: &own.cents_before,
            details: self.details,
        }
    }
}

/// The payments a payment's capture knew of, where some of its card's were captured after it:
/// a copy, with its running sums ([`Before::known_by`]).
#[derive(Default)]
struct Known {
    payments: Vec<Payment>,
    cents_before: Vec<i64>,
}

/// Every known payment of each card of a batch, by card and time.
pub struct CardHistory {
    /// The batch's own payments.
    batch: Timeline,
    /// The loaded payments of the batch's cards, captured before it.
    known: Timeline,
    categories: HashMap<String, u32>,
    /// Whether the timelines keep the payments' details.
    details: bool,
    /// Whether every payment of the batch was captured at once (a file, a CSV, a run of
    /// `raw.jsonl` from before capture times per payment): then none was captured after
    /// another, nor after a loaded one (which were captured before), and no history needs a
    /// payment's capture time.
    captured_together: bool,
    /// The capture time of a payment that does not say its own.
    batch_captured_ms: i64,
}

/// What the features of one payment read from its history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recent {
    /// Payments in the last hour, 24 hours, 7 days and 30 days.
    counts: [u32; 4],
    /// Their amounts, in whole cents.
    cents: [i64; 4],
    /// Milliseconds since the previous payment.
    prev_ms: Option<i64>,
    /// The distance from its merchant (of several at that millisecond, the nearest).
    prev_km: Option<f64>,
    categories_24h: u32,
    /// Whether a payment of the last 30 days had this payment's category.
    category_seen: bool,
    amount_cents: i64,
}

const WINDOWS_MS: [i64; 4] = [HOUR_MS, DAY_MS, 7 * DAY_MS, HORIZON_MS];

impl CardHistory {
    /// The history of `tx` (a payment of the batch the history was built for): its card's
    /// payments before it, from the batch and from the database, taken together, that were
    /// captured no later than it was (what was known when it was captured: a payment captured
    /// later, even if it happened earlier, is not in its history).
    pub fn recent(&self, tx: &Transaction) -> Recent {
        let mut recent = Recent {
            amount_cents: tx.amt_cents(),
            ..Recent::default()
        };
        let Some(card) = card_of(&tx.cc_hash) else {
            return recent;
        };
        let t = tx.trans_time_ms;
        let (batch, known) = (self.batch.before(card, t), self.known.before(card, t));
        let (mut own_batch, mut own_known) = (Known::default(), Known::default());
        let parts = if self.captured_together {
            [batch, known]
        } else {
            let captured = tx.captured_at_ms.unwrap_or(self.batch_captured_ms);
            let since = t - HORIZON_MS;
            [
                batch.known_by(captured, since, &mut own_batch),
                known.known_by(captured, since, &mut own_known),
            ]
        };
        for (i, window) in WINDOWS_MS.into_iter().enumerate() {
            for part in &parts {
                let (count, cents, _) = part.since(t - window);
                recent.counts[i] += count;
                recent.cents[i] += cents;
            }
        }
        let month = parts.each_ref().map(|p| p.since(t - HORIZON_MS).2);
        let latest = month
            .iter()
            .filter_map(|m| m.last())
            .map(|q| q.time_ms)
            .max();
        recent.prev_ms = latest.map(|latest| t - latest);
        if self.details {
            self.read_details(tx, &parts, &mut recent);
        }
        recent
    }

    /// The features of `recent` that read the details of the payments before `tx`.
    fn read_details(&self, tx: &Transaction, parts: &[Before; 2], recent: &mut Recent) {
        let t = tx.trans_time_ms;
        let month = parts.each_ref().map(|p| (p, p.since(t - HORIZON_MS).2));
        if let Some(ms) = recent.prev_ms {
            let km = month
                .iter()
                .flat_map(|(part, m)| {
                    let at_latest = m.iter().rev().take_while(|q| q.time_ms == t - ms).count();
                    part.details(&m[m.len() - at_latest..])
                })
                .map(|d| haversine_km(d.merch_lat, d.merch_long, tx.merch_lat, tx.merch_long))
                .fold(f64::INFINITY, f64::min);
            recent.prev_km = Some(km);
        }
        let day = parts.each_ref().map(|p| (p, p.since(t - DAY_MS).2));
        recent.categories_24h = distinct(
            day.iter()
                .flat_map(|(part, d)| part.details(d).map(|d| d.category)),
        );
        let category = self.categories.get(&tx.category);
        recent.category_seen = month
            .iter()
            .flat_map(|(part, m)| part.details(m))
            .any(|d| Some(&d.category) == category);
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
        let prev_ms = self.prev_ms.map(|ms| ms as f64);
        let prev_km = self.prev_km;
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

impl Builder {
    /// A loaded payment captured no later than the batch's latest (its merchant and category:
    /// `detail`), kept unless the batch holds the same trans_num (the batch's copy counts;
    /// `trans_nums` sorted first). Whether it was kept.
    fn known<'r>(
        &mut self,
        card: Card,
        trans_num: &str,
        (time_ms, captured_ms): (i64, i64),
        cents: i64,
        detail: impl FnOnce() -> (f64, f64, &'r str),
    ) -> bool {
        let key = trans_num_key(trans_num);
        if self.trans_nums.binary_search(&key).is_ok() {
            return false;
        }
        let detail = self.details.then(|| {
            let (lat, long, category) = detail();
            self.detail(lat, long, category)
        });
        self.known.push(card, time_ms, captured_ms, cents, detail);
        true
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

    fn builder(batch: &[Transaction], details: bool) -> Builder {
        let mut b = Builder::with_capacity(batch.len(), details, T);
        batch
            .iter()
            .for_each(|tx| b.add(BatchEntry::of(tx, details).unwrap()));
        b
    }

    fn history(batch: &[Transaction]) -> CardHistory {
        builder(batch, true).finish()
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

    /// A payment's history is what was known when it was captured: a payment of its card
    /// captured after it (a late arrival in the same batch, or a loaded one) is not in it, even
    /// if it happened before; the same payments batched otherwise give the same features.
    #[test]
    fn a_payment_captured_later_is_not_in_the_history_of_one_captured_before() {
        let captured = |mut tx: Transaction, at: i64| {
            tx.captured_at_ms = Some(at);
            tx
        };
        let batch = [
            captured(tx(CARD, "early", T - HOUR_MS, 10.0, "c1"), T - HOUR_MS),
            captured(tx(CARD, "p", T, 50.0, "c1"), T),
            // Happened before p, captured after it.
            captured(tx(CARD, "late", T - 60_000, 20.0, "c2"), T + 500),
            captured(tx(CARD, "after", T + 1_000, 30.0, "c1"), T + 1_000),
        ];
        let h = history(&batch);
        let p = h.recent(&batch[1]);
        assert_eq!(p.value(HistoryFeature::CardCount1h), 1.0, "only `early`");
        assert_eq!(p.value(HistoryFeature::CardSecsSincePrev), 3600.0);
        let after = h.recent(&batch[3]);
        assert_eq!(
            after.value(HistoryFeature::CardCount24h),
            3.0,
            "early, p and late"
        );
        assert_eq!(after.value(HistoryFeature::CardCategories24h), 2.0);
        // The first two as one batch loaded before, the last two as the next: the same.
        let mut b = builder(&batch[2..], true);
        b.trans_nums.sort_unstable();
        let card = card_of(&batch[0].cc_hash).unwrap();
        for tx in &batch[..2] {
            let at = (tx.trans_time_ms, tx.captured_at_ms.unwrap());
            assert!(b.known(card, &tx.trans_num, at, tx.amt_cents(), || (1.0, 2.0, "c1")));
        }
        let split = b.finish();
        for tx in &batch[2..] {
            assert_eq!(split.recent(tx), h.recent(tx), "{}", tx.trans_num);
        }
    }

    #[test]
    fn loaded_payments_count_once_and_other_cards_never() {
        let batch = [
            tx(CARD, "p", T, 50.0, "c1"),
            tx("4111111111111111", "o", T - 1, 9.0, "c1"),
        ];
        let mut b = builder(&batch, true);
        let card = card_of(&batch[0].cc_hash).unwrap();
        b.trans_nums.sort_unstable();
        let detail = || (1.0, 2.0, "c9");
        assert!(b.known(card, "q", (T - HOUR_MS, T - HOUR_MS), 700, detail));
        // The batch's own payment, loaded before: counted once, from the batch.
        assert!(!b.known(card, "p", (T - 5, T - 5), 700, detail));
        let r = b.finish().recent(&batch[0]);
        assert_eq!(r.value(HistoryFeature::CardCount24h), 1.0);
        assert_eq!(r.value(HistoryFeature::CardAmtSum1h), 7.0);
        assert_eq!(r.value(HistoryFeature::CardNewCategory30d), 1.0);
    }

    #[test]
    fn a_history_without_details_gives_the_same_counts_sums_and_times() {
        // Three cards, payments seconds to days apart over 40 days, half of them loaded before
        // the batch.
        let cards = ["4497913965512794052", "4111111111111111", "30263540414123"];
        let (mut batch, mut loaded) = (Vec::new(), Vec::new());
        for i in 0..300i64 {
            let time = T - (i * 7_919_993) % (40 * DAY_MS) / 1000 * 1000;
            let payment = tx(
                cards[i as usize % 3],
                &format!("t{i}"),
                time,
                (i % 97) as f64 + 0.25,
                "c",
            );
            if i % 2 == 0 {
                batch.push(payment)
            } else {
                loaded.push(payment)
            }
        }
        let histories = [true, false].map(|details| {
            let mut b = builder(&batch, details);
            b.trans_nums.sort_unstable();
            for tx in &loaded {
                let card = card_of(&tx.cc_hash).unwrap();
                let detail = || (tx.merch_lat, tx.merch_long, tx.category.as_str());
                b.known(
                    card,
                    &tx.trans_num,
                    (tx.trans_time_ms, tx.trans_time_ms),
                    tx.amt_cents(),
                    detail,
                );
            }
            b.finish()
        });
        let plain = HistoryFeature::ALL
            .into_iter()
            .filter(|f| !f.reads_details());
        let mut with_history = 0;
        for tx in &batch {
            let [full, slim] = histories.each_ref().map(|h| h.recent(tx));
            for feature in plain.clone() {
                let (a, b) = (full.value(feature), slim.value(feature));
                assert!(
                    a == b || a.is_nan() && b.is_nan(),
                    "{feature:?}: {a} and {b}"
                );
            }
            if full.value(HistoryFeature::CardCount30d) > 1.0 {
                with_history += 1;
                assert!(full.value(HistoryFeature::CardKmFromPrev).is_finite());
            }
        }
        // Not a comparison of empty histories: most payments have several before them.
        assert!(
            with_history > batch.len() / 2,
            "{with_history} of {}",
            batch.len()
        );
    }
}
