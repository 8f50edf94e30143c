//! The int8 Affine's sums on AVX-512 VNNI (and on AVX-VNNI's 256-bit registers for CPUs
//! without AVX-512, [`forward_avx`]): `Σ_i u[n, i] · W[j, i]` with `u = x + 128` (the
//! input as unsigned bytes, which `vpdpbusd` takes), 16 outputs per register and 4 inputs per
//! 32-bit lane, 4 samples per pass over the weights. The weights are first packed so that one
//! 64-byte load holds 4 inputs of 16 outputs ([`pack`]). Sums wrap as two's complement, as
//! the reference's do, so the bits are the same.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// Outputs per register.
const LANES: usize = 16;
/// Registers of outputs per pass (64 outputs).
#[cfg(target_arch = "x86_64")]
const VECS: usize = 4;

/// Words (`i32`, each 4 packed weights) of the packed weights of `input × output`, the quads
/// padded with zeros to a multiple of 16 (a whole AMX tile, [`super::amx`]), then one word per
/// output for its row sum.
pub const fn pack_len(input: usize, output: usize) -> usize {
    let opad = output.div_ceil(LANES) * LANES;
    quads(input) * opad + opad
}

/// Quads of inputs in the packing: `input / 4` rounded up to a multiple of 16.
const fn quads(input: usize) -> usize {
    input.div_ceil(64) * 16
}

/// Packs `W` (`output × input`; `quad(j, kk)` gives output `j`'s weights for inputs
/// `4kk..4kk + 4`, zeros past the end) into `packed`: word `kk · opad + o` holds
/// `W[o, 4kk..4kk + 4]` (zero for the quads past the input, up to a multiple of 16), then,
/// from word `quads · opad`, the row sums `Σ_i W[o, i]`.
pub fn pack(
    quad: impl Fn(usize, usize) -> [i8; 4],
    input: usize,
    output: usize,
    packed: &mut [i32],
) {
    let opad = output.div_ceil(LANES) * LANES;
    let k4 = input.div_ceil(4);
    let (words, sums) = packed[..pack_len(input, output)].split_at_mut(quads(input) * opad);
    words.fill(0);
    sums.fill(0);
    for (o, sum) in sums.iter_mut().enumerate().take(output) {
        let mut total = 0i32;
        for kk in 0..k4 {
            let q = quad(o, kk);
            words[kk * opad + o] = i32::from_le_bytes(q.map(|v| v as u8));
            total = q.iter().fold(total, |s, &v| s.wrapping_add(i32::from(v)));
        }
        *sum = total;
    }
}

/// Whether this CPU runs [`forward`].
pub fn available() -> bool {
    // `ZERONN_AVX512=0` leaves AVX-512 (and AMX) aside, to time AVX-VNNI on a CPU that has both.
    #[cfg(feature = "std")]
    if std::env::var_os("ZERONN_AVX512").is_some_and(|v| v == "0") {
        return false;
    }
    crate::gemm::detect::avx512_vnni()
}

#[cfg(target_arch = "x86_64")]
/// What turns a block's sums into int8 outputs, per output: `total = Σ u·W − zero · rowsum +
/// bias`, then `zp + MBQM(total, multiplier, shift)` clamped to `lo..=hi`, where `u` is the
/// input as the kernel takes it: `x + 128` for VNNI, `x` itself for AMX.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// The zero point of `u`: `128 + z_in` for VNNI, `z_in` for AMX.
    pub zero: i32,
    /// Per output: the weights' row sums (from [`pack`]), biases, multipliers, shifts.
    pub sums: &'a [i32],
    /// Per output.
    pub bias: &'a [i32],
    /// Per output.
    pub multiplier: &'a [i32],
    /// Per output.
    pub shift: &'a [i32],
    /// The output's zero point and clamp.
    pub zero_point: i32,
    /// The clamp's lower end.
    pub lo: i32,
    /// The clamp's upper end.
    pub hi: i32,
}

/// `out[s · output + j] = e(Σ_i (x[s, i] + 128) · W[j, i])` (sums wrapping, the
/// requantization as [`super::requant::multiply_by_quantized_multiplier`] in 16 lanes) for
/// the `rows ≤ 4` samples of `x` (`rows × input`) and outputs `j0..j0 + 64` (fewer at the
/// end), from `packed`.
///
/// # Safety
/// The CPU has AVX-512F, BW and VNNI ([`available`]); `packed` is [`pack`]'s output for
/// `input × output`; `x` holds `rows × input` values and `out` `rows × output`; the
/// epilogue's slices hold `output` values each, every multiplier 0 or in `[2^30, 2^31)` and
/// every shift in −31..=30; `j0 < output` is a multiple of 64.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn forward(
    x: &[i8],
    rows: usize,
    input: usize,
    packed: &[i32],
    output: usize,
    j0: usize,
    e: &Epilogue<'_>,
    out: &mut [i8],
) {
    let opad = output.div_ceil(LANES) * LANES;
    let vecs = ((opad - j0) / LANES).min(VECS);
    // One instance per shape of block, so that its accumulators live in registers.
    macro_rules! go {
        ($($r:literal $v:literal),*) => {
            match (rows, vecs) {
                // SAFETY: the caller's promises, passed on.
                $(($r, $v) => unsafe { block::<$r, $v>(x, input, packed, output, j0, e, out) },)*
                _ => {}
            }
        };
    }
    go!(4 4, 4 3, 4 2, 4 1, 3 4, 3 3, 3 2, 3 1, 2 4, 2 3, 2 2, 2 1, 1 4, 1 3, 1 2, 1 1);
}

/// [`forward`] for `R` samples and `V` registers of outputs.
///
/// # Safety
/// As for [`forward`], with `rows = R` and `V` registers from `j0` inside the packed width.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block<const R: usize, const V: usize>(
    x: &[i8],
    input: usize,
    packed: &[i32],
    output: usize,
    j0: usize,
    e: &Epilogue<'_>,
    out: &mut [i8],
) {
    let opad = output.div_ceil(LANES) * LANES;
    let full = input / 4;
    let mut a = [[_mm512_setzero_si512(); V]; R];
    // Sample s's 4 inputs at quad kk, as unsigned bytes (x + 128).
    let word = |s: usize, kk: usize| quad_word(x, input, full, s, kk);
    for kk in 0..input.div_ceil(4) {
        // One sample's inputs at their zero (an image's blank pixels): nothing to add, exact.
        // (Over several samples the test costs more than it saves.)
        if R == 1 && word(0, kk) == 0 {
            continue;
        }
        // SAFETY: kk·opad + j0 + 16·V ≤ k4·opad: inside `packed` (the caller's promise).
        let wrow = unsafe { packed.as_ptr().add(kk * opad + j0) };
        let mut w = [_mm512_setzero_si512(); V];
        for (v, wv) in w.iter_mut().enumerate() {
            // SAFETY: see above; an unaligned load of 64 bytes.
            *wv = unsafe { _mm512_loadu_si512(wrow.add(v * LANES).cast::<__m512i>()) };
        }
        for (s, acc_s) in a.iter_mut().enumerate() {
            let u = _mm512_set1_epi32(word(s, kk) as i32);
            for (r, &wv) in acc_s.iter_mut().zip(&w) {
                *r = _mm512_dpbusd_epi32(*r, u, wv);
            }
        }
    }
    for v in 0..V {
        let j = j0 + v * LANES;
        let n = output.saturating_sub(j).min(LANES);
        let mask: __mmask16 = if n == LANES { 0xffff } else { (1u16 << n) - 1 };
        // SAFETY: outputs j..j + n are inside each slice (`output` long), AVX-512F present.
        let [m, shift, offset] = unsafe { offsets16(e, j, mask) };
        for (s, acc_s) in a.iter().enumerate() {
            let total = _mm512_add_epi32(acc_s[v], offset);
            let q = requant16(total, m, shift, e.zero_point, e.lo, e.hi);
            // SAFETY: sample s's outputs j..j + n are inside `out` (`rows × output`); the
            // lanes past them are masked off.
            unsafe {
                _mm512_mask_cvtepi32_storeu_epi8(
                    out.as_mut_ptr().add(s * output + j).cast(),
                    mask,
                    q,
                )
            };
        }
    }
}

/// Sample `s`'s 4 inputs at quad `kk` (of `x`, `input` per sample; `full = input / 4`) as
/// unsigned bytes (`x + 128`), as `vpdpbusd` takes them; in the last partial quad, the inputs
/// past the end as zeros (their weights are zero).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn quad_word(x: &[i8], input: usize, full: usize, s: usize, kk: usize) -> u32 {
    0x8080_8080
        ^ if kk < full {
            // SAFETY: bytes s·input + 4kk .. + 4 are inside `x` (kk < input / 4, s a sample).
            unsafe { core::ptr::read_unaligned(x.as_ptr().add(s * input + 4 * kk).cast::<u32>()) }
        } else {
            let mut b = [0x80u8; 4];
            let at = s * input + 4 * kk;
            for (d, &v) in b.iter_mut().zip(&x[at..(s + 1) * input]) {
                *d = v as u8;
            }
            u32::from_le_bytes(b)
        }
}

/// For outputs `j..j + 16` (the lanes of `mask`): the multipliers, the shifts, and the offset
/// `bias − zero · rowsum` that turns a lane's sum into its total.
///
/// # Safety
/// The CPU has AVX-512F; the epilogue's slices hold the outputs of `mask`'s lanes from `j`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn offsets16(e: &Epilogue<'_>, j: usize, mask: __mmask16) -> [__m512i; 3] {
    // SAFETY: the caller's promise; the lanes past the outputs are masked off.
    let load = |p: &[i32]| unsafe { _mm512_maskz_loadu_epi32(mask, p.as_ptr().add(j).cast()) };
    let (sums, bias) = (load(e.sums), load(e.bias));
    let offset = _mm512_sub_epi32(bias, _mm512_mullo_epi32(_mm512_set1_epi32(e.zero), sums));
    [load(e.multiplier), load(e.shift), offset]
}

/// Whether this CPU runs [`forward_avx`]: AVX-VNNI and AVX2 (for CPUs without AVX-512).
pub fn avx_available() -> bool {
    crate::gemm::detect::avx_vnni()
}

/// [`forward`] on AVX-VNNI (`vpdpbusd` on 256-bit registers, for CPUs without AVX-512): 8
/// outputs per register, outputs `j0..j0 + 16` (fewer at the end), the `rows ≤ 4` samples of
/// `x`; the same bits.
///
/// # Safety
/// The CPU has AVX2 and AVX-VNNI ([`avx_available`]); the rest as for [`forward`], with `j0`
/// a multiple of 16 below `output`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn forward_avx(
    x: &[i8],
    rows: usize,
    input: usize,
    packed: &[i32],
    output: usize,
    j0: usize,
    e: &Epilogue<'_>,
    out: &mut [i8],
) {
    let opad = output.div_ceil(LANES) * LANES;
    let vecs = ((opad - j0) / 8).min(2);
    macro_rules! go {
        ($($r:literal $v:literal),*) => {
            match (rows, vecs) {
                // SAFETY: the caller's promises, passed on.
                $(($r, $v) => unsafe { block_avx::<$r, $v>(x, input, packed, output, j0, e, out) },)*
                _ => {}
            }
        };
    }
    go!(4 2, 4 1, 3 2, 3 1, 2 2, 2 1, 1 2, 1 1);
}

/// [`forward_avx`] for `R` samples and `V` registers of 8 outputs.
///
/// # Safety
/// As for [`forward_avx`], with `rows = R` and `V` registers from `j0` inside the packed width.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn block_avx<const R: usize, const V: usize>(
    x: &[i8],
    input: usize,
    packed: &[i32],
    output: usize,
    j0: usize,
    e: &Epilogue<'_>,
    out: &mut [i8],
) {
    let opad = output.div_ceil(LANES) * LANES;
    let full = input / 4;
    let mut a = [[_mm256_setzero_si256(); V]; R];
    let word = |s: usize, kk: usize| quad_word(x, input, full, s, kk);
    for kk in 0..input.div_ceil(4) {
        if R == 1 && word(0, kk) == 0 {
            continue;
        }
        // SAFETY: kk·opad + j0 + 8·V ≤ k4·opad: inside `packed` (the caller's promise).
        let wrow = unsafe { packed.as_ptr().add(kk * opad + j0) };
        let mut w = [_mm256_setzero_si256(); V];
        for (v, wv) in w.iter_mut().enumerate() {
            // SAFETY: see above; an unaligned load of 32 bytes.
            *wv = unsafe { _mm256_loadu_si256(wrow.add(v * 8).cast::<__m256i>()) };
        }
        for (s, acc_s) in a.iter_mut().enumerate() {
            let u = _mm256_set1_epi32(word(s, kk) as i32);
            for (r, &wv) in acc_s.iter_mut().zip(&w) {
                *r = _mm256_dpbusd_avx_epi32(*r, u, wv);
            }
        }
    }
    for v in 0..V {
        let j = j0 + v * 8;
        let n = output.saturating_sub(j).min(8);
        if n == 0 {
            continue;
        }
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        let load = |p: &[i32]| {
            // SAFETY: outputs j..j + n are inside each slice (`output` long), the lanes past
            // them masked off (a masked lane is not read).
            unsafe { _mm256_maskload_epi32(p.as_ptr().add(j), mask) }
        };
        let (sums, bias, m, shift) = (
            load(e.sums),
            load(e.bias),
            load(e.multiplier),
            load(e.shift),
        );
        let offset = _mm256_sub_epi32(bias, _mm256_mullo_epi32(_mm256_set1_epi32(e.zero), sums));
        for (s, acc_s) in a.iter().enumerate() {
            let q = requant8(
                _mm256_add_epi32(acc_s[v], offset),
                m,
                shift,
                e.zero_point,
                e.lo,
                e.hi,
            );
            let mut lanes = [0i32; 8];
            // SAFETY: 8 lanes into 8 words.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), q) };
            for (o, &q) in out[s * output + j..s * output + j + n]
                .iter_mut()
                .zip(&lanes)
            {
                *o = q as i8;
            }
        }
    }
}

/// [`requant16`] in 8 lanes, on AVX2: the same integers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) fn requant8(
    x: __m256i,
    m: __m256i,
    shift: __m256i,
    zp: i32,
    lo: i32,
    hi: i32,
) -> __m256i {
    let zero = _mm256_setzero_si256();
    let left = _mm256_max_epi32(shift, zero);
    let right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    let x = _mm256_sllv_epi32(x, left);
    // (a·b + 2^30) >> 31 in 64-bit halves, as `requant16`; its low 32 bits are the same after
    // a logical shift (AVX2 has no arithmetic one on 64 bits), and they are all that is kept.
    let high = |a: __m256i, b: __m256i| -> __m256i {
        let ab = _mm256_mul_epi32(a, b);
        _mm256_srli_epi64::<31>(_mm256_add_epi64(ab, _mm256_set1_epi64x(1 << 30)))
    };
    let even = high(x, m);
    let odd = high(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(m));
    let prod = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
    // Rounding division by 2^right: halves away from zero.
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    let remainder = _mm256_and_si256(prod, mask);
    // −1 in the lanes of negative values: the threshold one higher there.
    let negative = _mm256_cmpgt_epi32(zero, prod);
    let threshold = _mm256_sub_epi32(_mm256_srai_epi32::<1>(mask), negative);
    let up = _mm256_cmpgt_epi32(remainder, threshold);
    let q = _mm256_sub_epi32(_mm256_srav_epi32(prod, right), up);
    let q = _mm256_add_epi32(q, _mm256_set1_epi32(zp));
    _mm256_min_epi32(
        _mm256_max_epi32(q, _mm256_set1_epi32(lo)),
        _mm256_set1_epi32(hi),
    )
}

/// `clamp(zp + MBQM(x, m, shift), lo, hi)` in 16 lanes: the same integers as
/// [`super::requant::multiply_by_quantized_multiplier`] (left shift, the saturating rounding
/// doubling high multiply, whose one overflow cannot happen with `m ≥ 0`, the rounding right
/// shift), for multipliers 0 or in `[2^30, 2^31)` and shifts in −31..=30.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) fn requant16(
    x: __m512i,
    m: __m512i,
    shift: __m512i,
    zp: i32,
    lo: i32,
    hi: i32,
) -> __m512i {
    let zero = _mm512_setzero_si512();
    let left = _mm512_max_epi32(shift, zero);
    let right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
    let x = _mm512_sllv_epi32(x, left);
    // (a·b + nudge) / 2^31 truncated toward zero, in 64-bit halves (even lanes, then odd), is
    // (a·b + 2^30) >> 31 for every a·b: for a·b ≥ 0 the nudge is 2^30 and the sum is not
    // negative; for a·b < 0 it is 1 − 2^30, the sum is negative, and truncating it toward zero
    // is flooring it after adding 2^31 − 1, which makes the same a·b + 2^30.
    let high = |a: __m512i, b: __m512i| -> __m512i {
        let ab = _mm512_mul_epi32(a, b);
        _mm512_srai_epi64::<31>(_mm512_add_epi64(ab, _mm512_set1_epi64(1 << 30)))
    };
    let even = high(x, m);
    let odd = high(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(m));
    let prod = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd));
    // Rounding division by 2^right: halves away from zero.
    let one = _mm512_set1_epi32(1);
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    let remainder = _mm512_and_si512(prod, mask);
    let negative = _mm512_cmplt_epi32_mask(prod, zero);
    let threshold = _mm512_mask_add_epi32(
        _mm512_srai_epi32::<1>(mask),
        negative,
        _mm512_srai_epi32::<1>(mask),
        one,
    );
    let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
    let q = _mm512_mask_add_epi32(
        _mm512_srav_epi32(prod, right),
        up,
        _mm512_srav_epi32(prod, right),
        one,
    );
    let q = _mm512_add_epi32(q, _mm512_set1_epi32(zp));
    _mm512_min_epi32(
        _mm512_max_epi32(q, _mm512_set1_epi32(lo)),
        _mm512_set1_epi32(hi),
    )
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::quant::requant::multiply_by_quantized_multiplier;

    /// The 16- and 8-lane requantizations give the scalar one's integers at the edges of every
    /// rounding: the extremes, zero and ±1, each side of the halves that round, for the
    /// multipliers' and shifts' extremes.
    #[test]
    fn requant16_gives_the_scalar_integers() {
        if !crate::gemm::detect::avx512() {
            std::eprintln!("no AVX-512 here: nothing to test");
            return;
        }
        let xs = crate::quant::test_layers::rounding_edges();
        for m in crate::quant::test_layers::MULTIPLIERS {
            for shift in -31..=30 {
                for (zp, lo, hi) in [(0, i32::MIN, i32::MAX), (-5, -128, 127)] {
                    for x in xs.chunks(16) {
                        let mut v = [0i32; 16];
                        v[..x.len()].copy_from_slice(x);
                        let mut got = [0i32; 16];
                        // SAFETY: AVX-512F is present (checked above); 16 lanes each way.
                        unsafe {
                            let q = requant16(
                                _mm512_loadu_si512(v.as_ptr().cast()),
                                _mm512_set1_epi32(m),
                                _mm512_set1_epi32(shift),
                                zp,
                                lo,
                                hi,
                            );
                            _mm512_storeu_si512(got.as_mut_ptr().cast(), q);
                        }
                        let mut got8 = [0i32; 16];
                        if crate::gemm::detect::avx2_fma() {
                            for (g8, v8) in got8.chunks_mut(8).zip(v.chunks(8)) {
                                // SAFETY: AVX2 is present (checked just above); 8 lanes each way.
                                unsafe {
                                    let q = requant8(
                                        _mm256_loadu_si256(v8.as_ptr().cast()),
                                        _mm256_set1_epi32(m),
                                        _mm256_set1_epi32(shift),
                                        zp,
                                        lo,
                                        hi,
                                    );
                                    _mm256_storeu_si256(g8.as_mut_ptr().cast(), q);
                                }
                            }
                        }
                        for ((&x, &g), &g8) in v.iter().zip(&got).zip(&got8) {
                            let want = zp
                                .wrapping_add(multiply_by_quantized_multiplier(x, m, shift))
                                .clamp(lo, hi);
                            assert_eq!(g, want, "x {x}, m {m}, shift {shift}");
                            if crate::gemm::detect::avx2_fma() {
                                assert_eq!(g8, want, "8 lanes: x {x}, m {m}, shift {shift}");
                            }
                        }
                    }
                }
            }
        }
    }
}
