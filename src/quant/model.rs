//! The int8 model format: the f32 format's container ([`crate::model`]: magic `ZRNN`, version
//! 2, little-endian, the header and payload CRCs, 32-byte layer records, the payload 64-byte
//! aligned) with element type 2, int8, validated as completely and run in place the same way.
//!
//! Layers (BatchNorm and Dropout are folded into the Affines before quantizing):
//!
//! | kind | layer | fields |
//! | --- | --- | --- |
//! | 1 | Affine | `a` input, `b` output, `c` input zero point (i32), `d` input scale (f32 bits), `e` output zero point, `f` output scale, `g` weight layout (0 [`WeightLayout::Rows`], 1 [`WeightLayout::Dsp`]) |
//! | 2 | Relu | `a` width; only right after an Affine or a Convolution, whose clamp it becomes |
//! | 4 | SoftmaxWithLoss | `a` classes; last, if at all (the class is the argmax of the int8 logits) |
//! | 7 | Convolution | as in the f32 format: `a` channels, `b` height, `c` width of its input; `d` filters; `e` kernel height × 65536 + kernel width; `f` stride; `g` pad (its quantization is in the payload) |
//! | 8 | Pooling | as in the f32 format: `a` channels, `b` height, `c` width of its input; `d` window height; `e` window width; `f` stride (max pooling; the scale and zero point stay its input's) |
//!
//! Shapes chain as in the f32 format; the first layer is an Affine or a Convolution, and each
//! weighted layer's input zero point and scale are the previous one's output ones. The payload
//! holds, per Affine and Convolution in order: for a Convolution first its input zero point
//! (i32), input scale (f32), output zero point and output scale (16 bytes); then `W` (output ×
//! input int8 in the layer's layout, values in −127..=127, [`WeightLayout::Dsp`]'s padding zero
//! weights; a Convolution's `filters × C·FH·FW` in [`WeightLayout::Rows`], the book's order)
//! and zero bytes up to a multiple of 4, then `bias`, `multiplier` (0 or in `[2^30, 2^31)`)
//! and `shift` (−31..=30), one i32 per output (filter) each (see [`QAffine`],
//! [`QConvolution`]).

use crate::error::{Error, Result, check_len, mul};
use crate::model::{
    FIXED_HEADER_LEN, LAYER_RECORD_LEN, LITTLE_ENDIAN, MAGIC, MAX_LAYERS, ModelError, VERSION,
    check_container, check_head, crc32, header_crc, header_len, layer_of, u16_at, u32_at,
};
use crate::net::{Layer, NetSpec};

use super::affine::Packed;
use super::conv::{QConvolution, max_pool};
use super::{QAffine, QParams, WeightLayout};
use crate::layers::Pooling;

/// Element type code for int8.
pub const ELEMENT_INT8: u8 = 2;

/// Payload bytes of an int8 Affine of `input × output`, its weights in `layout`.
pub const fn affine_payload_len(layout: WeightLayout, input: usize, output: usize) -> usize {
    layout.len(input, output).div_ceil(4) * 4 + 12 * output
}

/// Bytes of the int8 model of `spec` (the layers [`write()`] takes), its weights in
/// [`WeightLayout::Rows`].
pub const fn encoded_len(spec: &NetSpec) -> usize {
    encoded_len_in(spec, WeightLayout::Rows)
}

/// Bytes of the int8 model of `spec`, every Affine's weights in `layout` (a Convolution's
/// are in [`WeightLayout::Rows`]).
pub const fn encoded_len_in(spec: &NetSpec, layout: WeightLayout) -> usize {
    let mut n = header_len(spec.len());
    let mut i = 0;
    while i < spec.len() {
        match spec.layers()[i] {
            Layer::Affine { input, output } => n += affine_payload_len(layout, input, output),
            Layer::Convolution(c) => {
                let rows = affine_payload_len(WeightLayout::Rows, c.patch_len(), c.filters);
                n += CONV_QUANT_LEN + rows
            }
            _ => {}
        }
        i += 1;
    }
    n
}

/// A validated int8 model, its weights borrowed in place.
#[derive(Debug, Clone)]
pub struct QModel<'a> {
    spec: NetSpec,
    ops: [Option<QOp<'a>>; MAX_LAYERS],
    n_ops: usize,
}

/// A layer of an int8 model that computes something (a ReLU is its layer's clamp, the
/// softmax the argmax of the logits).
#[derive(Debug, Clone, Copy)]
pub enum QOp<'a> {
    /// An Affine.
    Affine(QAffine<'a>),
    /// A Convolution (an Affine over each position's patch).
    Convolution(QConvolution<'a>),
    /// Max pooling (the scale and zero point stay its input's).
    Pooling(Pooling),
}

/// The kinds of the f32 format this one uses.
const AFFINE: u16 = 1;
const RELU: u16 = 2;
const SOFTMAX: u16 = 4;
const CONVOLUTION: u16 = 7;
const POOLING: u16 = 8;

/// Most inputs of an Affine, and values of a Convolution's patch (the int32 sums of
/// [`QAffine`] must not overflow).
const MAX_INPUT: usize = 1 << 16;

/// Bytes of a Convolution's quantization at the start of its payload: the input's zero
/// point (i32) and scale (f32), the output's zero point and scale.
const CONV_QUANT_LEN: usize = 16;

/// A weighted layer's quantization as stored (input zero point, input scale's bits, output
/// zero point, output scale's bits), if every value is in range: zero points in −128..=127,
/// scales finite and positive.
fn quant_of(v: [u32; 4]) -> Option<(i32, u32, i32, u32)> {
    let scale = |bits: u32| {
        let s = f32::from_bits(bits);
        s.is_finite() && s > 0.0
    };
    let zero_point = |v: u32| (-128..=127).contains(&(v as i32));
    (zero_point(v[0]) && scale(v[1]) && zero_point(v[2]) && scale(v[3])).then_some((
        v[0] as i32,
        v[1],
        v[2] as i32,
        v[3],
    ))
}

impl<'a> QModel<'a> {
    /// Validates `bytes` completely (header fields, every quantization value's range, sizes,
    /// length, alignment, both checksums) and returns a view that borrows the weights in
    /// place. Never panics.
    pub fn from_bytes(bytes: &'a [u8]) -> core::result::Result<Self, ModelError> {
        use ModelError::*;
        let (_, n, hlen) = check_head(bytes, ELEMENT_INT8, |version| {
            (version == VERSION).then_some((LAYER_RECORD_LEN, MAX_LAYERS))
        })?;
        let record = |i: usize| FIXED_HEADER_LEN + LAYER_RECORD_LEN * i;
        let field = |i: usize, k: usize| u32_at(bytes, record(i) + 4 + 4 * k);
        // Reserved bytes: the fixed part's, each record's unused fields, the padding.
        let used = |kind: u16| match kind {
            AFFINE | CONVOLUTION => 7,
            POOLING => 6,
            _ => 1,
        };
        let reserved = (26..32)
            .chain((0..n).flat_map(|i| {
                let r = record(i);
                (r + 2..r + 4).chain(r + 4 + 4 * used(u16_at(bytes, r))..r + LAYER_RECORD_LEN)
            }))
            .chain(record(n)..hlen);
        if let Some(offset) = reserved.into_iter().find(|&o| bytes[o] != 0) {
            return Err(ReservedNonZero { offset });
        }
        // The layer list (shapes checked as the f32 format checks them), and each Affine's
        // quantization (a Convolution's is in its payload).
        let mut spec = NetSpec::new(&[]);
        let mut dims = None;
        let mut payload = 0u64;
        let mut quant = [(0i32, 0u32, 0i32, 0u32); MAX_LAYERS];
        let mut layouts = [WeightLayout::Rows; MAX_LAYERS];
        for (i, q) in quant.iter_mut().enumerate().take(n) {
            let kind = u16_at(bytes, record(i));
            if !matches!(kind, AFFINE | RELU | SOFTMAX | CONVOLUTION | POOLING) {
                return Err(UnknownLayerKind { layer: i, kind });
            }
            let fields: [u32; 7] = core::array::from_fn(|k| field(i, k));
            let (layer, out) = layer_of(i, kind, fields, VERSION, dims)?;
            let after = |pred: fn(&Layer) -> bool| i > 0 && pred(&spec.layers()[i - 1]);
            match layer {
                Layer::Affine { input, output } => {
                    if input > MAX_INPUT {
                        return Err(LayerSizes { layer: i });
                    }
                    let Some(qv) = quant_of([field(i, 2), field(i, 3), field(i, 4), field(i, 5)])
                    else {
                        return Err(LayerValue { layer: i });
                    };
                    let Some(layout) = WeightLayout::from_code(field(i, 6)) else {
                        return Err(LayerValue { layer: i });
                    };
                    *q = qv;
                    layouts[i] = layout;
                    let (wi, wo) = match layout {
                        WeightLayout::Rows => (input as u64, output as u64),
                        WeightLayout::Dsp => (
                            (input as u64).div_ceil(4) * 4,
                            (output as u64).div_ceil(4) * 4,
                        ),
                    };
                    // Sizes up to 2^32 each: their product can overflow u64.
                    let Some(wlen) = wi.checked_mul(wo) else {
                        return Err(LayerSizes { layer: i });
                    };
                    payload = payload.saturating_add(wlen.div_ceil(4) * 4 + 12 * output as u64);
                }
                Layer::Convolution(c) => {
                    // The f32 layer's checks, and the int8 kernels' limits: a patch of at most
                    // 2^16 values (the int32 sums), a pad smaller than the kernel (every
                    // window sees the input), so the output is no larger than the input and
                    // the kernel together.
                    let pad_ok = c.pad < c.kernel_h && c.pad < c.kernel_w;
                    if c.validate().is_err() || c.patch_len() > MAX_INPUT || !pad_ok {
                        return Err(LayerSizes { layer: i });
                    }
                    let Some(wlen) = (c.patch_len() as u64).checked_mul(c.filters as u64) else {
                        return Err(LayerSizes { layer: i });
                    };
                    payload = payload.saturating_add(
                        CONV_QUANT_LEN as u64 + wlen.div_ceil(4) * 4 + 12 * c.filters as u64,
                    );
                }
                Layer::Relu => {
                    let weighted =
                        |l: &Layer| matches!(l, Layer::Affine { .. } | Layer::Convolution(_));
                    if !after(weighted) {
                        return Err(LayerPlacement { layer: i });
                    }
                }
                Layer::Pooling { h, w, stride } => {
                    let d = dims.unwrap_or_default();
                    if Pooling::new(d, h, w, stride).validate().is_err() {
                        return Err(LayerSizes { layer: i });
                    }
                }
                Layer::SoftmaxWithLoss if i + 1 != n => return Err(LayerPlacement { layer: i }),
                _ => {}
            }
            spec = spec.push(layer);
            dims = Some(out);
        }
        let payload_len = u32_at(bytes, 12);
        if payload_len as u64 != payload {
            return Err(PayloadLength {
                expected: payload,
                found: payload_len,
            });
        }
        check_container(bytes, hlen, payload_len, core::mem::align_of::<i32>())?;
        // The arrays, in place, and their values' ranges; each weighted layer's input
        // quantization the previous one's output quantization.
        let mut ops = [None; MAX_LAYERS];
        let (mut at, mut n_ops) = (hlen, 0);
        let mut last_out: Option<(i32, u32)> = None;
        for (i, layer) in spec.layers().iter().enumerate() {
            let (input, output, layout, conv) = match *layer {
                Layer::Affine { input, output } => (input, output, layouts[i], None),
                Layer::Convolution(c) => {
                    let Some(qv) = quant_of(core::array::from_fn(|k| u32_at(bytes, at + 4 * k)))
                    else {
                        return Err(LayerValue { layer: i });
                    };
                    quant[i] = qv;
                    at += CONV_QUANT_LEN;
                    (c.patch_len(), c.filters, WeightLayout::Rows, Some(c))
                }
                Layer::Pooling { h, w, stride } => {
                    let d = if i == 0 {
                        spec.input_dims()
                    } else {
                        spec.dims_after(i - 1)
                    };
                    ops[n_ops] = Some(QOp::Pooling(Pooling::new(d, h, w, stride)));
                    n_ops += 1;
                    continue;
                }
                _ => continue,
            };
            let (zi, si, zo, so) = quant[i];
            if last_out.is_some_and(|o| o != (zi, si)) {
                return Err(LayerValue { layer: i });
            }
            last_out = Some((zo, so));
            let wlen = layout.len(input, output);
            let w = ints::<i8>(&bytes[at..at + wlen]);
            at += wlen.div_ceil(4) * 4;
            let [bias, multiplier, shift] = core::array::from_fn(|k| {
                ints::<i32>(&bytes[at + 4 * output * k..at + 4 * output * (k + 1)])
            });
            at += 12 * output;
            let bad_weight = match layout {
                WeightLayout::Rows => w.contains(&-128),
                // Every weight in −127..=127, and the padding zero.
                WeightLayout::Dsp => (0..wlen).any(|k| {
                    let (q, g) = (k / 16 / input.div_ceil(4), k / 16 % input.div_ceil(4));
                    let (p, e, h, b) = (k % 16 / 8, k % 8 / 4, k % 4 / 2, 1 - k % 2);
                    let (j, x) = (4 * q + 2 * p + b, 4 * g + 2 * h + e);
                    let v = if b == 1 { w[k] ^ i8::MIN } else { w[k] };
                    v == -128 || ((j >= output || x >= input) && v != 0)
                }),
            };
            let bad_multiplier = multiplier.iter().any(|&m| m != 0 && m < 1 << 30);
            let bad_shift = shift.iter().any(|&s| !(-31..=30).contains(&s));
            if bad_weight || bad_multiplier || bad_shift {
                return Err(LayerValue { layer: i });
            }
            let relu = matches!(spec.layers().get(i + 1), Some(Layer::Relu));
            let affine = QAffine {
                input,
                output,
                w,
                layout,
                bias,
                multiplier,
                shift,
                input_zero_point: zi,
                input_scale: f32::from_bits(si),
                output_zero_point: zo,
                output_scale: f32::from_bits(so),
                act_min: if relu { zo as i8 } else { -128 },
                act_max: 127,
            };
            ops[n_ops] = Some(match conv {
                Some(conv) => QOp::Convolution(QConvolution { conv, affine }),
                None => QOp::Affine(affine),
            });
            n_ops += 1;
        }
        Ok(QModel { spec, ops, n_ops })
    }

    /// The layer list.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// The layers that compute, in order.
    pub fn ops(&self) -> impl Iterator<Item = &QOp<'a>> {
        self.ops[..self.n_ops].iter().flatten()
    }

    /// The weighted layers' Affines, in order: each Affine, and each Convolution's Affine
    /// over its patches.
    pub fn layers(&self) -> impl Iterator<Item = &QAffine<'a>> {
        self.ops().filter_map(|o| match o {
            QOp::Affine(a) => Some(a),
            QOp::Convolution(c) => Some(&c.affine),
            QOp::Pooling(_) => None,
        })
    }

    /// How real inputs become int8.
    pub fn input_params(&self) -> QParams {
        let l = self.layers().next();
        QParams {
            scale: l.map_or(1.0, |l| l.input_scale),
            zero_point: l.map_or(0, |l| l.input_zero_point),
        }
    }

    /// What the int8 outputs stand for.
    pub fn output_params(&self) -> QParams {
        let l = self.layers().last();
        QParams {
            scale: l.map_or(1.0, |l| l.output_scale),
            zero_point: l.map_or(0, |l| l.output_zero_point),
        }
    }

    /// Workspace (int8 values) for [`QModel::predict`] of up to `batch` samples: two of the
    /// widest layer's outputs (a Convolution's that a Pooling takes in the same pass not
    /// counted: it is never stored whole), and the largest Convolution's scratch
    /// ([`QConvolution::scratch_len`]).
    pub const fn workspace_len(spec: &NetSpec, batch: usize) -> usize {
        let (widest, scratch) = Self::widest_and_scratch(spec);
        batch
            .saturating_mul(widest)
            .saturating_mul(2)
            .saturating_add(scratch)
    }

    /// The widest layer output (values per sample) and the largest Convolution scratch.
    const fn widest_and_scratch(spec: &NetSpec) -> (usize, usize) {
        let (mut widest, mut scratch, mut i) = (0, 0, 0);
        let mut dims = spec.input_dims();
        let layers = spec.layers();
        // Layers up to this index give outputs a pooling in the same pass takes.
        let mut pooled_to = 0;
        while i < spec.len() {
            dims = layers[i].output_dims(dims);
            if let Layer::Convolution(_) = layers[i] {
                let n = layers.len();
                let after = if i + 1 < n && matches!(layers[i + 1], Layer::Relu) {
                    i + 2
                } else {
                    i + 1
                };
                if after < n && matches!(layers[after], Layer::Pooling { .. }) {
                    pooled_to = after;
                }
            }
            if i >= pooled_to && dims.len() > widest {
                widest = dims.len();
            }
            if let Layer::Convolution(c) = layers[i] {
                let s = QConvolution::scratch_len(&c);
                if s > scratch {
                    scratch = s;
                }
            }
            i += 1;
        }
        (widest, scratch)
    }

    /// Words of packing space for the fast kernel of every layer (the sum of their
    /// [`QAffine::pack_len`]).
    pub const fn pack_len(spec: &NetSpec) -> usize {
        let (mut sum, mut i) = (0, 0);
        while i < spec.len() {
            match spec.layers()[i] {
                Layer::Affine { input, output } => sum += QAffine::pack_len(input, output),
                Layer::Convolution(c) => sum += QAffine::pack_len(c.patch_len(), c.filters),
                _ => {}
            }
            i += 1;
        }
        sum
    }

    /// Every layer's weights packed into `buf` (at least [`QModel::pack_len`] words) for the
    /// fast kernel: once, then [`QModel::predict`] as often as needed.
    pub fn pack<'p>(&self, buf: &'p mut [i32]) -> Result<QPacked<'p>> {
        let need = Self::pack_len(&self.spec);
        if buf.len() < need {
            return Err(Error::BufferLength {
                buffer: "int8 packing space",
                expected: need,
                actual: buf.len(),
            });
        }
        let mut layers: [Option<Packed<'p>>; MAX_LAYERS] = [const { None }; MAX_LAYERS];
        let mut rest = &mut buf[..need];
        for (slot, l) in layers.iter_mut().zip(self.layers()) {
            let (mine, more) = rest.split_at_mut(QAffine::pack_len(l.input, l.output));
            *slot = Some(l.pack(mine)?);
            rest = more;
        }
        Ok(QPacked { layers })
    }

    /// The int8 outputs (logits) of the samples `x` (batch × inputs, int8 in
    /// [`QModel::input_params`]), layer after layer; `ws` holds at least
    /// [`QModel::workspace_len`] for the batch. With `packed` (from [`QModel::pack`]) the
    /// layers run the fast kernel where the CPU has it; without, the reference loop (the same
    /// bits).
    pub fn predict<'w>(
        &self,
        x: &[i8],
        ws: &'w mut [i8],
        packed: Option<&QPacked<'_>>,
    ) -> Result<&'w [i8]> {
        let inputs = self.spec.input_size();
        if self.n_ops == 0 || inputs == 0 {
            return Err(Error::ZeroSize { what: "int8 model" });
        }
        if x.is_empty() || !x.len().is_multiple_of(inputs) {
            return Err(Error::ShapeMismatch {
                what: "x: a whole number of samples of the model's inputs",
                expected: inputs,
                actual: x.len(),
            });
        }
        let batch = x.len() / inputs;
        let (widest, scratch_len) = Self::widest_and_scratch(&self.spec);
        let half = batch.saturating_mul(widest);
        let need = half.saturating_mul(2).saturating_add(scratch_len);
        if ws.len() < need {
            return Err(Error::BufferLength {
                buffer: "int8 workspace",
                expected: need,
                actual: ws.len(),
            });
        }
        let (a, rest) = ws.split_at_mut(half);
        let (b, scratch) = rest.split_at_mut(half);
        let (mut src, mut dst) = (a, b);
        let (mut width, mut k, mut n) = (inputs, 0, 0);
        let ops = &self.ops[..self.n_ops];
        while let Some(Some(op)) = ops.get(n) {
            let pk = |k: usize| packed.and_then(|p| p.layers[k].as_ref());
            let from: &[i8] = if n == 0 { x } else { &src[..batch * width] };
            // A Convolution and the Pooling right after it: in one pass.
            let pool = match (op, ops.get(n + 1)) {
                (QOp::Convolution(_), Some(Some(QOp::Pooling(p)))) => Some(p),
                _ => None,
            };
            width = match (op, pool) {
                (_, Some(p)) => p.output_dims().len(),
                (QOp::Affine(l), _) => l.output,
                (QOp::Convolution(c), _) => c.conv.output_dims().len(),
                (QOp::Pooling(p), _) => p.output_dims().len(),
            };
            let out = &mut dst[..batch * width];
            match (op, pool) {
                (QOp::Convolution(c), Some(p)) => c.forward_pooled(from, out, scratch, pk(k), p)?,
                (QOp::Affine(l), _) => l.forward(from, out, pk(k))?,
                (QOp::Convolution(c), _) => c.forward(from, out, scratch, pk(k))?,
                (QOp::Pooling(p), _) => max_pool(p, from, out)?,
            }
            k += usize::from(!matches!(op, QOp::Pooling(_)));
            n += 1 + usize::from(pool.is_some());
            core::mem::swap(&mut src, &mut dst);
        }
        Ok(&src[..batch * width])
    }
}

/// Every layer of a [`QModel`] packed for the fast kernel ([`QModel::pack`]).
#[derive(Debug)]
pub struct QPacked<'p> {
    layers: [Option<Packed<'p>>; MAX_LAYERS],
}

/// A Convolution's record fields, as in the f32 format.
fn conv_fields(c: &crate::layers::Convolution) -> [u32; 7] {
    [
        c.input.channels as u32,
        c.input.height as u32,
        c.input.width as u32,
        c.filters as u32,
        ((c.kernel_h as u32) << 16) | c.kernel_w as u32,
        c.stride as u32,
        c.pad as u32,
    ]
}

/// `bytes` as integers of type `T` (i8 or i32), in place.
fn ints<T: Int>(bytes: &[u8]) -> &[T] {
    debug_assert!(bytes.len().is_multiple_of(core::mem::size_of::<T>()));
    debug_assert!((bytes.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()));
    // SAFETY: `T` is i8 or i32 (the sealed `Int`), for which every bit pattern is valid; the
    // callers pass whole elements at offsets aligned for `T` (the model's start is checked
    // aligned to 4, the payload starts 64 bytes in, and each array starts at a multiple of
    // 4 from there); the byte order is the target's (checked); the slice borrows `bytes`.
    unsafe {
        core::slice::from_raw_parts(
            bytes.as_ptr().cast::<T>(),
            bytes.len() / core::mem::size_of::<T>(),
        )
    }
}

/// The integer types an int8 model holds.
trait Int: Copy {}
impl Int for i8 {}
impl Int for i32 {}

/// Writes the int8 model of `spec` (Affine, Convolution, Pooling, Relu, SoftmaxWithLoss)
/// whose Affine and Convolution layers are `layers` (in order, each Affine in its own weight
/// layout, each Convolution's in [`WeightLayout::Rows`]; their clamps must be the ones their
/// ReLUs make) into `out`, and returns the bytes written ([`encoded_len_in`] when they share a
/// layout). Everything [`QModel::from_bytes`] checks is checked
/// first, so what it writes loads.
pub fn write(spec: &NetSpec, layers: &[QAffine<'_>], out: &mut [u8]) -> Result<usize> {
    let n = spec.len();
    if n == 0 || n > MAX_LAYERS {
        return Err(Error::TooManyLayers {
            layers: n,
            max: MAX_LAYERS,
        });
    }
    // Each Affine's payload in its own layout, its sizes checked.
    let mut total = header_len(n);
    let convs = spec
        .layers()
        .iter()
        .filter(|l| matches!(l, Layer::Convolution(_)))
        .count();
    total = total
        .checked_add(CONV_QUANT_LEN * convs)
        .ok_or(Error::SizeOverflow)?;
    for l in layers {
        let w = l.checked_weights_len()?;
        let arrays = mul(12, l.output)?;
        total = w
            .div_ceil(4)
            .checked_mul(4)
            .and_then(|w| w.checked_add(arrays))
            .and_then(|p| p.checked_add(total))
            .ok_or(Error::SizeOverflow)?;
    }
    if out.len() < total {
        return Err(Error::OutputTooShort {
            needed: total,
            actual: out.len(),
        });
    }
    let hlen = header_len(n);
    let out = &mut out[..total];
    out.fill(0);
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6] = ELEMENT_INT8;
    out[7] = LITTLE_ENDIAN;
    out[8..12].copy_from_slice(&(hlen as u32).to_le_bytes());
    out[12..16].copy_from_slice(&((total - hlen) as u32).to_le_bytes());
    out[24..26].copy_from_slice(&(n as u16).to_le_bytes());
    let (mut at, mut next, mut width) = (hlen, 0usize, 0usize);
    let bad = || Error::Unsupported {
        what: "an int8 model holds Affine and Convolution layers (each a QAffine of the same \
               sizes; a Convolution's in rows), Pooling, a ReLU right after an Affine or a \
               Convolution, and SoftmaxWithLoss last",
    };
    for (i, layer) in spec.layers().iter().enumerate() {
        let r = FIXED_HEADER_LEN + LAYER_RECORD_LEN * i;
        let mut fields = [0u32; 7];
        let dims_in = if i == 0 {
            spec.input_dims()
        } else {
            spec.dims_after(i - 1)
        };
        let kind = match *layer {
            Layer::Affine { .. } | Layer::Convolution(_) => {
                let l = layers.get(next).ok_or_else(bad)?;
                next += 1;
                let (input, output, conv) = match *layer {
                    Layer::Convolution(c) => (c.patch_len(), c.filters, true),
                    Layer::Affine { input, output } => (input, output, false),
                    _ => return Err(bad()),
                };
                if (l.input, l.output) != (input, output)
                    || (!conv && i > 0 && input != width)
                    || (conv && l.layout != WeightLayout::Rows)
                {
                    return Err(bad());
                }
                check_len("W", l.checked_weights_len()?, l.w.len())?;
                check_len("bias", output, l.bias.len())?;
                check_len("multiplier", output, l.multiplier.len())?;
                check_len("shift", output, l.shift.len())?;
                let quant = [
                    l.input_zero_point as u32,
                    l.input_scale.to_bits(),
                    l.output_zero_point as u32,
                    l.output_scale.to_bits(),
                ];
                let kind = if let Layer::Convolution(c) = *layer {
                    fields = conv_fields(&c);
                    for v in quant {
                        out[at..at + 4].copy_from_slice(&v.to_le_bytes());
                        at += 4;
                    }
                    CONVOLUTION
                } else {
                    fields = [
                        input as u32,
                        output as u32,
                        quant[0],
                        quant[1],
                        quant[2],
                        quant[3],
                        l.layout.code(),
                    ];
                    AFFINE
                };
                for (b, &v) in out[at..].iter_mut().zip(l.w) {
                    *b = v as u8;
                }
                at += l.w.len().div_ceil(4) * 4;
                for v in l.bias.iter().chain(l.multiplier).chain(l.shift) {
                    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    at += 4;
                }
                width = spec.dims_after(i).len();
                kind
            }
            Layer::Pooling { h, w, stride } => {
                let d = dims_in;
                fields = [
                    d.channels as u32,
                    d.height as u32,
                    d.width as u32,
                    h as u32,
                    w as u32,
                    stride as u32,
                    0,
                ];
                width = spec.dims_after(i).len();
                POOLING
            }
            Layer::Relu => {
                fields[0] = width as u32;
                RELU
            }
            Layer::SoftmaxWithLoss => {
                fields[0] = width as u32;
                SOFTMAX
            }
            _ => return Err(bad()),
        };
        out[r..r + 2].copy_from_slice(&kind.to_le_bytes());
        for (k, v) in fields.iter().enumerate() {
            out[r + 4 + 4 * k..r + 8 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
    }
    if next != layers.len() {
        return Err(bad());
    }
    let payload_crc = crc32(&out[hlen..]);
    out[16..20].copy_from_slice(&payload_crc.to_le_bytes());
    let hcrc = header_crc(&out[..hlen]);
    out[20..24].copy_from_slice(&hcrc.to_le_bytes());
    // What was written must load: every range checked once, by the reader.
    QModel::from_bytes(out).map_err(Error::Model)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::requant::quantize_multiplier;
    use super::*;
    use crate::model::Aligned;

    const NET: NetSpec = NetSpec::new(&[
        Layer::Affine {
            input: 6,
            output: 5,
        },
        Layer::Relu,
        Layer::Affine {
            input: 5,
            output: 3,
        },
        Layer::SoftmaxWithLoss,
    ]);
    const LEN: usize = encoded_len(&NET);

    /// Both checksums of a model whose header is `hlen` bytes made right again.
    fn reseal(b: &mut [u8], hlen: usize) {
        let c = crc32(&b[hlen..]);
        b[16..20].copy_from_slice(&c.to_le_bytes());
        let c = header_crc(&b[..hlen]);
        b[20..24].copy_from_slice(&c.to_le_bytes());
    }

    /// A small int8 net written into `out`: its layers' arrays and the bytes.
    fn small(out: &mut [u8]) -> usize {
        let w1: [i8; 30] = core::array::from_fn(|i| ((i as i32 * 37) % 255 - 127) as i8);
        let w2: [i8; 15] = core::array::from_fn(|i| ((i as i32 * 53) % 255 - 127) as i8);
        let (b1, b2) = ([100, -200, 300, 0, 5], [-7, 70, 700]);
        let (m, s) = quantize_multiplier(0.0123);
        let (m1, s1, m2, s2) = ([m; 5], [s; 5], [m; 3], [s; 3]);
        let l1 = QAffine {
            input: 6,
            output: 5,
            w: &w1,
            layout: WeightLayout::Rows,
            bias: &b1,
            multiplier: &m1,
            shift: &s1,
            input_zero_point: -128,
            input_scale: 1.0 / 255.0,
            output_zero_point: -20,
            output_scale: 0.1,
            act_min: -20,
            act_max: 127,
        };
        let l2 = QAffine {
            input: 5,
            output: 3,
            w: &w2,
            layout: WeightLayout::Rows,
            bias: &b2,
            multiplier: &m2,
            shift: &s2,
            input_zero_point: -20,
            input_scale: 0.1,
            output_zero_point: 4,
            output_scale: 0.2,
            act_min: -128,
            act_max: 127,
        };
        write(&NET, &[l1, l2], out).unwrap()
    }

    #[test]
    fn a_written_model_loads_and_predicts_as_its_layers_do() {
        let mut buf = Aligned([0u8; LEN]);
        let n = small(&mut buf.0);
        assert_eq!(n, LEN);
        let m = QModel::from_bytes(&buf.0).unwrap();
        assert_eq!(m.spec(), &NET);
        assert_eq!(m.layers().count(), 2);
        assert_eq!(m.input_params().zero_point, -128);
        assert_eq!(m.output_params().scale, 0.2);
        let x: [i8; 12] = core::array::from_fn(|i| (i as i32 * 21 - 128) as i8);
        let mut ws = [0i8; QModel::workspace_len(&NET, 2)];
        let mut pack = [0i32; QModel::pack_len(&NET)];
        let packed = m.pack(&mut pack).unwrap();
        let got: [i8; 6] = m
            .predict(&x, &mut ws, Some(&packed))
            .unwrap()
            .try_into()
            .unwrap();
        let slow: [i8; 6] = m.predict(&x, &mut ws, None).unwrap().try_into().unwrap();
        assert_eq!(got, slow);
        // The same two layers by hand.
        let layers: [QAffine; 2] = core::array::from_fn(|k| *m.layers().nth(k).unwrap());
        let (mut h, mut y) = ([0i8; 10], [0i8; 6]);
        layers[0].forward_naive(&x, &mut h).unwrap();
        layers[1].forward_naive(&h, &mut y).unwrap();
        assert_eq!(got, y);
        // The ReLU became the first layer's clamp.
        assert_eq!(layers[0].act_min, -20);
        assert_eq!(layers[1].act_min, -128);
        assert!(m.predict(&x[..5], &mut ws, Some(&packed)).is_err());
        assert!(m.predict(&x, &mut ws[..5], None).is_err());
    }

    /// A small conv net: Convolution 3 filters 3×3 pad 1 over 1×6×6, ReLU, Pooling 2×2,
    /// Affine 27 → 4, SoftmaxWithLoss.
    const CONV: crate::layers::Convolution =
        crate::layers::Convolution::new(crate::layers::Dims::new(1, 6, 6), 3, 3).pad(1);
    const CONV_NET: NetSpec = NetSpec::new(&[
        Layer::Convolution(CONV),
        Layer::Relu,
        Layer::Pooling {
            h: 2,
            w: 2,
            stride: 2,
        },
        Layer::Affine {
            input: 27,
            output: 4,
        },
        Layer::SoftmaxWithLoss,
    ]);
    const CONV_LEN: usize = encoded_len(&CONV_NET);

    fn small_conv(out: &mut [u8]) -> usize {
        let w1: [i8; 27] = core::array::from_fn(|i| ((i as i32 * 41) % 255 - 127) as i8);
        let w2: [i8; 108] = core::array::from_fn(|i| ((i as i32 * 29) % 255 - 127) as i8);
        let (b1, b2) = ([100, -900, 30], [-7, 70, 700, 0]);
        let (m, s) = quantize_multiplier(0.0093);
        let (m1, s1, m2, s2) = ([m; 3], [s; 3], [m; 4], [s; 4]);
        let conv = QAffine {
            input: 9,
            output: 3,
            w: &w1,
            layout: WeightLayout::Rows,
            bias: &b1,
            multiplier: &m1,
            shift: &s1,
            input_zero_point: -128,
            input_scale: 1.0 / 255.0,
            output_zero_point: -10,
            output_scale: 0.1,
            act_min: -10,
            act_max: 127,
        };
        let fc = QAffine {
            input: 27,
            output: 4,
            w: &w2,
            bias: &b2,
            multiplier: &m2,
            shift: &s2,
            input_zero_point: -10,
            input_scale: 0.1,
            output_zero_point: 4,
            output_scale: 0.2,
            act_min: -128,
            ..conv
        };
        write(&CONV_NET, &[conv, fc], out).unwrap()
    }

    #[test]
    fn a_conv_model_loads_and_predicts_as_its_layers_do() {
        let mut buf = Aligned([0u8; CONV_LEN]);
        assert_eq!(small_conv(&mut buf.0), CONV_LEN);
        let m = QModel::from_bytes(&buf.0).unwrap();
        assert_eq!(m.spec(), &CONV_NET);
        assert_eq!(m.ops().count(), 3);
        assert_eq!(m.layers().count(), 2);
        let x: [i8; 72] = core::array::from_fn(|i| ((i as i32 * 67) % 256 - 128) as i8);
        let mut ws = [0i8; QModel::workspace_len(&CONV_NET, 2)];
        let mut pack = [0i32; QModel::pack_len(&CONV_NET)];
        let packed = m.pack(&mut pack).unwrap();
        let got: [i8; 8] = m
            .predict(&x, &mut ws, Some(&packed))
            .unwrap()
            .try_into()
            .unwrap();
        let slow: [i8; 8] = m.predict(&x, &mut ws, None).unwrap().try_into().unwrap();
        assert_eq!(got, slow);
        // By hand: the direct convolution (its ReLU the clamp), the pooling, the Affine.
        let Some(QOp::Convolution(c)) = m.ops().next() else {
            panic!("the first layer is the Convolution")
        };
        assert_eq!(c.affine.act_min, -10);
        let (mut h, mut p, mut y) = ([0i8; 216], [0i8; 54], [0i8; 8]);
        c.forward_naive(&x, &mut h).unwrap();
        max_pool(&Pooling::new(CONV.output_dims(), 2, 2, 2), &h, &mut p).unwrap();
        m.layers()
            .nth(1)
            .unwrap()
            .forward_naive(&p, &mut y)
            .unwrap();
        assert_eq!(got, y);
        assert!(y.iter().any(|&v| v != y[0]));
        // Every single-byte change and truncation is an error.
        let good = buf.0;
        for i in 0..CONV_LEN {
            buf.0 = good;
            buf.0[i] ^= 0x81;
            assert!(QModel::from_bytes(&buf.0).is_err(), "byte {i}");
        }
        for len in 0..CONV_LEN {
            assert!(QModel::from_bytes(&good[..len]).is_err(), "{len} bytes");
        }
        // A zero point out of range in the Convolution's payload, checksums made right.
        buf.0 = good;
        let hlen = header_len(CONV_NET.len());
        buf.0[hlen..hlen + 4].copy_from_slice(&200i32.to_le_bytes());
        reseal(&mut buf.0, hlen);
        assert!(matches!(
            QModel::from_bytes(&buf.0),
            Err(ModelError::LayerValue { layer: 0 })
        ));
        // The Affine's input quantization no longer the Convolution's output one.
        buf.0 = good;
        buf.0[hlen + 8..hlen + 12].copy_from_slice(&(-9i32).to_le_bytes());
        reseal(&mut buf.0, hlen);
        assert!(matches!(
            QModel::from_bytes(&buf.0),
            Err(ModelError::LayerValue { layer: 3 })
        ));
    }

    /// A Convolution whose output no Pooling takes (run apart), a Convolution and its Pooling
    /// (in one pass), and a Pooling after that (alone): `predict` gives the layers' bits one
    /// by one; and records that break the rules are refused.
    #[test]
    fn every_kind_of_conv_layer_runs_and_bad_records_are_refused() {
        use crate::layers::{Convolution, Dims};
        const C1: Convolution = Convolution::new(Dims::new(1, 6, 6), 2, 3).pad(1);
        const C2: Convolution = Convolution::new(Dims::new(2, 6, 6), 3, 3);
        const NET2: NetSpec = NetSpec::new(&[
            Layer::Convolution(C1),
            Layer::Relu,
            Layer::Convolution(C2),
            Layer::Pooling {
                h: 2,
                w: 2,
                stride: 2,
            },
            Layer::Pooling {
                h: 2,
                w: 2,
                stride: 1,
            },
            Layer::Affine {
                input: 3,
                output: 2,
            },
        ]);
        const LEN2: usize = encoded_len(&NET2);
        let w1: [i8; 18] = core::array::from_fn(|i| ((i as i32 * 41) % 255 - 127) as i8);
        let w2: [i8; 54] = core::array::from_fn(|i| ((i as i32 * 29) % 255 - 127) as i8);
        let w3: [i8; 6] = [5, -7, 100, -127, 33, 1];
        let (m, s) = quantize_multiplier(0.011);
        let q = |input, output, w, bias, m: &'static [i32], sh: &'static [i32], zi, zo| QAffine {
            input,
            output,
            w,
            layout: WeightLayout::Rows,
            bias,
            multiplier: m,
            shift: sh,
            input_zero_point: zi,
            input_scale: 0.1,
            output_zero_point: zo,
            output_scale: 0.1,
            act_min: -128,
            act_max: 127,
        };
        let ms: &'static [i32] = std::vec![m; 3].leak();
        let ss: &'static [i32] = std::vec![s; 3].leak();
        let l1 = QAffine {
            act_min: 3,
            ..q(9, 2, &w1, &[10, -300], &ms[..2], &ss[..2], -128, 3)
        };
        let l2 = q(18, 3, &w2, &[0, 500, -90], ms, ss, 3, -2);
        let l3 = q(3, 2, &w3, &[1, 2], &ms[..2], &ss[..2], -2, 0);
        let mut buf = Aligned([0u8; LEN2]);
        write(&NET2, &[l1, l2, l3], &mut buf.0).unwrap();
        let good = buf.0;
        let m2 = QModel::from_bytes(&good).unwrap();
        let x: [i8; 36] = core::array::from_fn(|i| ((i as i32 * 83) % 256 - 128) as i8);
        let mut ws = [0i8; QModel::workspace_len(&NET2, 1)];
        let got: [i8; 2] = m2.predict(&x, &mut ws, None).unwrap().try_into().unwrap();
        // By hand, layer by layer.
        let mut ops = m2.ops();
        let (Some(QOp::Convolution(c1)), Some(QOp::Convolution(c2))) = (ops.next(), ops.next())
        else {
            panic!("two Convolutions first")
        };
        let (mut h1, mut h2, mut p1, mut p2, mut y) =
            ([0i8; 72], [0i8; 48], [0i8; 12], [0i8; 3], [0i8; 2]);
        c1.forward_naive(&x, &mut h1).unwrap();
        c2.forward_naive(&h1, &mut h2).unwrap();
        max_pool(&Pooling::new(C2.output_dims(), 2, 2, 2), &h2, &mut p1).unwrap();
        max_pool(&Pooling::new(Dims::new(3, 2, 2), 2, 2, 1), &p1, &mut p2).unwrap();
        m2.layers()
            .nth(2)
            .unwrap()
            .forward_naive(&p2, &mut y)
            .unwrap();
        assert_eq!(got, y);
        assert!(h2.iter().any(|&v| v != h2[0]) && p1 != [p1[0]; 12]);
        // Records that break the rules, checksums made right: each is refused.
        let hlen = header_len(NET2.len());
        fn rec(i: usize) -> usize {
            FIXED_HEADER_LEN + LAYER_RECORD_LEN * i
        }
        fn field(i: usize, k: usize) -> usize {
            rec(i) + 4 + 4 * k
        }
        fn put(b: &mut [u8], at: usize, v: u32) {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes())
        }
        /// What is wrong, how to make it so, the layer the error names.
        type Case = (&'static str, fn(&mut [u8]), usize);
        let cases: [Case; 6] = [
            ("a pooling of stride 0", |b| put(b, field(4, 5), 0), 4),
            (
                "a pooling that states another shape",
                |b| put(b, field(3, 0), 4),
                3,
            ),
            (
                "a ReLU after a Pooling",
                |b| {
                    b[rec(4)..rec(5)].fill(0);
                    b[rec(4)..rec(4) + 2].copy_from_slice(&2u16.to_le_bytes());
                    put(b, field(4, 0), 12)
                },
                4,
            ),
            (
                "a pad as large as the kernel",
                |b| put(b, field(0, 6), 3),
                0,
            ),
            (
                "a patch of more than 2^16 values",
                |b| {
                    put(b, field(0, 1), 300);
                    put(b, field(0, 2), 300);
                    put(b, field(0, 4), (257 << 16) | 257)
                },
                0,
            ),
            (
                "a Convolution's output not the width the ReLU after it states",
                |b| put(b, field(0, 3), 3),
                1,
            ),
        ];
        for (what, break_it, layer) in cases {
            let mut b = Aligned(good);
            break_it(&mut b.0);
            reseal(&mut b.0, hlen);
            let e = QModel::from_bytes(&b.0).expect_err(what);
            let at = match e {
                ModelError::LayerSizes { layer }
                | ModelError::LayerPlacement { layer }
                | ModelError::LayerValue { layer } => Some(layer),
                _ => None,
            };
            assert!(
                at == Some(layer) || matches!(e, ModelError::PayloadLength { .. }),
                "{what}: {e:?}"
            );
        }
        // A weight of −128 in the first Convolution's payload (after its 16 bytes of
        // quantization).
        let mut b = Aligned(good);
        b.0[hlen + 16] = 0x80;
        reseal(&mut b.0, hlen);
        assert!(matches!(
            QModel::from_bytes(&b.0),
            Err(ModelError::LayerValue { layer: 0 })
        ));
    }

    /// Every single-byte change, every truncation and a misaligned start is an error, never a
    /// panic; an f32 model is refused by its element type.
    #[test]
    fn every_corruption_is_an_error() {
        let mut buf = Aligned([0u8; LEN + 4]);
        small(&mut buf.0);
        let good = buf.0;
        for i in 0..LEN {
            for flip in [0x01u8, 0x80, 0xff] {
                buf.0 = good;
                buf.0[i] ^= flip;
                assert!(
                    QModel::from_bytes(&buf.0[..LEN]).is_err(),
                    "byte {i} ^ {flip:#x}"
                );
            }
        }
        buf.0 = good;
        for len in 0..LEN {
            assert!(QModel::from_bytes(&buf.0[..len]).is_err(), "{len} bytes");
        }
        assert!(matches!(
            QModel::from_bytes(&buf.0[..LEN + 1]),
            Err(ModelError::TrailingBytes { .. })
        ));
        let mut shifted = Aligned([0u8; LEN + 1]);
        shifted.0[1..].copy_from_slice(&good[..LEN]);
        assert!(matches!(
            QModel::from_bytes(&shifted.0[1..]),
            Err(ModelError::Misaligned { align: 4 })
        ));
        let mut f32_model = Aligned([0u8; crate::model::encoded_len(&NET)]);
        let p = [0.0f32; NET.param_len()];
        crate::model::write(&NET, &p, &[], &mut f32_model.0).unwrap();
        assert!(matches!(
            QModel::from_bytes(&f32_model.0),
            Err(ModelError::UnsupportedElementType { code: 1 })
        ));
    }

    /// The same net with its weights in the DSP layout: it loads, predicts the same bits (the
    /// fast kernel and the reference loop alike), and its layout code, padding and flipped
    /// bytes are checked (checksums made right again).
    #[test]
    fn a_model_in_the_dsp_layout_predicts_the_same() {
        let mut buf = Aligned([0u8; LEN]);
        small(&mut buf.0);
        let rows = QModel::from_bytes(&buf.0).unwrap();
        let layers: [QAffine; 2] = core::array::from_fn(|k| *rows.layers().nth(k).unwrap());
        let (mut w1, mut w2) = ([0i8; 8 * 8], [0i8; 8 * 4]);
        layers[0].arrange(WeightLayout::Dsp, &mut w1).unwrap();
        layers[1].arrange(WeightLayout::Dsp, &mut w2).unwrap();
        let dsp = [
            QAffine {
                w: &w1,
                layout: WeightLayout::Dsp,
                ..layers[0]
            },
            QAffine {
                w: &w2,
                layout: WeightLayout::Dsp,
                ..layers[1]
            },
        ];
        const DLEN: usize = encoded_len_in(&NET, WeightLayout::Dsp);
        let mut dbuf = Aligned([0u8; DLEN]);
        assert_eq!(write(&NET, &dsp, &mut dbuf.0).unwrap(), DLEN);
        let m = QModel::from_bytes(&dbuf.0).unwrap();
        assert!(m.layers().all(|l| l.layout == WeightLayout::Dsp));
        let x: [i8; 12] = core::array::from_fn(|i| (i as i32 * 23 - 120) as i8);
        let mut ws = [0i8; QModel::workspace_len(&NET, 2)];
        let mut pack = [0i32; QModel::pack_len(&NET)];
        let want: [i8; 6] = rows.predict(&x, &mut ws, None).unwrap().try_into().unwrap();
        let got: [i8; 6] = m.predict(&x, &mut ws, None).unwrap().try_into().unwrap();
        assert_eq!(got, want);
        let packed = m.pack(&mut pack).unwrap();
        let got: [i8; 6] = m
            .predict(&x, &mut ws, Some(&packed))
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(got, want);
        let hlen = header_len(4);
        let reseal = |b: &mut [u8]| reseal(b, hlen);
        let good = dbuf.0;
        let layout_field = FIXED_HEADER_LEN + 4 + 4 * 6;
        // Layout code 2; padding weights of 1: output 5 of layer 1 (a "b" row: byte 0 of
        // block (1, 0)), input 6 of output 1 (byte 2 of block (0, 1)); a "b" byte of 0
        // (weight −128).
        let cases = [
            (layout_field, 2u8),
            (hlen + 16 * 2, 0x81),
            (hlen + 16 + 2, 0x81),
            (hlen, 0),
        ];
        for (at, v) in cases {
            dbuf.0 = good;
            dbuf.0[at] = v;
            reseal(&mut dbuf.0);
            assert!(
                matches!(
                    QModel::from_bytes(&dbuf.0),
                    Err(ModelError::LayerValue { .. })
                ),
                "{at}: {:?}",
                QModel::from_bytes(&dbuf.0).err()
            );
        }
        // Sizes whose padded product overflows 64 bits: an error, not a panic.
        dbuf.0 = good;
        let sizes = FIXED_HEADER_LEN + 4;
        dbuf.0[sizes..sizes + 8].fill(0xff);
        reseal(&mut dbuf.0);
        assert!(QModel::from_bytes(&dbuf.0).is_err());
        // Every byte flipped three ways, every truncation: errors.
        for i in 0..DLEN {
            for flip in [0x01u8, 0x80, 0xff] {
                dbuf.0 = good;
                dbuf.0[i] ^= flip;
                assert!(QModel::from_bytes(&dbuf.0).is_err(), "byte {i} ^ {flip:#x}");
            }
        }
        for len in 0..DLEN {
            assert!(QModel::from_bytes(&good[..len]).is_err(), "{len} bytes");
        }
    }

    /// A value out of its range, with the checksums made right again, is refused by the
    /// reader and by the writer: a weight of −128, a multiplier below 2^30, a shift of 31,
    /// zero points that do not chain.
    #[test]
    fn values_out_of_range_are_refused() {
        let mut buf = Aligned([0u8; LEN]);
        small(&mut buf.0);
        let good = buf.0;
        let hlen = header_len(4);
        let reseal = |b: &mut [u8]| reseal(b, hlen);
        let w1_bytes = 32; // 30 weights, padded to 32
        let cases: [(usize, [u8; 4]); 4] = [
            (hlen, [0x80, 0, 0, 0]),                    // W1[0] = -128 (and W1[1..4] = 0)
            (hlen + w1_bytes + 20, 5u32.to_le_bytes()), // multiplier 5
            (hlen + w1_bytes + 40, 31u32.to_le_bytes()), // shift 31
            (
                FIXED_HEADER_LEN + 2 * LAYER_RECORD_LEN + 12,
                3u32.to_le_bytes(),
            ), // layer 3's input zero point
        ];
        for (at, bytes) in cases {
            buf.0 = good;
            buf.0[at..at + 4].copy_from_slice(&bytes);
            reseal(&mut buf.0);
            assert!(
                matches!(
                    QModel::from_bytes(&buf.0),
                    Err(ModelError::LayerValue { .. })
                ),
                "{at}: {:?}",
                QModel::from_bytes(&buf.0).err()
            );
        }
    }
}
