//! Convolution layer (the book's `Convolution`): `out[n, f] = Σ_c W[f, c] ⋆ x[n, c] + b[f]`,
//! each filter slid over the (zero-padded) input with a stride.
//!
//! Shapes (row-major, NCHW as in the book; `C, H, Wd` the input's channels, height, width,
//! `FN` filters of `FH × FW`, `OH = (H + 2·pad − FH) / stride + 1`, likewise `OW`):
//! - `x`:   batch × C × H × Wd
//! - `W`:   FN × C × FH × FW (the book's filter layout, so its trained weights drop in)
//! - `b`:   FN
//! - `out`: batch × FN × OH × OW
//! - `col`: (C·FH·FW) × (OH·OW), one sample's patches, one column per output position (the
//!   transpose of the book's `im2col` rows), so that `out[n] = W · col + b` is one product
//!   whose result is already NCHW
//! - `dout`, `dx`, `dW`, `db`: the shapes of `out`, `x`, `W`, `b`
//!
//! The fast path is `im2col` then a product through the gemm, per sample; the naive twin
//! ([`Convolution::forward_naive`], [`Convolution::backward_naive`]) is the direct sum, and the
//! tests hold one against the other.

use crate::error::{Error, Result, check_len, mul};
use crate::gemm::{Context, MatMut, MatRef};
use crate::layers::{Dims, winograd};
use crate::math::Float;

/// A convolution of `filters` filters of `kernel_h × kernel_w` over an input of shape `input`,
/// with `stride` and zero padding `pad` on every side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Convolution {
    /// The shape of one sample in.
    pub input: Dims,
    /// Filters (channels out), the book's `FN`.
    pub filters: usize,
    /// Filter height, `FH`.
    pub kernel_h: usize,
    /// Filter width, `FW`.
    pub kernel_w: usize,
    /// Step between two positions of a filter, in both directions.
    pub stride: usize,
    /// Zeros added on every side of the input.
    pub pad: usize,
}

impl Convolution {
    /// `filters` square filters of `kernel × kernel` over `input`, stride 1, no padding (the
    /// book's defaults); see [`Convolution::stride`], [`Convolution::pad`],
    /// [`Convolution::kernel`].
    pub const fn new(input: Dims, filters: usize, kernel: usize) -> Self {
        Convolution {
            input,
            filters,
            kernel_h: kernel,
            kernel_w: kernel,
            stride: 1,
            pad: 0,
        }
    }

    /// This layer with a stride of `stride`.
    pub const fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// This layer with `pad` zeros on every side.
    pub const fn pad(mut self, pad: usize) -> Self {
        self.pad = pad;
        self
    }

    /// This layer with filters of `h × w`.
    pub const fn kernel(mut self, h: usize, w: usize) -> Self {
        self.kernel_h = h;
        self.kernel_w = w;
        self
    }

    /// Output height and width (0 if the filter does not fit the padded input, or the stride
    /// is 0).
    const fn out_hw(&self) -> (usize, usize) {
        let d = &self.input;
        let (ph, pw) = (
            d.height.saturating_add(self.pad.saturating_mul(2)),
            d.width.saturating_add(self.pad.saturating_mul(2)),
        );
        if self.stride == 0 || self.kernel_h == 0 || self.kernel_w == 0 {
            return (0, 0);
        }
        if ph < self.kernel_h || pw < self.kernel_w {
            return (0, 0);
        }
        (
            (ph - self.kernel_h) / self.stride + 1,
            (pw - self.kernel_w) / self.stride + 1,
        )
    }

    /// The shape of one sample out: `FN × OH × OW`.
    pub const fn output_dims(&self) -> Dims {
        let (oh, ow) = self.out_hw();
        Dims::new(self.filters, oh, ow)
    }

    /// Rows of `col` and columns of `W` as a matrix: `C·FH·FW`.
    pub const fn patch_len(&self) -> usize {
        self.input
            .channels
            .saturating_mul(self.kernel_h)
            .saturating_mul(self.kernel_w)
    }

    /// Elements of `W`.
    pub const fn weight_len(&self) -> usize {
        self.filters.saturating_mul(self.patch_len())
    }

    /// Elements of `W` and `b` together.
    pub const fn param_len(&self) -> usize {
        self.weight_len().saturating_add(self.filters)
    }

    /// Elements of the `col` buffer the fast paths need: `C·FH·FW × OH·OW` for im2col, or
    /// more where the forward pass goes through Winograd's F(2×2, 3×3) (3 × 3 filters,
    /// stride 1, at least 4 channels; not on microcontrollers) and its transformed filters
    /// and tiles take more.
    pub const fn col_len(&self) -> usize {
        let im2col = self.patch_len().saturating_mul(self.output_dims().plane());
        let own = if winograd::fits(self) {
            winograd::scratch_len(self)
        } else {
            0
        };
        // The input gradient goes through the transposed convolution's forward pass.
        let dx = match self.transposed() {
            Some(tc) if winograd::fits(&tc) => winograd::scratch_len(&tc),
            _ => 0,
        };
        let most = if own > dx { own } else { dx };
        if most > im2col { most } else { im2col }
    }

    /// Multiply-adds of one sample's forward pass.
    pub const fn macs(&self) -> usize {
        self.weight_len().saturating_mul(self.output_dims().plane())
    }

    /// Checks the layer's sizes.
    pub fn validate(&self) -> Result<()> {
        let d = &self.input;
        if d.is_empty() || self.filters == 0 || self.kernel_h == 0 || self.kernel_w == 0 {
            return Err(Error::ZeroSize {
                what: "Convolution size",
            });
        }
        if self.stride == 0 {
            return Err(Error::InvalidValue {
                what: "Convolution stride (must be at least 1)",
            });
        }
        if self.output_dims().is_empty() {
            return Err(Error::ShapeMismatch {
                what: "Convolution filter taller or wider than its padded input",
                expected: d.height.min(d.width) + 2 * self.pad,
                actual: self.kernel_h.max(self.kernel_w),
            });
        }
        let big = [
            self.param_len(),
            self.col_len(),
            self.output_dims().len(),
            d.len(),
        ];
        if big.contains(&usize::MAX) {
            return Err(Error::SizeOverflow);
        }
        Ok(())
    }

    /// Checks the sizes and that `x_len` is whole samples; returns the batch.
    fn batch(&self, x_len: usize) -> Result<usize> {
        self.validate()?;
        let n = self.input.len();
        let batch = x_len / n;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_len("x", mul(batch, n)?, x_len)?;
        Ok(batch)
    }

    /// `out = W ⋆ x + b` (then `max(·, 0)` if `relu`: this layer and the
    /// [`Relu`](crate::Relu) after it, the ReLU applied while the sample is in cache), through
    /// `col` (at least [`Convolution::col_len`] elements) and the gemm.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        w: &[T],
        b: &[T],
        col: &mut [T],
        relu: bool,
    ) -> Result<()> {
        let batch = self.batch(x.len())?;
        let (k, p) = (self.patch_len(), self.output_dims().plane());
        let fnum = self.filters;
        check_len("out", batch * fnum * p, out.len())?;
        check_len("W", fnum * k, w.len())?;
        check_len("b", fnum, b.len())?;
        col_prefix(col, k * p)?;
        if self.winograd(col.len(), batch) {
            return winograd::forward(self, g, out, x, w, Some(b), col, relu, true);
        }
        let wm = MatRef::row_major(w, fnum, k)?;
        match self.implicit_rows(col.len()) {
            Some(rows) => self.forward_implicit(g, out, x, wm, Some(b), col, relu, rows),
            None => self.forward_im2col(g, out, x, wm, b, col, relu),
        }
    }

    /// [`Convolution::forward`] of a batch of `whole` samples handed over in parts (a few
    /// samples at a time, [`Convolution::part_len`] of them): `first` for the first part, the
    /// same `W` and `col` for every part. Through Winograd's F(2×2, 3×3), the filters are
    /// transformed for the first part only; the other paths work sample by sample anyway.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_part<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        w: &[T],
        b: &[T],
        col: &mut [T],
        relu: bool,
        first: bool,
        whole: usize,
    ) -> Result<()> {
        if self.winograd(col.len(), whole) {
            self.batch(x.len())?;
            return winograd::forward(self, g, out, x, w, Some(b), col, relu, first);
        }
        self.forward(g, out, x, w, b, col, relu)
    }

    /// Samples a part of [`Convolution::forward_part`] should hold, for a batch of `whole`:
    /// those whose tiles make one chunk of Winograd's path, else 1.
    pub fn part_len(&self, col_len: usize, whole: usize) -> usize {
        if self.winograd(col_len, whole) {
            winograd::chunk_images(self)
        } else {
            1
        }
    }

    /// Whether the forward pass of `batch` samples goes through Winograd's F(2×2, 3×3) with
    /// `col_len` elements of scratch: for a batch of [`WINOGRAD_MIN_BATCH`] or more (the
    /// filters' transform, made once a batch, does not pay for fewer).
    fn winograd(&self, col_len: usize, batch: usize) -> bool {
        winograd::fits(self)
            && col_len >= winograd::scratch_len(self)
            && batch >= WINOGRAD_MIN_BATCH
    }

    /// [`Convolution::forward`] through im2col, for shapes already checked.
    #[allow(clippy::too_many_arguments)]
    fn forward_im2col<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        wm: MatRef<'_, T>,
        b: &[T],
        col: &mut [T],
        relu: bool,
    ) -> Result<()> {
        let (k, p, fnum) = (self.patch_len(), self.output_dims().plane(), self.filters);
        let col = col_prefix(col, k * p)?;
        for (xn, on) in x
            .chunks_exact(self.input.len())
            .zip(out.chunks_exact_mut(fnum * p))
        {
            im2col(self, col, xn);
            let cm = MatRef::row_major(col, k, p)?;
            g.gemm(T::ONE, wm, cm, T::ZERO, MatMut::row_major(on, fnum, p)?)?;
            // The bias (and the ReLU) in one pass over the sample's output, still in cache.
            add_bias(on, b, p, relu);
        }
        Ok(())
    }

    /// Rows of padded input one pass of the implicit path reads: `H + 2·pad` rows of
    /// `Wd + 2·pad` (0 when there is no padding: it reads `x` itself).
    const fn padded_len(&self) -> usize {
        if self.pad == 0 {
            return 0;
        }
        let d = &self.input;
        d.channels
            .saturating_mul(d.height + 2 * self.pad)
            .saturating_mul(d.width + 2 * self.pad)
    }

    /// Output rows per block of the implicit path, when it runs (`None`: im2col).
    ///
    /// With stride 1, row `(c, i, j)` of `col` is a contiguous run of the padded input,
    /// `xpad[c][i..][j..]`, if each output row is computed `Wd + 2·pad` wide: the last
    /// `FW − 1` columns of each row are then junk, read past the row's end, and dropped when
    /// the block is stored. The product reads the patches in place, through one pointer per
    /// row; no `col` is written. `room`: elements of `col` it may use for the padded input and
    /// a block's output (the output rows are cut into blocks that fit).
    ///
    /// It runs where it is cheaper by a cost model fitted to per-layer timings of the book's
    /// seven convolutions (`implicit_and_im2col_timed` in the tests, 2026-12-07), in 1/32 cycle: im2col
    /// costs about 10 per patch value (`C·FH·FW × OH·OW` short copies); the implicit path
    /// costs about 6 per output value (the copy out of the block) and 1 per multiply-add
    /// of the junk columns (`FN·C·FH·FW` per junk column). DeepConvNet's conv2–conv4 run
    /// implicit (1.1–1.7× faster); its first layer (one channel: few patch values per
    /// output), its 8 × 8 layers (junk is a fifth of the columns) and SimpleConvNet's layer
    /// run im2col.
    fn implicit_rows(&self, room: usize) -> Option<usize> {
        let rows = self.implicit_fit(room)?;
        let (oh, ow) = self.out_hw();
        let wp = self.input.width + 2 * self.pad;
        // Each block's rows but its last carry wp − ow junk columns.
        let junk = (oh - oh.div_ceil(rows)) * (wp - ow);
        let (k, p, fnum) = (self.patch_len(), oh * ow, self.filters);
        let im2col = 10 * k * p;
        let implicit = 6 * fnum * p + fnum * k * junk;
        (implicit < im2col).then_some(rows)
    }

    /// Output rows per block if the implicit path can run in `room` elements of `col`
    /// (stride 1, the row index fits the stack), cost aside: the fewest blocks that fit,
    /// their rows evened out.
    fn implicit_fit(&self, room: usize) -> Option<usize> {
        if cfg!(target_os = "none") || self.stride != 1 || self.patch_len() > IMPLICIT_MAX_K {
            return None;
        }
        let (oh, ow) = self.out_hw();
        let wp = self.input.width + 2 * self.pad;
        let per_filter = room.checked_sub(self.padded_len())? / self.filters;
        // A block of r rows is (r − 1)·wp + ow columns wide (its last row without junk).
        let most = per_filter.checked_sub(ow)? / wp + 1;
        let blocks = oh.div_ceil(most.min(oh));
        Some(oh.div_ceil(blocks))
    }

    /// [`Convolution::forward`] without im2col (stride 1; see
    /// [`Convolution::implicit_rows`]): per sample, the padded input (when there is padding)
    /// at the start of `col`, then each block of `rows` output rows as one product whose B
    /// rows are runs of that input, into the rest of `col`; then the block's valid columns,
    /// plus the bias (and the ReLU), stored into `out`.
    #[allow(clippy::too_many_arguments)]
    fn forward_implicit<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        out: &mut [T],
        x: &[T],
        wm: MatRef<'_, T>,
        b: Option<&[T]>,
        col: &mut [T],
        relu: bool,
        rows: usize,
    ) -> Result<()> {
        let (oh, ow) = self.out_hw();
        let (fnum, p, wp) = (self.filters, oh * ow, self.input.width + 2 * self.pad);
        let mut idx = [0usize; IMPLICIT_MAX_K];
        let idx = self.patch_rows(&mut idx);
        let (xpad, stage) = col.split_at_mut(self.padded_len());
        for (xn, on) in x
            .chunks_exact(self.input.len())
            .zip(out.chunks_exact_mut(fnum * p))
        {
            let src = self.padded(xpad, xn);
            for (oy, r, n) in self.row_blocks(rows) {
                let bm = MatRef::gather_rows(&src[oy * wp..], idx, n, 1)?;
                let cm = MatMut::row_major(&mut stage[..fnum * n], fnum, n)?;
                g.gemm(T::ONE, wm, bm, T::ZERO, cm)?;
                unstage(
                    &mut on[oy * ow..],
                    &stage[..fnum * n],
                    b,
                    (p, n),
                    (r, ow, wp),
                    relu,
                );
            }
        }
        Ok(())
    }

    /// The blocks of `rows` output rows the implicit path computes: `(oy, r, n)`, the first
    /// row, the rows, and the columns (`(r − 1)·(Wd + 2·pad) + OW`: the last row without its
    /// junk).
    fn row_blocks(&self, rows: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let (oh, ow) = self.out_hw();
        let wp = self.input.width + 2 * self.pad;
        (0..oh).step_by(rows.max(1)).map(move |oy| {
            let r = rows.min(oh - oy);
            (oy, r, (r - 1) * wp + ow)
        })
    }

    /// Where each row `(ch, i, j)` of the patches starts in the padded input: `xpad[ch][i][j]`
    /// (the first [`Convolution::patch_len`] entries of `idx`, at most [`IMPLICIT_MAX_K`]).
    fn patch_rows<'i>(&self, idx: &'i mut [usize; IMPLICIT_MAX_K]) -> &'i [usize] {
        let (hp, wp) = (
            self.input.height + 2 * self.pad,
            self.input.width + 2 * self.pad,
        );
        let idx = &mut idx[..self.patch_len().min(IMPLICIT_MAX_K)];
        let mut at = idx.iter_mut();
        for ch in 0..self.input.channels {
            for i in 0..self.kernel_h {
                for j in 0..self.kernel_w {
                    if let Some(v) = at.next() {
                        *v = (ch * hp + i) * wp + j;
                    }
                }
            }
        }
        idx
    }

    /// One sample `xn` padded into `xpad` ([`Convolution::padded_len`] values), or `xn`
    /// itself when there is no padding: each plane's top and bottom rows zero, each row
    /// between them its zeros, the input row, its zeros (short rows, 8–28 values here,
    /// copied without a call each).
    fn padded<'a, T: Float>(&self, xpad: &'a mut [T], xn: &'a [T]) -> &'a [T] {
        if self.pad == 0 {
            return xn;
        }
        pad_copy(self, xpad, xn);
        xpad
    }

    /// `dW = Σ_n dout[n] · col[n]ᵀ` without im2col (stride 1, see
    /// [`Convolution::implicit_rows`]): per sample and block of `rows` output rows, the
    /// block's `dout` laid out `Wd + 2·pad` wide (its junk columns zero) in `col` after the
    /// padded input, times the patch rows read in place (columns of `colᵀ` picked through the
    /// row index), summed into `dW`.
    #[allow(clippy::too_many_arguments)]
    fn dw_implicit<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dw: &mut [T],
        dout: &[T],
        x: &[T],
        col: &mut [T],
        rows: usize,
    ) -> Result<()> {
        let (oh, ow) = self.out_hw();
        let (fnum, p, k) = (self.filters, oh * ow, self.patch_len());
        let wp = self.input.width + 2 * self.pad;
        let mut idx = [0usize; IMPLICIT_MAX_K];
        let idx = self.patch_rows(&mut idx);
        let (xpad, stage) = col.split_at_mut(self.padded_len());
        let mut beta = T::ZERO;
        for (xn, dn) in x
            .chunks_exact(self.input.len())
            .zip(dout.chunks_exact(fnum * p))
        {
            let src = self.padded(xpad, xn);
            for (oy, r, n) in self.row_blocks(rows) {
                let st = &mut stage[..fnum * n];
                for (srow, drow) in st.chunks_exact_mut(n).zip(dn.chunks_exact(p)) {
                    for y in 0..r {
                        let dst = &mut srow[y * wp..];
                        map_short(&mut dst[..ow], &drow[(oy + y) * ow..][..ow], |v| v);
                        if y + 1 < r {
                            zero_short(&mut dst[ow..wp]);
                        }
                    }
                }
                let am = MatRef::row_major(st, fnum, n)?;
                let bm = MatRef::gather_rows(&src[oy * wp..], idx, n, 1)?.t();
                g.gemm(T::ONE, am, bm, beta, MatMut::row_major(dw, fnum, k)?)?;
                beta = T::ONE;
            }
        }
        Ok(())
    }

    /// Differentiates `out[n] = W · col[n] + b`: `dW = Σ_n dout[n] · col[n]ᵀ`,
    /// `db = Σ_n Σ_positions dout[n]`, and (unless `dx` is `None`, as for a first layer)
    /// `dcol = Wᵀ · dout[n]` folded back onto the input's shape (`col2im`) as `dx[n]`. `col`
    /// is scratch as in the forward pass (at least [`Convolution::col_len`]); each sample's patches are
    /// made again from `x` here.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        mut dx: Option<&mut [T]>,
        dw: &mut [T],
        db: &mut [T],
        dout: &[T],
        x: &[T],
        w: &[T],
        col: &mut [T],
    ) -> Result<()> {
        let batch = self.batch(x.len())?;
        let (k, p) = (self.patch_len(), self.output_dims().plane());
        let fnum = self.filters;
        check_len("dout", batch * fnum * p, dout.len())?;
        check_len("W", fnum * k, w.len())?;
        check_len("dW", fnum * k, dw.len())?;
        check_len("db", fnum, db.len())?;
        col_prefix(col, k * p)?;
        if let Some(dx) = dx.as_deref() {
            check_len("dx", x.len(), dx.len())?;
        }
        db.fill(T::ZERO);
        let n_in = self.input.len();
        // dx as the forward pass of the transposed convolution, where that pays: through
        // Winograd's F(2×2, 3×3), or without patches (see `implicit_rows`); the turned
        // filters in dW's memory (dW is summed after), then every sample's dx at once.
        let tc = dx.as_ref().and(self.transposed());
        let winograd = tc.filter(|tc| tc.winograd(col.len(), batch));
        let transposed = match tc {
            Some(tc) if winograd.is_none() => tc
                .implicit_rows(col.len().min(k * p))
                .map(|rows| (tc, rows)),
            _ => None,
        };
        if let Some(dx) = dx.as_deref_mut() {
            if let Some(tc) = winograd {
                let turned = self.turned(w, dw);
                winograd::forward(&tc, g, dx, dout, turned, None, col, false, true)?;
            } else if let Some((tc, rows)) = transposed {
                let turned = self.turned(w, dw);
                let wm = MatRef::row_major(turned, self.input.channels, tc.patch_len())?;
                tc.forward_implicit(g, dx, dout, wm, None, col, false, rows)?;
            }
        }
        for dn in dout.chunks_exact(fnum * p) {
            for (s, row) in db.iter_mut().zip(dn.chunks_exact(p)) {
                *s += row_sum(row);
            }
        }
        // dW through Winograd's F(3×3, 2×2) where that runs, …
        let winograd_dw = self.winograd(col.len(), batch);
        if winograd_dw {
            winograd::weight_gradient(self, g, dw, dout, x, col)?;
        }
        let col = col_prefix(col, k * p)?;
        // … else without patches where that pays (as the forward pass), …
        let implicit = self.dw_rows(col.len()).filter(|_| !winograd_dw);
        if let Some(rows) = implicit {
            self.dw_implicit(g, dw, dout, x, col, rows)?;
        }
        // … else through im2col, with dx through the patches' gradient if it is still to do.
        let dx = dx.filter(|_| transposed.is_none() && winograd.is_none());
        let patches_dw = implicit.is_none() && !winograd_dw;
        if !patches_dw && dx.is_none() {
            return Ok(());
        }
        // dWᵀ (patch × filters) is summed in dW's own memory, row-major (the gemm's stores
        // then whole vectors), and turned into dW through `col` at the end.
        let mut dx = dx;
        for (n, (xn, dn)) in x
            .chunks_exact(n_in)
            .zip(dout.chunks_exact(fnum * p))
            .enumerate()
        {
            if patches_dw {
                self.dw_sample(g, dw, dn, xn, col, n == 0)?;
            }
            if let Some(dx) = dx.as_deref_mut() {
                let dm = MatRef::row_major(dn, fnum, p)?;
                let wt = MatRef::row_major(w, fnum, k)?.t();
                g.gemm(T::ONE, wt, dm, T::ZERO, MatMut::row_major(col, k, p)?)?;
                col2im_scratch(self, &mut dx[n * n_in..(n + 1) * n_in], col);
            }
        }
        if patches_dw {
            self.dw_finish(dw, col);
        }
        Ok(())
    }

    /// [`Convolution::backward`] of a first layer (no `dx`) whose `dout` is made a sample at a
    /// time, used while it is in cache instead of written for the whole batch and read back:
    /// `make(n, dn)` writes sample `n`'s `dout` (`FN × OH × OW`) into `dn` (at least that
    /// long). For the shapes [`Convolution::streams_dw`] accepts (dW through the patches); the
    /// same sums in the same order as `backward`, so the same bits.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_streamed<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dw: &mut [T],
        db: &mut [T],
        x: &[T],
        col: &mut [T],
        dn: &mut [T],
        mut make: impl FnMut(usize, &mut [T]) -> Result<()>,
    ) -> Result<()> {
        let batch = self.batch(x.len())?;
        let (k, p) = (self.patch_len(), self.output_dims().plane());
        let fnum = self.filters;
        check_len("dW", fnum * k, dw.len())?;
        check_len("db", fnum, db.len())?;
        if !self.streams_dw(col.len()) {
            return Err(Error::Unsupported {
                what: "a streamed Convolution backward whose dW does not go through patches",
            });
        }
        let col = col_prefix(col, k * p)?;
        let dn_len = dn.len();
        let dn = dn.get_mut(..fnum * p).ok_or(Error::ShapeMismatch {
            what: "Convolution dout scratch (one sample's output)",
            expected: fnum * p,
            actual: dn_len,
        })?;
        db.fill(T::ZERO);
        for (n, xn) in x.chunks_exact(self.input.len()).take(batch).enumerate() {
            make(n, dn)?;
            for (s, row) in db.iter_mut().zip(dn.chunks_exact(p)) {
                *s += row_sum(row);
            }
            self.dw_sample(g, dw, dn, xn, col, n == 0)?;
        }
        self.dw_finish(dw, col);
        Ok(())
    }

    /// Whether [`Convolution::backward_streamed`] takes this layer with a scratch `col` of
    /// `col_len` values: its dW goes through the patches (not the in-place path, nor
    /// Winograd's, which `backward` takes for a batch of 4 or more).
    pub fn streams_dw(&self, col_len: usize) -> bool {
        self.dw_rows(col_len).is_none() && !self.winograd(col_len, WINOGRAD_MIN_BATCH)
    }

    /// How `backward` makes dW with a scratch `col` of `col_len` values: in place, `Some`
    /// rows a block ([`Convolution::implicit_rows`] on this layer's own length of `col`), or
    /// `None`, through the patches.
    fn dw_rows(&self, col_len: usize) -> Option<usize> {
        let own = self.patch_len() * self.output_dims().plane();
        self.implicit_rows(col_len.min(own))
    }

    /// One sample's share of dW through its patches: dWᵀ (patch × filters, row-major in dW's
    /// own memory where [`Convolution::dw_finish`] turns it round) `= col · dnᵀ`, added to what
    /// is there unless `first`.
    fn dw_sample<T: Float>(
        &self,
        g: &mut Context<'_, T>,
        dw: &mut [T],
        dn: &[T],
        xn: &[T],
        col: &mut [T],
        first: bool,
    ) -> Result<()> {
        let (k, p, fnum) = (self.patch_len(), self.output_dims().plane(), self.filters);
        im2col(self, col, xn);
        let beta = if first { T::ZERO } else { T::ONE };
        // As dWᵀ = col · doutᵀ: the operand the gemm must pack is then doutᵀ (positions ×
        // filters), not colᵀ (positions × patch, far larger). Element by element into dW's
        // transposed view when `col` cannot hold dWᵀ for the turn at the end.
        let cm = MatRef::row_major(col, k, p)?;
        let dm = MatRef::row_major(dn, fnum, p)?;
        let dwt = if p >= fnum {
            MatMut::row_major(dw, k, fnum)?
        } else {
            MatMut::row_major(dw, fnum, k)?.t()
        };
        g.gemm(T::ONE, cm, dm.t(), beta, dwt)
    }

    /// dWᵀ as [`Convolution::dw_sample`] left it turned into dW through `col`.
    fn dw_finish<T: Float>(&self, dw: &mut [T], col: &mut [T]) {
        let (k, p, fnum) = (self.patch_len(), self.output_dims().plane(), self.filters);
        if p >= fnum {
            let t = &mut col[..k * fnum];
            t.copy_from_slice(dw);
            for (kk, row) in t.chunks_exact(fnum).enumerate() {
                for (f, &v) in row.iter().enumerate() {
                    dw[f * k + kk] = v;
                }
            }
        }
    }

    /// The convolution whose forward pass gives this one's input gradient, for stride 1 and
    /// square filters no wider than the padding plus one: `dout` (`FN × OH × OW`) convolved
    /// with the filters turned round (`W'[c][f][i][j] = W[f][c][FH−1−i][FW−1−j]`, `C` filters
    /// of `FN` channels) with padding `FH − 1 − pad` is `dx` (`C × H × Wd`).
    const fn transposed(&self) -> Option<Convolution> {
        if self.stride != 1 || self.kernel_h != self.kernel_w || self.pad >= self.kernel_h {
            return None;
        }
        let (oh, ow) = self.out_hw();
        Some(Convolution {
            input: Dims::new(self.filters, oh, ow),
            filters: self.input.channels,
            kernel_h: self.kernel_h,
            kernel_w: self.kernel_w,
            stride: 1,
            pad: self.kernel_h - 1 - self.pad,
        })
    }

    /// The filters turned round for [`Convolution::transposed`]
    /// (`W'[c][f][i][j] = W[f][c][FH−1−i][FW−1−j]`), written to `scratch` (at least
    /// [`Convolution::weight_len`] values: dW's memory, which is summed after).
    fn turned<'s, T: Float>(&self, w: &[T], scratch: &'s mut [T]) -> &'s [T] {
        let (c, fnum, kh, kw) = (
            self.input.channels,
            self.filters,
            self.kernel_h,
            self.kernel_w,
        );
        let turned = &mut scratch[..self.weight_len()];
        for (cf, dst) in turned.chunks_exact_mut(kh * kw).enumerate() {
            let (ch, f) = (cf / fnum, cf % fnum);
            let src = &w[(f * c + ch) * kh * kw..][..kh * kw];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
        turned
    }

    /// The input position `(row or column) = o·stride + kk − pad` of output position `o` and
    /// filter offset `kk`, if inside `0..size`.
    #[inline]
    fn at(&self, o: usize, kk: usize, size: usize) -> Option<usize> {
        (o * self.stride + kk)
            .checked_sub(self.pad)
            .filter(|&v| v < size)
    }

    /// The naive twin of [`Convolution::forward`] (no ReLU): the direct sum, no `col`, no
    /// gemm.
    pub fn forward_naive<T: Float>(&self, out: &mut [T], x: &[T], w: &[T], b: &[T]) -> Result<()> {
        let batch = self.batch(x.len())?;
        let Dims {
            channels: c,
            height: h,
            width: wd,
        } = self.input;
        let od = self.output_dims();
        let (fnum, kh, kw) = (self.filters, self.kernel_h, self.kernel_w);
        check_len("out", batch * od.len(), out.len())?;
        check_len("W", self.weight_len(), w.len())?;
        check_len("b", fnum, b.len())?;
        for n in 0..batch {
            for f in 0..fnum {
                for oy in 0..od.height {
                    for ox in 0..od.width {
                        let mut s = b[f];
                        for ch in 0..c {
                            for i in 0..kh {
                                let Some(y) = self.at(oy, i, h) else { continue };
                                for j in 0..kw {
                                    let Some(xx) = self.at(ox, j, wd) else {
                                        continue;
                                    };
                                    s += w[((f * c + ch) * kh + i) * kw + j]
                                        * x[((n * c + ch) * h + y) * wd + xx];
                                }
                            }
                        }
                        out[((n * fnum + f) * od.height + oy) * od.width + ox] = s;
                    }
                }
            }
        }
        Ok(())
    }

    /// The naive twin of [`Convolution::backward`]: each output's gradient spread back over
    /// the weights and inputs it was made of.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_naive<T: Float>(
        &self,
        mut dx: Option<&mut [T]>,
        dw: &mut [T],
        db: &mut [T],
        dout: &[T],
        x: &[T],
        w: &[T],
    ) -> Result<()> {
        let batch = self.batch(x.len())?;
        let Dims {
            channels: c,
            height: h,
            width: wd,
        } = self.input;
        let od = self.output_dims();
        let (fnum, kh, kw) = (self.filters, self.kernel_h, self.kernel_w);
        check_len("dout", batch * od.len(), dout.len())?;
        check_len("W", self.weight_len(), w.len())?;
        check_len("dW", self.weight_len(), dw.len())?;
        check_len("db", fnum, db.len())?;
        if let Some(dx) = dx.as_deref_mut() {
            check_len("dx", x.len(), dx.len())?;
            dx.fill(T::ZERO);
        }
        dw.fill(T::ZERO);
        db.fill(T::ZERO);
        for n in 0..batch {
            for f in 0..fnum {
                for oy in 0..od.height {
                    for ox in 0..od.width {
                        let d = dout[((n * fnum + f) * od.height + oy) * od.width + ox];
                        db[f] += d;
                        for ch in 0..c {
                            for i in 0..kh {
                                let Some(y) = self.at(oy, i, h) else { continue };
                                for j in 0..kw {
                                    let Some(xx) = self.at(ox, j, wd) else {
                                        continue;
                                    };
                                    let wi = ((f * c + ch) * kh + i) * kw + j;
                                    let xi = ((n * c + ch) * h + y) * wd + xx;
                                    dw[wi] += d * x[xi];
                                    if let Some(dx) = dx.as_deref_mut() {
                                        dx[xi] += d * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Least batch the forward pass takes through Winograd's F(2×2, 3×3).
const WINOGRAD_MIN_BATCH: usize = 4;

/// Most rows of patches (`C·FH·FW`) the implicit path takes: its row index is on the stack.
const IMPLICIT_MAX_K: usize = 1024;

avx512_build!(
    /// A block of the implicit path stored: for each filter `f` (row of `stage`, `n` wide) and
    /// each of the block's `r` output rows,
    /// `out[f·p + row·ow ..][..ow] = stage[f·n + row·wp ..][..ow] + b[f]` (no bias if `b` is
    /// `None`; then `max(·, 0)` if `relu`); `out` starts at the block's first output row.
    fn unstage<T: Float>(
        out: &mut [T],
        stage: &[T],
        b: Option<&[T]>,
        pn: (usize, usize),
        rows: (usize, usize, usize),
        relu: bool,
    ) => unstage_body
);

/// [`unstage`]'s loop, inlined into each build of it.
#[inline(always)]
fn unstage_body<T: Float>(
    out: &mut [T],
    stage: &[T],
    b: Option<&[T]>,
    (p, n): (usize, usize),
    (r, ow, wp): (usize, usize, usize),
    relu: bool,
) {
    for (f, srow) in stage.chunks_exact(n).enumerate() {
        // The valid columns first (row by row), then the bias over the filter's rows of the
        // block as one run, which the compiler vectorises whole.
        let block = &mut out[f * p..][..r * ow];
        for (y, dst) in block.chunks_exact_mut(ow).enumerate() {
            map_short(dst, &srow[y * wp..][..ow], |v| v);
        }
        match b {
            Some(b) => bias_row(block, b[f], relu),
            None if relu => bias_row(block, T::ZERO, relu),
            None => {}
        }
    }
}

avx512_build!(
    /// [`Convolution::padded`]'s copy (`pad > 0`), compiled for AVX-512 where the CPU has it.
    fn pad_copy<T: Float>(conv: &Convolution, xpad: &mut [T], xn: &[T]) => pad_body
);

/// [`Convolution::padded`]'s copy (`pad > 0`), inlined into each build of it.
#[inline(always)]
fn pad_body<T: Float>(conv: &Convolution, xpad: &mut [T], xn: &[T]) {
    let Dims {
        height: h,
        width: wd,
        ..
    } = conv.input;
    let pad = conv.pad;
    let (hp, wp) = (h + 2 * pad, wd + 2 * pad);
    for (xc, pc) in xn.chunks_exact(h * wd).zip(xpad.chunks_exact_mut(hp * wp)) {
        // Zeros before the first row, between two rows (the right padding of one and the
        // left of the next), after the last.
        let first = pad * wp + pad;
        pc[..first].fill(T::ZERO);
        for (y, src) in xc.chunks_exact(wd).enumerate() {
            let at = first + y * wp;
            map_short(&mut pc[at..at + wd], src, |v| v);
            if y + 1 < h {
                zero_short(&mut pc[at + wd..at + wp]);
            }
        }
        pc[first + (h - 1) * wp + wd..].fill(T::ZERO);
    }
}

/// Zeros a few values (padding beside a row) without a `memset` call for 0–4.
#[inline(always)]
fn zero_short<T: Float>(dst: &mut [T]) {
    match dst {
        [] => {}
        [a] => *a = T::ZERO,
        [a, b] => (*a, *b) = (T::ZERO, T::ZERO),
        [a, b, c] => (*a, *b, *c) = (T::ZERO, T::ZERO, T::ZERO),
        [a, b, c, d] => (*a, *b, *c, *d) = (T::ZERO, T::ZERO, T::ZERO, T::ZERO),
        _ => dst.fill(T::ZERO),
    }
}

/// `dst[i] = f(src[i])` for a short row, in pieces of a constant 16 (or 8) values the
/// compiler turns into whole vectors, the last piece overlapping the one before it (`f` is
/// applied to some values twice, with the same result) instead of a scalar tail.
#[inline(always)]
fn map_short<T: Copy>(dst: &mut [T], src: &[T], f: impl Fn(T) -> T) {
    #[inline(always)]
    fn piece<T: Copy, const W: usize>(dst: &mut [T], src: &[T], f: &impl Fn(T) -> T) {
        let (d, s): (&mut [T; W], &[T; W]) = match (dst.try_into(), src.try_into()) {
            (Ok(d), Ok(s)) => (d, s),
            _ => return,
        };
        for (d, &v) in d.iter_mut().zip(s) {
            *d = f(v);
        }
    }
    #[inline(always)]
    fn pieces<T: Copy, const W: usize>(dst: &mut [T], src: &[T], f: &impl Fn(T) -> T) {
        let n = dst.len().min(src.len());
        let mut i = 0;
        while i + W <= n {
            piece::<T, W>(&mut dst[i..i + W], &src[i..i + W], f);
            i += W;
        }
        if i < n {
            piece::<T, W>(&mut dst[n - W..n], &src[n - W..n], f);
        }
    }
    let n = dst.len().min(src.len());
    if n >= 16 {
        pieces::<T, 16>(dst, src, &f);
    } else if n >= 8 {
        pieces::<T, 8>(dst, src, &f);
    } else {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = f(v);
        }
    }
}

avx512_build!(
    /// `out[f] += b[f]` for each filter's plane of `p` values (then `max(·, 0)` if `relu`).
    fn add_bias<T: Float>(out: &mut [T], b: &[T], p: usize, relu: bool) => add_bias_body
);

/// [`add_bias`]'s loop, inlined into each build of it.
#[inline(always)]
fn add_bias_body<T: Float>(out: &mut [T], b: &[T], p: usize, relu: bool) {
    for (row, &bf) in out.chunks_exact_mut(p).zip(b) {
        bias_row(row, bf, relu);
    }
}

/// `row += bf` (then `max(·, 0)` if `relu`).
#[inline(always)]
fn bias_row<T: Float>(row: &mut [T], bf: T, relu: bool) {
    if relu {
        for v in row.iter_mut() {
            let y = *v + bf;
            *v = if y <= T::ZERO { T::ZERO } else { y };
        }
    } else {
        for v in row.iter_mut() {
            *v += bf;
        }
    }
}

/// `Σ row`, in 16 interleaved partial sums (element `i` into sum `i mod 16`) then added
/// pairwise: 16 independent chains of additions the compiler vectorises, where one running
/// sum waits for each addition's latency. The same order on every target, so the same bits.
fn row_sum<T: Float>(row: &[T]) -> T {
    let mut acc = [T::ZERO; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += v;
    }
    let mut n = acc.len();
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] += acc[i + n];
        }
    }
    acc[0]
}

/// The first `len` elements of `col`, which must hold at least that many.
fn col_prefix<T>(col: &mut [T], len: usize) -> Result<&mut [T]> {
    let have = col.len();
    col.get_mut(..len).ok_or(Error::BufferLength {
        buffer: "col",
        expected: len,
        actual: have,
    })
}

/// For filter offset `kk` (a row or column of the filter), the output positions `lo..hi`
/// whose input position `o·stride + kk − pad` falls inside `0..size`.
#[inline]
fn valid(conv: &Convolution, kk: usize, size: usize, outs: usize) -> (usize, usize) {
    let s = conv.stride;
    // o·s + kk ≥ pad  ⇔  o ≥ ⌈(pad − kk) / s⌉;  o·s + kk < size + pad  ⇔  o < ⌈(size + pad − kk) / s⌉.
    let lo = conv.pad.saturating_sub(kk).div_ceil(s);
    let hi = (size + conv.pad).saturating_sub(kk).div_ceil(s);
    (lo.min(outs), hi.min(outs).max(lo.min(outs)))
}

avx512_build!(
    /// One sample's patches:
    /// `col[(c·FH + i)·FW + j][oy·OW + ox] = x[c][oy·s + i − pad][ox·s + j − pad]`, zero
    /// where that falls in the padding (the book's `im2col`, transposed).
    pub fn im2col<T: Float>(conv: &Convolution, col: &mut [T], x: &[T]) => im2col_body
);

/// [`im2col`]'s loops, inlined into each build of it. The padding's zeros beside each row
/// (one or two values) are stored without a `memset` call each.
#[inline(always)]
fn im2col_body<T: Float>(conv: &Convolution, col: &mut [T], x: &[T]) {
    let Dims {
        channels: c,
        height: h,
        width: wd,
    } = conv.input;
    let od = conv.output_dims();
    let (oh, ow, s) = (od.height, od.width, conv.stride);
    let mut rows = col.chunks_exact_mut(oh * ow);
    for xc in x.chunks_exact(h * wd).take(c) {
        for i in 0..conv.kernel_h {
            let (ylo, yhi) = valid(conv, i, h, oh);
            for j in 0..conv.kernel_w {
                let Some(row) = rows.next() else { return };
                let (xlo, xhi) = valid(conv, j, wd, ow);
                if s == 1 && ow == wd && ylo < yhi && xlo < xhi {
                    // "Same" padding: the patch rows of consecutive outputs are consecutive
                    // input rows, so the valid block is one copy (its rows' ends wrap onto
                    // the neighbouring input row), then the padded columns are zeroed.
                    let start = ylo * ow + xlo;
                    let len = (yhi - 1) * ow + xhi - start;
                    let from = (ylo + i - conv.pad) * wd + xlo + j - conv.pad;
                    row[start..start + len].copy_from_slice(&xc[from..from + len]);
                    row[..ylo * ow].fill(T::ZERO);
                    row[yhi * ow..].fill(T::ZERO);
                    for dst in row[ylo * ow..yhi * ow].chunks_exact_mut(ow) {
                        zero_short(&mut dst[..xlo]);
                        zero_short(&mut dst[xhi..]);
                    }
                    continue;
                }
                for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                    if oy < ylo || oy >= yhi {
                        dst.fill(T::ZERO);
                        continue;
                    }
                    let src = &xc[(oy * s + i - conv.pad) * wd..][..wd];
                    zero_short(&mut dst[..xlo]);
                    zero_short(&mut dst[xhi..]);
                    let first = xlo * s + j - conv.pad;
                    if s == 1 {
                        dst[xlo..xhi].copy_from_slice(&src[first..first + (xhi - xlo)]);
                    } else {
                        for (d, v) in dst[xlo..xhi].iter_mut().zip(src[first..].iter().step_by(s)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }
}

/// The patches' gradient folded back onto one sample (the book's `col2im`): `dx` is zeroed,
/// then each element of `col` added to the input position it was copied from.
pub fn col2im<T: Float>(conv: &Convolution, dx: &mut [T], col: &[T]) {
    col2im_body(conv, dx, col)
}

/// [`col2im`]'s loops, inlined into each build of it.
#[inline(always)]
fn col2im_body<T: Float>(conv: &Convolution, dx: &mut [T], col: &[T]) {
    let Dims {
        channels: c,
        height: h,
        width: wd,
    } = conv.input;
    let od = conv.output_dims();
    let (oh, ow, s) = (od.height, od.width, conv.stride);
    dx.fill(T::ZERO);
    let mut rows = col.chunks_exact(oh * ow);
    for dxc in dx.chunks_exact_mut(h * wd).take(c) {
        for i in 0..conv.kernel_h {
            let (ylo, yhi) = valid(conv, i, h, oh);
            for j in 0..conv.kernel_w {
                let Some(row) = rows.next() else { return };
                let (xlo, xhi) = valid(conv, j, wd, ow);
                for oy in ylo..yhi {
                    let src = &row[oy * ow..][..ow];
                    let dst = &mut dxc[(oy * s + i - conv.pad) * wd..][..wd];
                    let first = xlo * s + j - conv.pad;
                    if s == 1 {
                        // Contiguous: a loop the compiler vectorises (`step_by` is not).
                        for (d, v) in dst[first..].iter_mut().zip(&src[xlo..xhi]) {
                            *d += *v;
                        }
                    } else {
                        for (d, v) in dst[first..].iter_mut().step_by(s).zip(&src[xlo..xhi]) {
                            *d += *v;
                        }
                    }
                }
            }
        }
    }
}

avx512_build!(
    /// [`col2im`] where `col` is scratch (backward's patch gradients), compiled for AVX-512
    /// where the CPU has it: for a "same" convolution (stride 1, output as wide as its input),
    /// each patch row's valid block is added as one run, its wrapped columns (outputs whose
    /// input falls in the padding) zeroed first. The sum starts at +0, so adding +0 changes
    /// no bit: the same values as [`col2im`].
    fn col2im_scratch<T: Float>(conv: &Convolution, dx: &mut [T], col: &mut [T]) => col2im_scratch_body
);

/// [`col2im_scratch`]'s loop, inlined into each build of it.
#[inline(always)]
fn col2im_scratch_body<T: Float>(conv: &Convolution, dx: &mut [T], col: &mut [T]) {
    let Dims {
        channels: c,
        height: h,
        width: wd,
    } = conv.input;
    let od = conv.output_dims();
    let (oh, ow) = (od.height, od.width);
    if conv.stride != 1 || ow != wd {
        return col2im_body(conv, dx, col);
    }
    dx.fill(T::ZERO);
    let mut rows = col.chunks_exact_mut(oh * ow);
    for dxc in dx.chunks_exact_mut(h * wd).take(c) {
        for i in 0..conv.kernel_h {
            let (ylo, yhi) = valid(conv, i, h, oh);
            for j in 0..conv.kernel_w {
                let Some(row) = rows.next() else { return };
                let (xlo, xhi) = valid(conv, j, wd, ow);
                if ylo >= yhi || xlo >= xhi {
                    continue;
                }
                // Outputs start..end, row-major, land on consecutive inputs from `from`
                // (as im2col's copy of the same block).
                let (start, end) = (ylo * ow + xlo, (yhi - 1) * ow + xhi);
                for oy in ylo..yhi {
                    let r = &mut row[oy * ow..(oy + 1) * ow];
                    if oy > ylo {
                        zero_short(&mut r[..xlo]);
                    }
                    if oy + 1 < yhi {
                        zero_short(&mut r[xhi..]);
                    }
                }
                let from = (ylo + i - conv.pad) * wd + xlo + j - conv.pad;
                for (d, v) in dxc[from..from + (end - start)]
                    .iter_mut()
                    .zip(&row[start..end])
                {
                    *d += *v;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gemm::Backend;
    use std::vec;
    use std::vec::Vec;

    /// Small integers (−5..=5, from `seed`), so sums are exact in f32 whatever their order
    /// (also for the tests of `winograd.rs`).
    pub(crate) fn ints(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 + seed * 13) % 11) as f32 - 5.0)
            .collect()
    }

    /// A batch of integer inputs, weights and output gradients (from `seed`), and the naive
    /// twin's `dx` and `dW` for them: `[x, w, dout, dx, dw]`.
    fn naive_backward(conv: &Convolution, batch: usize, seed: usize) -> [Vec<f32>; 5] {
        let x = ints(batch * conv.input.len(), seed);
        let w = ints(conv.weight_len(), seed + 1);
        let dout = ints(batch * conv.output_dims().len(), seed + 2);
        let (mut dx, mut dw, mut db) = (
            vec![f32::NAN; x.len()],
            vec![f32::NAN; w.len()],
            vec![f32::NAN; conv.filters],
        );
        conv.backward_naive(Some(&mut dx), &mut dw, &mut db, &dout, &x, &w)
            .unwrap();
        [x, w, dout, dx, dw]
    }

    /// The stride-1 shapes (which the in-place paths take), and a non-square one.
    fn stride1_shapes() -> Vec<Convolution> {
        let mut convs: Vec<Convolution> = shapes().into_iter().filter(|c| c.stride == 1).collect();
        convs.push(
            Convolution::new(Dims::new(2, 6, 9), 3, 2)
                .kernel(2, 3)
                .pad(2),
        );
        convs
    }

    fn shapes() -> Vec<Convolution> {
        vec![
            Convolution::new(Dims::new(1, 6, 6), 2, 3),
            Convolution::new(Dims::new(3, 7, 5), 4, 3).pad(1),
            Convolution::new(Dims::new(2, 9, 8), 3, 3).stride(2).pad(1),
            Convolution::new(Dims::new(2, 8, 9), 2, 2)
                .kernel(2, 3)
                .stride(3)
                .pad(2),
            Convolution::new(Dims::new(1, 5, 5), 1, 5),
            Convolution::new(Dims::new(2, 6, 7), 2, 5).pad(2),
            Convolution::new(Dims::new(2, 4, 4), 3, 1).stride(2),
            // More filters than output positions: dWᵀ does not fit `col`.
            Convolution::new(Dims::new(2, 3, 3), 12, 3),
            // Large enough for the implicit paths (forward, and dx through the transposed
            // convolution).
            Convolution::new(Dims::new(4, 12, 12), 8, 3).pad(1),
        ]
    }

    #[test]
    fn im2col_and_gemm_equal_the_direct_sum() {
        for conv in shapes() {
            let batch = 3;
            let x = ints(batch * conv.input.len(), 1);
            let w = ints(conv.weight_len(), 2);
            let b = ints(conv.filters, 3);
            let n_out = batch * conv.output_dims().len();
            let mut want = vec![f32::NAN; n_out];
            conv.forward_naive(&mut want, &x, &w, &b).unwrap();
            for backend in [Backend::Naive, Backend::Auto] {
                let mut got = vec![f32::NAN; n_out];
                let mut col = vec![f32::NAN; conv.col_len()];
                let mut pack = vec![0.0; crate::gemm::PACK_LEN];
                let mut g = Context::new(backend, &mut pack);
                conv.forward(&mut g, &mut got, &x, &w, &b, &mut col, false)
                    .unwrap();
                assert_eq!(got, want, "{conv:?} {backend:?}");
                conv.forward(&mut g, &mut got, &x, &w, &b, &mut col, true)
                    .unwrap();
                let relu: Vec<f32> = want.iter().map(|&v| v.max(0.0)).collect();
                assert_eq!(got, relu, "{conv:?} {backend:?} relu");
            }
        }
    }

    #[test]
    fn the_implicit_path_equals_the_direct_sum_in_every_block_size() {
        let mut convs = stride1_shapes();
        convs.push(Convolution::new(Dims::new(3, 5, 4), 5, 1));
        for conv in convs {
            let batch = 2;
            let x = ints(batch * conv.input.len(), 7);
            let w = ints(conv.weight_len(), 8);
            let b = ints(conv.filters, 9);
            let n_out = batch * conv.output_dims().len();
            let mut want = vec![f32::NAN; n_out];
            conv.forward_naive(&mut want, &x, &w, &b).unwrap();
            let relu: Vec<f32> = want.iter().map(|&v| v.max(0.0)).collect();
            let (oh, wp) = (conv.output_dims().height, conv.input.width + 2 * conv.pad);
            let col_len = conv.padded_len() + conv.filters * oh * wp;
            let wm = MatRef::row_major(&w, conv.filters, conv.patch_len()).unwrap();
            for backend in [Backend::Naive, Backend::Auto] {
                for rows in 1..=oh {
                    let mut got = vec![f32::NAN; n_out];
                    let mut col = vec![f32::NAN; col_len];
                    let mut pack = vec![0.0; crate::gemm::PACK_LEN];
                    let mut g = Context::new(backend, &mut pack);
                    conv.forward_implicit(
                        &mut g,
                        &mut got,
                        &x,
                        wm,
                        Some(&b),
                        &mut col,
                        false,
                        rows,
                    )
                    .unwrap();
                    assert_eq!(got, want, "{conv:?} {backend:?} {rows} rows");
                    conv.forward_implicit(&mut g, &mut got, &x, wm, Some(&b), &mut col, true, rows)
                        .unwrap();
                    assert_eq!(got, relu, "{conv:?} {backend:?} {rows} rows, relu");
                }
            }
        }
    }

    #[test]
    fn the_implicit_path_runs_where_the_cost_model_says() {
        let d = |c, h| Dims::new(c, h, h);
        let deep = [
            Convolution::new(d(1, 28), 16, 3).pad(1),
            Convolution::new(d(16, 28), 16, 3).pad(1),
            Convolution::new(d(16, 14), 32, 3).pad(1),
            Convolution::new(d(32, 14), 32, 3).pad(2),
            Convolution::new(d(32, 8), 64, 3).pad(1),
            Convolution::new(d(64, 8), 64, 3).pad(1),
        ];
        let room = deep.iter().map(|c| c.col_len()).max().unwrap();
        let picked: Vec<bool> = deep
            .iter()
            .map(|c| c.implicit_rows(room).is_some())
            .collect();
        assert_eq!(picked, [false, true, true, true, false, false]);
        // Whole outputs in one block when the room allows.
        assert_eq!(deep[1].implicit_rows(room), Some(28));
        // A smaller room cuts the rows into blocks that fit it.
        // 300 columns per filter: at most 10 rows of 30 (the last without its junk), so
        // three blocks, of 10, 10 and 8 rows.
        let small = deep[1].padded_len() + 16 * 300;
        assert_eq!(deep[1].implicit_rows(small), Some(10));
        assert_eq!(deep[1].implicit_rows(deep[1].padded_len() + 16 * 27), None);
        // dx through the transposed convolution: conv1–conv5 (a first layer's dx is never
        // asked for).
        let picked: Vec<bool> = deep
            .iter()
            .map(|c| c.transposed().unwrap().implicit_rows(room).is_some())
            .collect();
        assert_eq!(picked, [true, true, true, true, true, false]);
        let big = shapes()[8];
        assert!(big.implicit_rows(big.col_len()).is_some());
        assert!(
            big.transposed()
                .unwrap()
                .implicit_rows(big.col_len())
                .is_some()
        );
        assert_eq!(
            Convolution::new(d(1, 28), 30, 5).implicit_rows(1 << 20),
            None
        );
        assert_eq!(deep[2].stride(2).implicit_rows(room), None);
    }

    #[test]
    fn backward_equals_the_naive_twin() {
        for conv in shapes() {
            let batch = 2;
            let x = ints(batch * conv.input.len(), 4);
            let w = ints(conv.weight_len(), 5);
            let dout = ints(batch * conv.output_dims().len(), 6);
            let (mut dx0, mut dw0, mut db0) = (
                vec![f32::NAN; x.len()],
                vec![f32::NAN; w.len()],
                vec![f32::NAN; conv.filters],
            );
            conv.backward_naive(Some(&mut dx0), &mut dw0, &mut db0, &dout, &x, &w)
                .unwrap();
            for backend in [Backend::Naive, Backend::Auto] {
                let (mut dx, mut dw, mut db) = (
                    vec![f32::NAN; x.len()],
                    vec![f32::NAN; w.len()],
                    vec![f32::NAN; conv.filters],
                );
                let mut col = vec![f32::NAN; conv.col_len()];
                let mut pack = vec![0.0; crate::gemm::PACK_LEN];
                let mut g = Context::new(backend, &mut pack);
                conv.backward(
                    &mut g,
                    Some(&mut dx),
                    &mut dw,
                    &mut db,
                    &dout,
                    &x,
                    &w,
                    &mut col,
                )
                .unwrap();
                assert_eq!((&dx, &dw, &db), (&dx0, &dw0, &db0), "{conv:?} {backend:?}");
                let mut dw2 = vec![f32::NAN; w.len()];
                conv.backward(&mut g, None, &mut dw2, &mut db, &dout, &x, &w, &mut col)
                    .unwrap();
                assert_eq!(dw2, dw0);
            }
        }
    }

    #[test]
    fn the_streamed_backward_is_backward_bit_for_bit() {
        // Values whose sums round: the same bits only from the same order.
        let vals = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + seed * 104_729) % 1999) as f32 / 997.0 - 1.0)
                .collect()
        };
        let (mut streamed, mut refused) = (0, 0);
        for conv in shapes() {
            let batch = 3;
            let (x, w) = (
                vals(batch * conv.input.len(), 1),
                vals(conv.weight_len(), 2),
            );
            let dout = vals(batch * conv.output_dims().len(), 3);
            // A `col` longer than this layer's (as a net's, sized for its largest layer).
            let mut col = vec![f32::NAN; 3 * conv.col_len() + 100];
            let mut pack = vec![0.0; crate::gemm::PACK_LEN];
            let mut g = Context::new(Backend::Auto, &mut pack);
            let (mut dw0, mut db0) = (vec![f32::NAN; w.len()], vec![f32::NAN; conv.filters]);
            conv.backward(&mut g, None, &mut dw0, &mut db0, &dout, &x, &w, &mut col)
                .unwrap();
            let (mut dw, mut db) = (vec![f32::NAN; w.len()], vec![f32::NAN; conv.filters]);
            let per = conv.output_dims().len();
            let mut dn = vec![f32::NAN; per + 3];
            let mut made = Vec::new();
            let r =
                conv.backward_streamed(&mut g, &mut dw, &mut db, &x, &mut col, &mut dn, |n, d| {
                    made.push(n);
                    d[..per].copy_from_slice(&dout[n * per..(n + 1) * per]);
                    Ok(())
                });
            if conv.streams_dw(col.len()) {
                r.unwrap();
                assert_eq!(made, [0, 1, 2]);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!((bits(&dw), bits(&db)), (bits(&dw0), bits(&db0)), "{conv:?}");
                streamed += 1;
                // A scratch shorter than a sample's output is refused.
                let e = conv.backward_streamed(
                    &mut g,
                    &mut dw,
                    &mut db,
                    &x,
                    &mut col,
                    &mut dn[..per - 1],
                    |_, _| Ok(()),
                );
                assert!(e.is_err());
            } else {
                assert!(r.is_err() && made.is_empty(), "{conv:?}");
                refused += 1;
            }
        }
        assert!(streamed > 0 && refused > 0, "{streamed} {refused}");
    }

    /// Not a check: times each of the book's seven convolutions (one sample, relu) both ways,
    /// the measurements the cost model of [`Convolution::implicit_rows`] was fitted to, and
    /// through Winograd's F(2×2, 3×3) where it fits (a chunk of samples a call, per sample,
    /// the filters transformed once). Run
    /// with `cargo test --release -p zeronn --lib implicit_and_im2col_timed -- --ignored
    /// --nocapture` (`ONLY=deep2` for one layer).
    #[test]
    #[ignore]
    fn implicit_and_im2col_timed() {
        use std::time::Instant;
        let d = |c, h| Dims::new(c, h, h);
        let convs = [
            ("simple", Convolution::new(d(1, 28), 30, 5)),
            ("deep1", Convolution::new(d(1, 28), 16, 3).pad(1)),
            ("deep2", Convolution::new(d(16, 28), 16, 3).pad(1)),
            ("deep3", Convolution::new(d(16, 14), 32, 3).pad(1)),
            ("deep4", Convolution::new(d(32, 14), 32, 3).pad(2)),
            ("deep5", Convolution::new(d(32, 8), 64, 3).pad(1)),
            ("deep6", Convolution::new(d(64, 8), 64, 3).pad(1)),
        ];
        let colmax = convs.iter().map(|c| c.1.col_len()).max().unwrap();
        let only = std::env::var("ONLY").unwrap_or_default();
        for (name, conv) in convs {
            if !only.is_empty() && only != name {
                continue;
            }
            let x: Vec<f32> = (0..conv.input.len())
                .map(|i| (i % 7) as f32 * 0.1)
                .collect();
            let w: Vec<f32> = (0..conv.weight_len())
                .map(|i| (i % 5) as f32 * 0.1 - 0.2)
                .collect();
            let b = vec![0.1f32; conv.filters];
            let mut out = vec![0f32; conv.output_dims().len()];
            let mut col = vec![0f32; colmax];
            let mut pack = vec![0.0; crate::gemm::PACK_LEN];
            let mut g = Context::new(Backend::Auto, &mut pack);
            let wm = MatRef::row_major(&w, conv.filters, conv.patch_len()).unwrap();
            let rows = conv.implicit_fit(colmax);
            let (mut ti, mut te) = (vec![], vec![]);
            for _ in 0..400 {
                let t = Instant::now();
                for _ in 0..20 {
                    conv.forward_im2col(&mut g, &mut out, &x, wm, &b, &mut col, true)
                        .unwrap();
                }
                te.push(t.elapsed().as_secs_f64());
                if let Some(r) = rows {
                    let t = Instant::now();
                    for _ in 0..20 {
                        conv.forward_implicit(
                            &mut g,
                            &mut out,
                            &x,
                            wm,
                            Some(&b),
                            &mut col,
                            true,
                            r,
                        )
                        .unwrap();
                    }
                    ti.push(t.elapsed().as_secs_f64());
                }
            }
            let mut tw = vec![];
            if winograd::fits(&conv) {
                let mut scratch = vec![0f32; winograd::scratch_len(&conv)];
                let part = winograd::chunk_images(&conv);
                let xs: Vec<f32> = x.iter().cycle().take(part * x.len()).copied().collect();
                let mut outs = vec![0f32; part * out.len()];
                for _ in 0..400 {
                    let t = Instant::now();
                    for _ in 0..20 {
                        winograd::forward(
                            &conv,
                            &mut g,
                            &mut outs,
                            &xs,
                            &w,
                            Some(&b),
                            &mut scratch,
                            true,
                            tw.is_empty(),
                        )
                        .unwrap();
                    }
                    tw.push(t.elapsed().as_secs_f64() / part as f64);
                }
            }
            te.sort_by(f64::total_cmp);
            ti.sort_by(f64::total_cmp);
            tw.sort_by(f64::total_cmp);
            let me = te[te.len() / 2] / 20.0 * 1e6;
            let mi = ti.get(ti.len() / 2).map_or(0.0, |v| v / 20.0 * 1e6);
            let mw = tw.get(tw.len() / 2).map_or(0.0, |v| v / 20.0 * 1e6);
            let picked = conv.implicit_rows(colmax).is_some();
            std::println!(
                "{name}: im2col {me:.2} us, implicit ({rows:?} rows a block) {mi:.2} us: \
                 {:.2}x; the cost model picks {}; Winograd {mw:.2} us",
                mi / me,
                if picked { "implicit" } else { "im2col" }
            );
        }
    }

    #[test]
    fn dx_as_the_transposed_convolution_equals_the_naive_twin_in_every_block_size() {
        let mut convs: Vec<Convolution> = shapes()
            .into_iter()
            .filter(|c| c.transposed().is_some())
            .collect();
        convs.push(Convolution::new(Dims::new(3, 6, 6), 4, 3).pad(2));
        assert!(convs.len() >= 4);
        for conv in convs {
            let [x, w, dout, want, _] = naive_backward(&conv, 2, 4);
            let tc = conv.transposed().unwrap();
            assert_eq!(tc.output_dims(), conv.input);
            let (oh, wp) = (tc.output_dims().height, tc.input.width + 2 * tc.pad);
            let col_len = tc.padded_len() + tc.filters * oh * wp;
            for backend in [Backend::Naive, Backend::Auto] {
                for rows in 1..=oh {
                    let mut got = vec![f32::NAN; x.len()];
                    let mut scratch = vec![f32::NAN; w.len()];
                    let mut col = vec![f32::NAN; col_len];
                    let mut pack = vec![0.0; crate::gemm::PACK_LEN];
                    let mut g = Context::new(backend, &mut pack);
                    let turned = conv.turned(&w, &mut scratch);
                    let wm =
                        MatRef::row_major(turned, conv.input.channels, tc.patch_len()).unwrap();
                    tc.forward_implicit(&mut g, &mut got, &dout, wm, None, &mut col, false, rows)
                        .unwrap();
                    assert_eq!(got, want, "{conv:?} {backend:?} {rows} rows");
                }
            }
        }
    }

    /// Layers whose forward pass and dx (the transposed convolution's forward pass) go
    /// through Winograd's F(2×2, 3×3), and dW through F(3×3, 2×2): `backward` and `forward`
    /// equal the naive twin's.
    #[test]
    fn backward_with_dx_through_winograd_equals_the_naive_twin() {
        let convs = [
            Convolution::new(Dims::new(4, 6, 7), 5, 3).pad(1),
            Convolution::new(Dims::new(5, 7, 6), 4, 3).pad(2),
            Convolution::new(Dims::new(4, 8, 8), 6, 3),
            Convolution::new(Dims::new(16, 14, 14), 32, 3).pad(2),
            // Rows of 20 tiles (more than a vector's 16).
            Convolution::new(Dims::new(4, 40, 40), 5, 3).pad(1),
        ];
        for conv in convs {
            let tc = conv.transposed().unwrap();
            assert!(winograd::fits(&conv) && winograd::fits(&tc), "{conv:?}");
            let batch = WINOGRAD_MIN_BATCH;
            let [x, w, dout, want_dx, want_dw] = naive_backward(&conv, batch, 6);
            let mut col = vec![f32::NAN; conv.col_len()];
            assert!(conv.winograd(col.len(), batch) && tc.winograd(col.len(), batch));
            let mut pack = vec![0.0; crate::gemm::PACK_LEN];
            let mut g = Context::new(Backend::Auto, &mut pack);
            let (mut dx, mut dw, mut db) = (
                vec![f32::NAN; x.len()],
                vec![f32::NAN; w.len()],
                vec![f32::NAN; conv.filters],
            );
            conv.backward(
                &mut g,
                Some(&mut dx),
                &mut dw,
                &mut db,
                &dout,
                &x,
                &w,
                &mut col,
            )
            .unwrap();
            assert_eq!(dx, want_dx, "{conv:?} dx");
            assert_eq!(dw, want_dw, "{conv:?} dW");
            let b = ints(conv.filters, 9);
            let mut want = vec![f32::NAN; batch * conv.output_dims().len()];
            conv.forward_naive(&mut want, &x, &w, &b).unwrap();
            let mut got = vec![f32::NAN; want.len()];
            conv.forward(&mut g, &mut got, &x, &w, &b, &mut col, false)
                .unwrap();
            assert_eq!(got, want, "{conv:?} forward");
        }
    }

    #[test]
    fn dw_without_patches_equals_the_naive_twin_in_every_block_size() {
        let convs = stride1_shapes();
        for conv in convs {
            let [x, w, dout, _, want] = naive_backward(&conv, 3, 14);
            let (oh, wp) = (conv.output_dims().height, conv.input.width + 2 * conv.pad);
            let col_len = conv.padded_len() + conv.filters * oh * wp;
            for backend in [Backend::Naive, Backend::Auto] {
                for rows in 1..=oh {
                    let mut got = vec![f32::NAN; w.len()];
                    let mut col = vec![f32::NAN; col_len];
                    let mut pack = vec![0.0; crate::gemm::PACK_LEN];
                    let mut g = Context::new(backend, &mut pack);
                    conv.dw_implicit(&mut g, &mut got, &dout, &x, &mut col, rows)
                        .unwrap();
                    assert_eq!(got, want, "{conv:?} {backend:?} {rows} rows");
                }
            }
        }
    }

    #[test]
    fn col2im_on_scratch_gives_col2ims_bits() {
        for conv in shapes() {
            let col: Vec<f32> = (0..conv.col_len())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let mut want = vec![f32::NAN; conv.input.len()];
            col2im(&conv, &mut want, &col);
            let mut got = vec![f32::NAN; conv.input.len()];
            col2im_scratch(&conv, &mut got, &mut col.clone());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{conv:?}");
        }
    }

    #[test]
    fn output_shape_is_the_books_formula() {
        // ch07: 1×28×28, 30 filters of 5×5, stride 1, pad 0 → 30×24×24.
        let c = Convolution::new(Dims::new(1, 28, 28), 30, 5);
        assert_eq!(c.output_dims(), Dims::new(30, 24, 24));
        assert_eq!(c.weight_len(), 30 * 25);
        // ch08: 3×3, pad 1 keeps the size.
        let c = Convolution::new(Dims::new(16, 28, 28), 16, 3).pad(1);
        assert_eq!(c.output_dims(), Dims::new(16, 28, 28));
        let c = Convolution::new(Dims::new(1, 7, 7), 1, 3).stride(2);
        assert_eq!(c.output_dims(), Dims::new(1, 3, 3));
    }

    #[test]
    fn bad_sizes_are_errors() {
        let too_big = Convolution::new(Dims::new(1, 4, 4), 2, 5);
        assert!(too_big.validate().is_err());
        assert!(too_big.pad(1).validate().is_ok());
        assert!(
            Convolution::new(Dims::new(1, 4, 4), 2, 3)
                .stride(0)
                .validate()
                .is_err()
        );
        let conv = Convolution::new(Dims::new(1, 4, 4), 2, 3);
        let mut out = vec![0.0; 2 * 4];
        // Not whole samples.
        assert!(
            conv.forward_naive(&mut out, &[0.0; 17], &[0.0; 18], &[0.0; 2])
                .is_err()
        );
        let mut col = vec![0.0; conv.col_len() - 1];
        let mut g = Context::new(Backend::Naive, &mut []);
        assert!(
            conv.forward(
                &mut g, &mut out, &[0.0; 16], &[0.0; 18], &[0.0; 2], &mut col, false
            )
            .is_err()
        );
    }
}
