//! The int8 Convolution and max pooling: the chapter 7 layers in the scheme of [`super`].
//!
//! A Convolution in int8 is an Affine over each output position's patch ([`QConvolution`]):
//! its `filters × C·FH·FW` weights are a [`QAffine`]'s `output × input` ones (per filter: a
//! scale, a bias, a multiplier and shift), the patches come from `im2col`, padded with the
//! input's zero point (the int8 value of a real 0), and the sums are requantized and clamped
//! as an Affine's. Max pooling ([`max_pool`]) keeps its input's scale and zero point: the
//! largest int8 value of a window stands for the largest real.
//!
//! Shapes (row-major; `C, H, W` the input's, `F` filters, `OH × OW` output positions):
//! - `x`:       batch × C × H × W
//! - `out`:     batch × F × OH × OW (the f32 Convolution's layout)
//! - `scratch`: [`QConvolution::scratch_len`]: room for one sample's patches (`OH·OW` rows of
//!   `C·FH·FW`; the Cortex-M kernel rounds each row up to a multiple of 4), then its outputs
//!   (`OH·OW × F`)
//!
//! On a Cortex-M with the DSP extension the layer runs filter by filter (`SMLAD`, each
//! filter's multiplier and shift along its plane: `dsp::conv_rows`), writing the
//! filter-major output directly; elsewhere [`QAffine::forward`] over the patches gives the
//! outputs by position, transposed into `out`. The same bits either way.

use crate::error::{Error, Result, check_len, mul};
use crate::layers::{Convolution, Dims, Pooling};

use super::QAffine;
use super::affine::Packed;

/// An int8 Convolution over caller-owned buffers: the geometry of the f32 layer, and the
/// filters as an Affine over one patch.
#[derive(Debug, Clone, Copy)]
pub struct QConvolution<'a> {
    /// The geometry (the input's shape, filters, kernel, stride, pad).
    pub conv: Convolution,
    /// The filters: `input` = `C·FH·FW` (in the order `c, i, j`, the book's), `output` = `F`.
    pub affine: QAffine<'a>,
}

impl<'a> QConvolution<'a> {
    /// int8 values of scratch space [`QConvolution::forward`] needs: one sample's patches
    /// and its outputs by position.
    pub const fn scratch_len(conv: &Convolution) -> usize {
        let positions = conv.output_dims().plane();
        positions.saturating_mul(row_len(conv).saturating_add(conv.filters))
    }

    /// Whether the Cortex-M DSP kernel takes this layer (weights in rows, a patch it can
    /// widen at once).
    #[cfg(zeronn_dsp)]
    fn dsp(&self) -> bool {
        self.affine.layout == super::WeightLayout::Rows
            && row_len(&self.conv) <= super::dsp::CONV_MAX_PATCH
    }

    /// Bytes per patch in the scratch, for the kernel that runs: the Cortex-M kernel's rows
    /// padded to words, else the patch itself (rows of the Affine's input).
    fn row(&self) -> usize {
        #[cfg(zeronn_dsp)]
        if self.dsp() {
            return row_len(&self.conv);
        }
        self.conv.patch_len()
    }

    /// One sample's patches into `col`, rows of [`QConvolution::row`] bytes, the padding the
    /// input's zero point.
    fn patches<'c>(&self, xs: &[i8], col: &'c mut [i8]) -> &'c [i8] {
        let (c, row) = (&self.conv, self.row());
        let col = &mut col[..c.output_dims().plane() * row];
        let zero = self.affine.input_zero_point.clamp(-128, 127) as i8;
        im2col(c, col, xs, zero, row);
        col
    }

    /// Checks the geometry against the filters and the buffers; the batch.
    fn check(&self, x: &[i8], out: &[i8]) -> Result<usize> {
        let batch = self.check_x(x)?;
        check_len("out", mul(batch, self.conv.output_dims().len())?, out.len())?;
        Ok(batch)
    }

    /// Checks the geometry against the filters, and `x`; the batch.
    fn check_x(&self, x: &[i8]) -> Result<usize> {
        let c = &self.conv;
        c.validate()?;
        self.affine.check_layer()?;
        if self.affine.input != c.patch_len() || self.affine.output != c.filters {
            return Err(Error::ShapeMismatch {
                what: "QConvolution: the Affine's input must be C·FH·FW and its output the filters",
                expected: c.patch_len(),
                actual: self.affine.input,
            });
        }
        let n_in = c.input.len();
        if x.is_empty() || !x.len().is_multiple_of(n_in) {
            return Err(Error::ShapeMismatch {
                what: "x: a whole number of samples of C × H × W",
                expected: n_in,
                actual: x.len(),
            });
        }
        Ok(x.len() / n_in)
    }

    /// The scratch checked long enough, split into the patches and the outputs by position.
    fn split<'s>(&self, scratch: &'s mut [i8]) -> Result<(&'s mut [i8], &'s mut [i8])> {
        let c = &self.conv;
        let need = Self::scratch_len(c);
        if scratch.len() < need {
            return Err(Error::BufferLength {
                buffer: "int8 convolution scratch",
                expected: need,
                actual: scratch.len(),
            });
        }
        let positions = c.output_dims().plane();
        let (col, by_pos) = scratch[..need].split_at_mut(positions * row_len(c));
        Ok((col, by_pos.split_at_mut(positions * c.filters).0))
    }

    /// [`QConvolution::forward`] then [`max_pool`] by `pool` (whose input is this layer's
    /// output shape), `out` batch × the pooling's output: each window's maximum taken from
    /// the outputs by position (a row of `F` values for each position of the window), so
    /// only the pooled values are transposed. The same bits as the two apart.
    #[inline(never)]
    pub fn forward_pooled(
        &self,
        x: &[i8],
        out: &mut [i8],
        scratch: &mut [i8],
        packed: Option<&Packed<'_>>,
        pool: &Pooling,
    ) -> Result<()> {
        let batch = self.check_x(x)?;
        pool.validate()?;
        let (c, od) = (&self.conv, self.conv.output_dims());
        if pool.input != od {
            return Err(Error::ShapeMismatch {
                what: "the pooling's input must be the convolution's output",
                expected: od.len(),
                actual: pool.input.len(),
            });
        }
        let pd = pool.output_dims();
        check_len("out", mul(batch, pd.len())?, out.len())?;
        let (col, by_pos) = self.split(scratch)?;
        let (filters, pooled) = (c.filters, pd.plane());
        let mut m = [0i8; 64];
        for (xs, os) in x
            .chunks_exact(c.input.len())
            .zip(out.chunks_exact_mut(pd.len()))
        {
            let patches = self.patches(xs, col);
            #[cfg(zeronn_dsp)]
            if self.dsp() {
                // Filter by filter into `by_pos` (here filter-major), then each plane pooled.
                super::dsp::conv_rows(&self.affine, patches, self.row(), by_pos);
                max_pool(pool, by_pos, os)?;
                continue;
            }
            self.affine.forward(patches, by_pos, packed)?;
            for py in 0..pd.height {
                for px in 0..pd.width {
                    let p = py * pd.width + px;
                    // In blocks of 64 filters, the window's rows folded by maximum.
                    for f0 in (0..filters).step_by(64) {
                        let w = (filters - f0).min(64);
                        let m = &mut m[..w];
                        m.fill(i8::MIN);
                        for i in 0..pool.pool_h {
                            for j in 0..pool.pool_w {
                                let at = (py * pool.stride + i) * od.width + px * pool.stride + j;
                                let row = &by_pos[at * filters + f0..][..w];
                                for (a, &v) in m.iter_mut().zip(row) {
                                    *a = (*a).max(v);
                                }
                            }
                        }
                        for (f, &v) in m.iter().enumerate() {
                            os[(f0 + f) * pooled + p] = v;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `out` = the layer on `x` (see the module docs for the shapes): each sample's patches
    /// into `scratch` (at least [`QConvolution::scratch_len`]), [`QAffine::forward`] over
    /// them (the fast kernel with `packed`, the filters' packing), then its outputs
    /// transposed to filter-major. The same bits as [`QConvolution::forward_naive`].
    #[inline(never)]
    pub fn forward(
        &self,
        x: &[i8],
        out: &mut [i8],
        scratch: &mut [i8],
        packed: Option<&Packed<'_>>,
    ) -> Result<()> {
        self.check(x, out)?;
        let c = &self.conv;
        let (positions, filters) = (c.output_dims().plane(), c.filters);
        let (col, by_pos) = self.split(scratch)?;
        for (xs, os) in x
            .chunks_exact(c.input.len())
            .zip(out.chunks_exact_mut(positions * filters))
        {
            let patches = self.patches(xs, col);
            #[cfg(zeronn_dsp)]
            if self.dsp() {
                // Filter by filter, straight into the filter-major output.
                super::dsp::conv_rows(&self.affine, patches, self.row(), os);
                continue;
            }
            self.affine.forward(patches, by_pos, packed)?;
            for (p, row) in by_pos.chunks_exact(filters).enumerate() {
                for (f, &v) in row.iter().enumerate() {
                    os[f * positions + p] = v;
                }
            }
        }
        Ok(())
    }

    /// The reference of [`QConvolution::forward`]: the convolution as written, each output
    /// `clamp(z_out + M_f · (bias_f + Σ w·(x − z_in)))` over the window's positions inside
    /// the input (the padding stands for real zeros: `x − z_in = 0` adds nothing).
    pub fn forward_naive(&self, x: &[i8], out: &mut [i8]) -> Result<()> {
        self.check(x, out)?;
        let c = &self.conv;
        let a = &self.affine;
        let Dims {
            channels,
            height,
            width,
        } = c.input;
        let od = c.output_dims();
        let (fh, fw, s, pad) = (c.kernel_h, c.kernel_w, c.stride, c.pad);
        for (xs, os) in x
            .chunks_exact(c.input.len())
            .zip(out.chunks_exact_mut(od.len()))
        {
            for f in 0..c.filters {
                for oy in 0..od.height {
                    for ox in 0..od.width {
                        let mut acc = a.bias[f];
                        for ch in 0..channels {
                            for i in 0..fh {
                                for j in 0..fw {
                                    let (y, xx) = (oy * s + i, ox * s + j);
                                    if y < pad || xx < pad || y - pad >= height || xx - pad >= width
                                    {
                                        continue;
                                    }
                                    let v = xs[(ch * height + y - pad) * width + xx - pad];
                                    let d = i32::from(v) - a.input_zero_point;
                                    let wv = i32::from(a.weight(f, (ch * fh + i) * fw + j));
                                    acc = acc.wrapping_add(d * wv);
                                }
                            }
                        }
                        os[(f * od.height + oy) * od.width + ox] = a.finish(f, acc);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Bytes between two patches in the scratch: the patch rounded up to a multiple of 4 (the
/// Cortex-M kernel reads patches in words).
const fn row_len(conv: &Convolution) -> usize {
    conv.patch_len().saturating_add(3) / 4 * 4
}

/// One sample's patches, a row of `row` bytes (at least `C·FH·FW`) per output position:
/// `col[oy·OW + ox][(c·FH + i)·FW + j] = x[c][oy·s + i − pad][ox·s + j − pad]`, `zero` where
/// that falls in the padding; a row's bytes past the patch are left as they are. (The f32
/// layer's `im2col` is this transposed.)
pub(crate) fn im2col(conv: &Convolution, col: &mut [i8], x: &[i8], zero: i8, row: usize) {
    let Dims {
        channels,
        height,
        width,
    } = conv.input;
    let od = conv.output_dims();
    let (fh, fw, s, pad) = (conv.kernel_h, conv.kernel_w, conv.stride, conv.pad);
    // The positions whose window rows lie inside the input's width: ox in lo..hi.
    let lo = pad.div_ceil(s).min(od.width);
    let hi = if width + pad >= fw {
        ((width + pad - fw) / s + 1).clamp(lo, od.width)
    } else {
        lo
    };
    // One output row's positions at a time, one window row (c, i) across them.
    for (oy, block) in col.chunks_exact_mut(od.width * row).enumerate() {
        for ch in 0..channels {
            let plane = &x[ch * height * width..(ch + 1) * height * width];
            for i in 0..fh {
                let k = (ch * fh + i) * fw;
                let y = oy * s + i;
                if y < pad || y - pad >= height {
                    for p in block.chunks_exact_mut(row) {
                        p[k..k + fw].fill(zero);
                    }
                    continue;
                }
                let src = &plane[(y - pad) * width..(y - pad + 1) * width];
                if s == 1 && lo < hi {
                    // Stride 1: the windows of the positions inside slide along the row.
                    let inside = block[lo * row..hi * row].chunks_exact_mut(row);
                    for (p, w) in inside.zip(src[lo - pad..].windows(fw)) {
                        copy_short(&mut p[k..k + fw], w);
                    }
                }
                let patches = block.chunks_exact_mut(row).map(|p| &mut p[k..k + fw]);
                for (ox, dst) in patches.enumerate() {
                    if (lo..hi).contains(&ox) {
                        if s == 1 {
                            continue; // copied above
                        }
                        // The whole window row inside the input: one copy.
                        let x0 = ox * s - pad;
                        copy_short(dst, &src[x0..x0 + fw]);
                        continue;
                    }
                    for (j, d) in dst.iter_mut().enumerate() {
                        let xx = ox * s + j;
                        *d = if xx < pad || xx - pad >= width {
                            zero
                        } else {
                            src[xx - pad]
                        };
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the kernel widths of the book's nets (3 and 5) as single
/// byte moves: a call to `memcpy` for a few bytes costs more than the copy.
#[inline(always)]
fn copy_short(dst: &mut [i8], src: &[i8]) {
    match (dst, src) {
        ([d0, d1, d2], [s0, s1, s2]) => {
            (*d0, *d1, *d2) = (*s0, *s1, *s2);
        }
        ([d0, d1, d2, d3, d4], [s0, s1, s2, s3, s4]) => {
            (*d0, *d1, *d2, *d3, *d4) = (*s0, *s1, *s2, *s3, *s4);
        }
        (d, s) => d.copy_from_slice(s),
    }
}

/// Max pooling in int8 (see [`Pooling`] for the windows): `x` is batch × C × H × W, `out`
/// batch × C × OH × OW; each output the largest value of its window. The scale and zero
/// point stay the input's.
pub fn max_pool(pool: &Pooling, x: &[i8], out: &mut [i8]) -> Result<()> {
    pool.validate()?;
    let (d, od) = (pool.input, pool.output_dims());
    if x.is_empty() || !x.len().is_multiple_of(d.len()) {
        return Err(Error::ShapeMismatch {
            what: "x: a whole number of samples of C × H × W",
            expected: d.len(),
            actual: x.len(),
        });
    }
    check_len("out", mul(x.len() / d.len(), od.len())?, out.len())?;
    let s = pool.stride;
    for (xc, oc) in x
        .chunks_exact(d.plane())
        .zip(out.chunks_exact_mut(od.plane()))
    {
        if (pool.pool_h, pool.pool_w, s) == (2, 2, 2) {
            // The book's pooling: two input rows a pass, two values of each a window.
            for (oy, orow) in oc.chunks_exact_mut(od.width).enumerate() {
                let r0 = &xc[2 * oy * d.width..][..2 * od.width];
                let r1 = &xc[(2 * oy + 1) * d.width..][..2 * od.width];
                for ((o, a), b) in orow
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *o = a[0].max(a[1]).max(b[0].max(b[1]));
                }
            }
            continue;
        }
        for oy in 0..od.height {
            for ox in 0..od.width {
                let mut m = i8::MIN;
                for i in 0..pool.pool_h {
                    let row = &xc[(oy * s + i) * d.width + ox * s..][..pool.pool_w];
                    m = row.iter().fold(m, |m, &v| m.max(v));
                }
                oc[oy * od.width + ox] = m;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::WeightLayout;
    use super::super::requant::quantize_multiplier;
    use super::*;
    use crate::random::Rng;
    use std::vec;
    use std::vec::Vec;

    /// Random int8 filters for `conv` with requantization to a plausible output scale.
    struct Filters {
        w: Vec<i8>,
        bias: Vec<i32>,
        m: Vec<i32>,
        s: Vec<i32>,
    }

    fn filters(conv: &Convolution, rng: &mut impl Rng) -> Filters {
        let n = conv.weight_len();
        let w = (0..n)
            .map(|_| (rng.next_u32() % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let bias = (0..conv.filters)
            .map(|_| (rng.next_u32() % 20001) as i32 - 10000)
            .collect();
        let (mut m, mut s) = (vec![0; conv.filters], vec![0; conv.filters]);
        for f in 0..conv.filters {
            let real = 1.0 / (conv.patch_len() as f64 * 40.0) * (1.0 + f as f64 / 7.0);
            (m[f], s[f]) = quantize_multiplier(real);
        }
        Filters { w, bias, m, s }
    }

    fn layer<'a>(conv: Convolution, f: &'a Filters, z_in: i32, relu: bool) -> QConvolution<'a> {
        QConvolution {
            conv,
            affine: QAffine {
                input: conv.patch_len(),
                output: conv.filters,
                w: &f.w,
                layout: WeightLayout::Rows,
                bias: &f.bias,
                multiplier: &f.m,
                shift: &f.s,
                input_zero_point: z_in,
                input_scale: 0.02,
                output_zero_point: -5,
                output_scale: 0.05,
                act_min: if relu { -5 } else { -128 },
                act_max: 127,
            },
        }
    }

    #[test]
    fn the_patches_and_the_fast_kernel_give_the_direct_convolutions_bits() {
        let mut rng = crate::random::seeded(7);
        let shapes = [
            Convolution::new(Dims::new(1, 12, 12), 30, 5),
            Convolution::new(Dims::new(3, 9, 7), 5, 3).pad(1),
            Convolution::new(Dims::new(2, 10, 11), 17, 3)
                .stride(2)
                .pad(2),
            Convolution::new(Dims::new(4, 6, 6), 64, 2).kernel(2, 3),
            // A stride longer than the kernel, a pad as large as it, a one-row kernel.
            Convolution::new(Dims::new(2, 7, 5), 3, 3).stride(4).pad(2),
            Convolution::new(Dims::new(1, 5, 5), 2, 2).pad(3),
            Convolution::new(Dims::new(1, 4, 9), 4, 1)
                .kernel(1, 4)
                .stride(2),
        ];
        for conv in shapes {
            let f = filters(&conv, &mut rng);
            for (z_in, relu) in [(-128, false), (-3, true), (17, true)] {
                let l = layer(conv, &f, z_in, relu);
                let batch = 3;
                let x: Vec<i8> = (0..batch * conv.input.len())
                    .map(|_| rng.next_u32() as i8)
                    .collect();
                let n_out = batch * conv.output_dims().len();
                let (mut want, mut got) = (vec![0i8; n_out], vec![1i8; n_out]);
                l.forward_naive(&x, &mut want).unwrap();
                let mut scratch = vec![0i8; QConvolution::scratch_len(&conv)];
                let mut words = vec![0i32; QAffine::pack_len(l.affine.input, l.affine.output)];
                let packed = l.affine.pack(&mut words).unwrap();
                l.forward(&x, &mut got, &mut scratch, Some(&packed))
                    .unwrap();
                assert_eq!(got, want, "{conv:?} z_in {z_in}");
                got.fill(1);
                l.forward(&x, &mut got, &mut scratch, None).unwrap();
                assert_eq!(got, want, "{conv:?} z_in {z_in}, reference loop");
                // The outputs are not all one value (the test would hold trivially).
                assert!(want.iter().any(|&v| v != want[0]));
            }
        }
    }

    #[test]
    fn pooling_in_the_same_pass_gives_the_bits_of_the_two_apart() {
        let mut rng = crate::random::seeded(11);
        let cases = [
            (Convolution::new(Dims::new(1, 12, 12), 30, 5), (2, 2, 2)),
            (
                Convolution::new(Dims::new(3, 9, 9), 70, 3).pad(1),
                (3, 2, 2),
            ),
            (Convolution::new(Dims::new(2, 8, 8), 5, 3), (2, 2, 1)),
        ];
        for (conv, (ph, pw, ps)) in cases {
            let f = filters(&conv, &mut rng);
            let l = layer(conv, &f, -7, true);
            let pool = Pooling::new(conv.output_dims(), ph, pw, ps);
            let batch = 2;
            let x: Vec<i8> = (0..batch * conv.input.len())
                .map(|_| rng.next_u32() as i8)
                .collect();
            let mut h = vec![0i8; batch * conv.output_dims().len()];
            l.forward_naive(&x, &mut h).unwrap();
            let n = batch * pool.output_dims().len();
            let (mut want, mut got) = (vec![0i8; n], vec![1i8; n]);
            max_pool(&pool, &h, &mut want).unwrap();
            let mut scratch = vec![0i8; QConvolution::scratch_len(&conv)];
            let mut words = vec![0i32; QAffine::pack_len(l.affine.input, l.affine.output)];
            let packed = l.affine.pack(&mut words).unwrap();
            l.forward_pooled(&x, &mut got, &mut scratch, Some(&packed), &pool)
                .unwrap();
            assert_eq!(got, want, "{conv:?}");
            assert!(want.iter().any(|&v| v != want[0]));
            let other = Pooling::new(Dims::new(1, 4, 4), 2, 2, 2);
            assert!(
                l.forward_pooled(&x, &mut got, &mut scratch, None, &other)
                    .is_err()
            );
        }
    }

    #[test]
    fn a_real_convolution_comes_out_within_a_step_of_its_int8_twin() {
        // Reals on exact int8 grids: the int8 result is the real one requantized.
        let conv = Convolution::new(Dims::new(1, 6, 6), 2, 3).pad(1);
        let (s_in, s_w, s_out) = (0.1f64, 0.01f64, 0.05f64);
        let mut rng = crate::random::seeded(3);
        let xq: Vec<i8> = (0..36).map(|_| (rng.next_u32() % 100) as i8 - 50).collect();
        let w: Vec<i8> = (0..18)
            .map(|_| (rng.next_u32() % 200) as i8 - 100)
            .collect();
        let (m, s) = quantize_multiplier(s_in * s_w / s_out);
        let (bias, mm, ss) = (vec![3i32, -40], vec![m; 2], vec![s; 2]);
        let l = QConvolution {
            conv,
            affine: QAffine {
                input: 9,
                output: 2,
                w: &w,
                layout: WeightLayout::Rows,
                bias: &bias,
                multiplier: &mm,
                shift: &ss,
                input_zero_point: 0,
                input_scale: s_in as f32,
                output_zero_point: 0,
                output_scale: s_out as f32,
                act_min: -128,
                act_max: 127,
            },
        };
        let mut out = vec![0i8; 72];
        l.forward_naive(&xq, &mut out).unwrap();
        for f in 0..2 {
            for oy in 0..6usize {
                for ox in 0..6usize {
                    let mut real = f64::from(bias[f]) * s_in * s_w;
                    for i in 0..3 {
                        for j in 0..3 {
                            let (y, x) = ((oy + i) as isize - 1, (ox + j) as isize - 1);
                            if (0..6).contains(&y) && (0..6).contains(&x) {
                                let v = f64::from(xq[(y * 6 + x) as usize]) * s_in;
                                real += v * f64::from(w[f * 9 + i * 3 + j]) * s_w;
                            }
                        }
                    }
                    let want = (real / s_out).round().clamp(-128.0, 127.0);
                    let got = f64::from(out[(f * 6 + oy) * 6 + ox]);
                    assert!((got - want).abs() <= 1.0, "{f} {oy} {ox}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn max_pooling_keeps_each_windows_largest_value() {
        let pool = Pooling::new(Dims::new(2, 4, 5), 2, 2, 2);
        let x: Vec<i8> = (0..40).map(|i| ((i * 37) % 251) as u8 as i8).collect();
        let mut out = vec![0i8; 8];
        max_pool(&pool, &x, &mut out).unwrap();
        for c in 0..2 {
            for oy in 0..2 {
                for ox in 0..2 {
                    let at = |i: usize, j: usize| x[c * 20 + (2 * oy + i) * 5 + 2 * ox + j];
                    let want = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                    assert_eq!(out[c * 4 + oy * 2 + ox], want);
                }
            }
        }
        assert!(max_pool(&pool, &x[..39], &mut out).is_err());
        assert!(max_pool(&pool, &x, &mut out[..7]).is_err());
        // Any other window and stride, against every window searched in full.
        for (ph, pw, s) in [(3, 2, 2), (2, 3, 1), (1, 2, 3)] {
            let pool = Pooling::new(Dims::new(2, 7, 6), ph, pw, s);
            let od = pool.output_dims();
            let x: Vec<i8> = (0..84).map(|i| ((i * 53 + 7) % 256) as u8 as i8).collect();
            let mut out = vec![0i8; od.len()];
            max_pool(&pool, &x, &mut out).unwrap();
            for c in 0..2 {
                for oy in 0..od.height {
                    for ox in 0..od.width {
                        let mut want = i8::MIN;
                        for i in 0..ph {
                            for j in 0..pw {
                                want = want.max(x[c * 42 + (oy * s + i) * 6 + ox * s + j]);
                            }
                        }
                        assert_eq!(out[(c * od.height + oy) * od.width + ox], want);
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let conv = Convolution::new(Dims::new(1, 5, 5), 2, 3);
        let mut rng = crate::random::seeded(1);
        let f = filters(&conv, &mut rng);
        let l = layer(conv, &f, 0, false);
        let mut scratch = vec![0i8; QConvolution::scratch_len(&conv)];
        let mut out = vec![0i8; 18];
        assert!(l.forward(&[0; 24], &mut out, &mut scratch, None).is_err());
        assert!(
            l.forward(&[0; 25], &mut out[..17], &mut scratch, None)
                .is_err()
        );
        assert!(
            l.forward(&[0; 25], &mut out, &mut scratch[..10], None)
                .is_err()
        );
        let wrong = QConvolution {
            conv: Convolution::new(Dims::new(1, 5, 5), 3, 3),
            ..l
        };
        assert!(
            wrong
                .forward(&[0; 25], &mut [0; 27], &mut scratch, None)
                .is_err()
        );
        assert!(l.forward(&[0; 25], &mut out, &mut scratch, None).is_ok());
    }
}
