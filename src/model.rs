//! The on-flash model format: a small validated header followed by the flat parameters,
//! aligned so the net runs from them in place (zero-copy, no RAM copy).
//!
//! # Layout (version 1, all integers little-endian)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `b"ZRNN"` |
//! | 4 | 2 | format version, 1 |
//! | 6 | 1 | element type: 1 = f32 (IEEE 754 binary32) |
//! | 7 | 1 | byte order of the payload: 1 = little-endian |
//! | 8 | 4 | header length in bytes = payload offset (a multiple of 64) |
//! | 12 | 4 | payload length in bytes |
//! | 16 | 4 | CRC-32 (IEEE 802.3) of the payload |
//! | 20 | 4 | CRC-32 of the header bytes, this field taken as zero |
//! | 24 | 2 | number of layer records, 1 ..= [`MAX_LAYERS`] |
//! | 26 | 6 | reserved, zero |
//! | 32 | 16 each | layer records: kind u16, reserved u16 (0), input size u32, output size u32, reserved u32 (0) |
//! | … | | zero padding up to the header length |
//! | header length | payload length | the parameters, each Affine's `W` (input × output, row-major) then `b` |
//!
//! Layer kinds: 1 Affine, 2 Relu, 3 Sigmoid, 4 SoftmaxWithLoss. Sizes must chain (each
//! layer's input is the previous one's output); activations keep their size.
//!
//! The payload starts 64 bytes aligned relative to the start of the model; the model itself
//! must start at an address aligned for the element type (4 for f32). `include_bytes!` gives
//! no such promise: embed with [`include_model!`](crate::include_model), which aligns to 64.

use core::fmt;

use crate::error::{Error, Result};
use crate::net::{Activation, TwoLayerNet, TwoLayerShape};

/// The magic bytes at offset 0.
pub const MAGIC: [u8; 4] = *b"ZRNN";
/// The format version this build reads and writes.
pub const VERSION: u16 = 1;
/// Element type code for f32.
pub const ELEMENT_F32: u8 = 1;
/// Byte-order code for little-endian.
pub const LITTLE_ENDIAN: u8 = 1;
/// Most layer records a model may have.
pub const MAX_LAYERS: usize = 16;
/// Bytes of the fixed part of the header.
pub const FIXED_HEADER_LEN: usize = 32;
/// Bytes per layer record.
pub const LAYER_RECORD_LEN: usize = 16;
/// The payload offset is a multiple of this.
pub const PAYLOAD_ALIGN: usize = 64;

/// Header length for `layers` layer records.
pub const fn header_len(layers: usize) -> usize {
    (FIXED_HEADER_LEN + LAYER_RECORD_LEN * layers).div_ceil(PAYLOAD_ALIGN) * PAYLOAD_ALIGN
}

/// Bytes of a whole model with `layers` layer records and `params` f32 parameters.
pub const fn encoded_len(layers: usize, params: usize) -> usize {
    header_len(layers) + 4 * params
}

/// One layer of a model's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSpec {
    /// Fully connected, `input → output`, with `W` and `b` in the payload.
    Affine {
        /// Inputs.
        input: u32,
        /// Outputs.
        output: u32,
    },
    /// ReLU over `size` values.
    Relu {
        /// Width.
        size: u32,
    },
    /// Sigmoid over `size` values.
    Sigmoid {
        /// Width.
        size: u32,
    },
    /// Softmax (with cross-entropy in training) over `size` classes.
    SoftmaxWithLoss {
        /// Classes.
        size: u32,
    },
}

impl LayerSpec {
    fn kind(&self) -> u16 {
        match self {
            LayerSpec::Affine { .. } => 1,
            LayerSpec::Relu { .. } => 2,
            LayerSpec::Sigmoid { .. } => 3,
            LayerSpec::SoftmaxWithLoss { .. } => 4,
        }
    }

    /// Input and output width.
    pub fn sizes(&self) -> (u32, u32) {
        match *self {
            LayerSpec::Affine { input, output } => (input, output),
            LayerSpec::Relu { size }
            | LayerSpec::Sigmoid { size }
            | LayerSpec::SoftmaxWithLoss { size } => (size, size),
        }
    }

    /// Parameters this layer owns in the payload.
    pub fn param_len(&self) -> Option<usize> {
        match *self {
            LayerSpec::Affine { input, output } => (input as usize)
                .checked_mul(output as usize)?
                .checked_add(output as usize),
            _ => Some(0),
        }
    }
}

/// What is wrong with a serialized model. Each check has its own variant.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    /// Fewer bytes than the fixed header.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The first four bytes are not `ZRNN`.
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// An element type this build does not read.
    UnsupportedElementType {
        /// The code found.
        code: u8,
    },
    /// A byte order this target cannot use in place.
    UnsupportedByteOrder {
        /// The code found.
        code: u8,
    },
    /// No layer records, or more than [`MAX_LAYERS`].
    LayerCount {
        /// The count found.
        count: u16,
    },
    /// The header length is not the one the layer count implies.
    HeaderLength {
        /// The length the layer count implies.
        expected: u32,
        /// The length found.
        found: u32,
    },
    /// A reserved byte or padding byte is not zero.
    ReservedNonZero {
        /// Its offset in the model.
        offset: usize,
    },
    /// A layer record has an unknown kind.
    UnknownLayerKind {
        /// Which record.
        layer: usize,
        /// The kind found.
        kind: u16,
    },
    /// A layer's sizes are zero, do not chain to the previous layer, or differ between input
    /// and output of an activation.
    LayerSizes {
        /// Which record.
        layer: usize,
    },
    /// The payload length is not what the architecture requires.
    PayloadLength {
        /// Bytes the architecture requires.
        expected: u64,
        /// Bytes the header states.
        found: u32,
    },
    /// The model is shorter than header + payload.
    Truncated {
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// Bytes follow the payload.
    TrailingBytes {
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The model does not start at an address aligned for its element type.
    Misaligned {
        /// The alignment required.
        align: usize,
    },
    /// The header's checksum does not match.
    HeaderChecksum {
        /// The stored CRC-32.
        stored: u32,
        /// The CRC-32 of the bytes.
        computed: u32,
    },
    /// The payload's checksum does not match.
    PayloadChecksum {
        /// The stored CRC-32.
        stored: u32,
        /// The CRC-32 of the bytes.
        computed: u32,
    },
    /// The architecture is valid, but not the one asked for (e.g. not a two-layer net).
    ArchitectureMismatch,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ModelError::*;
        match *self {
            TooShort { len } => write!(
                f,
                "{len} bytes is shorter than the {FIXED_HEADER_LEN}-byte header"
            ),
            BadMagic => f.write_str("bad magic (not a zeronn model)"),
            UnsupportedVersion { version } => write!(
                f,
                "format version {version} is not supported (this build reads {VERSION})"
            ),
            UnsupportedElementType { code } => {
                write!(f, "element type code {code} is not supported (1 = f32)")
            }
            UnsupportedByteOrder { code } => write!(
                f,
                "byte order code {code} cannot be used in place on this target"
            ),
            LayerCount { count } => write!(f, "layer count {count} is outside 1..={MAX_LAYERS}"),
            HeaderLength { expected, found } => {
                write!(f, "header length {found} (expected {expected})")
            }
            ReservedNonZero { offset } => write!(f, "reserved byte at offset {offset} is not zero"),
            UnknownLayerKind { layer, kind } => write!(f, "layer {layer} has unknown kind {kind}"),
            LayerSizes { layer } => {
                write!(f, "layer {layer} has sizes that are zero or do not chain")
            }
            PayloadLength { expected, found } => write!(
                f,
                "payload length {found} bytes, but the architecture needs {expected}"
            ),
            Truncated { expected, actual } => write!(f, "truncated: {actual} bytes of {expected}"),
            TrailingBytes { expected, actual } => {
                write!(f, "{actual} bytes where the model has {expected}")
            }
            Misaligned { align } => write!(
                f,
                "model bytes are not {align}-byte aligned (embed with include_model!)"
            ),
            HeaderChecksum { stored, computed } => write!(
                f,
                "header checksum {stored:08x} does not match {computed:08x}"
            ),
            PayloadChecksum { stored, computed } => write!(
                f,
                "payload checksum {stored:08x} does not match {computed:08x}"
            ),
            ArchitectureMismatch => f.write_str("architecture is not the one expected"),
        }
    }
}

impl core::error::Error for ModelError {}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), with a 16-entry table.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
}

/// CRC-32 of parameters as a model stores them (little-endian bytes): the payload checksum a
/// model of these parameters would carry. A short fingerprint to compare two runs bit for bit.
pub fn crc32_params(params: &[f32]) -> u32 {
    params
        .iter()
        .fold(0xFFFF_FFFF, |crc, p| crc32_update(crc, &p.to_le_bytes()))
        ^ 0xFFFF_FFFF
}

const CRC_NIBBLE: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 4 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// One copy, not inlined at each of its callers: small code for firmware.
#[inline(never)]
fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= b as u32;
        crc = (crc >> 4) ^ CRC_NIBBLE[(crc & 15) as usize];
        crc = (crc >> 4) ^ CRC_NIBBLE[(crc & 15) as usize];
    }
    crc
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// A validated model: its architecture and its parameters, borrowed in place.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    layers: heapless::Vec<LayerSpec, MAX_LAYERS>,
    params: &'a [f32],
}

impl<'a> Model<'a> {
    /// Validates `bytes` completely (every header field, sizes against the architecture,
    /// length, alignment, the payload's checksum, then the header's, which catches any change
    /// the structural checks cannot see) and returns a view that borrows the parameters in
    /// place. Never panics.
    pub fn from_bytes(bytes: &'a [u8]) -> core::result::Result<Self, ModelError> {
        use ModelError::*;
        if bytes.len() < FIXED_HEADER_LEN {
            return Err(TooShort { len: bytes.len() });
        }
        if bytes[0..4] != MAGIC {
            return Err(BadMagic);
        }
        let version = u16_at(bytes, 4);
        if version != VERSION {
            return Err(UnsupportedVersion { version });
        }
        if bytes[6] != ELEMENT_F32 {
            return Err(UnsupportedElementType { code: bytes[6] });
        }
        if bytes[7] != LITTLE_ENDIAN || cfg!(target_endian = "big") {
            return Err(UnsupportedByteOrder { code: bytes[7] });
        }
        let count = u16_at(bytes, 24);
        if count == 0 || count as usize > MAX_LAYERS {
            return Err(LayerCount { count });
        }
        let n = count as usize;
        let hlen = header_len(n);
        let found_hlen = u32_at(bytes, 8);
        if found_hlen as usize != hlen {
            return Err(HeaderLength {
                expected: hlen as u32,
                found: found_hlen,
            });
        }
        if bytes.len() < hlen {
            return Err(Truncated {
                expected: hlen,
                actual: bytes.len(),
            });
        }
        // Reserved bytes of the fixed part, of each record, and the padding.
        let records_end = FIXED_HEADER_LEN + LAYER_RECORD_LEN * n;
        let reserved = (26..32)
            .chain((0..n).flat_map(|i| {
                let r = FIXED_HEADER_LEN + LAYER_RECORD_LEN * i;
                (r + 2..r + 4).chain(r + 12..r + 16)
            }))
            .chain(records_end..hlen);
        if let Some(offset) = reserved.into_iter().find(|&o| bytes[o] != 0) {
            return Err(ReservedNonZero { offset });
        }
        let mut layers = heapless::Vec::new();
        let mut width: Option<u32> = None;
        for i in 0..n {
            let r = FIXED_HEADER_LEN + LAYER_RECORD_LEN * i;
            let kind = u16_at(bytes, r);
            let (input, output) = (u32_at(bytes, r + 4), u32_at(bytes, r + 8));
            let spec = match kind {
                1 => LayerSpec::Affine { input, output },
                2..=4 if input != output => return Err(LayerSizes { layer: i }),
                2 => LayerSpec::Relu { size: input },
                3 => LayerSpec::Sigmoid { size: input },
                4 => LayerSpec::SoftmaxWithLoss { size: input },
                _ => return Err(UnknownLayerKind { layer: i, kind }),
            };
            if input == 0 || output == 0 || width.is_some_and(|w| w != input) {
                return Err(LayerSizes { layer: i });
            }
            width = Some(output);
            // Capacity is MAX_LAYERS and n ≤ MAX_LAYERS was checked.
            let _ = layers.push(spec);
        }
        let payload_len = u32_at(bytes, 12);
        let expected_payload = payload_bytes(&layers);
        if payload_len as u64 != expected_payload {
            return Err(PayloadLength {
                expected: expected_payload,
                found: payload_len,
            });
        }
        let Some(total) = hlen.checked_add(payload_len as usize) else {
            return Err(Truncated {
                expected: usize::MAX,
                actual: bytes.len(),
            });
        };
        if bytes.len() < total {
            return Err(Truncated {
                expected: total,
                actual: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(TrailingBytes {
                expected: total,
                actual: bytes.len(),
            });
        }
        let align = core::mem::align_of::<f32>();
        if !(bytes.as_ptr() as usize).is_multiple_of(align) {
            return Err(Misaligned { align });
        }
        let payload = &bytes[hlen..];
        let stored = u32_at(bytes, 16);
        let computed = crc32(payload);
        if stored != computed {
            return Err(PayloadChecksum { stored, computed });
        }
        let stored = u32_at(bytes, 20);
        let computed = header_crc(&bytes[..hlen]);
        if stored != computed {
            return Err(HeaderChecksum { stored, computed });
        }
        // SAFETY: `payload` starts at `bytes + hlen`; `bytes` is aligned for f32 (checked) and
        // `hlen` is a multiple of 64, so the pointer is aligned; its length is a multiple of 4
        // (it equals 4 × the parameter count); every bit pattern is a valid f32; the byte order is the
        // target's (checked); and the returned slice borrows `bytes` for the same lifetime.
        let params = unsafe {
            core::slice::from_raw_parts(payload.as_ptr().cast::<f32>(), payload.len() / 4)
        };
        Ok(Model { layers, params })
    }

    /// The architecture.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// The flat parameters, borrowed from the model bytes.
    pub fn params(&self) -> &'a [f32] {
        self.params
    }

    /// The shape, if this is a two-layer net (Affine, Relu or Sigmoid, Affine, and optionally
    /// SoftmaxWithLoss).
    pub fn two_layer_shape(&self) -> core::result::Result<TwoLayerShape, ModelError> {
        let act = |l: &LayerSpec| match l {
            LayerSpec::Relu { .. } => Some(Activation::Relu),
            LayerSpec::Sigmoid { .. } => Some(Activation::Sigmoid),
            _ => None,
        };
        match self.layers.as_slice() {
            [
                LayerSpec::Affine {
                    input,
                    output: hidden,
                },
                a,
                LayerSpec::Affine { output, .. },
                rest @ ..,
            ] if matches!(rest, [] | [LayerSpec::SoftmaxWithLoss { .. }]) && act(a).is_some() => {
                Ok(
                    TwoLayerShape::new(*input as usize, *hidden as usize, *output as usize)
                        .with_activation(act(a).unwrap_or_default()),
                )
            }
            _ => Err(ModelError::ArchitectureMismatch),
        }
    }

    /// The two-layer net this model holds, running from the model's bytes in place.
    pub fn two_layer_net(&self) -> Result<TwoLayerNet<f32, &'a [f32]>> {
        TwoLayerNet::new(self.two_layer_shape()?, self.params)
    }
}

/// Payload bytes the architecture needs (4 per parameter), saturating at `u64::MAX`: any
/// value above `u32::MAX` can never match the 32-bit payload length field.
fn payload_bytes(layers: &[LayerSpec]) -> u64 {
    layers
        .iter()
        .map(|l| match *l {
            // At most (2^32 - 1)·2^32 + 2^32: fits in u64.
            LayerSpec::Affine { input, output } => input as u64 * output as u64 + output as u64,
            _ => 0,
        })
        .fold(0u64, |acc, p| acc.saturating_add(p))
        .saturating_mul(4)
}

/// CRC-32 of a header with its own checksum field (offset 20..24) taken as zero.
fn header_crc(header: &[u8]) -> u32 {
    let crc = crc32_update(0xFFFF_FFFF, &header[..20]);
    let crc = crc32_update(crc, &[0; 4]);
    crc32_update(crc, &header[24..]) ^ 0xFFFF_FFFF
}

/// The architecture of a two-layer net as written to a model.
pub fn two_layer_architecture(shape: &TwoLayerShape) -> [LayerSpec; 4] {
    let (i, h, o) = (
        shape.input_size as u32,
        shape.hidden_size as u32,
        shape.output_size as u32,
    );
    [
        LayerSpec::Affine {
            input: i,
            output: h,
        },
        match shape.activation {
            Activation::Relu => LayerSpec::Relu { size: h },
            Activation::Sigmoid => LayerSpec::Sigmoid { size: h },
        },
        LayerSpec::Affine {
            input: h,
            output: o,
        },
        LayerSpec::SoftmaxWithLoss { size: o },
    ]
}

/// Writes a model of architecture `layers` with parameters `params` into `out` and returns
/// the bytes written ([`encoded_len`]). The architecture is validated as `from_bytes` would.
pub fn write(layers: &[LayerSpec], params: &[f32], out: &mut [u8]) -> Result<usize> {
    let n = layers.len();
    if n == 0 || n > MAX_LAYERS {
        return Err(ModelError::LayerCount {
            count: n.min(u16::MAX as usize) as u16,
        }
        .into());
    }
    let mut width: Option<u32> = None;
    for (i, l) in layers.iter().enumerate() {
        let (input, output) = l.sizes();
        if input == 0 || output == 0 || width.is_some_and(|w| w != input) {
            return Err(ModelError::LayerSizes { layer: i }.into());
        }
        width = Some(output);
    }
    let want = payload_bytes(layers);
    let have = (params.len() as u64).saturating_mul(4);
    if want != have || want > u32::MAX as u64 {
        return Err(ModelError::PayloadLength {
            expected: want,
            found: have.min(u32::MAX as u64) as u32,
        }
        .into());
    }
    let hlen = header_len(n);
    let total = encoded_len(n, params.len());
    if out.len() < total {
        return Err(Error::OutputTooShort {
            needed: total,
            actual: out.len(),
        });
    }
    let out = &mut out[..total];
    out[..hlen].fill(0);
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6] = ELEMENT_F32;
    out[7] = LITTLE_ENDIAN;
    out[8..12].copy_from_slice(&(hlen as u32).to_le_bytes());
    out[12..16].copy_from_slice(&((4 * params.len()) as u32).to_le_bytes());
    out[24..26].copy_from_slice(&(n as u16).to_le_bytes());
    for (i, l) in layers.iter().enumerate() {
        let r = FIXED_HEADER_LEN + LAYER_RECORD_LEN * i;
        let (input, output) = l.sizes();
        out[r..r + 2].copy_from_slice(&l.kind().to_le_bytes());
        out[r + 4..r + 8].copy_from_slice(&input.to_le_bytes());
        out[r + 8..r + 12].copy_from_slice(&output.to_le_bytes());
    }
    for (chunk, p) in out[hlen..].chunks_exact_mut(4).zip(params) {
        chunk.copy_from_slice(&p.to_le_bytes());
    }
    let payload_crc = crc32(&out[hlen..]);
    out[16..20].copy_from_slice(&payload_crc.to_le_bytes());
    let hcrc = header_crc(&out[..hlen]);
    out[20..24].copy_from_slice(&hcrc.to_le_bytes());
    Ok(total)
}

/// Bytes aligned to 64, for embedding a model: see [`include_model!`](crate::include_model).
#[repr(C, align(64))]
pub struct Aligned<B: ?Sized>(pub B);

/// Embeds a model file at build time, aligned for in-place use, as `&'static [u8]`:
///
/// ```ignore
/// static MODEL: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/model.zrnn"));
/// let model = zeronn::model::Model::from_bytes(MODEL)?;
/// ```
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        static ALIGNED: &$crate::model::Aligned<[u8]> =
            &$crate::model::Aligned(*include_bytes!($path));
        &ALIGNED.0
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_params_is_the_crc_of_their_bytes() {
        let p = [1.5f32, -0.25, 3.0e-8];
        let mut bytes = [0u8; 12];
        for (c, v) in bytes.chunks_exact_mut(4).zip(p) {
            c.copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(crc32_params(&p), crc32(&bytes));
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
