//! The algorithmic reference: a triple loop with the same contract as every other backend.
//! Kept simple on purpose; tests hold the fast backends against it.

use super::{Element, MatMut, MatRef};

/// `C ← α·A·B + β·C` by the definition, summing over `k` in order from zero. C is not read
/// when β = 0. Shapes must already agree (the public [`super::gemm`] checks them).
pub fn gemm<T: Element>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    debug_assert!(b.rows() == k && c.rows() == m && c.cols() == n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::GEMM_ZERO;
            for p in 0..k {
                acc = acc + a.at_slow(i, p) * b.at_slow(p, j);
            }
            let cij = c.at_mut_slow(i, j);
            *cij = if beta == T::GEMM_ZERO {
                alpha * acc
            } else {
                alpha * acc + beta * *cij
            };
        }
    }
}
