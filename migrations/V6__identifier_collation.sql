-- trans_num and cc_hash are opaque identifiers: compare them byte by byte (COLLATE "C") rather
-- than by the database's language rules. Their B-tree indexes are then built and searched with
-- memcmp instead of strcoll, which made `fraudctl load` of 1,000,000 new rows about a quarter
-- faster (BENCHMARKS.md). Nothing sorts them for people to read.
ALTER TABLE fraud_alerts ALTER COLUMN trans_num TYPE text COLLATE "C";
ALTER TABLE payments_scored
    ALTER COLUMN trans_num TYPE text COLLATE "C",
    ALTER COLUMN cc_hash TYPE text COLLATE "C";
