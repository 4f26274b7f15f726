//! The synthetic generator's statistics: fitted from a sample of the data set by
//! `scripts/fit_generator.py` (which documents each one and how it is fitted) and embedded in
//! the binary from `params.json`, so that a build without the sample still serves payments
//! that look like the data set's. Read once, checked, and turned into ready-to-draw tables.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use rand::Rng;
use serde::Deserialize;

const EMBEDDED: &str = include_str!("params.json");
const SCHEMA: &str = "fraudctl.generator_params";
const VERSION: u32 = 1;
/// Every customer's profile: age band and gender.
const PROFILES: [&str; 6] = [
    "young_F", "young_M", "adult_F", "adult_M", "senior_F", "senior_M",
];

/// `params.json` as written by the fitting script.
#[derive(Debug, Deserialize)]
struct File {
    schema: String,
    version: u32,
    /// Profile → weights of 1, 2, 3, … payments.
    legit_day_payments: BTreeMap<String, Vec<f64>>,
    burst_frauds: Vec<f64>,
    age_bands: AgeBands,
    legit: KindFile,
    fraud: KindFile,
    customers: CustomersFile,
    merchants: BTreeMap<String, Vec<String>>,
    merchant_radius_degrees: f64,
}

#[derive(Debug, Deserialize)]
struct AgeBands {
    young_below: f64,
    adult_below: f64,
}

#[derive(Debug, Deserialize)]
struct KindFile {
    /// Profile ("adult_F") → category → weight.
    categories: BTreeMap<String, BTreeMap<String, f64>>,
    /// Category → share of its payments in the afternoon (12-23 h).
    pm_share: BTreeMap<String, f64>,
    hour_weights: Vec<f64>,
    /// Category → age band ("young", "adult", "senior", or "all") → amount quantiles.
    amounts: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

#[derive(Debug, Deserialize)]
struct CustomersFile {
    female_share: f64,
    youngest: u32,
    ages: BTreeMap<String, Vec<f64>>,
    cities: Vec<City>,
    card_numbers: Vec<(String, usize, f64)>,
    first_names: BTreeMap<String, Vec<String>>,
    last_names: Vec<String>,
    street_suffixes: Vec<String>,
    jobs: Vec<String>,
}

/// A home city (a JSON array in this order): the cards of the sample living there weight it.
#[derive(Debug, Clone, Deserialize)]
pub struct City {
    pub name: String,
    pub state: String,
    pub zip: u32,
    pub lat: f64,
    pub long: f64,
    pub population: u64,
    cards: f64,
}

/// Items drawn with a probability proportional to their weight.
#[derive(Debug)]
pub struct Weighted<T> {
    items: Vec<T>,
    cumulative: Vec<f64>,
}

impl<T> Weighted<T> {
    fn new(what: &str, pairs: impl IntoIterator<Item = (T, f64)>) -> Result<Self> {
        let (mut items, mut cumulative, mut total) = (Vec::new(), Vec::new(), 0.0);
        for (item, weight) in pairs {
            ensure!(
                weight.is_finite() && weight >= 0.0,
                "{what}: weight {weight} is not a non-negative number"
            );
            total += weight;
            items.push(item);
            cumulative.push(total);
        }
        ensure!(total > 0.0, "{what}: no positive weight");
        Ok(Weighted { items, cumulative })
    }

    pub fn draw(&self, rng: &mut impl Rng) -> &T {
        let total = self.cumulative[self.cumulative.len() - 1];
        let x = rng.gen_range(0.0..total);
        let i = self.cumulative.partition_point(|&c| c <= x);
        &self.items[i.min(self.items.len() - 1)]
    }
}

/// A distribution of positive amounts given by evenly spaced quantiles (minimum … maximum),
/// drawn by interpolating between two of them in log scale: amounts are skewed, and the last
/// interval (from a high quantile to the largest amount) would otherwise hold as many very
/// large amounts as moderately large ones.
#[derive(Debug)]
pub struct Quantiles(Vec<f64>);

impl Quantiles {
    fn new(what: &str, values: Vec<f64>) -> Result<Self> {
        ensure!(values.len() >= 2, "{what}: fewer than two quantiles");
        ensure!(
            values.windows(2).all(|w| w[0] <= w[1])
                && values.iter().all(|v| v.is_finite() && *v > 0.0),
            "{what}: quantiles are not increasing positive numbers"
        );
        Ok(Quantiles(values.iter().map(|v| v.ln()).collect()))
    }

    pub fn draw(&self, rng: &mut impl Rng) -> f64 {
        let logs = &self.0;
        let position = rng.gen_range(0.0..1.0) * (logs.len() - 1) as f64;
        let i = position as usize;
        (logs[i] + (logs[i + 1] - logs[i]) * position.fract()).exp()
    }
}

/// The payments of one kind (legitimate or fraudulent).
#[derive(Debug)]
pub struct Kind {
    /// Profile → category.
    pub categories: BTreeMap<String, Weighted<String>>,
    pub pm_share: BTreeMap<String, f64>,
    /// Hours 0-11 and hours 12-23.
    pub morning_hours: Weighted<u32>,
    pub afternoon_hours: Weighted<u32>,
    /// (category, age band) → amount; band "all" where the sample had too few of the band.
    amounts: BTreeMap<(String, String), Quantiles>,
}

impl Kind {
    pub fn amount(&self, category: &str, band: &str) -> &Quantiles {
        let key = |b: &str| (category.to_string(), b.to_string());
        self.amounts
            .get(&key(band))
            .or_else(|| self.amounts.get(&key("all")))
            .expect("every category has amounts for all bands (checked when loaded)")
    }
}

/// Who holds the cards.
#[derive(Debug)]
pub struct Customers {
    pub female_share: f64,
    /// Gender ("F", "M") → age in whole years.
    pub ages: BTreeMap<String, Weighted<u32>>,
    pub cities: Weighted<City>,
    /// (first two digits, number of digits).
    pub card_numbers: Weighted<(String, usize)>,
    pub first_names: BTreeMap<String, Vec<String>>,
    pub last_names: Vec<String>,
    pub street_suffixes: Vec<String>,
    pub jobs: Vec<String>,
}

/// Everything the generator draws from.
#[derive(Debug)]
pub struct Params {
    /// Profile → payments of a card's legitimate day (1, 2, …); their mean over customers.
    pub legit_day_payments: BTreeMap<String, Weighted<usize>>,
    pub mean_day_payments: f64,
    /// Frauds of a compromised card's burst (1, 2, …), and their mean.
    pub burst_frauds: Weighted<usize>,
    pub mean_burst_frauds: f64,
    age_bands: AgeBands,
    pub legit: Kind,
    pub fraud: Kind,
    pub customers: Customers,
    pub merchants: BTreeMap<String, Vec<String>>,
    pub merchant_radius_degrees: f64,
}

impl Params {
    /// The parameters embedded in the binary.
    pub fn embedded() -> Result<Self> {
        Self::parse(EMBEDDED).context("the generator's embedded src/simulator/params.json")
    }

    fn parse(text: &str) -> Result<Self> {
        let file: File = serde_json::from_str(text)?;
        if file.schema != SCHEMA || file.version != VERSION {
            bail!(
                "it is {} version {}, this fraudctl reads {SCHEMA} version {VERSION}: re-run scripts/fit_generator.py",
                file.schema,
                file.version
            );
        }
        ensure!(
            (0.0..=1.0).contains(&file.customers.female_share),
            "customers.female_share is not a share"
        );
        ensure!(
            file.merchant_radius_degrees > 0.0 && file.merchant_radius_degrees <= 10.0,
            "merchant_radius_degrees is not between 0 and 10"
        );
        let mean_day_payments = mean_day_payments(&file)?;
        let legit_day_payments = file
            .legit_day_payments
            .into_iter()
            .map(|(profile, weights)| {
                let what = format!("legit_day_payments.{profile}");
                Ok((profile, counts(&what, weights)?))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let legit = kind("legit", file.legit)?;
        let fraud = kind("fraud", file.fraud)?;
        for profile in PROFILES {
            ensure!(
                legit_day_payments.contains_key(profile)
                    && legit.categories.contains_key(profile)
                    && fraud.categories.contains_key(profile),
                "profile {profile} is missing from legit_day_payments or a kind's categories"
            );
        }
        for category in legit.pm_share.keys().chain(fraud.pm_share.keys()) {
            ensure!(
                file.merchants.get(category).is_some_and(|m| !m.is_empty()),
                "no merchants for category {category}"
            );
        }
        Ok(Params {
            legit_day_payments,
            mean_day_payments,
            mean_burst_frauds: mean_count(&file.burst_frauds),
            burst_frauds: counts("burst_frauds", file.burst_frauds)?,
            age_bands: file.age_bands,
            legit,
            fraud,
            customers: customers(file.customers)?,
            merchants: file.merchants,
            merchant_radius_degrees: file.merchant_radius_degrees,
        })
    }

    /// The profile of a customer: its key in the tables ("adult_F") and its age band.
    pub fn profile(&self, age_years: f64, gender: &str) -> (String, &'static str) {
        let band = band(&self.age_bands, age_years);
        (format!("{band}_{gender}"), band)
    }
}

/// The age band of an age: "young", "adult" or "senior".
fn band(bands: &AgeBands, age_years: f64) -> &'static str {
    if age_years < bands.young_below {
        "young"
    } else if age_years < bands.adult_below {
        "adult"
    } else {
        "senior"
    }
}

/// The mean payments of a legitimate day over the customers (their genders and ages).
fn mean_day_payments(file: &File) -> Result<f64> {
    let people = &file.customers;
    let mut mean = 0.0;
    for (gender, share) in [("F", people.female_share), ("M", 1.0 - people.female_share)] {
        let ages = people
            .ages
            .get(gender)
            .context("customers.ages: a gender is missing")?;
        let total: f64 = ages.iter().sum();
        for (years, weight) in (people.youngest..).zip(ages) {
            let band = band(&file.age_bands, f64::from(years));
            let profile = format!("{band}_{gender}");
            let day = file
                .legit_day_payments
                .get(&profile)
                .with_context(|| format!("legit_day_payments: no profile {profile}"))?;
            mean += share * weight / total * mean_count(day);
        }
    }
    Ok(mean)
}

/// The mean count of weights of 1, 2, 3, …
fn mean_count(weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().sum();
    let sum: f64 = (1..).zip(weights).map(|(n, w)| f64::from(n) * w).sum();
    sum / total
}

/// Weights of 1, 2, 3, … as a distribution of counts.
fn counts(what: &str, weights: Vec<f64>) -> Result<Weighted<usize>> {
    Weighted::new(
        what,
        weights.into_iter().enumerate().map(|(i, w)| (i + 1, w)),
    )
}

fn kind(name: &str, file: KindFile) -> Result<Kind> {
    ensure!(
        file.hour_weights.len() == 24,
        "{name}.hour_weights: not 24 hours"
    );
    let hours = |range: std::ops::Range<u32>| {
        Weighted::new(
            &format!("{name}.hour_weights {range:?}"),
            range.map(|h| (h, file.hour_weights[h as usize])),
        )
    };
    for (profile, weights) in &file.categories {
        for (category, _) in weights.iter().filter(|(_, w)| **w > 0.0) {
            ensure!(
                file.pm_share.contains_key(category),
                "{name}.categories.{profile}: {category} has no pm_share"
            );
        }
    }
    let categories = file
        .categories
        .into_iter()
        .map(|(profile, weights)| {
            let table = Weighted::new(&format!("{name}.categories.{profile}"), weights)?;
            Ok((profile, table))
        })
        .collect::<Result<_>>()?;
    let mut amounts = BTreeMap::new();
    for (category, bands) in file.amounts {
        ensure!(
            bands.contains_key("all"),
            "{name}.amounts.{category}: no \"all\" band"
        );
        for (band, values) in bands {
            let what = format!("{name}.amounts.{category}.{band}");
            amounts.insert((category.clone(), band), Quantiles::new(&what, values)?);
        }
    }
    for (category, share) in &file.pm_share {
        ensure!(
            (0.0..=1.0).contains(share),
            "{name}.pm_share.{category}: not a share"
        );
        ensure!(
            amounts.contains_key(&(category.clone(), "all".to_string())),
            "{name}: no amounts for {category}"
        );
    }
    Ok(Kind {
        categories,
        pm_share: file.pm_share,
        morning_hours: hours(0..12)?,
        afternoon_hours: hours(12..24)?,
        amounts,
    })
}

fn customers(file: CustomersFile) -> Result<Customers> {
    let youngest = file.youngest;
    let ages = file
        .ages
        .into_iter()
        .map(|(gender, weights)| {
            let years = (youngest..).zip(weights);
            Ok((
                gender.clone(),
                Weighted::new(&format!("customers.ages.{gender}"), years)?,
            ))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    for gender in ["F", "M"] {
        ensure!(ages.contains_key(gender), "customers.ages: no {gender}");
        ensure!(
            file.first_names.get(gender).is_some_and(|n| !n.is_empty()),
            "customers.first_names: no {gender}"
        );
    }
    for (what, list) in [
        ("last_names", &file.last_names),
        ("street_suffixes", &file.street_suffixes),
        ("jobs", &file.jobs),
    ] {
        ensure!(!list.is_empty(), "customers.{what} is empty");
    }
    let numbers = file
        .card_numbers
        .into_iter()
        .map(|(prefix, digits, weight)| ((prefix, digits), weight));
    let card_numbers = Weighted::new("customers.card_numbers", numbers)?;
    ensure!(
        card_numbers
            .items
            .iter()
            .all(|(prefix, digits)| (11..=19).contains(digits)
                && prefix.len() < *digits
                && prefix.bytes().all(|b| b.is_ascii_digit())),
        "customers.card_numbers: a prefix is not digits, or a length is not 11-19"
    );
    Ok(Customers {
        female_share: file.female_share,
        ages,
        cities: Weighted::new(
            "customers.cities",
            file.cities.into_iter().map(|c| {
                let weight = c.cards;
                (c, weight)
            }),
        )?,
        card_numbers,
        first_names: file.first_names,
        last_names: file.last_names,
        street_suffixes: file.street_suffixes,
        jobs: file.jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_embedded_parameters_load() {
        let params = Params::embedded().unwrap();
        let (day, burst) = (params.mean_day_payments, params.mean_burst_frauds);
        assert!((2.0..6.0).contains(&day), "{day}");
        assert!((5.0..15.0).contains(&burst), "{burst}");
    }

    #[test]
    fn draws_follow_the_weights_and_quantiles() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let w = Weighted::new("w", [("a", 1.0), ("never", 0.0), ("b", 3.0)]).unwrap();
        let b = (0..10_000).filter(|_| *w.draw(&mut rng) == "b").count();
        assert!((7_200..7_800).contains(&b), "{b}");
        assert!((0..1000).all(|_| *w.draw(&mut rng) != "never"));
        let q = Quantiles::new("q", vec![10.0, 20.0, 100.0]).unwrap();
        let draws: Vec<f64> = (0..10_000).map(|_| q.draw(&mut rng)).collect();
        let below = |x: f64| draws.iter().filter(|&&d| d < x).count();
        assert!((4_700..5_300).contains(&below(20.0)), "{}", below(20.0));
        // In log scale, the geometric mean of 20 and 100 halves the upper interval.
        assert!((7_200..7_800).contains(&below(44.72)), "{}", below(44.72));
        assert!(draws.iter().all(|d| (10.0..=100.0).contains(d)));
    }

    #[test]
    fn a_file_of_another_version_is_refused() {
        let text = EMBEDDED.replacen("\"version\":1", "\"version\":2", 1);
        let err = Params::parse(&text).unwrap_err().to_string();
        assert!(err.contains("re-run scripts/fit_generator.py"), "{err}");
    }
}
