//! A tiny seeded pseudo-random generator for test data.
//!
//! Generated layers must be identical on every run and every machine (so digests in
//! test expectations and benchmark specs are stable), and they must be incompressible
//! (so a 100 MiB layer really moves 100 MiB). Cryptographic quality is not needed, and
//! a dependency on `rand` would tie our bytes to that crate's algorithm choices across
//! versions. So: SplitMix64 to spread the seed, then xorshift64* for the stream.

/// Deterministic byte stream derived from a 64-bit seed.
pub(crate) struct XorShift {
    state: u64,
}

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // SplitMix64 step: neighbouring seeds (0, 1, 2, ...) give unrelated streams,
        // and the state is never zero (xorshift would be stuck at zero forever).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        XorShift { state: z | 1 }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with the next bytes of the stream (little-endian words).
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let word = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&word[..rest.len()]);
        }
    }
}

/// Mixes several numbers into one seed, so callers can derive seeds from
/// coordinates like (image, platform, layer) without collisions in practice.
pub(crate) fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |acc, &p| {
        XorShift::new(acc ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_different_seeds_differ() {
        let mut a = vec![0u8; 1003];
        let mut b = vec![0u8; 1003];
        XorShift::new(7).fill(&mut a);
        XorShift::new(7).fill(&mut b);
        assert_eq!(a, b);
        XorShift::new(8).fill(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn mix_depends_on_order() {
        assert_ne!(mix(&[1, 2]), mix(&[2, 1]));
        assert_eq!(mix(&[1, 2]), mix(&[1, 2]));
    }
}
