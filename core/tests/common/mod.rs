//! What the generated-input tests share: their case counts (a default per property that
//! keeps `cargo test` quick on two cores, `PROPTEST_CASES` for a longer run) and how a byte
//! stream is cut into reads.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;

/// The configuration of a property: `default_cases` cases, unless `PROPTEST_CASES` asks for
/// another count (`ProptestConfig::with_cases` would override the variable, which is the
/// standard way to ask for a longer run).
pub fn cases(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// Where a stream is cut into reads.
#[derive(Debug, Clone)]
pub enum Reads {
    /// Reads of this many bytes (tiny reads cut every header and character).
    Every(usize),
    /// Cuts at these places (as fractions of the stream, so that they shrink well).
    At(Vec<Index>),
}

/// Read boundaries: reads of 1 to 17 bytes, or up to 16 cuts anywhere.
pub fn reads() -> impl Strategy<Value = Reads> {
    prop_oneof![
        (1usize..=17).prop_map(Reads::Every),
        proptest::collection::vec(any::<Index>(), 0..16).prop_map(Reads::At),
    ]
}

impl Reads {
    /// `wire` as the reads a peer's reader would see. Tiny reads of a long stream are made
    /// longer (at most about 1024 reads), to keep a case's cost bounded.
    pub fn split<'a>(&self, wire: &'a [u8]) -> Vec<&'a [u8]> {
        match self {
            Reads::Every(n) => wire.chunks((*n).max(wire.len() / 1024).max(1)).collect(),
            Reads::At(cuts) => {
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
                at.sort_unstable();
                at.dedup();
                let mut out = Vec::with_capacity(at.len() + 1);
                let mut start = 0;
                for cut in at {
                    out.push(&wire[start..cut]);
                    start = cut;
                }
                out.push(&wire[start..]);
                out.retain(|r| !r.is_empty());
                out
            }
        }
    }
}
