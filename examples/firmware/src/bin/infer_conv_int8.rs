//! int8 inference of the conv net from flash, in place (SimpleConvNet in CI, quantized by
//! `zeronn export` as `zeronn quantize` does): `QModel` with no heap, every buffer a static
//! sized by `const fn`s from the layer list known at compile time
//! (`expected::CONV_INT8_LAYERS`). Its int8 logits for every embedded test image must equal the
//! desktop's byte for byte, and its correct answers the desktop's count. The first Convolution
//! and its Pooling run once more alone (icount region 1), to count their instructions apart
//! from the Affine layers'.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use zeronn::NetSpec;
use zeronn::quant::{QConvolution, QModel, QOp, argmax};
use zeronn_firmware::{
    CONV_INT8, CONV_INT8_LOGITS, PIXELS, TEST_T, TEST_X, exit, expected, icount_start, icount_stop,
    load_image_int8, stack_paint, stack_pointer, stack_used,
};

/// The int8 conv net's layers, known at compile time.
const SPEC: NetSpec = NetSpec::new(expected::CONV_INT8_LAYERS);
/// Workspace of one inference: two layers' outputs and the largest Convolution's scratch.
const WS_LEN: usize = QModel::workspace_len(&SPEC, 1);
/// Classes (int8 logits an image).
const CLASSES: usize = SPEC.output_size();

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt hands them out as `&'static mut`, safely.
    static mut X: [i8; PIXELS] = [0; PIXELS];
    static mut WS: [i8; WS_LEN] = [0; WS_LEN];
    let (x, ws) = (X, WS);
    let model = match QModel::from_bytes(CONV_INT8) {
        Ok(m) if m.spec() == &SPEC => m,
        Ok(_) => {
            hprintln!("the int8 conv model is not the net of expected::CONV_INT8_LAYERS");
            exit(false)
        }
        Err(e) => {
            hprintln!("int8 conv model rejected: {}", e);
            exit(false)
        }
    };
    let input = model.input_params();
    let n = TEST_T.len();
    let (mut correct, mut same, mut stack) = (0, 0, 0);
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
        let want = &CONV_INT8_LOGITS[i * CLASSES..(i + 1) * CLASSES];
        same += usize::from(logits.iter().zip(want).all(|(&a, &b)| a as u8 == b));
        correct += usize::from(argmax(logits) == label as usize);
    }
    hprintln!(
        "int8 conv inference: {} layers, model {} bytes in flash, workspace {} bytes: int8 logits equal to the desktop's on {}/{}, {} correct (desktop: {}); stack of one predict: {} bytes",
        SPEC.len(),
        CONV_INT8.len(),
        WS_LEN,
        same,
        n,
        correct,
        expected::CONV_INT8_CORRECT,
        stack
    );
    // The first Convolution and the Pooling after it, alone, on the last image.
    let mut ops = model.ops();
    let head = match (ops.next(), ops.next()) {
        (Some(QOp::Convolution(c)), Some(QOp::Pooling(p))) => Some((c, p)),
        _ => None,
    };
    let head_ok = match head {
        Some((c, p)) => {
            let (out, scratch) = ws.split_at_mut(p.output_dims().len());
            let scratch = &mut scratch[..QConvolution::scratch_len(&c.conv)];
            icount_start();
            let r = c.forward_pooled(black_box(&x[..]), black_box(out), scratch, None, p);
            icount_stop();
            r.is_ok()
        }
        None => {
            hprintln!("the net does not start with a Convolution and a Pooling");
            false
        }
    };
    exit(head_ok && same == n && correct == expected::CONV_INT8_CORRECT)
}
