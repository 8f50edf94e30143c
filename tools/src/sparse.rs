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
