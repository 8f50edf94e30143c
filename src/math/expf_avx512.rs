//! `expf` for 16 lanes at once, bit for bit the result of `libm::expf` (FreeBSD's `e_expf.c`):
//! the same constants, the same operations in the same order (separate multiplies and adds,
//! never fused), every branch of the scalar code computed for all lanes and selected by mask,
//! and `scalbnf`'s prescaling reproduced for results that go subnormal. The tests compare it
//! with `libm::expf` over a dense sweep of all f32 and the special values.

use core::arch::x86_64::*;

// libm's constants, by their bits.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const P1: f32 = f32::from_bits(0x3e2a_aa8f);
const P2: f32 = f32::from_bits(0xbb35_5215);

/// `expf` of each lane.
#[target_feature(enable = "avx512f")]
pub(crate) fn expf16(x: __m512) -> __m512 {
    let bits = _mm512_castps_si512(x);
    let hx = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fff_ffff));
    let neg = _mm512_cmplt_epi32_mask(bits, _mm512_setzero_si512());
    let gt = |c: i32| _mm512_cmpgt_epi32_mask(hx, _mm512_set1_epi32(c));
    let ge = |c: i32| _mm512_cmpge_epi32_mask(hx, _mm512_set1_epi32(c));

    // Special cases of |x| ≥ 87.33655: NaN, overflow (x ≥ 88.722839), underflow to 0
    // (x ≤ -103.972084); between them the general path below, through `scalbnf`.
    let nan = gt(0x7f80_0000);
    let overflow = ge(0x42b1_7218) & !neg;
    let to_zero = ge(0x42cf_f1b5) & neg;
    // Argument reduction: k = round(x / ln2) for |x| > 1.5 ln2, ±1 for 0.5 ln2 < |x| ≤ 1.5
    // ln2, 0 below (where the scalar code's `hi = x, lo = 0` is what k = 0 gives anyway).
    let far = gt(0x3f85_1592);
    let mid = gt(0x3eb1_7218);
    let tiny = !gt(0x3900_0000);
    let half = _mm512_mask_blend_ps(neg, _mm512_set1_ps(0.5), _mm512_set1_ps(-0.5));
    let k_far = _mm512_cvttps_epi32(_mm512_add_ps(
        _mm512_mul_ps(_mm512_set1_ps(INV_LN2), x),
        half,
    ));
    let k_mid = _mm512_mask_blend_epi32(neg, _mm512_set1_epi32(1), _mm512_set1_epi32(-1));
    let k = _mm512_mask_blend_epi32(far, _mm512_maskz_mov_epi32(mid, k_mid), k_far);
    let kf = _mm512_cvtepi32_ps(k);
    let hi = _mm512_sub_ps(x, _mm512_mul_ps(kf, _mm512_set1_ps(LN2_HI)));
    let lo = _mm512_mul_ps(kf, _mm512_set1_ps(LN2_LO));
    let r = _mm512_sub_ps(hi, lo);
    // y = 1 + (r·c / (2 - c) - lo + hi), c = r - r²·(P1 + r²·P2)
    let xx = _mm512_mul_ps(r, r);
    let c = _mm512_sub_ps(
        r,
        _mm512_mul_ps(
            xx,
            _mm512_add_ps(_mm512_set1_ps(P1), _mm512_mul_ps(xx, _mm512_set1_ps(P2))),
        ),
    );
    let q = _mm512_div_ps(_mm512_mul_ps(r, c), _mm512_sub_ps(_mm512_set1_ps(2.0), c));
    let mut y = _mm512_add_ps(_mm512_set1_ps(1.0), _mm512_add_ps(_mm512_sub_ps(q, lo), hi));
    // scalbnf(y, k): prescale by 2^127 above the exponent range, by 2^-102 below it (so the
    // final multiply is the only rounding into subnormals), then multiply by 2^n.
    let up = _mm512_cmpgt_epi32_mask(k, _mm512_set1_epi32(127));
    let down = _mm512_cmplt_epi32_mask(k, _mm512_set1_epi32(-126));
    y = _mm512_mask_mul_ps(y, up, y, _mm512_set1_ps(f32::from_bits(0x7f00_0000)));
    y = _mm512_mask_mul_ps(y, down, y, _mm512_set1_ps(f32::from_bits(0x0c80_0000)));
    let n = _mm512_mask_add_epi32(k, down, k, _mm512_set1_epi32(102));
    let n = _mm512_mask_sub_epi32(n, up, n, _mm512_set1_epi32(127));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        n,
        _mm512_set1_epi32(127),
    )));
    y = _mm512_mul_ps(y, scale);
    // The cases the scalar code returns from early.
    y = _mm512_mask_add_ps(y, tiny, _mm512_set1_ps(1.0), x);
    y = _mm512_mask_mul_ps(y, overflow, x, _mm512_set1_ps(f32::from_bits(0x7f00_0000)));
    y = _mm512_mask_mov_ps(y, to_zero, _mm512_setzero_ps());
    _mm512_mask_mov_ps(y, nan, x)
}

/// `x = expf(x)` for every element.
#[target_feature(enable = "avx512f")]
pub(crate) fn expf_slice(xs: &mut [f32]) {
    let mut chunks = xs.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` holds 16 floats; unaligned load and store.
        unsafe { _mm512_storeu_ps(c.as_mut_ptr(), expf16(_mm512_loadu_ps(c.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let m: __mmask16 = ((1u32 << rest.len()) - 1) as __mmask16;
        // SAFETY: the first `rest.len()` lanes are the remaining floats; masked lanes are not
        // touched.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, rest.as_ptr());
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, expf16(v));
        }
    }
}
