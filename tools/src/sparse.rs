//! Skipping the input features that are zero in a whole batch, exactly.
//!
//! A feature (pixel) that is 0 in every image of a batch adds nothing to `x·W1`, and its row
//! of `W1` gets a zero gradient, so the SGD update leaves it unchanged. MNIST's digits leave
//! about a third of the 784 pixels blank across a mini-batch of 100 (30% across 250 images).
//! So the step runs on a compact net: the batch's active columns, and the matching rows of
//! `W1` read and updated in place (views that pick rows through an index). The sums have the
//! same terms as the dense computation; only the grouping of terms in lanes differs where a kernel splits k across lanes (the remainder
//! columns), so results agree to rounding (tested against the dense `train_step`), and the
//! rows of blank pixels are left exactly unchanged.

use zeronn::quant::{Packed, QAffine, WeightLayout, argmax};
use zeronn::{Layer, Net, Sgd};

use crate::mnist::Split;
use crate::pixels;

/// The active features of a batch, and scratch space for the compact net.
#[derive(Debug)]
pub struct Compact {
    /// AVX-512BW and VBMI2 are present (detected once).
    simd: bool,
    /// Bit `f` set: feature `f` is non-zero in some row.
    mask: Vec<u64>,
    /// The active features, ascending.
    active: Vec<usize>,
    /// One compacted row of bytes.
    row: Vec<u8>,
}

impl Compact {
    /// Empty scratch; buffers grow on first use.
    pub fn new() -> Self {
        Compact {
            simd: simd(),
            mask: Vec::new(),
            active: Vec::new(),
            row: Vec::new(),
        }
    }

    /// The active features of the rows `rows` of `data`.
    pub fn find_active(&mut self, data: &Split, rows: impl Iterator<Item = usize> + Clone) {
        self.find_active_in(data, rows, 0, data.pixels);
    }

    /// [`Compact::find_active`] among the features `f0..f1` only (the others are inactive):
    /// only the 64-pixel words that overlap the range are read.
    pub fn find_active_in(
        &mut self,
        data: &Split,
        rows: impl Iterator<Item = usize> + Clone,
        f0: usize,
        f1: usize,
    ) {
        self.begin_scan(data);
        let mut ahead = rows.clone().skip(SCAN_AHEAD);
        for r in rows {
            if let Some(q) = ahead.next() {
                prefetch_scan(data, q, f0, f1);
            }
            self.scan_row(data, r, f0, f1);
        }
        self.end_scan(f0, f1);
    }

    /// Starts a scan for active features, a row at a time: [`Compact::scan_row`] for each
    /// row, then [`Compact::end_scan`]; together the same as [`Compact::find_active_in`].
    pub fn begin_scan(&mut self, data: &Split) {
        self.mask.clear();
        self.mask.resize(data.pixels.div_ceil(64), 0);
    }

    /// Adds row `r` of `data` to the scan begun by [`Compact::begin_scan`], features `f0..f1`.
    pub fn scan_row(&mut self, data: &Split, r: usize, f0: usize, f1: usize) {
        let (w0, w1) = (f0 / 64, f1.div_ceil(64).min(self.mask.len()));
        let img = data.image_raw(r);
        for (wi, w) in self.mask.iter_mut().enumerate().take(w1).skip(w0) {
            let (window, back) = word(img, wi);
            *w |= nonzero_bits(window, self.simd) >> back;
        }
    }

    /// The scan's non-zero bits so far, in 64-pixel words (bit `j` of word `w`: pixel
    /// `64·w + j`).
    pub fn words(&self) -> &[u64] {
        &self.mask
    }

    /// Adds bits found by another scan of other rows (words from word `w0` on, as
    /// [`Compact::words`] gives them) to this one.
    pub fn add_words(&mut self, w0: usize, words: impl Iterator<Item = u64>) {
        for (w, b) in self.mask.iter_mut().skip(w0).zip(words) {
            *w |= b;
        }
    }

    /// Ends a scan: the active features among `f0..f1` of the rows scanned.
    pub fn end_scan(&mut self, f0: usize, f1: usize) {
        let (w0, w1) = (f0 / 64, f1.div_ceil(64).min(self.mask.len()));
        for (wi, w) in self.mask.iter_mut().enumerate() {
            let (lo, hi) = (wi * 64, wi * 64 + 64);
            if wi < w0 || wi >= w1 {
                *w = 0;
                continue;
            }
            if lo < f0 {
                *w &= !0u64 << (f0 - lo);
            }
            if hi > f1 {
                *w &= !0u64 >> (hi - f1);
            }
        }
        self.active.clear();
        for (wi, &w) in self.mask.iter().enumerate() {
            let mut bits = w;
            while bits != 0 {
                self.active.push(wi * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }

    /// The active features, ascending.
    pub fn active(&self) -> &[usize] {
        &self.active
    }

    /// Number of active features.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether no feature is active.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Row `r` of `data`, active features only, as f32 in [0, 1], into `out` (`len()` values).
    pub fn compact_row(&mut self, data: &Split, r: usize, out: &mut [f32]) {
        let at = self.compress_row(data, r);
        pixels::to_unit_f32(&self.row[..at], out);
    }

    /// Row `r` of `data`, active features only, as raw bytes appended to `out`.
    pub fn compact_row_bytes(&mut self, data: &Split, r: usize, out: &mut Vec<u8>) {
        let at = self.compress_row(data, r);
        out.extend_from_slice(&self.row[..at]);
    }

    /// The active bytes of row `r` into the start of `self.row`; returns how many.
    fn compress_row(&mut self, data: &Split, r: usize) -> usize {
        let img = data.image_raw(r);
        // Room for a whole 64-byte store past the last active byte.
        self.row.resize(self.active.len() + 64, 0);
        let mut at = 0;
        for (wi, &w) in self.mask.iter().enumerate() {
            if w != 0 {
                let (window, back) = word(img, wi);
                at += compress(window, w << back, &mut self.row[at..], self.simd);
            }
        }
        at
    }
}

/// How many rows ahead of a scan ([`Compact::scan_row`]) their pixels are prefetched into L1
/// ([`prefetch_scan`]): measured on the book's run, the scan of a mini-batch went from about
/// 13 to 10 µs (4 rows was the best of 1, 2, 4 and 8).
pub const SCAN_AHEAD: usize = 4;

/// Prefetches into L1 what [`Compact::scan_row`] reads of row `r`, features `f0..f1`: the
/// 64-pixel words that overlap the range.
pub fn prefetch_scan(data: &Split, r: usize, f0: usize, f1: usize) {
    let (lo, hi) = (f0 / 64 * 64, (f1.div_ceil(64) * 64).min(data.pixels));
    if lo < hi {
        data.prefetch_part_near(r, lo, hi);
    }
}

/// Whether the byte kernels below can use AVX-512 (BW and VBMI2).
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The bytes of 64-pixel word `wi` of image `img`, as a window of at most 64 bytes whose
/// first `back` bytes come before the word: a whole word as it is, and the last, partial one
/// (of an image of at least 64 pixels) as the last 64 bytes of the image, `back = 64 - its
/// length`. A shorter load at the word would straddle into the cache line after the image
/// (the next image's, not otherwise read), and a masked load waits for that line though it
/// reads nothing there: 3 rows in 4 of a random mini-batch paid a miss to memory for it.
#[inline]
fn word(img: &[u8], wi: usize) -> (&[u8], u32) {
    let (lo, hi) = (wi * 64, (wi * 64 + 64).min(img.len()));
    if hi - lo < 64 && img.len() >= 64 {
        (&img[img.len() - 64..], (64 - (hi - lo)) as u32)
    } else {
        (&img[lo..hi], 0)
    }
}

/// Bit `i` set where `chunk[i] != 0` (at most 64 bytes).
fn nonzero_bits(chunk: &[u8], simd: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if simd && chunk.len() <= 64 {
        // SAFETY: `simd` means AVX-512BW is present; `chunk` holds at most 64 bytes.
        return unsafe { x86::nonzero_bits_64(chunk) };
    }
    chunk
        .iter()
        .enumerate()
        .fold(0, |m, (i, &b)| m | (((b != 0) as u64) << i))
}

/// Writes the bytes of `chunk` whose bit is set in `mask`, in order, to the start of `out`
/// (which has room for 64 bytes, all of which may be written); returns how many.
fn compress(chunk: &[u8], mask: u64, out: &mut [u8], simd: bool) -> usize {
    #[cfg(target_arch = "x86_64")]
    if simd && chunk.len() <= 64 && out.len() >= 64 {
        // SAFETY: `simd` means AVX-512 VBMI2 and BW are present; `chunk` holds at most 64
        // bytes and `out` room for 64.
        unsafe { x86::compress_64(chunk, mask, out) };
        return mask.count_ones() as usize;
    }
    let mut n = 0;
    for (i, &b) in chunk.iter().enumerate() {
        if mask >> i & 1 == 1 {
            out[n] = b;
            n += 1;
        }
    }
    n
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The bytes of `chunk` (at most 64), the lanes past its end zero: a masked load, which
    /// does not touch the memory of masked-off lanes.
    ///
    /// # Safety
    /// AVX-512BW must be present, and `chunk` hold at most 64 bytes.
    #[target_feature(enable = "avx512bw")]
    unsafe fn load(chunk: &[u8]) -> __m512i {
        if chunk.len() == 64 {
            // SAFETY: the 64 bytes are `chunk`'s.
            unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) }
        } else {
            let valid = (1u64 << chunk.len()) - 1; // len < 64
            // SAFETY: only the first `len` lanes, `chunk`'s bytes, are read.
            unsafe { _mm512_maskz_loadu_epi8(valid, chunk.as_ptr().cast()) }
        }
    }

    /// Bit `i` set where `chunk[i] != 0`.
    ///
    /// # Safety
    /// As for [`load`].
    #[target_feature(enable = "avx512bw")]
    pub unsafe fn nonzero_bits_64(chunk: &[u8]) -> u64 {
        // SAFETY: the caller passes at most 64 bytes.
        let v = unsafe { load(chunk) };
        _mm512_test_epi8_mask(v, v)
    }

    /// The bytes of `chunk` whose bit is set in `mask`, in order, to the start of `out`,
    /// then zeros up to 64 bytes.
    ///
    /// # Safety
    /// AVX-512 VBMI2 and BW must be present, `chunk` hold at most 64 bytes and `out` have
    /// room for 64.
    #[target_feature(enable = "avx512vbmi2,avx512bw")]
    pub unsafe fn compress_64(chunk: &[u8], mask: u64, out: &mut [u8]) {
        // The register form and a plain store: the compressing store to memory is
        // microcoded and several times slower on Intel cores. The selected bytes come first,
        // then zeros up to 64 (the caller's next chunk overwrites them).
        // SAFETY: the caller passes at most 64 bytes in `chunk` and room for 64 in `out`.
        unsafe {
            let v = load(chunk);
            _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_maskz_compress_epi8(mask, v));
        }
    }
}

/// The images `idx` of `data` compacted to the features active in them (found into
/// `compact`): `x` (resized) holds `idx.len() × compact.len()` values, returned; `t` the
/// labels.
pub fn gather_active<'x>(
    compact: &mut Compact,
    data: &Split,
    idx: &[usize],
    x: &'x mut Vec<f32>,
    t: &mut [u8],
) -> &'x [f32] {
    compact.find_active(data, idx.iter().copied());
    let k = compact.len();
    x.resize(idx.len() * k, 0.0); // every element is written below
    let x = &mut x[..idx.len() * k];
    for (&r, row) in idx.iter().zip(x.chunks_exact_mut(k.max(1))) {
        compact.compact_row(data, r, row);
    }
    // The labels apart: with no active pixel there are no rows of x to zip with.
    for (label, &r) in t.iter_mut().zip(idx) {
        *label = data.t[r];
    }
    x
}

/// One SGD step of `net` on the images `idx` of `data`, on the compact net of the batch's
/// active features (see the module docs): the dense `train_step`, up to rounding.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    compact: &mut Compact,
    net: &mut Net<f32, Vec<f32>>,
    data: &Split,
    idx: &[usize],
    x: &mut Vec<f32>,
    t: &mut [u8],
    sgd: &Sgd<f32>,
    ws: &mut [f32],
) -> zeronn::Result<f32> {
    let x = gather_active(compact, data, idx, x, t);
    net.train_step_active(x, &compact.active, &t[..idx.len()], sgd, ws)
}

impl Default for Compact {
    fn default() -> Self {
        Self::new()
    }
}

/// One chunk of an [`EvalSet`]: the images at positions `lo..hi` of its order, compacted to
/// their active pixels.
#[derive(Debug, Clone)]
struct EvalChunk {
    lo: usize,
    hi: usize,
    active: Vec<usize>,
    /// `(hi - lo) × active.len()` bytes.
    raw: Vec<u8>,
    /// For float data, the chunk's samples whole (`active` and `raw` are then empty).
    floats: Vec<f32>,
}

/// A split prepared once for evaluation: chunks of images, each compacted to the pixels that
/// are non-zero somewhere in it. Every evaluation pass then streams fewer bytes and does fewer
/// multiply-adds; the answers are those of the dense net (the same terms, summed in a different
/// grouping only in the remainder columns).
///
/// The chunks hold images of similar extent: the images are taken in the order of the
/// bounding boxes of their non-zero pixels ([`bbox_order`]), so a chunk's union of active
/// pixels is small. On MNIST's training set a chunk of 128 then has 41% of the pixels active
/// (45% on the test set), against 66% for 128 images in file order. The counts of correct
/// answers do not depend on the order.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// The labels, in the order of the chunks.
    labels: Vec<u8>,
    chunks: Vec<EvalChunk>,
    /// Pixels per image.
    pixels: usize,
}

impl EvalSet {
    /// Compacts `data` in chunks of `chunk` images.
    pub fn new(data: &Split, chunk: usize) -> Self {
        Self::new_on(data, chunk, 1)
    }

    /// [`EvalSet::new`] with the chunks shared out to `threads` threads (the same set).
    pub fn new_on(data: &Split, chunk: usize, threads: usize) -> Self {
        let chunk = chunk.max(1);
        let count = data.len().div_ceil(chunk);
        if data.is_float() {
            // Measurements, not images: the chunks in file order, whole.
            let chunks = (0..count)
                .map(|c| {
                    let (lo, hi) = (c * chunk, ((c + 1) * chunk).min(data.len()));
                    EvalChunk {
                        lo,
                        hi,
                        active: Vec::new(),
                        raw: Vec::new(),
                        floats: data.floats[lo * data.pixels..hi * data.pixels].to_vec(),
                    }
                })
                .collect();
            return EvalSet {
                labels: data.t.clone(),
                chunks,
                pixels: data.pixels,
            };
        }
        let order = bbox_order(data, threads);
        let chunks = crate::team::map_shared(count, threads, |compact: &mut Compact, c| {
            let (lo, hi) = (c * chunk, ((c + 1) * chunk).min(data.len()));
            let images = &order[lo..hi];
            compact.find_active(data, images.iter().copied());
            let mut raw = Vec::with_capacity((hi - lo) * compact.len());
            for &r in images {
                compact.compact_row_bytes(data, r, &mut raw);
            }
            EvalChunk {
                lo,
                hi,
                active: compact.active.clone(),
                raw,
                floats: Vec::new(),
            }
        });
        EvalSet {
            labels: order.iter().map(|&r| data.t[r]).collect(),
            chunks,
            pixels: data.pixels,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Correct answers of `net` on chunks `c0..c1`, using `scratch` for the compact net and
    /// `ws` (a workspace for a chunk) for its activations.
    pub fn count_correct<P: AsRef<[f32]>>(
        &self,
        net: &Net<f32, P>,
        (c0, c1): (usize, usize),
        scratch: &mut EvalScratch,
        ws: &mut [f32],
    ) -> zeronn::Result<usize> {
        let mut correct = 0;
        // A net that does not start with an Affine sees whole images: the chunk spread back
        // over the blank pixels.
        let dense = !matches!(net.spec().layers().first(), Some(Layer::Affine { .. }));
        for c in &self.chunks[c0..c1] {
            if !c.floats.is_empty() {
                correct += net.count_correct(&c.floats, &self.labels[c.lo..c.hi], ws)?;
                continue;
            }
            let len = (c.hi - c.lo) * c.active.len();
            scratch.x.resize(len, 0.0);
            let x = &mut scratch.x[..len];
            pixels::to_unit_f32(&c.raw, x);
            let t = &self.labels[c.lo..c.hi];
            if dense {
                let n = self.pixels;
                scratch.dense.clear();
                scratch.dense.resize((c.hi - c.lo) * n, 0.0);
                for (row, compact) in scratch
                    .dense
                    .chunks_exact_mut(n)
                    .zip(x.chunks_exact(c.active.len().max(1)))
                {
                    for (&a, &v) in c.active.iter().zip(compact) {
                        row[a] = v;
                    }
                }
                correct += net.count_correct(&scratch.dense, t, ws)?;
            } else {
                correct += net.count_correct_active(x, &c.active, t, ws)?;
            }
        }
        Ok(correct)
    }

    /// The fraction of all images `net` classifies correctly.
    pub fn accuracy<P: AsRef<[f32]>>(
        &self,
        net: &Net<f32, P>,
        ws: &mut [f32],
    ) -> zeronn::Result<f64> {
        let mut scratch = EvalScratch::default();
        Ok(
            self.count_correct(net, (0, self.chunks()), &mut scratch, ws)? as f64
                / self.len() as f64,
        )
    }
}

/// The images of `data` in the order of the bounding boxes of their non-zero pixels: by left
/// column, then top row, then right column, then bottom row (blank images last), ties in file
/// order. Images are taken as square (MNIST's and Fashion-MNIST's 28×28) when `pixels` is a
/// perfect square, else as one row of pixels. The boxes are found on `threads` threads.
pub fn bbox_order(data: &Split, threads: usize) -> Vec<usize> {
    // Blocks of images to whichever thread is free.
    const BLOCK: usize = 2048;
    let n = data.len();
    let mut keys: Vec<(u64, usize)> =
        crate::team::map_shared(n.div_ceil(BLOCK), threads, |_: &mut (), b| {
            bbox_keys(data, b * BLOCK, ((b + 1) * BLOCK).min(n))
        })
        .concat();
    keys.sort_unstable();
    keys.into_iter().map(|(_, i)| i).collect()
}

/// The sort keys of images `i0..i1` for [`bbox_order`]: left, top, right and bottom in 16 bits
/// each (a blank image: all ones), with the image's index for ties.
fn bbox_keys(data: &Split, i0: usize, i1: usize) -> Vec<(u64, usize)> {
    let side = data.pixels.isqrt();
    let width = if side * side == data.pixels {
        side
    } else {
        data.pixels
    }
    .max(1);
    let simd = simd();
    // The image's non-zero pixels as bits, and a word past them for `extent`.
    let mut mask = vec![0u64; data.pixels.div_ceil(64) + 1];
    (i0..i1)
        .map(|i| {
            let img = data.image_raw(i);
            for (wi, w) in mask.iter_mut().enumerate().take(img.len().div_ceil(64)) {
                let (window, back) = word(img, wi);
                *w = nonzero_bits(window, simd) >> back;
            }
            let [mut left, mut top, mut right, mut bottom] = [usize::MAX, usize::MAX, 0, 0];
            for (r, lo) in (0..data.pixels).step_by(width).enumerate() {
                if let Some((first, last)) = extent(&mask, lo, width.min(data.pixels - lo)) {
                    left = left.min(first);
                    top = top.min(r);
                    right = right.max(last);
                    bottom = r;
                }
            }
            let key = [left, top, right, bottom]
                .iter()
                .fold(0u64, |k, &v| k << 16 | v.min(0xffff) as u64);
            (key, i)
        })
        .collect()
}

/// The first and last set bit among bits `lo..lo + len` of the bit string `mask`, relative to
/// `lo`; `None` if none is set. `mask` has a word past the last bit.
#[inline]
fn extent(mask: &[u64], lo: usize, len: usize) -> Option<(usize, usize)> {
    if len <= 64 {
        // One field: from the word holding bit `lo` and the next one.
        let (w, sh) = (lo / 64, lo % 64);
        let wide = u128::from(mask[w]) | u128::from(mask[w + 1]) << 64;
        let bits = (wide >> sh) as u64 & (u64::MAX >> (64 - len));
        return (bits != 0).then(|| {
            (
                bits.trailing_zeros() as usize,
                63 - bits.leading_zeros() as usize,
            )
        });
    }
    let (mut first, mut last) = (None, 0);
    let mut got = 0;
    while got < len {
        let at = lo + got;
        let (w, sh) = (at / 64, at % 64);
        let take = (64 - sh).min(len - got);
        let bits = (mask[w] >> sh) & (u64::MAX >> (64 - take));
        if bits != 0 {
            first.get_or_insert(got + bits.trailing_zeros() as usize);
            last = got + 63 - bits.leading_zeros() as usize;
        }
        got += take;
    }
    first.map(|f| (f, last))
}

/// An [`EvalSet`] prepared once for an int8 model: each chunk's images as int8, and the
/// model's first layer compacted to the chunk's active pixels (exact: a blank pixel's int8
/// value is the input's zero point, whose `x − z` is 0), as [`EvalSet::count_correct`] runs
/// f32 nets; [`Int8Set::ready`] then packs every layer for the fast kernel, once.
#[derive(Debug)]
pub struct Int8Set<'s> {
    set: &'s EvalSet,
    chunks: Vec<Int8Chunk>,
    /// Packing space for the layers after the first.
    rest: Vec<i32>,
}

#[derive(Debug)]
struct Int8Chunk {
    /// `images × inputs` int8 values.
    x: Vec<i8>,
    /// The first layer's weights on the chunk's active pixels, output by output.
    w: Vec<i8>,
    /// Active pixels (at least one).
    inputs: usize,
    /// Packing space for that layer.
    pack: Vec<i32>,
}

/// An [`Int8Set`] with every layer packed: what an evaluation pass runs
/// ([`Int8Ready::count_correct`]).
#[derive(Debug)]
pub struct Int8Ready<'a> {
    set: &'a EvalSet,
    /// Per chunk: its images, its first layer and that layer packed.
    chunks: Vec<(&'a [i8], QAffine<'a>, Packed<'a>)>,
    /// The other layers, packed.
    rest: Vec<(QAffine<'a>, Packed<'a>)>,
}

/// Activations for [`Int8Ready::count_correct`].
#[derive(Debug, Default)]
pub struct Int8Scratch {
    a: Vec<i8>,
    b: Vec<i8>,
}

impl EvalSet {
    /// This set prepared for the int8 `model`; `None` if the model is not an MLP, its input
    /// not MNIST's pixels (pixel `b` as `b − 128`), or the set holds float data (the caller then evaluates
    /// whole images).
    pub fn int8(&self, model: &zeronn::QModel<'_>) -> Option<Int8Set<'_>> {
        let q = model.input_params();
        let pixels = (0..=255u8).all(|b| q.quantize(f32::from(b) / 255.0) == (b ^ 0x80) as i8);
        let first = model.layers().next()?;
        // An MLP: every layer an Affine.
        let mlp = model
            .ops()
            .all(|o| matches!(o, zeronn::quant::QOp::Affine(_)));
        if !mlp
            || !pixels
            || first.input != self.pixels
            || self.chunks.iter().any(|c| !c.floats.is_empty())
        {
            return None;
        }
        let chunks = self
            .chunks
            .iter()
            .map(|c| {
                // A chunk of blank images has no active pixel: keep one (blank, so exact).
                let (active, raw): (&[usize], &[u8]) = if c.active.is_empty() {
                    (&[0], &[])
                } else {
                    (&c.active, &c.raw)
                };
                let mut x = vec![i8::MIN; (c.hi - c.lo) * active.len()];
                for (q, &b) in x.iter_mut().zip(raw) {
                    *q = (b ^ 0x80) as i8;
                }
                let w = (0..first.output)
                    .flat_map(|j| active.iter().map(move |&p| first.weight(j, p)))
                    .collect();
                Int8Chunk {
                    x,
                    w,
                    inputs: active.len(),
                    pack: vec![0; QAffine::pack_len(active.len(), first.output)],
                }
            })
            .collect();
        let rest = model
            .layers()
            .skip(1)
            .map(|l| QAffine::pack_len(l.input, l.output))
            .sum();
        Some(Int8Set {
            set: self,
            chunks,
            rest: vec![0; rest],
        })
    }
}

impl<'a> Int8Set<'a> {
    /// Every layer packed for the fast kernel (`model` the one this set was prepared for).
    pub fn ready<'b>(&'b mut self, model: &'b zeronn::QModel<'_>) -> Result<Int8Ready<'b>, String>
    where
        'a: 'b,
    {
        let err = |e: zeronn::Error| e.to_string();
        let first = *model.layers().next().ok_or("an empty model")?;
        let mut chunks = Vec::with_capacity(self.chunks.len());
        for k in self.chunks.iter_mut() {
            let l1 = QAffine {
                input: k.inputs,
                w: &k.w,
                layout: WeightLayout::Rows,
                ..first
            };
            let p1 = l1.pack(&mut k.pack).map_err(err)?;
            chunks.push((&k.x[..], l1, p1));
        }
        let mut rest = Vec::new();
        let mut space = &mut self.rest[..];
        for l in model.layers().skip(1) {
            let (mine, more) = space.split_at_mut(QAffine::pack_len(l.input, l.output));
            rest.push((*l, l.pack(mine).map_err(err)?));
            space = more;
        }
        Ok(Int8Ready {
            set: self.set,
            chunks,
            rest,
        })
    }
}

impl Int8Ready<'_> {
    /// Correct answers over every chunk: one evaluation pass.
    pub fn count_correct(&self, s: &mut Int8Scratch) -> Result<usize, String> {
        let err = |e: zeronn::Error| e.to_string();
        let widest = self
            .rest
            .iter()
            .map(|(l, _)| l.output)
            .chain(self.chunks.first().map(|(_, l, _)| l.output))
            .max()
            .unwrap_or(1);
        let classes = self
            .rest
            .last()
            .map(|(l, _)| l.output)
            .or(self.chunks.first().map(|(_, l, _)| l.output))
            .unwrap_or(1);
        let mut correct = 0;
        for (c, (x, l1, p1)) in self.set.chunks.iter().zip(&self.chunks) {
            let n = c.hi - c.lo;
            s.a.resize(n * widest, 0);
            s.b.resize(n * widest, 0);
            l1.forward(x, &mut s.a[..n * l1.output], Some(p1))
                .map_err(err)?;
            let (mut src, mut dst) = (&mut s.a, &mut s.b);
            let mut width = l1.output;
            for (l, p) in &self.rest {
                l.forward(&src[..n * width], &mut dst[..n * l.output], Some(p))
                    .map_err(err)?;
                width = l.output;
                core::mem::swap(&mut src, &mut dst);
            }
            let labels = &self.set.labels[c.lo..c.hi];
            for (row, &t) in src[..n * classes].chunks_exact(classes).zip(labels) {
                correct += usize::from(argmax(row) == usize::from(t));
            }
        }
        Ok(correct)
    }
}

/// Scratch space for [`EvalSet::count_correct`].
#[derive(Debug, Default)]
pub struct EvalScratch {
    x: Vec<f32>,
    /// Whole images, for a net that does not start with an Affine.
    dense: Vec<f32>,
}

#[cfg(test)]
mod int8_tests {
    use super::*;
    use zeronn::quant::{QModel, QParams, model};

    /// The compacted int8 pass counts what the whole images count, over chunks with every
    /// pixel blank, with a few, and with many, for both weight layouts.
    #[test]
    fn the_compacted_int8_pass_counts_what_whole_images_count() {
        const SPEC: zeronn::NetSpec = zeronn::NetSpec::new(&[
            Layer::Affine {
                input: 36,
                output: 7,
            },
            Layer::Relu,
            Layer::Affine {
                input: 7,
                output: 3,
            },
            Layer::SoftmaxWithLoss,
        ]);
        let mut seed = 0x9e37_79b9_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let w1: Vec<i8> = (0..36 * 7)
            .map(|_| ((next() % 255) as i32 - 127) as i8)
            .collect();
        let w2: Vec<i8> = (0..7 * 3)
            .map(|_| ((next() % 255) as i32 - 127) as i8)
            .collect();
        let pixels = QParams::from_range(0.0, 1.0).unwrap();
        let hidden = QParams {
            scale: 0.5,
            zero_point: -100,
        };
        let out = QParams {
            scale: 0.25,
            zero_point: 3,
        };
        let (b1, m1, s1) = (vec![100; 7], vec![1 << 30; 7], vec![-6; 7]);
        let (b2, m2, s2) = (vec![-50; 3], vec![1 << 30; 3], vec![-5; 3]);
        let layer = |input, output, w, b, m, s, i: QParams, o: QParams, relu: bool| QAffine {
            input,
            output,
            w,
            layout: WeightLayout::Rows,
            bias: b,
            multiplier: m,
            shift: s,
            input_zero_point: i.zero_point,
            input_scale: i.scale,
            output_zero_point: o.zero_point,
            output_scale: o.scale,
            act_min: if relu { o.zero_point as i8 } else { -128 },
            act_max: 127,
        };
        let l1 = layer(
            36,
            7,
            &w1[..],
            &b1[..],
            &m1[..],
            &s1[..],
            pixels,
            hidden,
            true,
        );
        let l2 = layer(7, 3, &w2[..], &b2[..], &m2[..], &s2[..], hidden, out, false);
        // 40 images of 6 × 6: the first 12 blank, then some with one pixel, then busy ones.
        let mut raw = vec![0u8; 40 * 36];
        for (n, img) in raw.chunks_exact_mut(36).enumerate().skip(12) {
            let lit = if n < 24 { 1 } else { 20 };
            for _ in 0..lit {
                img[(next() % 36) as usize] = (next() % 256) as u8;
            }
        }
        // The labels: the whole images' own answers, so that any answer the compacted pass
        // changes costs it a point.
        let xq: Vec<i8> = raw.iter().map(|&b| (b ^ 0x80) as i8).collect();
        let (mut h, mut y) = (vec![0i8; 40 * 7], vec![0i8; 40 * 3]);
        l1.forward_naive(&xq, &mut h).unwrap();
        l2.forward_naive(&h, &mut y).unwrap();
        let t: Vec<u8> = y.chunks_exact(3).map(|r| argmax(r) as u8).collect();
        assert!(t.iter().any(|&c| c != t[0]), "the answers vary: {t:?}");
        let split = Split {
            raw,
            floats: Vec::new(),
            t,
            pixels: 36,
        };
        for layout in [WeightLayout::Rows, WeightLayout::Dsp] {
            let arranged: Vec<Vec<i8>> = [l1, l2]
                .iter()
                .map(|l| {
                    let mut w = vec![0i8; layout.len(l.input, l.output)];
                    l.arrange(layout, &mut w).unwrap();
                    w
                })
                .collect();
            let layers = [
                QAffine {
                    w: &arranged[0],
                    layout,
                    ..l1
                },
                QAffine {
                    w: &arranged[1],
                    layout,
                    ..l2
                },
            ];
            let mut bytes = vec![0u32; model::encoded_len_in(&SPEC, layout).div_ceil(4)];
            // SAFETY: u32 has no padding and any bytes are a valid u32; the view borrows
            // `bytes` mutably for its use here only.
            let view = unsafe {
                core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<u8>(), bytes.len() * 4)
            };
            let len = model::write(&SPEC, &layers, view).unwrap();
            let m = QModel::from_bytes(&view[..len]).unwrap();
            let to_int8 = crate::quantize::ToInt8::new(m.input_params());
            let mut ws = vec![0i8; QModel::workspace_len(&SPEC, 40)];
            let mut xq = vec![0i8; 40 * 36];
            let whole =
                crate::bench::int8_pass(&m, None, &to_int8, &[&split], &mut ws, &mut xq).unwrap();
            assert_eq!(whole, 40);
            for chunk in [4, 7, 40] {
                let set = EvalSet::new(&split, chunk);
                let mut prepared = set.int8(&m).expect("MNIST-like pixels");
                let ready = prepared.ready(&m).unwrap();
                let got = ready.count_correct(&mut Int8Scratch::default()).unwrap();
                assert_eq!(got, whole, "{layout:?}, chunks of {chunk}");
            }
        }
    }
}
