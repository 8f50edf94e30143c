//! x86-64 kernels: AVX-512F and AVX2+FMA, each one unit struct implementing
//! [`SimdKernel`](super::simd::SimdKernel). Whether the CPU has them is decided by
//! [`super::detect`].

pub(crate) mod avx2;
pub(crate) mod avx512;
