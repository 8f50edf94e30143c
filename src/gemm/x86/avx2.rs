//! AVX2 + FMA register tiles: `MR` rows × `NV` vectors of 8 floats, `MR·NV ≤ 12` accumulators
//! in the 16 ymm registers, the last vector masked to the valid columns.

use core::arch::x86_64::*;

use crate::gemm::simd::{SimdKernel, Tile};

/// The AVX2 + FMA kernel family.
pub(crate) struct Avx2;

impl SimdKernel for Avx2 {
    const LANES: usize = 8;
    const NV_MAX: usize = 3;
    const MR: [usize; 5] = [0, 12, 6, 4, 0];

    fn available() -> bool {
        crate::gemm::detect::avx2_fma()
    }

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller's contract; `mr ≤ MR[nv]` selects an instance
        // whose MR covers it.
        unsafe {
            match (t.nv, t.mr) {
                (1, 1..=6) => tile_n::<6, 1>(t),
                (1, _) => tile_n::<12, 1>(t),
                (2, 1..=3) => tile_n::<3, 2>(t),
                (2, _) => tile_n::<6, 2>(t),
                (_, 1..=2) => tile_n::<2, 3>(t),
                _ => tile_n::<4, 3>(t),
            }
        }
    }
}

/// Lane mask (all bits set = lane on) of the last vector for `ncols` valid columns.
#[target_feature(enable = "avx2")]
fn last_mask(nv: usize, ncols: usize) -> __m256i {
    let rem = (ncols - (nv - 1) * 8) as i32;
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lanes)
}

/// One tile of up to `MR` rows (`t.mr` of them real) × `NV` vectors; rows beyond `t.mr`
/// recompute the last real row and are never stored.
///
/// # Safety
/// As for [`SimdKernel::tile`], with `mr ≤ MR` and `nv == NV`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_n<const MR: usize, const NV: usize>(t: &Tile) {
    let mask = last_mask(NV, t.ncols);
    let mut rows = [t.a; MR];
    for (i, r) in rows.iter_mut().enumerate() {
        // SAFETY: row min(i, mr-1) is inside A (caller's contract).
        *r = unsafe { t.a.add(i.min(t.mr - 1) * t.rsa) };
    }
    // C's row starts, taken before the loop (read inside it, the row index would keep the
    // accumulators in memory).
    let mut crow = [t.c; MR];
    for (i, r) in crow.iter_mut().enumerate().take(t.mr) {
        // SAFETY: i < mr; `c_rows`, when not null, has mr entries (caller's contract).
        *r = unsafe { t.c_row(i) };
    }
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let (rsb, b_ptrs) = (t.rsb, t.b_ptrs);
    let mut bp = t.b;
    for p in 0..t.kc {
        if !b_ptrs.is_null() {
            // SAFETY: p < kc, and `b_ptrs` has kc entries (caller's contract).
            bp = unsafe { *b_ptrs.add(p) };
        }
        let mut bv = [_mm256_setzero_ps(); NV];
        for (v, b) in bv.iter_mut().enumerate() {
            // SAFETY: B row p, columns v·8.. (masked to the valid ones in the last vector).
            *b = unsafe {
                if v + 1 == NV {
                    _mm256_maskload_ps(bp.add(v * 8), mask)
                } else {
                    _mm256_loadu_ps(bp.add(v * 8))
                }
            };
        }
        for i in 0..MR {
            // SAFETY: A(row, p) for a row inside A and p < kc.
            let a = _mm256_set1_ps(unsafe { *rows[i].add(p * t.csa) });
            for v in 0..NV {
                acc[i][v] = _mm256_fmadd_ps(a, bv[v], acc[i][v]);
            }
        }
        // The next row of B, when its rows are not picked (dereferenced only for p < kc).
        bp = bp.wrapping_add(rsb);
    }

    let alpha = _mm256_set1_ps(t.alpha);
    let beta = _mm256_set1_ps(t.beta);
    let zero = _mm256_setzero_ps();
    let full = _mm256_set1_epi32(-1);
    for (i, row) in acc.iter().enumerate().take(t.mr) {
        for (v, &s) in row.iter().enumerate() {
            let m = if v + 1 == NV { mask } else { full };
            // SAFETY: C(i, v·8..) inside the tile, masked to the valid columns.
            unsafe {
                let cp = crow[i].add(v * 8);
                // Separate multiply and add, as in the AVX-512 kernel (see there).
                let mut x = _mm256_mul_ps(alpha, s);
                if t.beta != 0.0 {
                    x = _mm256_add_ps(x, _mm256_mul_ps(beta, _mm256_maskload_ps(cp, m)));
                }
                if !t.bias.is_null() {
                    x = _mm256_add_ps(x, _mm256_maskload_ps(t.bias.add(v * 8), m));
                }
                if t.relu {
                    // Keep x where it is > 0 or NaN, else +0: the portable ReLU exactly.
                    x = _mm256_and_ps(_mm256_cmp_ps::<_CMP_NLE_UQ>(x, zero), x);
                }
                _mm256_maskstore_ps(cp, m, x);
            }
        }
    }
}
