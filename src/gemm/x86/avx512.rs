//! AVX-512F register tiles: `MR` rows × `NV` vectors of 16 floats, `MR·NV ≤ 24` accumulators
//! in the 32 zmm registers, the last vector masked to the valid columns.

use core::arch::x86_64::*;

use crate::gemm::simd::{COL_ROWS, ColTile, DOT_ROWS, DotTile, PackT, SimdKernel, Tile, row_at};

/// The AVX-512F kernel family.
pub(crate) struct Avx512;

impl SimdKernel for Avx512 {
    const LANES: usize = 16;
    const NV_MAX: usize = 4;
    // At most 8 rows: each row needs a general-purpose register for its address (more spill
    // in the inner loop); 24 accumulators at widths 3 and 4.
    const MR: [usize; 5] = [0, 8, 8, 8, 6];

    fn available() -> bool {
        crate::gemm::detect::avx512()
    }

    const DOT: Option<unsafe fn(&DotTile)> = Some(dot);
    const COL: Option<unsafe fn(&ColTile)> = Some(col);
    const PACK_T: Option<PackT> = Some(pack_t);

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller's contract; `mr ≤ MR[nv]` selects an instance
        // whose MR covers it.
        unsafe {
            if t.b_ptrs.is_null() {
                dispatch::<false>(t)
            } else {
                dispatch::<true>(t)
            }
        }
    }
}

/// Picks the tile instance for `(nv, mr)`; `P`: B's rows are picked through `b_ptrs`.
///
/// # Safety
/// As for [`SimdKernel::tile`].
#[inline(always)]
unsafe fn dispatch<const P: bool>(t: &Tile) {
    // SAFETY: forwarded; `mr ≤ MR[nv]` selects an instance whose MR covers it.
    unsafe {
        match (t.nv, t.mr) {
            (1, _) if t.single => row_n::<1>(t),
            (2, _) if t.single => row_n::<2>(t),
            (3, _) if t.single => row_n::<3>(t),
            (_, _) if t.single => row_n::<4>(t),
            (1, 1..=4) => tile_n::<4, 1, P>(t),
            (1, _) => tile_n::<8, 1, P>(t),
            (2, 1..=4) => tile_n::<4, 2, P>(t),
            (2, _) => tile_n::<8, 2, P>(t),
            (3, 1..=4) => tile_n::<4, 3, P>(t),
            (3, _) => tile_n::<8, 3, P>(t),
            (4, 1..=3) => tile_n::<3, 4, P>(t),
            _ => tile_n::<6, 4, P>(t),
        }
    }
}

/// The epilogue of a tile: `α·s` (+ `β·c`) (+ bias) (ReLU), stored masked. A macro, not a
/// function, so that the accumulators stay in registers (a `#[target_feature]` function
/// cannot be forced inline, and passing them by reference would put them in memory).
///
/// Safety (of the expansion): as for [`SimdKernel::tile`]; `$acc` holds at least `$t.mr`
/// rows of `NV` vectors (the `NV` of the function it expands in), `$crow` the start of each
/// of those rows of C (taken before the loop: read inside it, the row index would keep the
/// accumulators in memory).
macro_rules! store_tile {
    ($t:expr, $acc:expr, $crow:expr, $mask:expr) => {{
        let (t, acc, crow, mask): (&Tile, _, _, __mmask16) = ($t, $acc, $crow, $mask);
    let alpha = _mm512_set1_ps(t.alpha);
        let beta = _mm512_set1_ps(t.beta);
        let zero = _mm512_setzero_ps();
        // Loops with constant trip counts (the array's), so the accumulators stay registers.
        #[allow(clippy::needless_range_loop)]
        for i in 0..acc.len() {
            if i >= t.mr {
                break;
            }
            for v in 0..NV {
                let s = acc[i][v];
                let m = if v + 1 == NV { mask } else { 0xFFFF };
                // SAFETY: C(i, v·16..) inside the tile, masked to the valid columns.
                unsafe {
                    let cp = crow[i].add(v * 16);
                    // Multiply and add separately (not fused): the same rounding as the portable
                    // epilogue and as a separate SGD update, so `W ← W - lr·(XᵀdY)` fused here is
                    // bit-identical to computing the gradient and then updating.
                    let mut x = _mm512_mul_ps(alpha, s);
                    if t.beta != 0.0 {
                        x = _mm512_add_ps(x, _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m, cp)));
                    }
                    if !t.bias.is_null() {
                        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, t.bias.add(v * 16)));
                    }
                    if t.relu {
                        // Keep x where it is > 0 or NaN, else +0: the portable ReLU exactly
                        // (`x <= 0 → 0`), sign of zero included.
                        x = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(x, zero), x);
                    }
                    _mm512_mask_storeu_ps(cp, m, x);
                }
            }
        }
    }};
}

/// Most k of a single-row product (the `SIMD_KC` block size).
const ROW_MAX_K: usize = crate::gemm::SIMD_KC;

/// One row (the whole product is a single row): only the terms whose element of A is not
/// zero, since `0·b` adds nothing (a batch of one MNIST image has four fifths of its pixels at
/// zero). The sum over those terms is split four ways into independent accumulators, so the
/// multiply-adds do not wait on each other, then added pairwise.
///
/// # Safety
/// As for [`SimdKernel::tile`], for a product of a single row (`t.single`), `nv == NV`.
#[target_feature(enable = "avx512f")]
unsafe fn row_n<const NV: usize>(t: &Tile) {
    let mask = last_mask(NV, t.ncols);
    // The k whose A(0, k) is not zero (NaN counts as not zero), in order. The driver sends
    // single rows in k blocks of at most SIMD_KC = ROW_MAX_K; checked here, since `nz` is
    // written below.
    assert!(t.kc <= ROW_MAX_K);
    let mut nz = [0u32; ROW_MAX_K];
    let mut n = 0;
    if t.csa == 1 {
        let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let mut p = 0;
        while p < t.kc {
            let valid: __mmask16 = if t.kc - p >= 16 {
                0xFFFF
            } else {
                ((1u32 << (t.kc - p)) - 1) as __mmask16
            };
            // SAFETY: A(0, p..p+16) masked to kc, contiguous (csa = 1); `nz` has room for
            // every k (kc ≤ ROW_MAX_K, asserted above).
            unsafe {
                let a = _mm512_maskz_loadu_ps(valid, t.a.add(p));
                let m = _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(valid, a, _mm512_setzero_ps());
                let ks = _mm512_add_epi32(iota, _mm512_set1_epi32(p as i32));
                _mm512_mask_compressstoreu_epi32(nz.as_mut_ptr().add(n).cast(), m, ks);
                n += m.count_ones() as usize;
            }
            p += 16;
        }
    } else {
        for p in 0..t.kc {
            nz[n] = p as u32;
            // SAFETY: A(0, p) for p < kc.
            n += (unsafe { *t.a.add(p * t.csa) } != 0.0) as usize;
        }
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; 4];
    // Rows p of B and A(0, p) for p < kc (every index in `nz` is): inside their views.
    let step = |acc: &mut [__m512; NV], p: usize| {
        // SAFETY: p < kc (see above); the last vector is masked to the valid columns.
        unsafe {
            let bp = t.b_row(p);
            let a = _mm512_set1_ps(*t.a.add(p * t.csa));
            for (v, x) in acc.iter_mut().enumerate() {
                let b = if v + 1 == NV {
                    _mm512_maskz_loadu_ps(mask, bp.add(v * 16))
                } else {
                    _mm512_loadu_ps(bp.add(v * 16))
                };
                *x = _mm512_fmadd_ps(a, b, *x);
            }
        }
    };
    let mut j = 0;
    while j + 4 <= n {
        let [a0, a1, a2, a3] = &mut acc;
        step(a0, nz[j] as usize);
        step(a1, nz[j + 1] as usize);
        step(a2, nz[j + 2] as usize);
        step(a3, nz[j + 3] as usize);
        j += 4;
    }
    while j < n {
        step(&mut acc[0], nz[j] as usize);
        j += 1;
    }
    let mut sum = [[_mm512_setzero_ps(); NV]; 1];
    for v in 0..NV {
        sum[0][v] = _mm512_add_ps(
            _mm512_add_ps(acc[0][v], acc[1][v]),
            _mm512_add_ps(acc[2][v], acc[3][v]),
        );
    }
    // SAFETY: row 0 < mr = 1 (caller's contract).
    let crow = [unsafe { t.c_row(0) }];
    store_tile!(t, &sum, &crow, mask);
}

/// Dispatches a [`DotTile`] on its column count.
///
/// # Safety
/// As for [`SimdKernel::DOT`].
unsafe fn dot(t: &DotTile) {
    // SAFETY: forwarded; `r ≤ REM_MAX = 4`.
    unsafe {
        match t.r {
            1 => dot_n::<1>(t),
            2 => dot_n::<2>(t),
            3 => dot_n::<3>(t),
            _ => dot_n::<4>(t),
        }
    }
}

/// Dispatches a [`ColTile`] on its column count.
///
/// # Safety
/// As for [`SimdKernel::COL`].
unsafe fn col(t: &ColTile) {
    // SAFETY: forwarded; `r ≤ REM_MAX = 4`.
    unsafe {
        match t.r {
            1 => col_n::<1>(t),
            2 => col_n::<2>(t),
            3 => col_n::<3>(t),
            _ => col_n::<4>(t),
        }
    }
}

/// The scalar epilogue of the remainder kernels: the same arithmetic as the vector one.
///
/// # Safety
/// AVX-512F present; `cp` valid for a read (when `beta ≠ 0`) and a write, `bias` null or valid for a read.
#[inline(always)]
unsafe fn store_scalar(cp: *mut f32, s: f32, alpha: f32, beta: f32, bias: *const f32, relu: bool) {
    // SAFETY: the caller passes a valid C element, and bias null or valid.
    unsafe {
        let mut x = alpha * s;
        if beta != 0.0 {
            x += beta * *cp;
        }
        if !bias.is_null() {
            x += *bias;
        }
        if relu && x <= 0.0 {
            x = 0.0;
        }
        *cp = x;
    }
}

/// `R` columns × up to [`DOT_ROWS`] rows, each element a dot product along k of a row of A
/// and a packed column of B, 16 k at a time; rows beyond `t.rows` repeat the last one and are
/// not stored.
///
/// # Safety
/// As for [`SimdKernel::tile`], for the elements the `DotTile` addresses, with `t.r == R`.
#[target_feature(enable = "avx512f")]
unsafe fn dot_n<const R: usize>(t: &DotTile) {
    let mut rows = [t.a; DOT_ROWS];
    for (i, r) in rows.iter_mut().enumerate() {
        // SAFETY: row min(i, rows-1) is inside A.
        *r = unsafe { t.a.add(i.min(t.rows - 1) * t.rsa) };
    }
    // C's row starts, before the loop (see `store_tile!`).
    let mut crow = [t.c; DOT_ROWS];
    for (i, r) in crow.iter_mut().enumerate().take(t.rows) {
        // SAFETY: i < rows; `c_rows`, when not null, has that many entries.
        *r = unsafe { row_at(t.c, t.c_rows, i, t.rsc) };
    }
    let mut acc = [[_mm512_setzero_ps(); R]; DOT_ROWS];
    let mut p = 0;
    while p < t.k {
        let mask: __mmask16 = if t.k - p >= 16 {
            0xFFFF
        } else {
            ((1u32 << (t.k - p)) - 1) as __mmask16
        };
        let mut bv = [_mm512_setzero_ps(); R];
        for (j, b) in bv.iter_mut().enumerate() {
            // SAFETY: Bᵀ(j, p..p+16) masked to k.
            *b = unsafe { _mm512_maskz_loadu_ps(mask, t.bt.add(j * t.k + p)) };
        }
        for i in 0..DOT_ROWS {
            // SAFETY: A(row, p..p+16) masked to k, contiguous (csa = 1).
            let av = unsafe { _mm512_maskz_loadu_ps(mask, rows[i].add(p)) };
            for j in 0..R {
                acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
        p += 16;
    }
    for (i, row) in acc.iter().enumerate().take(t.rows) {
        for (j, &v) in row.iter().enumerate() {
            let s = _mm512_reduce_add_ps(v);
            // SAFETY: C(i, j) of the block, bias j of the block.
            unsafe {
                let bias = if t.bias.is_null() {
                    t.bias
                } else {
                    t.bias.add(j)
                };
                store_scalar(crow[i].add(j * t.csc), s, t.alpha, t.beta, bias, t.relu);
            }
        }
    }
}

/// `R` columns × up to [`COL_ROWS`] rows, vectors of 16 rows down the columns of A times a
/// broadcast element of B.
///
/// # Safety
/// As for [`SimdKernel::tile`], for the elements the `ColTile` addresses, with `t.r == R`.
#[target_feature(enable = "avx512f")]
unsafe fn col_n<const R: usize>(t: &ColTile) {
    const U: usize = COL_ROWS / 16;
    let mut masks = [0 as __mmask16; U];
    for (u, m) in masks.iter_mut().enumerate() {
        let valid = t.rows.saturating_sub(16 * u).min(16);
        *m = ((1u32 << valid) - 1) as __mmask16;
    }
    // C's row starts, before the loop (see `store_tile!`).
    let mut crow = [t.c; COL_ROWS];
    for (i, r) in crow.iter_mut().enumerate().take(t.rows) {
        // SAFETY: i < rows; `c_rows`, when not null, has that many entries.
        *r = unsafe { row_at(t.c, t.c_rows, i, t.rsc) };
    }
    let mut acc = [[_mm512_setzero_ps(); R]; U];
    for p in 0..t.k {
        let ap = t.a.wrapping_add(p * t.csa);
        let mut av = [_mm512_setzero_ps(); U];
        for (u, (v, &m)) in av.iter_mut().zip(&masks).enumerate() {
            // SAFETY: column p of A, rows 16·u.. masked to the block's rows (rsa = 1); a lane
            // whose mask bit is clear is not accessed.
            *v = unsafe { _mm512_maskz_loadu_ps(m, ap.wrapping_add(16 * u)) };
        }
        let mut bv = [_mm512_setzero_ps(); R];
        for (j, b) in bv.iter_mut().enumerate() {
            // SAFETY: B(p, j) of the block.
            *b = _mm512_set1_ps(unsafe { *t.b.add(p * t.rsb + j * t.csb) });
        }
        for (accu, a) in acc.iter_mut().zip(av) {
            for (x, b) in accu.iter_mut().zip(bv) {
                *x = _mm512_fmadd_ps(a, b, *x);
            }
        }
    }
    let mut lanes = [0f32; 16];
    for (u, row) in acc.iter().enumerate() {
        let valid = t.rows.saturating_sub(16 * u).min(16);
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: `lanes` holds 16 floats.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
            for (l, &s) in lanes.iter().enumerate().take(valid) {
                // SAFETY: C(16u + l, j) of the block, bias j of the block.
                unsafe {
                    let bias = if t.bias.is_null() {
                        t.bias
                    } else {
                        t.bias.add(j)
                    };
                    store_scalar(
                        crow[16 * u + l].add(j * t.csc),
                        s,
                        t.alpha,
                        t.beta,
                        bias,
                        t.relu,
                    );
                }
            }
        }
    }
}

/// Mask of the valid lanes of the last vector of a tile `nv` vectors wide with `ncols` columns.
#[inline(always)]
fn last_mask(nv: usize, ncols: usize) -> __mmask16 {
    let rem = ncols - (nv - 1) * 16;
    if rem >= 16 {
        0xFFFF
    } else {
        ((1u32 << rem) - 1) as __mmask16
    }
}

/// One tile of up to `MR` rows (`t.mr` of them real) × `NV` vectors.
///
/// Rows beyond `t.mr` are computed from row `t.mr - 1` again (so no address outside A is read)
/// and never stored.
///
/// # Safety
/// As for [`SimdKernel::tile`], with `mr ≤ MR`, `nv == NV`, and `b_ptrs` not null exactly when `PICKED`.
#[target_feature(enable = "avx512f")]
unsafe fn tile_n<const MR: usize, const NV: usize, const PICKED: bool>(t: &Tile) {
    let mask = last_mask(NV, t.ncols);
    let mut rows = [t.a; MR];
    for (i, r) in rows.iter_mut().enumerate() {
        // SAFETY: row min(i, mr-1) is inside A (caller's contract).
        *r = unsafe { t.a.add(i.min(t.mr - 1) * t.rsa) };
    }
    let mut crow = [t.c; MR];
    for (i, r) in crow.iter_mut().enumerate().take(t.mr) {
        // SAFETY: i < mr; `c_rows`, when not null, has mr entries (caller's contract).
        *r = unsafe { t.c_row(i) };
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (csa, rsb, b_ptrs) = (t.csa, t.rsb, t.b_ptrs);
    let mut bp = t.b;
    for p in 0..t.kc {
        if PICKED {
            // SAFETY: p < kc, and `b_ptrs` has kc entries (caller's contract).
            bp = unsafe { *b_ptrs.add(p) };
        }
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, b) in bv.iter_mut().enumerate() {
            // SAFETY: B row p, columns v·16.. (masked to the valid ones in the last vector).
            *b = unsafe {
                if v + 1 == NV {
                    _mm512_maskz_loadu_ps(mask, bp.add(v * 16))
                } else {
                    _mm512_loadu_ps(bp.add(v * 16))
                }
            };
        }
        for i in 0..MR {
            // SAFETY: A(row, p) for a row inside A and p < kc.
            let a = _mm512_set1_ps(unsafe { *rows[i].add(p * csa) });
            for v in 0..NV {
                acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
            }
        }
        // The next row of B, when its rows are not picked (dereferenced only for p < kc).
        bp = bp.wrapping_add(rsb);
    }

    // SAFETY: forwarded from the caller's contract.
    store_tile!(t, &acc, &crow, mask);
}

/// Packs a panel of a transposed B: `panel[p·w + j] = src[p + c_j·cs]` for `p < rows`,
/// `j < w`, where `c_j` is `j`, or `ci[j]` when `ci` is not null (columns picked through an
/// index), 16 × 16 blocks at a time: 16 columns of B (16 contiguous values each) are loaded, turned
/// in registers by [`transpose16`], and stored as 16 rows of the panel. Element by element,
/// every value would come from another cache line.
///
/// # Safety
/// AVX-512F; `ci`, when not null, has `w` entries; `src[p + c_j·cs]` readable and
/// `panel[..rows·w]` writable for those `p`, `j`.
#[target_feature(enable = "avx512f")]
unsafe fn pack_t(
    src: *const f32,
    cs: usize,
    ci: *const usize,
    rows: usize,
    w: usize,
    panel: *mut f32,
) {
    for p0 in (0..rows).step_by(16) {
        let pr = (rows - p0).min(16);
        let pm = last_mask(1, pr);
        for j0 in (0..w).step_by(16) {
            let jw = (w - j0).min(16);
            let jm = last_mask(1, jw);
            let mut v = [_mm512_setzero_ps(); 16];
            for (j, vj) in v.iter_mut().enumerate() {
                if j < jw {
                    // SAFETY: column j0 + j < w (its index entry exists), rows p0..p0+pr of
                    // it (masked), readable.
                    *vj = unsafe {
                        let c = if ci.is_null() {
                            j0 + j
                        } else {
                            *ci.add(j0 + j)
                        };
                        _mm512_maskz_loadu_ps(pm, src.add(p0 + c * cs))
                    };
                }
            }
            transpose16(&mut v);
            for (p, vp) in v.iter().enumerate() {
                if p < pr {
                    // SAFETY: panel row p0 + p < rows, columns j0..j0+jw (masked) < w.
                    unsafe { _mm512_mask_storeu_ps(panel.add((p0 + p) * w + j0), jm, *vp) };
                }
            }
        }
    }
}

/// Transposes a 16 × 16 block held as 16 vectors: afterwards `v[i]` lane `j` is what
/// `v[j]` lane `i` was. Pairs of elements, then of pairs, then of 128-bit quarters are
/// interleaved (`unpack` within quarters, `shuffle_f32x4` across them).
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(v: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // u[4g + c], quarter q: rows 4g..4g+4 of column 4q + c.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (t0, t1, t2, t3) = (
            _mm512_castps_pd(t[4 * g]),
            _mm512_castps_pd(t[4 * g + 1]),
            _mm512_castps_pd(t[4 * g + 2]),
            _mm512_castps_pd(t[4 * g + 3]),
        );
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for c in 0..4 {
        // Quarters 0 and 2 (columns c, 8 + c) and 1 and 3 (4 + c, 12 + c) of rows 0..8 and 8..16.
        let s0 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        let s1 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        let s2 = _mm512_shuffle_f32x4::<0xDD>(u[c], u[4 + c]);
        let s3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + c], u[12 + c]);
        v[c] = _mm512_shuffle_f32x4::<0x88>(s0, s1);
        v[8 + c] = _mm512_shuffle_f32x4::<0xDD>(s0, s1);
        v[4 + c] = _mm512_shuffle_f32x4::<0x88>(s2, s3);
        v[12 + c] = _mm512_shuffle_f32x4::<0xDD>(s2, s3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// The register pack against the element loop it replaces, over edge sizes (rows and
    /// columns not multiples of 16, a column stride past the rows).
    #[test]
    fn transposing_pack_copies_every_element() {
        if !crate::gemm::detect::avx512() {
            return;
        }
        for &(rows, w, cs) in &[
            (1, 1, 1),
            (16, 16, 16),
            (17, 33, 40),
            (100, 64, 100),
            (5, 64, 9),
            (31, 7, 31),
        ] {
            let src: Vec<f32> = (0..rows + (w - 1) * cs)
                .map(|i| i as f32 * 0.5 - 3.0)
                .collect();
            // Columns in order, and picked through an index (backwards, overlapping runs).
            let picked: Vec<usize> = (0..w).rev().collect();
            for ci in [None, Some(&picked)] {
                let mut fast = vec![f32::NAN; rows * w];
                let cp = ci.map_or(core::ptr::null(), |c| c.as_ptr());
                // SAFETY: AVX-512F checked; `picked` has w entries; src[p + c·cs] for
                // p < rows, c < w is inside src.
                unsafe { pack_t(src.as_ptr(), cs, cp, rows, w, fast.as_mut_ptr()) };
                let mut slow = vec![0f32; rows * w];
                for p in 0..rows {
                    for j in 0..w {
                        let c = ci.map_or(j, |c| c[j]);
                        slow[p * w + j] = src[p + c * cs];
                    }
                }
                assert_eq!(fast, slow, "rows {rows}, w {w}, cs {cs}, {ci:?}");
            }
        }
    }
}
