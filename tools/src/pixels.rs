//! Pixels: bytes 0–255 to `f32` in [0, 1], exactly `p as f32 / 255.0` (the book's
//! `x.astype(np.float32) / 255.0`), fast.
//!
//! The images stay in memory as bytes (47 MB for MNIST's training set instead of 188 MB of
//! f32), and rows are converted as they are used: a mini-batch when it is sampled, a chunk of
//! rows when it is evaluated. Streaming a quarter of the bytes is what makes the evaluation
//! passes and the mini-batch gathers fast.
//!
//! Exactness: the scalar path computes `(p as f64 · (1/255)) as f32`, the vector path a
//! reciprocal product corrected by its exact residual; both equal the correctly rounded
//! `p / 255` for all 256 bytes (checked by the tests).

/// `1/255` in f64.
const INV_255: f64 = 1.0 / 255.0;

/// One pixel.
#[inline]
pub fn unit(p: u8) -> f32 {
    (p as f64 * INV_255) as f32
}

/// `dst[i] = src[i] / 255` exactly, for equal-length slices (extra elements are left alone).
pub fn to_unit_f32(src: &[u8], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("avx512vl") {
        // SAFETY: AVX-512F, BW and VL are present (checked just above; BW implies F), and
        // `src` and `dst` are as long as each other (cut to `n` above).
        unsafe { x86::to_unit_avx512(src, dst) };
        return;
    }
    for (d, &p) in dst.iter_mut().zip(src) {
        *d = unit(p);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 16 pixels at a time: bytes → f32 `p`, then `q = p·(1/255)` corrected once with the
    /// exact residual `p - 255·q` (two fused multiply-adds): the correctly rounded quotient,
    /// as the tests check for every byte. The last few pixels the same way, with a masked
    /// load and store (the scalar path cost about 1 ns a pixel, and a gathered row of a
    /// mini-batch has 7 or 8 of them on average).
    ///
    /// # Safety
    /// AVX-512F, BW and VL must be present, and `dst` at least as long as `src` (the tail's
    /// masked store writes as many values as `src` has bytes left).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn to_unit_avx512(src: &[u8], dst: &mut [f32]) {
        let r = _mm512_set1_ps(1.0 / 255.0);
        let b = _mm512_set1_ps(255.0);
        let unit16 = |bytes: __m128i| {
            let p = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
            let q = _mm512_mul_ps(p, r);
            let e = _mm512_fnmadd_ps(q, b, p);
            _mm512_fmadd_ps(e, r, q)
        };
        let mut s = src.chunks_exact(16);
        let mut d = dst.chunks_exact_mut(16);
        for (s16, d16) in (&mut s).zip(&mut d) {
            // SAFETY: `s16` holds 16 bytes and `d16` 16 floats (chunks_exact); unaligned
            // loads and stores.
            unsafe {
                let v = unit16(_mm_loadu_si128(s16.as_ptr().cast()));
                _mm512_storeu_ps(d16.as_mut_ptr(), v);
            }
        }
        let (rest, out) = (s.remainder(), d.into_remainder());
        if !rest.is_empty() {
            let mask = (1u16 << rest.len()) - 1; // rest.len() < 16
            // SAFETY: the mask keeps the load to `rest`'s bytes and the store to `out`'s
            // floats (as many); masked-off lanes are not accessed.
            unsafe {
                let v = unit16(_mm_maskz_loadu_epi8(mask, rest.as_ptr().cast()));
                _mm512_mask_storeu_ps(out.as_mut_ptr(), mask, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_converts_exactly_like_the_books_division() {
        for p in 0..=255u8 {
            assert_eq!(unit(p).to_bits(), (p as f32 / 255.0).to_bits(), "{p}");
        }
    }

    #[test]
    fn the_vector_path_matches_the_scalar_one() {
        // Every byte value, in the vector body and in the tail.
        let src: Vec<u8> = (0..1000u32)
            .map(|i| (i * 7 % 256) as u8)
            .chain(0..=255)
            .collect();
        assert!((0..=255u8).all(|p| src[..992].contains(&p)));
        let mut dst = vec![0f32; src.len()];
        to_unit_f32(&src, &mut dst);
        for (&p, &d) in src.iter().zip(&dst) {
            assert_eq!(d.to_bits(), (p as f32 / 255.0).to_bits());
        }
        // Tails of every length, and nothing written past the end.
        for len in 0..=48 {
            let from = 1000 - len;
            let mut dst = vec![-1f32; len + 16];
            to_unit_f32(&src[from..1000], &mut dst[..len]);
            for (&p, &d) in src[from..1000].iter().zip(&dst) {
                assert_eq!(d.to_bits(), (p as f32 / 255.0).to_bits(), "length {len}");
            }
            assert!(dst[len..].iter().all(|&d| d == -1.0), "length {len}");
        }
    }
}
