//! The on-flash model format: a small validated header (the layer list) followed by the flat
//! parameters and state, aligned so the net runs from them in place (zero-copy, no RAM copy).
//!
//! # Layout (version 2, all integers little-endian)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `b"ZRNN"` |
//! | 4 | 2 | format version, 2 (1 is still read, see below) |
//! | 6 | 1 | element type: 1 = f32 (IEEE 754 binary32) |
//! | 7 | 1 | byte order of the payload: 1 = little-endian |
//! | 8 | 4 | header length in bytes = payload offset (a multiple of 64) |
//! | 12 | 4 | payload length in bytes |
//! | 16 | 4 | CRC-32 (IEEE 802.3) of the payload |
//! | 20 | 4 | CRC-32 of the header bytes, this field taken as zero |
//! | 24 | 2 | number of layer records, 1 ..= [`MAX_LAYERS`] |
//! | 26 | 6 | reserved, zero |
//! | 32 | 32 each | layer records: kind u16, reserved u16 (0), then seven u32 fields `a`…`g` |
//! | … | | zero padding up to the header length |
//! | header length | payload length | the parameters ([`NetSpec::param_len`] f32 in the book's order: each Affine's `W` (input × output, row-major) then `b`, each Convolution's `W` then `b`, each BatchNorm's `gamma` then `beta`), then the state ([`NetSpec::state_len`] f32: each BatchNorm's running mean then running variance) |
//!
//! Layer records (fields not listed are zero):
//!
//! | kind | layer | fields |
//! | --- | --- | --- |
//! | 1 | Affine | `a` input, `b` output |
//! | 2 | Relu | `a` width |
//! | 3 | Sigmoid | `a` width |
//! | 4 | SoftmaxWithLoss | `a` classes |
//! | 5 | BatchNorm | `a` features |
//! | 6 | Dropout | `a` width, `b` the ratio as f32 bits, in `[0, 1)` |
//! | 7 | Convolution | `a` channels, `b` height, `c` width of its input; `d` filters; `e` kernel height × 65536 + kernel width; `f` stride; `g` pad |
//! | 8 | Pooling | `a` channels, `b` height, `c` width of its input; `d` window height; `e` window width; `f` stride |
//!
//! Widths must chain (each layer takes the previous one's output; a Pooling states the shape
//! it takes, which must be the previous layer's), the first layer must be an Affine, a
//! BatchNorm or a Convolution, and SoftmaxWithLoss comes last if at all. A Convolution's `W`
//! is `filters × channels × kernel height × kernel width` (the book's layout), then `b`.
//!
//! Version 1 (written by earlier builds) has 16-byte records (kind u16, reserved u16, input
//! u32, output u32, reserved u32), kinds 1 to 4 only, at most 16 of them, and no state. It is
//! read into the same [`Model`].
//!
//! The payload starts 64 bytes aligned relative to the start of the model; the model itself
//! must start at an address aligned for the element type (4 for f32). `include_bytes!` gives
//! no such promise: embed with [`include_model!`](crate::include_model), which aligns to 64.

use core::fmt;

use crate::error::{Error, Result};
use crate::layers::{Convolution, Dims};
use crate::net::{Layer, Net, NetSpec, TwoLayerNet, TwoLayerShape};

/// The magic bytes at offset 0.
pub const MAGIC: [u8; 4] = *b"ZRNN";
/// The format version this build writes (it reads 1 and 2).
pub const VERSION: u16 = 2;
/// Element type code for f32.
pub const ELEMENT_F32: u8 = 1;
/// Byte-order code for little-endian.
pub const LITTLE_ENDIAN: u8 = 1;
/// Most layer records a model may have (as a [`NetSpec`] holds).
pub const MAX_LAYERS: usize = crate::net::MAX_LAYERS;
/// Most layer records of a version 1 model.
pub const MAX_LAYERS_V1: usize = 16;
/// Bytes of the fixed part of the header.
pub const FIXED_HEADER_LEN: usize = 32;
/// Bytes per layer record.
pub const LAYER_RECORD_LEN: usize = 32;
/// Bytes per layer record of a version 1 model.
pub const LAYER_RECORD_LEN_V1: usize = 16;
/// The payload offset is a multiple of this.
pub const PAYLOAD_ALIGN: usize = 64;

/// Header length for `layers` layer records.
pub const fn header_len(layers: usize) -> usize {
    header_len_of(layers, LAYER_RECORD_LEN)
}

const fn header_len_of(layers: usize, record: usize) -> usize {
    (FIXED_HEADER_LEN + record * layers).div_ceil(PAYLOAD_ALIGN) * PAYLOAD_ALIGN
}

/// Bytes of a whole model of `spec`: the header, the parameters and the state.
pub const fn encoded_len(spec: &NetSpec) -> usize {
    header_len(spec.len())
        .saturating_add(4usize.saturating_mul(spec.param_len().saturating_add(spec.state_len())))
}

/// A layer's kind code in the records.
const fn kind_of(layer: &Layer) -> u16 {
    match layer {
        Layer::Affine { .. } => 1,
        Layer::Relu => 2,
        Layer::Sigmoid => 3,
        Layer::SoftmaxWithLoss => 4,
        Layer::BatchNorm { .. } => 5,
        Layer::Dropout { .. } => 6,
        Layer::Convolution(_) => 7,
        Layer::Pooling { .. } => 8,
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
    /// A layer's value is out of its range (a Dropout ratio outside `[0, 1)`).
    LayerValue {
        /// Which record.
        layer: usize,
    },
    /// A layer is where it cannot be: SoftmaxWithLoss before the last layer, or a first
    /// layer that does not state its input (only Affine, BatchNorm and Convolution do).
    LayerPlacement {
        /// Which record.
        layer: usize,
    },
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
                "format version {version} is not supported (this build reads 1 and {VERSION})"
            ),
            UnsupportedElementType { code } => {
                write!(
                    f,
                    "element type code {code} is not supported (1 = f32, 2 = int8)"
                )
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
                "model bytes are not {align}-byte aligned: embed a model with include_model!, or \
                 copy bytes read at run time into an aligned buffer (ModelFile::read, with the \
                 std feature, does)"
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
            LayerValue { layer } => write!(f, "layer {layer} has a value out of range"),
            LayerPlacement { layer } => write!(
                f,
                "layer {layer} cannot be where it is (SoftmaxWithLoss must be last, and the \
                 first layer an Affine, a BatchNorm or a Convolution)"
            ),
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

pub(crate) fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

pub(crate) fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// The fixed header's checks, in the order every reader makes them: length, magic, a version
/// that `records` knows (it gives the record length and the most records), the element type
/// `element`, the byte order, the layer count, the header length, and that the header is
/// there whole. Returns the version, the number of records and the header length.
pub(crate) fn check_head(
    bytes: &[u8],
    element: u8,
    records: impl Fn(u16) -> Option<(usize, usize)>,
) -> core::result::Result<(u16, usize, usize), ModelError> {
    use ModelError::*;
    if bytes.len() < FIXED_HEADER_LEN {
        return Err(TooShort { len: bytes.len() });
    }
    if bytes[0..4] != MAGIC {
        return Err(BadMagic);
    }
    let version = u16_at(bytes, 4);
    let Some((record_len, max_layers)) = records(version) else {
        return Err(UnsupportedVersion { version });
    };
    if bytes[6] != element {
        return Err(UnsupportedElementType { code: bytes[6] });
    }
    if bytes[7] != LITTLE_ENDIAN || cfg!(target_endian = "big") {
        return Err(UnsupportedByteOrder { code: bytes[7] });
    }
    let count = u16_at(bytes, 24);
    if count == 0 || count as usize > max_layers {
        return Err(LayerCount { count });
    }
    let n = count as usize;
    let hlen = header_len_of(n, record_len);
    let found = u32_at(bytes, 8);
    if found as usize != hlen {
        return Err(HeaderLength {
            expected: hlen as u32,
            found,
        });
    }
    if bytes.len() < hlen {
        return Err(Truncated {
            expected: hlen,
            actual: bytes.len(),
        });
    }
    Ok((version, n, hlen))
}

/// What every reader checks once the header's records are read: the model's length against
/// the header's `hlen` and `payload_len`, its alignment for `align`, then the payload's and the
/// header's checksums (the header's last, to catch what the structural checks cannot see).
pub(crate) fn check_container(
    bytes: &[u8],
    hlen: usize,
    payload_len: u32,
    align: usize,
) -> core::result::Result<(), ModelError> {
    use ModelError::*;
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
    if !(bytes.as_ptr() as usize).is_multiple_of(align) {
        return Err(Misaligned { align });
    }
    let stored = u32_at(bytes, 16);
    let computed = crc32(&bytes[hlen..]);
    if stored != computed {
        return Err(PayloadChecksum { stored, computed });
    }
    let stored = u32_at(bytes, 20);
    let computed = header_crc(&bytes[..hlen]);
    if stored != computed {
        return Err(HeaderChecksum { stored, computed });
    }
    Ok(())
}

/// A validated model: its architecture, its parameters and its state, borrowed in place.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    spec: NetSpec,
    version: u16,
    params: &'a [f32],
    state: &'a [f32],
}

/// One layer record, read from a version 1 or 2 header.
fn read_record(bytes: &[u8], r: usize, version: u16) -> (u16, [u32; 7]) {
    let kind = u16_at(bytes, r);
    let mut f = [0u32; 7];
    if version == 1 {
        f[0] = u32_at(bytes, r + 4);
        f[1] = u32_at(bytes, r + 8);
    } else {
        for (k, v) in f.iter_mut().enumerate() {
            *v = u32_at(bytes, r + 4 + 4 * k);
        }
    }
    (kind, f)
}

/// The layer of record `i` (kind and fields), checked against the shape before it (`None`
/// for the first layer); returns the layer and its output's shape.
pub(crate) fn layer_of(
    i: usize,
    kind: u16,
    f: [u32; 7],
    version: u16,
    prev: Option<Dims>,
) -> core::result::Result<(Layer, Dims), ModelError> {
    use ModelError::*;
    let sizes = LayerSizes { layer: i };
    let u = |v: u32| v as usize;
    // Version 1 records state an input and an output for every layer; version 2 records a
    // width for the layers that keep it, a shape for the convolution layers.
    let (input, output) = match (version, kind) {
        (_, 1) | (1, _) => (f[0], f[1]),
        (_, 7 | 8) => (1, 1),
        _ => (f[0], f[0]),
    };
    let shape = Dims::new(u(f[0]), u(f[1]), u(f[2]));
    let layer = match kind {
        1 => Layer::Affine {
            input: u(input),
            output: u(output),
        },
        2 => Layer::Relu,
        3 => Layer::Sigmoid,
        4 => Layer::SoftmaxWithLoss,
        5 if version >= 2 => Layer::BatchNorm { features: u(input) },
        6 if version >= 2 => {
            let ratio = f32::from_bits(f[1]);
            if !(0.0..1.0).contains(&ratio) {
                return Err(LayerValue { layer: i });
            }
            Layer::Dropout { ratio }
        }
        7 if version >= 2 => Layer::Convolution(
            Convolution::new(shape, u(f[3]), 1)
                .kernel(u(f[4] >> 16), u(f[4] & 0xFFFF))
                .stride(u(f[5]))
                .pad(u(f[6])),
        ),
        8 if version >= 2 => Layer::Pooling {
            h: u(f[3]),
            w: u(f[4]),
            stride: u(f[5]),
        },
        _ => return Err(UnknownLayerKind { layer: i, kind }),
    };
    if input == 0 || output == 0 || (kind != 1 && input != output) {
        return Err(sizes);
    }
    // The shape the layer states it takes; a Pooling's must be the previous layer's exactly,
    // the others' number of values the previous layer's.
    let stated = match layer {
        Layer::Convolution(_) | Layer::Pooling { .. } => shape,
        _ => Dims::flat(u(input)),
    };
    let dims_in = match prev {
        None if matches!(
            layer,
            Layer::Affine { .. } | Layer::BatchNorm { .. } | Layer::Convolution(_)
        ) =>
        {
            stated
        }
        None => return Err(LayerPlacement { layer: i }),
        Some(p) if matches!(layer, Layer::Pooling { .. }) && p != stated => return Err(sizes),
        Some(p) if p.len() != stated.len() => return Err(sizes),
        Some(p) => p,
    };
    let out = layer.output_dims(dims_in);
    if dims_in.is_empty() || out.is_empty() {
        return Err(sizes);
    }
    Ok((layer, out))
}

/// The fields a record of `kind` uses (the others are reserved, zero). An unknown kind is
/// reported as such, so all its fields pass here.
const fn used_fields(kind: u16) -> usize {
    match kind {
        1 | 6 => 2,
        2..=5 => 1,
        8 => 6,
        _ => 7,
    }
}

impl<'a> Model<'a> {
    /// Validates `bytes` completely (every header field, sizes against the architecture,
    /// length, alignment, the payload's checksum, then the header's, which catches any change
    /// the structural checks cannot see) and returns a view that borrows the parameters and
    /// state in place. Reads versions 1 and 2. Never panics.
    pub fn from_bytes(bytes: &'a [u8]) -> core::result::Result<Self, ModelError> {
        use ModelError::*;
        let (version, n, hlen) = check_head(bytes, ELEMENT_F32, |version| match version {
            1 => Some((LAYER_RECORD_LEN_V1, MAX_LAYERS_V1)),
            2 => Some((LAYER_RECORD_LEN, MAX_LAYERS)),
            _ => None,
        })?;
        let record_len = if version == 1 {
            LAYER_RECORD_LEN_V1
        } else {
            LAYER_RECORD_LEN
        };
        // Reserved bytes of the fixed part, of each record (the kind's unused fields too),
        // and the padding.
        let records_end = FIXED_HEADER_LEN + record_len * n;
        let reserved = (26..32)
            .chain((0..n).flat_map(|i| {
                let r = FIXED_HEADER_LEN + record_len * i;
                let used = if version == 1 {
                    12
                } else {
                    4 + 4 * used_fields(u16_at(bytes, r))
                };
                (r + 2..r + 4).chain(r + used..r + record_len)
            }))
            .chain(records_end..hlen);
        if let Some(offset) = reserved.into_iter().find(|&o| bytes[o] != 0) {
            return Err(ReservedNonZero { offset });
        }
        let mut spec = NetSpec::new(&[]);
        let mut dims: Option<Dims> = None;
        // Bytes of parameters and state, in u64 (no overflow on 32-bit targets).
        let mut payload = 0u64;
        for i in 0..n {
            let (kind, fields) = read_record(bytes, FIXED_HEADER_LEN + record_len * i, version);
            let (layer, out) = layer_of(i, kind, fields, version, dims)?;
            if matches!(layer, Layer::SoftmaxWithLoss) && i + 1 != n {
                return Err(LayerPlacement { layer: i });
            }
            payload = payload.saturating_add(match layer {
                // At most (2^32 - 1)·2^32 + 2^32 values: fits in u64.
                Layer::Affine { input, output } => {
                    (input as u64 * output as u64 + output as u64).saturating_mul(4)
                }
                Layer::BatchNorm { features } => 16 * features as u64,
                // Each factor below 2^32, and a Convolution's whole count checked by
                // `validate` below: saturating is enough here.
                Layer::Convolution(c) => (c.weight_len() as u64)
                    .saturating_add(c.filters as u64)
                    .saturating_mul(4),
                _ => 0,
            });
            dims = Some(out);
            spec = spec.push(layer);
        }
        let payload_len = u32_at(bytes, 12);
        if payload_len as u64 != payload {
            return Err(PayloadLength {
                expected: payload,
                found: payload_len,
            });
        }
        // The checks above are the spec's own (on 32-bit targets a net of a payload that fits
        // 32 bits fits `usize` too).
        if spec.validate().is_err() {
            return Err(LayerSizes { layer: 0 });
        }
        check_container(bytes, hlen, payload_len, core::mem::align_of::<f32>())?;
        let payload = &bytes[hlen..];
        // SAFETY: `payload` starts at `bytes + hlen`; `bytes` is aligned for f32 (checked) and
        // `hlen` is a multiple of 64, so the pointer is aligned; its length is a multiple of 4
        // (it equals 4 × the parameter and state count); every bit pattern is a valid f32; the
        // byte order is the target's (checked); and the slice borrows `bytes` for the same
        // lifetime.
        let values = unsafe {
            core::slice::from_raw_parts(payload.as_ptr().cast::<f32>(), payload.len() / 4)
        };
        let (params, state) = values.split_at(spec.param_len());
        Ok(Model {
            spec,
            version,
            params,
            state,
        })
    }

    /// The architecture.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// The format version the bytes were in (1 or 2).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The flat parameters, borrowed from the model bytes.
    pub fn params(&self) -> &'a [f32] {
        self.params
    }

    /// The state (BatchNorm's running statistics), borrowed from the model bytes.
    pub fn state(&self) -> &'a [f32] {
        self.state
    }

    /// The net this model holds, whatever its layers, running from the model's bytes in
    /// place.
    pub fn net(&self) -> Result<Net<f32, &'a [f32]>> {
        Net::with_state(self.spec, self.params, self.state)
    }

    /// The shape, if this is a two-layer net (Affine, Relu or Sigmoid, Affine, and optionally
    /// SoftmaxWithLoss).
    pub fn two_layer_shape(&self) -> core::result::Result<TwoLayerShape, ModelError> {
        TwoLayerShape::from_spec(&self.spec).ok_or(ModelError::ArchitectureMismatch)
    }

    /// The two-layer net this model holds, running from the model's bytes in place.
    pub fn two_layer_net(&self) -> Result<TwoLayerNet<f32, &'a [f32]>> {
        TwoLayerNet::new(self.two_layer_shape()?, self.params)
    }
}

/// CRC-32 of a header with its own checksum field (offset 20..24) taken as zero.
pub(crate) fn header_crc(header: &[u8]) -> u32 {
    let crc = crc32_update(0xFFFF_FFFF, &header[..20]);
    let crc = crc32_update(crc, &[0; 4]);
    crc32_update(crc, &header[24..]) ^ 0xFFFF_FFFF
}

/// Writes a version 2 model of `spec` with parameters `params` and state `state` into `out`
/// and returns the bytes written ([`encoded_len`]). The architecture is validated as
/// `from_bytes` would, and must fit the format (every size and the payload below 4 GiB).
pub fn write(spec: &NetSpec, params: &[f32], state: &[f32], out: &mut [u8]) -> Result<usize> {
    spec.validate()?;
    let n = spec.len();
    crate::error::check_len("params", spec.param_len(), params.len())?;
    crate::error::check_len("state", spec.state_len(), state.len())?;
    let mut dims = spec.input_dims();
    let mut records = [[0u32; 7]; MAX_LAYERS];
    for (i, l) in spec.layers().iter().enumerate() {
        let too_big = || Error::from(ModelError::LayerSizes { layer: i });
        let w = |v: usize| u32::try_from(v).map_err(|_| too_big());
        let width = dims.len();
        records[i] = match *l {
            Layer::Affine { input, output } => [w(input)?, w(output)?, 0, 0, 0, 0, 0],
            Layer::BatchNorm { features } => [w(features)?, 0, 0, 0, 0, 0, 0],
            Layer::Dropout { ratio } => [w(width)?, ratio.to_bits(), 0, 0, 0, 0, 0],
            Layer::Convolution(c) => {
                let d = c.input;
                if c.kernel_h > 0xFFFF || c.kernel_w > 0xFFFF {
                    return Err(too_big());
                }
                let kernel = (c.kernel_h << 16 | c.kernel_w) as u32;
                [
                    w(d.channels)?,
                    w(d.height)?,
                    w(d.width)?,
                    w(c.filters)?,
                    kernel,
                    w(c.stride)?,
                    w(c.pad)?,
                ]
            }
            Layer::Pooling { h, w: pw, stride } => [
                w(dims.channels)?,
                w(dims.height)?,
                w(dims.width)?,
                w(h)?,
                w(pw)?,
                w(stride)?,
                0,
            ],
            // The width it keeps: the input's.
            _ => [w(width)?, 0, 0, 0, 0, 0, 0],
        };
        dims = l.output_dims(dims);
    }
    let values = (params.len() as u64).saturating_add(state.len() as u64);
    let want = values.saturating_mul(4);
    if want > u32::MAX as u64 {
        return Err(ModelError::PayloadLength {
            expected: want,
            found: u32::MAX,
        }
        .into());
    }
    let hlen = header_len(n);
    let total = encoded_len(spec);
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
    out[12..16].copy_from_slice(&(want as u32).to_le_bytes());
    out[24..26].copy_from_slice(&(n as u16).to_le_bytes());
    for (i, l) in spec.layers().iter().enumerate() {
        let r = FIXED_HEADER_LEN + LAYER_RECORD_LEN * i;
        out[r..r + 2].copy_from_slice(&kind_of(l).to_le_bytes());
        for (k, v) in records[i].iter().enumerate() {
            out[r + 4 + 4 * k..r + 8 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
    }
    for (chunk, p) in out[hlen..]
        .chunks_exact_mut(4)
        .zip(params.iter().chain(state))
    {
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
