//! The JSON line of a transaction, written by hand ([`super::Transaction::write_line`]): the
//! fields in order, numbers by serde_json's own formatter, so that the line is what
//! `serde_json::to_writer` would write (a test holds them equal), several times faster.

use chrono::{Datelike, NaiveDate};
use serde_json::ser::{CompactFormatter, Formatter};

use super::Transaction;

impl Transaction {
    /// Appends the transaction's JSON line (with its newline) to `out`: what serde_json writes
    /// for it, byte for byte (`write_line_is_what_serde_json_writes` holds them equal), at a
    /// fraction of the cost (extract writes a million): the keys are written whole, and a string
    /// that needs no escaping is copied.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.reserve(1024);
        let mut line = JsonLine(out);
        line.text(b"{\"trans_num\":", &self.trans_num);
        line.int(b",\"trans_time_ms\":", self.trans_time_ms);
        line.text(b",\"cc_last4\":", &self.cc_last4);
        line.text(b",\"cc_hash\":", &self.cc_hash);
        line.text(b",\"merchant\":", &self.merchant);
        line.text(b",\"category\":", &self.category);
        line.float(b",\"amt\":", self.amt);
        line.text(b",\"gender\":", &self.gender);
        line.text(b",\"city\":", &self.city);
        line.text(b",\"state\":", &self.state);
        line.uint(b",\"zip\":", self.zip.into());
        line.float(b",\"lat\":", self.lat);
        line.float(b",\"long\":", self.long);
        line.uint(b",\"city_pop\":", self.city_pop);
        line.text(b",\"job\":", &self.job);
        line.date(b",\"dob\":", self.dob);
        line.float(b",\"merch_lat\":", self.merch_lat);
        line.float(b",\"merch_long\":", self.merch_long);
        line.put(b",\"is_fraud\":");
        line.put(match self.is_fraud {
            None => b"null",
            Some(true) => b"true",
            Some(false) => b"false",
        });
        if let Some(ms) = self.captured_at_ms {
            line.int(b",\"captured_at_ms\":", ms);
        }
        line.put(b"}\n");
    }
}

/// A JSON line being written ([`Transaction::write_line`]): numbers by serde_json's own
/// formatter, a string that needs escaping by serde_json.
struct JsonLine<'a>(&'a mut Vec<u8>);

impl JsonLine<'_> {
    /// `key` is the key with its separators: `,"name":`.
    fn text(&mut self, key: &[u8], text: &str) {
        self.put(key);
        // Every byte looked at: with no early exit the compiler can vectorise the loop.
        let plain = text.bytes().fold(true, |plain, b| {
            plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
        });
        if plain {
            self.put(b"\"");
            self.put(text.as_bytes());
            self.put(b"\"");
        } else {
            serde_json::to_writer(&mut *self, text).expect("writing to memory");
        }
    }

    fn int(&mut self, key: &[u8], value: i64) {
        self.put(key);
        CompactFormatter
            .write_i64(self, value)
            .expect("writing to memory");
    }

    fn uint(&mut self, key: &[u8], value: u64) {
        self.put(key);
        CompactFormatter
            .write_u64(self, value)
            .expect("writing to memory");
    }

    fn float(&mut self, key: &[u8], value: f64) {
        self.put(key);
        let written = if value.is_finite() {
            CompactFormatter.write_f64(self, value)
        } else {
            CompactFormatter.write_null(self)
        };
        written.expect("writing to memory");
    }

    /// A date as chrono writes it: `"YYYY-MM-DD"` for the years 0 to 9999.
    fn date(&mut self, key: &[u8], date: NaiveDate) {
        self.put(key);
        match u32::try_from(date.year()) {
            Ok(year) if year <= 9999 => {
                self.put(b"\"");
                self.padded(year, 4);
                self.put(b"-");
                self.padded(date.month(), 2);
                self.put(b"-");
                self.padded(date.day(), 2);
                self.put(b"\"");
            }
            _ => serde_json::to_writer(&mut *self, &date).expect("writing to memory"),
        }
    }

    /// `n` in decimal, with leading zeros to `width` digits.
    fn padded(&mut self, n: u32, width: usize) {
        let mut buf = [0u8; 20];
        let digits = decimal_text(n.into(), &mut buf);
        (digits.len()..width).for_each(|_| self.put(b"0"));
        self.put(digits.as_bytes());
    }

    /// Copies `bytes` (inlined: a key's copy is then a few moves, not a call to `memcpy`).
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl std::io::Write for JsonLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.put(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `n` in decimal, written at the end of `buf`.
pub(super) fn decimal_text(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_line` writes what serde_json writes, whatever the strings, numbers and dates hold.
    #[test]
    fn write_line_is_what_serde_json_writes() {
        use rand::{Rng, SeedableRng};
        let texts = [
            "plain",
            "",
            "quote \" in",
            "back\\slash",
            "tab\tand\nnewline",
            "\u{1}\u{1f}",
            "del \u{7f}",
            "é ü ß",
            "emoji 🎉",
            "</script>",
            "fraud_Rippin, Kub and Mann",
        ];
        let dates = [
            (1900, 1, 1),
            (1988, 3, 9),
            (2099, 12, 31),
            (999, 5, 6),
            (1, 1, 1),
            (9999, 12, 31),
            (10000, 1, 1),
            (-5, 7, 8),
        ];
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut text = || texts[rng.gen_range(0..texts.len())].to_string();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(8);
        for i in 0..2000 {
            let mut float = || match rng.gen_range(0..4) {
                0 => rng.gen_range(-180.0..180.0),
                1 => f64::from(rng.gen_range(0..100_000)) / 100.0,
                2 => rng.gen::<f64>() * 10f64.powi(rng.gen_range(-30..30)),
                _ => [0.0, -0.0, 1e21, 1e-7, f64::MAX, f64::NAN, f64::INFINITY][i % 7],
            };
            let (y, m, d) = dates[i % dates.len()];
            let tx = Transaction {
                trans_num: text(),
                trans_time_ms: [0, -1, i64::MAX, i64::MIN, 1_600_000_000_000][i % 5],
                cc_last4: text(),
                cc_hash: text(),
                merchant: text(),
                category: text(),
                amt: float(),
                gender: text(),
                city: text(),
                state: text(),
                zip: [0, 28654, u32::MAX][i % 3],
                lat: float(),
                long: float(),
                city_pop: [0, 3495, u64::MAX][i % 3],
                job: text(),
                dob: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
                merch_lat: float(),
                merch_long: float(),
                is_fraud: [None, Some(true), Some(false)][i % 3],
                captured_at_ms: [None, Some(1_600_000_000_123)][i % 2],
            };
            let mut expected = serde_json::to_vec(&tx).unwrap();
            expected.push(b'\n');
            let mut line = b"before ".to_vec();
            tx.write_line(&mut line);
            assert_eq!(
                String::from_utf8_lossy(&line[7..]),
                String::from_utf8_lossy(&expected),
                "{tx:?}"
            );
        }
    }
}
