//! Synthetic transactions in the data set's shape, with the fraud patterns of the Sparkov data:
//! frauds cluster at night, in online shopping, grocery and misc categories, with large amounts
//! (and small "test" charges at gas stations); legitimate payments follow the day.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// (category, weight of legit payments, median legit amount, weight among frauds, median fraud amount)
const CATEGORIES: [(&str, f64, f64, f64, f64); 14] = [
    ("gas_transport", 10.0, 60.0, 6.0, 12.0),
    ("grocery_pos", 9.5, 100.0, 18.0, 310.0),
    ("home", 9.0, 50.0, 2.0, 250.0),
    ("shopping_pos", 8.5, 60.0, 9.0, 870.0),
    ("kids_pets", 8.5, 45.0, 2.0, 20.0),
    ("shopping_net", 7.5, 50.0, 22.0, 1000.0),
    ("entertainment", 7.0, 50.0, 3.0, 500.0),
    ("food_dining", 7.0, 40.0, 2.0, 120.0),
    ("personal_care", 7.0, 30.0, 3.0, 25.0),
    ("health_fitness", 6.5, 50.0, 2.0, 20.0),
    ("misc_pos", 6.0, 40.0, 3.0, 200.0),
    ("misc_net", 5.0, 40.0, 12.0, 800.0),
    ("grocery_net", 3.5, 50.0, 2.0, 12.0),
    ("travel", 3.0, 90.0, 2.0, 9.0),
];

/// (city, state, zip, lat, long, population)
const CITIES: [(&str, &str, u32, f64, f64, u64); 16] = [
    ("Pembroke", "NC", 28372, 34.6902, -79.1834, 14783),
    ("Moravian Falls", "NC", 28654, 36.0788, -81.1781, 3495),
    ("Orient", "WA", 99160, 48.8878, -118.2105, 149),
    ("Malad City", "ID", 83252, 42.1808, -112.262, 4154),
    ("Boulder", "MT", 59632, 46.2306, -112.1138, 1939),
    ("Houston", "TX", 77002, 29.7567, -95.3637, 2_147_000),
    ("Brooklyn", "NY", 11201, 40.6947, -73.9903, 2_504_700),
    ("Saint Louis", "MO", 63101, 38.6315, -90.1923, 319_294),
    ("Phoenix", "AZ", 85004, 33.4516, -112.0701, 1_445_632),
    ("Burlington", "VT", 5401, 44.4771, -73.2114, 42_417),
    ("Fort Washakie", "WY", 82514, 43.0048, -108.8964, 1645),
    ("Altonah", "UT", 84002, 40.4024, -110.4452, 302),
    ("Sutherland", "VA", 23885, 37.1925, -77.5693, 1793),
    ("Grenada", "CA", 96038, 41.6125, -122.5258, 589),
    ("Miami", "FL", 33131, 25.7617, -80.1918, 442_241),
    ("Chicago", "IL", 60601, 41.8858, -87.6181, 2_695_598),
];

const FIRST: [&str; 12] = [
    "Jennifer",
    "Stephanie",
    "Edward",
    "Jeremy",
    "Tyler",
    "Scott",
    "Mary",
    "Linda",
    "James",
    "Robert",
    "Susan",
    "Daniel",
];
const LAST: [&str; 12] = [
    "Banks", "Gill", "Sanchez", "White", "Garcia", "Edwards", "Smith", "Johnson", "Brown",
    "Miller", "Davis", "Wilson",
];
const JOBS: [&str; 10] = [
    "Psychologist, counselling",
    "Special educational needs teacher",
    "Nature conservation officer",
    "Patent attorney",
    "Dance movement psychotherapist",
    "Hospital doctor",
    "Film/video editor",
    "Exhibition designer",
    "Surveyor, land/geomatics",
    "Systems developer",
];
const STREETS: [&str; 6] = [
    "Perry Cove",
    "Riley Greens Suite 393",
    "Amy Street Suite 107",
    "Ware Ridge",
    "Garcia Park",
    "Lake Drive",
];

struct Card {
    cc_num: u64,
    first: &'static str,
    last: &'static str,
    gender: &'static str,
    street: String,
    city: usize,
    job: &'static str,
    dob: NaiveDate,
}

pub struct Generator {
    rng: SmallRng,
    cards: Vec<Card>,
    merchants: Vec<(String, usize)>,
    fraud_rate: f64,
    clock: NaiveDateTime,
}

impl Generator {
    pub fn new(seed: u64, fraud_rate: f64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let cards = (0..500)
            .map(|i| Card {
                cc_num: luhn_number(&mut rng, if i % 10 == 0 { 19 } else { 16 }),
                first: FIRST.choose(&mut rng).copied().unwrap_or("Alex"),
                last: LAST.choose(&mut rng).copied().unwrap_or("Doe"),
                gender: if rng.gen_bool(0.5) { "F" } else { "M" },
                street: format!(
                    "{} {}",
                    rng.gen_range(1..99999),
                    STREETS.choose(&mut rng).copied().unwrap_or("Main Street")
                ),
                city: rng.gen_range(0..CITIES.len()),
                job: JOBS.choose(&mut rng).copied().unwrap_or("Engineer"),
                dob: NaiveDate::from_ymd_opt(
                    rng.gen_range(1935..2004),
                    rng.gen_range(1..=12),
                    rng.gen_range(1..=28),
                )
                .expect("valid date"),
            })
            .collect();
        let merchants = (0..300)
            .map(|i| {
                let (a, b, c) = (LAST[i % 12], LAST[(i / 12) % 12], LAST[(i * 7 + 3) % 12]);
                (format!("fraud_{a}, {b} and {c}"), i % CATEGORIES.len())
            })
            .collect();
        let clock = NaiveDate::from_ymd_opt(2020, 6, 21)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid time");
        Generator {
            rng,
            cards,
            merchants,
            fraud_rate: fraud_rate.clamp(0.0, 1.0),
            clock,
        }
    }

    /// The next transaction as an API row (API_COLUMNS order).
    pub fn next(&mut self) -> Vec<Value> {
        let rng = &mut self.rng;
        let fraud = rng.gen_bool(self.fraud_rate);
        let weights: Vec<f64> = CATEGORIES
            .iter()
            .map(|c| if fraud { c.3 } else { c.1 })
            .collect();
        let category = weighted(rng, &weights);
        let (name, _, legit_median, _, fraud_median) = CATEGORIES[category];
        let median = if fraud { fraud_median } else { legit_median };
        let amt =
            (median * (normal(rng) * if fraud { 0.35 } else { 0.9 }).exp()).clamp(1.0, 25_000.0);
        let hour = if fraud && rng.gen_bool(0.8) {
            [22, 23, 0, 1, 2, 3][rng.gen_range(0..6)]
        } else {
            rng.gen_range(7..23)
        };
        self.clock += Duration::seconds(rng.gen_range(20..90));
        let time = self
            .clock
            .date()
            .and_hms_opt(hour, rng.gen_range(0..60), rng.gen_range(0..60))
            .expect("valid time");
        let card = &self.cards[rng.gen_range(0..self.cards.len())];
        let merchants: Vec<&(String, usize)> =
            self.merchants.iter().filter(|m| m.1 == category).collect();
        let merchant = &merchants[rng.gen_range(0..merchants.len())].0;
        let (city, state, zip, lat, long, pop) = CITIES[card.city];
        let trans_num: String = (0..32)
            .map(|_| char::from_digit(rng.gen_range(0..16), 16).expect("hex digit"))
            .collect();
        vec![
            Value::from(card.cc_num),
            Value::from(merchant.as_str()),
            Value::from(name),
            Value::from((amt * 100.0).round() / 100.0),
            Value::from(card.first),
            Value::from(card.last),
            Value::from(card.gender),
            Value::from(card.street.as_str()),
            Value::from(city),
            Value::from(state),
            Value::from(zip),
            Value::from(lat),
            Value::from(long),
            Value::from(pop),
            Value::from(card.job),
            Value::from(card.dob.to_string()),
            Value::from(trans_num),
            Value::from(round6(lat + rng.gen_range(-1.0..1.0))),
            Value::from(round6(long + rng.gen_range(-1.0..1.0))),
            Value::from(u8::from(fraud)),
            Value::from(time.and_utc().timestamp_millis()),
        ]
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn weighted(rng: &mut SmallRng, weights: &[f64]) -> usize {
    let mut pick = rng.gen_range(0.0..weights.iter().sum::<f64>());
    for (i, w) in weights.iter().enumerate() {
        if pick < *w {
            return i;
        }
        pick -= w;
    }
    weights.len() - 1
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A Luhn-valid card number of `len` digits starting with 4.
fn luhn_number(rng: &mut SmallRng, len: usize) -> u64 {
    let mut digits: Vec<u32> = std::iter::once(4)
        .chain((1..len - 1).map(|_| rng.gen_range(0..10)))
        .collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits.iter().fold(0u64, |n, d| n * 10 + u64::from(*d))
}
