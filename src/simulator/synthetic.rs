//! Synthetic payments that behave like the data set's, by following its own generative process
//! (the Sparkov simulator) with statistics fitted from a sample of it ([`super::params`],
//! `scripts/fit_generator.py`).
//!
//! **A payment.** A customer has a gender, an age and a home city (population, coordinates), a
//! job and a card. Their profile (age band and gender) weights the categories they spend in; a
//! payment draws its category, then an amount from that category's distribution (per age band),
//! then the half of the day (Sparkov draws category and half of the day from one random number,
//! so gas stations are paid in the morning and homeware in the afternoon), then an hour within
//! it. The merchant is one of the category's, uniformly within a square of
//! `merchant_radius_degrees` around the home. Frauds have categories, amounts and hours of their
//! own (big online and grocery amounts, at night; small gas-station test charges).
//!
//! **A card lives one simulated day**, beginning without history: either a day of legitimate
//! spending, or, for a compromised card, a burst of frauds (its size from the sample; Sparkov
//! emits no legitimate payment of a card on its fraud days). The number of payments of a day is
//! fitted per profile so that each payment has as many of its card's payments in the 24 hours
//! before it as in the sample, which is what the model reads: 3.5 on average, more than the 2 a
//! calendar day a card makes on the sample's dense days, because a card whose day starts
//! without history must make up for the day before it that a real card would have had. Then the
//! card retires and new cards keep arriving, `cards` a simulated day.
//!
//! **Time.** The generator keeps its own clock and serves the cards' payments in the order of
//! that clock. Two clocks:
//! - [`Generator::new`]: from [`START_MS`], advancing with the payments served, not with the
//!   wall clock (deterministic: same seed, same stream). A simulated day then holds about
//!   `cards` × 3.5 payments, served as fast as they are asked for.
//! - [`Generator::on_wall_clock`]: the simulated clock *is* the wall clock. A payment happens at
//!   its time and is served by the first request after it ([`Generator::next_due`]), so its
//!   stamp is when it happened, its hour the hour it happened at, and its card's history real
//!   hours; the stream's rate is the population's, `cards` × 3.5 a day. The process is the same
//!   as on the generator's own clock, hour by hour, which is what the realism measures hold.
//!   The clock starts a day before the server, so that the population is the steady one from
//!   the first request; the payments of that day before the start are not served (like a
//!   deployment that never saw the day before it: a card's first payments seen lack some
//!   history).
//!
//! Payments wait in the queue as their drawn fields and a shared customer; the API row is built
//! when one is served, so that a day of the wall clock's stream (175,000 payments at the
//! default 50,000 cards) fits in tens of megabytes.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Duration, NaiveDate};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::params::{City, Kind, Params};

/// Where the simulated clock starts: 2020-06-21 00:00 UTC, the first day of the data set's test
/// period (a Sunday).
pub const START_MS: i64 = 1_592_697_600_000;
const DAY_MS: i64 = 86_400_000;

/// The moment in the 24 hours up to `now_ms` (later than `now_ms` − 24 h, not after `now_ms`)
/// with the time of day of `simulated_ms`: how `--time-mode last-day` stamps a synthetic
/// payment. The hour the model reads is the simulated one, every payment can still be alerted
/// (the alert stage's 24-hour rule), and a card's payments, all within one simulated day, keep
/// their order and their 24-hour history, unless the card's day straddles the current time of
/// day: its payments after that time of day are then stamped the day before, earlier than its
/// first ones (a late arrival, which the pipeline handles).
pub fn within_last_day(simulated_ms: i64, now_ms: i64) -> i64 {
    now_ms - (now_ms - simulated_ms).rem_euclid(DAY_MS)
}

/// The payments stream: cards' days beginning at random (a Poisson stream of `cards` a
/// simulated day), their payments queued at their simulated times and served in time order.
pub struct Generator {
    rng: SmallRng,
    /// Boxed: the tables are large, and the simulator keeps the generator beside a CSV cursor.
    params: Box<Params>,
    /// The share of card days that are compromised cards' bursts.
    fraud_day_share: f64,
    /// Mean simulated time between two cards' days beginning.
    card_interval_ms: f64,
    next_card_ms: i64,
    queue: BinaryHeap<Pending>,
    queued: u64,
}

/// A generated payment waiting for its simulated time: what was drawn for it, its row built
/// when it is served.
struct Pending {
    time_ms: i64,
    /// Order of generation: payments at the same millisecond are served in that order.
    sequence: u64,
    customer: Arc<Customer>,
    fraud: bool,
    category: String,
    amt: f64,
    merchant: String,
    merch_lat: f64,
    merch_long: f64,
    trans_num: String,
}

/// Who a card day's payments are for.
struct Customer {
    cc_num: u64,
    first: String,
    last: String,
    gender: &'static str,
    street: String,
    city: City,
    job: String,
    dob: NaiveDate,
    /// Profile key of the parameters ("adult_F") and age band ("adult").
    profile: String,
    band: &'static str,
}

impl Generator {
    /// On the generator's own clock, from [`START_MS`]. `fraud_rate`: the share of payments that
    /// are frauds; `cards`: cards whose day begins in a simulated day (about as many are active
    /// at any time).
    pub fn new(seed: u64, fraud_rate: f64, cards: u32) -> Result<Self> {
        let params = Box::new(Params::embedded()?);
        let fraud_day_share = fraud_day_share(
            fraud_rate,
            params.mean_day_payments,
            params.mean_burst_frauds,
        );
        Ok(Generator {
            rng: SmallRng::seed_from_u64(seed),
            params,
            fraud_day_share,
            card_interval_ms: DAY_MS as f64 / f64::from(cards.max(1)),
            next_card_ms: START_MS,
            queue: BinaryHeap::new(),
            queued: 0,
        })
    }

    /// On the wall clock, `now_ms` being the moment the server starts: the population a day old,
    /// its payments before `now_ms` dropped. See the module's "Time".
    pub fn on_wall_clock(seed: u64, fraud_rate: f64, cards: u32, now_ms: i64) -> Result<Self> {
        let mut generator = Generator::new(seed, fraud_rate, cards)?;
        generator.start_at(now_ms);
        Ok(generator)
    }

    /// Restarts the population a day before `now_ms` and drops what happened before it.
    fn start_at(&mut self, now_ms: i64) {
        self.queue.clear();
        self.next_card_ms = now_ms - DAY_MS;
        self.begin_cards_until(now_ms);
        while self.queue.peek().is_some_and(|p| p.time_ms < now_ms) {
            self.queue.pop();
        }
    }

    fn begin_cards_until(&mut self, now_ms: i64) {
        while self.next_card_ms <= now_ms {
            self.begin_card_day();
        }
    }

    /// The next payment as an API row (API_COLUMNS order), `current_time` its simulated time,
    /// on the generator's own clock: the clock moves on to it.
    pub fn next(&mut self) -> Vec<Value> {
        // A card beginning its day before the earliest queued payment may pay before it.
        while self
            .queue
            .peek()
            .is_none_or(|p| p.time_ms >= self.next_card_ms)
        {
            self.begin_card_day();
        }
        self.queue.pop().expect("a card day was just begun").row()
    }

    /// On the wall clock: the earliest payment that happened by `now_ms` and was not served yet,
    /// if any. After a pause of more than a day between requests, the stream starts afresh as at
    /// the server's start (what happened over a day ago is past alerting anyway).
    pub fn next_due(&mut self, now_ms: i64) -> Option<Vec<Value>> {
        if now_ms - self.next_card_ms > DAY_MS {
            self.start_at(now_ms);
        }
        self.begin_cards_until(now_ms);
        match self.queue.peek() {
            Some(p) if p.time_ms <= now_ms => self.queue.pop().map(|p| p.row()),
            _ => None,
        }
    }

    fn begin_card_day(&mut self) {
        let start_ms = self.next_card_ms;
        let wait = -self.rng.gen_range(f64::EPSILON..1.0).ln() * self.card_interval_ms;
        self.next_card_ms += (wait.round() as i64).max(1);
        let customer = Arc::new(customer(&self.params, &mut self.rng, start_ms));
        let fraud = self.rng.gen_bool(self.fraud_day_share);
        let count = if fraud {
            *self.params.burst_frauds.draw(&mut self.rng)
        } else {
            *self.params.legit_day_payments[&customer.profile].draw(&mut self.rng)
        };
        for _ in 0..count {
            self.queued += 1;
            let pending = payment(
                &self.params,
                &mut self.rng,
                &customer,
                fraud,
                start_ms,
                self.queued,
            );
            self.queue.push(pending);
        }
    }
}

/// The share of card days that must be bursts for frauds to be `fraud_rate` of the payments,
/// given the mean payments of a legitimate day and of a burst.
fn fraud_day_share(fraud_rate: f64, day: f64, burst: f64) -> f64 {
    let rate = fraud_rate.clamp(0.0, 1.0);
    let frauds = rate * day;
    if frauds == 0.0 {
        0.0
    } else {
        frauds / (frauds + (1.0 - rate) * burst)
    }
}

fn customer(params: &Params, rng: &mut SmallRng, start_ms: i64) -> Customer {
    let people = &params.customers;
    let gender = if rng.gen_bool(people.female_share) {
        "F"
    } else {
        "M"
    };
    let age = f64::from(*people.ages[gender].draw(rng)) + rng.gen_range(0.0..1.0);
    let day = DateTime::from_timestamp_millis(start_ms)
        .expect("the simulated clock stays within chrono's range")
        .date_naive();
    let dob = day - Duration::days((age * 365.25) as i64);
    let (prefix, digits) = people.card_numbers.draw(rng);
    let last = pick(rng, &people.last_names).clone();
    let street = format!(
        "{} {} {}",
        rng.gen_range(1..100_000),
        pick(rng, &people.last_names),
        pick(rng, &people.street_suffixes)
    );
    let (profile, band) = params.profile(age, gender);
    Customer {
        cc_num: card_number(rng, prefix, *digits),
        first: pick(rng, &people.first_names[gender]).clone(),
        last,
        gender,
        street,
        city: people.cities.draw(rng).clone(),
        job: pick(rng, &people.jobs).clone(),
        dob,
        profile,
        band,
    }
}

/// One payment of `customer`'s day beginning at `start_ms`, drawn (the `sequence`-th queued).
fn payment(
    params: &Params,
    rng: &mut SmallRng,
    customer: &Arc<Customer>,
    fraud: bool,
    start_ms: i64,
    sequence: u64,
) -> Pending {
    let kind = if fraud { &params.fraud } else { &params.legit };
    let category = kind.categories[&customer.profile].draw(rng).clone();
    let amt = kind.amount(&category, customer.band).draw(rng);
    let time_ms = time_in_day(rng, kind, &category, start_ms);
    let merchant = pick(rng, &params.merchants[&category]).clone();
    let radius = params.merchant_radius_degrees;
    let city = &customer.city;
    let merch_lat = round_to(city.lat + rng.gen_range(-radius..radius), 6);
    let merch_long = round_to(city.long + rng.gen_range(-radius..radius), 6);
    let trans_num: String = (0..32)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).expect("a hex digit"))
        .collect();
    Pending {
        time_ms,
        sequence,
        customer: Arc::clone(customer),
        fraud,
        category,
        amt: round_to(amt, 2),
        merchant,
        merch_lat,
        merch_long,
        trans_num,
    }
}

impl Pending {
    /// The payment as an API row (API_COLUMNS order), `current_time` its simulated time.
    fn row(self) -> Vec<Value> {
        let (customer, city) = (&*self.customer, &self.customer.city);
        vec![
            Value::from(customer.cc_num),
            Value::from(self.merchant),
            Value::from(self.category),
            Value::from(self.amt),
            Value::from(customer.first.as_str()),
            Value::from(customer.last.as_str()),
            Value::from(customer.gender),
            Value::from(customer.street.as_str()),
            Value::from(city.name.as_str()),
            Value::from(city.state.as_str()),
            Value::from(city.zip),
            Value::from(city.lat),
            Value::from(city.long),
            Value::from(city.population),
            Value::from(customer.job.as_str()),
            Value::from(customer.dob.to_string()),
            Value::from(self.trans_num),
            Value::from(self.merch_lat),
            Value::from(self.merch_long),
            Value::from(u8::from(self.fraud)),
            Value::from(self.time_ms),
        ]
    }
}

/// A time in the day beginning at `start_ms`, at a time of day drawn for `category`: the half of
/// the day, an hour within it, any minute and second.
fn time_in_day(rng: &mut SmallRng, kind: &Kind, category: &str, start_ms: i64) -> i64 {
    let afternoon = rng.gen_bool(kind.pm_share[category]);
    let hours = if afternoon {
        &kind.afternoon_hours
    } else {
        &kind.morning_hours
    };
    let seconds = i64::from(*hours.draw(rng)) * 3600 + rng.gen_range(0..3600);
    let into_day = (seconds * 1000 - start_ms).rem_euclid(DAY_MS);
    start_ms + into_day
}

fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    items
        .choose(rng)
        .expect("lists are checked non-empty when loaded")
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// A Luhn-valid card number of `digits` digits starting with `prefix`.
fn card_number(rng: &mut SmallRng, prefix: &str, digits: usize) -> u64 {
    let mut number: Vec<u32> = prefix.chars().filter_map(|c| c.to_digit(10)).collect();
    while number.len() < digits - 1 {
        number.push(rng.gen_range(0..10));
    }
    // Doubling every second digit from the right, the check digit excluded.
    let sum: u32 = number
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 0 { doubled(d) } else { d })
        .sum();
    number.push((10 - sum % 10) % 10);
    number.iter().fold(0u64, |n, &d| n * 10 + u64::from(d))
}

/// A digit doubled, as Luhn's check counts it: the sum of the digits of 2 × `d`.
fn doubled(d: u32) -> u32 {
    let x = d * 2;
    x / 10 + x % 10
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Reversed, so that the queue (a max-heap) serves the earliest payment first.
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time_ms, other.sequence).cmp(&(self.time_ms, self.sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luhn_valid(number: u64) -> bool {
        let digits: Vec<u32> = number
            .to_string()
            .chars()
            .filter_map(|c| c.to_digit(10))
            .collect();
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                if i % 2 == 1 && d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * (1 + (i % 2) as u32)
                }
            })
            .sum();
        sum.is_multiple_of(10)
    }

    #[test]
    fn the_luhn_check_knows_valid_numbers() {
        assert!(luhn_valid(4_111_111_111_111_111) && luhn_valid(79_927_398_713));
        assert!(!luhn_valid(4_111_111_111_111_112));
    }

    #[test]
    fn card_numbers_are_luhn_valid_with_their_prefix_and_length() {
        let mut rng = SmallRng::seed_from_u64(3);
        for (prefix, digits) in [("30", 14), ("4", 16), ("36", 19), ("18", 15), ("50", 11)] {
            for _ in 0..200 {
                let n = card_number(&mut rng, prefix, digits);
                assert_eq!(n.to_string().len(), digits);
                assert!(n.to_string().starts_with(prefix) && luhn_valid(n), "{n}");
            }
        }
    }

    #[test]
    fn the_stream_is_in_simulated_time_order_and_the_same_for_a_seed() {
        let rows = |seed| {
            let mut g = Generator::new(seed, 0.02, 300).unwrap();
            (0..2000).map(|_| g.next()).collect::<Vec<_>>()
        };
        let first = rows(5);
        assert_eq!(first, rows(5));
        assert_ne!(first, rows(6));
        let times: Vec<i64> = first.iter().map(|r| r[20].as_i64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[0] >= START_MS);
    }

    #[test]
    fn frauds_are_the_share_asked_for() {
        for rate in [0.0, 0.02, 0.2, 1.0] {
            let mut g = Generator::new(1, rate, 300).unwrap();
            let n = 20_000;
            let frauds = (0..n).filter(|_| g.next()[19] == 1).count();
            let share = frauds as f64 / n as f64;
            assert!((share - rate).abs() <= 0.01 + rate * 0.2, "{rate}: {share}");
        }
    }

    #[test]
    fn on_the_wall_clock_a_payment_is_served_once_it_happened_at_the_population_s_rate() {
        let start = 1_764_590_400_123; // 2025-12-01 12:00:00.123 UTC
        let cards = 20_000;
        let mut g = Generator::on_wall_clock(3, 0.02, cards, start).unwrap();
        let (mut served, mut asked_before) = (0u32, start);
        for second in 0..3600 {
            let now = start + second * 1000;
            while let Some(row) = g.next_due(now) {
                let time = row[20].as_i64().unwrap();
                assert!(
                    asked_before <= time && time <= now,
                    "{time} served at {now}"
                );
                served += 1;
            }
            asked_before = now;
        }
        // An hour of cards × 3.5 payments a day (fraud days' bursts are larger: a margin).
        let expected = f64::from(cards) * g.params.mean_day_payments / 24.0;
        let ratio = f64::from(served) / expected;
        assert!(
            (0.85..1.25).contains(&ratio),
            "{served} served, {expected:.0} expected"
        );
        // Nothing before the start, and a pause of over a day starts afresh.
        let later = start + 3 * DAY_MS;
        let row = (0..).find_map(|s| g.next_due(later + s * 1000)).unwrap();
        assert!(row[20].as_i64().unwrap() >= later);
    }

    #[test]
    fn a_stamp_keeps_the_time_of_day_within_the_last_day() {
        let now = 1_764_590_400_123; // 2025-12-01 12:00:00.123 UTC
        for simulated in [
            START_MS,
            START_MS + 43_200_000,
            START_MS + 43_200_123,
            now + 5,
        ] {
            let stamp = within_last_day(simulated, now);
            assert!(now - DAY_MS < stamp && stamp <= now, "{simulated}: {stamp}");
            assert_eq!(stamp.rem_euclid(DAY_MS), simulated.rem_euclid(DAY_MS));
        }
    }
}
