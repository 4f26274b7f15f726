//! MurmurHash3 x86 32-bit, as scikit-learn's `murmurhash3_32` (used by `FeatureHasher`).

pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::murmur3_32;

    #[test]
    fn matches_reference_vectors() {
        // Values of sklearn.utils.murmurhash3_32(s, seed=0, positive=False).
        assert_eq!(murmur3_32(b"", 0) as i32, 0);
        assert_eq!(murmur3_32(b"foo", 0) as i32, -156908512);
        assert_eq!(murmur3_32(b"Hello World!", 0) as i32, -603376259);
        assert_eq!(
            murmur3_32("fraud_Berge, Kautzer and Harris".as_bytes(), 0) as i32,
            -1415965924
        );
        assert_eq!(murmur3_32(b"Hospital doctor", 0) as i32, -1028422204);
    }
}
