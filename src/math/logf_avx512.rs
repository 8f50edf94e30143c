//! `logf` for 16 lanes at once, bit for bit the result of `libm::logf` (FreeBSD's `e_logf.c`):
//! the same constants, the same operations in the same order (separate multiplies and adds,
//! never fused). Lanes the scalar code treats specially (zero, negative, subnormal, infinite
//! or NaN) are left to the scalar code. The tests compare it with `libm::logf` over a dense
//! sweep of all f32 and the special values.

use core::arch::x86_64::*;

// libm's constants, by their bits.
const LN2_HI: f32 = f32::from_bits(0x3f31_7180);
const LN2_LO: f32 = f32::from_bits(0x3717_f7d1);
const LG1: f32 = f32::from_bits(0x3f2a_aaaa);
const LG2: f32 = f32::from_bits(0x3ecc_ce13);
const LG3: f32 = f32::from_bits(0x3e91_e9ee);
const LG4: f32 = f32::from_bits(0x3e78_9e26);

/// `logf` of each lane whose input is a positive normal finite number (the others hold
/// garbage), and the mask of those lanes.
#[target_feature(enable = "avx512f")]
fn logf16(x: __m512) -> (__m512, __mmask16) {
    let ix = _mm512_castps_si512(x);
    // Positive normal finite: 0x0080_0000 ≤ bits < 0x7f80_0000 (as unsigned).
    let normal = _mm512_cmpge_epu32_mask(ix, _mm512_set1_epi32(0x0080_0000))
        & _mm512_cmplt_epu32_mask(ix, _mm512_set1_epi32(0x7f80_0000));
    // Reduce x into [sqrt(2)/2, sqrt(2)]: x = 2^k·(1 + f).
    let ix = _mm512_add_epi32(ix, _mm512_set1_epi32(0x3f80_0000 - 0x3f35_04f3));
    let k = _mm512_sub_epi32(_mm512_srli_epi32::<23>(ix), _mm512_set1_epi32(0x7f));
    let ix = _mm512_add_epi32(
        _mm512_and_si512(ix, _mm512_set1_epi32(0x007f_ffff)),
        _mm512_set1_epi32(0x3f35_04f3),
    );
    let x = _mm512_castsi512_ps(ix);
    let f = _mm512_sub_ps(x, _mm512_set1_ps(1.0));
    let s = _mm512_div_ps(f, _mm512_add_ps(_mm512_set1_ps(2.0), f));
    let z = _mm512_mul_ps(s, s);
    let w = _mm512_mul_ps(z, z);
    let c = _mm512_set1_ps;
    let t1 = _mm512_mul_ps(w, _mm512_add_ps(c(LG2), _mm512_mul_ps(w, c(LG4))));
    let t2 = _mm512_mul_ps(z, _mm512_add_ps(c(LG1), _mm512_mul_ps(w, c(LG3))));
    let r = _mm512_add_ps(t2, t1);
    let hfsq = _mm512_mul_ps(_mm512_mul_ps(c(0.5), f), f);
    let dk = _mm512_cvtepi32_ps(k);
    // s·(hfsq + r) + dk·LN2_LO - hfsq + f + dk·LN2_HI, left to right.
    let y = _mm512_mul_ps(s, _mm512_add_ps(hfsq, r));
    let y = _mm512_add_ps(y, _mm512_mul_ps(dk, c(LN2_LO)));
    let y = _mm512_sub_ps(y, hfsq);
    let y = _mm512_add_ps(y, f);
    let y = _mm512_add_ps(y, _mm512_mul_ps(dk, c(LN2_HI)));
    (y, normal)
}

/// `x = logf(x)` for every element.
#[target_feature(enable = "avx512f")]
pub(crate) fn logf_slice(xs: &mut [f32]) {
    for c in xs.chunks_mut(16) {
        let m: __mmask16 = ((1u32 << c.len()) - 1) as __mmask16;
        // SAFETY: the first `c.len()` lanes are `c`'s floats; masked lanes are not touched.
        let normal = unsafe {
            let (y, normal) = logf16(_mm512_maskz_loadu_ps(m, c.as_ptr()));
            _mm512_mask_storeu_ps(c.as_mut_ptr(), m & normal, y);
            normal
        };
        for (i, x) in c.iter_mut().enumerate() {
            if normal >> i & 1 == 0 {
                *x = libm::logf(*x);
            }
        }
    }
}
