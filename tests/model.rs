//! The on-flash model format: round trip (version 2, any layer list with BatchNorm state),
//! version 1 files still read, every header field corrupted in turn, truncated, trailing and
//! misaligned input, and no panic on any input.

use zeronn::model::{self, Model, ModelError};
use zeronn::net::{Layer, MlpOptions, Net, NetSpec};
use zeronn::random::{self, Rng, seeded};
use zeronn::{Activation, TwoLayerNet, TwoLayerShape, WeightInit};

const SHAPE: TwoLayerShape = TwoLayerShape::new(6, 4, 3);

/// Bytes held in `u64` words, so they start 8-aligned (f32 needs 4).
struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    /// An aligned copy of `bytes`, starting `shift` bytes into the aligned buffer.
    fn shifted(bytes: &[u8], shift: usize) -> Self {
        let mut raw = vec![0u8; shift + bytes.len()];
        raw[shift..].copy_from_slice(bytes);
        let words = raw
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w)
            })
            .collect();
        AlignedBytes {
            words,
            len: raw.len(),
        }
    }

    fn new(bytes: &[u8]) -> Self {
        Self::shifted(bytes, 0)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds `words.len() * 8 >= len` initialised bytes, u8 has alignment
        // 1, and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// A two-layer model of `shape` with seeded parameters, and those parameters.
fn encode(shape: TwoLayerShape) -> (AlignedBytes, Vec<f32>) {
    let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(4), 0.5);
    let params = net.params().to_vec();
    let spec = shape.spec();
    let len = model::encoded_len(&spec);
    let mut buf = vec![0u8; len];
    assert_eq!(model::write(&spec, &params, &[], &mut buf).unwrap(), len);
    (AlignedBytes::new(&buf), params)
}

/// The same model as an earlier build wrote it: version 1, 16-byte records of kind,
/// reserved, input, output, reserved.
fn encode_v1(shape: TwoLayerShape, params: &[f32]) -> AlignedBytes {
    let (i, h, o) = (
        shape.input_size as u32,
        shape.hidden_size as u32,
        shape.output_size as u32,
    );
    let act = if shape.activation == Activation::Relu {
        2
    } else {
        3
    };
    let records: [(u16, u32, u32); 4] = [(1, i, h), (act, h, h), (1, h, o), (4, o, o)];
    let hlen = 128;
    let mut b = vec![0u8; hlen + 4 * params.len()];
    b[0..4].copy_from_slice(&model::MAGIC);
    b[4..6].copy_from_slice(&1u16.to_le_bytes());
    b[6] = 1;
    b[7] = 1;
    b[8..12].copy_from_slice(&(hlen as u32).to_le_bytes());
    b[12..16].copy_from_slice(&(4 * params.len() as u32).to_le_bytes());
    b[24..26].copy_from_slice(&4u16.to_le_bytes());
    for (k, (kind, input, output)) in records.iter().enumerate() {
        let r = 32 + 16 * k;
        b[r..r + 2].copy_from_slice(&kind.to_le_bytes());
        b[r + 4..r + 8].copy_from_slice(&input.to_le_bytes());
        b[r + 8..r + 12].copy_from_slice(&output.to_le_bytes());
    }
    for (c, p) in b[hlen..].chunks_exact_mut(4).zip(params) {
        c.copy_from_slice(&p.to_le_bytes());
    }
    let crc = model::crc32(&b[hlen..]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    let hcrc = model::crc32(&b[..hlen]);
    b[20..24].copy_from_slice(&hcrc.to_le_bytes());
    AlignedBytes::new(&b)
}

/// The error `from_bytes` gives for `bytes` (copied to an aligned address).
fn error_of(bytes: &[u8]) -> ModelError {
    match Model::from_bytes(AlignedBytes::new(bytes).bytes()) {
        Ok(_) => panic!("corrupted model accepted"),
        Err(e) => e,
    }
}

#[test]
fn round_trip_runs_in_place() {
    let (enc, params) = encode(SHAPE);
    let m = Model::from_bytes(enc.bytes()).unwrap();
    assert_eq!(m.params(), &params[..]);
    assert_eq!(
        m.params().as_ptr().cast::<u8>(),
        enc.bytes()[model::header_len(4)..].as_ptr(),
        "zero-copy"
    );
    assert_eq!(m.version(), 2);
    assert_eq!(
        m.spec().layers(),
        &[
            Layer::Affine {
                input: 6,
                output: 4
            },
            Layer::Relu,
            Layer::Affine {
                input: 4,
                output: 3
            },
            Layer::SoftmaxWithLoss,
        ]
    );
    assert_eq!(m.two_layer_shape().unwrap(), SHAPE);
    let net = m.two_layer_net().unwrap();
    let x = [0.5f32; 12];
    let mut ws = [0.0f32; SHAPE.min_predict_workspace_len(2)];
    let y1 = net.predict(&x, &mut ws).unwrap().to_vec();
    let owned = TwoLayerNet::new(SHAPE, params.clone()).unwrap();
    let y2 = owned.predict(&x, &mut ws).unwrap();
    assert_eq!(&y1[..], y2);
}

#[test]
fn version_1_files_still_read() {
    for shape in [SHAPE, SHAPE.with_activation(Activation::Sigmoid)] {
        let (_, params) = encode(shape);
        let v1 = encode_v1(shape, &params);
        let m = Model::from_bytes(v1.bytes()).unwrap();
        assert_eq!(m.version(), 1);
        assert_eq!(m.two_layer_shape().unwrap(), shape);
        assert_eq!(m.params(), &params[..]);
        assert!(m.state().is_empty());
        let x = [0.25f32; 6];
        let mut ws = vec![0.0f32; shape.workspace_len(1)];
        let a = m.net().unwrap().predict(&x, &mut ws).unwrap().to_vec();
        let owned = TwoLayerNet::new(shape, params).unwrap();
        assert_eq!(owned.predict(&x, &mut ws).unwrap(), &a[..]);
    }
}

#[test]
fn any_layer_list_round_trips_with_its_state() {
    let options = MlpOptions {
        activation: Activation::Sigmoid,
        batch_norm: true,
        dropout: Some(0.25),
    };
    let spec = NetSpec::mlp(12, &[7, 5], 3, options);
    let mut net = Net::with_state(
        spec,
        vec![0.0f32; spec.param_len()],
        vec![0.0; spec.state_len()],
    )
    .unwrap();
    net.init(&mut seeded(2), WeightInit::Xavier);
    for (k, v) in net.state_mut().iter_mut().enumerate() {
        *v = 0.5 + k as f32;
    }
    let mut buf = vec![0u8; model::encoded_len(&spec)];
    model::write(&spec, net.params(), net.state(), &mut buf).unwrap();
    let held = AlignedBytes::new(&buf);
    let m = Model::from_bytes(held.bytes()).unwrap();
    assert_eq!(*m.spec(), spec);
    assert_eq!(m.params(), net.params());
    assert_eq!(m.state(), net.state());
    assert_eq!(m.two_layer_shape(), Err(ModelError::ArchitectureMismatch));
    let x: Vec<f32> = (0..24).map(|v| v as f32 / 24.0).collect();
    let mut ws = vec![0.0f32; spec.workspace_len(2)];
    let a = m.net().unwrap().predict(&x, &mut ws).unwrap().to_vec();
    assert_eq!(net.predict(&x, &mut ws).unwrap(), &a[..]);
    // A Dropout ratio out of range, written in by hand (checksums mended): refused.
    let dropout = spec
        .layers()
        .iter()
        .position(|l| matches!(l, Layer::Dropout { .. }))
        .unwrap();
    let mut bad = buf.clone();
    let r = 32 + 32 * dropout + 8;
    bad[r..r + 4].copy_from_slice(&1.5f32.to_bits().to_le_bytes());
    let hlen = model::header_len(spec.len());
    bad[20..24].fill(0);
    let hcrc = model::crc32(&bad[..hlen]);
    bad[20..24].copy_from_slice(&hcrc.to_le_bytes());
    assert_eq!(error_of(&bad), ModelError::LayerValue { layer: dropout });
}

#[test]
fn sigmoid_architecture_round_trips() {
    let shape = SHAPE.with_activation(Activation::Sigmoid);
    let (enc, _) = encode(shape);
    let m = Model::from_bytes(enc.bytes()).unwrap();
    assert_eq!(m.two_layer_shape().unwrap(), shape);
}

#[test]
fn every_header_field_corrupted_in_turn_is_rejected_with_its_error() {
    let (enc, _) = encode(SHAPE);
    let good = enc.bytes().to_vec();
    let hlen = model::header_len(4);
    let set = |off: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        b
    };
    use ModelError::*;
    assert_eq!(hlen, 192);
    assert_eq!(error_of(&set(0, b"ZRNX")), BadMagic);
    assert_eq!(
        error_of(&set(4, &3u16.to_le_bytes())),
        UnsupportedVersion { version: 3 }
    );
    assert_eq!(error_of(&set(6, &[2])), UnsupportedElementType { code: 2 });
    assert_eq!(error_of(&set(7, &[2])), UnsupportedByteOrder { code: 2 });
    assert_eq!(
        error_of(&set(8, &256u32.to_le_bytes())),
        HeaderLength {
            expected: hlen as u32,
            found: 256
        }
    );
    assert!(matches!(
        error_of(&set(12, &8u32.to_le_bytes())),
        PayloadLength { found: 8, .. }
    ));
    assert!(matches!(
        error_of(&set(16, &[0xde, 0xad, 0xbe, 0xef])),
        PayloadChecksum {
            stored: 0xefbe_adde,
            ..
        }
    ));
    assert!(matches!(
        error_of(&set(20, &[1, 2, 3, 4])),
        HeaderChecksum {
            stored: 0x0403_0201,
            ..
        }
    ));
    assert_eq!(
        error_of(&set(24, &0u16.to_le_bytes())),
        LayerCount { count: 0 }
    );
    assert_eq!(
        error_of(&set(24, &33u16.to_le_bytes())),
        LayerCount { count: 33 }
    );
    // Three records need a 128-byte header.
    assert_eq!(
        error_of(&set(24, &3u16.to_le_bytes())),
        HeaderLength {
            expected: 128,
            found: 192
        }
    );
    for off in 26..32 {
        assert_eq!(error_of(&set(off, &[1])), ReservedNonZero { offset: off });
    }
    // Layer records at 32 + 32·i: kind, reserved, then the fields a…g (4 bytes each).
    assert_eq!(
        error_of(&set(32, &9u16.to_le_bytes())),
        UnknownLayerKind { layer: 0, kind: 9 }
    );
    assert_eq!(error_of(&set(34, &[1])), ReservedNonZero { offset: 34 });
    assert_eq!(
        error_of(&set(36, &0u32.to_le_bytes())),
        LayerSizes { layer: 0 }
    );
    assert_eq!(
        error_of(&set(40, &5u32.to_le_bytes())),
        LayerSizes { layer: 1 },
        "W1's output no longer chains"
    );
    assert_eq!(error_of(&set(44, &[1])), ReservedNonZero { offset: 44 });
    assert_eq!(
        error_of(&set(68, &5u32.to_le_bytes())),
        LayerSizes { layer: 1 },
        "the activation's width is not W1's output"
    );
    assert_eq!(
        error_of(&set(72, &[1])),
        ReservedNonZero { offset: 72 },
        "a field the Relu record does not use"
    );
    assert_eq!(
        error_of(&set(100, &7u32.to_le_bytes())),
        LayerSizes { layer: 2 },
        "W2's input no longer chains"
    );
    assert_eq!(
        error_of(&set(32, &2u16.to_le_bytes())),
        ReservedNonZero { offset: 40 },
        "a Relu first: its record has W1's output in a field it does not use"
    );
    let w1_grows = (4 * (7 * 4 + 4 + 4 * 3 + 3)) as u64;
    assert_eq!(
        error_of(&set(36, &7u32.to_le_bytes())),
        PayloadLength {
            expected: w1_grows,
            found: 4 * SHAPE.param_len() as u32
        },
        "input 7 of layer 0 makes W1 larger than the payload"
    );
    // A valid-looking change the structure cannot see: Relu -> Sigmoid; the header CRC does.
    assert!(matches!(
        error_of(&set(64, &3u16.to_le_bytes())),
        HeaderChecksum { .. }
    ));
    // SoftmaxWithLoss anywhere but last.
    let mut b = set(64, &4u16.to_le_bytes());
    b[128..130].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(error_of(&b), LayerPlacement { layer: 1 });
    // Padding after the records.
    assert_eq!(
        error_of(&set(hlen - 1, &[1])),
        ReservedNonZero { offset: hlen - 1 }
    );
    // One flipped bit in the payload.
    let mut b = good.clone();
    b[hlen + 5] ^= 0x10;
    assert!(matches!(error_of(&b), PayloadChecksum { .. }));
}

#[test]
fn truncated_trailing_and_misaligned_input_is_rejected() {
    let (enc, _) = encode(SHAPE);
    let good = enc.bytes();
    let total = good.len();
    for cut in [0, 1, 31] {
        assert_eq!(error_of(&good[..cut]), ModelError::TooShort { len: cut });
    }
    assert_eq!(
        error_of(&good[..40]),
        ModelError::Truncated {
            expected: model::header_len(4),
            actual: 40
        }
    );
    assert_eq!(
        error_of(&good[..total - 1]),
        ModelError::Truncated {
            expected: total,
            actual: total - 1
        }
    );
    let mut longer = good.to_vec();
    longer.push(0);
    assert_eq!(
        error_of(&longer),
        ModelError::TrailingBytes {
            expected: total,
            actual: total + 1
        }
    );
    // The same bytes one byte off an aligned address.
    let off = AlignedBytes::shifted(good, 1);
    assert_eq!(
        Model::from_bytes(&off.bytes()[1..]).err(),
        Some(ModelError::Misaligned { align: 4 })
    );
}

#[test]
fn no_panic_on_any_single_byte_change_or_random_input() {
    let (enc, _) = encode(SHAPE);
    let good = enc.bytes().to_vec();
    for off in 0..good.len() {
        for v in [0u8, 1, 0x80, 0xff] {
            let mut b = good.clone();
            if b[off] == v {
                continue;
            }
            b[off] = v;
            assert!(
                Model::from_bytes(AlignedBytes::new(&b).bytes()).is_err(),
                "change at {off} to {v} accepted"
            );
        }
    }
    let mut r = seeded(77);
    for _ in 0..2000 {
        let len = random::index(&mut r, 400);
        let mut b: Vec<u8> = (0..len).map(|_| r.next_u32() as u8).collect();
        if len >= 4 && r.next_u32().is_multiple_of(2) {
            b[..4].copy_from_slice(&model::MAGIC);
        }
        let _ = Model::from_bytes(AlignedBytes::new(&b).bytes());
    }
}

/// A one-record model with the given Affine sizes and payload length field, checksums valid.
fn one_affine_header(input: u32, output: u32, payload_len: u32) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[0..4].copy_from_slice(&model::MAGIC);
    b[4..6].copy_from_slice(&1u16.to_le_bytes());
    b[6] = 1;
    b[7] = 1;
    b[8..12].copy_from_slice(&64u32.to_le_bytes());
    b[12..16].copy_from_slice(&payload_len.to_le_bytes());
    b[16..20].copy_from_slice(&model::crc32(&[]).to_le_bytes());
    b[24..26].copy_from_slice(&1u16.to_le_bytes());
    b[32..34].copy_from_slice(&1u16.to_le_bytes());
    b[36..40].copy_from_slice(&input.to_le_bytes());
    b[40..44].copy_from_slice(&output.to_le_bytes());
    b
}

#[test]
fn huge_layer_sizes_are_rejected_without_overflow() {
    for (i, o, len) in [
        (u32::MAX, 0x4000_0000, 0),
        (u32::MAX, u32::MAX, 0),
        (0x3FFF_FFFE, 1, 0xFFFF_FFFC),
    ] {
        let e = error_of(&one_affine_header(i, o, len));
        assert!(
            matches!(
                e,
                ModelError::PayloadLength { .. } | ModelError::Truncated { .. }
            ),
            "{i} x {o}: {e:?}"
        );
    }
}

#[test]
fn writer_refuses_bad_architectures_and_short_buffers() {
    let spec = SHAPE.spec();
    let params = vec![0.0f32; SHAPE.param_len()];
    let mut small = vec![0u8; 10];
    assert!(matches!(
        model::write(&spec, &params, &[], &mut small),
        Err(zeronn::Error::OutputTooShort { .. })
    ));
    let mut buf = vec![0u8; 4096];
    assert!(model::write(&spec, &params[1..], &[], &mut buf).is_err());
    assert!(model::write(&spec, &params, &[1.0], &mut buf).is_err());
    assert!(model::write(&NetSpec::new(&[]), &[], &[], &mut buf).is_err());
    let broken = NetSpec::new(&[
        Layer::Affine {
            input: 6,
            output: 4,
        },
        Layer::BatchNorm { features: 5 },
    ]);
    assert!(model::write(&broken, &params, &[], &mut buf).is_err());
    // Not a two-layer net: valid model, wrong architecture for TwoLayerNet.
    let one = NetSpec::new(&[Layer::Affine {
        input: 2,
        output: 2,
    }]);
    let n = model::write(&one, &[0.0; 6], &[], &mut buf).unwrap();
    let held = AlignedBytes::new(&buf[..n]);
    let m = Model::from_bytes(held.bytes()).unwrap();
    assert_eq!(m.two_layer_shape(), Err(ModelError::ArchitectureMismatch));
    assert!(m.net().is_ok());
}

/// A convolutional net (Convolution with stride, padding and a non-square kernel, Pooling)
/// round trips, predicts the same from flash, and a Pooling record whose stated shape is not
/// its input's is refused.
#[test]
fn a_conv_net_round_trips() {
    use zeronn::layers::{Convolution, Dims};
    let spec = NetSpec::new(&[
        Layer::Convolution(
            Convolution::new(Dims::new(2, 9, 8), 3, 3)
                .kernel(3, 2)
                .stride(2)
                .pad(1),
        ),
        Layer::Relu,
        Layer::Pooling {
            h: 2,
            w: 2,
            stride: 1,
        },
        Layer::Affine {
            input: 3 * 4 * 4,
            output: 4,
        },
        Layer::SoftmaxWithLoss,
    ]);
    spec.validate().unwrap();
    let mut net = Net::new(spec, vec![0.0f32; spec.param_len()]).unwrap();
    net.init(&mut seeded(3), WeightInit::He);
    let mut buf = vec![0u8; model::encoded_len(&spec)];
    model::write(&spec, net.params(), net.state(), &mut buf).unwrap();
    let held = AlignedBytes::new(&buf);
    let m = Model::from_bytes(held.bytes()).unwrap();
    assert_eq!(*m.spec(), spec);
    assert_eq!(m.params(), net.params());
    let x: Vec<f32> = (0..2 * 144).map(|v| (v % 17) as f32 / 17.0).collect();
    let mut ws = vec![0.0f32; spec.workspace_len(2)];
    let a = m.net().unwrap().predict(&x, &mut ws).unwrap().to_vec();
    assert_eq!(net.predict(&x, &mut ws).unwrap(), &a[..]);
    // The Pooling record's height (field b) changed, checksums mended: refused.
    let mut bad = buf.clone();
    let r = 32 + 32 * 2 + 8;
    bad[r..r + 4].copy_from_slice(&4u32.to_le_bytes());
    let hlen = model::header_len(spec.len());
    bad[20..24].fill(0);
    let hcrc = model::crc32(&bad[..hlen]);
    bad[20..24].copy_from_slice(&hcrc.to_le_bytes());
    assert_eq!(error_of(&bad), ModelError::LayerSizes { layer: 2 });
}
