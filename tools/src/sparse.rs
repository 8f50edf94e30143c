//! Skipping the input features that are zero in a whole batch, exactly.
//!
//! A feature (pixel) that is 0 in every image of a batch adds nothing to `x·W1`, and its row
//! of `W1` gets a zero gradient, so the SGD update leaves it unchanged. MNIST's digits leave
//! about a third of the 784 pixels blank across a mini-batch of 100 (30% across 250 images).
//! So the step runs on a compact net: the batch's active columns, and the matching rows of
//! `W1` copied out (then back). The sums have the same terms as the dense computation; only the
//! grouping of terms in lanes differs where a kernel splits k across lanes (the remainder
//! columns), so results agree to rounding (tested against the dense `train_step`), and the
//! rows of blank pixels are left exactly unchanged.

use zeronn::{Sgd, TwoLayerNet, TwoLayerShape};

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
    /// The compact parameters `[W1 active rows | b1 | W2 | b2]`.
    params: Vec<f32>,
}

impl Compact {
    /// Empty scratch; buffers grow on first use.
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        let simd = std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vbmi2");
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        Compact {
            simd,
            mask: Vec::new(),
            active: Vec::new(),
            row: Vec::new(),
            params: Vec::new(),
        }
    }

    /// The active features of the rows `rows` of `data`.
    pub fn find_active(&mut self, data: &Split, rows: impl Iterator<Item = usize>) {
        let words = data.pixels.div_ceil(64);
        self.mask.clear();
        self.mask.resize(words, 0);
        for r in rows {
            for (w, chunk) in self.mask.iter_mut().zip(data.image_raw(r).chunks(64)) {
                *w |= nonzero_bits(chunk, self.simd);
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

    /// Keeps only the active features in `f0..f1`.
    pub fn restrict(&mut self, f0: usize, f1: usize) {
        for (wi, w) in self.mask.iter_mut().enumerate() {
            let (lo, hi) = (wi * 64, wi * 64 + 64);
            for f in lo..hi {
                if f < f0 || f >= f1 {
                    *w &= !(1u64 << (f - lo));
                }
            }
        }
        self.active.retain(|&f| (f0..f1).contains(&f));
    }

    /// The rows of `w` (a block of a weight matrix whose first row is feature `f0`, rows of
    /// `cols` values) for the active features, into `out`.
    pub fn copy_rows(&self, f0: usize, cols: usize, w: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for &f in &self.active {
            out.extend_from_slice(&w[(f - f0) * cols..(f - f0 + 1) * cols]);
        }
        if self.active.is_empty() {
            out.extend(std::iter::repeat_n(0.0, cols));
        }
    }

    /// Writes rows copied by [`Compact::copy_rows`] back into `w`.
    pub fn store_rows(&self, f0: usize, cols: usize, rows: &[f32], w: &mut [f32]) {
        for (q, &f) in self.active.iter().enumerate() {
            w[(f - f0) * cols..(f - f0 + 1) * cols]
                .copy_from_slice(&rows[q * cols..(q + 1) * cols]);
        }
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
        let img = data.image_raw(r);
        self.row.clear();
        for (wi, &w) in self.mask.iter().enumerate() {
            let chunk = &img[wi * 64..(wi * 64 + 64).min(img.len())];
            compress(chunk, w, &mut self.row, self.simd);
        }
        pixels::to_unit_f32(&self.row, out);
    }

    /// Copies the net's parameters for the active features into the compact net and returns
    /// it: input size `len()`, the same hidden and output layers.
    pub fn load(
        &mut self,
        shape: &TwoLayerShape,
        params: &[f32],
    ) -> zeronn::Result<TwoLayerNet<f32, &mut [f32]>> {
        let h = shape.hidden_size;
        let cshape = TwoLayerShape {
            input_size: self.active.len().max(1),
            ..*shape
        };
        self.params.clear();
        for &f in &self.active {
            self.params.extend_from_slice(&params[f * h..(f + 1) * h]);
        }
        if self.active.is_empty() {
            // A batch of blank images: one zero feature keeps the shapes valid.
            self.params.extend(std::iter::repeat_n(0.0, h));
        }
        self.params
            .extend_from_slice(&params[shape.input_size * h..]);
        TwoLayerNet::new(cshape, &mut self.params[..])
    }

    /// Writes the compact net's parameters back into the full ones.
    pub fn store(&self, shape: &TwoLayerShape, params: &mut [f32]) {
        let h = shape.hidden_size;
        for (q, &f) in self.active.iter().enumerate() {
            params[f * h..(f + 1) * h].copy_from_slice(&self.params[q * h..(q + 1) * h]);
        }
        let tail = self.active.len().max(1) * h;
        params[shape.input_size * h..].copy_from_slice(&self.params[tail..]);
    }
}

/// Bit `i` set where `chunk[i] != 0` (at most 64 bytes).
fn nonzero_bits(chunk: &[u8], simd: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if simd && chunk.len() == 64 {
        // SAFETY: `simd` means AVX-512BW is present; `chunk` holds 64 bytes.
        return unsafe { x86::nonzero_bits_64(chunk) };
    }
    chunk
        .iter()
        .enumerate()
        .fold(0, |m, (i, &b)| m | (((b != 0) as u64) << i))
}

/// Appends the bytes of `chunk` whose bit is set in `mask`, in order.
fn compress(chunk: &[u8], mask: u64, out: &mut Vec<u8>, simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd && chunk.len() == 64 {
        // SAFETY: `simd` means AVX-512 VBMI2 and BW are present; `chunk` holds 64 bytes.
        unsafe { x86::compress_64(chunk, mask, out) };
        return;
    }
    out.extend(
        chunk
            .iter()
            .enumerate()
            .filter(|(i, _)| mask >> i & 1 == 1)
            .map(|(_, &b)| b),
    );
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512bw")]
    pub unsafe fn nonzero_bits_64(chunk: &[u8]) -> u64 {
        // SAFETY: the caller passes 64 bytes.
        let v = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) };
        _mm512_test_epi8_mask(v, v)
    }

    #[target_feature(enable = "avx512vbmi2,avx512bw")]
    pub unsafe fn compress_64(chunk: &[u8], mask: u64, out: &mut Vec<u8>) {
        let n = mask.count_ones() as usize;
        let mut tmp = [0u8; 64];
        // SAFETY: the caller passes 64 bytes; `tmp` holds 64.
        unsafe {
            let v = _mm512_loadu_si512(chunk.as_ptr().cast());
            _mm512_storeu_si512(tmp.as_mut_ptr().cast(), _mm512_maskz_compress_epi8(mask, v));
        }
        out.extend_from_slice(&tmp[..n]);
    }
}

/// One SGD step of `net` on the images `idx` of `data`, on the compact net of the batch's
/// active features (see the module docs): the dense `train_step`, up to rounding.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    compact: &mut Compact,
    net: &mut TwoLayerNet<f32, Vec<f32>>,
    data: &Split,
    idx: &[usize],
    x: &mut Vec<f32>,
    t: &mut [u8],
    sgd: &Sgd<f32>,
    ws: &mut [f32],
) -> zeronn::Result<f32> {
    compact.find_active(data, idx.iter().copied());
    let k = compact.len().max(1);
    x.resize(idx.len() * k, 0.0); // every element is written below
    let x = &mut x[..idx.len() * k];
    if compact.is_empty() {
        x.fill(0.0); // all blank: the one stand-in feature is 0
    }
    for ((&r, row), label) in idx.iter().zip(x.chunks_exact_mut(k)).zip(t.iter_mut()) {
        compact.compact_row(data, r, row);
        *label = data.t[r];
    }
    let shape = net.shape();
    let backend = net.backend();
    let loss = compact
        .load(&shape, net.params())?
        .with_backend(backend)?
        .train_step(x, t, sgd, ws)?;
    compact.store(&shape, net.params_mut());
    Ok(loss)
}

impl Default for Compact {
    fn default() -> Self {
        Self::new()
    }
}

/// One chunk of an [`EvalSet`]: images `lo..hi`, compacted to their active pixels.
#[derive(Debug, Clone)]
struct EvalChunk {
    lo: usize,
    hi: usize,
    active: Vec<usize>,
    /// `(hi - lo) × active.len()` bytes.
    raw: Vec<u8>,
}

/// A split prepared once for evaluation: chunks of images, each compacted to the pixels that
/// are non-zero somewhere in it (about 70% of MNIST's for chunks of 250). Every evaluation
/// pass then streams a third fewer bytes and does a third fewer multiply-adds; the answers are
/// those of the dense net (the same terms, summed in a different grouping only in the
/// remainder columns).
#[derive(Debug, Clone)]
pub struct EvalSet {
    labels: Vec<u8>,
    chunks: Vec<EvalChunk>,
}

impl EvalSet {
    /// Compacts `data` in chunks of `chunk` images.
    pub fn new(data: &Split, chunk: usize) -> Self {
        let mut compact = Compact::new();
        let mut chunks = Vec::new();
        let mut lo = 0;
        while lo < data.len() {
            let hi = (lo + chunk.max(1)).min(data.len());
            compact.find_active(data, lo..hi);
            let mut raw = Vec::with_capacity((hi - lo) * compact.len());
            for r in lo..hi {
                let img = data.image_raw(r);
                raw.extend(compact.active.iter().map(|&f| img[f]));
            }
            chunks.push(EvalChunk {
                lo,
                hi,
                active: compact.active.clone(),
                raw,
            });
            lo = hi;
        }
        EvalSet {
            labels: data.t.clone(),
            chunks,
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
        net: &TwoLayerNet<f32, P>,
        (c0, c1): (usize, usize),
        scratch: &mut EvalScratch,
        ws: &mut [f32],
    ) -> zeronn::Result<usize> {
        let shape = net.shape();
        let mut correct = 0;
        for c in &self.chunks[c0..c1] {
            let k = c.active.len().max(1);
            let n = c.hi - c.lo;
            scratch.x.resize(n * k, 0.0);
            let x = &mut scratch.x[..n * k];
            if c.active.is_empty() {
                x.fill(0.0);
            } else {
                pixels::to_unit_f32(&c.raw, x);
            }
            scratch.compact.active.clone_from(&c.active);
            let cnet = scratch
                .compact
                .load(&shape, net.params())?
                .with_backend(net.backend())?;
            correct += cnet.count_correct(x, &self.labels[c.lo..c.hi], ws)?;
        }
        Ok(correct)
    }

    /// The fraction of all images `net` classifies correctly.
    pub fn accuracy<P: AsRef<[f32]>>(
        &self,
        net: &TwoLayerNet<f32, P>,
        ws: &mut [f32],
    ) -> zeronn::Result<f64> {
        let mut scratch = EvalScratch::default();
        Ok(
            self.count_correct(net, (0, self.chunks()), &mut scratch, ws)? as f64
                / self.len() as f64,
        )
    }
}

/// Scratch space for [`EvalSet::count_correct`].
#[derive(Debug, Default)]
pub struct EvalScratch {
    compact: Compact,
    x: Vec<f32>,
}
