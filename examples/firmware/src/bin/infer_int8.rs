//! int8 inference from flash, in place: the book's 784-50-10 net quantized by `zeronn
//! quantize` (`QModel`: no heap, every buffer a static sized by `const fn`s; on a core with the
//! DSP extension the `SMLAD` kernel of the model's weight layout). Its int8 logits for every
//! embedded test image must equal the desktop's byte for byte, and its correct answers the
//! desktop's count. The same layers with their weights rearranged output by output
//! ([`WeightLayout::Rows`], in RAM) must give the same logits too, so that both layouts'
//! kernels are checked on the device (icount region 1: one inference that way); and the
//! kernel is held to the reference loop on random layers, on the device.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use zeronn::quant::{QAffine, QModel, WeightLayout, argmax};
use zeronn::{Layer, NetSpec};
use zeronn_firmware::{
    INT8_LOGITS, MODEL_INT8, PIXELS, TEST_T, TEST_X, exit, expected, icount_start, icount_stop,
    load_image_int8, stack_paint, stack_pointer, stack_used,
};

/// The int8 net's layers (checked against the model's header at run time).
const NET: NetSpec = NetSpec::new(&[
    Layer::Affine {
        input: 784,
        output: 50,
    },
    Layer::Relu,
    Layer::Affine {
        input: 50,
        output: 10,
    },
    Layer::SoftmaxWithLoss,
]);

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt hands them out as `&'static mut`, safely.
    static mut X: [i8; PIXELS] = [0; PIXELS];
    static mut WS: [i8; QModel::workspace_len(&NET, 1)] = [0; QModel::workspace_len(&NET, 1)];
    static mut W1: [i8; QAffine::weights_len(784, 50)] = [0; QAffine::weights_len(784, 50)];
    static mut W2: [i8; QAffine::weights_len(50, 10)] = [0; QAffine::weights_len(50, 10)];
    let (x, ws, w1, w2) = (X, WS, W1, W2);
    let model = match QModel::from_bytes(MODEL_INT8) {
        Ok(m) if m.spec() == &NET => m,
        Ok(_) => {
            hprintln!("the int8 model is not the 784-50-10 net");
            exit(false)
        }
        Err(e) => {
            hprintln!("int8 model rejected: {}", e);
            exit(false)
        }
    };
    let input = model.input_params();
    // The layers again, their weights output by output.
    let mut layers = model.layers();
    let (Some(l1), Some(l2)) = (layers.next(), layers.next()) else {
        exit(false)
    };
    if l1.arrange(WeightLayout::Rows, w1).is_err() || l2.arrange(WeightLayout::Rows, w2).is_err() {
        hprintln!("could not rearrange the weights");
        exit(false)
    }
    let rows = [
        QAffine {
            w: w1,
            layout: WeightLayout::Rows,
            ..*l1
        },
        QAffine {
            w: w2,
            layout: WeightLayout::Rows,
            ..*l2
        },
    ];
    let (mut hidden, mut logits_rows) = ([0i8; 50], [0i8; 10]);
    let n = TEST_T.len();
    let (mut correct, mut same, mut same_rows, mut stack) = (0, 0, 0, 0);
    for (i, &label) in TEST_T.iter().enumerate() {
        load_image_int8(TEST_X, i, input, x);
        let sp = stack_pointer();
        if i == 0 {
            stack_paint();
            icount_start();
        }
        let logits = match model.predict(black_box(&x[..]), black_box(&mut ws[..]), None) {
            Ok(l) => l,
            Err(e) => {
                hprintln!("predict failed: {}", e);
                exit(false)
            }
        };
        if i == 0 {
            icount_stop();
            stack = stack_used(sp);
        }
        let want = &INT8_LOGITS[i * 10..(i + 1) * 10];
        same += usize::from(logits.iter().zip(want).all(|(&a, &b)| a as u8 == b));
        if i == 0 {
            icount_start();
        }
        let by_rows = rows[0]
            .forward(black_box(&x[..]), &mut hidden, None)
            .and_then(|()| rows[1].forward(&hidden, &mut logits_rows, None));
        if i == 0 {
            icount_stop();
        }
        if by_rows.is_err() {
            hprintln!("the rows layout's forward failed");
            exit(false)
        }
        same_rows += usize::from(logits_rows.iter().zip(want).all(|(&a, &b)| a as u8 == b));
        correct += usize::from(argmax(logits) == label as usize);
    }
    let (checked, agree) = kernel_self_check();
    hprintln!(
        "int8 kernel on this core ({}) against the reference loop, random layers (odd sizes, every clamp, rounding ties, left shifts, sums that wrap): {}/{} equal",
        zeronn::quant::kernel_name(),
        agree,
        checked
    );
    hprintln!(
        "int8 inference: {}/{} test images correct (desktop: {}); int8 logits equal to the desktop's on {}/{} ({}/{} with the weights output by output); model {} bytes in flash; stack of one predict: {} bytes",
        correct,
        n,
        expected::INT8_CORRECT,
        same,
        n,
        same_rows,
        n,
        MODEL_INT8.len(),
        stack
    );
    exit(same == n && same_rows == n && correct == expected::INT8_CORRECT && agree == checked)
}

/// `QAffine::forward` on this core (the `SMLAD` or Helium kernel where the core has one; the
/// reference loop itself on a core without, such as the M3) against `QAffine::forward_naive`, on random layers in the rows layout: sizes that leave
/// partial vectors and blocks, random biases (sums that wrap), multipliers and shifts (small
/// right shifts round many halves), zero points and clamps. Returns (layers, layers equal).
fn kernel_self_check() -> (usize, usize) {
    const MAX_IN: usize = 100;
    const MAX_OUT: usize = 67;
    static mut W: [i8; MAX_IN * MAX_OUT] = [0; MAX_IN * MAX_OUT];
    // SAFETY: called once, from `main` only (single core, no interrupts use it).
    let w = unsafe { &mut *core::ptr::addr_of_mut!(W) };
    let mut state = 0x2545_f491u32;
    let mut next = move || {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let (mut bias, mut m, mut shift) = ([0i32; MAX_OUT], [0i32; MAX_OUT], [0i32; MAX_OUT]);
    let (mut x, mut fast, mut slow) = ([0i8; 2 * MAX_IN], [0i8; 2 * MAX_OUT], [0i8; 2 * MAX_OUT]);
    let (mut checked, mut agree) = (0, 0);
    for &input in &[1usize, 5, 16, 17, 33, 64, 100] {
        for &output in &[1usize, 2, 3, 4, 7, 64, 65, 67] {
            for trial in 0..4 {
                // Trial 0 wild (values anywhere, sums that wrap, outputs mostly clamped);
                // trials 1 and 2 near their zero points with small weights and biases and
                // small right shifts, so that most outputs fall inside the clamp and meet many
                // halves; trial 3 smaller still, with left shifts of 1 to 3.
                let wild = trial == 0;
                let (kw, kx, kb) = if trial == 3 { (1, 1, 20) } else { (3, 5, 300) };
                let small = |v: u32, k: u32| (v % (2 * k + 1)) as i32 - k as i32;
                for v in &mut w[..input * output] {
                    *v = if wild {
                        next() as i8
                    } else {
                        small(next(), kw) as i8
                    };
                }
                for j in 0..output {
                    bias[j] = if wild {
                        next() as i32
                    } else {
                        small(next(), kb)
                    };
                    m[j] = if next() % 16 == 0 {
                        0
                    } else {
                        (1 << 30) | (next() >> 2) as i32
                    };
                    shift[j] = match trial {
                        0 => (next() % 62) as i32 - 31,
                        3 => 1 + (next() % 3) as i32,
                        _ => -((next() % 5) as i32),
                    };
                }
                let batch = 1 + trial % 2;
                let z_in = (next() % 256) as i32 - 128;
                for v in &mut x[..input * batch] {
                    *v = if wild {
                        next() as i8
                    } else {
                        (z_in + small(next(), kx)).clamp(-128, 127) as i8
                    };
                }
                let z_out = (next() % 256) as i32 - 128;
                let layer = QAffine {
                    input,
                    output,
                    w: &w[..input * output],
                    layout: WeightLayout::Rows,
                    bias: &bias[..output],
                    multiplier: &m[..output],
                    shift: &shift[..output],
                    input_zero_point: z_in,
                    input_scale: 1.0,
                    output_zero_point: z_out,
                    output_scale: 1.0,
                    act_min: if trial == 1 { z_out as i8 } else { -128 },
                    act_max: 127,
                };
                let (xs, f, r) = (
                    &x[..input * batch],
                    &mut fast[..output * batch],
                    &mut slow[..output * batch],
                );
                let ok = layer.forward_naive(xs, r).is_ok() && {
                    // Every output first unlike the reference's, so that one the kernel
                    // leaves unwritten cannot agree by chance.
                    for (f, r) in f.iter_mut().zip(r.iter()) {
                        *f = !*r;
                    }
                    layer.forward(black_box(xs), f, None).is_ok()
                };
                checked += 1;
                agree += usize::from(ok && f == r);
            }
        }
    }
    (checked, agree)
}
