//! The driver of the SIMD backends (f32): register tiles of `MR` rows × `NV` vectors, with A
//! read in place through its strides (one broadcast per element), B read in place when its rows
//! are contiguous (packed otherwise), and the epilogue (α, β, bias, ReLU) applied as each tile
//! is stored.
//!
//! Why no packing of A: for the shapes of these networks (n ≤ 64 columns, k up to 784) the
//! kernel broadcasts each element of A once per tile, so A's layout costs only cache lines, not
//! shuffles; and packing X would cost a full copy of the batch per product.
//!
//! ```text
//! LOOP 3: k in blocks of SIMD_KC (constants.rs): a SIMD_KC × 64 panel of B, streamed from L2
//!   LOOP 2: columns in tiles of up to NV_MAX vectors (64 floats with AVX-512)
//!     LOOP 1: rows in blocks of MR (MR chosen per tile width so MR·NV accumulators fill the registers)
//!       kernel: Σ over the block's k of A(i, p)·B(p, j) in registers, then the epilogue
//! ```

use super::{Epilogue, MatMut, MatRef, SIMD_KC};

/// Everything one tile needs, as raw parts of views already validated.
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    /// Depth of this k block.
    pub kc: usize,
    /// Rows in this tile (≤ the kernel's MR for `nv`).
    pub mr: usize,
    /// Vectors per row.
    pub nv: usize,
    /// Valid columns (the last vector is masked to `ncols - (nv-1)·LANES`).
    pub ncols: usize,
    /// A(i, p) = `*a.add(i·rsa + p·csa)`.
    pub a: *const f32,
    pub rsa: usize,
    pub csa: usize,
    /// B(p, j) = `*b.add(p·rsb + j)`, or `*b_ptrs[p].add(j)` when `b_ptrs` is not null (B's
    /// rows picked through an index: one pointer per row of the block).
    pub b: *const f32,
    pub rsb: usize,
    pub b_ptrs: *const *const f32,
    /// C(i, j) = `*c.add(row·rsc + j)`, row = `i`, or `c_rows[i]` when that is not null.
    pub c: *mut f32,
    pub rsc: usize,
    pub c_rows: *const usize,
    pub alpha: f32,
    /// 0 means C is not read.
    pub beta: f32,
    /// Bias for the tile's columns (null: none).
    pub bias: *const f32,
    /// Apply `max(·, 0)` after the bias.
    pub relu: bool,
    /// The whole product has this one row (a batch of one): the kernel may split the sum
    /// over k into independent partial sums to hide the latency of the multiply-adds.
    pub single: bool,
}

impl Tile {
    /// Where row `p` of the block's B starts (dereferenced only for `p < kc`).
    ///
    /// # Safety
    /// `p < kc`, and `b_ptrs`, when not null, has `kc` entries.
    #[inline(always)]
    pub unsafe fn b_row(&self, p: usize) -> *const f32 {
        if self.b_ptrs.is_null() {
            self.b.wrapping_add(p * self.rsb)
        } else {
            // SAFETY: the caller's contract.
            unsafe { *self.b_ptrs.add(p) }
        }
    }

    /// Where row `i` of the tile's C starts.
    ///
    /// # Safety
    /// `i < mr`, and `c_rows`, when not null, has `mr` entries.
    #[inline(always)]
    pub unsafe fn c_row(&self, i: usize) -> *mut f32 {
        let r = if self.c_rows.is_null() {
            i
        } else {
            // SAFETY: the caller's contract.
            unsafe { *self.c_rows.add(i) }
        };
        self.c.wrapping_add(r * self.rsc)
    }
}

/// Where row `i` of a block of C starts: `c + row·rsc`, row = `i` or `rows[i]` when `rows` is
/// not null.
///
/// # Safety
/// `rows`, when not null, has more than `i` entries.
#[inline(always)]
pub(crate) unsafe fn row_at(c: *mut f32, rows: *const usize, i: usize, rsc: usize) -> *mut f32 {
    let r = if rows.is_null() {
        i
    } else {
        // SAFETY: the caller's contract.
        unsafe { *rows.add(i) }
    };
    c.wrapping_add(r * rsc)
}

/// The last few columns (fewer than a vector) of a block of rows, by dot products along k:
/// A's rows are contiguous (`csa = 1`) and the columns of B are packed contiguous,
/// `Bᵀ(j, p) = *bt.add(j·k + p)`.
#[derive(Clone, Copy)]
pub(crate) struct DotTile {
    pub k: usize,
    /// Rows (≤ [`DOT_ROWS`]).
    pub rows: usize,
    /// Columns (≤ [`REM_MAX`]).
    pub r: usize,
    pub a: *const f32,
    pub rsa: usize,
    pub bt: *const f32,
    pub c: *mut f32,
    pub rsc: usize,
    pub csc: usize,
    /// C's rows through an index (see [`Tile`]), or null.
    pub c_rows: *const usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: *const f32,
    pub relu: bool,
}

/// The last few columns of a block of rows, with vectors along m: A's columns are contiguous
/// (`rsa = 1`), B is read element by element.
#[derive(Clone, Copy)]
pub(crate) struct ColTile {
    pub k: usize,
    /// Rows (≤ [`COL_ROWS`]).
    pub rows: usize,
    /// Columns (≤ [`REM_MAX`]).
    pub r: usize,
    pub a: *const f32,
    pub csa: usize,
    pub b: *const f32,
    pub rsb: usize,
    pub csb: usize,
    pub c: *mut f32,
    pub rsc: usize,
    pub csc: usize,
    /// C's rows through an index (see [`Tile`]), or null.
    pub c_rows: *const usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: *const f32,
    pub relu: bool,
}

/// Rows per [`DotTile`].
pub(crate) const DOT_ROWS: usize = 6;
/// Rows per [`ColTile`].
pub(crate) const COL_ROWS: usize = 64;
/// Most remainder columns handled by the remainder kernels (more use masked tiles).
pub(crate) const REM_MAX: usize = 4;
/// Least depth `k` for the remainder kernels (shallower products use masked tiles).
pub(crate) const REM_MIN_K: usize = 32;

/// A kernel that packs a panel of a transposed B ([`SimdKernel::PACK_T`]).
pub(crate) type PackT = unsafe fn(*const f32, usize, *const usize, usize, usize, *mut f32);

/// A family of SIMD tile kernels.
pub(crate) trait SimdKernel {
    /// f32 lanes per vector.
    const LANES: usize;
    /// Most vectors per tile row.
    const NV_MAX: usize;
    /// Rows per tile for a tile `nv` vectors wide (index `nv`, 1..=NV_MAX).
    const MR: [usize; 5];

    /// Whether this CPU can run the kernel.
    fn available() -> bool;

    /// Kernel for [`DotTile`]s, if the family has one. Safety contract as for `tile`, for the
    /// elements a `DotTile` addresses.
    const DOT: Option<unsafe fn(&DotTile)> = None;
    /// Kernel for [`ColTile`]s, if the family has one. Safety contract as for `tile`.
    const COL: Option<unsafe fn(&ColTile)> = None;
    /// Packs a panel of a transposed B in registers, if the family can:
    /// `pack_t(src, cs, ci, rows, w, panel)` sets `panel[p·w + j] = src[p + c_j·cs]` for
    /// `p < rows`, `j < w`, `c_j` being `j`, or `ci[j]` when `ci` is not null (a copy: the
    /// same values as the element loop).
    ///
    /// Safety: the CPU supports the family; `ci`, when not null, has `w` entries;
    /// `src[p + c_j·cs]` is valid for reads and `panel[..rows·w]` for writes, for every such
    /// `p`, `j`.
    const PACK_T: Option<PackT> = None;

    /// Computes one tile: for `i < mr`, `j < ncols`:
    /// `s = Σ_{p<kc} A(i,p)·B(p,j)` (in registers, fused multiply-adds), then
    /// `c = α·s` (β = 0) or `α·s + β·c`, then `+ bias[j]`, then `max(·, 0)` if `relu`.
    ///
    /// # Safety
    /// The CPU supports the kernel ([`SimdKernel::available`]); every A, B, C and bias
    /// element addressed above is valid (C for writes, and for reads when β ≠ 0), the C
    /// elements are distinct; `1 ≤ mr ≤ MR[nv]`, `1 ≤ nv ≤ NV_MAX`,
    /// `(nv-1)·LANES < ncols ≤ nv·LANES`.
    unsafe fn tile(t: &Tile);
}

/// Columns per tile at most, for any kernel (the stack tile for strided C).
const MAX_TILE_COLS: usize = 64;
/// Rows per tile at most, for any kernel.
const MAX_TILE_ROWS: usize = 16;
/// Elements of B a panel may spread over and still be read in place (256 Ki f32, 1 MB).
const SCATTERED_PANEL: usize = 256 * 1024;

/// `C ← α·A·B + β·C` then the epilogue, for shapes already checked, `m, n, k > 0`.
/// Returns `false`, having touched nothing, when it cannot run (B needs packing and `pack`
/// is too small); the caller then uses the portable backend.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<K: SimdKernel>(
    kc_max: usize,
    alpha: f32,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
    pack: &mut [f32],
    epi: Epilogue<'_, f32>,
) -> bool {
    let (m, k, n_all) = (a.rows, a.cols, b.cols);
    if a.is_indexed() {
        // A's rows are read through strides only; picked rows go through the portable path.
        return false;
    }
    // Columns past the last whole vector: by a remainder kernel when A's layout suits one
    // (full lanes instead of a mostly masked vector), else by masked tiles.
    let r = n_all % K::LANES;
    // A single row (a batch of one): the remainder kernels would not pay for their packing
    // (for a long k, such as the first Affine after a convolution, packing B's last columns
    // transposed cost more than the product), and k blocks of SIMD_KC stream B once.
    let single_row = m == 1;
    let kc_max = if single_row { SIMD_KC } else { kc_max };
    let r = if single_row { 0 } else { r };
    let plain_c = c.ci.is_none();
    // A short k does not pay for the remainder kernels' reductions and packing.
    let rem = r != 0 && r <= REM_MAX && k >= REM_MIN_K && plain_c;
    let rem_dot = K::DOT.filter(|_| rem && a.cs == 1 && pack.len() >= r * k);
    let rem_col = K::COL.filter(|_| rem && a.rs == 1 && !b.is_indexed() && rem_dot.is_none());
    let n = if rem_dot.is_some() || rem_col.is_some() {
        n_all - r
    } else {
        n_all
    };
    let tile_w = K::NV_MAX * K::LANES;
    debug_assert!(tile_w <= MAX_TILE_COLS && K::MR.iter().all(|&r| r <= MAX_TILE_ROWS));
    let kc = kc_max.min(k);
    // B is packed when its layout needs it (column strides, picked columns), and when the
    // in-place panel (kc rows of B, a row stride apart) spreads over more than 1 MB: the
    // packed panel stays in L2 for all the row blocks that reuse it, the scattered one does
    // not (a 1024×1024 product runs at a third of the speed unpacked).
    let scattered = m > MAX_TILE_ROWS && kc * b.rs > SCATTERED_PANEL;
    let pack_b = (b.cs != 1 && (b.rows > 1 || b.cols > 1)) || b.ci.is_some() || scattered;
    if pack_b && pack.len() < kc * tile_w {
        return false;
    }
    let (bias, relu) = match epi {
        Epilogue::None => (None, false),
        Epilogue::Bias(b) => (Some(b), false),
        Epilogue::BiasRelu(b) => (Some(b), true),
    };
    let (cp, rsc, csc) = (c.data.as_mut_ptr(), c.rs, c.cs);
    // Row pointers of a block of B when its rows are picked through an index.
    let mut b_row_ptrs = [core::ptr::null::<f32>(); SIMD_KC];
    let mut pc = 0;
    while pc < k {
        // LOOP 3: a block of k.
        let kcb = kc.min(k - pc);
        let last = pc + kcb == k;
        let beta_blk = if pc == 0 { beta } else { 1.0 };
        let mut j0 = 0;
        while j0 < n {
            // LOOP 2: a tile of columns, B in place or packed row-major (rsb = w).
            let w = tile_w.min(n - j0);
            let nv = w.div_ceil(K::LANES);
            let (bp, rsb, b_ptrs) = if pack_b {
                if b.ri.is_none() && b.rs == 1 {
                    // B a transposed view (its columns contiguous, picked through an index
                    // or not): 16 rows of the panel at a time, each column's 16 values read
                    // as one piece. Row by row, every value would come from another cache
                    // line.
                    let panel = &mut pack[..kcb * w];
                    // Column j0 + j of B starts at data[c(j)·cs], c(j) its index entry.
                    let ci = b.ci.map(|c| &c[j0..j0 + w]);
                    if let Some(pack_t) = K::PACK_T {
                        let (src, cp) = match ci {
                            Some(c) => (b.data.as_ptr().wrapping_add(pc), c.as_ptr()),
                            None => (
                                b.data.as_ptr().wrapping_add(pc + j0 * b.cs),
                                core::ptr::null(),
                            ),
                        };
                        // SAFETY: the family's CPU support was checked by the caller;
                        // B(pc + p, j0 + j) = data[pc + p + c·cs] (rs = 1, c = j0 + j or
                        // its index entry, which `cp` holds for j < w) is inside the
                        // validated view for p < kcb, j < w; the panel has kcb·w elements.
                        unsafe { pack_t(src, b.cs, cp, kcb, w, panel.as_mut_ptr()) };
                    } else {
                        for p0 in (0..kcb).step_by(16) {
                            let rows = 16.min(kcb - p0);
                            let block = &mut panel[p0 * w..(p0 + rows) * w];
                            for j in 0..w {
                                let c = ci.map_or(j0 + j, |c| c[j]);
                                let col = &b.data[pc + p0 + c * b.cs..][..rows];
                                for (o, &v) in block[j..].iter_mut().step_by(w).zip(col) {
                                    *o = v;
                                }
                            }
                        }
                    }
                } else if b.ci.is_none() {
                    // A row of B at a time (picked through an index or not), its elements
                    // `cs` apart, without looking the row up for each.
                    for (p, out) in pack[..kcb * w].chunks_exact_mut(w).enumerate() {
                        let at = b.ri.map_or(pc + p, |rows| rows[pc + p]) * b.rs + j0 * b.cs;
                        for (j, o) in out.iter_mut().enumerate() {
                            *o = b.data[at + j * b.cs];
                        }
                    }
                } else {
                    for p in 0..kcb {
                        for j in 0..w {
                            pack[p * w + j] = b.at(pc + p, j0 + j);
                        }
                    }
                }
                (pack.as_ptr(), w, core::ptr::null())
            } else if let Some(rows) = b.ri {
                // Rows picked through an index: a pointer to each row of the block (rows of
                // B are inside the validated view, so each pointer is in bounds).
                for (ptr, &r) in b_row_ptrs.iter_mut().zip(&rows[pc..pc + kcb]) {
                    *ptr = b.data.as_ptr().wrapping_add(r * b.rs + j0);
                }
                (b.data.as_ptr(), b.rs, b_row_ptrs.as_ptr())
            } else {
                // SAFETY: (pc, j0) is inside B (pc < k, j0 < n), so the offset is in bounds;
                // B is read in place only when its columns are contiguous (`cs == 1`) or it
                // is 1×1 (see `pack_b`), so `j0` needs no factor `cs`.
                (
                    unsafe { b.data.as_ptr().add(pc * b.rs + j0) },
                    b.rs,
                    core::ptr::null(),
                )
            };
            let mr_full = K::MR[nv];
            let mut i0 = 0;
            while i0 < m {
                // LOOP 1: a block of rows.
                let mr = mr_full.min(m - i0);
                let bias_p = match (last, bias) {
                    // SAFETY: bias has n elements (checked by `gemm`), j0 < n.
                    (true, Some(bb)) => unsafe { bb.as_ptr().add(j0) },
                    _ => core::ptr::null(),
                };
                // SAFETY: (i0, pc) is inside A.
                let ap = unsafe { a.data.as_ptr().add(i0 * a.rs + pc * a.cs) };
                let mut t = Tile {
                    kc: kcb,
                    mr,
                    nv,
                    ncols: w,
                    a: ap,
                    rsa: a.rs,
                    csa: a.cs,
                    b: bp,
                    rsb,
                    b_ptrs,
                    c: core::ptr::null_mut(),
                    rsc,
                    c_rows: core::ptr::null(),
                    alpha,
                    beta: beta_blk,
                    bias: bias_p,
                    relu: relu && last,
                    single: single_row,
                };
                if csc == 1 && plain_c {
                    if let Some(rows) = c.ri {
                        // Rows picked through an index: row i of the tile is row rows[i0 + i].
                        t.c = cp.wrapping_add(j0);
                        t.c_rows = rows[i0..].as_ptr();
                    } else {
                        // SAFETY: (i0, j0) is inside C.
                        t.c = unsafe { cp.add(i0 * rsc + j0) };
                    }
                    // SAFETY: `available()` was checked by the caller; A rows i0..i0+mr and
                    // columns pc..pc+kcb, B rows of this block and columns j0..j0+w (in place
                    // or in `pack`), C rows i0..i0+mr × columns j0..j0+w with unit column
                    // stride, and bias j0..j0+w are all inside views validated in bounds, and
                    // C is injective; mr ≤ MR[nv] and (nv-1)·LANES < w ≤ nv·LANES.
                    unsafe { K::tile(&t) };
                } else {
                    // Strided C: compute s into a stack tile, then combine element by element
                    // with the same arithmetic as the kernel's epilogue.
                    let mut tmp = [0f32; MAX_TILE_ROWS * MAX_TILE_COLS];
                    t.c = tmp.as_mut_ptr();
                    t.rsc = MAX_TILE_COLS;
                    t.alpha = 1.0;
                    t.beta = 0.0;
                    t.bias = core::ptr::null();
                    t.relu = false;
                    t.single = false;
                    // SAFETY: as above for A and B; the C tile is `tmp`, mr ≤ 16 rows of
                    // 64 columns with row stride 64.
                    unsafe { K::tile(&t) };
                    for i in 0..mr {
                        for j in 0..w {
                            // SAFETY: (i0+i, j0+j) is inside C, whose view is validated.
                            let cij = unsafe { &mut *cp.add(c.pos(i0 + i, j0 + j)) };
                            let s = tmp[i * MAX_TILE_COLS + j];
                            let mut x = if beta_blk == 0.0 {
                                alpha * s
                            } else {
                                alpha * s + beta_blk * *cij
                            };
                            if last && let Some(bb) = bias {
                                x += bb[j0 + j];
                            }
                            if relu && last && x <= 0.0 {
                                x = 0.0;
                            }
                            *cij = x;
                        }
                    }
                }
                i0 += mr;
            }
            j0 += w;
        }
        pc += kcb;
    }
    let bias_at = |j: usize| match bias {
        // SAFETY: bias has n_all elements and j < n_all.
        Some(bb) => unsafe { bb.as_ptr().add(j) },
        None => core::ptr::null(),
    };
    if let Some(dot) = rem_dot {
        // Pack the remainder columns of B transposed: Bᵀ(j, p) at pack[j·k + p]. B's rows
        // one at a time (picked through an index or not): its r elements `cs` apart, without
        // looking the row up for each.
        if b.ci.is_none() {
            for p in 0..k {
                let at = b.ri.map_or(p, |rows| rows[p]) * b.rs + n * b.cs;
                for j in 0..r {
                    pack[j * k + p] = b.data[at + j * b.cs];
                }
            }
        } else {
            for j in 0..r {
                for p in 0..k {
                    pack[j * k + p] = b.at(p, n + j);
                }
            }
        }
        for i0 in (0..m).step_by(DOT_ROWS) {
            // SAFETY: (i0, 0) is inside A.
            let ap = unsafe { a.data.as_ptr().add(i0 * a.rs) };
            // Row i of the block is row i0 + i of C, or rows[i0 + i] when C's rows are picked.
            let (cq, c_rows) = match c.ri {
                Some(rows) => (cp.wrapping_add(n * csc), rows[i0..].as_ptr()),
                None => (cp.wrapping_add(i0 * rsc + n * csc), core::ptr::null()),
            };
            let t = DotTile {
                k,
                rows: DOT_ROWS.min(m - i0),
                r,
                a: ap,
                rsa: a.rs,
                bt: pack.as_ptr(),
                c: cq,
                rsc,
                csc,
                c_rows,
                alpha,
                beta,
                bias: bias_at(n),
                relu,
            };
            // SAFETY: rows i0.. of A (contiguous along k, csa = 1) and the packed Bᵀ (r × k)
            // are valid for reads, the C block rows i0.. × columns n..n_all is inside the
            // validated, injective C; the CPU supports the family (checked by the caller).
            unsafe { dot(&t) };
        }
    } else if let Some(col) = rem_col {
        for i0 in (0..m).step_by(COL_ROWS) {
            // SAFETY: (i0, 0) is inside A (rsa = 1) and (0, n) inside B.
            let (ap, bq) = unsafe { (a.data.as_ptr().add(i0), b.data.as_ptr().add(n * b.cs)) };
            let (cq, c_rows) = match c.ri {
                Some(rows) => (cp.wrapping_add(n * csc), rows[i0..].as_ptr()),
                None => (cp.wrapping_add(i0 * rsc + n * csc), core::ptr::null()),
            };
            let t = ColTile {
                k,
                rows: COL_ROWS.min(m - i0),
                r,
                a: ap,
                csa: a.cs,
                b: bq,
                rsb: b.rs,
                csb: b.cs,
                c: cq,
                rsc,
                csc,
                c_rows,
                alpha,
                beta,
                bias: bias_at(n),
                relu,
            };
            // SAFETY: A rows i0.. (contiguous down each column, rsa = 1), B columns n..n_all,
            // and C rows i0.. × columns n..n_all are inside validated views; the CPU supports
            // the family (checked by the caller).
            unsafe { col(&t) };
        }
    }
    true
}
