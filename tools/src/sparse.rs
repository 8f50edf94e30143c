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

/// Scratch space for [`EvalSet::count_correct`].
#[derive(Debug, Default)]
pub struct EvalScratch {
    x: Vec<f32>,
    /// Whole images, for a net that does not start with an Affine.
    dense: Vec<f32>,
}
