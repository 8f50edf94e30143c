//! The machine's measured FMA peak, to state gemm speed as a fraction of it.

use std::time::Instant;

/// Measures single-core f32 FMA throughput (GFLOP/s, 2 flops per lane per FMA) with a loop of
/// independent fused multiply-adds on the widest vectors this CPU has: a ceiling no gemm can
/// pass. Returns the median of `reps` runs and the instruction set used.
pub fn fma_peak_gflops(reps: usize) -> (f64, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked just above).
            return (
                median(reps, || unsafe { x86::avx512(PEAK_ITERS) }),
                "AVX-512",
            );
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present (checked just above).
            return (median(reps, || unsafe { x86::avx2(PEAK_ITERS) }), "AVX2");
        }
    }
    (0.0, "none")
}

const PEAK_ITERS: usize = 2_000_000;

/// Median GFLOP/s of `f`, which returns the flops it did.
fn median(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            let flops = f();
            flops / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// 24 independent chains (latency 4 × 2 ports = 8 in flight needed; 24 is plenty).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: usize) -> f64 {
        let a = _mm512_set1_ps(black_box(1.000_000_1));
        let b = _mm512_set1_ps(black_box(0.999_999_9));
        let mut acc = [_mm512_setzero_ps(); 24];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(a, *x, b);
            }
        }
        black_box(acc);
        (iters * 24 * 16 * 2) as f64
    }

    /// 12 independent chains on the 16 ymm registers.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: usize) -> f64 {
        let a = _mm256_set1_ps(black_box(1.000_000_1));
        let b = _mm256_set1_ps(black_box(0.999_999_9));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(a, *x, b);
            }
        }
        black_box(acc);
        (iters * 12 * 8 * 2) as f64
    }
}
