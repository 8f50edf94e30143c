//! General matrix multiply: the one operation every layer stands on.
//!
//! # Contract
//!
//! ```text
//! C ← α·A·B + β·C        A: m×k, B: k×n, C: m×n
//! ```
//!
//! Each matrix is a slice with a row stride and a column stride ([`MatRef`], [`MatMut`]):
//! element (i, j) sits at `data[i·rs + j·cs]`. A transpose is a stride swap ([`MatRef::t`]),
//! never a copy. When β = 0, C is not read (it may hold NaN or garbage). When k = 0 or α = 0,
//! A and B are not read and C ← β·C.
//!
//! # Backends
//!
//! | [`Backend`] | what it is |
//! | --- | --- |
//! | `Naive` | the triple loop: the algorithmic reference every other backend is tested against |
//! | `Portable` | our cache-blocked 5-loop driver (`blocked.rs`) with the portable register kernel; packing buffers are caller-owned and fixed ([`PACK_LEN`]); without one it runs unpacked with the same arithmetic |
//! | `Avx2` | AVX2 + FMA register tiles on the SIMD driver (`simd.rs`, `x86/avx2.rs`); f32 (f64 runs the portable kernel) |
//! | `Avx512` | AVX-512F register tiles (`x86/avx512.rs`), remainder kernels, zero-skipping for a single row; f32 |
//! | `MatrixMultiply` | the `matrixmultiply` crate (feature `matrixmultiply`; heap-allocates its packing buffers); views that pick rows through an index are copied out to the packing space for it (and C back) |
//! | `Auto` | the best of the above that needs no heap: AVX-512, else AVX2 (detected at run time with `std`, by `target_feature` without), else `Portable` |
//!
//! Which one runs is decided in one place, [`Backend::resolve`].
//!
//! # Zeros of A
//!
//! When C has a single row (a batch of one), the AVX-512 backend skips the terms whose element
//! of A is exactly zero: they add nothing when B is finite (`0·b = 0`). With an infinite or NaN
//! element of B facing a zero of A, the skipped term would have been NaN; such weights make a
//! net's outputs NaN anyway.
//!
//! # Summation order
//!
//! The packed and unpacked portable paths compute each element of C the same way: `k` is cut
//! into blocks of [`KC`]; within a block the products are summed in order of `k` from zero, and
//! each block's sum `s` is stored as `α·s + β·c` (β = 1 after the first block). The naive loop
//! sums all of `k` at once, so for k ≤ `KC` naive and portable agree bit for bit; for any k the
//! portable result does not depend on how much packing space it was given, nor on the target
//! it runs on.

#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
mod arm;
mod blocked;
mod constants;
pub mod detect;
mod kernel;
#[cfg(feature = "matrixmultiply")]
mod mm;
mod naive;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use constants::{KC, MC, NC, PACK_LEN, SIMD_KC};
pub use naive::gemm as gemm_naive;

use crate::error::{Error, Result, check_len};
use core::ops::{Add, Mul};

/// The gemm internals of an element type, in a private module so that only this crate can
/// name or call them: the SIMD and `matrixmultiply` entries trust the shapes that
/// [`gemm_ex`] has checked.
mod sealed {
    use super::{Backend, Epilogue, MatMut, MatRef};

    pub trait Sealed: Sized {
        /// 0 and 1 of the type.
        const GEMM_ZERO: Self;
        const GEMM_ONE: Self;

        /// Runs a SIMD backend if there is one for this type; `false` if not (nothing touched).
        #[allow(clippy::too_many_arguments)]
        fn simd(
            backend: Backend,
            alpha: Self,
            a: MatRef<'_, Self>,
            b: MatRef<'_, Self>,
            beta: Self,
            c: MatMut<'_, Self>,
            pack: &mut [Self],
            epi: Epilogue<'_, Self>,
        ) -> bool;

        /// Whether [`Sealed::row_kernel`] is a register kernel on this target.
        const ROW_KERNEL: bool = false;

        /// `out[j] = Σ_{p<kc} A(i, pc+p)·B(pc+p, j0+j)` for `j < out.len()` (16, 8, 4, 2 or 1),
        /// summed in order of `p` from zero (the portable kernel's arithmetic), for columns of B
        /// that must exist and have unit column stride, of views that pick no rows or columns
        /// through an index. Only called when [`Sealed::ROW_KERNEL`].
        fn row_kernel(
            kc: usize,
            a: &MatRef<'_, Self>,
            i: usize,
            pc: usize,
            b: &MatRef<'_, Self>,
            j0: usize,
            out: &mut [Self],
        ) {
            let _ = (kc, a, i, pc, b, j0, out);
        }

        /// Runs the `matrixmultiply` crate's gemm for this type.
        #[cfg(feature = "matrixmultiply")]
        fn matrixmultiply(
            alpha: Self,
            a: MatRef<'_, Self>,
            b: MatRef<'_, Self>,
            beta: Self,
            c: MatMut<'_, Self>,
        );
    }
}

/// What gemm needs of an element type; implemented for `f32` and `f64`.
///
/// Its internals are private to this crate (the SIMD entries trust the shapes that
/// [`gemm_ex`] checks), so code outside cannot reach them:
///
/// ```compile_fail
/// let _ = <f32 as zeronn::gemm::Element>::GEMM_ZERO;
/// ```
pub trait Element:
    sealed::Sealed
    + Copy
    + Default
    + PartialEq
    + PartialOrd
    + Add<Output = Self>
    + Mul<Output = Self>
    + Send
    + Sync
    + 'static
{
}

impl Element for f32 {}

impl sealed::Sealed for f32 {
    const GEMM_ZERO: Self = 0.0;
    const GEMM_ONE: Self = 1.0;
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    const ROW_KERNEL: bool = true;
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    fn row_kernel(
        kc: usize,
        a: &MatRef<'_, Self>,
        i: usize,
        pc: usize,
        b: &MatRef<'_, Self>,
        j0: usize,
        out: &mut [Self],
    ) {
        let w = out.len();
        // Check the extremes of what the kernel reads (row i of A over the block, rows of B
        // over the block, columns j0..j0+w) and that the views are plain strided ones: they
        // guarantee everything in between. (Only `gemm_ex` calls this, with checked views.)
        assert!(
            kc > 0
                && i < a.rows
                && pc + kc <= a.cols
                && pc + kc <= b.rows
                && j0 + w <= b.cols
                && b.cs == 1
                && a.ri.is_none()
                && a.ci.is_none()
                && b.ri.is_none()
                && b.ci.is_none()
        );
        // SAFETY: A(i, pc+p) for p < kc and B(pc+p, j0+j) for j < w are inside their views
        // (asserted above), which lie inside their slices.
        unsafe {
            let (ap, bp) = (
                a.data.as_ptr().add(i * a.rs + pc * a.cs),
                b.data.as_ptr().add(pc * b.rs + j0),
            );
            if let Ok(o) = <&mut [f32; 16]>::try_from(&mut *out) {
                arm::row16(kc, ap, a.cs, bp, b.rs, o)
            } else if let Ok(o) = <&mut [f32; 8]>::try_from(&mut *out) {
                arm::row8(kc, ap, a.cs, bp, b.rs, o)
            } else if let Ok(o) = <&mut [f32; 4]>::try_from(&mut *out) {
                arm::row4(kc, ap, a.cs, bp, b.rs, o)
            } else if let Ok(o) = <&mut [f32; 2]>::try_from(&mut *out) {
                arm::row2(kc, ap, a.cs, bp, b.rs, o)
            } else if let Ok(o) = <&mut [f32; 1]>::try_from(&mut *out) {
                arm::row1(kc, ap, a.cs, bp, b.rs, o)
            }
        }
    }
    fn simd(
        backend: Backend,
        alpha: Self,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        beta: Self,
        c: MatMut<'_, Self>,
        pack: &mut [Self],
        epi: Epilogue<'_, Self>,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        use simd::SimdKernel;
        match backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 if x86::avx512::Avx512::available() => {
                simd::gemm::<x86::avx512::Avx512>(SIMD_KC, alpha, a, b, beta, c, pack, epi)
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 if x86::avx2::Avx2::available() => {
                simd::gemm::<x86::avx2::Avx2>(SIMD_KC, alpha, a, b, beta, c, pack, epi)
            }
            _ => {
                let _ = (alpha, a, b, beta, c, pack, epi);
                false
            }
        }
    }
    #[cfg(feature = "matrixmultiply")]
    fn matrixmultiply(
        alpha: Self,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        beta: Self,
        c: MatMut<'_, Self>,
    ) {
        mm::sgemm(alpha, a, b, beta, c)
    }
}

impl Element for f64 {}

impl sealed::Sealed for f64 {
    const GEMM_ZERO: Self = 0.0;
    const GEMM_ONE: Self = 1.0;
    fn simd(
        _: Backend,
        _: Self,
        _: MatRef<'_, Self>,
        _: MatRef<'_, Self>,
        _: Self,
        _: MatMut<'_, Self>,
        _: &mut [Self],
        _: Epilogue<'_, Self>,
    ) -> bool {
        false
    }
    #[cfg(feature = "matrixmultiply")]
    fn matrixmultiply(
        alpha: Self,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        beta: Self,
        c: MatMut<'_, Self>,
    ) {
        mm::dgemm(alpha, a, b, beta, c)
    }
}

/// Which implementation computes a product. See the table in the [module docs](self).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The best backend available here that needs no heap: AVX-512, else AVX2, else portable.
    #[default]
    Auto,
    /// The reference triple loop.
    Naive,
    /// Cache-blocked driver with the portable register kernel: the same results on every
    /// target, so a run on the desktop can be reproduced bit for bit on a microcontroller.
    Portable,
    /// AVX2 + FMA register tiles (x86-64; f32; f64 runs the portable kernel).
    Avx2,
    /// AVX-512F register tiles (x86-64; f32; f64 runs the portable kernel).
    Avx512,
    /// The `matrixmultiply` crate (feature `matrixmultiply`).
    MatrixMultiply,
}

impl Backend {
    /// Every backend, for listings.
    pub const ALL: [Backend; 6] = [
        Backend::Auto,
        Backend::Naive,
        Backend::Portable,
        Backend::Avx2,
        Backend::Avx512,
        Backend::MatrixMultiply,
    ];

    /// The backend's name as the tools spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Naive => "naive",
            Backend::Portable => "portable",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::MatrixMultiply => "matrixmultiply",
        }
    }

    /// Parses a name as given by [`Backend::name`].
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Whether this backend can run here (built in, and supported by this CPU).
    pub fn is_available(self) -> bool {
        match self {
            Backend::Auto | Backend::Naive | Backend::Portable => true,
            Backend::Avx2 => detect::avx2_fma(),
            Backend::Avx512 => detect::avx512(),
            Backend::MatrixMultiply => cfg!(feature = "matrixmultiply"),
        }
    }

    /// The one place where the backend that runs is chosen: `Auto` becomes the best available
    /// heap-free backend; an unavailable backend is an error.
    pub fn resolve(self) -> Result<Backend> {
        match self {
            Backend::Auto if detect::avx512() => Ok(Backend::Avx512),
            Backend::Auto if detect::avx2_fma() => Ok(Backend::Avx2),
            Backend::Auto => Ok(Backend::Portable),
            b if b.is_available() => Ok(b),
            b => Err(Error::BackendUnavailable { backend: b.name() }),
        }
    }
}

impl core::fmt::Display for Backend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of elements a strided view spans: `(rows-1)·rs + (cols-1)·cs + 1`, or 0 if empty.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// [`MatRef::pos`]/[`MatMut::pos`] for a view with picked rows or columns. Out of line and
/// cold: the loops over plain views stay small (the element loops of the generic paths are
/// not duplicated for every combination of picked and plain), which keeps firmware code
/// small; views with picked rows take the SIMD kernels' own paths where speed matters.
#[cold]
#[inline(never)]
fn indexed_pos(
    ri: Option<&[usize]>,
    ci: Option<&[usize]>,
    rs: usize,
    cs: usize,
    i: usize,
    j: usize,
) -> usize {
    ri.map_or(i, |v| v[i]) * rs + ci.map_or(j, |v| v[j]) * cs
}

/// Largest index in `idx`, checked to fit with `cols` columns of stride `cs` and a row
/// stride `rs` inside `len` elements.
fn indexed_extent_ok(idx: &[usize], cols: usize, rs: usize, cs: usize, len: usize) -> bool {
    match idx.iter().max() {
        None => true,
        Some(&max) => max
            .checked_add(1)
            .and_then(|rows| extent(rows, cols, rs, cs))
            .is_some_and(|e| e <= len),
    }
}

/// A read-only matrix view: `rows × cols`, element (i, j) at `data[i·rs + j·cs]`, or, for a
/// view made by [`MatRef::gather_rows`], at `data[idx[i]·rs + j·cs]` (rows picked out of a
/// bigger matrix without copying them; a transpose makes that a column index).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    ri: Option<&'a [usize]>,
    ci: Option<&'a [usize]>,
}

impl<'a, T> MatRef<'a, T> {
    /// A strided view; fails if it reaches outside `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        match extent(rows, cols, rs, cs) {
            Some(e) if e <= data.len() => Ok(MatRef {
                data,
                rows,
                cols,
                rs,
                cs,
                ri: None,
                ci: None,
            }),
            _ => Err(Error::MatrixLayout { matrix: "a/b" }),
        }
    }

    /// A dense row-major view (`rs = cols`, `cs = 1`).
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Rows `idx[0], idx[1], …` of the row-major matrix in `data` (`cols` columns, row stride
    /// `rs`), as a `idx.len() × cols` view: row i is row `idx[i]` of the matrix. Fails if an
    /// index reaches outside `data`.
    pub fn gather_rows(data: &'a [T], idx: &'a [usize], cols: usize, rs: usize) -> Result<Self> {
        if !indexed_extent_ok(idx, cols, rs, 1, data.len()) {
            return Err(Error::MatrixLayout { matrix: "a/b" });
        }
        Ok(MatRef {
            data,
            rows: idx.len(),
            cols,
            rs,
            cs: 1,
            ri: Some(idx),
            ci: None,
        })
    }

    /// The transpose: rows and columns, and their strides, swapped. No data moves.
    #[must_use]
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ri: self.ci,
            ci: self.ri,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Row stride.
    pub fn row_stride(&self) -> usize {
        self.rs
    }
    /// Column stride.
    pub fn col_stride(&self) -> usize {
        self.cs
    }
    /// The underlying slice.
    pub fn data(&self) -> &'a [T] {
        self.data
    }
    /// Whether rows or columns are picked through an index ([`MatRef::gather_rows`]).
    pub fn is_indexed(&self) -> bool {
        self.ri.is_some() || self.ci.is_some()
    }

    /// Offset of element (i, j) in the slice.
    #[inline(always)]
    fn pos(&self, i: usize, j: usize) -> usize {
        if self.ri.is_none() && self.ci.is_none() {
            i * self.rs + j * self.cs
        } else {
            indexed_pos(self.ri, self.ci, self.rs, self.cs, i, j)
        }
    }
}

impl<T: Copy> MatRef<'_, T> {
    /// Element (i, j), or `None` outside the matrix.
    pub fn get(&self, i: usize, j: usize) -> Option<T> {
        if i < self.rows && j < self.cols {
            Some(self.data[self.pos(i, j)])
        } else {
            None
        }
    }

    /// Element (i, j) for indices already known to be inside the view.
    #[inline(always)]
    pub(crate) fn at(&self, i: usize, j: usize) -> T {
        debug_assert!(i < self.rows && j < self.cols);
        self.data[self.pos(i, j)]
    }

    /// [`MatRef::at`] out of line: for the loops that need not be fast (the naive reference,
    /// the fallbacks), so that they stay small in firmware.
    #[inline(never)]
    pub(crate) fn at_slow(&self, i: usize, j: usize) -> T {
        self.at(i, j)
    }
}

/// A mutable matrix view: like [`MatRef`], and no two elements share a place.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    ri: Option<&'a [usize]>,
    ci: Option<&'a [usize]>,
}

impl<'a, T> MatMut<'a, T> {
    /// A strided mutable view; fails if it reaches outside `data` or if two elements would
    /// share a place (a zero stride, or strides that interleave).
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        let bad = Err(Error::MatrixLayout { matrix: "c" });
        match extent(rows, cols, rs, cs) {
            Some(e) if e <= data.len() => {}
            _ => return bad,
        }
        if rows == 0 || cols == 0 {
            // Empty: nothing to alias.
        } else if rows > 1 && cols > 1 {
            // Injective iff one stride steps over the whole span of the other.
            let row_outer = cols.checked_mul(cs).is_some_and(|span| rs >= span);
            let col_outer = rows.checked_mul(rs).is_some_and(|span| cs >= span);
            if !(row_outer || col_outer) || rs == 0 || cs == 0 {
                return bad;
            }
        } else if (rows > 1 && rs == 0) || (cols > 1 && cs == 0) {
            return bad;
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
            ri: None,
            ci: None,
        })
    }

    /// A dense row-major view (`rs = cols`, `cs = 1`).
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Rows `idx[0] < idx[1] < …` of the row-major matrix in `data` (`cols` columns, row
    /// stride `rs ≥ cols`), as a mutable `idx.len() × cols` view. The indices must increase
    /// strictly (so no two rows are one) and stay inside `data`.
    pub fn gather_rows(
        data: &'a mut [T],
        idx: &'a [usize],
        cols: usize,
        rs: usize,
    ) -> Result<Self> {
        let increasing = idx.windows(2).all(|w| w[0] < w[1]);
        if !increasing
            || (idx.len() > 1 && cols > 0 && rs < cols.max(1))
            || !indexed_extent_ok(idx, cols, rs, 1, data.len())
        {
            return Err(Error::MatrixLayout { matrix: "c" });
        }
        Ok(MatMut {
            data,
            rows: idx.len(),
            cols,
            rs,
            cs: 1,
            ri: Some(idx),
            ci: None,
        })
    }

    /// The transpose, as a mutable view.
    #[must_use]
    pub fn t(self) -> Self {
        MatMut {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ri: self.ci,
            ci: self.ri,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Row stride.
    pub fn row_stride(&self) -> usize {
        self.rs
    }
    /// Column stride.
    pub fn col_stride(&self) -> usize {
        self.cs
    }
    /// Whether rows or columns are picked through an index.
    pub fn is_indexed(&self) -> bool {
        self.ri.is_some() || self.ci.is_some()
    }

    /// A read-only view of the same elements.
    pub fn as_ref(&self) -> MatRef<'_, T> {
        MatRef {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
            ri: self.ri,
            ci: self.ci,
        }
    }

    /// Reborrows for a shorter lifetime.
    pub fn rb(&mut self) -> MatMut<'_, T> {
        MatMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
            ri: self.ri,
            ci: self.ci,
        }
    }

    /// Offset of element (i, j) in the slice.
    #[inline(always)]
    fn pos(&self, i: usize, j: usize) -> usize {
        if self.ri.is_none() && self.ci.is_none() {
            i * self.rs + j * self.cs
        } else {
            indexed_pos(self.ri, self.ci, self.rs, self.cs, i, j)
        }
    }

    /// Element (i, j), mutably, for indices already known to be inside the view.
    #[inline(always)]
    pub(crate) fn at_mut(&mut self, i: usize, j: usize) -> &mut T {
        debug_assert!(i < self.rows && j < self.cols);
        let p = self.pos(i, j);
        &mut self.data[p]
    }

    /// [`MatMut::at_mut`] out of line (see [`MatRef::at_slow`]).
    #[inline(never)]
    pub(crate) fn at_mut_slow(&mut self, i: usize, j: usize) -> &mut T {
        self.at_mut(i, j)
    }
}

/// What to do to each element of C after `α·A·B + β·C`, as it is stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Epilogue<'a, T> {
    /// Nothing.
    None,
    /// Add `bias[j]` to column j (the Affine layer's `+ b`).
    Bias(&'a [T]),
    /// Add `bias[j]`, then `max(·, 0)` (Affine followed by ReLU, in one pass).
    BiasRelu(&'a [T]),
}

/// Computes `C ← α·A·B + β·C` with the given backend. See the [module docs](self) for the
/// contract. `pack` is packing space for the blocked backends: give [`PACK_LEN`] elements for
/// full speed, fewer (even none) to save memory; the result does not depend on it.
pub fn gemm<T: Element>(
    backend: Backend,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
    pack: &mut [T],
) -> Result<()> {
    gemm_ex(backend, alpha, a, b, beta, c, pack, Epilogue::None)
}

/// [`gemm`] followed by an [`Epilogue`]: `C ← epi(α·A·B + β·C)`. The SIMD backends apply it
/// in registers as each tile is stored; the others in one pass over C afterwards.
#[allow(clippy::too_many_arguments)]
pub fn gemm_ex<T: Element>(
    backend: Backend,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
    pack: &mut [T],
    epi: Epilogue<'_, T>,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(Error::ShapeMismatch {
            what: "gemm: rows of B must equal columns of A",
            expected: k,
            actual: b.rows,
        });
    }
    if c.rows != m {
        return Err(Error::ShapeMismatch {
            what: "gemm: rows of C must equal rows of A",
            expected: m,
            actual: c.rows,
        });
    }
    if c.cols != n {
        return Err(Error::ShapeMismatch {
            what: "gemm: columns of C must equal columns of B",
            expected: n,
            actual: c.cols,
        });
    }
    if let Epilogue::Bias(bias) | Epilogue::BiasRelu(bias) = epi {
        check_len("bias", n, bias.len())?;
    }
    let backend = backend.resolve()?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 || alpha == T::GEMM_ZERO {
        scale(beta, c.rb());
        apply_epilogue(c, epi);
        return Ok(());
    }
    match backend {
        Backend::Naive => naive::gemm(alpha, a, b, beta, c.rb()),
        #[cfg(feature = "matrixmultiply")]
        Backend::MatrixMultiply if !(a.is_indexed() || b.is_indexed() || c.is_indexed()) => {
            T::matrixmultiply(alpha, a, b, beta, c.rb())
        }
        #[cfg(feature = "matrixmultiply")]
        Backend::MatrixMultiply => {
            if !mm_copied(alpha, a, b, beta, c.rb(), pack) {
                blocked::gemm::<T, kernel::Portable>(alpha, a, b, beta, c.rb(), pack)
            }
        }
        Backend::Avx2 | Backend::Avx512 => {
            if T::simd(backend, alpha, a, b, beta, c.rb(), pack, epi) {
                return Ok(());
            }
            // No f64 kernel, or too little packing space for a strided B: portable.
            blocked::gemm::<T, kernel::Portable>(alpha, a, b, beta, c.rb(), pack)
        }
        _ => blocked::gemm::<T, kernel::Portable>(alpha, a, b, beta, c.rb(), pack),
    }
    apply_epilogue(c, epi);
    Ok(())
}

/// The `matrixmultiply` crate on views that pick rows or columns through an index, which it
/// cannot read: each such operand copied out (row-major) to `pack`, or to the heap when `pack`
/// is too small (the crate allocates anyway), the product run on the copies, and C's copy
/// written back. `false` (C untouched) only if the copies' size overflows `usize`.
#[cfg(feature = "matrixmultiply")]
fn mm_copied<T: Element>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
    pack: &mut [T],
) -> bool {
    let size = |indexed: bool, rows: usize, cols: usize| {
        if indexed {
            rows.checked_mul(cols)
        } else {
            Some(0)
        }
    };
    let (Some(la), Some(lb), Some(lc)) = (
        size(a.is_indexed(), a.rows, a.cols),
        size(b.is_indexed(), b.rows, b.cols),
        size(c.is_indexed(), c.rows, c.cols),
    ) else {
        return false;
    };
    let Some(need) = la.checked_add(lb).and_then(|n| n.checked_add(lc)) else {
        return false;
    };
    let mut heap = alloc::vec::Vec::new();
    let space = if need <= pack.len() {
        &mut pack[..need]
    } else {
        heap.resize(need, T::GEMM_ZERO);
        &mut heap[..]
    };
    let (pa, rest) = space.split_at_mut(la);
    let (pb, rest) = rest.split_at_mut(lb);
    let pc = &mut rest[..lc];
    // `m` written row-major into `out` (`m.rows × m.cols` elements).
    fn fill<T: Element>(m: &MatRef<'_, T>, out: &mut [T]) {
        for (i, row) in out.chunks_exact_mut(m.cols.max(1)).enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = m.at(i, j);
            }
        }
    }
    // An indexed view as its row-major copy in `out`, any other as it is.
    fn plain<'v, T: Element>(m: MatRef<'v, T>, out: &'v mut [T]) -> Option<MatRef<'v, T>> {
        if !m.is_indexed() {
            return Some(m);
        }
        fill(&m, out);
        MatRef::row_major(out, m.rows, m.cols).ok()
    }
    let (Some(a), Some(b)) = (plain(a, pa), plain(b, pb)) else {
        return false;
    };
    if !c.is_indexed() {
        T::matrixmultiply(alpha, a, b, beta, c);
        return true;
    }
    if beta != T::GEMM_ZERO {
        fill(&c.as_ref(), pc);
    }
    let Ok(copy_c) = MatMut::row_major(&mut *pc, c.rows, c.cols) else {
        return false;
    };
    T::matrixmultiply(alpha, a, b, beta, copy_c);
    for (i, row) in pc.chunks_exact(c.cols.max(1)).enumerate() {
        for (j, &x) in row.iter().enumerate() {
            *c.at_mut_slow(i, j) = x;
        }
    }
    true
}

/// `C ← β·C`, writing zeros without reading C when β = 0.
fn scale<T: Element>(beta: T, mut c: MatMut<'_, T>) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let x = c.at_mut_slow(i, j);
            *x = if beta == T::GEMM_ZERO {
                T::GEMM_ZERO
            } else {
                beta * *x
            };
        }
    }
}

/// Applies an epilogue to every element of C (for the backends that do not fuse it).
fn apply_epilogue<T: Element>(mut c: MatMut<'_, T>, epi: Epilogue<'_, T>) {
    let (bias, relu) = match epi {
        Epilogue::None => return,
        Epilogue::Bias(b) => (b, false),
        Epilogue::BiasRelu(b) => (b, true),
    };
    for i in 0..c.rows {
        for (j, &bj) in bias.iter().enumerate() {
            let x = c.at_mut_slow(i, j);
            let v = *x + bj;
            *x = if relu && v <= T::GEMM_ZERO {
                T::GEMM_ZERO
            } else {
                v
            };
        }
    }
}

/// Everything a layer needs to run a product: the backend and the packing space.
#[derive(Debug)]
pub struct Context<'p, T> {
    /// The backend to use.
    pub backend: Backend,
    /// Packing space (see [`gemm`]).
    pub pack: &'p mut [T],
}

impl<'p, T: Element> Context<'p, T> {
    /// A context with the given backend and packing space.
    pub fn new(backend: Backend, pack: &'p mut [T]) -> Self {
        Context { backend, pack }
    }

    /// `C ← α·A·B + β·C` (see [`gemm`]).
    pub fn gemm(
        &mut self,
        alpha: T,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        beta: T,
        c: MatMut<'_, T>,
    ) -> Result<()> {
        gemm(self.backend, alpha, a, b, beta, c, self.pack)
    }

    /// `C ← epi(α·A·B + β·C)` (see [`gemm_ex`]).
    pub fn gemm_ex(
        &mut self,
        alpha: T,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        beta: T,
        c: MatMut<'_, T>,
        epi: Epilogue<'_, T>,
    ) -> Result<()> {
        gemm_ex(self.backend, alpha, a, b, beta, c, self.pack, epi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_reject_out_of_bounds_and_overlap() {
        let d = [0f32; 12];
        assert!(MatRef::new(&d, 3, 4, 4, 1).is_ok());
        assert!(MatRef::new(&d, 3, 5, 4, 1).is_err());
        assert!(MatRef::new(&d, 0, 100, 100, 1).is_ok());
        let mut e = [0f32; 12];
        assert!(MatMut::new(&mut e, 3, 4, 4, 1).is_ok());
        assert!(MatMut::new(&mut e, 3, 4, 1, 3).is_ok());
        assert!(MatMut::new(&mut e, 3, 4, 2, 1).is_err());
        assert!(MatMut::new(&mut e, 3, 4, 0, 1).is_err());
        assert!(MatMut::new(&mut e, 1, 4, 0, 1).is_ok());
        assert!(MatRef::new(&d, usize::MAX, 2, usize::MAX, 1).is_err());
    }

    #[test]
    fn shape_mismatch_is_an_error_and_leaves_c_alone() {
        let a = [1f32; 6];
        let b = [1f32; 6];
        let mut c = [7f32; 4];
        let r = gemm(
            Backend::Naive,
            1.0,
            MatRef::row_major(&a, 2, 3).unwrap(),
            MatRef::row_major(&b, 2, 3).unwrap(),
            0.0,
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            &mut [],
        );
        assert!(matches!(r, Err(Error::ShapeMismatch { .. })));
        assert_eq!(c, [7.0; 4]);
    }

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(Backend::from_name(b.name()), Some(b));
        }
        assert_eq!(Backend::from_name("bogus"), None);
    }
}
