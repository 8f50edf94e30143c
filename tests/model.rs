//! The on-flash model format: round trip, every header field corrupted in turn, truncated,
//! trailing and misaligned input, and no panic on any input.

use zeronn::model::{self, LayerSpec, Model, ModelError};
use zeronn::random::{self, Rng, seeded};
use zeronn::{Activation, TwoLayerNet, TwoLayerShape};

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
    let arch = model::two_layer_architecture(&shape);
    let len = model::encoded_len(arch.len(), params.len());
    let mut buf = vec![0u8; len];
    assert_eq!(model::write(&arch, &params, &mut buf).unwrap(), len);
    (AlignedBytes::new(&buf), params)
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
    assert_eq!(
        m.layers(),
        &[
            LayerSpec::Affine {
                input: 6,
                output: 4
            },
            LayerSpec::Relu { size: 4 },
            LayerSpec::Affine {
                input: 4,
                output: 3
            },
            LayerSpec::SoftmaxWithLoss { size: 3 },
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
    assert_eq!(error_of(&set(0, b"ZRNX")), BadMagic);
    assert_eq!(
        error_of(&set(4, &2u16.to_le_bytes())),
        UnsupportedVersion { version: 2 }
    );
    assert_eq!(error_of(&set(6, &[2])), UnsupportedElementType { code: 2 });
    assert_eq!(error_of(&set(7, &[2])), UnsupportedByteOrder { code: 2 });
    assert_eq!(
        error_of(&set(8, &192u32.to_le_bytes())),
        HeaderLength {
            expected: hlen as u32,
            found: 192
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
        error_of(&set(24, &17u16.to_le_bytes())),
        LayerCount { count: 17 }
    );
    // Three records still need a 128-byte header, so the fourth record is now padding.
    assert_eq!(
        error_of(&set(24, &3u16.to_le_bytes())),
        ReservedNonZero { offset: 80 }
    );
    for off in 26..32 {
        assert_eq!(error_of(&set(off, &[1])), ReservedNonZero { offset: off });
    }
    // Layer records at 32 + 16·i: kind, reserved, input, output, reserved.
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
        error_of(&set(52, &5u32.to_le_bytes())),
        LayerSizes { layer: 1 },
        "activation input != output"
    );
    assert_eq!(
        error_of(&set(68, &7u32.to_le_bytes())),
        LayerSizes { layer: 2 },
        "W2's input no longer chains"
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
        error_of(&set(48, &3u16.to_le_bytes())),
        HeaderChecksum { .. }
    ));
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
    let arch = model::two_layer_architecture(&SHAPE);
    let params = vec![0.0f32; SHAPE.param_len()];
    let mut small = vec![0u8; 10];
    assert!(matches!(
        model::write(&arch, &params, &mut small),
        Err(zeronn::Error::OutputTooShort { .. })
    ));
    let mut buf = vec![0u8; 4096];
    assert!(model::write(&arch, &params[1..], &mut buf).is_err());
    assert!(model::write(&[], &[], &mut buf).is_err());
    let broken = [
        LayerSpec::Affine {
            input: 6,
            output: 4,
        },
        LayerSpec::Relu { size: 5 },
    ];
    assert!(model::write(&broken, &params, &mut buf).is_err());
    // Not a two-layer net: valid model, wrong architecture for TwoLayerNet.
    let one = [LayerSpec::Affine {
        input: 2,
        output: 2,
    }];
    let n = model::write(&one, &[0.0; 6], &mut buf).unwrap();
    let held = AlignedBytes::new(&buf[..n]);
    let m = Model::from_bytes(held.bytes()).unwrap();
    assert_eq!(m.two_layer_shape(), Err(ModelError::ArchitectureMismatch));
}
