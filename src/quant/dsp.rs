//! The int8 Affine on Cortex-M cores with the DSP extension (Cortex-M4 and M7; M33, M35P, M55
//! and M85 built with `-C target-cpu=…`): two 16-bit multiply-adds in one instruction
//! (`SMLAD`), four weights taken apart into two pairs by two (`SXTB16`). (On the M55 and M85
//! the rows layout runs Helium instead, `super::mve`.)
//!
//! Two weight layouts ([`WeightLayout`]): [`WeightLayout::Dsp`], made for this kernel, takes
//! 17 instructions for 16 multiply-adds and no buffer ([`forward_dsp_layout`]);
//! [`WeightLayout::Rows`] takes 21 and widens the inputs into a stack buffer first, as follows.
//!
//! Shapes as [`QAffine`]'s: `x` batch × input, `W` output × input (row `j` for output `j`),
//! `out` batch × output. For one sample, by blocks of [`BLOCK`] outputs and chunks of [`CHUNK`]
//! inputs:
//! 1. the chunk's `x − z_in` widened once to 16-bit pairs ([`widen`]): for inputs `4g..4g+4`,
//!    word `2g` holds `(d[4g], d[4g+2])` and word `2g+1` holds `(d[4g+1], d[4g+3])`, the order
//!    in which `SXTB16` and `SXTB16 … ROR #8` take a word of four weights apart;
//! 2. four outputs at a time ([`dot4`]): per four inputs, the inputs' two words loaded once for
//!    the four rows, and per row one word of weights, two `SXTB16` and two `SMLAD`: 21
//!    instructions for 16 multiply-adds, plus the loop's two for every 64;
//! 3. the last rows two or one at a time ([`dot2`], [`dot1`]), the inputs past the last whole
//!    four one at a time;
//! 4. each sum requantized and clamped as [`QAffine::forward_naive`] does.
//!
//! Integer sums, wrapping as two's complement: the reference loop's bits. On other targets the
//! same steps run with the instructions written out in Rust ([`sxtb16`], [`smlad`], …), so
//! that the host's tests hold this layout against the reference; the firmware's tests hold the
//! Cortex-M code against the desktop's logits.

use core::mem::MaybeUninit;

use super::requant::multiply_by_quantized_multiplier;
use super::{QAffine, WeightLayout};

/// Inputs widened at a time (their 16-bit pairs are `2 · CHUNK` bytes of stack).
const CHUNK: usize = 800;
/// Outputs summed at a time (their int32 sums are `4 · BLOCK` bytes of stack).
const BLOCK: usize = 64;

/// `out = clamp(z_out + M · (bias + (x − z_in)·Wᵀ))`, as [`QAffine::forward_naive`]; the
/// lengths checked by the caller ([`QAffine::forward`]).
pub(super) fn forward(l: &QAffine<'_>, x: &[i8], out: &mut [i8]) {
    match l.layout {
        WeightLayout::Rows => forward_rows(l, x, out),
        WeightLayout::Dsp => forward_dsp_layout(l, x, out),
    }
}

/// [`forward`] for weights in [`WeightLayout::Rows`] (steps 1 to 4 of the module docs).
#[inline(never)]
fn forward_rows(l: &QAffine<'_>, x: &[i8], out: &mut [i8]) {
    let (input, z) = (l.input, l.input_zero_point);
    // Chunks of equal length (a multiple of 4, at most CHUNK): one call of the kernels per
    // chunk and group of rows, so as few chunks as fit.
    let step = input.div_ceil(input.div_ceil(CHUNK)).next_multiple_of(4);
    // Written by `widen` before any read; not cleared, to spare the instructions.
    let mut wide = [const { MaybeUninit::<u32>::uninit() }; CHUNK / 2];
    let mut sums = [const { MaybeUninit::<i32>::uninit() }; BLOCK];
    for (xn, on) in x.chunks_exact(input).zip(out.chunks_exact_mut(l.output)) {
        for j0 in (0..l.output).step_by(BLOCK) {
            let rows = (l.output - j0).min(BLOCK);
            let acc = start_from(&mut sums[..rows], &l.bias[j0..j0 + rows]);
            for k0 in (0..input).step_by(step) {
                let len = (input - k0).min(step);
                let whole = len / 4 * 4;
                let wide = widen(&xn[k0..k0 + whole], z, &mut wide[..whole / 2]);
                // Row r of the block, from input k0 on.
                let w = |r: usize| &l.w[(j0 + r) * input + k0..];
                let mut r = 0;
                while r + 4 <= rows {
                    dot4(wide, w(r), input, &mut acc[r..r + 4]);
                    r += 4;
                }
                if r + 2 <= rows {
                    dot2(wide, w(r), input, &mut acc[r..r + 2]);
                    r += 2;
                }
                if r < rows {
                    acc[r] = dot1(wide, w(r), acc[r]);
                }
                if whole < len {
                    for (r, a) in acc.iter_mut().enumerate() {
                        for (&xi, &wi) in xn[k0 + whole..k0 + len].iter().zip(&w(r)[whole..len]) {
                            *a = a.wrapping_add((i32::from(xi) - z) * i32::from(wi));
                        }
                    }
                }
            }
            let rows = j0..j0 + rows;
            requantize(
                l,
                acc,
                &l.multiplier[rows.clone()],
                &l.shift[rows.clone()],
                &mut on[rows],
            );
        }
    }
}

/// The same for weights in [`WeightLayout::Dsp`], where a 32-bit word holds two outputs'
/// weights for two inputs, each 16 bits `256 · a + (b + 128)`. For one sample, by blocks of
/// [`BLOCK`] outputs, four outputs (two pairs `a`, `b`) at a time ([`quad`]), over the inputs
/// in fours read straight from `x`: per four inputs, `x − z_in` as two pairs (two `SXTAB16`),
/// and per pair of outputs two words of weights (one `LDRD`), two `SMLAD`s on them as they
/// are (`S += d · (256a + b + 128)`) and two on their `a` bytes (`A += d · a`, after
/// `SXTB16 … ROR #8`): 17 instructions for 16 multiply-adds. Then `a`'s sum is `A` and
/// `b`'s is `S − 256·A − 128·Σd`, in wrapping int32 arithmetic, which is exact because the
/// true sums fit. The inputs past the last whole four one at a time, then step 4.
#[inline(never)]
fn forward_dsp_layout(l: &QAffine<'_>, x: &[i8], out: &mut [i8]) {
    let (input, z) = (l.input, l.input_zero_point);
    #[cfg(all(zeronn_dsp, target_arch = "arm"))]
    if !(l.w.as_ptr() as usize).is_multiple_of(4) {
        // The kernel loads the weights two words at a time, which must be aligned (a model
        // file's are); the reference loop for a layer over other memory.
        let _ = l.forward_naive(x, out);
        return;
    }
    let (groups, whole) = (input / 4, input / 4 * 4);
    // Bytes of weights per four outputs.
    let stride = input.div_ceil(4) * 16;
    let minus_z = (z.wrapping_neg() as u16 as u32) * 0x0001_0001;
    let mut sums = [const { MaybeUninit::<i32>::uninit() }; BLOCK];
    for (xn, on) in x.chunks_exact(input).zip(out.chunks_exact_mut(l.output)) {
        // The inputs past the last whole four, padded with the zero point (whose `x − z` is
        // 0, as the layout's padding weights are), so that the kernel takes them as a group.
        let mut tail = [z as i8; 4];
        tail[..input - whole].copy_from_slice(&xn[whole..]);
        // Σ (x − z) over the inputs.
        let d_sum = sum_of(xn).wrapping_sub(z.wrapping_mul(input as i32));
        for j0 in (0..l.output).step_by(BLOCK) {
            let rows = (l.output - j0).min(BLOCK);
            let acc = start_from(&mut sums[..rows], &l.bias[j0..j0 + rows]);
            for (r0, acc4) in (0..rows).step_by(4).zip(acc.chunks_mut(4)) {
                let wq = &l.w[(j0 + r0) / 4 * stride..][..stride];
                // Both pairs of the four outputs, or the first alone if the second is padding.
                let pairs = acc4.len().div_ceil(2);
                let mut sa = [0i32; 4];
                quad(&xn[..whole], &wq[..16 * groups], pairs, minus_z, &mut sa);
                if whole < input {
                    quad(&tail, &wq[16 * groups..], pairs, minus_z, &mut sa);
                }
                let b_of = |s: i32, a: i32| s.wrapping_sub(a << 8).wrapping_sub(d_sum << 7);
                let four = [sa[1], b_of(sa[0], sa[1]), sa[3], b_of(sa[2], sa[3])];
                for (a, &v) in acc4.iter_mut().zip(&four) {
                    *a = a.wrapping_add(v);
                }
            }
            let rows = j0..j0 + rows;
            requantize(
                l,
                acc,
                &l.multiplier[rows.clone()],
                &l.shift[rows.clone()],
                &mut on[rows],
            );
        }
    }
}

/// Most values of a patch [`conv_rows`] takes (one filter widened at once).
pub(super) const CONV_MAX_PATCH: usize = CHUNK;

/// The int8 Convolution filter by filter, the roles of [`forward_rows`] swapped: a filter's
/// weights widened once (16-bit pairs), then four positions' patches at a time through
/// [`dot4`] as the "rows", raw (`Σ w·(x − z) = Σ w·x − z·Σ w`, the second term taken with the
/// bias before the loop; in wrapping int32 arithmetic both are the same number), and each sum
/// requantized by [`requantize_plane`] with the filter's multiplier and shift, which stay the
/// same along its plane. `col` holds the positions' patches, `row` bytes apart (`row` a
/// multiple of 4, at least the patch, at most [`CONV_MAX_PATCH`]; the bytes past the patch
/// any value: the widened weights are zero there); `out` the outputs filter by filter
/// (`filters × positions`). Weights in [`WeightLayout::Rows`]; lengths checked by the caller.
pub(super) fn conv_rows(l: &QAffine<'_>, col: &[i8], row: usize, out: &mut [i8]) {
    let (patch, z) = (l.input, l.input_zero_point);
    assert!(l.layout == WeightLayout::Rows && row.is_multiple_of(4));
    assert!(patch <= row && row <= CONV_MAX_PATCH && col.len().is_multiple_of(row));
    let positions = col.len() / row;
    let mut padded = [0i8; CONV_MAX_PATCH];
    let mut wide = [const { MaybeUninit::<u32>::uninit() }; CONV_MAX_PATCH / 2];
    let mut sums = [const { MaybeUninit::<i32>::uninit() }; BLOCK];
    for (f, plane) in out.chunks_exact_mut(positions).enumerate().take(l.output) {
        let w = &l.w[f * patch..(f + 1) * patch];
        padded[..patch].copy_from_slice(w);
        let wide = widen(&padded[..row], 0, &mut wide[..row / 2]);
        let base = l.bias[f].wrapping_sub(z.wrapping_mul(sum_of(w)));
        for p0 in (0..positions).step_by(BLOCK) {
            let rows = (positions - p0).min(BLOCK);
            let acc = start_from_one(&mut sums[..rows], base);
            // Position p0 + r's patch.
            let x = |r: usize| &col[(p0 + r) * row..];
            let mut r = 0;
            while r + 4 <= rows {
                dot4(wide, x(r), row, &mut acc[r..r + 4]);
                r += 4;
            }
            if r + 2 <= rows {
                dot2(wide, x(r), row, &mut acc[r..r + 2]);
                r += 2;
            }
            if r < rows {
                acc[r] = dot1(wide, x(r), acc[r]);
            }
            requantize_plane(l, f, acc, &mut plane[p0..p0 + rows]);
        }
    }
}

/// `sums`, each set to `v`.
fn start_from_one(sums: &mut [MaybeUninit<i32>], v: i32) -> &mut [i32] {
    for s in sums.iter_mut() {
        s.write(v);
    }
    // SAFETY: every element was written just above; MaybeUninit<i32> and i32 have one layout.
    unsafe { &mut *(sums as *mut [MaybeUninit<i32>] as *mut [i32]) }
}

/// `out[p] = clamp(z_out + M_f · acc[p])` along filter `f`'s plane: its multiplier and shift
/// taken once, and the two cases of [`multiply_by_quantized_multiplier`] apart outside the
/// loop (the same arithmetic, so the same bits).
#[inline(never)]
fn requantize_plane(l: &QAffine<'_>, f: usize, acc: &[i32], out: &mut [i8]) {
    use super::requant::{rounding_divide_by_pot, saturating_rounding_doubling_high_mul as srdhm};
    let (lo, hi, zero) = (
        i32::from(l.act_min),
        i32::from(l.act_max),
        l.output_zero_point,
    );
    let (m, shift) = (l.multiplier[f], l.shift[f]);
    let clamp = |v: i32| zero.wrapping_add(v).max(lo).min(hi) as i8;
    if shift > 0 {
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = clamp(srdhm(a.wrapping_shl(shift as u32), m));
        }
    } else {
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = clamp(rounding_divide_by_pot(srdhm(a, m), -shift));
        }
    }
}

/// `Σ x` (wrapping, though it cannot wrap for at most 2^16 values).
fn sum_of(x: &[i8]) -> i32 {
    let (words, rest) = x.split_at(x.len() / 4 * 4);
    // Four at a time as unsigned bytes `x + 128` (`USADA8` against zero), then the 128s off.
    let mut sum = 0u32;
    for q in words.chunks_exact(4) {
        let v = u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]);
        sum = usada8(sum, v ^ 0x8080_8080);
    }
    let sum = (sum as i32).wrapping_sub(128 * words.len() as i32);
    rest.iter().fold(sum, |s, &v| s.wrapping_add(i32::from(v)))
}

/// `acc` += the sums of one block of four outputs over the inputs `x` (a multiple of 4; `w`
/// the block's weights, `4 · x.len()` bytes): `[S₀, A₀, S₁, A₁]` for its two pairs, or
/// `[S₀, A₀]` for the first alone (`pairs` 1), see [`forward_dsp_layout`].
fn quad(x: &[i8], w: &[i8], pairs: usize, minus_z: u32, acc: &mut [i32; 4]) {
    let groups = x.len() / 4;
    assert!(x.len().is_multiple_of(4) && w.len() >= 16 * groups && (1..=2).contains(&pairs));
    // LDRD needs 4-byte alignment (the caller falls back to the reference loop otherwise).
    #[cfg(all(zeronn_dsp, target_arch = "arm"))]
    assert!((w.as_ptr() as usize).is_multiple_of(4));
    #[cfg(all(zeronn_dsp, target_arch = "arm"))]
    // SAFETY: `x` holds `4 · groups` bytes and `w` `16 · groups`, `w` is 4-aligned (both
    // checked just above); the loops read nothing else.
    unsafe {
        if pairs == 2 {
            arm::quad(x.as_ptr(), w.as_ptr(), groups, minus_z, acc)
        } else {
            let a: &mut [i32; 2] = (&mut acc[..2]).try_into().expect("two sums");
            arm::pair(x.as_ptr(), w.as_ptr(), groups, minus_z, a)
        }
    };
    #[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
    for (g, xq) in x.chunks_exact(4).enumerate() {
        let v = word(xq);
        let (x0, x1) = (sxtab16(minus_z, v), sxtab16_ror8(minus_z, v));
        for p in 0..pairs {
            let (w0, w1) = (word(&w[16 * g + 8 * p..]), word(&w[16 * g + 8 * p + 4..]));
            acc[2 * p] = smlad(x1, w1, smlad(x0, w0, acc[2 * p]));
            let a = smlad(x0, sxtb16_ror8(w0), acc[2 * p + 1]);
            acc[2 * p + 1] = smlad(x1, sxtb16_ror8(w1), a);
        }
    }
}

/// `sums`, each set to its bias (`bias.len() = sums.len()`).
fn start_from<'s>(sums: &'s mut [MaybeUninit<i32>], bias: &[i32]) -> &'s mut [i32] {
    assert_eq!(sums.len(), bias.len());
    for (s, &b) in sums.iter_mut().zip(bias) {
        s.write(b);
    }
    // SAFETY: every element was written just above; MaybeUninit<i32> and i32 have one layout.
    unsafe { &mut *(sums as *mut [MaybeUninit<i32>] as *mut [i32]) }
}

/// `out[j] = clamp(z_out + M_j · acc[j])` for a block of outputs (step 4), in a function of its
/// own so that its values have registers to live in.
#[inline(never)]
fn requantize(l: &QAffine<'_>, acc: &[i32], multiplier: &[i32], shift: &[i32], out: &mut [i8]) {
    let (lo, hi, zero) = (
        i32::from(l.act_min),
        i32::from(l.act_max),
        l.output_zero_point,
    );
    for ((o, &a), (&m, &shift)) in out.iter_mut().zip(acc).zip(multiplier.iter().zip(shift)) {
        let v = zero.wrapping_add(multiply_by_quantized_multiplier(a, m, shift));
        *o = v.max(lo).min(hi) as i8;
    }
}

/// `x − z` (`x.len() = 2 · wide.len()`, a multiple of 4) into 16-bit pairs, in the order of
/// the module docs (step 1). `x − z` is within ±255, so a pair holds it exactly.
#[inline(always)]
fn widen<'w>(x: &[i8], z: i32, wide: &'w mut [MaybeUninit<u32>]) -> &'w [u32] {
    assert!(x.len() == 2 * wide.len() && x.len().is_multiple_of(4));
    let minus_z = (z.wrapping_neg() as u16 as u32) * 0x0001_0001;
    let word = |q: &[i8]| u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]);
    // Two groups a pass (the loop's overhead halved), then the odd one.
    let (x_pairs, x_odd) = x.split_at(x.len() / 8 * 8);
    let (w_pairs, w_odd) = wide.split_at_mut(wide.len() / 4 * 4);
    for (q, w) in x_pairs.chunks_exact(8).zip(w_pairs.chunks_exact_mut(4)) {
        let (u, v) = (word(&q[..4]), word(&q[4..]));
        w[0].write(sxtab16(minus_z, u));
        w[1].write(sxtab16_ror8(minus_z, u));
        w[2].write(sxtab16(minus_z, v));
        w[3].write(sxtab16_ror8(minus_z, v));
    }
    if let [w0, w1] = w_odd {
        let u = word(x_odd);
        w0.write(sxtab16(minus_z, u));
        w1.write(sxtab16_ror8(minus_z, u));
    }
    // SAFETY: every element of `wide` was written just above (`x` holds two inputs per
    // element: whole passes of 8 inputs, then the 4 left, if any); MaybeUninit<u32> and u32
    // have one layout.
    unsafe { &*(wide as *const [MaybeUninit<u32>] as *const [u32]) }
}

/// `acc[r] += Σ_i d[i] · W[r, i]` for the four rows of `w` that start at `0`, `stride`,
/// `2·stride` and `3·stride`, over the `2 · wide.len()` inputs `wide` holds (step 2).
fn dot4(wide: &[u32], w: &[i8], stride: usize, acc: &mut [i32]) {
    let groups = wide.len() / 2;
    // The caller's slicing guarantees these; checked because the Cortex-M loop reads by pointer.
    assert!(acc.len() == 4 && stride >= 4 * groups && w.len() >= 3 * stride + 4 * groups);
    #[cfg(all(zeronn_dsp, target_arch = "arm"))]
    {
        let a: &mut [i32; 4] = acc.try_into().expect("four sums");
        // SAFETY: `wide` holds `2 · groups` words and each of the four rows `4 · groups` bytes
        // from its start (checked just above); the loop reads nothing else.
        unsafe { arm::dot4(wide.as_ptr(), w.as_ptr(), stride, groups, a) };
    }
    #[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
    for (g, xs) in wide.chunks_exact(2).enumerate() {
        for (r, a) in acc.iter_mut().enumerate() {
            let v = word(&w[r * stride + 4 * g..]);
            *a = smlad(xs[1], sxtb16_ror8(v), smlad(xs[0], sxtb16(v), *a));
        }
    }
}

/// `acc[r] += Σ_i d[i] · W[r, i]` for the two rows of `w` that start at `0` and `stride`
/// (step 3).
fn dot2(wide: &[u32], w: &[i8], stride: usize, acc: &mut [i32]) {
    let groups = wide.len() / 2;
    assert!(acc.len() == 2 && stride >= 4 * groups && w.len() >= stride + 4 * groups);
    #[cfg(all(zeronn_dsp, target_arch = "arm"))]
    {
        let a: &mut [i32; 2] = acc.try_into().expect("two sums");
        // SAFETY: `wide` holds `2 · groups` words and each of the two rows `4 · groups` bytes
        // from its start (checked just above).
        unsafe { arm::dot2(wide.as_ptr(), w.as_ptr(), stride, groups, a) };
    }
    #[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
    for (g, xs) in wide.chunks_exact(2).enumerate() {
        for (r, a) in acc.iter_mut().enumerate() {
            let v = word(&w[r * stride + 4 * g..]);
            *a = smlad(xs[1], sxtb16_ror8(v), smlad(xs[0], sxtb16(v), *a));
        }
    }
}

/// `acc + Σ_i d[i] · w[i]` over the `2 · wide.len()` inputs `wide` holds: one row (step 3).
fn dot1(wide: &[u32], w: &[i8], acc: i32) -> i32 {
    let groups = wide.len() / 2;
    assert!(w.len() >= 4 * groups);
    #[cfg(all(zeronn_dsp, target_arch = "arm"))]
    {
        // SAFETY: `wide` holds `2 · groups` words and `w` at least `4 · groups` bytes (checked).
        unsafe { arm::dot1(wide.as_ptr(), w.as_ptr(), groups, acc) }
    }
    #[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
    wide.chunks_exact(2).enumerate().fold(acc, |a, (g, xs)| {
        let v = word(&w[4 * g..]);
        smlad(xs[1], sxtb16_ror8(v), smlad(xs[0], sxtb16(v), a))
    })
}

/// Four weights as one little-endian word, as a 32-bit load reads them.
#[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
fn word(w: &[i8]) -> u32 {
    u32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8])
}

/// `SXTB16`: bytes 0 and 2 of `v`, sign-extended into the low and high 16 bits.
#[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
fn sxtb16(v: u32) -> u32 {
    let half = |b: u32| u32::from(b as u8 as i8 as i16 as u16);
    half(v) | half(v >> 16) << 16
}

/// `SXTB16 … ROR #8`: bytes 1 and 3 of `v`, sign-extended into the low and high 16 bits.
#[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
fn sxtb16_ror8(v: u32) -> u32 {
    sxtb16(v.rotate_right(8))
}

/// `USADA8` against zero: `acc` plus the four bytes of `v`, unsigned.
#[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
fn usada8(acc: u32, v: u32) -> u32 {
    v.to_le_bytes()
        .iter()
        .fold(acc, |s, &b| s.wrapping_add(u32::from(b)))
}

/// `SXTAB16`: the two 16-bit halves of `a` plus bytes 0 and 2 of `v` sign-extended, each
/// wrapping.
#[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
fn sxtab16(a: u32, v: u32) -> u32 {
    let b = sxtb16(v);
    let lo = (a as u16).wrapping_add(b as u16);
    let hi = ((a >> 16) as u16).wrapping_add((b >> 16) as u16);
    u32::from(lo) | u32::from(hi) << 16
}

/// `SXTAB16 … ROR #8`: the halves of `a` plus bytes 1 and 3 of `v` sign-extended.
#[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
fn sxtab16_ror8(a: u32, v: u32) -> u32 {
    sxtab16(a, v.rotate_right(8))
}

/// `SMLAD`: `acc + lo(a)·lo(b) + hi(a)·hi(b)`, the halves signed 16-bit, wrapping.
#[cfg(not(all(zeronn_dsp, target_arch = "arm")))]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let p = |x: u32, y: u32| i32::from(x as u16 as i16) * i32::from(y as u16 as i16);
    acc.wrapping_add(p(a, b)).wrapping_add(p(a >> 16, b >> 16))
}

#[cfg(all(zeronn_dsp, target_arch = "arm"))]
use arm::{sxtab16, sxtab16_ror8, usada8};

/// The Cortex-M instructions (this target has the DSP extension: `cfg(zeronn_dsp)`, set by
/// `build.rs`).
#[cfg(all(zeronn_dsp, target_arch = "arm"))]
mod arm {
    use core::arch::asm;

    /// The loop every kernel runs over `{n}` groups of four inputs, `$group` the code of one:
    /// four groups a pass while four remain, then one at a time.
    macro_rules! groups {
        ($group:expr) => {
            concat!(
                "subs {n}, {n}, #4\n",
                "blt 3f\n",
                "2:\n",
                $group,
                $group,
                $group,
                $group,
                "subs {n}, {n}, #4\n",
                "bge 2b\n",
                "3:\n",
                "adds {n}, {n}, #4\n",
                "beq 5f\n",
                "4:\n",
                $group,
                "subs {n}, {n}, #1\n",
                "bne 4b\n",
                "5:\n",
            )
        };
    }

    /// `USADA8` against zero: `acc` plus the four bytes of `v`, unsigned.
    #[inline(always)]
    pub(super) fn usada8(acc: u32, v: u32) -> u32 {
        let r: u32;
        // SAFETY: one register-to-register instruction this target has.
        unsafe {
            asm!("usada8 {r}, {v}, {z}, {acc}", r = out(reg) r, v = in(reg) v, z = in(reg) 0u32,
                 acc = in(reg) acc, options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// One group of four inputs (a word at `xp`, less the zero point as two pairs) for the
    /// two pairs of outputs whose 16 bytes of weights are at `p`.
    macro_rules! pairs {
        () => {
            concat!(
                "ldr {x1}, [{xp}], #4\n",
                "sxtab16 {x0}, {mz}, {x1}\n",
                "sxtab16 {x1}, {mz}, {x1}, ror #8\n",
                pair!("s0", "a0", "8"),
                pair!("s1", "a1", "8"),
            )
        };
    }

    /// One pair's 8 bytes of weights at `p`: `S += d · (256a + b + 128)`, `A += d · a`.
    macro_rules! pair {
        ($s:literal, $a:literal, $step:literal) => {
            concat!(
                "ldrd {w0}, {w1}, [{p}], #",
                $step,
                "\n",
                "smlad {",
                $s,
                "}, {x0}, {w0}, {",
                $s,
                "}\n",
                "smlad {",
                $s,
                "}, {x1}, {w1}, {",
                $s,
                "}\n",
                "sxtb16 {t}, {w0}, ror #8\n",
                "smlad {",
                $a,
                "}, {x0}, {t}, {",
                $a,
                "}\n",
                "sxtb16 {t}, {w1}, ror #8\n",
                "smlad {",
                $a,
                "}, {x1}, {t}, {",
                $a,
                "}\n",
            )
        };
    }

    /// `acc += [S₀, A₀, S₁, A₁]` over `groups` groups of four inputs at `xp` and their
    /// weights at `p` (16 bytes a group).
    ///
    /// # Safety
    /// `xp` must point at `4 · groups` readable bytes and `p` at `16 · groups` readable,
    /// 4-aligned bytes.
    #[inline(never)]
    pub(super) unsafe fn quad(
        xp: *const i8,
        p: *const i8,
        groups: usize,
        minus_z: u32,
        acc: &mut [i32; 4],
    ) {
        let [mut s0, mut a0, mut s1, mut a1] = *acc;
        // SAFETY: the loop reads `groups` groups from each pointer, as the caller promises;
        // its registers are all operands; it touches no stack.
        unsafe {
            asm!(
                groups!(pairs!()),
                xp = inout(reg) xp => _,
                p = inout(reg) p => _,
                n = inout(reg) groups => _,
                mz = in(reg) minus_z,
                s0 = inout(reg) s0,
                a0 = inout(reg) a0,
                s1 = inout(reg) s1,
                a1 = inout(reg) a1,
                x0 = out(reg) _,
                x1 = out(reg) _,
                w0 = out(reg) _,
                w1 = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly)
            );
        }
        *acc = [s0, a0, s1, a1];
    }

    /// One group of four inputs for the first pair of outputs of the 16 bytes at `p` (the
    /// second pair's 8 skipped).
    macro_rules! first_pair {
        () => {
            concat!(
                "ldr {x1}, [{xp}], #4\n",
                "sxtab16 {x0}, {mz}, {x1}\n",
                "sxtab16 {x1}, {mz}, {x1}, ror #8\n",
                pair!("s0", "a0", "16"),
            )
        };
    }

    /// `acc += [S₀, A₀]`: `quad` for the first pair alone.
    ///
    /// # Safety
    /// As `quad`'s.
    #[inline(never)]
    pub(super) unsafe fn pair(
        xp: *const i8,
        p: *const i8,
        groups: usize,
        minus_z: u32,
        acc: &mut [i32; 2],
    ) {
        let [mut s0, mut a0] = *acc;
        // SAFETY: as `quad`'s.
        unsafe {
            asm!(
                groups!(first_pair!()),
                xp = inout(reg) xp => _,
                p = inout(reg) p => _,
                n = inout(reg) groups => _,
                mz = in(reg) minus_z,
                s0 = inout(reg) s0,
                a0 = inout(reg) a0,
                x0 = out(reg) _,
                x1 = out(reg) _,
                w0 = out(reg) _,
                w1 = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly)
            );
        }
        *acc = [s0, a0];
    }

    /// `SXTAB16`: the halves of `a` plus bytes 0 and 2 of `v`, sign-extended.
    #[inline(always)]
    pub(super) fn sxtab16(a: u32, v: u32) -> u32 {
        let r: u32;
        // SAFETY: one register-to-register instruction this target has.
        unsafe {
            asm!("sxtab16 {r}, {a}, {v}", r = out(reg) r, a = in(reg) a, v = in(reg) v,
                 options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// `SXTAB16 … ROR #8`: the halves of `a` plus bytes 1 and 3 of `v`, sign-extended.
    #[inline(always)]
    pub(super) fn sxtab16_ror8(a: u32, v: u32) -> u32 {
        let r: u32;
        // SAFETY: as `sxtab16`.
        unsafe {
            asm!("sxtab16 {r}, {a}, {v}, ror #8", r = out(reg) r, a = in(reg) a, v = in(reg) v,
                 options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// One group of four inputs (two words at `xp`) times one word of weights at `[addr]`
    /// into `acc`.
    macro_rules! row {
        ($addr:literal, $acc:literal) => {
            concat!(
                "ldr {w}, ",
                $addr,
                "\n",
                "sxtb16 {t}, {w}\n",
                "smlad {",
                $acc,
                "}, {xa}, {t}, {",
                $acc,
                "}\n",
                "sxtb16 {t}, {w}, ror #8\n",
                "smlad {",
                $acc,
                "}, {xb}, {t}, {",
                $acc,
                "}\n",
            )
        };
    }

    /// One group of four inputs for the four rows: row 1 at `p0 + s`, row 2 at `p0 + 2s`
    /// (read before row 0 moves `p0` on), row 0 at `p0`, row 3 at `p3`.
    macro_rules! group4 {
        () => {
            concat!(
                "ldrd {xa}, {xb}, [{xp}], #8\n",
                row!("[{p0}, {s}]", "a1"),
                row!("[{p0}, {s}, lsl #1]", "a2"),
                row!("[{p0}], #4", "a0"),
                row!("[{p3}], #4", "a3"),
            )
        };
    }

    /// One group of four inputs for two rows: row 1 at `p0 + s`, row 0 at `p0`.
    macro_rules! group2 {
        () => {
            concat!(
                "ldrd {xa}, {xb}, [{xp}], #8\n",
                row!("[{p0}, {s}]", "a1"),
                row!("[{p0}], #4", "a0"),
            )
        };
    }

    /// `acc[r] += Σ_g` over `groups` groups for the rows at `w + r · stride`.
    ///
    /// # Safety
    /// `xp` must point at `2 · groups` readable, 4-aligned words, and `w + r · stride` at
    /// `4 · groups` readable bytes for each of `r = 0..4`.
    #[inline(never)]
    pub(super) unsafe fn dot4(
        xp: *const u32,
        w: *const i8,
        stride: usize,
        groups: usize,
        acc: &mut [i32; 4],
    ) {
        let [mut a0, mut a1, mut a2, mut a3] = *acc;
        // SAFETY: the loop reads `groups` groups from each pointer, as the caller promises;
        // its registers are all operands; it touches no stack.
        unsafe {
            asm!(
                groups!(group4!()),
                xp = inout(reg) xp => _,
                p0 = inout(reg) w => _,
                p3 = inout(reg) w.add(3 * stride) => _,
                s = in(reg) stride,
                n = inout(reg) groups => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                xa = out(reg) _,
                xb = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly)
            );
        }
        *acc = [a0, a1, a2, a3];
    }

    /// `acc[r] += Σ_g` over `groups` groups for the rows at `w` and `w + stride`.
    ///
    /// # Safety
    /// `xp` must point at `2 · groups` readable, 4-aligned words, and `w` and `w + stride` at
    /// `4 · groups` readable bytes each.
    #[inline(never)]
    pub(super) unsafe fn dot2(
        xp: *const u32,
        w: *const i8,
        stride: usize,
        groups: usize,
        acc: &mut [i32; 2],
    ) {
        let [mut a0, mut a1] = *acc;
        // SAFETY: as `dot4`, for two rows.
        unsafe {
            asm!(
                groups!(group2!()),
                xp = inout(reg) xp => _,
                p0 = inout(reg) w => _,
                s = in(reg) stride,
                n = inout(reg) groups => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                xa = out(reg) _,
                xb = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly)
            );
        }
        *acc = [a0, a1];
    }

    /// `acc + Σ_g` over `groups` groups for the row at `w`.
    ///
    /// # Safety
    /// `xp` must point at `2 · groups` readable, 4-aligned words and `w` at `4 · groups`
    /// readable bytes.
    #[inline(never)]
    pub(super) unsafe fn dot1(xp: *const u32, w: *const i8, groups: usize, acc: i32) -> i32 {
        let mut a0 = acc;
        // SAFETY: as `dot4`, for one row.
        unsafe {
            asm!(
                groups!(concat!("ldrd {xa}, {xb}, [{xp}], #8\n", row!("[{p0}], #4", "a0"))),
                xp = inout(reg) xp => _,
                p0 = inout(reg) w => _,
                n = inout(reg) groups => _,
                a0 = inout(reg) a0,
                xa = out(reg) _,
                xb = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly)
            );
        }
        a0
    }
}

#[cfg(test)]
mod tests {
    use super::super::QAffine;
    use super::*;
    use crate::random::Rng;
    use std::vec;
    use std::vec::Vec;

    /// The convolution filter by filter (patches padded to words, filters widened, positions
    /// four at a time, each plane requantized with its filter's values) gives the direct
    /// convolution's bits: shapes whose patch is not a multiple of 4, pads, strides, shifts of
    /// both signs, and more positions than a block.
    #[test]
    fn the_convolution_filter_by_filter_gives_the_direct_bits() {
        use crate::layers::{Convolution, Dims};
        use crate::quant::conv::{QConvolution, im2col};
        let mut rng = crate::random::seeded(5);
        let shapes = [
            Convolution::new(Dims::new(1, 28, 28), 30, 5),
            Convolution::new(Dims::new(3, 9, 7), 5, 3).pad(1),
            Convolution::new(Dims::new(16, 10, 10), 7, 3)
                .stride(2)
                .pad(1),
            Convolution::new(Dims::new(2, 6, 6), 3, 2).kernel(2, 3),
        ];
        for conv in shapes {
            let (patch, filters) = (conv.patch_len(), conv.filters);
            let w: Vec<i8> = (0..patch * filters)
                .map(|_| (rng.next_u32() % 255) as i32 - 127)
                .map(|v| v as i8)
                .collect();
            let bias: Vec<i32> = (0..filters)
                .map(|_| (rng.next_u32() % 40001) as i32 - 20000)
                .collect();
            let (mut m, mut sh) = (vec![0i32; filters], vec![0i32; filters]);
            for f in 0..filters {
                // Shifts of both signs (a multiplier of 3 needs a left shift).
                let real = [3e-4 / patch as f64, 3.0, 0.07 / patch as f64][f % 3];
                (m[f], sh[f]) = super::super::requant::quantize_multiplier(real);
            }
            assert!(sh.iter().any(|&s| s > 0) && sh.iter().any(|&s| s <= 0));
            for (z, act_min) in [(-128, -128i8), (9, 9)] {
                let l = QConvolution {
                    conv,
                    affine: QAffine {
                        input: patch,
                        output: filters,
                        w: &w,
                        layout: WeightLayout::Rows,
                        bias: &bias,
                        multiplier: &m,
                        shift: &sh,
                        input_zero_point: z,
                        input_scale: 0.1,
                        output_zero_point: act_min.into(),
                        output_scale: 0.1,
                        act_min,
                        act_max: 127,
                    },
                };
                let x: Vec<i8> = (0..conv.input.len())
                    .map(|_| rng.next_u32() as i8)
                    .collect();
                let od = conv.output_dims();
                let mut want = vec![0i8; od.len()];
                l.forward_naive(&x, &mut want).unwrap();
                let row = patch.div_ceil(4) * 4;
                // The bytes past each patch: anything (the widened weights are zero there).
                let mut col = vec![0x55i8; od.plane() * row];
                im2col(&conv, &mut col, &x, z as i8, row);
                let mut got = vec![0i8; od.len()];
                conv_rows(&l.affine, &col, row, &mut got);
                assert_eq!(got, want, "{conv:?} z {z}");
                assert!(want.iter().any(|&v| v != want[0]));
            }
        }
    }

    /// The instructions as the ARM Architecture Reference Manual defines them, on values
    /// worked by hand.
    #[test]
    fn the_instructions_written_out_do_what_the_manual_says() {
        // Bytes, low to high: −1, 1, 127, −128.
        let v = 0x807f_01ff;
        assert_eq!(sxtb16(v), 0x007f_ffff); // (−1, 127)
        assert_eq!(sxtb16_ror8(v), 0xff80_0001); // (1, −128)
        // (5, −3) + (−1, 127) = (4, 124); (32767, 0) + (1, −128) = (−32768, −128), wrapping.
        assert_eq!(sxtab16(0xfffd_0005, v), 0x007c_0004);
        assert_eq!(sxtab16_ror8(0x0000_7fff, v), 0xff80_8000);
        // 10 + (−1)·1 + 127·(−128) = −16 247.
        assert_eq!(smlad(0x007f_ffff, 0xff80_0001, 10), -16_247);
        // 1000 + 0xff + 0x01 + 0x7f + 0x80.
        assert_eq!(usada8(1000, v), 1000 + 255 + 1 + 127 + 128);
        assert_eq!(
            smlad(0x7fff_7fff, 0x7fff_7fff, i32::MAX),
            i32::MAX.wrapping_add(2 * 32767 * 32767)
        );
    }

    /// The layout (widening, four rows at a time, the last rows, the inputs past the last
    /// whole four, blocks of outputs, chunks of inputs) gives the reference loop's bits.
    #[test]
    fn the_dsp_layout_gives_the_reference_bits() {
        let sizes = [
            (1, 1, 1),
            (3, 2, 2),
            (4, 4, 1),
            (8, 5, 2),
            (50, 10, 3),
            (255, 7, 1),
            (256, 9, 2),
            (257, 66, 1),
            (784, 50, 2),
            (600, 131, 1),
            (1603, 7, 2),
        ];
        super::super::test_layers::each(0x5eed_d5b0_0000_0001, &sizes, |layer, x, batch| {
            let (input, output, z_in) = (layer.input, layer.output, layer.input_zero_point);
            let (mut dsp, mut naive) = (vec![0i8; batch * output], vec![1i8; batch * output]);
            forward(layer, x, &mut dsp);
            layer.forward_naive(x, &mut naive).unwrap();
            assert_eq!(dsp, naive, "{input}×{output}, batch {batch}, z_in {z_in}");
            // The same weights in the DSP layout: its kernel, and the reference loop
            // reading that layout, give the same bits.
            let mut w2 = vec![0i8; WeightLayout::Dsp.len(input, output)];
            layer.arrange(WeightLayout::Dsp, &mut w2).unwrap();
            let pairs = QAffine {
                w: &w2,
                layout: WeightLayout::Dsp,
                ..*layer
            };
            let (mut dsp2, mut naive2) = (vec![2i8; batch * output], vec![3i8; batch * output]);
            forward(&pairs, x, &mut dsp2);
            pairs.forward_naive(x, &mut naive2).unwrap();
            assert_eq!(
                dsp2, naive,
                "DSP layout, {input}×{output}, batch {batch}, z_in {z_in}"
            );
            assert_eq!(
                naive2, naive,
                "{input}×{output}: the reference on the DSP layout"
            );
        });
    }
}
