//! The int8 Affine on Cortex-M cores with Helium (MVE, the M-profile vector extension: the
//! Cortex-M55 and M85, built with `-C target-cpu=cortex-m55` or the like; `build.rs` sets
//! `cfg(zeronn_mve)`): `VMLADAVA.S8` multiplies 16 int8 pairs and adds them to a 32-bit sum in
//! one instruction.
//!
//! Shapes as [`QAffine`]'s: `x` batch × input, `W` output × input (row `j` for output `j`),
//! `out` batch × output. For one sample, by blocks of [`BLOCK`] outputs, three outputs at a
//! time ([`dot3`]): per 16 inputs,
//! the inputs loaded once, and per row one load of 16 weights, one `VMLADAVA.S8` (`Σ x·w`) and
//! one `VADDVA.S8` (`Σ w`), in a tail-predicated loop (`DLSTP.8`/`LETP`: the last pass takes
//! only the inputs left, so nothing is read past a row): 11 instructions for 48 multiply-adds.
//! The input's zero point comes in once per output, `Σ (x − z)·w = Σ x·w − z · Σ w` (wrapping
//! int32, so the reference loop's bits); then the block's sums are requantized and clamped
//! as [`QAffine::forward_naive`] does, four at a time ([`requantize`]). Weights in
//! [`WeightLayout::Dsp`] go to the `SMLAD` kernel.

use super::{QAffine, WeightLayout};

/// Outputs summed at a time (their int32 sums are `4 · BLOCK` bytes of stack).
const BLOCK: usize = 64;

/// `out = clamp(z_out + M · (bias + (x − z_in)·Wᵀ))`, as [`QAffine::forward_naive`]; the
/// lengths checked by the caller ([`QAffine::forward`]).
pub(super) fn forward(l: &QAffine<'_>, x: &[i8], out: &mut [i8]) {
    if l.layout == WeightLayout::Dsp {
        return super::dsp::forward(l, x, out);
    }
    let (input, z) = (l.input, l.input_zero_point);
    let mut sums = [0i32; BLOCK];
    for (xn, on) in x.chunks_exact(input).zip(out.chunks_exact_mut(l.output)) {
        for j0 in (0..l.output).step_by(BLOCK) {
            let n = (l.output - j0).min(BLOCK);
            let rows = &l.w[j0 * input..(j0 + n) * input];
            // Three rows at a time; past the last row, the first of the three again (its
            // sums unused).
            for (s3, w3) in sums[..n].chunks_mut(3).zip(rows.chunks(3 * input)) {
                let (w0, more) = w3.split_at(input);
                let w1 = more.get(..input).unwrap_or(w0);
                let w2 = more.get(input..2 * input).unwrap_or(w0);
                let (dots, wsums) = dot3(xn, [w0, w1, w2]);
                for (s, (d, ws)) in s3.iter_mut().zip(dots.iter().zip(wsums)) {
                    *s = d.wrapping_sub(z.wrapping_mul(ws));
                }
            }
            requantize(l, j0, &sums[..n], &mut on[j0..j0 + n]);
        }
    }
}

/// `out[k] = clamp(z_out + MBQM(bias[j0 + k] + sums[k], M[j0 + k], shift[j0 + k]))` for the
/// outputs `j0..j0 + sums.len()`: as [`QAffine::finish`], four outputs an instruction on
/// Helium (`VQRDMULH` is the rounding doubling high multiply; the rounding right shift
/// `VRSHL` rounds halves up, so a negative value first takes one away, saturating, as gemmlowp
/// does on NEON, to round them away from zero).
fn requantize(l: &QAffine<'_>, j0: usize, sums: &[i32], out: &mut [i8]) {
    let n = sums.len();
    let (bias, m, shift) = (
        &l.bias[j0..j0 + n],
        &l.multiplier[j0..j0 + n],
        &l.shift[j0..j0 + n],
    );
    assert!(out.len() == n);
    #[cfg(all(target_arch = "arm", zeronn_mve))]
    // SAFETY: the loop reads `n` words from each of the four slices and writes `n` bytes to
    // `out` (the last pass predicated to the outputs left), all inside (lengths from the
    // slicing above and the assert); it writes only those bytes and registers: the pointers,
    // LR (the loop count) and q0–q7 (d0–d15).
    unsafe {
        core::arch::asm!(
            "vmov.i32 q3, #0",
            "vdup.32 q7, {lo}",
            "dlstp.32 lr, {n}",
            "2:",
            "vldrw.u32 q0, [{sums}], #16",
            "vldrw.u32 q1, [{bias}], #16",
            "vadd.i32 q0, q0, q1",
            "vldrw.u32 q2, [{shift}], #16",
            "vmax.s32 q4, q2, q3",
            "vmin.s32 q5, q2, q3",
            "vshl.s32 q0, q0, q4",
            "vldrw.u32 q1, [{m}], #16",
            "vqrdmulh.s32 q0, q0, q1",
            "vand q6, q0, q5",
            "vshr.s32 q6, q6, #31",
            "vqadd.s32 q0, q0, q6",
            "vrshl.s32 q0, q0, q5",
            "vadd.i32 q0, q0, {zp}",
            "vmax.s32 q0, q0, q7",
            "vdup.32 q6, {hi}",
            "vmin.s32 q0, q0, q6",
            "vstrb.32 q0, [r0], #4",
            "letp lr, 2b",
            n = in(reg) n,
            sums = inout(reg) sums.as_ptr() => _,
            bias = inout(reg) bias.as_ptr() => _,
            m = inout(reg) m.as_ptr() => _,
            shift = inout(reg) shift.as_ptr() => _,
            // A low register, as VSTRB.32 wants.
            inout("r0") out.as_mut_ptr() => _,
            zp = in(reg) l.output_zero_point,
            lo = in(reg) i32::from(l.act_min),
            hi = in(reg) i32::from(l.act_max),
            out("lr") _,
            out("d0") _,
            out("d1") _,
            out("d2") _,
            out("d3") _,
            out("d4") _,
            out("d5") _,
            out("d6") _,
            out("d7") _,
            out("d8") _,
            out("d9") _,
            out("d10") _,
            out("d11") _,
            out("d12") _,
            out("d13") _,
            out("d14") _,
            out("d15") _,
            options(nostack),
        );
    }
    #[cfg(not(all(target_arch = "arm", zeronn_mve)))]
    for (k, (o, &s)) in out.iter_mut().zip(sums).enumerate() {
        // The host's twin: the same steps, lane by lane.
        *o = lane(
            bias[k].wrapping_add(s),
            m[k],
            shift[k],
            l.output_zero_point,
            i32::from(l.act_min),
            i32::from(l.act_max),
        ) as i8;
    }
}

/// One lane of [`requantize`]'s loop, each step as its Helium instruction computes it (the
/// host's twin of the assembly, tested against the scalar requantization).
#[cfg_attr(all(target_arch = "arm", zeronn_mve), allow(dead_code))]
fn lane(total: i32, m: i32, shift: i32, zp: i32, lo: i32, hi: i32) -> i32 {
    let (left, neg) = (shift.max(0), shift.min(0));
    // VSHL: a left shift by 0..=30, wrapping.
    let x = total.wrapping_shl(left as u32);
    // VQRDMULH: (2ab + 2^31) >> 32, saturating (only MIN · MIN can).
    let x = if x == i32::MIN && m == i32::MIN {
        i32::MAX
    } else {
        ((2 * i64::from(x) * i64::from(m) + (1 << 31)) >> 32) as i32
    };
    // VAND, VSHR #31, VQADD: −1 for a negative value when shifting right, saturating.
    let x = x.saturating_add((x & neg) >> 31);
    // VRSHL by −e: (x + 2^(e−1)) >> e, in wider arithmetic.
    let e = -neg;
    let x = if e == 0 {
        x
    } else {
        ((i64::from(x) + (1 << (e - 1))) >> e) as i32
    };
    // VADD, VMAX, VMIN.
    x.wrapping_add(zp).max(lo).min(hi)
}

/// `(Σ_i x[i]·w_r[i], Σ_i w_r[i])` for the three rows `w` (each as long as `x`), wrapping.
#[inline(always)]
fn dot3(x: &[i8], w: [&[i8]; 3]) -> ([i32; 3], [i32; 3]) {
    assert!(w.iter().all(|r| r.len() == x.len()));
    #[cfg(all(target_arch = "arm", zeronn_mve))]
    {
        let (mut d0, mut d1, mut d2) = (0i32, 0i32, 0i32);
        let (mut s0, mut s1, mut s2) = (0i32, 0i32, 0i32);
        // SAFETY: the loop reads `x.len()` bytes from each of the four pointers (the last pass
        // predicated to the bytes left), all inside their slices (lengths checked above), and
        // writes only registers: the sums (even registers, as VMLADAVA and VADDVA want), the
        // pointers, LR (the loop count) and q0–q3 (d0–d7).
        unsafe {
            core::arch::asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{x}], #16",
                "vldrb.u8 q1, [{w0}], #16",
                "vmladava.s8 r0, q1, q0",
                "vaddva.s8 r8, q1",
                "vldrb.u8 q2, [{w1}], #16",
                "vmladava.s8 r2, q2, q0",
                "vaddva.s8 r10, q2",
                "vldrb.u8 q3, [{w2}], #16",
                "vmladava.s8 r4, q3, q0",
                "vaddva.s8 r12, q3",
                "letp lr, 2b",
                n = in(reg) x.len(),
                x = inout(reg) x.as_ptr() => _,
                w0 = inout(reg) w[0].as_ptr() => _,
                w1 = inout(reg) w[1].as_ptr() => _,
                w2 = inout(reg) w[2].as_ptr() => _,
                inout("r0") d0,
                inout("r2") d1,
                inout("r4") d2,
                inout("r8") s0,
                inout("r10") s1,
                inout("r12") s2,
                out("lr") _,
                // q0–q3.
                out("d0") _,
                out("d1") _,
                out("d2") _,
                out("d3") _,
                out("d4") _,
                out("d5") _,
                out("d6") _,
                out("d7") _,
                options(nostack, readonly),
            );
        }
        ([d0, d1, d2], [s0, s1, s2])
    }
    #[cfg(not(all(target_arch = "arm", zeronn_mve)))]
    {
        // The same sums, 16 at a time, for the host's tests.
        let mut d = [0i32; 3];
        let mut s = [0i32; 3];
        for (r, wr) in w.iter().enumerate() {
            for (xs, ws) in x.chunks(16).zip(wr.chunks(16)) {
                let (dot, sum) = xs.iter().zip(ws).fold((0i32, 0i32), |(d, s), (&a, &b)| {
                    (d + i32::from(a) * i32::from(b), s + i32::from(b))
                });
                d[r] = d[r].wrapping_add(dot);
                s[r] = s[r].wrapping_add(sum);
            }
        }
        (d, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::requant::multiply_by_quantized_multiplier;
    use std::vec;

    /// The vector requantization's steps give the scalar requantization's integers at the
    /// edges of every rounding: the extremes, zero and ±1, each side of every power of two
    /// and of the halves between, for every shift and the multipliers' extremes.
    #[test]
    fn the_helium_requantization_steps_give_the_scalar_integers() {
        use super::super::test_layers::{MULTIPLIERS, rounding_edges};
        let xs = rounding_edges();
        for m in MULTIPLIERS {
            for shift in -31..=30 {
                for (zp, lo, hi) in [(0i32, i32::MIN, i32::MAX), (-5, -128, 127)] {
                    for &x in &xs {
                        let want = zp
                            .wrapping_add(multiply_by_quantized_multiplier(x, m, shift))
                            .clamp(lo, hi);
                        assert_eq!(
                            lane(x, m, shift, zp, lo, hi),
                            want,
                            "x {x} m {m} shift {shift}"
                        );
                    }
                }
            }
        }
    }

    /// The Helium kernel's steps (their Rust twin on the host) give the reference loop's bits
    /// over ragged sizes (rows not a multiple of 3, inputs not of 16, more outputs than a
    /// block), every zero point and clamp, and sums that wrap.
    #[test]
    fn the_helium_steps_give_the_reference_bits() {
        let sizes = [
            (1, 1, 1),
            (16, 3, 1),
            (17, 4, 2),
            (784, 50, 2),
            (50, 10, 3),
            (33, 5, 1),
            (100, 2, 2),
            (100, 67, 2),
            (17, 130, 1),
        ];
        super::super::test_layers::each(0x4d56_4555_0055_0001, &sizes, |layer, x, batch| {
            let (input, output, z_in) = (layer.input, layer.output, layer.input_zero_point);
            let (mut fast, mut slow) = (vec![0i8; batch * output], vec![1i8; batch * output]);
            forward(layer, x, &mut fast);
            layer.forward_naive(x, &mut slow).unwrap();
            assert_eq!(fast, slow, "{input}×{output}, batch {batch}, z_in {z_in}");
        });
    }
}
