//! PostgreSQL's binary COPY format, encoded directly into a buffer (much faster than a
//! per-row `BinaryCopyInWriter` with the sync client).

const EPOCH_2000_MICROS: i64 = 946_684_800_000_000;

pub struct CopyEncoder {
    pub buf: Vec<u8>,
}

impl CopyEncoder {
    /// An encoder for rows in the middle of the stream (no file header).
    pub fn new() -> Self {
        CopyEncoder {
            buf: Vec::with_capacity(1 << 20),
        }
    }

    /// The binary COPY file header, which goes before the first row.
    pub fn header() -> Vec<u8> {
        let mut buf = b"PGCOPY\n\xff\r\n\0".to_vec();
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        buf
    }

    /// The trailer that ends the stream.
    pub fn trailer() -> [u8; 2] {
        (-1i16).to_be_bytes()
    }

    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }
    pub fn int8(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }
    pub fn float8(&mut self, v: f64) {
        self.field(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.field(&[u8::from(v)]);
    }
    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }
    pub fn opt_bool(&mut self, v: Option<bool>) {
        match v {
            Some(v) => self.bool(v),
            None => self.null(),
        }
    }
    /// A jsonb from JSON text (jsonb's binary format: version 1, then the text), or NULL.
    pub fn opt_jsonb(&mut self, json: Option<&str>) {
        let Some(json) = json else {
            return self.null();
        };
        self.buf
            .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
    }
    pub fn opt_float8(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.float8(v),
            None => self.null(),
        }
    }
    pub fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }
    /// A float8[] (one dimension, from 1; `None` elements NULL), or NULL.
    pub fn opt_float8_array(&mut self, values: Option<&[Option<f64>]>) {
        const FLOAT8_OID: i32 = 701;
        let Some(values) = values else {
            return self.null();
        };
        let present = values.iter().flatten().count();
        self.array_header(
            20 + 4 * values.len() + 8 * present,
            FLOAT8_OID,
            values.len(),
            present,
        );
        for value in values {
            match value {
                Some(v) => self.float8(*v),
                None => self.null(),
            }
        }
    }
    /// A text[] (one dimension, from 1), or NULL.
    pub fn opt_text_array(&mut self, values: Option<&[String]>) {
        const TEXT_OID: i32 = 25;
        let Some(values) = values else {
            return self.null();
        };
        let bytes: usize = values.iter().map(String::len).sum();
        self.array_header(
            20 + 4 * values.len() + bytes,
            TEXT_OID,
            values.len(),
            values.len(),
        );
        for value in values {
            self.text(value);
        }
    }
    /// An array field's length and header: one dimension of `n` elements (`present` not NULL)
    /// of type `oid`, from index 1.
    fn array_header(&mut self, len: usize, oid: i32, n: usize, present: usize) {
        self.buf.extend_from_slice(&(len as i32).to_be_bytes());
        let has_null = i32::from(present < n);
        for word in [1, has_null, oid, n as i32, 1] {
            self.buf.extend_from_slice(&word.to_be_bytes());
        }
    }
    /// A timestamptz from epoch milliseconds.
    pub fn timestamptz_ms(&mut self, ms: i64) {
        self.int8(ms * 1000 - EPOCH_2000_MICROS);
    }
    /// A numeric of scale 2 from a count of cents (numeric's binary format: the number of
    /// base-10000 digits, the weight of the first, the sign, the display scale, then the
    /// digits, most significant first, without trailing zero digits).
    pub fn numeric_cents(&mut self, cents: i64) {
        let (whole, fraction) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
        // At most 5 whole digits for an i64 of cents, and the fraction's.
        let mut groups = [0i16; 6];
        let (mut n, mut rest) = (0, whole);
        while rest > 0 {
            groups[n] = (rest % 10_000) as i16;
            (n, rest) = (n + 1, rest / 10_000);
        }
        groups[..n].reverse();
        let weight = if n == 0 && fraction == 0 {
            0
        } else {
            n as i16 - 1
        };
        if fraction > 0 {
            (groups[n], n) = (fraction as i16 * 100, n + 1);
        }
        while n > 0 && groups[n - 1] == 0 {
            n -= 1;
        }
        let digits = &groups[..n];
        let sign: i16 = if cents < 0 { 0x4000 } else { 0 };
        self.buf
            .extend_from_slice(&(8 + 2 * digits.len() as i32).to_be_bytes());
        for v in [digits.len() as i16, weight, sign, 2] {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            self.buf.extend_from_slice(&d.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CopyEncoder;

    /// numeric's binary digits (as numeric_send writes them) for amounts in cents.
    #[test]
    fn numeric_cents_writes_base_10000_digits() {
        let encoded = |cents| {
            let mut e = CopyEncoder::new();
            e.numeric_cents(cents);
            let words: Vec<i16> = e.buf[4..]
                .chunks(2)
                .map(|w| i16::from_be_bytes([w[0], w[1]]))
                .collect();
            assert_eq!(
                i32::from_be_bytes(e.buf[..4].try_into().unwrap()) as usize,
                2 * words.len()
            );
            words
        };
        // [ndigits, weight, sign, dscale, digits...]
        assert_eq!(encoded(0), [0, 0, 0, 2]);
        assert_eq!(encoded(5), [1, -1, 0, 2, 500]);
        assert_eq!(encoded(123_456), [2, 0, 0, 2, 1234, 5600]);
        assert_eq!(encoded(100_000_000), [1, 1, 0, 2, 100]);
        assert_eq!(encoded(100_000_001), [3, 1, 0, 2, 100, 0, 100]);
        assert_eq!(encoded(-150), [2, 0, 0x4000, 2, 1, 5000]);
        assert_eq!(encoded(i64::MIN).len(), 4 + 6);
    }
}
