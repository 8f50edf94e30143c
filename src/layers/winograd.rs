//! Winograd's minimal filtering for 3×3, stride-1 [`Convolution`]s (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2015): F(2×2, 3×3) for the forward pass
//! (and the input gradient, the forward pass of the transposed convolution), F(3×3, 2×2)
//! for the weight gradient. Each 2 × 2 block of outputs of a channel pair comes from 16
//! multiplies instead of 36, so the products do 2.25× fewer multiply-adds than im2col's.
//!
//! Shapes (`C` channels in, `K` filters, the output `OH × OW` cut into `TH × TW` tiles of
//! 2 × 2, `TH = ⌈OH/2⌉`; `ξ` one of the 16 points of a 4 × 4 tile; `n` the tiles of a chunk):
//! - `x`, `W`, `b`, `out`, `dout`, `dW`: as [`Convolution::forward`]'s and `backward`'s
//! - `U`: 16 × K × C, the filters transformed, `U[ξ] = (G·g·Gᵀ)[ξ]` for each filter `g`
//! - `V`: 16 × C × n, the input tiles transformed, `V[ξ] = (Bᵀ·d·B)[ξ]` for each 4 × 4 input
//!   tile `d` (tiles overlap by 2)
//! - `M`: 16 × K × n, `M[ξ] = U[ξ] · V[ξ]`, 16 products through the gemm; each output tile
//!   is `Aᵀ·m·A` of its 16 values `m` in `M`, plus the bias (and the ReLU)
//! - for dW, `D`: 16 × K × n, each 2 × 2 tile of `dout` transformed, and the 16 products
//!   `D[ξ] · V[ξ]ᵀ` (K × C) summed over the batch
//!
//! The tiles of a batch (rows of tiles, sample after sample) go through in chunks whose `V`
//! and `M` stay in the L2 cache. The transforms run in AVX-512 registers, 16 tiles of a row at
//! a time, where the CPU has it (f32), else as element loops: the same operations in the
//! same order, so the same values. The same sums as the direct convolution, rounded
//! differently; exact for small integers (the transforms' factors are ½ and ±1), which the
//! tests use to hold it to the naive twins ([`Convolution::forward_naive`],
//! [`Convolution::backward_naive`]).

use crate::error::{Error, Result, check_len};
use crate::gemm::{Context, MatMut, MatRef};
use crate::layers::Convolution;
use crate::math::Float;

/// Slack after each plane of `V` and `M`: the transforms write and read whole vectors of 16
/// tiles.
const L: usize = 16;

/// Values of `V` and `M` in one chunk of tiles: 512 KB of f32, half the L2 cache.
const CHUNK: usize = 128 * 1024;

/// Whether F(2×2, 3×3) computes this layer's forward pass: 3 × 3 filters, stride 1, at least
/// 4 channels in (with fewer, the products' inner dimension is too short to pay); not on
/// microcontrollers (no cache to keep the chunks in).
pub(crate) const fn fits(conv: &Convolution) -> bool {
    !cfg!(target_os = "none")
        && conv.stride == 1
        && conv.kernel_h == 3
        && conv.kernel_w == 3
        && conv.input.channels >= 4
        && !conv.output_dims().is_empty()
}

/// Tiles down and across: `(⌈OH/2⌉, ⌈OW/2⌉)`.
const fn tiles(conv: &Convolution) -> (usize, usize) {
    let d = conv.output_dims();
    (d.height.div_ceil(2), d.width.div_ceil(2))
}

/// Columns of `V` and `M` per sample: its tiles.
const fn sample_cols(conv: &Convolution) -> usize {
    let (th, tw) = tiles(conv);
    th.saturating_mul(tw)
}

/// Elements of `U`.
const fn filters_len(conv: &Convolution) -> usize {
    conv.filters
        .saturating_mul(conv.input.channels)
        .saturating_mul(16)
}

/// Elements of `V` and `M` (or `D`) for one sample.
const fn sample_len(conv: &Convolution) -> usize {
    (conv.input.channels.saturating_add(conv.filters))
        .saturating_mul(sample_cols(conv))
        .saturating_mul(16)
}

/// Samples in a chunk: those whose `V` and `M` fit [`CHUNK`], at least one.
pub(crate) const fn chunk_images(conv: &Convolution) -> usize {
    let n = CHUNK
        / if sample_len(conv) == 0 {
            1
        } else {
            sample_len(conv)
        };
    if n == 0 { 1 } else { n }
}

/// Scratch the forward pass needs: `U` and one chunk of `V` and `M` (their planes [`L`]
/// apart); the weight gradient needs the same (the sums in place of `U`).
pub(crate) const fn scratch_len(conv: &Convolution) -> usize {
    filters_len(conv)
        .saturating_add(chunk_images(conv).saturating_mul(sample_len(conv)))
        .saturating_add(32 * L)
}

/// `out = W ⋆ x + b` (no bias if `b` is `None`; then `max(·, 0)` if `relu`) for a layer
/// that [`fits`], with `scratch` at least [`scratch_len`] long. `U` is made at the start of
/// `scratch` when `fresh`; a caller that hands over a batch in parts passes `fresh` for the
/// first only, the same `W` and the same `scratch` for every part.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: Float>(
    conv: &Convolution,
    g: &mut Context<'_, T>,
    out: &mut [T],
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    scratch: &mut [T],
    relu: bool,
    fresh: bool,
) -> Result<()> {
    let images = chunk_samples(
        conv,
        scratch.len(),
        "Winograd scratch (transformed filters and a chunk of tiles)",
    )?;
    let (c, k) = (conv.input.channels, conv.filters);
    let (n_in, n_out) = (conv.input.len(), conv.output_dims().len());
    let batch = x.len() / n_in;
    check_len("x", batch * n_in, x.len())?;
    check_len("out", batch * n_out, out.len())?;
    check_len("W", k * c * 9, w.len())?;
    if let Some(b) = b {
        check_len("b", k, b.len())?;
    }
    let (u, rest) = scratch.split_at_mut(filters_len(conv));
    let simd = simd();
    if fresh {
        filter_transform(u, w, k * c);
    }
    let np = sample_cols(conv);
    let mut first = 0;
    while first < batch {
        let gn = images.min(batch - first);
        let n = gn * np;
        // The planes of V and M a vector apart, for what the transforms write or read past
        // the last tile.
        let (sv, sm) = (c * n + L, k * n + L);
        let (v, m) = rest.split_at_mut(16 * sv);
        let m = &mut m[..16 * sm];
        input_tiles(conv, simd, v, sv, x, first..first + gn);
        for xi in 0..16 {
            let um = MatRef::row_major(&u[xi * k * c..][..k * c], k, c)?;
            let vm = MatRef::row_major(&v[xi * sv..][..c * n], c, n)?;
            let mm = MatMut::row_major(&mut m[xi * sm..][..k * n], k, n)?;
            g.gemm(T::ONE, um, vm, T::ZERO, mm)?;
        }
        let on = &mut out[first * n_out..][..gn * n_out];
        for (j, oj) in on.chunks_exact_mut(n_out).enumerate() {
            for (f, plane) in oj.chunks_exact_mut(n_out / k).enumerate() {
                let bf = b.map_or(T::ZERO, |b| b[f]);
                output_transform(conv, simd, plane, m, sm, f * n + j * np, bf, relu);
            }
        }
        first += gn;
    }
    Ok(())
}

/// Samples a chunk holds with `have` elements of scratch, for a layer that [`fits`]; `what`
/// names the scratch in the error when it holds not even one.
fn chunk_samples(conv: &Convolution, have: usize, what: &'static str) -> Result<usize> {
    if !fits(conv) {
        return Err(Error::Unsupported {
            what: "Winograd's F(2x2, 3x3) for a Convolution that is not 3x3, stride 1, 4+ channels",
        });
    }
    let fixed = filters_len(conv) + 32 * L;
    let images = chunk_images(conv).min(have.saturating_sub(fixed) / sample_len(conv));
    if images == 0 {
        return Err(Error::ShapeMismatch {
            what,
            expected: scratch_len(conv),
            actual: have,
        });
    }
    Ok(images)
}

/// The input tiles of samples `samples` of `x` transformed into `V` (16 planes `sv` apart,
/// each `C` rows of the chunk's tiles), channel by channel, sample by sample: what a
/// transform writes past its sample's tiles is overwritten by the next, or falls between the
/// planes.
fn input_tiles<T: Float>(
    conv: &Convolution,
    simd: bool,
    v: &mut [T],
    sv: usize,
    x: &[T],
    samples: core::ops::Range<usize>,
) {
    let (c, n_in, np) = (conv.input.channels, conv.input.len(), sample_cols(conv));
    let n = samples.len() * np;
    for ch in 0..c {
        for (j, s) in samples.clone().enumerate() {
            let off = s * n_in + ch * (n_in / c);
            input_transform(conv, simd, v, sv, ch * n + j * np, x, off);
        }
    }
}

/// `dW = Σ_n dout[n] ⋆ x[n]` (each filter's 3 × 3 gradient: the correlation of each input
/// channel with the filter's output gradient, summed over the batch) through Winograd's
/// F(3×3, 2×2), for a layer that [`fits`], with `scratch` at least [`scratch_len`] long:
/// each 2 × 2 tile `g` of `dout` and the 4 × 4 input tile `d` under it (the forward pass's
/// tiles) give `Aᵀ·[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]·A`, and the sum over the tiles of the products in
/// the middle is 16 products through the gemm, `M[ξ] += D[ξ] · V[ξ]ᵀ` (`D`: K × tiles,
/// `V`: C × tiles), summed over the chunks; the 3 × 3 transform at the end, once. Here
/// `G` has rows `(1, 0)`, `(½, ½)`, `(½, −½)`, `(0, 1)`; `Aᵀ` rows `(1, 1, 1, 0)`,
/// `(0, 1, −1, 0)`, `(0, 1, 1, 1)`; and `Bᵀ` is the forward pass's with its last row
/// negated, `(0, −1, 0, 1)`: `V` is the forward pass's, its points of row or column 3 (not
/// both) negated at the end.
pub(crate) fn weight_gradient<T: Float>(
    conv: &Convolution,
    g: &mut Context<'_, T>,
    dw: &mut [T],
    dout: &[T],
    x: &[T],
    scratch: &mut [T],
) -> Result<()> {
    let images = chunk_samples(
        conv,
        scratch.len(),
        "Winograd scratch (gradient sums and a chunk of tiles)",
    )?;
    let (c, k) = (conv.input.channels, conv.filters);
    let (n_in, n_out) = (conv.input.len(), conv.output_dims().len());
    let batch = x.len() / n_in;
    check_len("x", batch * n_in, x.len())?;
    check_len("dout", batch * n_out, dout.len())?;
    check_len("dW", k * c * 9, dw.len())?;
    let (sums, rest) = scratch.split_at_mut(filters_len(conv));
    let simd = simd();
    let np = sample_cols(conv);
    let mut first = 0;
    while first < batch {
        let gn = images.min(batch - first);
        let n = gn * np;
        let (sv, sd) = (c * n + L, k * n + L);
        let (v, d) = rest.split_at_mut(16 * sv);
        let d = &mut d[..16 * sd];
        input_tiles(conv, simd, v, sv, x, first..first + gn);
        for f in 0..k {
            for j in 0..gn {
                let off = (first + j) * n_out + f * (n_out / k);
                gradient_transform(conv, simd, d, sd, f * n + j * np, dout, off);
            }
        }
        let beta = if first == 0 { T::ZERO } else { T::ONE };
        for xi in 0..16 {
            let dm = MatRef::row_major(&d[xi * sd..][..k * n], k, n)?;
            let vm = MatRef::row_major(&v[xi * sv..][..c * n], c, n)?;
            let mm = MatMut::row_major(&mut sums[xi * k * c..][..k * c], k, c)?;
            g.gemm(T::ONE, dm, vm.t(), beta, mm)?;
        }
        first += gn;
    }
    // Aᵀ·m·A of each filter-channel pair, with the signs of V's points of row or column 3.
    let kc = k * c;
    for (i, wij) in dw.chunks_exact_mut(9).take(kc).enumerate() {
        let q = |r: usize, s: usize| {
            let v = sums[(4 * r + s) * kc + i];
            if (r == 3) != (s == 3) { -v } else { v }
        };
        // Aᵀ down the columns: 3 rows of 4.
        let t: [[T; 4]; 3] = [
            [0, 1, 2, 3].map(|s| q(0, s) + q(1, s) + q(2, s)),
            [0, 1, 2, 3].map(|s| q(1, s) - q(2, s)),
            [0, 1, 2, 3].map(|s| q(1, s) + q(2, s) + q(3, s)),
        ];
        for (r, tr) in t.iter().enumerate() {
            wij[3 * r] = tr[0] + tr[1] + tr[2];
            wij[3 * r + 1] = tr[1] - tr[2];
            wij[3 * r + 2] = tr[1] + tr[2] + tr[3];
        }
    }
    Ok(())
}

/// Transforms (through the AVX-512 kernel if `simd`) one filter's output gradient
/// (`OH × OW`, at `off` in `dout`) of a sample into
/// `D`: 16 planes `stride` apart, at `at` in each (`TH·TW` values; up to [`L`] − 1 past them
/// may be overwritten): `G·g·Gᵀ` of each 2 × 2 tile `g` (zero past the edges).
fn gradient_transform<T: Float>(
    conv: &Convolution,
    simd: bool,
    d: &mut [T],
    stride: usize,
    at: usize,
    dout: &[T],
    off: usize,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    #[cfg(target_arch = "x86_64")]
    if simd
        && let (Some(d), Some(dout)) = (f32s_mut(d), f32s(dout))
        && avx512::fits_gradient(conv, d.len(), stride, at, dout.len(), off)
    {
        // SAFETY: the CPU has AVX-512F (`simd`), and `fits_gradient` checked every length
        // used.
        unsafe { avx512::gradient(conv, d, stride, at, dout, off) };
        return;
    }
    let od = conv.output_dims();
    let (oh, ow) = (od.height, od.width);
    let (th, tw) = tiles(conv);
    let plane = &dout[off..][..oh * ow];
    let half = T::from_f64(0.5);
    let px = |y: usize, x: usize| {
        if y < oh && x < ow {
            plane[y * ow + x]
        } else {
            T::ZERO
        }
    };
    let turn = |a: T, b: T| [a, (a + b) * half, (a - b) * half, b];
    for ty in 0..th {
        for tx in 0..tw {
            // G·g down the columns, then ·Gᵀ along the rows.
            let c0 = turn(px(2 * ty, 2 * tx), px(2 * ty + 1, 2 * tx));
            let c1 = turn(px(2 * ty, 2 * tx + 1), px(2 * ty + 1, 2 * tx + 1));
            let t = at + ty * tw + tx;
            for r in 0..4 {
                for (s, val) in turn(c0[r], c1[r]).into_iter().enumerate() {
                    d[(4 * r + s) * stride + t] = val;
                }
            }
        }
    }
}

avx512_build!(
    /// `U = G·g·Gᵀ` of each of the `kc` filter-channel pairs `g` (3 × 3, consecutive in `w`),
    /// point `ξ` of pair `i` at `u[ξ·kc + i]`.
    fn filter_transform<T: Float>(u: &mut [T], w: &[T], kc: usize) => filter_body
);

/// [`filter_transform`]'s loop, inlined into each build of it. `G` has rows `(1, 0, 0)`,
/// `(½, ½, ½)`, `(½, −½, ½)`, `(0, 0, 1)`.
#[inline(always)]
fn filter_body<T: Float>(u: &mut [T], w: &[T], kc: usize) {
    let half = T::from_f64(0.5);
    let turn = |a: T, b: T, c: T| [a, (a + b + c) * half, (a - b + c) * half, c];
    for (i, g) in w.chunks_exact(9).take(kc).enumerate() {
        // G·g: 4 rows of 3, then each row times Gᵀ.
        let col = |j: usize| turn(g[j], g[3 + j], g[6 + j]);
        let cols = [col(0), col(1), col(2)];
        for r in 0..4 {
            let row = turn(cols[0][r], cols[1][r], cols[2][r]);
            for (s, &v) in row.iter().enumerate() {
                u[(r * 4 + s) * kc + i] = v;
            }
        }
    }
}

/// Transforms (through the AVX-512 kernel if `simd`) one input channel (`H × Wd`, at `off`
/// in `x`) of a sample into `V`: 16 planes `stride` apart, this sample's channel at `at` in
/// each (`TH·TW` values, row of tiles after row of tiles; up to [`L`] − 1 values past them
/// may be overwritten).
fn input_transform<T: Float>(
    conv: &Convolution,
    simd: bool,
    v: &mut [T],
    stride: usize,
    at: usize,
    x: &[T],
    off: usize,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    #[cfg(target_arch = "x86_64")]
    if simd
        && let (Some(v), Some(x)) = (f32s_mut(v), f32s(x))
        && avx512::fits(conv, v.len(), stride, at, x.len(), off)
    {
        // SAFETY: the CPU has AVX-512F (`simd`), and `fits` checked every length the kernel
        // uses.
        unsafe { avx512::input(conv, v, stride, at, x, off) };
        return;
    }
    let plane = &x[off..][..conv.input.len() / conv.input.channels];
    let (h, wd, pad) = (conv.input.height, conv.input.width, conv.pad);
    let (th, tw) = tiles(conv);
    let px = |y: usize, x: usize| {
        let (y, x) = (y.wrapping_sub(pad), x.wrapping_sub(pad));
        if y < h && x < wd {
            plane[y * wd + x]
        } else {
            T::ZERO
        }
    };
    for ty in 0..th {
        for tx in 0..tw {
            // Bᵀ·d down the columns, then ·B along the rows.
            let mut e = [[T::ZERO; 4]; 4];
            for (j, col) in (0..4)
                .map(|j| [0, 1, 2, 3].map(|i| px(2 * ty + i, 2 * tx + j)))
                .enumerate()
            {
                let [d0, d1, d2, d3] = col;
                e[0][j] = d0 - d2;
                e[1][j] = d1 + d2;
                e[2][j] = d2 - d1;
                e[3][j] = d1 - d3;
            }
            let t = at + ty * tw + tx;
            for (i, [a, b, c, d]) in e.into_iter().enumerate() {
                v[4 * i * stride + t] = a - c;
                v[(4 * i + 1) * stride + t] = b + c;
                v[(4 * i + 2) * stride + t] = c - b;
                v[(4 * i + 3) * stride + t] = b - d;
            }
        }
    }
}

/// Transforms (through the AVX-512 kernel if `simd`) one filter's tiles of a sample out of
/// `M` (16 planes `stride` apart, the tiles
/// at `at` in each; up to [`L`] − 1 values past them may be read) into its output `plane`
/// (`OH × OW`), plus the bias `bf` (then the ReLU if `relu`).
#[allow(clippy::too_many_arguments)]
fn output_transform<T: Float>(
    conv: &Convolution,
    simd: bool,
    plane: &mut [T],
    m: &[T],
    stride: usize,
    at: usize,
    bf: T,
    relu: bool,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    #[cfg(target_arch = "x86_64")]
    if simd
        && let (Some(plane), Some(m), Some(&[bf])) = (f32s_mut(plane), f32s(m), f32s(&[bf]))
        && avx512::fits_out(conv, plane.len(), m.len(), stride, at)
    {
        // SAFETY: the CPU has AVX-512F (`simd`), and `fits_out` checked every length used.
        unsafe { avx512::output(conv, plane, m, stride, at, bf, relu) };
        return;
    }
    let od = conv.output_dims();
    let (oh, ow) = (od.height, od.width);
    let (th, tw) = tiles(conv);
    for ty in 0..th {
        for tx in 0..tw {
            let t = at + ty * tw + tx;
            let q = |xi: usize| m[xi * stride + t];
            // Aᵀ·m down the columns, then ·A along the rows, plus the bias.
            let s0 = |j: usize| q(j) + q(4 + j) + q(8 + j);
            let s1 = |j: usize| q(4 + j) - q(8 + j) - q(12 + j);
            let y = [
                [s0(0) + s0(1) + s0(2) + bf, s0(1) - s0(2) - s0(3) + bf],
                [s1(0) + s1(1) + s1(2) + bf, s1(1) - s1(2) - s1(3) + bf],
            ];
            for (a, row) in y.iter().enumerate() {
                for (b, &val) in row.iter().enumerate() {
                    let (r, c) = (2 * ty + a, 2 * tx + b);
                    if r < oh && c < ow {
                        plane[r * ow + c] = if relu && val <= T::ZERO { T::ZERO } else { val };
                    }
                }
            }
        }
    }
}

/// Whether the transforms' AVX-512 kernels can run (asked once a call, not once a plane).
fn simd() -> bool {
    cfg!(target_arch = "x86_64") && crate::gemm::detect::avx512()
}

/// `s` as `f32` values, when `T` is `f32`.
#[cfg(target_arch = "x86_64")]
fn f32s<T: Float>(s: &[T]) -> Option<&[f32]> {
    (core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>()).then(|| {
        // SAFETY: T is f32 (the same type, so the same size and alignment).
        unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) }
    })
}

/// [`f32s`], mutably.
#[cfg(target_arch = "x86_64")]
fn f32s_mut<T: Float>(s: &mut [T]) -> Option<&mut [f32]> {
    (core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>()).then(|| {
        // SAFETY: T is f32 (the same type, so the same size and alignment).
        unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) }
    })
}

/// The transforms in AVX-512 registers, 16 tiles of a row at a time: the same operations in
/// the same order as the element loops, so the same values.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{L, tiles};
    use crate::layers::Convolution;
    use core::arch::x86_64::*;

    /// Whether `v` and `x` hold what [`input`] touches.
    pub(super) fn fits(
        conv: &Convolution,
        v: usize,
        stride: usize,
        at: usize,
        x: usize,
        off: usize,
    ) -> bool {
        x >= off + conv.input.len() / conv.input.channels && v >= reach(conv, stride, at)
    }

    /// Whether `plane` and `m` hold what [`output`] touches.
    pub(super) fn fits_out(
        conv: &Convolution,
        plane: usize,
        m: usize,
        stride: usize,
        at: usize,
    ) -> bool {
        let od = conv.output_dims();
        plane >= od.height * od.width && m >= reach(conv, stride, at)
    }

    /// Elements of 16 planes `stride` apart a kernel reaches for one sample's tiles at `at`
    /// in each: to the last plane's last tile, and the rest of its last vector of 16.
    fn reach(conv: &Convolution, stride: usize, at: usize) -> usize {
        let (th, tw) = tiles(conv);
        15 * stride + at + th * tw + L
    }

    /// Lanes `lo..hi` of a vector (clamped to 0..16).
    #[inline(always)]
    fn lanes(lo: isize, hi: isize) -> __mmask16 {
        let (lo, hi) = (lo.clamp(0, 16) as u32, hi.clamp(0, 16) as u32);
        if lo >= hi {
            0
        } else {
            (((1u32 << (hi - lo)) - 1) << lo) as __mmask16
        }
    }

    /// `N` vectors of `x` from `start` on, the lanes outside `mask` zero: loaded whole where
    /// they lie inside `x`, the other lanes cleared in the registers (masked loads stall this
    /// CPU for dozens of cycles each), else through masked loads.
    ///
    /// # Safety
    /// AVX-512F; the lanes of `mask` are inside `x`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_row<const N: usize>(
        x: &[f32],
        start: isize,
        mask: [__mmask16; N],
    ) -> [__m512; N] {
        let p = x.as_ptr().wrapping_offset(start);
        if start >= 0 && start as usize + N * L <= x.len() {
            core::array::from_fn(|q| {
                // SAFETY: x[start..start + 16·N] is inside `x` (checked just above).
                let mut v = unsafe { _mm512_loadu_ps(p.add(16 * q)) };
                // SAFETY: an empty instruction: it keeps the compiler from folding the load
                // and the masking back into a masked load.
                unsafe {
                    core::arch::asm!("/* {0} */", inout(zmm_reg) v, options(pure, nomem, nostack))
                };
                _mm512_maskz_mov_ps(mask[q], v)
            })
        } else {
            // SAFETY: only the lanes of `mask` are read, inside `x` (the caller's contract).
            core::array::from_fn(|q| unsafe {
                _mm512_maskz_loadu_ps(mask[q], p.wrapping_add(16 * q))
            })
        }
    }

    /// [`super::gradient_transform`]'s kernel.
    ///
    /// # Safety
    /// AVX-512F; the lengths [`fits_gradient`] checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gradient(
        conv: &Convolution,
        d: &mut [f32],
        stride: usize,
        at: usize,
        dout: &[f32],
        off: usize,
    ) {
        let od = conv.output_dims();
        let (oh, ow) = (od.height, od.width);
        let (th, tw) = tiles(conv);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let half = _mm512_set1_ps(0.5);
        let dp = d.as_mut_ptr();
        // [a, (a + b)·½, (a − b)·½, b], as the element loop has it.
        let turn = |a: __m512, b: __m512| {
            [
                a,
                _mm512_mul_ps(_mm512_add_ps(a, b), half),
                _mm512_mul_ps(_mm512_sub_ps(a, b), half),
                b,
            ]
        };
        // Blocks of 16 tiles from the right: the last block's lanes past the row's end fall on
        // the next row's first tiles, which its first block writes afterwards.
        for tx0 in (0..tw).step_by(L).rev() {
            let c0 = (2 * tx0) as isize;
            let mask: [__mmask16; 2] = core::array::from_fn(|q| {
                lanes(
                    -(c0 + 16 * q as isize),
                    ow as isize - (c0 + 16 * q as isize),
                )
            });
            for ty in 0..th {
                let row = |y: usize| -> (__m512, __m512) {
                    if y >= oh {
                        return (_mm512_setzero_ps(), _mm512_setzero_ps());
                    }
                    // SAFETY: the lanes of `mask` are inside row y of the plane, the plane
                    // inside `dout` by `fits_gradient`.
                    let [lo, hi] = unsafe { load_row(dout, (off + y * ow) as isize + c0, mask) };
                    (
                        _mm512_permutex2var_ps(lo, even, hi),
                        _mm512_permutex2var_ps(lo, odd, hi),
                    )
                };
                let ((e0, o0), (e1, o1)) = (row(2 * ty), row(2 * ty + 1));
                // G·g down the columns, then ·Gᵀ along the rows.
                let (ce, co) = (turn(e0, e1), turn(o0, o1));
                let t = at + ty * tw + tx0;
                for r in 0..4 {
                    for (s, val) in turn(ce[r], co[r]).into_iter().enumerate() {
                        // SAFETY: plane 4r + s of D, tiles t..t + 16: inside `d`.
                        unsafe { _mm512_storeu_ps(dp.add((4 * r + s) * stride + t), val) };
                    }
                }
            }
        }
    }

    /// Whether `d` and `dout` hold what [`gradient`] touches.
    pub(super) fn fits_gradient(
        conv: &Convolution,
        d: usize,
        stride: usize,
        at: usize,
        dout: usize,
        off: usize,
    ) -> bool {
        let od = conv.output_dims();
        dout >= off + od.height * od.width && d >= reach(conv, stride, at)
    }

    /// [`super::input_transform`]'s kernel.
    ///
    /// # Safety
    /// AVX-512F; the lengths [`fits`] checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input(
        conv: &Convolution,
        v: &mut [f32],
        stride: usize,
        at: usize,
        x: &[f32],
        off: usize,
    ) {
        let (h, wd, pad) = (conv.input.height, conv.input.width, conv.pad as isize);
        let (th, tw) = tiles(conv);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let vp = v.as_mut_ptr();
        // Blocks of 16 tiles from the right: the last block's lanes past the row's end fall on
        // the next row's first tiles, which its first block writes afterwards.
        for tx0 in (0..tw).step_by(L).rev() {
            // Padded columns 2·tx0.. as three vectors, from input column `c0` on: the lanes
            // inside the row loaded, the others zero.
            let c0 = (2 * tx0) as isize - pad;
            let mask: [__mmask16; 3] = core::array::from_fn(|q| {
                lanes(
                    -(c0 + 16 * q as isize),
                    wd as isize - (c0 + 16 * q as isize),
                )
            });
            let row = |y: usize| -> [__m512; 3] {
                let y = y as isize - pad;
                if y < 0 || y >= h as isize {
                    return [_mm512_setzero_ps(); 3];
                }
                // SAFETY: the lanes of `mask` are inside row y of the plane (input columns
                // 0..Wd), the plane inside `x` by `fits`.
                unsafe { load_row(x, off as isize + y * wd as isize + c0, mask) }
            };
            // Rows 2ty..2ty + 4 under each row of tiles: the last two are the next one's first.
            let (mut r0, mut r1) = (row(0), row(1));
            for ty in 0..th {
                let (r2, r3) = (row(2 * ty + 2), row(2 * ty + 3));
                // Bᵀ·d down the columns.
                let e: [[__m512; 3]; 4] = [
                    core::array::from_fn(|q| _mm512_sub_ps(r0[q], r2[q])),
                    core::array::from_fn(|q| _mm512_add_ps(r1[q], r2[q])),
                    core::array::from_fn(|q| _mm512_sub_ps(r2[q], r1[q])),
                    core::array::from_fn(|q| _mm512_sub_ps(r1[q], r3[q])),
                ];
                let t = at + ty * tw + tx0;
                for (i, [lo, hi, ext]) in e.into_iter().enumerate() {
                    // Columns 2t, 2t + 1 (from lo, hi) and 2t + 2, 2t + 3 (from the same
                    // shifted by two).
                    let lo2 = _mm512_castsi512_ps(_mm512_alignr_epi32::<2>(
                        _mm512_castps_si512(hi),
                        _mm512_castps_si512(lo),
                    ));
                    let hi2 = _mm512_castsi512_ps(_mm512_alignr_epi32::<2>(
                        _mm512_castps_si512(ext),
                        _mm512_castps_si512(hi),
                    ));
                    let a = _mm512_permutex2var_ps(lo, even, hi);
                    let b = _mm512_permutex2var_ps(lo, odd, hi);
                    let c = _mm512_permutex2var_ps(lo2, even, hi2);
                    let d = _mm512_permutex2var_ps(lo2, odd, hi2);
                    // SAFETY: planes 4i..4i + 4 of V, tiles t..t + 16: inside `v` (`fits`).
                    unsafe {
                        _mm512_storeu_ps(vp.add(4 * i * stride + t), _mm512_sub_ps(a, c));
                        _mm512_storeu_ps(vp.add((4 * i + 1) * stride + t), _mm512_add_ps(b, c));
                        _mm512_storeu_ps(vp.add((4 * i + 2) * stride + t), _mm512_sub_ps(c, b));
                        _mm512_storeu_ps(vp.add((4 * i + 3) * stride + t), _mm512_sub_ps(b, d));
                    }
                }
                (r0, r1) = (r2, r3);
            }
        }
    }

    /// [`super::output_transform`]'s kernel.
    ///
    /// # Safety
    /// AVX-512F; the lengths [`fits_out`] checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output(
        conv: &Convolution,
        plane: &mut [f32],
        m: &[f32],
        stride: usize,
        at: usize,
        bf: f32,
        relu: bool,
    ) {
        let od = conv.output_dims();
        let (oh, ow) = (od.height, od.width);
        let (th, tw) = tiles(conv);
        let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi_idx =
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let (zero, bias) = (_mm512_setzero_ps(), _mm512_set1_ps(bf));
        let act = |v: __m512| {
            if relu {
                // max(v, 0) as the element loop has it: v ≤ 0 becomes +0, NaN stays.
                _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, zero), zero)
            } else {
                v
            }
        };
        let out = plane.as_mut_ptr();
        for tx0 in (0..tw).step_by(L) {
            let c0 = 2 * tx0;
            let cols = (ow - c0).min(2 * L) as isize;
            let mask = [lanes(0, cols), lanes(0, cols - 16)];
            for ty in 0..th {
                let t = at + ty * tw + tx0;
                // SAFETY: the 16 planes of M, tiles t..t + 16: inside `m` (`fits_out`).
                let q: [__m512; 16] = core::array::from_fn(|xi| unsafe {
                    _mm512_loadu_ps(m.as_ptr().add(xi * stride + t))
                });
                // Aᵀ·m down the columns, then ·A along the rows, plus the bias.
                let s0: [__m512; 4] = core::array::from_fn(|j| {
                    _mm512_add_ps(_mm512_add_ps(q[j], q[4 + j]), q[8 + j])
                });
                let s1: [__m512; 4] = core::array::from_fn(|j| {
                    _mm512_sub_ps(_mm512_sub_ps(q[4 + j], q[8 + j]), q[12 + j])
                });
                for (a, s) in [s0, s1].iter().enumerate() {
                    let r = 2 * ty + a;
                    if r >= oh {
                        break;
                    }
                    let ye = act(_mm512_add_ps(
                        _mm512_add_ps(_mm512_add_ps(s[0], s[1]), s[2]),
                        bias,
                    ));
                    let yo = act(_mm512_add_ps(
                        _mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), s[3]),
                        bias,
                    ));
                    let p = out.wrapping_add(r * ow + c0);
                    // SAFETY: row r < OH of the plane, columns c0..c0 + cols ≤ OW (the masks).
                    unsafe {
                        _mm512_mask_storeu_ps(p, mask[0], _mm512_permutex2var_ps(ye, lo_idx, yo));
                        _mm512_mask_storeu_ps(
                            p.wrapping_add(16),
                            mask[1],
                            _mm512_permutex2var_ps(ye, hi_idx, yo),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{Backend, PACK_LEN};
    use crate::layers::Dims;
    use crate::layers::convolution::tests::ints;
    use std::vec;
    use std::vec::Vec;

    fn shapes() -> Vec<Convolution> {
        let d = Dims::new;
        vec![
            Convolution::new(d(4, 5, 5), 3, 3),
            Convolution::new(d(4, 6, 7), 5, 3).pad(1),
            Convolution::new(d(5, 7, 6), 2, 3).pad(2),
            Convolution::new(d(6, 3, 3), 4, 3),
            Convolution::new(d(4, 9, 4), 17, 3).pad(1),
            Convolution::new(d(16, 14, 14), 32, 3).pad(2),
            // Rows of more than 16 tiles, not a multiple of 16 (20, and 17 with an odd OW).
            Convolution::new(d(4, 40, 40), 5, 3).pad(1),
            Convolution::new(d(4, 37, 35), 4, 3),
        ]
    }

    /// Every shape, with the chunk cut to 1, 2, 3 rows of tiles and to its own length, the
    /// batch in one call and in parts, with and without the ReLU: the direct sum's values.
    #[test]
    fn equals_the_direct_sum_in_every_chunk_and_part() {
        for conv in shapes() {
            assert!(fits(&conv), "{conv:?}");
            let batch = 3;
            let x = ints(batch * conv.input.len(), 1);
            let w = ints(conv.weight_len(), 2);
            let b = ints(conv.filters, 3);
            let n_out = conv.output_dims().len();
            let mut want = vec![f32::NAN; batch * n_out];
            conv.forward_naive(&mut want, &x, &w, &b).unwrap();
            let relu: Vec<f32> = want.iter().map(|&v| v.max(0.0)).collect();
            let mut pack = vec![0.0; PACK_LEN];
            let mut g = Context::new(Backend::Auto, &mut pack);
            for rows in [1, 2, chunk_images(&conv)] {
                let len = filters_len(&conv) + rows * sample_len(&conv) + 32 * L;
                for (r, want) in [(false, &want), (true, &relu)] {
                    let mut got = vec![f32::NAN; batch * n_out];
                    let mut scratch = vec![f32::NAN; len];
                    forward(
                        &conv,
                        &mut g,
                        &mut got,
                        &x,
                        &w,
                        Some(&b),
                        &mut scratch,
                        r,
                        true,
                    )
                    .unwrap();
                    assert_eq!(&got, want, "{conv:?} {rows} rows, relu {r}");
                    let mut got = vec![f32::NAN; batch * n_out];
                    let n_in = conv.input.len();
                    for n in 0..batch {
                        let (on, xn) = (&mut got[n * n_out..][..n_out], &x[n * n_in..][..n_in]);
                        forward(&conv, &mut g, on, xn, &w, Some(&b), &mut scratch, r, n == 0)
                            .unwrap();
                    }
                    assert_eq!(&got, want, "{conv:?} {rows} rows, relu {r}, in parts");
                }
            }
        }
    }

    /// dW through F(3×3, 2×2), with the chunk cut to 1, 2 samples and to its own length,
    /// in f32 and f64: the naive twin's values.
    #[test]
    fn the_weight_gradient_equals_the_naive_twin_in_every_chunk() {
        fn check<T: Float>(conv: &Convolution) {
            let t = |v: Vec<f32>| {
                v.into_iter()
                    .map(|a| T::from_f64(a as f64))
                    .collect::<Vec<T>>()
            };
            let batch = 3;
            let x = t(ints(batch * conv.input.len(), 4));
            let w = t(ints(conv.weight_len(), 5));
            let dout = t(ints(batch * conv.output_dims().len(), 6));
            let (mut want, mut db) = (vec![T::ZERO; w.len()], vec![T::ZERO; conv.filters]);
            conv.backward_naive(None, &mut want, &mut db, &dout, &x, &w)
                .unwrap();
            let mut pack = vec![T::ZERO; PACK_LEN];
            let mut g = Context::new(Backend::Auto, &mut pack);
            for images in [1, 2, chunk_images(conv)] {
                let len = filters_len(conv) + images * sample_len(conv) + 32 * L;
                let mut scratch = vec![T::from_f64(f64::NAN); len];
                let mut got = vec![T::from_f64(f64::NAN); w.len()];
                weight_gradient(conv, &mut g, &mut got, &dout, &x, &mut scratch).unwrap();
                assert!(got == want, "{conv:?} {} chunks of {images}", T::NAME);
            }
        }
        for conv in shapes() {
            check::<f32>(&conv);
            check::<f64>(&conv);
        }
    }

    /// Random values: within a few ulps of the direct sum (f32), and of it in f64.
    #[test]
    fn is_close_to_the_direct_sum_on_random_values() {
        use crate::random::{seeded, uniform01};
        let conv = Convolution::new(Dims::new(16, 14, 14), 32, 3).pad(1);
        let mut rng = seeded(5);
        let mut draw =
            |n: usize| -> Vec<f64> { (0..n).map(|_| uniform01(&mut rng) - 0.5).collect() };
        let (x, w, b) = (
            draw(2 * conv.input.len()),
            draw(conv.weight_len()),
            draw(32),
        );
        let mut want = vec![0.0f64; 2 * conv.output_dims().len()];
        conv.forward_naive(&mut want, &x, &w, &b).unwrap();
        let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let (x32, w32, b32) = (f32s(&x), f32s(&w), f32s(&b));
        let mut pack = vec![0.0f32; PACK_LEN];
        let mut g = Context::new(Backend::Auto, &mut pack);
        let mut got = vec![0.0f32; want.len()];
        let mut scratch = vec![0.0f32; scratch_len(&conv)];
        forward(
            &conv,
            &mut g,
            &mut got,
            &x32,
            &w32,
            Some(&b32),
            &mut scratch,
            false,
            true,
        )
        .unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&a, &e)| (a as f64 - e).abs())
            .fold(0.0, f64::max);
        // Sums of 144 products of values below 0.5: a few times f32's epsilon of their size.
        assert!(worst < 2e-5, "worst difference {worst}");
        let mut pack = vec![0.0f64; PACK_LEN];
        let mut g = Context::new(Backend::Auto, &mut pack);
        let mut got = vec![0.0f64; want.len()];
        let mut scratch = vec![0.0f64; scratch_len(&conv)];
        forward(
            &conv,
            &mut g,
            &mut got,
            &x,
            &w,
            Some(&b),
            &mut scratch,
            false,
            true,
        )
        .unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&a, &e)| (a - e).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-13, "worst difference {worst}");
    }

    #[test]
    fn short_scratch_and_other_shapes_are_errors() {
        let conv = Convolution::new(Dims::new(4, 6, 6), 4, 3).pad(1);
        let (x, w, b) = (vec![0.0f32; 4 * 36], vec![0.0f32; 4 * 36], vec![0.0f32; 4]);
        let mut out = vec![0.0f32; 4 * 36];
        let mut pack = vec![0.0; PACK_LEN];
        let mut g = Context::new(Backend::Auto, &mut pack);
        let mut short = vec![0.0f32; filters_len(&conv) + sample_len(&conv) + 32 * L - 1];
        let e = forward(
            &conv,
            &mut g,
            &mut out,
            &x,
            &w,
            Some(&b),
            &mut short,
            false,
            true,
        );
        assert!(matches!(e, Err(Error::ShapeMismatch { .. })), "{e:?}");
        let strided = conv.stride(2);
        let mut scratch = vec![0.0f32; 1 << 16];
        let e = forward(
            &strided,
            &mut g,
            &mut out,
            &x,
            &w,
            Some(&b),
            &mut scratch,
            false,
            true,
        );
        assert!(matches!(e, Err(Error::Unsupported { .. })), "{e:?}");
    }
}
