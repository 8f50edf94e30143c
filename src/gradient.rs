//! The numerical gradient: central differences over a flat slice, as in the book's
//! `common/gradient.py`.

use crate::error::{Result, check_len};
use crate::math::Float;

/// The book's step, `h = 1e-4` (right for f64; f32 wants a larger one: `zeronn gradcheck
/// --f32` uses 1e-3).
pub const BOOK_H: f64 = 1e-4;

/// For each element of `x`: set it to `x + h`, evaluate `f`, set it to `x - h`, evaluate,
/// restore it exactly, and store `(f(x+h) - f(x-h)) / 2h` in `grad`. Allocates nothing.
///
/// `f` receives the perturbed slice, so it can evaluate a model whose parameters are `x`.
pub fn numerical_gradient<T: Float>(
    h: T,
    x: &mut [T],
    grad: &mut [T],
    mut f: impl FnMut(&[T]) -> Result<T>,
) -> Result<()> {
    check_len("grad", x.len(), grad.len())?;
    let two_h = h + h;
    for i in 0..x.len() {
        let tmp = x[i];
        x[i] = tmp + h;
        let fxh1 = f(x);
        x[i] = tmp - h;
        let fxh2 = f(x);
        x[i] = tmp;
        grad[i] = (fxh1? - fxh2?) / two_h;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_of_sum_of_squares_is_2x() {
        let mut x = [3.0f64, -4.0, 0.5];
        let mut g = [0.0; 3];
        numerical_gradient(1e-4, &mut x, &mut g, |x| Ok(x.iter().map(|v| v * v).sum())).unwrap();
        for (gi, xi) in g.iter().zip([3.0, -4.0, 0.5]) {
            assert!((gi - 2.0 * xi).abs() < 1e-8, "{gi}");
        }
        assert_eq!(x, [3.0, -4.0, 0.5], "x restored");
    }
}
