//! The int8 Affine's sums on AVX-512 VNNI: `Σ_i u[n, i] · W[j, i]` with `u = x + 128` (the
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

/// Words (`i32`, each 4 packed weights) of the packed weights of `input × output`, then one
/// word per output for its row sum.
pub const fn pack_len(input: usize, output: usize) -> usize {
    let opad = output.div_ceil(LANES) * LANES;
    input.div_ceil(4) * opad + opad
}

/// Packs `W` (`output × input`, row `j` for output `j`) into `packed`: word `kk · opad + o`
/// holds `W[o, 4kk..4kk + 4]` (zeros past the ends), then the row sums `Σ_i W[o, i]`.
pub fn pack(w: &[i8], input: usize, output: usize, packed: &mut [i32]) {
    let opad = output.div_ceil(LANES) * LANES;
    let k4 = input.div_ceil(4);
    let (words, sums) = packed[..pack_len(input, output)].split_at_mut(k4 * opad);
    words.fill(0);
    sums.fill(0);
    for (o, row) in w.chunks_exact(input).enumerate().take(output) {
        for (kk, quad) in row.chunks(4).enumerate() {
            let mut b = [0u8; 4];
            for (d, &v) in b.iter_mut().zip(quad) {
                *d = v as u8;
            }
            words[kk * opad + o] = i32::from_le_bytes(b);
        }
        sums[o] = row.iter().fold(0i32, |s, &v| s.wrapping_add(i32::from(v)));
    }
}

/// Whether this CPU runs [`sums`].
pub fn available() -> bool {
    crate::gemm::detect::avx512_vnni()
}

/// `acc[s · stride + j − j0] = Σ_i (x[s, i] + 128) · W[j, i]` (wrapping) for the `rows ≤ 4`
/// samples of `x` (`rows × input`), outputs `j0..j0 + 64` (fewer at the end), from `packed`.
///
/// # Safety
/// The CPU has AVX-512F, BW and VNNI ([`available`]); `packed` is [`pack`]'s output for
/// `input × output`; `x` holds `rows × input` values; `acc` holds `rows` rows of `stride ≥
/// 64` values; `j0 < output` is a multiple of 64.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sums(
    x: &[i8],
    rows: usize,
    input: usize,
    packed: &[i32],
    output: usize,
    j0: usize,
    acc: &mut [i32],
    stride: usize,
) {
    let opad = output.div_ceil(LANES) * LANES;
    let vecs = ((opad - j0) / LANES).min(VECS);
    // One instance per shape of block, so that its accumulators live in registers.
    macro_rules! go {
        ($($r:literal $v:literal),*) => {
            match (rows, vecs) {
                // SAFETY: the caller's promises, passed on.
                $(($r, $v) => unsafe { block::<$r, $v>(x, input, packed, output, j0, acc, stride) },)*
                _ => {}
            }
        };
    }
    go!(4 4, 4 3, 4 2, 4 1, 3 4, 3 3, 3 2, 3 1, 2 4, 2 3, 2 2, 2 1, 1 4, 1 3, 1 2, 1 1);
}

/// [`sums`] for `R` samples and `V` registers of outputs.
///
/// # Safety
/// As for [`sums`], with `rows = R` and `V` registers from `j0` inside the packed width.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block<const R: usize, const V: usize>(
    x: &[i8],
    input: usize,
    packed: &[i32],
    output: usize,
    j0: usize,
    acc: &mut [i32],
    stride: usize,
) {
    let opad = output.div_ceil(LANES) * LANES;
    let full = input / 4;
    let mut a = [[_mm512_setzero_si512(); V]; R];
    for kk in 0..input.div_ceil(4) {
        // SAFETY: kk·opad + j0 + 16·V ≤ k4·opad: inside `packed` (the caller's promise).
        let wrow = unsafe { packed.as_ptr().add(kk * opad + j0) };
        let mut w = [_mm512_setzero_si512(); V];
        for (v, wv) in w.iter_mut().enumerate() {
            // SAFETY: see above; an unaligned load of 64 bytes.
            *wv = unsafe { _mm512_loadu_si512(wrow.add(v * LANES).cast::<__m512i>()) };
        }
        for (s, acc_s) in a.iter_mut().enumerate() {
            let word = if kk < full {
                // SAFETY: bytes s·input + 4kk .. + 4 are inside `x` (kk < input / 4).
                unsafe {
                    core::ptr::read_unaligned(x.as_ptr().add(s * input + 4 * kk).cast::<u32>())
                }
            } else {
                // The last partial quad: zero inputs past the end (their weights are zero).
                let mut b = [0x80u8; 4];
                let at = s * input + 4 * kk;
                for (d, &v) in b.iter_mut().zip(&x[at..(s + 1) * input]) {
                    *d = v as u8;
                }
                u32::from_le_bytes(b)
            };
            // x + 128 as unsigned bytes, in every lane.
            let u = _mm512_set1_epi32((word ^ 0x8080_8080) as i32);
            for (r, &wv) in acc_s.iter_mut().zip(&w) {
                *r = _mm512_dpbusd_epi32(*r, u, wv);
            }
        }
    }
    for (s, acc_s) in a.iter().enumerate() {
        for (v, &r) in acc_s.iter().enumerate() {
            let j = j0 + v * LANES;
            let n = output.saturating_sub(j).min(LANES);
            let mask: __mmask16 = if n == LANES { 0xffff } else { (1u16 << n) - 1 };
            // SAFETY: the row holds `stride ≥ 64` values from s·stride, and lanes past
            // `output` are masked off; an unaligned masked store.
            unsafe {
                _mm512_mask_storeu_epi32(
                    acc.as_mut_ptr().add(s * stride + v * LANES).cast(),
                    mask,
                    r,
                )
            };
        }
    }
}
