//! Cortex-M with a single-precision FPU (the `eabihf` targets: M4F, M7, M33): the portable
//! kernel's arithmetic, kept in the FPU's 32 registers.
//!
//! One row of C, 16 columns at a time (then 8, 4, 2, 1): sixteen sums stay in `s0–s15`, each step loads one
//! element of A and the sixteen elements of B's row with two multi-register loads, and
//! multiply-accumulates (`vmla.f32`, which rounds the product before adding, exactly like a
//! separate multiply and add — unlike the fused `vfma`). The sums run over `p` in order from
//! zero, so the result is bit for bit the portable kernel's on any target; about 1.4
//! instructions per multiply-add.

use core::arch::asm;

/// Sixteen zeros, loaded into the accumulators with one instruction.
static ZERO16: [f32; 16] = [0.0; 16];

/// `out[j] = Σ_{p<kc} a[p·csa] · b[p·rsb + j]` for `j < 16`, summed in order of `p` from zero.
///
/// # Safety
/// `a.add(p·csa)` and `b.add(p·rsb + j)` must be valid reads for every `p < kc`, `j < 16`.
#[inline]
pub(crate) unsafe fn row16(
    kc: usize,
    a: *const f32,
    csa: usize,
    b: *const f32,
    rsb: usize,
    out: &mut [f32; 16],
) {
    if kc == 0 {
        *out = ZERO16;
        return;
    }
    // SAFETY: the loop reads `kc` elements of A at stride `csa` and `kc` rows of 16 elements
    // of B at stride `rsb` (caller's contract), and writes the 16 floats of `out`. The FPU
    // registers it uses are declared clobbered; the integer registers it advances are inputs
    // marked as clobbered outputs.
    unsafe {
        asm!(
            "vldmia {z}, {{s0-s15}}",
            "2:",
            "vldr s16, [{a}]",
            "add {a}, {a}, {csa}",
            "vldmia {b}!, {{s17-s24}}",
            "vmla.f32 s0, s16, s17",
            "vmla.f32 s1, s16, s18",
            "vmla.f32 s2, s16, s19",
            "vmla.f32 s3, s16, s20",
            "vmla.f32 s4, s16, s21",
            "vmla.f32 s5, s16, s22",
            "vmla.f32 s6, s16, s23",
            "vmla.f32 s7, s16, s24",
            "vldmia {b}, {{s17-s24}}",
            "vmla.f32 s8, s16, s17",
            "vmla.f32 s9, s16, s18",
            "vmla.f32 s10, s16, s19",
            "vmla.f32 s11, s16, s20",
            "vmla.f32 s12, s16, s21",
            "vmla.f32 s13, s16, s22",
            "vmla.f32 s14, s16, s23",
            "vmla.f32 s15, s16, s24",
            "add {b}, {b}, {step}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {out}, {{s0-s15}}",
            z = in(reg) ZERO16.as_ptr(),
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            csa = in(reg) csa.wrapping_mul(4),
            // After the first 8 floats (32 bytes, consumed by the write-back load), on to the
            // next row.
            step = in(reg) rsb.wrapping_mul(4).wrapping_sub(32),
            n = inout(reg) kc => _,
            out = in(reg) out.as_mut_ptr(),
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
            out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _,
            out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _,
            options(nostack),
        );
    }
}

/// [`row16`] for 8 columns.
///
/// # Safety
/// As for [`row16`], for `j < 8`.
#[inline]
pub(crate) unsafe fn row8(
    kc: usize,
    a: *const f32,
    csa: usize,
    b: *const f32,
    rsb: usize,
    out: &mut [f32; 8],
) {
    if kc == 0 {
        *out = [0.0; 8];
        return;
    }
    // SAFETY: as in `row16`, for 8 columns.
    unsafe {
        asm!(
            "vldmia {z}, {{s0-s7}}",
            "2:",
            "vldr s8, [{a}]",
            "add {a}, {a}, {csa}",
            "vldmia {b}, {{s9-s16}}",
            "vmla.f32 s0, s8, s9",
            "vmla.f32 s1, s8, s10",
            "vmla.f32 s2, s8, s11",
            "vmla.f32 s3, s8, s12",
            "vmla.f32 s4, s8, s13",
            "vmla.f32 s5, s8, s14",
            "vmla.f32 s6, s8, s15",
            "vmla.f32 s7, s8, s16",
            "add {b}, {b}, {rsb}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {out}, {{s0-s7}}",
            z = in(reg) ZERO16.as_ptr(),
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            csa = in(reg) csa.wrapping_mul(4),
            rsb = in(reg) rsb.wrapping_mul(4),
            n = inout(reg) kc => _,
            out = in(reg) out.as_mut_ptr(),
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _,
            options(nostack),
        );
    }
}

/// [`row16`] for 4 columns.
///
/// # Safety
/// As for [`row16`], for `j < 4`.
#[inline]
pub(crate) unsafe fn row4(
    kc: usize,
    a: *const f32,
    csa: usize,
    b: *const f32,
    rsb: usize,
    out: &mut [f32; 4],
) {
    if kc == 0 {
        *out = [0.0; 4];
        return;
    }
    // SAFETY: as in `row16`, for 4 columns.
    unsafe {
        asm!(
            "vldmia {z}, {{s0-s3}}",
            "2:",
            "vldr s4, [{a}]",
            "add {a}, {a}, {csa}",
            "vldmia {b}, {{s5-s8}}",
            "vmla.f32 s0, s4, s5",
            "vmla.f32 s1, s4, s6",
            "vmla.f32 s2, s4, s7",
            "vmla.f32 s3, s4, s8",
            "add {b}, {b}, {rsb}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {out}, {{s0-s3}}",
            z = in(reg) ZERO16.as_ptr(),
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            csa = in(reg) csa.wrapping_mul(4),
            rsb = in(reg) rsb.wrapping_mul(4),
            n = inout(reg) kc => _,
            out = in(reg) out.as_mut_ptr(),
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _, out("s8") _,
            options(nostack),
        );
    }
}

/// [`row16`] for 2 columns.
///
/// # Safety
/// As for [`row16`], for `j < 2`.
#[inline]
pub(crate) unsafe fn row2(
    kc: usize,
    a: *const f32,
    csa: usize,
    b: *const f32,
    rsb: usize,
    out: &mut [f32; 2],
) {
    if kc == 0 {
        *out = [0.0; 2];
        return;
    }
    // SAFETY: as in `row16`, for 2 columns.
    unsafe {
        asm!(
            "vldmia {z}, {{s0-s1}}",
            "2:",
            "vldr s2, [{a}]",
            "add {a}, {a}, {csa}",
            "vldmia {b}, {{s3-s4}}",
            "vmla.f32 s0, s2, s3",
            "vmla.f32 s1, s2, s4",
            "add {b}, {b}, {rsb}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {out}, {{s0-s1}}",
            z = in(reg) ZERO16.as_ptr(),
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            csa = in(reg) csa.wrapping_mul(4),
            rsb = in(reg) rsb.wrapping_mul(4),
            n = inout(reg) kc => _,
            out = in(reg) out.as_mut_ptr(),
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _,
            options(nostack),
        );
    }
}

/// [`row16`] for 1 column.
///
/// # Safety
/// As for [`row16`], for `j < 1`.
#[inline]
pub(crate) unsafe fn row1(
    kc: usize,
    a: *const f32,
    csa: usize,
    b: *const f32,
    rsb: usize,
    out: &mut [f32; 1],
) {
    if kc == 0 {
        *out = [0.0; 1];
        return;
    }
    // SAFETY: as in `row16`, for 1 column.
    unsafe {
        asm!(
            "vldr s0, [{z}]",
            "2:",
            "vldr s1, [{a}]",
            "add {a}, {a}, {csa}",
            "vldr s2, [{b}]",
            "vmla.f32 s0, s1, s2",
            "add {b}, {b}, {rsb}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstr s0, [{out}]",
            z = in(reg) ZERO16.as_ptr(),
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            csa = in(reg) csa.wrapping_mul(4),
            rsb = in(reg) rsb.wrapping_mul(4),
            n = inout(reg) kc => _,
            out = in(reg) out.as_mut_ptr(),
            out("s0") _, out("s1") _, out("s2") _,
            options(nostack),
        );
    }
}
