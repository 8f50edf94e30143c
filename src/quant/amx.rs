//! The int8 Affine's sums on Intel AMX (Sapphire Rapids and later): `tdpbssd` multiplies a
//! tile of 16 samples × 64 int8 inputs by a tile of 64 inputs × 16 outputs, 16,384
//! multiply-adds an instruction, into a tile of 16 × 16 int32 sums. The weights are the ones
//! [`super::QAffine::pack`] lays out for the VNNI kernel: a row of 64 bytes holds 4 inputs of 16
//! outputs, which is the layout `tdpbssd` wants of its second tile, so one packing serves both
//! kernels. [`super::QAffine::forward`] takes this kernel for batches of 8 samples or more. The
//! inputs are read in place, signed (no `+ 128`); the requantization is the VNNI kernel's, in
//! 16 lanes. Sums wrap as two's complement, as the reference's do, so the bits are the same.
//!
//! A process must ask Linux for the tiles' state before its first tile instruction
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`available`] does so once, with
//! the `std` feature on Linux, and says no everywhere else (or with `ZERONN_AMX=0`).

#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
use core::arch::{asm, x86_64::*};

#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
use super::vnni::{Epilogue, requant16};

/// Samples (rows of the input tile) per pass.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
const ROWS: usize = 16;
/// Input bytes per tile row.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
const K: usize = 64;

/// Whether the AMX kernel may run: the CPU has AMX-TILE and AMX-INT8, the OS has granted this
/// process the tiles (asked once, here), and `ZERONN_AMX` is not `0`.
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
    {
        use core::sync::atomic::{AtomicU8, Ordering};
        // 0: not asked yet, 1: yes, 2: no.
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let ok = std::env::var_os("ZERONN_AMX").is_none_or(|v| v != "0") && request();
                STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                ok
            }
        }
    }
    #[cfg(not(all(target_arch = "x86_64", feature = "std", target_os = "linux")))]
    {
        false
    }
}

/// Asks Linux for the tile state; true if granted and the CPU has AMX-INT8.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
fn request() -> bool {
    // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8; leaf 1: ECX bit 27 OSXSAVE.
    let l7 = __cpuid_count(7, 0);
    let l1 = __cpuid(1);
    if l7.edx & (3 << 24) != 3 << 24 || l1.ecx & (1 << 27) == 0 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
    const XFEATURE_XTILEDATA: u64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call (158) with two integer arguments; it reads and
    // writes no memory of ours; the kernel clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret != 0 {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 reads XCR0; OSXSAVE (checked above) makes it legal.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nomem, nostack));
    }
    // XCR0 bits 17 and 18: tile configuration and tile data enabled by the OS.
    lo & (3 << 17) == 3 << 17
}

// The tiles keep their values from one `asm!` block to the next (the inputs loaded in one,
// multiplied in the next, the sums read out after the last): Rust and LLVM never use the tile
// registers of their own in code built without AMX's target features, as zeronn is; each
// block names the tiles it writes as clobbered.

/// The tile configuration: palette 1, every tile 16 rows of 64 bytes. Tiles 0–3 hold sums
/// (16 samples × 16 outputs), 4 the inputs, 5–7 the weights.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
#[repr(C, align(64))]
struct Config([u8; 64]);

#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
impl Config {
    const fn full() -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = K as u8; // bytes per row (little-endian u16)
            c[48 + t] = ROWS as u8; // rows
            t += 1;
        }
        Config(c)
    }
}

/// Loads tile 4 (inputs) from `p`, rows `stride` bytes apart.
///
/// # Safety
/// Tiles are configured; 16 rows of 64 bytes from `p`, `stride` apart, are readable.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
#[inline(always)]
unsafe fn load_inputs(p: *const i8, stride: usize) {
    // SAFETY: the caller's promise.
    unsafe {
        asm!("tileloadd tmm4, [{p} + {s}*1]", p = in(reg) p, s = in(reg) stride,
             out("tmm4") _, options(nostack, readonly));
    }
}

/// Sum tile `c` (0–3) += inputs (tile 4) · the weights at `p` (16 rows `stride` apart).
///
/// # Safety
/// As for [`load_inputs`], for the weights.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
#[inline(always)]
unsafe fn multiply_add(c: usize, p: *const i32, stride: usize) {
    // SAFETY: the caller's promise. The weights rotate through tiles 5–7 so that a load need
    // not wait for the multiply before it to finish reading its tile.
    unsafe {
        match c {
            0 => asm!("tileloadd tmm5, [{p} + {s}*1]", "tdpbssd tmm0, tmm4, tmm5",
                      p = in(reg) p, s = in(reg) stride, out("tmm5") _, out("tmm0") _,
                      options(nostack, readonly)),
            1 => asm!("tileloadd tmm6, [{p} + {s}*1]", "tdpbssd tmm1, tmm4, tmm6",
                      p = in(reg) p, s = in(reg) stride, out("tmm6") _, out("tmm1") _,
                      options(nostack, readonly)),
            2 => asm!("tileloadd tmm7, [{p} + {s}*1]", "tdpbssd tmm2, tmm4, tmm7",
                      p = in(reg) p, s = in(reg) stride, out("tmm7") _, out("tmm2") _,
                      options(nostack, readonly)),
            _ => asm!("tileloadd tmm5, [{p} + {s}*1]", "tdpbssd tmm3, tmm4, tmm5",
                      p = in(reg) p, s = in(reg) stride, out("tmm5") _, out("tmm3") _,
                      options(nostack, readonly)),
        }
    }
}

/// Stores sum tile `c` (0–3) to `out` (16 × 16 int32) and zeroes it.
///
/// # Safety
/// Tiles are configured.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
#[inline(always)]
unsafe fn take_sums(c: usize, out: &mut [i32; ROWS * 16]) {
    let p = out.as_mut_ptr();
    // SAFETY: `out` holds 16 rows of 64 bytes, the stride given.
    unsafe {
        match c {
            0 => {
                asm!("tilestored [{p} + {s}*1], tmm0", "tilezero tmm0", p = in(reg) p, s = in(reg) 64usize, out("tmm0") _, options(nostack))
            }
            1 => {
                asm!("tilestored [{p} + {s}*1], tmm1", "tilezero tmm1", p = in(reg) p, s = in(reg) 64usize, out("tmm1") _, options(nostack))
            }
            2 => {
                asm!("tilestored [{p} + {s}*1], tmm2", "tilezero tmm2", p = in(reg) p, s = in(reg) 64usize, out("tmm2") _, options(nostack))
            }
            _ => {
                asm!("tilestored [{p} + {s}*1], tmm3", "tilezero tmm3", p = in(reg) p, s = in(reg) 64usize, out("tmm3") _, options(nostack))
            }
        }
    }
}

/// `out[s · output + j] = e(Σ_i x[s, i] · W[j, i])` for every sample of `x` (`rows ×
/// input`) and every output, from `packed` (the epilogue's `zero` is the input's zero point
/// itself: the inputs are taken signed).
///
/// # Safety
/// [`available`] said yes, and the CPU has AVX-512F and BW (the VNNI kernel's
/// `super::vnni::available`); `packed` is [`super::vnni::pack`]'s output for `input × output`
/// (its quads padded to a multiple of 16, as [`super::vnni::pack_len`] makes them); `x` holds
/// `rows × input` values and `out` `rows × output`; the epilogue's slices hold `output`
/// values each, every multiplier 0 or in `[2^30, 2^31)` and every shift in −31..=30.
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn forward(
    x: &[i8],
    rows: usize,
    input: usize,
    packed: &[i32],
    output: usize,
    e: &Epilogue<'_>,
    out: &mut [i8],
) {
    let opad = output.div_ceil(16) * 16;
    let steps = input.div_ceil(K);
    let blocks = opad / 16;
    let config = Config::full();
    // SAFETY: AMX is granted (the caller's promise); the configuration is 64 bytes.
    unsafe {
        asm!("ldtilecfg [{c}]", "tilezero tmm0", "tilezero tmm1", "tilezero tmm2",
             "tilezero tmm3", c = in(reg) config.0.as_ptr(), out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _, out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
             options(nostack, readonly));
    }
    // Inputs the tile cannot read in place (the last samples, past the end of `x`), copied
    // with zeros around them.
    let mut stage = [0i8; ROWS * K];
    // The sums of the block before, requantized while the tiles work on this one: (first
    // sample, samples, first register of outputs, registers).
    let mut sums = [[0i32; ROWS * 16]; 4];
    let mut pending: Option<(usize, usize, usize, usize)> = None;
    for r0 in (0..rows).step_by(ROWS) {
        let n = (rows - r0).min(ROWS);
        for b0 in (0..blocks).step_by(4) {
            let bs = (blocks - b0).min(4);
            for k in 0..steps {
                // The tile's 16 rows of 64 bytes from sample r0's byte 64k, `input` apart;
                // bytes past a sample's end are the next sample's, and meet zero weights.
                let at = r0 * input + k * K;
                // The next 16 samples' same 64 bytes on their way to the cache while these
                // multiply (a tile load waits for all of its rows), a few lines at a time.
                for s in ROWS..2 * ROWS {
                    for b in [0, K - 1] {
                        if let Some(v) = x.get(at + s * input + b) {
                            _mm_prefetch::<_MM_HINT_T0>((v as *const i8).cast());
                        }
                    }
                }
                if n == ROWS && at + (ROWS - 1) * input + K <= x.len() {
                    // SAFETY: the 16 rows lie inside `x` (just checked).
                    unsafe { load_inputs(x.as_ptr().add(at), input) };
                } else {
                    stage.fill(0);
                    let width = (input - k * K).min(K);
                    for s in 0..n {
                        let from = (r0 + s) * input + k * K;
                        stage[s * K..s * K + width].copy_from_slice(&x[from..from + width]);
                    }
                    // SAFETY: `stage` holds 16 rows of 64 bytes.
                    unsafe { load_inputs(stage.as_ptr(), K) };
                }
                for c in 0..bs {
                    // SAFETY: rows 16k..16k + 16 of the packed weights (quads padded to a
                    // multiple of 16), words 16(b0 + c).. of each, are inside `packed`.
                    unsafe {
                        multiply_add(
                            c,
                            packed.as_ptr().add(16 * k * opad + 16 * (b0 + c)),
                            4 * opad,
                        )
                    };
                }
            }
            if let Some(p) = pending {
                // SAFETY: the caller's promises, passed on.
                unsafe { finish(p, &sums, output, e, out) };
            }
            for (c, sums) in sums.iter_mut().enumerate().take(bs) {
                // SAFETY: tiles are configured.
                unsafe { take_sums(c, sums) };
            }
            pending = Some((r0, n, b0, bs));
        }
    }
    if let Some(p) = pending {
        // SAFETY: the caller's promises, passed on.
        unsafe { finish(p, &sums, output, e, out) };
    }
    // SAFETY: tiles back to their initial state (no state left for the OS to save).
    unsafe {
        asm!("tilerelease", out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _, out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _, options(nostack, nomem))
    };
}

/// Requantizes a block's sums (`sums[c]`: 16 samples × 16 outputs of register `b0 + c`) into
/// `out`: samples `r0..r0 + n`, registers `b0..b0 + bs`.
///
/// # Safety
/// As for [`forward`]: the CPU has AVX-512F and BW, and the epilogue's slices hold `output`
/// values each (read 16 lanes at a time, the lanes past `output` masked off).
#[cfg(all(target_arch = "x86_64", feature = "std", target_os = "linux"))]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn finish(
    (r0, n, b0, bs): (usize, usize, usize, usize),
    sums: &[[i32; ROWS * 16]; 4],
    output: usize,
    e: &Epilogue<'_>,
    out: &mut [i8],
) {
    for (c, sums) in sums.iter().enumerate().take(bs) {
        let j = 16 * (b0 + c);
        let lanes = (output - j).min(16);
        let mask: __mmask16 = if lanes == 16 {
            0xffff
        } else {
            (1 << lanes) - 1
        };
        // SAFETY: outputs j..j + lanes are inside each slice (`output` long, the caller's
        // promise), AVX-512F present.
        let [m, shift, offset] = unsafe { super::vnni::offsets16(e, j, mask) };
        for (s, acc) in sums.chunks_exact(16).take(n).enumerate() {
            // SAFETY: a row of 16 sums.
            let acc = unsafe { _mm512_loadu_si512(acc.as_ptr().cast()) };
            let q = requant16(
                _mm512_add_epi32(acc, offset),
                m,
                shift,
                e.zero_point,
                e.lo,
                e.hi,
            );
            // Sample r0 + s's outputs j..j + lanes, the lanes past them masked off.
            let at = (r0 + s) * output + j;
            assert!(at + lanes <= out.len());
            // SAFETY: inside `out` (just checked).
            unsafe { _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(at).cast(), mask, q) };
        }
    }
}
