//! The `matrixmultiply` crate as a backend (feature `matrixmultiply`).

use super::{MatMut, MatRef};

/// Converts a stride that fits a validated slice extent to `isize`.
fn s(x: usize) -> isize {
    // A validated view spans at most `isize::MAX` elements (slices never exceed that), so a
    // stride actually used fits; strides of a 1-wide dimension are never used and may be huge.
    isize::try_from(x).unwrap_or(isize::MAX)
}

pub(super) fn sgemm(
    alpha: f32,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (rsc, csc) = (c.row_stride(), c.col_stride());
    let cp = c.data.as_mut_ptr();
    // SAFETY: the views were validated to lie inside their slices and C is injective;
    // shapes were checked by `gemm`; matrixmultiply reads/writes only inside those extents.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data().as_ptr(),
            s(a.row_stride()),
            s(a.col_stride()),
            b.data().as_ptr(),
            s(b.row_stride()),
            s(b.col_stride()),
            beta,
            cp,
            s(rsc),
            s(csc),
        )
    }
}

pub(super) fn dgemm(
    alpha: f64,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    beta: f64,
    c: MatMut<'_, f64>,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (rsc, csc) = (c.row_stride(), c.col_stride());
    let cp = c.data.as_mut_ptr();
    // SAFETY: as in `sgemm`.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.data().as_ptr(),
            s(a.row_stride()),
            s(a.col_stride()),
            b.data().as_ptr(),
            s(b.row_stride()),
            s(b.col_stride()),
            beta,
            cp,
            s(rsc),
            s(csc),
        )
    }
}
