//! int8 inference, in the scheme TensorFlow Lite (Micro) and CMSIS-NN use, so that a result is
//! defined to the bit and users can reason about it as they do there:
//!
//! - a tensor of reals is int8 with a scale and a zero point, `real = scale · (q − zero_point)`
//!   ([`QParams`]); activations are asymmetric, ranges calibrated on sample inputs;
//! - weights are symmetric (zero point 0) with one scale per output channel (per output of an
//!   Affine), biases int32 with the scale `s_in · s_w`;
//! - a layer's sums are int32, brought to its output's scale by a fixed-point multiplier and
//!   shift ([`requant`]), clamped to int8; a ReLU after the layer is that clamp's lower bound.
//!
//! A layer's weights lie in one of two layouts ([`WeightLayout`]): output by output, or made
//! for the `SMLAD` kernel of Cortex-M's DSP extension; every kernel reads both, with the same
//! bits.
//!
//! Every buffer is the caller's, as in the f32 core: [`QAffine`] runs over slices whose
//! lengths its `const fn`s give, and a [`QModel`] (the int8 model format, [`model`]) runs from
//! the model's bytes in place, with a workspace of [`QModel::workspace_len`].

mod affine;
pub mod amx;
pub mod conv;
#[cfg(any(test, zeronn_dsp))]
mod dsp;
pub mod model;
#[cfg(any(test, zeronn_mve))]
mod mve;
pub mod requant;
mod vnni;

pub use affine::{Packed, QAffine, WeightLayout};
pub use conv::QConvolution;
pub use model::{QModel, QOp, QPacked};

use crate::error::{Error, Result};
use crate::math::round_f64;

/// How int8 values stand for reals: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// The real step between two int8 values (> 0).
    pub scale: f32,
    /// The int8 value that stands for 0.
    pub zero_point: i32,
}

impl QParams {
    /// The parameters that map `[min, max]`, widened to hold 0 (so that 0 is exact, as
    /// padding and ReLU need), onto `-128..=127`, as TensorFlow Lite chooses them: the scale
    /// `(max − min) / 255`, the zero point rounded and clamped. A range of one point (all
    /// zeros) gets scale 1.
    pub fn from_range(min: f32, max: f32) -> Result<QParams> {
        if !(min.is_finite() && max.is_finite()) || min > max {
            return Err(Error::InvalidValue {
                what: "int8 range: min and max must be finite, min ≤ max",
            });
        }
        let (min, max) = (f64::from(min.min(0.0)), f64::from(max.max(0.0)));
        if max == min {
            return Ok(QParams {
                scale: 1.0,
                zero_point: 0,
            });
        }
        let scale = (max - min) / 255.0;
        let zero_point = round_f64(-128.0 - min / scale).clamp(-128.0, 127.0) as i32;
        Ok(QParams {
            scale: scale as f32,
            zero_point,
        })
    }

    /// `x` in int8: `round(x / scale) + zero_point`, saturated.
    pub fn quantize(&self, x: f32) -> i8 {
        let q = round_f64(f64::from(x) / f64::from(self.scale)) + f64::from(self.zero_point);
        q.clamp(-128.0, 127.0) as i8
    }

    /// The real that `q` stands for.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (i32::from(q) - self.zero_point) as f32
    }
}

/// Whether this CPU runs a fast kernel in [`QAffine::forward`] (AVX-512 VNNI, with AMX's tiles
/// for batches where [`amx::available`]; AVX-VNNI; `SMLAD` on a Cortex-M with the DSP
/// extension, Helium on an M55): the reference loop otherwise (the same bits).
pub fn fast_kernel() -> bool {
    vnni::available() || vnni::avx_available() || cfg!(zeronn_dsp) || cfg!(zeronn_mve)
}

/// The kernel [`QAffine::forward`] runs here, in words (for reports).
pub fn kernel_name() -> &'static str {
    if vnni::available() && amx::available() {
        "AMX tiles for batches, AVX-512 VNNI for one to seven samples"
    } else if vnni::available() {
        "AVX-512 VNNI"
    } else if vnni::avx_available() {
        "AVX-VNNI"
    } else if cfg!(zeronn_mve) {
        "Helium VMLADAVA (SMLAD for the Cortex-M layout)"
    } else if cfg!(zeronn_dsp) {
        "SMLAD"
    } else {
        "the reference loop"
    }
}

/// Index of the largest int8 score (the first one on ties; 0 for an empty row): the class,
/// since one scale and zero point serve the whole row, so the order is the reals'.
pub fn argmax(row: &[i8]) -> usize {
    // Each score as a key, its value above its position counted down, so that the largest
    // key is the first of the largest scores: a maximum with no branch on the scores, which a
    // processor would mispredict about once a row (rows of 2^24 scores or more take a loop).
    const LAST: i32 = (1 << 24) - 1;
    if row.len() > LAST as usize {
        let mut best = 0;
        for (i, &x) in row.iter().enumerate() {
            if x > row[best] {
                best = i;
            }
        }
        return best;
    }
    let mut best = i32::MIN;
    for (i, &x) in row.iter().enumerate() {
        best = best.max((i32::from(x) << 24) | (LAST - i as i32));
    }
    if row.is_empty() {
        0
    } else {
        (LAST - (best & LAST)) as usize
    }
}

/// What the kernels' tests share: random layers, and the values at the edges of every
/// rounding of the requantization.
#[cfg(test)]
pub(crate) mod test_layers {
    use super::{QAffine, WeightLayout};
    use crate::random::Rng;
    use std::vec::Vec;

    /// `check(layer, x, batch)` for random layers in the rows layout of each size
    /// `(input, output, batch)`: random weights, biases (sums that wrap), multipliers and
    /// shifts; three zero points and clamps (one a ReLU's); dense inputs, then inputs mostly
    /// at −128 (MNIST's blank pixels).
    pub(crate) fn each(
        seed: u64,
        sizes: &[(usize, usize, usize)],
        mut check: impl FnMut(&QAffine<'_>, &[i8], usize),
    ) {
        let mut rng = crate::random::seeded(seed);
        let mut next = || rng.next_u64();
        for &(input, output, batch) in sizes {
            let w: Vec<i8> = (0..input * output).map(|_| (next() % 255) as i8).collect();
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
                        layout: WeightLayout::Rows,
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
                    check(&layer, &x, batch);
                }
            }
        }
    }

    /// The extremes, zero and ±1, and each side of every power of two and of the halves
    /// between them, positive and negative.
    pub(crate) fn rounding_edges() -> Vec<i32> {
        let mut xs = std::vec![i32::MIN, i32::MIN + 1, i32::MAX, i32::MAX - 1, 0, 1, -1];
        for p in 0..31 {
            for d in [-1i32, 0, 1] {
                xs.push((1i32 << p).wrapping_add(d));
                xs.push((-(1i64 << p) as i32).wrapping_add(d));
                xs.push(((3i64 << p) >> 1) as i32 + d);
                xs.push((-((3i64 << p) >> 1)) as i32 + d);
            }
        }
        xs
    }

    /// Multipliers at their range's edges (and 0).
    pub(crate) const MULTIPLIERS: [i32; 6] = [
        0,
        1 << 30,
        (1 << 30) + 1,
        1_518_500_250,
        i32::MAX - 1,
        i32::MAX,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_maps_onto_int8_with_zero_exact() {
        // MNIST's pixels: [0, 1] in steps of 1/255, byte b is b − 128.
        let p = QParams::from_range(0.0, 1.0).unwrap();
        assert_eq!(p.zero_point, -128);
        assert!((p.scale - 1.0 / 255.0).abs() < 1e-9);
        for b in 0..=255u8 {
            assert_eq!(p.quantize(f32::from(b) / 255.0), (i32::from(b) - 128) as i8);
        }
        let p = QParams::from_range(-1.0, 3.0).unwrap();
        assert_eq!(p.dequantize(p.quantize(0.0)), 0.0);
        assert_eq!(p.quantize(100.0), 127);
        assert_eq!(p.quantize(-100.0), -128);
        // A range that leaves out 0 is widened to hold it.
        let p = QParams::from_range(2.0, 3.0).unwrap();
        assert_eq!(p.quantize(0.0), -128);
        assert!(QParams::from_range(1.0, 0.0).is_err());
        assert!(QParams::from_range(f32::NAN, 0.0).is_err());
        assert_eq!(QParams::from_range(0.0, 0.0).unwrap().scale, 1.0);
    }

    #[test]
    fn argmax_takes_the_first_of_the_largest() {
        assert_eq!(argmax(&[-3, 7, 2, 7]), 1);
        assert_eq!(argmax(&[-128]), 0);
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[-128, -128]), 0);
        assert_eq!(argmax(&[-7, -9, -7]), 0);
        assert_eq!(argmax(&[-9, 127, -128, 127]), 1);
        // Against the loop that keeps the first largest, on random rows with many ties.
        use crate::random::Rng;
        let mut rng = crate::random::seeded(7);
        for n in 1..40 {
            let row: std::vec::Vec<i8> = (0..n).map(|_| (rng.next_u64() % 5) as i8 - 2).collect();
            let mut best = 0;
            for (i, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = i;
                }
            }
            assert_eq!(argmax(&row), best, "{row:?}");
        }
    }
}
