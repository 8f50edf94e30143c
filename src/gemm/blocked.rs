//! The cache-blocked driver: the five loops of Goto and van de Geijn around a register kernel,
//! with packing space owned by the caller (no heap), and an unpacked path with the same
//! arithmetic for when there is no packing space.

use super::constants::{KC, MC, NC, PACK_LEN};
use super::kernel::{Kernel, MAX_TILE};
use super::{Element, MatMut, MatRef};

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// `C ← α·A·B + β·C` for shapes already checked, with `m, n, k > 0`.
pub(crate) fn gemm<T: Element, K: Kernel<T>>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
    pack: &mut [T],
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let kc = k.min(KC);
    if PACK_LEN == 0 || pack.len() < (K::MR + K::NR) * kc {
        return unpacked(alpha, a, b, beta, c);
    }
    // Block sizes that fit the space given: a full A block if possible, B gets the rest.
    let mut mc = round_up(m.min(MC), K::MR);
    if (mc + K::NR) * kc > pack.len() {
        mc = (pack.len() - K::NR * kc) / kc / K::MR * K::MR;
    }
    let nc = ((pack.len() - mc * kc) / kc / K::NR * K::NR).min(round_up(n.min(NC), K::NR));
    let (apack, rest) = pack.split_at_mut(mc * kc);
    let bpack = &mut rest[..nc * kc];

    let mut jc = 0;
    while jc < n {
        // LOOP 5: a panel of nc columns of B and C.
        let ncb = nc.min(n - jc);
        let mut pc = 0;
        while pc < k {
            // LOOP 4: kc rows of that panel, packed into NR-wide slivers.
            let kcb = kc.min(k - pc);
            let beta_block = if pc == 0 { beta } else { T::GEMM_ONE };
            pack_b(K::NR, bpack, &b, pc, kcb, jc, ncb);
            let mut ic = 0;
            while ic < m {
                // LOOP 3: mc rows of A, packed into MR-tall slivers.
                let mcb = mc.min(m - ic);
                pack_a(K::MR, apack, &a, ic, mcb, pc, kcb);
                for jr in (0..ncb).step_by(K::NR) {
                    // LOOP 2: one B sliver.
                    let nr = K::NR.min(ncb - jr);
                    let bs = &bpack[jr * kcb..(jr + K::NR) * kcb];
                    for ir in (0..mcb).step_by(K::MR) {
                        // LOOP 1: one A sliver against it, in the register kernel.
                        let mr = K::MR.min(mcb - ir);
                        let as_ = &apack[ir * kcb..(ir + K::MR) * kcb];
                        tile::<T, K>(
                            kcb,
                            alpha,
                            as_,
                            bs,
                            beta_block,
                            &mut c,
                            ic + ir,
                            jc + jr,
                            mr,
                            nr,
                        );
                    }
                }
                ic += mcb;
            }
            pc += kcb;
        }
        jc += ncb;
    }
}

/// Runs the kernel on the tile of C at (i0, j0), of which `mr × nr` lies inside C.
#[allow(clippy::too_many_arguments)]
#[inline]
fn tile<T: Element, K: Kernel<T>>(
    kcb: usize,
    alpha: T,
    a: &[T],
    b: &[T],
    beta: T,
    c: &mut MatMut<'_, T>,
    i0: usize,
    j0: usize,
    mr: usize,
    nr: usize,
) {
    assert!(a.len() >= kcb * K::MR && b.len() >= kcb * K::NR);
    let (rs, cs) = (c.rs, c.cs);
    if mr == K::MR && nr == K::NR && !c.is_indexed() {
        // SAFETY: the slivers hold kcb·MR and kcb·NR elements (asserted above); the MR × NR
        // tile at (i0, j0) lies inside C, whose view was checked to be in bounds and
        // injective, so every `i·rs + j·cs` offset from its corner is a distinct valid index.
        unsafe {
            let corner = c.data.as_mut_ptr().add(i0 * rs + j0 * cs);
            K::kernel(kcb, alpha, a.as_ptr(), b.as_ptr(), beta, corner, rs, cs);
        }
    } else {
        // Edge tile: compute into a local MR × NR tile, copy the part inside C.
        let mut t = [T::GEMM_ZERO; MAX_TILE];
        if beta != T::GEMM_ZERO {
            for i in 0..mr {
                for j in 0..nr {
                    t[i * K::NR + j] = c.as_ref().at(i0 + i, j0 + j);
                }
            }
        }
        // SAFETY: slivers as above; `t` holds MAX_TILE ≥ MR·NR elements, laid out with row
        // stride NR and column stride 1.
        unsafe {
            K::kernel(
                kcb,
                alpha,
                a.as_ptr(),
                b.as_ptr(),
                beta,
                t.as_mut_ptr(),
                K::NR,
                1,
            )
        };
        for i in 0..mr {
            for j in 0..nr {
                *c.at_mut(i0 + i, j0 + j) = t[i * K::NR + j];
            }
        }
    }
}

/// Packs rows `i0..i0+mcb`, columns `p0..p0+kcb` of A into slivers of `mr` rows: sliver `s`
/// holds `dst[s·mr·kcb + p·mr + i] = A(i0 + s·mr + i, p0 + p)`, zero-padded below `mcb`.
fn pack_a<T: Element>(
    mr: usize,
    dst: &mut [T],
    a: &MatRef<'_, T>,
    i0: usize,
    mcb: usize,
    p0: usize,
    kcb: usize,
) {
    for (s, sliver) in dst
        .chunks_exact_mut(mr * kcb)
        .take(mcb.div_ceil(mr))
        .enumerate()
    {
        let r0 = s * mr;
        let rows = mr.min(mcb - r0);
        for (p, col) in sliver.chunks_exact_mut(mr).enumerate() {
            for (i, x) in col.iter_mut().enumerate() {
                *x = if i < rows {
                    a.at(i0 + r0 + i, p0 + p)
                } else {
                    T::GEMM_ZERO
                };
            }
        }
    }
}

/// Packs rows `p0..p0+kcb`, columns `j0..j0+ncb` of B into slivers of `nr` columns: sliver `s`
/// holds `dst[s·nr·kcb + p·nr + j] = B(p0 + p, j0 + s·nr + j)`, zero-padded right of `ncb`.
fn pack_b<T: Element>(
    nr: usize,
    dst: &mut [T],
    b: &MatRef<'_, T>,
    p0: usize,
    kcb: usize,
    j0: usize,
    ncb: usize,
) {
    for (s, sliver) in dst
        .chunks_exact_mut(nr * kcb)
        .take(ncb.div_ceil(nr))
        .enumerate()
    {
        let c0 = s * nr;
        let cols = nr.min(ncb - c0);
        for (p, row) in sliver.chunks_exact_mut(nr).enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = if j < cols {
                    b.at(p0 + p, j0 + c0 + j)
                } else {
                    T::GEMM_ZERO
                };
            }
        }
    }
}

/// Width of the accumulator row in the unpacked path.
const W: usize = 8;

/// The same arithmetic as the packed path (blocks of `KC` along k, each summed from zero in
/// order of k, stored as `α·s + β·c`), reading A and B in place: no packing space needed.
/// Each row of C is computed `W` columns at a time, streaming rows of B.
fn unpacked<T: Element>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    // Where the target has register kernels for rows of 16, 8, 4, 2, 1 columns (Cortex-M with
    // an FPU), they take every column: the same sums in the same order.
    let picked = a.is_indexed() || b.is_indexed() || c.is_indexed();
    let wide = if T::ROW_KERNEL && b.col_stride() == 1 && !picked {
        n
    } else {
        0
    };
    for i in 0..m {
        let mut j0 = 0;
        while j0 < wide {
            let w = [16, 8, 4, 2, 1]
                .into_iter()
                .find(|&w| w <= wide - j0)
                .unwrap_or(1);
            let mut pc = 0;
            while pc < k {
                let kcb = KC.min(k - pc);
                let mut acc = [T::GEMM_ZERO; 16];
                T::row_kernel(kcb, &a, i, pc, &b, j0, &mut acc[..w]);
                store(
                    &mut c,
                    i,
                    j0,
                    &acc[..w],
                    alpha,
                    if pc == 0 { beta } else { T::GEMM_ONE },
                );
                pc += kcb;
            }
            j0 += w;
        }
        if picked {
            row_picked(alpha, &a, &b, beta, &mut c, i, wide);
            continue;
        }
        for j0 in (wide..n).step_by(W) {
            let w = W.min(n - j0);
            let mut pc = 0;
            while pc < k {
                let kcb = KC.min(k - pc);
                let mut acc = [T::GEMM_ZERO; W];
                for p in pc..pc + kcb {
                    let av = a.data[i * a.rs + p * a.cs];
                    for (jj, s) in acc.iter_mut().enumerate().take(w) {
                        *s = *s + av * b.data[p * b.rs + (j0 + jj) * b.cs];
                    }
                }
                store(
                    &mut c,
                    i,
                    j0,
                    &acc[..w],
                    alpha,
                    if pc == 0 { beta } else { T::GEMM_ONE },
                );
                pc += kcb;
            }
        }
    }
}

/// Columns `j_from..` of row `i` of C for [`unpacked`] when a view has picked rows or
/// columns: the same sums (each element over blocks of `KC` along k, in order), one element
/// at a time through the out-of-line accessors; small code for a rare case.
#[inline(never)]
fn row_picked<T: Element>(
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: &mut MatMut<'_, T>,
    i: usize,
    j_from: usize,
) {
    let k = a.cols();
    for j in j_from..b.cols() {
        let mut pc = 0;
        while pc < k {
            let kcb = KC.min(k - pc);
            let mut s = T::GEMM_ZERO;
            for p in pc..pc + kcb {
                s = s + a.at_slow(i, p) * b.at_slow(p, j);
            }
            let beta = if pc == 0 { beta } else { T::GEMM_ONE };
            let cij = c.at_mut_slow(i, j);
            *cij = if beta == T::GEMM_ZERO {
                alpha * s
            } else {
                alpha * s + beta * *cij
            };
            pc += kcb;
        }
    }
}

/// `C(i, j0 + jj) ← α·s[jj]` (β = 0: C not read) or `α·s[jj] + β·C(i, j0 + jj)`, for a C
/// without picked rows or columns.
#[inline]
fn store<T: Element>(c: &mut MatMut<'_, T>, i: usize, j0: usize, s: &[T], alpha: T, beta: T) {
    debug_assert!(!c.is_indexed());
    for (jj, &s) in s.iter().enumerate() {
        let cij = &mut c.data[i * c.rs + (j0 + jj) * c.cs];
        *cij = if beta == T::GEMM_ZERO {
            alpha * s
        } else {
            alpha * s + beta * *cij
        };
    }
}
