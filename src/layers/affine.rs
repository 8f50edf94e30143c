//! Affine (fully connected) layer: `out = x·W + b`.
//!
//! Shapes (row-major):
//! - `x`:   batch × input_size
//! - `W`:   input_size × output_size
//! - `b`:   output_size
//! - `out`: batch × output_size
//! - `dout`, `dx`, `dW`, `db`: the shapes of `out`, `x`, `W`, `b`

use crate::error::{Error, Result, check_len, mul};
use crate::gemm::{Context, Epilogue, KC, MatMut, MatRef, SIMD_KC};
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
        self.forward_epilogue(g, out, x, w, b, false)
    }

    /// `out = max(x·W + b, 0)`: this layer and the [`Relu`](crate::Relu) after it in one pass
    /// (the bias and the ReLU are applied as the product is stored).
    pub fn forward_relu<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        w: &[T],
        b: &[T],
    ) -> Result<()> {
        self.forward_epilogue(g, out, x, w, b, true)
    }

    fn forward_epilogue<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        w: &[T],
        b: &[T],
        relu: bool,
    ) -> Result<()> {
        let batch = self.batch(x.len())?;
        let (k, n) = (self.input_size, self.output_size);
        check_len("out", mul(batch, n)?, out.len())?;
        check_len("W", k * n, w.len())?;
        check_len("b", n, b.len())?;
        let x = MatRef::row_major(x, batch, k)?;
        product_bias(g, out, x, MatRef::row_major(w, k, n)?, b, relu)
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
        let batch = self.check_backward(dx.as_deref(), dout, x, w)?;
        let (k, n) = (self.input_size, self.output_size);
        check_len("dW", k * n, dw.len())?;
        check_len("db", n, db.len())?;
        let dout_m = MatRef::row_major(dout, batch, n)?;
        if let Some(dx) = dx {
            dx_product(g, dx, dout_m, w, k)?;
        }
        g.gemm(
            T::ONE,
            MatRef::row_major(x, batch, k)?.t(),
            dout_m,
            T::ZERO,
            MatMut::row_major(dw, k, n)?,
        )?;
        column_sums(dout, db);
        Ok(())
    }

    /// [`Affine::backward`] with the SGD update applied in the same pass, for batches of at
    /// most [`FUSED_MAX_BATCH`] rows: `dx = dout·Wᵀ` (with W before the update), then
    /// `W ← W - lr·xᵀ·dout` (the product's epilogue does the update: the gradient is never
    /// stored) and `b ← b - lr·Σ_rows dout`. Bit for bit the same as `backward` followed by
    /// [`Sgd::update`](crate::Sgd::update), because within one k block every backend stores
    /// `α·s + β·c` with α = -lr, β = 1, rounding like `c - lr·s`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_sgd<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dx: Option<&mut [T]>,
        dout: &[T],
        x: &[T],
        w: &mut [T],
        b: &mut [T],
        lr: T,
    ) -> Result<()> {
        let batch = self.check_backward(dx.as_deref(), dout, x, w)?;
        let (k, n) = (self.input_size, self.output_size);
        check_len("b", n, b.len())?;
        let dout_m = MatRef::row_major(dout, batch, n)?;
        if let Some(dx) = dx {
            // Before the update below, and only once the whole call is known to be valid.
            check_fused(batch)?;
            dx_product(g, dx, dout_m, w, k)?;
        }
        let x = MatRef::row_major(x, batch, k)?;
        sgd_product(g, x, dout_m, MatMut::row_major(w, k, n)?, dout, b, lr)
    }

    /// The input gradient alone, `dx = dout·Wᵀ` (the first product of [`Affine::backward`]),
    /// for a caller that hands `dx` on before it updates `W`: this, then
    /// [`Affine::backward_sgd`] with `dx = None`, is bit for bit that call with `dx`.
    pub fn backward_dx<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dx: &mut [T],
        dout: &[T],
        w: &[T],
    ) -> Result<()> {
        let (k, n) = (self.input_size, self.output_size);
        // The batch that `dout` implies; `self.batch` checks the layer's sizes.
        let batch = self.batch(mul(dout.len() / n.max(1), k)?)?;
        check_len("dout", mul(batch, n)?, dout.len())?;
        check_len("dx", batch * k, dx.len())?;
        check_len("W", k * n, w.len())?;
        dx_product(g, dx, MatRef::row_major(dout, batch, n)?, w, k)
    }

    /// The bias part of [`Affine::backward_sgd`] alone: `b -= lr·Σ_rows dout`, the sums as
    /// every backward of this layer makes them (for a caller that runs the products itself).
    pub fn sgd_bias<T: Float>(&self, dout: &[T], b: &mut [T], lr: T) -> Result<()> {
        let n = self.output_size;
        check_len("b", n, b.len())?;
        if !dout.len().is_multiple_of(n.max(1)) {
            return Err(Error::ShapeMismatch {
                what: "dout must hold whole rows of the layer's outputs",
                expected: n,
                actual: dout.len(),
            });
        }
        sgd_bias(dout, b, lr);
        Ok(())
    }

    /// The bias gradient alone, `db = Σ_rows dout`, the sums as every backward of this layer
    /// makes them (for a caller that runs the products itself).
    pub fn bias_gradient<T: Float>(&self, dout: &[T], db: &mut [T]) -> Result<()> {
        let n = self.output_size;
        check_len("db", n, db.len())?;
        if !dout.len().is_multiple_of(n.max(1)) {
            return Err(Error::ShapeMismatch {
                what: "dout must hold whole rows of the layer's outputs",
                expected: n,
                actual: dout.len(),
            });
        }
        column_sums(dout, db);
        Ok(())
    }

    /// The forward pass with only some inputs: `x` holds, for each row, the inputs `active`
    /// (ascending indices below `input_size`); every other input is zero, so it adds nothing
    /// and only the rows `active` of `W` are read: `out = x·W[active, :] + b`, then
    /// `max(·, 0)` if `relu`. For inputs that are mostly zero across a batch (blank pixels),
    /// this skips their work exactly.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_active<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        active: &[usize],
        w: &[T],
        b: &[T],
        relu: bool,
    ) -> Result<()> {
        let (batch, k, n) = self.check_active(out.len(), x.len(), active, w.len())?;
        check_len("b", n, b.len())?;
        let x = MatRef::row_major(x, batch, k)?;
        product_bias(g, out, x, MatRef::gather_rows(w, active, n, n)?, b, relu)
    }

    /// [`Affine::backward_sgd`] for a first layer run by [`Affine::forward_active`]: `dx` is
    /// not computed; `W[active, :] -= lr·xᵀ·dout` (the other rows have zero gradient and stay
    /// exactly as they are) and `b -= lr·Σ_rows dout`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_sgd_active<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dout: &[T],
        x: &[T],
        active: &[usize],
        w: &mut [T],
        b: &mut [T],
        lr: T,
    ) -> Result<()> {
        let (batch, k, n) = self.check_active(dout.len(), x.len(), active, w.len())?;
        check_len("b", n, b.len())?;
        let (x, dout_m) = (
            MatRef::row_major(x, batch, k)?,
            MatRef::row_major(dout, batch, n)?,
        );
        sgd_product(
            g,
            x,
            dout_m,
            MatMut::gather_rows(w, active, n, n)?,
            dout,
            b,
            lr,
        )
    }

    /// [`Affine::backward`] for a first layer run by [`Affine::forward_active`]: `dx` is not
    /// computed; `dW[active, :] = xᵀ·dout`, the other rows of `dW` are zero (their inputs are),
    /// and `db = Σ_rows dout`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_active<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dw: &mut [T],
        db: &mut [T],
        dout: &[T],
        x: &[T],
        active: &[usize],
    ) -> Result<()> {
        let (batch, k, n) = self.check_active(dout.len(), x.len(), active, dw.len())?;
        check_len("db", n, db.len())?;
        dw.fill(T::ZERO);
        let rows = MatMut::gather_rows(dw, active, n, n)?;
        active_gradient(g, rows, db, dout, MatRef::row_major(x, batch, k)?)
    }

    /// [`Affine::backward_active`] with the gradient of the active rows only, compactly:
    /// `dw` (`active.len()` × output, row-major) `= xᵀ·dout`, `db = Σ_rows dout`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_active_compact<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dw: &mut [T],
        db: &mut [T],
        dout: &[T],
        x: &[T],
        active: &[usize],
    ) -> Result<()> {
        let whole = mul(self.input_size, self.output_size)?;
        let (batch, k, n) = self.check_active(dout.len(), x.len(), active, whole)?;
        check_len("dW (active rows)", k * n, dw.len())?;
        check_len("db", n, db.len())?;
        let rows = MatMut::row_major(dw, k, n)?;
        active_gradient(g, rows, db, dout, MatRef::row_major(x, batch, k)?)
    }

    /// Checks the shapes of the `_active` methods; returns (batch, active inputs, outputs).
    fn check_active(
        &self,
        out_len: usize,
        x_len: usize,
        active: &[usize],
        w_len: usize,
    ) -> Result<(usize, usize, usize)> {
        let (i, n) = (self.input_size, self.output_size);
        if i == 0 || n == 0 {
            return Err(Error::ZeroSize {
                what: "Affine size",
            });
        }
        check_len("W", mul(i, n)?, w_len)?;
        if !active.windows(2).all(|p| p[0] < p[1]) || active.last().is_some_and(|&a| a >= i) {
            return Err(Error::ShapeMismatch {
                what: "active inputs must increase and be below input_size",
                expected: i,
                actual: active.last().copied().unwrap_or(0),
            });
        }
        let batch = out_len / n;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_len("out/dout", batch * n, out_len)?;
        check_len("x", mul(batch, active.len())?, x_len)?;
        Ok((batch, active.len(), n))
    }

    fn check_backward<T>(&self, dx: Option<&[T]>, dout: &[T], x: &[T], w: &[T]) -> Result<usize> {
        let batch = self.batch(x.len())?;
        let (k, n) = (self.input_size, self.output_size);
        check_len("dout", mul(batch, n)?, dout.len())?;
        check_len("W", k * n, w.len())?;
        if let Some(dx) = dx {
            check_len("dx", batch * k, dx.len())?; // batch·k ≤ x.len()
        }
        Ok(batch)
    }
}

/// The weight gradient of the active rows, `dw = xᵀ·dout` (into whatever rows `dw` views),
/// and `db = Σ_rows dout`, for the `_active` backward passes (shapes checked by the caller).
fn active_gradient<T: Float>(
    g: &mut Context<'_, T>,
    dw: MatMut<'_, T>,
    db: &mut [T],
    dout: &[T],
    x: MatRef<'_, T>,
) -> Result<()> {
    let dout_m = MatRef::row_major(dout, x.rows(), dw.cols())?;
    g.gemm(T::ONE, x.t(), dout_m, T::ZERO, dw)?;
    column_sums(dout, db);
    Ok(())
}

/// `out = x·w + b`, then `max(·, 0)` if `relu` (the epilogue of the product's store).
fn product_bias<T: Float>(
    g: &mut Context<'_, T>,
    out: &mut [T],
    x: MatRef<'_, T>,
    w: MatRef<'_, T>,
    b: &[T],
    relu: bool,
) -> Result<()> {
    let epi = if relu {
        Epilogue::BiasRelu(b)
    } else {
        Epilogue::Bias(b)
    };
    let out = MatMut::row_major(out, x.rows(), w.cols())?;
    g.gemm_ex(T::ONE, x, w, T::ZERO, out, epi)
}

/// `dx = dout·Wᵀ` for a `k × n` row-major `w`.
fn dx_product<T: Float>(
    g: &mut Context<'_, T>,
    dx: &mut [T],
    dout: MatRef<'_, T>,
    w: &[T],
    k: usize,
) -> Result<()> {
    let (batch, n) = (dout.rows(), dout.cols());
    let dx = MatMut::row_major(dx, batch, k)?;
    g.gemm(T::ONE, dout, MatRef::row_major(w, k, n)?.t(), T::ZERO, dx)
}

/// The fused updates need the whole batch in one k block of the products.
fn check_fused(batch: usize) -> Result<()> {
    if batch > FUSED_MAX_BATCH {
        return Err(Error::FusedBatchTooLarge {
            batch,
            max: FUSED_MAX_BATCH,
        });
    }
    Ok(())
}

/// The SGD update of a layer fused into its weight gradient's product: `w -= lr·xᵀ·dout` (the
/// product's store does it: the gradient is never stored), then `b -= lr·Σ_rows dout`.
fn sgd_product<T: Float>(
    g: &mut Context<'_, T>,
    x: MatRef<'_, T>,
    dout_m: MatRef<'_, T>,
    w: MatMut<'_, T>,
    dout: &[T],
    b: &mut [T],
    lr: T,
) -> Result<()> {
    check_fused(x.rows())?;
    g.gemm(-lr, x.t(), dout_m, T::ONE, w)?;
    sgd_bias(dout, b, lr);
    Ok(())
}

/// `sums[j] = Σ_rows m[row][j]` for a row-major `m` with `sums.len()` columns, each column
/// summed from the first row down (row after row, so it vectorizes across columns).
fn column_sums<T: Float>(m: &[T], sums: &mut [T]) {
    let n = sums.len();
    let mut rows = m.chunks_exact(n);
    match rows.next() {
        Some(first) => sums.copy_from_slice(first),
        None => sums.fill(T::ZERO),
    }
    for row in rows {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
}

/// `b[j] -= lr · Σ_rows dout[row][j]`, the sums exactly as [`column_sums`] makes them, in
/// blocks of columns on the stack (no buffer needed from the caller).
fn sgd_bias<T: Float>(dout: &[T], b: &mut [T], lr: T) {
    const BLOCK: usize = 64;
    let n = b.len();
    for j0 in (0..n).step_by(BLOCK) {
        let w = BLOCK.min(n - j0);
        let mut s = [T::ZERO; BLOCK];
        let mut rows = dout.chunks_exact(n);
        if let Some(first) = rows.next() {
            s[..w].copy_from_slice(&first[j0..j0 + w]);
        }
        for row in rows {
            for (x, &v) in s[..w].iter_mut().zip(&row[j0..j0 + w]) {
                *x += v;
            }
        }
        for (bj, &x) in b[j0..j0 + w].iter_mut().zip(&s[..w]) {
            *bj -= lr * x;
        }
    }
}

/// Largest batch for which [`Affine::backward_sgd`] is exact: the products sum over the batch
/// in one k block of every backend ([`gemm::KC`](crate::gemm::KC) and
/// [`gemm::SIMD_KC`](crate::gemm::SIMD_KC)).
pub const FUSED_MAX_BATCH: usize = if KC < SIMD_KC { KC } else { SIMD_KC };
