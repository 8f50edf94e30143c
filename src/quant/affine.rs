//! Affine layer in int8 (the f32 [`Affine`](crate::Affine) quantized), inference only, with
//! the ReLU after it, if any, folded into its clamp:
//!
//! `out[n, j] = clamp(z_out + M_j · (bias[j] + Σ_i (x[n, i] − z_in) · W[j, i]), act_min, act_max)`
//!
//! Shapes:
//! - `x`:   batch × input, int8 with zero point `z_in`
//! - `W`:   output × input, int8, symmetric: row `j` holds output `j`'s weights (the
//!   transpose of the f32 Affine's `input × output`, so that an output is one dot product
//!   over a contiguous row)
//! - `bias`: output, int32 with scale `s_in · s_w[j]`
//! - `multiplier`, `shift`: output, `M_j = s_in · s_w[j] / s_out` as
//!   [`quantize_multiplier`](super::requant::quantize_multiplier) gives it
//! - `out`: batch × output, int8 with zero point `z_out`
//!
//! The sums are exact in int32 (`input` up to 2^16 values of at most 255 · 127), and every
//! kernel wraps as two's complement besides, so every kernel gives the same bits:
//! [`QAffine::forward`] runs AVX-512 VNNI where the CPU has it (`vnni.rs`), `SMLAD` on
//! Cortex-M's DSP extension (`dsp.rs`), and [`QAffine::forward_naive`] is the reference loop
//! both are tested against.

use super::requant::multiply_by_quantized_multiplier;
use super::vnni;
use crate::error::{Error, Result, check_len, mul};

/// A layer's weights packed for the fast kernel ([`QAffine::pack`]), borrowed from the
/// caller's buffer, and which weights they are.
#[derive(Debug)]
pub struct Packed<'p> {
    // Read by the x86-64 kernel only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    words: &'p [i32],
    of: (usize, usize),
}

/// An int8 Affine layer over caller-owned buffers (see the module docs for the formula).
#[derive(Debug, Clone, Copy)]
pub struct QAffine<'a> {
    /// Values in.
    pub input: usize,
    /// Values out.
    pub output: usize,
    /// `output × input` weights, row `j` for output `j`.
    pub w: &'a [i8],
    /// `output` biases, int32 at scale `s_in · s_w[j]`.
    pub bias: &'a [i32],
    /// `output` Q31 multipliers of `M_j`.
    pub multiplier: &'a [i32],
    /// `output` power-of-two exponents of `M_j`.
    pub shift: &'a [i32],
    /// The input's zero point.
    pub input_zero_point: i32,
    /// The input's scale (for dequantizing; [`QAffine::forward`] does not use it).
    pub input_scale: f32,
    /// The output's zero point.
    pub output_zero_point: i32,
    /// The output's scale (for dequantizing; [`QAffine::forward`] does not use it).
    pub output_scale: f32,
    /// The clamp: `output_zero_point` (or −128 if lower) with a ReLU folded in, else −128.
    pub act_min: i8,
    /// The clamp's upper end (127).
    pub act_max: i8,
}

impl<'a> QAffine<'a> {
    /// Elements of `W` for `input × output`.
    pub const fn weights_len(input: usize, output: usize) -> usize {
        input * output
    }

    /// Checks every length against `input` and `output`, and that a sum cannot overflow.
    fn check(&self, x: &[i8], out: &[i8]) -> Result<usize> {
        if self.input == 0 || self.output == 0 {
            return Err(Error::ZeroSize { what: "QAffine" });
        }
        if self.input > 1 << 16 {
            return Err(Error::InvalidValue {
                what: "QAffine input: at most 2^16 values (the int32 sums must not overflow)",
            });
        }
        check_len("W", mul(self.input, self.output)?, self.w.len())?;
        check_len("bias", self.output, self.bias.len())?;
        check_len("multiplier", self.output, self.multiplier.len())?;
        check_len("shift", self.output, self.shift.len())?;
        if x.is_empty() || !x.len().is_multiple_of(self.input) {
            return Err(Error::ShapeMismatch {
                what: "x: a whole number of samples of `input` values",
                expected: self.input,
                actual: x.len(),
            });
        }
        let batch = x.len() / self.input;
        check_len("out", mul(batch, self.output)?, out.len())?;
        if self.act_min > self.act_max {
            return Err(Error::InvalidValue {
                what: "QAffine clamp: act_min ≤ act_max",
            });
        }
        Ok(batch)
    }

    /// Words of packing space [`QAffine::forward`] needs for its fast kernel.
    pub const fn pack_len(input: usize, output: usize) -> usize {
        vnni::pack_len(input, output)
    }

    /// Output `j`'s value from its sum `acc` (bias included): requantized, then clamped.
    #[inline]
    fn finish(&self, j: usize, acc: i32) -> i8 {
        let v = self.output_zero_point
            + multiply_by_quantized_multiplier(acc, self.multiplier[j], self.shift[j]);
        v.clamp(i32::from(self.act_min), i32::from(self.act_max)) as i8
    }

    /// This layer's weights packed into `buf` (at least [`QAffine::pack_len`] words) for the
    /// fast kernel of [`QAffine::forward`]: once per model, not per call.
    pub fn pack<'p>(&self, buf: &'p mut [i32]) -> Result<Packed<'p>> {
        let need = Self::pack_len(self.input, self.output);
        check_len("W", mul(self.input, self.output)?, self.w.len())?;
        if buf.len() < need {
            return Err(Error::BufferLength {
                buffer: "int8 packing space",
                expected: need,
                actual: buf.len(),
            });
        }
        let words = &mut buf[..need];
        vnni::pack(self.w, self.input, self.output, words);
        Ok(Packed {
            words,
            of: (self.w.as_ptr() as usize, self.w.len()),
        })
    }

    /// `out = clamp(z_out + M · (bias + (x − z_in)·Wᵀ))` for a batch (`x`: batch × input,
    /// `out`: batch × output): on AVX-512 VNNI with `packed` (this layer's weights, from
    /// [`QAffine::pack`]) where the CPU has it; on a Cortex-M with the DSP extension (M4, M7,
    /// and M33 and later built for their CPU: `packed` is `None`) two multiply-adds an
    /// instruction (`SMLAD`); else as [`QAffine::forward_naive`]. The same bits every way.
    /// Every length is checked before anything is written.
    pub fn forward(&self, x: &[i8], out: &mut [i8], packed: Option<&Packed<'_>>) -> Result<()> {
        let batch = self.check(x, out)?;
        let Some(p) = packed.filter(|_| vnni::available()) else {
            #[cfg(zeronn_dsp)]
            {
                // Cortex-M with the DSP extension: the SMLAD kernel (no packing).
                super::dsp::forward(self, x, out);
                return Ok(());
            }
            #[cfg(not(zeronn_dsp))]
            return self.forward_naive(x, out);
        };
        if p.of != (self.w.as_ptr() as usize, self.w.len()) {
            return Err(Error::InvalidValue {
                what: "packed weights: pack this layer's own weights (QAffine::pack)",
            });
        }
        #[cfg(target_arch = "x86_64")]
        {
            let need = Self::pack_len(self.input, self.output);
            let opad = self.output.div_ceil(16) * 16;
            let e = vnni::Epilogue {
                // The zero point's share: Σ_i (x − z_in)·W = Σ_i (x + 128)·W − (128 + z_in)·Σ_i W.
                zero: 128i32.wrapping_add(self.input_zero_point),
                sums: &p.words[need - opad..need - opad + self.output],
                bias: self.bias,
                multiplier: self.multiplier,
                shift: self.shift,
                zero_point: self.output_zero_point,
                lo: i32::from(self.act_min),
                hi: i32::from(self.act_max),
            };
            if self.multiplier.iter().any(|&m| m != 0 && m < 1 << 30)
                || self.shift.iter().any(|&s| !(-31..=30).contains(&s))
            {
                // Outside the fast requantization's range: the reference loop.
                return self.forward_naive(x, out);
            }
            for n0 in (0..batch).step_by(4) {
                let rows = (batch - n0).min(4);
                let xs = &x[n0 * self.input..(n0 + rows) * self.input];
                let os = &mut out[n0 * self.output..(n0 + rows) * self.output];
                for j0 in (0..self.output).step_by(64) {
                    // SAFETY: AVX-512 VNNI is present (checked above); `p.words` is `pack`'s
                    // output for this layer (checked above); `xs` holds `rows` samples and
                    // `os` their outputs; the epilogue's slices are `output` long (checked),
                    // its multipliers and shifts in range (checked just above); j0 is a
                    // multiple of 64 below `output`.
                    unsafe {
                        vnni::forward(xs, rows, self.input, p.words, self.output, j0, &e, os)
                    };
                }
            }
            Ok(())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (batch, p);
            self.forward_naive(x, out)
        }
    }

    /// The reference of [`QAffine::forward`]: the formula as written, one product at a time
    /// (sums wrapping as two's complement, as every kernel's do).
    pub fn forward_naive(&self, x: &[i8], out: &mut [i8]) -> Result<()> {
        self.check(x, out)?;
        for (xn, on) in x
            .chunks_exact(self.input)
            .zip(out.chunks_exact_mut(self.output))
        {
            for (j, o) in on.iter_mut().enumerate() {
                let row = &self.w[j * self.input..(j + 1) * self.input];
                let mut acc = self.bias[j];
                for (&xi, &wi) in xn.iter().zip(row) {
                    let d = i32::from(xi) - self.input_zero_point;
                    acc = acc.wrapping_add(d * i32::from(wi));
                }
                *o = self.finish(j, acc);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::QParams;
    use super::super::requant::quantize_multiplier;
    use super::*;
    use crate::random::Rng;
    use std::vec::Vec;

    /// A layer quantized from reals: its int8 output is the real layer's output on the
    /// dequantized inputs and weights, requantized, within one unit (the multiplier's
    /// rounding), with the ReLU as the clamp.
    #[test]
    fn the_int8_layer_computes_the_real_layer_to_within_a_unit() {
        let (input, output, batch) = (37, 5, 3);
        let mut rng = crate::random::seeded(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next_u64();
        let x: [i8; 37 * 3] = core::array::from_fn(|_| next() as i8);
        let w: [i8; 37 * 5] = core::array::from_fn(|_| (next() % 255) as i8);
        let bias: [i32; 5] = core::array::from_fn(|_| (next() % 20_001) as i32 - 10_000);
        let (s_in, z_in) = (0.02f64, -7);
        let s_w: [f64; 5] = [0.01, 0.003, 0.02, 0.0005, 0.008];
        for relu in [false, true] {
            let out_q = QParams {
                scale: 0.05,
                zero_point: 3,
            };
            let (mut m, mut sh) = ([0i32; 5], [0i32; 5]);
            for j in 0..output {
                (m[j], sh[j]) = quantize_multiplier(s_in * s_w[j] / f64::from(out_q.scale));
            }
            let layer = QAffine {
                input,
                output,
                w: &w,
                bias: &bias,
                multiplier: &m,
                shift: &sh,
                input_zero_point: z_in,
                input_scale: s_in as f32,
                output_zero_point: out_q.zero_point,
                output_scale: out_q.scale,
                act_min: if relu { out_q.zero_point as i8 } else { -128 },
                act_max: 127,
            };
            let mut out = [0i8; 15];
            layer.forward_naive(&x, &mut out).unwrap();
            for n in 0..batch {
                for j in 0..output {
                    let mut real = f64::from(bias[j]) * s_in * s_w[j];
                    for i in 0..input {
                        real += s_in
                            * f64::from(i32::from(x[n * input + i]) - z_in)
                            * s_w[j]
                            * f64::from(w[j * input + i]);
                    }
                    if relu {
                        real = real.max(0.0);
                    }
                    let want = (real / f64::from(out_q.scale) + f64::from(out_q.zero_point))
                        .round()
                        .clamp(-128.0, 127.0);
                    let got = f64::from(out[n * output + j]);
                    assert!((got - want).abs() <= 1.0, "{n},{j}: {got} vs {want}");
                }
            }
        }
    }

    /// The fast kernel (AVX-512 VNNI, where this CPU has it) gives the reference's bits, over
    /// sizes that leave partial quads, partial registers, partial blocks of 64 outputs and of
    /// 4 samples, every zero point and clamp, and sums that wrap.
    #[test]
    fn the_fast_kernel_gives_the_reference_bits() {
        use std::vec;
        let mut rng = crate::random::seeded(0x0123_4567_89ab_cdef);
        let mut next = || rng.next_u64();
        for &(input, output, batch) in &[
            (1, 1, 1),
            (784, 50, 1),
            (9, 3, 1),
            (3, 5, 2),
            (4, 16, 4),
            (7, 17, 5),
            (784, 50, 9),
            (50, 10, 3),
            (33, 64, 4),
            (130, 65, 7),
            (100, 129, 6),
        ] {
            let w: Vec<i8> = (0..input * output).map(|_| (next() % 255) as i8).collect();
            // Dense inputs, and inputs mostly at −128 (the zero point of MNIST's pixels, whose
            // blank runs the kernel skips).
            let dense: Vec<i8> = (0..input * batch).map(|_| next() as i8).collect();
            let sparse: Vec<i8> = (0..input * batch)
                .map(|_| if next() % 5 == 0 { next() as i8 } else { -128 })
                .collect();
            for x in [dense, sparse] {
                let bias: Vec<i32> = (0..output).map(|_| next() as i32).collect();
                let m: Vec<i32> = (0..output)
                    .map(|_| (1 << 30) + (next() % (1 << 30)) as i32)
                    .collect();
                let sh: Vec<i32> = (0..output).map(|_| (next() % 40) as i32 - 31).collect();
                for (z_in, z_out, relu) in [(-128, 0, false), (5, -20, true), (127, 127, false)] {
                    let layer = QAffine {
                        input,
                        output,
                        w: &w,
                        bias: &bias,
                        multiplier: &m,
                        shift: &sh,
                        input_zero_point: z_in,
                        input_scale: 1.0,
                        output_zero_point: z_out,
                        output_scale: 1.0,
                        act_min: if relu { z_out as i8 } else { -128 },
                        act_max: 127,
                    };
                    let (mut fast, mut slow) =
                        (vec![0i8; batch * output], vec![1i8; batch * output]);
                    let mut pack = vec![0i32; QAffine::pack_len(input, output)];
                    let packed = layer.pack(&mut pack).unwrap();
                    layer.forward(&x, &mut fast, Some(&packed)).unwrap();
                    layer.forward_naive(&x, &mut slow).unwrap();
                    assert_eq!(fast, slow, "{input}×{output}, batch {batch}, z_in {z_in}");
                }
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors_and_write_nothing() {
        let (w, b, m, s) = ([1i8; 6], [0i32; 2], [1 << 30; 2], [0i32; 2]);
        let layer = QAffine {
            input: 3,
            output: 2,
            w: &w,
            bias: &b,
            multiplier: &m,
            shift: &s,
            input_zero_point: 0,
            input_scale: 1.0,
            output_zero_point: 0,
            output_scale: 1.0,
            act_min: -128,
            act_max: 127,
        };
        let mut out = [9i8; 4];
        let mut pack = [0i32; 32];
        let packed = layer.pack(&mut pack).unwrap();
        assert!(layer.forward(&[1, 2], &mut out, Some(&packed)).is_err());
        assert!(layer.forward(&[1, 2, 3], &mut out, None).is_err());
        assert!(layer.forward_naive(&[], &mut out).is_err());
        assert_eq!(out, [9; 4]);
        assert!(
            QAffine {
                w: &w[..5],
                ..layer
            }
            .forward(&[1, 2, 3], &mut out[..2], None)
            .is_err()
        );
        assert!(
            QAffine {
                bias: &b[..1],
                ..layer
            }
            .forward(&[1, 2, 3], &mut out[..2], None)
            .is_err()
        );
        assert_eq!(out, [9; 4]);
        layer
            .forward(&[1, 2, 3, 4, 5, 6], &mut out, Some(&packed))
            .unwrap();
        // Σ x · 1, times 0.5 (2^30 in Q31, shift 0), rounded: 6 · 0.5 = 3, 15 · 0.5 = 7.5 → 8.
        assert_eq!(out, [3, 3, 8, 8]);
    }
}
