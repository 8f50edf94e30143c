//! Affine (fully connected) layer: `out = x·W + b`.
//!
//! Shapes (row-major):
//! - `x`:   batch × input_size
//! - `W`:   input_size × output_size
//! - `b`:   output_size
//! - `out`: batch × output_size
//! - `dout`, `dx`, `dW`, `db`: the shapes of `out`, `x`, `W`, `b`

use crate::error::{Error, Result, check_len, mul};
use crate::gemm::{Context, MatMut, MatRef};
use crate::math::Float;

/// A fully connected layer: `input_size` inputs to `output_size` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affine {
    /// Features in.
    pub input_size: usize,
    /// Features out.
    pub output_size: usize,
}

impl Affine {
    /// A layer from `input_size` to `output_size`.
    pub const fn new(input_size: usize, output_size: usize) -> Self {
        Affine {
            input_size,
            output_size,
        }
    }

    /// Elements of `W`.
    pub const fn weight_len(&self) -> usize {
        self.input_size.saturating_mul(self.output_size)
    }

    /// Elements of `W` and `b` together.
    pub const fn param_len(&self) -> usize {
        self.weight_len().saturating_add(self.output_size)
    }

    /// Batch size implied by an input of `x_len` elements, checked to be whole and positive.
    fn batch(&self, x_len: usize) -> Result<usize> {
        if self.input_size == 0 || self.output_size == 0 {
            return Err(Error::ZeroSize {
                what: "Affine size",
            });
        }
        mul(self.input_size, self.output_size)?;
        let batch = x_len / self.input_size;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_len("x", batch * self.input_size, x_len)?;
        Ok(batch)
    }

    /// `out = x·W + b`.
    pub fn forward<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        w: &[T],
        b: &[T],
    ) -> Result<()> {
        let batch = self.batch(x.len())?;
        let (k, n) = (self.input_size, self.output_size);
        check_len("out", mul(batch, n)?, out.len())?;
        check_len("W", k * n, w.len())?;
        check_len("b", n, b.len())?;
        for row in out.chunks_exact_mut(n) {
            row.copy_from_slice(b);
        }
        g.gemm(
            T::ONE,
            MatRef::row_major(x, batch, k)?,
            MatRef::row_major(w, k, n)?,
            T::ONE,
            MatMut::row_major(out, batch, n)?,
        )
    }

    /// Differentiates `out = x·W + b`:
    /// `dx = dout·Wᵀ` (skipped when `dx` is `None`, as for a first layer), `dW = xᵀ·dout`,
    /// `db = Σ_rows dout`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dx: Option<&mut [T]>,
        dw: &mut [T],
        db: &mut [T],
        dout: &[T],
        x: &[T],
        w: &[T],
    ) -> Result<()> {
        let batch = self.batch(x.len())?;
        let (k, n) = (self.input_size, self.output_size);
        check_len("dout", mul(batch, n)?, dout.len())?;
        check_len("W", k * n, w.len())?;
        check_len("dW", k * n, dw.len())?;
        check_len("db", n, db.len())?;
        if let Some(dx) = &dx {
            check_len("dx", batch * k, dx.len())?; // batch·k ≤ x.len()
        }
        let dout_m = MatRef::row_major(dout, batch, n)?;
        let x_m = MatRef::row_major(x, batch, k)?;
        if let Some(dx) = dx {
            let w_m = MatRef::row_major(w, k, n)?;
            g.gemm(
                T::ONE,
                dout_m,
                w_m.t(),
                T::ZERO,
                MatMut::row_major(dx, batch, k)?,
            )?;
        }
        g.gemm(
            T::ONE,
            x_m.t(),
            dout_m,
            T::ZERO,
            MatMut::row_major(dw, k, n)?,
        )?;
        db.copy_from_slice(&dout[..n]);
        for row in dout.chunks_exact(n).skip(1) {
            for (d, &r) in db.iter_mut().zip(row) {
                *d += r;
            }
        }
        Ok(())
    }
}
