//! How long library work (packing, verifying, unpacking) tells its caller how far it
//! got. The library draws nothing: a binary renders this (ferry-cli's `Report`).

/// Receives the byte count of one transfer at a time.
pub trait Progress: Sync {
    /// A transfer of `total` bytes begins; `what` says what it is ("packing").
    fn start(&self, what: &str, total: u64);
    /// `n` more bytes are done.
    fn advance(&self, n: u64);
}

/// Progress that goes nowhere (tests, and callers that show none).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}
