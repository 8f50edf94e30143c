//! Register kernels: one `MR × NR` tile of C from a packed A sliver and a packed B sliver.

use super::Element;

/// Largest `MR·NR` of any kernel (size of the stack tile for edge tiles).
pub(crate) const MAX_TILE: usize = 256;

/// A register kernel for element type `T`.
pub(crate) trait Kernel<T: Element> {
    /// Rows of the tile.
    const MR: usize;
    /// Columns of the tile.
    const NR: usize;

    /// For the `MR × NR` tile: `s = Σ_{p<kc} a[p·MR + i]·b[p·NR + j]` summed in order of `p`
    /// from zero, then `c(i, j) ← α·s` when β = 0 (C not read) or `α·s + β·c(i, j)` otherwise.
    ///
    /// # Safety
    /// `a` must be valid for `kc·MR` reads, `b` for `kc·NR` reads, and `c + i·rsc + j·csc`
    /// valid for reads and writes for every `i < MR`, `j < NR`, with no two of them equal.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        kc: usize,
        alpha: T,
        a: *const T,
        b: *const T,
        beta: T,
        c: *mut T,
        rsc: usize,
        csc: usize,
    );
}

/// The portable kernel: plain Rust on fixed-size arrays, which compilers keep in registers
/// and vectorize where the target allows. Separate multiply and add (never fused), so it
/// rounds the same on every target.
pub(crate) struct Portable;

const PMR: usize = 4;
const PNR: usize = 8;

impl<T: Element> Kernel<T> for Portable {
    const MR: usize = PMR;
    const NR: usize = PNR;

    #[inline]
    unsafe fn kernel(
        kc: usize,
        alpha: T,
        a: *const T,
        b: *const T,
        beta: T,
        c: *mut T,
        rsc: usize,
        csc: usize,
    ) {
        // SAFETY: the caller guarantees `kc·MR` readable elements at `a` and `kc·NR` at `b`.
        let (a, b) = unsafe {
            (
                core::slice::from_raw_parts(a, kc * PMR),
                core::slice::from_raw_parts(b, kc * PNR),
            )
        };
        let mut acc = [[T::GEMM_ZERO; PNR]; PMR];
        for (ap, bp) in a.chunks_exact(PMR).zip(b.chunks_exact(PNR)) {
            for i in 0..PMR {
                for j in 0..PNR {
                    acc[i][j] = acc[i][j] + ap[i] * bp[j];
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, &s) in row.iter().enumerate() {
                // SAFETY: (i, j) is inside the MR × NR tile the caller made valid.
                let cij = unsafe { &mut *c.add(i * rsc + j * csc) };
                *cij = if beta == T::GEMM_ZERO {
                    alpha * s
                } else {
                    alpha * s + beta * *cij
                };
            }
        }
    }
}

const _: () = assert!(PMR * PNR <= MAX_TILE);
