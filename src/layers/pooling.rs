//! Max pooling (the book's `Pooling`): each channel cut into windows of `pool_h × pool_w`
//! taken every `stride` values, and each window's largest value kept.
//!
//! Shapes (row-major, NCHW; `C, H, W` the input's, `OH = (H − pool_h) / stride + 1`, likewise
//! `OW`):
//! - `x`, `dx`:        batch × C × H × W
//! - `out`, `dout`:    batch × C × OH × OW
//! - `argmax`:         batch × C × OH × OW, where in its window each maximum was (`i·pool_w + j`,
//!   stored as a value of the element type; kept from forward for backward)
//!
//! Ties go to the first maximum in row order, as `np.argmax` in the book's layer.

use crate::error::{Error, Result, check_len, mul};
use crate::layers::Dims;
use crate::math::Float;

/// Max pooling of `pool_h × pool_w` windows every `stride` values over an input of shape
/// `input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// The shape of one sample in.
    pub input: Dims,
    /// Window height.
    pub pool_h: usize,
    /// Window width.
    pub pool_w: usize,
    /// Step between two windows, in both directions.
    pub stride: usize,
}

impl Pooling {
    /// Windows of `pool_h × pool_w` every `stride` values over `input`.
    pub const fn new(input: Dims, pool_h: usize, pool_w: usize, stride: usize) -> Self {
        Pooling {
            input,
            pool_h,
            pool_w,
            stride,
        }
    }

    /// The shape of one sample out: `C × OH × OW` (0 × 0 if a window does not fit, or the
    /// stride is 0).
    pub const fn output_dims(&self) -> Dims {
        let d = &self.input;
        if self.stride == 0
            || self.pool_h == 0
            || self.pool_w == 0
            || d.height < self.pool_h
            || d.width < self.pool_w
        {
            return Dims::new(d.channels, 0, 0);
        }
        Dims::new(
            d.channels,
            (d.height - self.pool_h) / self.stride + 1,
            (d.width - self.pool_w) / self.stride + 1,
        )
    }

    /// Checks the layer's sizes.
    pub fn validate(&self) -> Result<()> {
        if self.input.is_empty() || self.pool_h == 0 || self.pool_w == 0 {
            return Err(Error::ZeroSize {
                what: "Pooling size",
            });
        }
        if self.stride == 0 {
            return Err(Error::InvalidValue {
                what: "Pooling stride (must be at least 1)",
            });
        }
        if self.output_dims().is_empty() {
            return Err(Error::ShapeMismatch {
                what: "Pooling window taller or wider than its input",
                expected: self.input.height.min(self.input.width),
                actual: self.pool_h.max(self.pool_w),
            });
        }
        Ok(())
    }

    /// Checks sizes and lengths; returns the batch.
    fn batch(&self, x_len: usize, out_len: usize) -> Result<usize> {
        self.validate()?;
        let n = self.input.len();
        let batch = x_len / n;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_len("x", mul(batch, n)?, x_len)?;
        check_len("out", batch * self.output_dims().len(), out_len)?;
        Ok(batch)
    }

    /// `out = max over each window of x`, and where each maximum was into `argmax` if given
    /// (training).
    pub fn forward<T: Float>(
        &self,
        out: &mut [T],
        x: &[T],
        mut argmax: Option<&mut [T]>,
    ) -> Result<()> {
        let batch = self.batch(x.len(), out.len())?;
        if let Some(a) = argmax.as_deref() {
            check_len("argmax", out.len(), a.len())?;
        }
        let Dims {
            height: h,
            width: w,
            ..
        } = self.input;
        let od = self.output_dims();
        let (ph, pw, s) = (self.pool_h, self.pool_w, self.stride);
        let ow = od.width;
        if (ph, pw, s) == (2, 2, 2) {
            self.forward_2x2(out, x, argmax, batch);
            return Ok(());
        }
        // Window element by window element, each over a whole output row: the outputs'
        // comparisons do not wait on each other (one window at a time would chain them).
        let planes = batch * self.input.channels;
        for q in 0..planes {
            let xp = &x[q * h * w..][..h * w];
            for oy in 0..od.height {
                let o = q * od.plane() + oy * ow;
                let orow = &mut out[o..o + ow];
                let mut arow = argmax.as_deref_mut().map(|a| &mut a[o..o + ow]);
                for i in 0..ph {
                    let row = &xp[(oy * s + i) * w..][..w];
                    for j in 0..pw {
                        let first = i == 0 && j == 0;
                        let vals = row[j..].iter().step_by(s);
                        match arow.as_deref_mut() {
                            None if first => {
                                for (ov, &v) in orow.iter_mut().zip(vals) {
                                    *ov = v;
                                }
                            }
                            None => {
                                for (ov, &v) in orow.iter_mut().zip(vals) {
                                    if v > *ov {
                                        *ov = v;
                                    }
                                }
                            }
                            Some(a) => {
                                let at = T::from_usize(i * pw + j);
                                for ((ov, av), &v) in orow.iter_mut().zip(a.iter_mut()).zip(vals) {
                                    if first || v > *ov {
                                        *ov = v;
                                        *av = at;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Pooling::forward`] for 2 × 2 windows every 2 (the book's nets): each output from
    /// its two pairs of inputs.
    fn forward_2x2<T: Float>(
        &self,
        out: &mut [T],
        x: &[T],
        argmax: Option<&mut [T]>,
        batch: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::gemm::detect::avx512() {
            // SAFETY: AVX-512F is present, all that `wide` enables.
            return unsafe { wide::forward_2x2(self, out, x, argmax, batch) };
        }
        self.forward_2x2_body(out, x, argmax, batch)
    }

    /// [`Pooling::forward_2x2`]'s loops, inlined into each build of it.
    #[inline(always)]
    fn forward_2x2_body<T: Float>(
        &self,
        out: &mut [T],
        x: &[T],
        mut argmax: Option<&mut [T]>,
        batch: usize,
    ) {
        let (h, w) = (self.input.height, self.input.width);
        let od = self.output_dims();
        let ow = od.width;
        let pos = [T::ZERO, T::ONE, T::from_usize(2), T::from_usize(3)];
        for q in 0..batch * self.input.channels {
            let xp = &x[q * h * w..][..h * w];
            for oy in 0..od.height {
                let o = q * od.plane() + oy * ow;
                let (r0, r1) = (
                    &xp[2 * oy * w..][..2 * ow],
                    &xp[(2 * oy + 1) * w..][..2 * ow],
                );
                let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
                match argmax.as_deref_mut() {
                    None => {
                        for (ov, (a, b)) in out[o..o + ow].iter_mut().zip(pairs) {
                            let mut m = a[0];
                            for v in [a[1], b[0], b[1]] {
                                if v > m {
                                    m = v;
                                }
                            }
                            *ov = m;
                        }
                    }
                    Some(arg) => {
                        let outs = out[o..o + ow].iter_mut().zip(arg[o..o + ow].iter_mut());
                        for ((ov, av), (a, b)) in outs.zip(pairs) {
                            let (mut m, mut at) = (a[0], pos[0]);
                            for (v, p) in [(a[1], pos[1]), (b[0], pos[2]), (b[1], pos[3])] {
                                if v > m {
                                    (m, at) = (v, p);
                                }
                            }
                            *ov = m;
                            *av = at;
                        }
                    }
                }
            }
        }
    }

    /// The naive twin of [`Pooling::forward`]: one window at a time, in row order.
    pub fn forward_naive<T: Float>(&self, out: &mut [T], x: &[T], argmax: &mut [T]) -> Result<()> {
        let batch = self.batch(x.len(), out.len())?;
        check_len("argmax", out.len(), argmax.len())?;
        let (h, w) = (self.input.height, self.input.width);
        let od = self.output_dims();
        let s = self.stride;
        for q in 0..batch * self.input.channels {
            for oy in 0..od.height {
                for ox in 0..od.width {
                    let at = |i: usize, j: usize| x[q * h * w + (oy * s + i) * w + ox * s + j];
                    let (mut best, mut arg) = (at(0, 0), 0);
                    for i in 0..self.pool_h {
                        for j in 0..self.pool_w {
                            if at(i, j) > best {
                                (best, arg) = (at(i, j), i * self.pool_w + j);
                            }
                        }
                    }
                    let o = q * od.plane() + oy * od.width + ox;
                    out[o] = best;
                    argmax[o] = T::from_usize(arg);
                }
            }
        }
        Ok(())
    }

    /// Refuses an `argmax` value no forward pass wrote, before anything is written: never an
    /// index out of the window.
    fn check_argmax<T: Float>(&self, dout: &[T], argmax: &[T]) -> Result<()> {
        check_len("argmax", dout.len(), argmax.len())?;
        let end = T::from_usize(self.pool_h * self.pool_w);
        if !argmax
            .iter()
            .fold(true, |ok, &a| ok & (a >= T::ZERO && a < end))
        {
            return Err(Error::InvalidValue {
                what: "Pooling argmax (not a position in the window)",
            });
        }
        Ok(())
    }

    /// Differentiates `out = max over each window of x`: `dx` is zero except at each
    /// window's maximum, which receives the window's `dout` (added up where windows overlap).
    pub fn backward<T: Float>(&self, dx: &mut [T], dout: &[T], argmax: &[T]) -> Result<()> {
        let batch = self.batch(dx.len(), dout.len())?;
        self.check_argmax(dout, argmax)?;
        self.backward_checked(dx, dout, argmax, None, batch);
        Ok(())
    }

    /// [`Pooling::backward`] of a Pooling whose input is a [`Relu`](crate::Relu)'s output,
    /// and that ReLU's backward with it: `out` is this Pooling's output from the same forward
    /// pass. The Pooling's gradient reaches only each window's maximum, where the ReLU's
    /// output is the window's `out`, so the ReLU's mask there is `out > 0`: the same bits as
    /// the two layers' backward one after the other, without reading the ReLU's output (four
    /// times as large as `out`).
    pub fn backward_relu<T: Float>(
        &self,
        dx: &mut [T],
        dout: &[T],
        argmax: &[T],
        out: &[T],
    ) -> Result<()> {
        let batch = self.batch(dx.len(), dout.len())?;
        check_len("out", dout.len(), out.len())?;
        self.check_argmax(dout, argmax)?;
        self.backward_checked(dx, dout, argmax, Some(out), batch);
        Ok(())
    }

    /// [`Pooling::backward`] for checked lengths and `argmax`; with `out`, only the windows
    /// whose output is above 0 pass their gradient ([`Pooling::backward_relu`]).
    fn backward_checked<T: Float>(
        &self,
        dx: &mut [T],
        dout: &[T],
        argmax: &[T],
        out: Option<&[T]>,
        batch: usize,
    ) {
        let Dims {
            height: h,
            width: w,
            ..
        } = self.input;
        let od = self.output_dims();
        let (pw, s) = (self.pool_w, self.stride);
        let window = self.pool_h * pw;
        if (self.pool_h, pw, s) == (2, 2, 2) {
            self.backward_2x2(dx, dout, argmax, out, batch);
            return;
        }
        // Each window position's offset from the window's corner, looked up (no division per
        // value) for windows of up to 64 values.
        const TABLE: usize = 64;
        let mut table = [0usize; TABLE];
        for (at, t) in table.iter_mut().enumerate().take(window) {
            *t = (at / pw) * w + at % pw;
        }
        let offset = |at: usize| {
            if window <= TABLE {
                table[at]
            } else {
                (at / pw) * w + at % pw
            }
        };
        dx.fill(T::ZERO);
        for q in 0..batch * self.input.channels {
            let dxp = &mut dx[q * h * w..][..h * w];
            let base = q * od.plane();
            for oy in 0..od.height {
                let o = base + oy * od.width;
                let rows = argmax[o..o + od.width].iter().zip(&dout[o..o + od.width]);
                for (ox, (&a, &d)) in rows.enumerate() {
                    if out.is_none_or(|v| v[o + ox] > T::ZERO) {
                        dxp[oy * s * w + ox * s + offset(a.to_f64() as usize)] += d;
                    }
                }
            }
        }
    }

    /// [`Pooling::backward`] for 2 × 2 windows every 2: each window's four gradients written
    /// at once (the windows do not overlap), `dout` at the maximum and 0 elsewhere, with no
    /// pass that zeroes `dx` first; `argmax` checked by the caller, `out` as in
    /// [`Pooling::backward_checked`]. A row at a time goes to the element type's vector kernel
    /// where there is one (AVX-512 for f32).
    fn backward_2x2<T: Float>(
        &self,
        dx: &mut [T],
        dout: &[T],
        argmax: &[T],
        out: Option<&[T]>,
        batch: usize,
    ) {
        let (h, w) = (self.input.height, self.input.width);
        let od = self.output_dims();
        let ow = od.width;
        let (one, two, three) = (T::ONE, T::from_usize(2), T::from_usize(3));
        // `0 + d`, as the general path's sum into a zeroed `dx` (a gradient of −0 becomes 0);
        // the conditions with `&`, not `&&`: selects, not branches the data would mispredict.
        let pick = |on: bool, d: T| if on { T::ZERO + d } else { T::ZERO };
        for q in 0..batch * self.input.channels {
            let dxp = &mut dx[q * h * w..][..h * w];
            let o = q * od.plane();
            for oy in 0..od.height {
                let (r0, r1) = dxp[2 * oy * w..][..2 * w].split_at_mut(w);
                let at = o + oy * ow;
                let (a, d) = (&argmax[at..][..ow], &dout[at..][..ow]);
                let v = out.map(|v| &v[at..][..ow]);
                if T::pool_2x2_backward_row(&mut r0[..2 * ow], &mut r1[..2 * ow], a, d, v) {
                    // A vector kernel did the row (the same bits).
                } else {
                    let pairs = r0.as_chunks_mut::<2>().0.iter_mut();
                    let pairs = pairs.zip(r1.as_chunks_mut::<2>().0.iter_mut());
                    for (x, ((p0, p1), (&a, &d))) in pairs.zip(a.iter().zip(d)).enumerate() {
                        // The ReLU's mask at the window's maximum, if a ReLU is below.
                        let pass = v.is_none_or(|v| v[x] > T::ZERO);
                        *p0 = [
                            pick(pass & (a < one), d),
                            pick(pass & (a >= one) & (a < two), d),
                        ];
                        *p1 = [
                            pick(pass & (a >= two) & (a < three), d),
                            pick(pass & (a >= three), d),
                        ];
                    }
                }
                // An odd width's last column, in no window.
                r0[2 * ow..].fill(T::ZERO);
                r1[2 * ow..].fill(T::ZERO);
            }
            // An odd height's last row.
            dxp[2 * od.height * w..].fill(T::ZERO);
        }
    }

    /// The naive twin of [`Pooling::backward`]: `dx` zeroed, then each window's gradient
    /// added at its maximum, one window at a time.
    pub fn backward_naive<T: Float>(&self, dx: &mut [T], dout: &[T], argmax: &[T]) -> Result<()> {
        let batch = self.batch(dx.len(), dout.len())?;
        check_len("argmax", dout.len(), argmax.len())?;
        let Dims {
            channels: c,
            height: h,
            width: w,
        } = self.input;
        let od = self.output_dims();
        let window = self.pool_h * self.pool_w;
        dx.fill(T::ZERO);
        for q in 0..batch * c {
            for oy in 0..od.height {
                for ox in 0..od.width {
                    let o = q * od.plane() + oy * od.width + ox;
                    let at = argmax[o].to_f64();
                    if !(at >= 0.0 && at < window as f64) {
                        return Err(Error::InvalidValue {
                            what: "Pooling argmax (not a position in the window)",
                        });
                    }
                    let at = at as usize;
                    let (i, j) = (at / self.pool_w, at % self.pool_w);
                    dx[(q * h + oy * self.stride + i) * w + ox * self.stride + j] += dout[o];
                }
            }
        }
        Ok(())
    }
}

/// The 2 × 2 forward loop compiled for AVX-512 (the compiler's vectors 16 lanes wide instead of
/// 4): the same operations in the same order, so the same bits.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::*;

    /// [`Pooling::forward_2x2`] for AVX-512.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_2x2<T: Float>(
        p: &Pooling,
        out: &mut [T],
        x: &[T],
        argmax: Option<&mut [T]>,
        batch: usize,
    ) {
        p.forward_2x2_body(out, x, argmax, batch)
    }
}

/// One output row of [`Pooling::backward_2x2`] in AVX-512 registers, 16 windows at a time:
/// the four conditions as masks, `0 + d` where each holds, the even and odd columns put in
/// order (`vpermt2ps`). The same operations as the loop, so the same bits.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use core::arch::x86_64::*;

    /// `r0`, `r1`: the window's two rows of `dx` (`2·n` each); `a`, `d`: its `argmax` and
    /// `dout` (`n` each); `out`: the Pooling's output over the same windows if a ReLU is
    /// below (`n`; the gradient passes where it is above 0).
    ///
    /// # Safety
    /// AVX-512F must be present; the lengths as above (`n` = `a.len()`).
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn back_row(
        r0: &mut [f32],
        r1: &mut [f32],
        a: &[f32],
        d: &[f32],
        out: Option<&[f32]>,
    ) {
        let n = a.len();
        debug_assert!(d.len() == n && r0.len() == 2 * n && r1.len() == 2 * n);
        debug_assert!(out.is_none_or(|o| o.len() == n));
        let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
        let (two, three) = (_mm512_set1_ps(2.0), _mm512_set1_ps(3.0));
        let lanes = |k: usize| -> __mmask16 { if k >= 16 { !0 } else { (1u16 << k) - 1 } };
        let mut j = 0;
        while j < n {
            let k = (n - j).min(16);
            let (m, m_lo, m_hi) = (lanes(k), lanes(2 * k), lanes((2 * k).saturating_sub(16)));
            // SAFETY: the masked loads and stores touch windows j..j + k only: lanes of `a`,
            // `d` and `out` below `n`, of the rows below `2·n` (the caller's lengths).
            unsafe {
                let av = _mm512_maskz_loadu_ps(m, a.as_ptr().add(j));
                let dv = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(m, d.as_ptr().add(j)));
                // The ReLU's mask at each window's maximum: the window's output above 0.
                let pass = match out {
                    Some(o) => _mm512_cmp_ps_mask::<_CMP_GT_OQ>(
                        _mm512_maskz_loadu_ps(m, o.as_ptr().add(j)),
                        zero,
                    ),
                    None => !0,
                };
                let c0 = pass & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(av, one);
                let c1 = pass
                    & _mm512_cmp_ps_mask::<_CMP_GE_OQ>(av, one)
                    & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(av, two);
                let c2 = pass
                    & _mm512_cmp_ps_mask::<_CMP_GE_OQ>(av, two)
                    & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(av, three);
                let c3 = pass & _mm512_cmp_ps_mask::<_CMP_GE_OQ>(av, three);
                let put = |row: &mut [f32], ce: __mmask16, co: __mmask16| {
                    let (ve, vo) = (_mm512_maskz_mov_ps(ce, dv), _mm512_maskz_mov_ps(co, dv));
                    let p = row.as_mut_ptr().add(2 * j);
                    _mm512_mask_storeu_ps(p, m_lo, _mm512_permutex2var_ps(ve, lo, vo));
                    _mm512_mask_storeu_ps(p.add(16), m_hi, _mm512_permutex2var_ps(ve, hi, vo));
                };
                put(r0, c0, c1);
                put(r1, c2, c3);
            }
            j += k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn keeps_each_windows_maximum_and_sends_the_gradient_there() {
        // One 4×4 channel, 2×2 windows every 2.
        let p = Pooling::new(Dims::new(1, 4, 4), 2, 2, 2);
        #[rustfmt::skip]
        let x = [
            1.0, 2.0, 0.0, -1.0,
            4.0, 3.0, -2.0, -3.0,
            0.0, 0.0, 5.0, 5.0,
            0.0, 9.0, 5.0, 5.0f32,
        ];
        let mut out = [0.0; 4];
        let mut arg = [0.0; 4];
        p.forward(&mut out, &x, Some(&mut arg)).unwrap();
        assert_eq!(out, [4.0, 0.0, 9.0, 5.0]);
        // Ties: the first in row order.
        assert_eq!(arg, [2.0, 0.0, 3.0, 0.0]);
        let mut dx = [f32::NAN; 16];
        p.backward(&mut dx, &[1.0, 2.0, 3.0, 4.0], &arg).unwrap();
        #[rustfmt::skip]
        assert_eq!(dx, [
            0.0, 0.0, 2.0, 0.0,
            1.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 4.0, 0.0,
            0.0, 3.0, 0.0, 0.0,
        ]);
    }

    #[test]
    fn forward_equals_the_naive_twin() {
        // Windows whose maximum is 0 and windows whose maximum is above (ReLU below).
        let (mut masked, mut passed) = (0, 0);
        for p in [
            Pooling::new(Dims::new(3, 6, 8), 2, 2, 2),
            Pooling::new(Dims::new(2, 7, 9), 2, 2, 2),
            Pooling::new(Dims::new(2, 6, 41), 2, 2, 2),
            Pooling::new(Dims::new(1, 4, 34), 2, 2, 2),
            Pooling::new(Dims::new(2, 7, 5), 3, 2, 1),
            Pooling::new(Dims::new(1, 9, 9), 3, 3, 2),
            Pooling::new(Dims::new(2, 5, 6), 1, 4, 3),
        ] {
            let batch = 2;
            // Few distinct values: many ties.
            let x: std::vec::Vec<f32> = (0..batch * p.input.len())
                .map(|i| ((i * 7919) % 5) as f32)
                .collect();
            let n = batch * p.output_dims().len();
            let (mut want, mut warg) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            p.forward_naive(&mut want, &x, &mut warg).unwrap();
            let (mut got, mut garg) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            p.forward(&mut got, &x, Some(&mut garg)).unwrap();
            assert_eq!((&got, &garg), (&want, &warg), "{p:?}");
            let mut infer = vec![f32::NAN; n];
            p.forward(&mut infer, &x, None).unwrap();
            assert_eq!(infer, want);
            // Backward: the fast paths against the twin, bit for bit, a gradient of −0
            // among them.
            let dout: std::vec::Vec<f32> = (0..n)
                .map(|i| {
                    if i % 7 == 3 {
                        -0.0
                    } else {
                        (i % 11) as f32 - 5.0
                    }
                })
                .collect();
            let nx = x.len();
            let (mut want, mut got) = (vec![f32::NAN; nx], vec![f32::NAN; nx]);
            p.backward_naive(&mut want, &dout, &warg).unwrap();
            p.backward(&mut got, &dout, &garg).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{p:?}");
            // With the ReLU below (its output the Pooling's input, many windows all 0): the
            // two layers' backward one after the other.
            let relu_out: std::vec::Vec<f32> = x.iter().map(|&v| (v - 3.0).max(0.0)).collect();
            let (mut out, mut arg) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            p.forward(&mut out, &relu_out, Some(&mut arg)).unwrap();
            masked += out.iter().filter(|&&v| v == 0.0).count();
            passed += out.iter().filter(|&&v| v > 0.0).count();
            p.backward_naive(&mut want, &dout, &arg).unwrap();
            crate::Relu::backward_inplace(&mut want, &relu_out).unwrap();
            let mut fused = vec![f32::NAN; nx];
            p.backward_relu(&mut fused, &dout, &arg, &out).unwrap();
            assert_eq!(bits(&fused), bits(&want), "{p:?} with its ReLU");
            // The element loop (f64 has no vector kernel) against the same two layers.
            let f64s = |v: &[f32]| v.iter().map(|&f| f as f64).collect::<std::vec::Vec<_>>();
            let (relu_out, out, arg) = (f64s(&relu_out), f64s(&out), f64s(&arg));
            let (mut want, mut fused) = (vec![f64::NAN; nx], vec![f64::NAN; nx]);
            p.backward_naive(&mut want, &f64s(&dout), &arg).unwrap();
            crate::Relu::backward_inplace(&mut want, &relu_out).unwrap();
            p.backward_relu(&mut fused, &f64s(&dout), &arg, &out)
                .unwrap();
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
            assert_eq!(bits(&fused), bits(&want), "{p:?} with its ReLU, f64");
        }
        assert!(masked > 0 && passed > 0, "{masked} {passed}");
    }

    #[test]
    fn overlapping_windows_add_their_gradients() {
        // 1×3 input as 1×1×3, windows of 1×2 every 1: both windows pick the middle.
        let p = Pooling::new(Dims::new(1, 1, 3), 1, 2, 1);
        let mut out = [0.0; 2];
        let mut arg = [0.0; 2];
        p.forward(&mut out, &[0.0, 7.0, 1.0f32], Some(&mut arg))
            .unwrap();
        assert_eq!(out, [7.0, 7.0]);
        let mut dx = [0.0; 3];
        p.backward(&mut dx, &[1.0, 10.0], &arg).unwrap();
        assert_eq!(dx, [0.0, 11.0, 0.0]);
    }

    #[test]
    fn shapes_and_bad_input() {
        let p = Pooling::new(Dims::new(30, 24, 24), 2, 2, 2);
        assert_eq!(p.output_dims(), Dims::new(30, 12, 12));
        // Odd sizes floor, as the book's `1 + (H - pool_h) / stride`.
        let p = Pooling::new(Dims::new(1, 5, 5), 2, 2, 2);
        assert_eq!(p.output_dims(), Dims::new(1, 2, 2));
        assert!(
            Pooling::new(Dims::new(1, 1, 1), 2, 2, 2)
                .validate()
                .is_err()
        );
        assert!(
            Pooling::new(Dims::new(1, 4, 4), 2, 2, 0)
                .validate()
                .is_err()
        );
        let mut dx = vec![0.0f32; 25];
        assert!(p.backward(&mut dx, &[0.0; 4], &[9.0; 4]).is_err());
        assert!(p.backward(&mut dx, &[0.0; 4], &[f32::NAN; 4]).is_err());
        assert!(p.backward(&mut dx, &[0.0; 4], &[-1.0; 4]).is_err());
        assert!(p.backward_naive(&mut dx, &[0.0; 4], &[4.0; 4]).is_err());
        // Refused before anything is written.
        let mut dx = vec![7.0f32; 25];
        assert!(
            p.backward(&mut dx, &[0.0; 4], &[0.0, 1.0, 2.0, 4.0])
                .is_err()
        );
        assert!(dx.iter().all(|&v| v == 7.0));
    }
}
