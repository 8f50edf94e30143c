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

/// How a [`QAffine`]'s weights lie in memory, and in an int8 model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// `output × input`, row `j` holding output `j`'s weights.
    #[default]
    Rows,
    /// Made for Cortex-M's DSP extension, where one inference of the book's 784-50-10 net
    /// takes 1.28 instructions a multiply-add against 1.51 for [`WeightLayout::Rows`]: one
    /// `SMLAD` does two outputs' two multiply-adds.
    /// Outputs in fours (`q`) and inputs in fours (`g`), both padded with zero weights to a
    /// multiple of 4, a block of 16 bytes for each `(q, g)`, `q` major. In a block, outputs
    /// `4q + 2p` ("a") and `4q + 2p + 1` ("b") share 8 bytes at `8p`: inputs `4g + e` and
    /// `4g + 2 + e` share the word at `4e`, as its low and high 16 bits, each of which is
    /// `256 · a + (b + 128)`: byte `2h` holds `b + 128` (b with its top bit flipped), byte
    /// `2h + 1` holds `a` ([`WeightLayout::position`]).
    Dsp,
}

impl WeightLayout {
    /// Bytes of `W` for `input × output` in this layout.
    pub const fn len(self, input: usize, output: usize) -> usize {
        match self {
            WeightLayout::Rows => input * output,
            WeightLayout::Dsp => input.next_multiple_of(4) * output.next_multiple_of(4),
        }
    }

    /// Where weight `(j, i)` (output `j`, input `i`) of an `input`-wide layer lies, and whether
    /// it is stored with its top bit flipped (`b + 128`).
    pub const fn position(self, input: usize, j: usize, i: usize) -> (usize, bool) {
        match self {
            WeightLayout::Rows => (j * input + i, false),
            WeightLayout::Dsp => {
                let (q, p, b) = (j / 4, (j % 4) / 2, j % 2);
                let (g, e, h) = (i / 4, i % 2, (i % 4) / 2);
                let block = (q * input.div_ceil(4) + g) * 16;
                (block + 8 * p + 4 * e + 2 * h + (1 - b), b == 1)
            }
        }
    }

    /// The weight `(j, i)` of `w` in this layout (panics if `w` does not hold it).
    #[inline]
    pub fn get(self, w: &[i8], input: usize, j: usize, i: usize) -> i8 {
        let (at, flipped) = self.position(input, j, i);
        if flipped { w[at] ^ i8::MIN } else { w[at] }
    }

    /// The layout's code in a model file (0 rows, 1 Cortex-M DSP).
    pub const fn code(self) -> u32 {
        match self {
            WeightLayout::Rows => 0,
            WeightLayout::Dsp => 1,
        }
    }

    /// The layout of `code`, if it is one.
    pub const fn from_code(code: u32) -> Option<WeightLayout> {
        match code {
            0 => Some(WeightLayout::Rows),
            1 => Some(WeightLayout::Dsp),
            _ => None,
        }
    }
}

/// A layer's weights packed for the fast kernel ([`QAffine::pack`]), borrowed from the
/// caller's buffer, and which weights they are.
#[derive(Debug)]
pub struct Packed<'p> {
    // Read by the x86-64 kernel only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    words: &'p [i32],
    /// Which weights: where they lie, how many, the layer's sizes and layout.
    of: (usize, usize, usize, usize, WeightLayout),
}

/// Samples from which [`QAffine::forward`] takes AMX's tiles (16 samples each) over VNNI's
/// registers (4 each), where the CPU and OS allow it.
const AMX_MIN_BATCH: usize = 8;

/// Which x86-64 kernels [`QAffine::forward`] may take, where the CPU has them.
#[derive(Debug, Clone, Copy)]
struct Kernels {
    /// AVX-512 VNNI (else AVX-VNNI).
    avx512: bool,
    /// AMX's tiles from this many samples (with AVX-512).
    amx_from: usize,
}

/// An int8 Affine layer over caller-owned buffers (see the module docs for the formula).
#[derive(Debug, Clone, Copy)]
pub struct QAffine<'a> {
    /// Values in.
    pub input: usize,
    /// Values out.
    pub output: usize,
    /// `output × input` weights, laid out as `layout` says (row `j` for output `j` in
    /// [`WeightLayout::Rows`]).
    pub w: &'a [i8],
    /// How `w` is laid out.
    pub layout: WeightLayout,
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
    /// Elements of `W` for `input × output` in [`WeightLayout::Rows`] (see
    /// [`WeightLayout::len`] for the others).
    pub const fn weights_len(input: usize, output: usize) -> usize {
        input * output
    }

    /// Elements `W` holds in this layer's layout, or an error if that overflows.
    pub fn checked_weights_len(&self) -> Result<usize> {
        let round = |n: usize| n.checked_next_multiple_of(4).ok_or(Error::SizeOverflow);
        match self.layout {
            WeightLayout::Rows => mul(self.input, self.output),
            WeightLayout::Dsp => mul(round(self.input)?, round(self.output)?),
        }
    }

    /// What a [`Packed`] records of the layer it was packed from.
    fn identity(&self) -> (usize, usize, usize, usize, WeightLayout) {
        let at = self.w.as_ptr() as usize;
        (at, self.w.len(), self.input, self.output, self.layout)
    }

    /// Weight `(j, i)`: output `j`'s weight for input `i`, whatever the layout. Panics if `j`
    /// or `i` is out of range or `w` shorter than the layout needs (the kernels check first).
    #[inline]
    pub fn weight(&self, j: usize, i: usize) -> i8 {
        self.layout.get(self.w, self.input, j, i)
    }

    /// This layer's weights in `layout`, into `buf` (at least [`WeightLayout::len`]; padding
    /// written as zero weights): a layer over `buf` with `layout` is then this one.
    pub fn arrange(&self, layout: WeightLayout, buf: &mut [i8]) -> Result<()> {
        check_len("W", self.checked_weights_len()?, self.w.len())?;
        let need = QAffine { layout, ..*self }.checked_weights_len()?;
        if buf.len() < need {
            return Err(Error::BufferLength {
                buffer: "arranged weights",
                expected: need,
                actual: buf.len(),
            });
        }
        let buf = &mut buf[..need];
        buf.fill(0);
        if layout == WeightLayout::Dsp {
            // Every "b" byte (even offsets) holds b + 128: a zero weight is 0x80.
            for b in buf.iter_mut().step_by(2) {
                *b = i8::MIN;
            }
        }
        for j in 0..self.output {
            for i in 0..self.input {
                let (at, flipped) = layout.position(self.input, j, i);
                let v = self.weight(j, i);
                buf[at] = if flipped { v ^ i8::MIN } else { v };
            }
        }
        Ok(())
    }
    /// Checks every length against `input` and `output`, and that a sum cannot overflow.
    fn check(&self, x: &[i8], out: &[i8]) -> Result<usize> {
        self.check_layer()?;
        if x.is_empty() || !x.len().is_multiple_of(self.input) {
            return Err(Error::ShapeMismatch {
                what: "x: a whole number of samples of `input` values",
                expected: self.input,
                actual: x.len(),
            });
        }
        let batch = x.len() / self.input;
        check_len("out", mul(batch, self.output)?, out.len())?;
        Ok(batch)
    }

    /// Checks the layer's own arrays and values (not a call's buffers).
    #[inline(always)]
    pub(crate) fn check_layer(&self) -> Result<()> {
        if self.input == 0 || self.output == 0 {
            return Err(Error::ZeroSize { what: "QAffine" });
        }
        if self.input > 1 << 16 {
            return Err(Error::InvalidValue {
                what: "QAffine input: at most 2^16 values (the int32 sums must not overflow)",
            });
        }
        check_len("W", self.checked_weights_len()?, self.w.len())?;
        check_len("bias", self.output, self.bias.len())?;
        check_len("multiplier", self.output, self.multiplier.len())?;
        check_len("shift", self.output, self.shift.len())?;
        if self.act_min > self.act_max {
            return Err(Error::InvalidValue {
                what: "QAffine clamp: act_min ≤ act_max",
            });
        }
        // The ranges a model file holds (and the kernels' 16-bit `x − z` rely on).
        let int8 = -128..=127;
        if !int8.contains(&self.input_zero_point) || !int8.contains(&self.output_zero_point) {
            return Err(Error::InvalidValue {
                what: "QAffine zero points: in −128..=127",
            });
        }
        if self.shift.iter().any(|s| !(-31..=30).contains(s)) {
            return Err(Error::InvalidValue {
                what: "QAffine shifts: in −31..=30",
            });
        }
        Ok(())
    }

    /// Words of packing space [`QAffine::forward`] needs for its fast kernels.
    pub const fn pack_len(input: usize, output: usize) -> usize {
        vnni::pack_len(input, output)
    }

    /// Output `j`'s value from its sum `acc` (bias included): requantized, then clamped.
    #[inline]
    pub(crate) fn finish(&self, j: usize, acc: i32) -> i8 {
        // Wrapping, as the vector kernels' adds do (a sum this far out clamps either way).
        let v = self
            .output_zero_point
            .wrapping_add(multiply_by_quantized_multiplier(
                acc,
                self.multiplier[j],
                self.shift[j],
            ));
        v.clamp(i32::from(self.act_min), i32::from(self.act_max)) as i8
    }

    /// This layer's weights packed into `buf` (at least [`QAffine::pack_len`] words) for the
    /// fast kernel of [`QAffine::forward`]: once per model, not per call.
    pub fn pack<'p>(&self, buf: &'p mut [i32]) -> Result<Packed<'p>> {
        let need = Self::pack_len(self.input, self.output);
        check_len("W", self.checked_weights_len()?, self.w.len())?;
        if buf.len() < need {
            return Err(Error::BufferLength {
                buffer: "int8 packing space",
                expected: need,
                actual: buf.len(),
            });
        }
        let words = &mut buf[..need];
        let input = self.input;
        vnni::pack(
            |j, kk| {
                let mut q = [0i8; 4];
                match self.layout {
                    WeightLayout::Rows => {
                        let row = &self.w[j * input..(j + 1) * input];
                        match row.get(4 * kk..4 * kk + 4) {
                            Some(four) => q.copy_from_slice(four),
                            None => {
                                for (d, &v) in q.iter_mut().zip(&row[4 * kk..]) {
                                    *d = v;
                                }
                            }
                        }
                    }
                    WeightLayout::Dsp => {
                        for (d, i) in q.iter_mut().zip(4 * kk..(4 * kk + 4).min(input)) {
                            *d = self.weight(j, i);
                        }
                    }
                }
                q
            },
            input,
            self.output,
            words,
        );
        Ok(Packed {
            words,
            of: self.identity(),
        })
    }

    /// `out = clamp(z_out + M · (bias + (x − z_in)·Wᵀ))` for a batch (`x`: batch × input,
    /// `out`: batch × output), the same bits every way:
    /// - on x86-64, with `packed` (this layer's weights, from [`QAffine::pack`]): AVX-512 VNNI
    ///   where the CPU has it, AMX's tiles for batches of 8 or more where the CPU and OS allow
    ///   ([`super::amx::available`]), AVX-VNNI on CPUs without AVX-512;
    /// - on a Cortex-M (`packed` is `None`): Helium (`VMLADAVA`) for the rows layout on an M55
    ///   or M85 built for its CPU; two multiply-adds an instruction (`SMLAD`) on a core with
    ///   the DSP extension (M4, M7, and M33 and later built for their CPU);
    /// - else as [`QAffine::forward_naive`].
    ///
    /// Every length is checked before anything is written.
    pub fn forward(&self, x: &[i8], out: &mut [i8], packed: Option<&Packed<'_>>) -> Result<()> {
        self.forward_with(
            x,
            out,
            packed,
            Kernels {
                avx512: true,
                amx_from: AMX_MIN_BATCH,
            },
        )
    }

    /// [`QAffine::forward`] with the kernels chosen (tests hold each to the reference).
    fn forward_with(
        &self,
        x: &[i8],
        out: &mut [i8],
        packed: Option<&Packed<'_>>,
        kernels: Kernels,
    ) -> Result<()> {
        let batch = self.check(x, out)?;
        // AVX-512 VNNI (with AMX for batches), else AVX-VNNI, where the CPU has them.
        let avx512 = kernels.avx512 && vnni::available();
        let Some(p) = packed.filter(|_| avx512 || vnni::avx_available()) else {
            #[cfg(zeronn_mve)]
            {
                // Cortex-M with Helium: the VMLADAVA kernel (no packing).
                super::mve::forward(self, x, out);
                return Ok(());
            }
            #[cfg(all(zeronn_dsp, not(zeronn_mve)))]
            {
                // Cortex-M with the DSP extension: the SMLAD kernel (no packing).
                super::dsp::forward(self, x, out);
                return Ok(());
            }
            #[cfg(not(zeronn_dsp))]
            return self.forward_naive(x, out);
        };
        if p.of != self.identity() {
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
            if !avx512 {
                for n0 in (0..batch).step_by(4) {
                    let rows = (batch - n0).min(4);
                    let xs = &x[n0 * self.input..(n0 + rows) * self.input];
                    let os = &mut out[n0 * self.output..(n0 + rows) * self.output];
                    for j0 in (0..self.output).step_by(16) {
                        // SAFETY: AVX-VNNI and AVX2 are present (checked above); the rest as
                        // for the AVX-512 kernel below, with j0 a multiple of 16 below
                        // `output`.
                        unsafe {
                            vnni::forward_avx(
                                xs,
                                rows,
                                self.input,
                                p.words,
                                self.output,
                                j0,
                                &e,
                                os,
                            )
                        };
                    }
                }
                return Ok(());
            }
            #[cfg(not(all(feature = "std", target_os = "linux")))]
            let _ = kernels.amx_from;
            #[cfg(all(feature = "std", target_os = "linux"))]
            if batch >= kernels.amx_from && super::amx::available() {
                {
                    // The inputs taken signed: Σ_i (x − z_in)·W = Σ_i x·W − z_in·Σ_i W.
                    let e = vnni::Epilogue {
                        zero: self.input_zero_point,
                        ..e
                    };
                    // SAFETY: AMX is granted (just asked); the rest as for the VNNI kernel
                    // below, for all `batch` samples and every output at once.
                    unsafe {
                        super::amx::forward(x, batch, self.input, p.words, self.output, &e, out)
                    };
                    return Ok(());
                }
            }
            for n0 in (0..batch).step_by(4) {
                let rows = (batch - n0).min(4);
                let xs = &x[n0 * self.input..(n0 + rows) * self.input];
                let os = &mut out[n0 * self.output..(n0 + rows) * self.output];
                for j0 in (0..self.output).step_by(64) {
                    // SAFETY: AVX-512 VNNI is present (`avx512`); `p.words` is `pack`'s
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
            let _ = (batch, p, avx512, kernels.amx_from);
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
                let mut acc = self.bias[j];
                let d = |xi: i8| i32::from(xi) - self.input_zero_point;
                if self.layout == WeightLayout::Rows {
                    let row = &self.w[j * self.input..(j + 1) * self.input];
                    for (&xi, &wi) in xn.iter().zip(row) {
                        acc = acc.wrapping_add(d(xi) * i32::from(wi));
                    }
                } else {
                    // Row j in the DSP layout ([`WeightLayout::position`]): in each block of 16
                    // bytes, inputs 4g, 4g + 2, 4g + 1, 4g + 3 at offsets 0, 2, 4, 6 from the
                    // row's first byte; a "b" row's bytes with their top bit flipped.
                    let groups = self.input.div_ceil(4);
                    let (q, p, b) = (j / 4, (j % 4) / 2, j % 2);
                    let base = q * groups * 16 + 8 * p + (1 - b);
                    let flip = if b == 1 { i8::MIN } else { 0 };
                    let row = &self.w[base..];
                    let w = |at: usize| i32::from(row[at] ^ flip);
                    for (x4, blk) in xn.chunks_exact(4).zip(row.chunks(16)) {
                        let blk = &blk[..7];
                        let w = |at: usize| i32::from(blk[at] ^ flip);
                        let sum =
                            d(x4[0]) * w(0) + d(x4[2]) * w(2) + d(x4[1]) * w(4) + d(x4[3]) * w(6);
                        acc = acc.wrapping_add(sum);
                    }
                    // The last inputs, if `input` is not a multiple of 4: input 4g + k at
                    // offset 0, 4, 2 for k = 0, 1, 2.
                    let g = self.input / 4;
                    for (&xi, at) in xn[4 * g..].iter().zip([0, 4, 2]) {
                        acc = acc.wrapping_add(d(xi) * w(16 * g + at));
                    }
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
                layout: WeightLayout::Rows,
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

    /// The fast kernels (AVX-512 VNNI, AMX and AVX-VNNI, where this CPU has them) give the
    /// reference's bits, over sizes that leave partial quads, partial registers and tiles, partial blocks
    /// of 64 outputs and of 4 and 16 samples, every zero point and clamp, and sums that wrap.
    #[test]
    fn the_fast_kernel_gives_the_reference_bits() {
        use std::vec;
        if !vnni::available() {
            std::eprintln!("no AVX-512 VNNI here: its passes run AVX-VNNI or the reference");
        } else if !super::super::amx::available() {
            std::eprintln!("no AMX here (or ZERONN_AMX=0): the AMX pass runs VNNI again");
        }
        if !vnni::avx_available() {
            std::eprintln!("no AVX-VNNI here: its pass runs the reference");
        }
        let sizes = [
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
            (784, 50, 37),
            (130, 65, 33),
            (100, 129, 20),
            (64, 16, 16),
            (1, 1, 16),
            (2000, 3, 17),
        ];
        super::super::test_layers::each(0x0123_4567_89ab_cdef, &sizes, |layer, x, batch| {
            let (input, output, z_in) = (layer.input, layer.output, layer.input_zero_point);
            let (mut fast, mut slow) = (vec![0i8; batch * output], vec![1i8; batch * output]);
            let mut pack = vec![0i32; QAffine::pack_len(input, output)];
            let packed = layer.pack(&mut pack).unwrap();
            layer.forward_naive(x, &mut slow).unwrap();
            // AVX-512 VNNI's registers, AMX's tiles, AVX-VNNI's registers (where this CPU
            // and OS have them; the next one down elsewhere).
            for (avx512, amx_from) in [(true, usize::MAX), (true, 1), (false, 1)] {
                fast.fill(3);
                let k = Kernels { avx512, amx_from };
                layer.forward_with(x, &mut fast, Some(&packed), k).unwrap();
                assert_eq!(fast, slow, "{input}×{output}, batch {batch}, z_in {z_in}");
            }
            // Packed from the DSP layout: the same bits.
            let mut w2 = vec![0i8; WeightLayout::Dsp.len(input, output)];
            layer.arrange(WeightLayout::Dsp, &mut w2).unwrap();
            let layer2 = QAffine {
                w: &w2,
                layout: WeightLayout::Dsp,
                ..*layer
            };
            let mut pack2 = vec![0i32; QAffine::pack_len(input, output)];
            let packed2 = layer2.pack(&mut pack2).unwrap();
            let mut fast2 = vec![5i8; batch * output];
            layer2.forward(x, &mut fast2, Some(&packed2)).unwrap();
            assert_eq!(fast2, slow, "DSP layout, {input}×{output}, batch {batch}");
        });
    }

    /// Every weight lands where [`WeightLayout::position`] says, once; the DSP layout's
    /// padding reads as zero weights; arranging back gives the rows again.
    #[test]
    fn the_layouts_hold_every_weight_once() {
        use std::vec;
        for &(input, output) in &[(1, 1), (3, 5), (4, 4), (9, 6), (50, 10)] {
            let w: Vec<i8> = (0..input * output)
                .map(|k| ((k * 37 + 11) % 255) as i32 - 127)
                .map(|v| v as i8)
                .collect();
            let (bias, m, s) = (vec![0; output], vec![1 << 30; output], vec![0; output]);
            let rows = QAffine {
                input,
                output,
                w: &w,
                layout: WeightLayout::Rows,
                bias: &bias,
                multiplier: &m,
                shift: &s,
                input_zero_point: 0,
                input_scale: 1.0,
                output_zero_point: 0,
                output_scale: 1.0,
                act_min: -128,
                act_max: 127,
            };
            let mut dsp = vec![0i8; WeightLayout::Dsp.len(input, output)];
            rows.arrange(WeightLayout::Dsp, &mut dsp).unwrap();
            let mut seen = vec![false; dsp.len()];
            for j in 0..output.next_multiple_of(4) {
                for i in 0..input.next_multiple_of(4) {
                    let (at, _) = WeightLayout::Dsp.position(input, j, i);
                    assert!(!seen[at], "{j},{i} shares byte {at}");
                    seen[at] = true;
                    let want = if j < output && i < input {
                        w[j * input + i]
                    } else {
                        0
                    };
                    assert_eq!(WeightLayout::Dsp.get(&dsp, input, j, i), want, "{j},{i}");
                }
            }
            assert!(seen.iter().all(|&s| s));
            let layer = QAffine {
                w: &dsp,
                layout: WeightLayout::Dsp,
                ..rows
            };
            let mut back = vec![0i8; w.len()];
            layer.arrange(WeightLayout::Rows, &mut back).unwrap();
            assert_eq!(back, w);
            assert!(layer.arrange(WeightLayout::Rows, &mut back[1..]).is_err());
            assert!(
                QAffine {
                    w: &dsp[1..],
                    ..layer
                }
                .forward_naive(&vec![0; input], &mut vec![0; output])
                .is_err()
            );
        }
    }

    #[test]
    fn wrong_lengths_are_errors_and_write_nothing() {
        let (w, b, m, s) = ([1i8; 6], [0i32; 2], [1 << 30; 2], [0i32; 2]);
        let layer = QAffine {
            input: 3,
            output: 2,
            w: &w,
            layout: WeightLayout::Rows,
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
        let mut pack = [0i32; QAffine::pack_len(3, 2)];
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
        // Values a model file cannot hold: zero points outside int8, shifts outside −31..=30.
        let bad_shift = [0, 31];
        for bad in [
            QAffine {
                input_zero_point: 200,
                ..layer
            },
            QAffine {
                output_zero_point: -129,
                ..layer
            },
            QAffine {
                shift: &bad_shift,
                ..layer
            },
        ] {
            assert!(bad.forward(&[1, 2, 3], &mut out[..2], None).is_err());
            assert!(bad.forward_naive(&[1, 2, 3], &mut out[..2]).is_err());
        }
        assert_eq!(out, [9; 4]);
        // Packed weights of another layer (the same bytes, read as another shape): refused.
        let other = QAffine {
            input: 2,
            output: 3,
            ..layer
        };
        assert!(
            other
                .forward(&[1, 2], &mut out[..3], Some(&packed))
                .is_err()
                || !crate::quant::fast_kernel()
        );
        layer
            .forward(&[1, 2, 3, 4, 5, 6], &mut out, Some(&packed))
            .unwrap();
        // Σ x · 1, times 0.5 (2^30 in Q31, shift 0), rounded: 6 · 0.5 = 3, 15 · 0.5 = 7.5 → 8.
        assert_eq!(out, [3, 3, 8, 8]);
    }
}
