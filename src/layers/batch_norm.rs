//! Batch normalization (the book's `BatchNormalization`): each value normalized over the
//! batch, then scaled and shifted, `out = gamma · (x − μ) / √(σ² + ε) + beta`.
//!
//! Shapes (row-major, one row per sample; `F = features`):
//! - `io`:   batch × F (the input `x`, overwritten by `out`; backward: `dout`, overwritten by `dx`)
//! - `xc`:   batch × F, `x − μ` (kept from forward for backward)
//! - `std`:  F, `√(σ² + ε)` of the batch (kept from forward for backward)
//! - `gamma`, `beta`, `dgamma`, `dbeta`, `running_mean`, `running_var`: F
//!
//! In training the statistics are the batch's (`μ` its mean, `σ²` its variance), and the
//! running ones follow them with momentum 0.9: `running = 0.9·running + 0.1·batch`. In
//! inference the running ones are used. `ε` is the book's `10e-7` (1e-6).

use crate::error::{Error, Result, check_len};
use crate::math::Float;

/// The book's `10e-7`, added to the variance.
pub const BATCH_NORM_EPS: f64 = 10e-7;

/// The book's momentum of the running statistics.
pub const BATCH_NORM_MOMENTUM: f64 = 0.9;

/// Columns per block: the loops run down the rows of a block of columns, with the block's
/// sums on the stack (no workspace needed for them).
const BLOCK: usize = 64;

/// Batch normalization of `features` values per sample.
#[doc(alias = "BatchNormalization")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchNorm {
    /// Values per sample.
    pub features: usize,
}

/// Where [`BatchNorm`]'s backward puts the gradient of `gamma` and `beta`.
enum ParamGrad<'a, T> {
    /// Into `dgamma`, `dbeta`.
    Store {
        gamma: &'a [T],
        dgamma: &'a mut [T],
        dbeta: &'a mut [T],
    },
    /// Straight into an SGD step: `gamma -= lr·dgamma`, `beta -= lr·dbeta`.
    Sgd {
        gamma: &'a mut [T],
        beta: &'a mut [T],
        lr: T,
    },
}

impl BatchNorm {
    /// The layer for `features` values per sample.
    pub const fn new(features: usize) -> Self {
        BatchNorm { features }
    }

    /// Checks `io` holds whole rows and the vectors' lengths; returns the batch.
    fn check<T>(&self, io: &[T], vectors: &[(&'static str, usize)]) -> Result<usize> {
        let f = self.features;
        if f == 0 {
            return Err(Error::ZeroSize {
                what: "BatchNorm features",
            });
        }
        let batch = io.len() / f;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_len("x", batch * f, io.len())?;
        for &(name, len) in vectors {
            check_len(name, f, len)?;
        }
        Ok(batch)
    }

    /// Training forward, in place: `io` holds `x` and becomes `out`; the batch's `xc = x − μ`
    /// and `std = √(σ² + ε)` are kept for backward; with `running` (the running mean and
    /// variance), they take a step toward the batch's.
    pub fn forward_train_inplace<T: Float>(
        &self,
        io: &mut [T],
        xc: &mut [T],
        std: &mut [T],
        gamma: &[T],
        beta: &[T],
        running: Option<(&mut [T], &mut [T])>,
    ) -> Result<()> {
        let (rm_len, rv_len) = running
            .as_ref()
            .map_or((self.features, self.features), |(m, v)| (m.len(), v.len()));
        let batch = self.check(
            io,
            &[
                ("std", std.len()),
                ("gamma", gamma.len()),
                ("beta", beta.len()),
                ("running_mean", rm_len),
                ("running_var", rv_len),
            ],
        )?;
        let mut running = running;
        check_len("xc", io.len(), xc.len())?;
        let f = self.features;
        let n = T::from_usize(batch);
        let eps = T::from_f64(BATCH_NORM_EPS);
        let (m, one_m) = (
            T::from_f64(BATCH_NORM_MOMENTUM),
            T::from_f64(1.0 - BATCH_NORM_MOMENTUM),
        );
        for j0 in (0..f).step_by(BLOCK) {
            let w = BLOCK.min(f - j0);
            let cols = j0..j0 + w;
            // μ = mean(x)
            let mut mu = [T::ZERO; BLOCK];
            for row in io.chunks_exact(f) {
                for (s, &v) in mu[..w].iter_mut().zip(&row[cols.clone()]) {
                    *s += v;
                }
            }
            for s in &mut mu[..w] {
                *s = *s / n;
            }
            // xc = x − μ; σ² = mean(xc²)
            let mut var = [T::ZERO; BLOCK];
            for (row, xrow) in io.chunks_exact(f).zip(xc.chunks_exact_mut(f)) {
                for (((c, &v), &u), s) in xrow[cols.clone()]
                    .iter_mut()
                    .zip(&row[cols.clone()])
                    .zip(&mu[..w])
                    .zip(&mut var[..w])
                {
                    *c = v - u;
                    *s += *c * *c;
                }
            }
            for ((s, sd), j) in var[..w].iter_mut().zip(&mut std[cols.clone()]).zip(j0..) {
                *s = *s / n;
                *sd = (*s + eps).sqrt();
                if let Some((rm, rv)) = running.as_mut() {
                    rm[j] = m * rm[j] + one_m * mu[j - j0];
                    rv[j] = m * rv[j] + one_m * *s;
                }
            }
            // out = gamma·(xc / std) + beta
            for (row, xrow) in io.chunks_exact_mut(f).zip(xc.chunks_exact(f)) {
                for ((o, &c), j) in row[cols.clone()]
                    .iter_mut()
                    .zip(&xrow[cols.clone()])
                    .zip(j0..)
                {
                    *o = gamma[j] * (c / std[j]) + beta[j];
                }
            }
        }
        Ok(())
    }

    /// Inference forward, in place, with the running statistics:
    /// `out = gamma · (x − running_mean) / √(running_var + ε) + beta`.
    pub fn forward_infer_inplace<T: Float>(
        &self,
        io: &mut [T],
        gamma: &[T],
        beta: &[T],
        running_mean: &[T],
        running_var: &[T],
    ) -> Result<()> {
        self.check(
            io,
            &[
                ("gamma", gamma.len()),
                ("beta", beta.len()),
                ("running_mean", running_mean.len()),
                ("running_var", running_var.len()),
            ],
        )?;
        let f = self.features;
        let eps = T::from_f64(BATCH_NORM_EPS);
        for j0 in (0..f).step_by(BLOCK) {
            let w = BLOCK.min(f - j0);
            let mut sd = [T::ZERO; BLOCK];
            for (s, &v) in sd[..w].iter_mut().zip(&running_var[j0..j0 + w]) {
                *s = (v + eps).sqrt();
            }
            for row in io.chunks_exact_mut(f) {
                for ((o, j), &s) in row[j0..j0 + w].iter_mut().zip(j0..).zip(&sd[..w]) {
                    *o = gamma[j] * ((*o - running_mean[j]) / s) + beta[j];
                }
            }
        }
        Ok(())
    }

    /// Differentiates [`BatchNorm::forward_train_inplace`], in place: `io` holds `dout` and
    /// becomes `dx`; `dgamma = Σ_rows xn·dout`, `dbeta = Σ_rows dout` (`xn = xc / std`), by
    /// the book's steps: `dxn = gamma·dout`, `dxc = dxn / std`, `dstd = −Σ dxn·xc / std²`,
    /// `dvar = 0.5·dstd / std`, `dxc += (2/batch)·xc·dvar`, `dx = dxc − Σ dxc / batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_inplace<T: Float>(
        &self,
        io: &mut [T],
        xc: &[T],
        std: &[T],
        gamma: &[T],
        dgamma: &mut [T],
        dbeta: &mut [T],
    ) -> Result<()> {
        self.check(
            io,
            &[
                ("std", std.len()),
                ("gamma", gamma.len()),
                ("dgamma", dgamma.len()),
                ("dbeta", dbeta.len()),
            ],
        )?;
        check_len("xc", io.len(), xc.len())?;
        self.backward_blocks(
            io,
            xc,
            std,
            ParamGrad::Store {
                gamma,
                dgamma,
                dbeta,
            },
        );
        Ok(())
    }

    /// [`BatchNorm::backward_inplace`] with the SGD step of `gamma` and `beta` in the same
    /// pass (`gamma -= lr·dgamma`, `beta -= lr·dbeta`, after `dx` is computed with `gamma`
    /// before the step): bit for bit the backward, then [`Sgd::update`](crate::Sgd::update).
    pub fn backward_sgd_inplace<T: Float>(
        &self,
        io: &mut [T],
        xc: &[T],
        std: &[T],
        gamma: &mut [T],
        beta: &mut [T],
        lr: T,
    ) -> Result<()> {
        self.check(
            io,
            &[
                ("std", std.len()),
                ("gamma", gamma.len()),
                ("beta", beta.len()),
            ],
        )?;
        check_len("xc", io.len(), xc.len())?;
        self.backward_blocks(io, xc, std, ParamGrad::Sgd { gamma, beta, lr });
        Ok(())
    }

    fn backward_blocks<T: Float>(
        &self,
        io: &mut [T],
        xc: &[T],
        std: &[T],
        mut p: ParamGrad<'_, T>,
    ) {
        let f = self.features;
        let n = T::from_usize(io.len() / f);
        let two_n = T::from_f64(2.0) / n;
        let half = T::from_f64(0.5);
        for j0 in (0..f).step_by(BLOCK) {
            let w = BLOCK.min(f - j0);
            let cols = j0..j0 + w;
            let gamma: &[T] = match &p {
                ParamGrad::Store { gamma, .. } => &gamma[cols.clone()],
                ParamGrad::Sgd { gamma, .. } => &gamma[cols.clone()],
            };
            let sd = &std[cols.clone()];
            // dbeta, dgamma, dstd: sums down the rows.
            let (mut db, mut dg, mut dstd) = ([T::ZERO; BLOCK], [T::ZERO; BLOCK], [T::ZERO; BLOCK]);
            for (drow, xrow) in io.chunks_exact(f).zip(xc.chunks_exact(f)) {
                for k in 0..w {
                    let (d, c) = (drow[j0 + k], xrow[j0 + k]);
                    db[k] += d;
                    dg[k] += c / sd[k] * d;
                    let dxn = gamma[k] * d;
                    dstd[k] += dxn * c / (sd[k] * sd[k]);
                }
            }
            let mut dvar = [T::ZERO; BLOCK];
            for k in 0..w {
                dvar[k] = half * (-dstd[k]) / sd[k];
            }
            // dxc = dxn / std + (2/batch)·xc·dvar, in place; dμ = Σ dxc.
            let mut dmu = [T::ZERO; BLOCK];
            for (drow, xrow) in io.chunks_exact_mut(f).zip(xc.chunks_exact(f)) {
                for k in 0..w {
                    let d = &mut drow[j0 + k];
                    let dxc = gamma[k] * *d / sd[k] + two_n * xrow[j0 + k] * dvar[k];
                    *d = dxc;
                    dmu[k] += dxc;
                }
            }
            // dx = dxc − dμ / batch.
            for drow in io.chunks_exact_mut(f) {
                for (d, &m) in drow[cols.clone()].iter_mut().zip(&dmu[..w]) {
                    *d -= m / n;
                }
            }
            match &mut p {
                ParamGrad::Store { dgamma, dbeta, .. } => {
                    dgamma[cols.clone()].copy_from_slice(&dg[..w]);
                    dbeta[cols.clone()].copy_from_slice(&db[..w]);
                }
                ParamGrad::Sgd { gamma, beta, lr } => {
                    for k in 0..w {
                        gamma[j0 + k] -= *lr * dg[k];
                        beta[j0 + k] -= *lr * db[k];
                    }
                }
            }
        }
    }
}
