//! Which SIMD kernels this CPU can run: detected at run time with the `std` feature, decided at
//! compile time (`-C target-feature`, `-C target-cpu`) without it.

/// AVX-512F.
#[inline]
pub fn avx512() -> bool {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
    {
        cfg!(target_feature = "avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX2 and FMA.
#[inline]
pub fn avx2_fma() -> bool {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
    {
        cfg!(all(target_feature = "avx2", target_feature = "fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX-512 VNNI (`vpdpbusd` on 512-bit registers), with AVX-512BW for the masked byte loads.
#[inline]
pub fn avx512_vnni() -> bool {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
    {
        cfg!(all(
            target_feature = "avx512vnni",
            target_feature = "avx512bw",
            target_feature = "avx512f"
        ))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX-VNNI (`vpdpbusd` on 256-bit registers, VEX-encoded: CPUs without AVX-512 have it too)
/// and AVX2.
#[inline]
pub fn avx_vnni() -> bool {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        std::is_x86_feature_detected!("avxvnni") && std::is_x86_feature_detected!("avx2")
    }
    #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
    {
        cfg!(all(target_feature = "avxvnni", target_feature = "avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
