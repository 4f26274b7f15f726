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
    /// A timestamptz from epoch milliseconds.
    pub fn timestamptz_ms(&mut self, ms: i64) {
        self.int8(ms * 1000 - EPOCH_2000_MICROS);
    }
}
