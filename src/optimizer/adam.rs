//! Adam (the book's `Adam`): with `iter` counting the steps from 1,
//! `lr_t = lr·√(1 − β2^iter) / (1 − β1^iter)`, `m += (1 − β1)·(g − m)`,
//! `v += (1 − β2)·(g² − v)`, `p −= lr_t·m / (√v + 1e-7)`.

use super::{BLOCK, DENOMINATOR_EPS, Optimizer, check_apply, check_lr};
use crate::error::{Error, Result};
use crate::math::{Float, pow_f64, sqrt_f64};

/// Adam; state: `m` and `v`, two planes; the step count is `iter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam<T> {
    /// The learning rate (the book's default 0.001), in `f64` as the book computes `lr_t`.
    pub lr: f64,
    /// β1 (the book's 0.9).
    pub beta1: f64,
    /// β2 (the book's 0.999).
    pub beta2: f64,
    /// Steps begun so far (the book's `self.iter`).
    pub iter: u64,
    /// `(iter, [lr, β1, β2], lr_t)` of the step [`Optimizer::begin_step`] began, so that a
    /// step applied in many parts computes `lr_t` once.
    cached: (u64, [f64; 3], f64),
    _t: core::marker::PhantomData<T>,
}

impl<T: Float> Adam<T> {
    /// Adam with learning rate `lr` and the book's β1 0.9, β2 0.999, at step 0.
    pub const fn new(lr: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            iter: 0,
            cached: (0, [0.0; 3], 0.0),
            _t: core::marker::PhantomData,
        }
    }

    /// Elements of state for `params` parameters: `m` and `v`.
    pub const fn state_len(params: usize) -> usize {
        params.saturating_mul(2)
    }

    /// The book's bias-corrected learning rate of the current step,
    /// `lr·√(1 − β2^iter) / (1 − β1^iter)` (in `f64`).
    pub fn lr_t(&self) -> f64 {
        let i = self.iter as f64;
        self.lr * sqrt_f64(1.0 - pow_f64(self.beta2, i)) / (1.0 - pow_f64(self.beta1, i))
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn planes(&self) -> usize {
        2
    }
    fn begin_step(&mut self) {
        self.iter += 1;
        self.cached = (self.iter, [self.lr, self.beta1, self.beta2], self.lr_t());
    }
    fn apply(&self, params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T]) -> Result<()> {
        check_apply(2, params, grads, m, v)?;
        check_lr(self.lr)?;
        if self.iter == 0 {
            return Err(Error::InvalidValue {
                what: "Adam step count 0 (begin_step comes first)",
            });
        }
        let key = (self.iter, [self.lr, self.beta1, self.beta2]);
        let lr_t = T::from_f64(if (self.cached.0, self.cached.1) == key {
            self.cached.2
        } else {
            self.lr_t()
        });
        let (b1, b2) = (T::from_f64(1.0 - self.beta1), T::from_f64(1.0 - self.beta2));
        let eps = T::from_f64(DENOMINATOR_EPS);
        if T::adam_kernel(params, grads, m, v, [b1, b2, lr_t, eps]) {
            return Ok(());
        }
        // In blocks: the moments, their roots in one vector call, then the step.
        let mut root = [T::ZERO; BLOCK];
        for (((p, g), m), v) in params
            .chunks_mut(BLOCK)
            .zip(grads.chunks(BLOCK))
            .zip(m.chunks_mut(BLOCK))
            .zip(v.chunks_mut(BLOCK))
        {
            let root = &mut root[..p.len()];
            for (((&g, m), v), r) in g.iter().zip(m.iter_mut()).zip(v.iter_mut()).zip(&mut *root) {
                *m += b1 * (g - *m);
                *v += b2 * (g * g - *v);
                *r = *v;
            }
            T::sqrt_slice(root);
            for ((p, &m), &r) in p.iter_mut().zip(m.iter()).zip(root.iter()) {
                *p -= lr_t * m / (r + eps);
            }
        }
        Ok(())
    }
}

/// Adam's update in one pass over 16 lanes at a time: the operations of [`Adam::apply`]'s
/// loop in the same order, separate multiplies and adds, exact square roots and divisions,
/// so the same bits for every value of normal range.
///
/// Subnormal values (below 2^-126, about 1.2e-38) are taken as zero and subnormal results
/// flushed to zero (the CPU's DAZ and FTZ modes, for this kernel only, as PyTorch's
/// `set_flush_denormal` and TensorFlow do for whole runs). A moment whose gradient has
/// stopped decays through the subnormal range for about 150 steps (β1 0.9) and would take a
/// microcode assist of about a hundred cycles per vector and operation there: 19 % of a
/// SimpleConvNet run's time by its 3000th step, against 2 % at its start. The portable loop
/// keeps subnormals; a difference between the two is below 1.2e-38 per value.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use core::arch::asm;
    use core::arch::x86_64::*;

    /// DAZ (bit 6) and FTZ (bit 15) of MXCSR.
    const DAZ_FTZ: u32 = 0x8040;

    /// `c` = [1 − β1, 1 − β2, lr_t, ε].
    ///
    /// # Safety
    /// AVX-512F must be present; `g`, `m` and `v` as long as `p`.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn update(
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        c: [f32; 4],
    ) {
        let n = p.len();
        debug_assert!(g.len() == n && m.len() == n && v.len() == n);
        let [b1, b2, lr_t, eps] = c;
        let (vb1, vb2, vlr, veps) = (
            _mm512_set1_ps(b1),
            _mm512_set1_ps(b2),
            _mm512_set1_ps(lr_t),
            _mm512_set1_ps(eps),
        );
        // The arithmetic runs in `asm!` blocks only, so that the compiler (which assumes the
        // default floating-point environment) moves none of it across the change of MXCSR.
        let mut csr = [0u32; 2];
        // SAFETY: `stmxcsr`/`ldmxcsr` read and write the two words of `csr` only; the mode set
        // adds DAZ and FTZ to the current one and is restored below, before returning.
        unsafe {
            asm!(
                "vstmxcsr [{c}]",
                "mov {t:e}, [{c}]",
                "or {t:e}, {bits}",
                "mov [{c} + 4], {t:e}",
                "vldmxcsr [{c} + 4]",
                c = in(reg) csr.as_mut_ptr(),
                t = out(reg) _,
                bits = const DAZ_FTZ,
                options(nostack),
            );
        }
        // 16 lanes at a time, the last step masked to the lanes that remain.
        let mut i = 0;
        while i < n {
            let k = (n - i).min(16);
            let mask: __mmask16 = if k == 16 { !0 } else { (1 << k) - 1 };
            // SAFETY: the masked loads and stores touch lanes i..i + k only, inside every
            // slice (the caller's lengths); the `asm!` block works on registers only.
            unsafe {
                let gi = _mm512_maskz_loadu_ps(mask, g.as_ptr().add(i));
                let mut mi = _mm512_maskz_loadu_ps(mask, m.as_ptr().add(i));
                let mut vi = _mm512_maskz_loadu_ps(mask, v.as_ptr().add(i));
                let mut pi = _mm512_maskz_loadu_ps(mask, p.as_ptr().add(i));
                asm!(
                    // m += b1·(g − m)
                    "vsubps {t}, {g}, {m}",
                    "vmulps {t}, {b1}, {t}",
                    "vaddps {m}, {m}, {t}",
                    // v += b2·(g·g − v)
                    "vmulps {u}, {g}, {g}",
                    "vsubps {u}, {u}, {v}",
                    "vmulps {u}, {b2}, {u}",
                    "vaddps {v}, {v}, {u}",
                    // p −= lr_t·m / (√v + ε)
                    "vsqrtps {t}, {v}",
                    "vaddps {t}, {t}, {eps}",
                    "vmulps {u}, {lr}, {m}",
                    "vdivps {u}, {u}, {t}",
                    "vsubps {p}, {p}, {u}",
                    g = in(zmm_reg) gi,
                    m = inout(zmm_reg) mi,
                    v = inout(zmm_reg) vi,
                    p = inout(zmm_reg) pi,
                    b1 = in(zmm_reg) vb1,
                    b2 = in(zmm_reg) vb2,
                    lr = in(zmm_reg) vlr,
                    eps = in(zmm_reg) veps,
                    t = out(zmm_reg) _,
                    u = out(zmm_reg) _,
                    options(nomem, nostack),
                );
                _mm512_mask_storeu_ps(m.as_mut_ptr().add(i), mask, mi);
                _mm512_mask_storeu_ps(v.as_mut_ptr().add(i), mask, vi);
                _mm512_mask_storeu_ps(p.as_mut_ptr().add(i), mask, pi);
            }
            i += k;
        }
        // SAFETY: restores the mode saved above (reads the first word of `csr`).
        unsafe {
            asm!(
                "vldmxcsr [{c}]",
                c = in(reg) csr.as_ptr(),
                options(nostack, readonly),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{seeded, uniform01};

    /// The AVX-512 kernel is the formula element by element, bit for bit, on random values
    /// of many magnitudes (and zeros) over lengths with remainders.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vector_kernel_is_the_formula_bit_for_bit() {
        if !crate::gemm::detect::avx512() {
            std::eprintln!("skipped: no AVX-512 here");
            return;
        }
        let mut r = seeded(3);
        let mut draw = |n: usize| -> std::vec::Vec<f32> {
            (0..n)
                .map(|i| {
                    let u = uniform01(&mut r) as f32 - 0.5;
                    if i % 7 == 0 {
                        0.0
                    } else {
                        u * 10f32.powi((i % 9) as i32 - 6)
                    }
                })
                .collect()
        };
        for n in [0, 1, 15, 16, 17, 100, 1031] {
            let g = draw(n);
            let p0 = draw(n);
            let m0 = draw(n);
            let v0: std::vec::Vec<f32> = draw(n).iter().map(|x| x.abs()).collect();
            let c = [0.1f32, 0.001, 0.003, 1e-7];
            let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
            // SAFETY: AVX-512F is present (checked above); the lengths agree.
            unsafe { avx512::update(&mut p, &g, &mut m, &mut v, c) };
            for k in 0..n {
                let mk = m0[k] + c[0] * (g[k] - m0[k]);
                let vk = v0[k] + c[1] * (g[k] * g[k] - v0[k]);
                let pk = p0[k] - c[2] * mk / (libm::sqrtf(vk) + c[3]);
                assert_eq!(
                    (m[k].to_bits(), v[k].to_bits(), p[k].to_bits()),
                    (mk.to_bits(), vk.to_bits(), pk.to_bits()),
                    "n {n}, element {k}"
                );
            }
        }
    }

    /// Subnormal moments are flushed in the vector kernel (DAZ and FTZ for it only), and
    /// the normal lanes of the same vectors keep the formula's bits; the mode of the caller
    /// is as it was afterwards.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vector_kernel_flushes_subnormals_only() {
        if !crate::gemm::detect::avx512() {
            std::eprintln!("skipped: no AVX-512 here");
            return;
        }
        let tiny = f32::MIN_POSITIVE / 4.0; // subnormal
        assert!(tiny > 0.0 && !tiny.is_normal());
        let n = 20;
        let g: std::vec::Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { 0.0 } else { 0.01 })
            .collect();
        let m0: std::vec::Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { tiny } else { 0.002 })
            .collect();
        let v0 = std::vec![1e-6f32; n];
        let p0 = std::vec![0.5f32; n];
        let c = [0.1f32, 0.001, 0.003, 1e-7];
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        // SAFETY: AVX-512F is present (checked above); the lengths agree.
        unsafe { avx512::update(&mut p, &g, &mut m, &mut v, c) };
        for k in 0..n {
            if k % 2 == 0 {
                // The scalar formula would keep a subnormal m (0.9 · tiny); flushed to 0.
                assert_eq!((m[k], p[k]), (0.0, 0.5), "element {k}");
            } else {
                let mk = m0[k] + c[0] * (g[k] - m0[k]);
                let vk = v0[k] + c[1] * (g[k] * g[k] - v0[k]);
                let pk = p0[k] - c[2] * mk / (libm::sqrtf(vk) + c[3]);
                assert_eq!((m[k], v[k], p[k]), (mk, vk, pk), "element {k}");
            }
        }
        // The caller's mode is back: subnormal arithmetic outside the kernel is exact.
        let half = core::hint::black_box(tiny) * core::hint::black_box(0.5f32);
        assert_eq!(half, f32::from_bits(tiny.to_bits() / 2));
    }
}
