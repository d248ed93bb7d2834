//! Deterministic pseudo-random bytes for the tests that throw malformed
//! forms and tokens at the parsers (xorshift64*).

/// A xorshift64* generator.
pub(super) struct Noise(pub(super) u64);

impl Noise {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Up to `max` bytes drawn from `alphabet`.
    pub(super) fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len)
            .map(|_| alphabet[(self.next() as usize) % alphabet.len()])
            .collect()
    }
}
