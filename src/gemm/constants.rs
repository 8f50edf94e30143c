//! Blocking constants of the portable blocked driver. Each names the loop it cuts.
//!
//! They are the same on every target, so the portable backend sums in the same order on the
//! desktop and on a microcontroller (only [`KC`] affects the order; see the module docs).

/// LOOP 4 cuts `k` into blocks of `KC`: one packed A sliver and one packed B sliver of `KC`
/// rows stay in L1 while the register kernel runs.
pub const KC: usize = 256;

/// LOOP 3 cuts `m` into blocks of `MC` rows: the packed `MC × KC` block of A stays in L2.
pub const MC: usize = 64;

/// LOOP 5 cuts `n` into blocks of `NC` columns: the packed `KC × NC` panel of B stays in L2/L3.
pub const NC: usize = 256;

/// Packing space (elements) for full-size blocks: `MC·KC` for A plus `KC·NC` for B.
/// The driver works with less, down to none (then it runs unpacked, with the same results).
///
/// On bare-metal targets (`target_os = "none"`: microcontrollers, which have no data cache
/// for packing to help) it is 0: the portable driver always runs unpacked, which gives the
/// same results, and its packing code is not even linked.
#[cfg(not(target_os = "none"))]
pub const PACK_LEN: usize = MC * KC + KC * NC;
/// Packing space: none on bare-metal targets (see the desktop definition).
#[cfg(target_os = "none")]
pub const PACK_LEN: usize = 0;

/// The SIMD backends cut `k` into blocks of `SIMD_KC` (their LOOP 3). For the shapes of these
/// nets (n ≤ 64, k ≤ 1024) one block measured as fast as any split: the `k × 48` panel of B
/// streams from L2 for each row block, and C is stored once. Larger k (the square ladder)
/// splits into blocks of this size.
pub const SIMD_KC: usize = 1024;
