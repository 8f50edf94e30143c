//! Inference of a conv net from flash, in place (SimpleConvNet in CI: conv 30×5×5, ReLU, pool
//! 2×2, Affine 100, ReLU, Affine 10): every test image's class must be the desktop's
//! (`conv-pred.u8`), and the count of correct ones the desktop's (`expected::CONV_CORRECT`).
//! Its layers are known at compile time (`expected::CONV_LAYERS`), so the workspace of one
//! inference, im2col's columns included, is a `static` sized by a const fn.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use zeronn::functions::argmax;
use zeronn::{Model, Net, NetSpec};
use zeronn_firmware::{
    CONV, CONV_PRED, PIXELS, TEST_T, TEST_X, exit, expected, icount_start, icount_stop, load_image,
    stack_paint, stack_pointer, stack_used,
};

/// The conv net's layers, known at compile time.
const SPEC: NetSpec = NetSpec::new(expected::CONV_LAYERS);

/// Its first three layers (Convolution, ReLU, Pooling in SimpleConvNet), run alone once to count
/// their instructions apart from the Affine layers'.
const HEAD: NetSpec = NetSpec::new(expected::CONV_LAYERS.split_at(3).0);

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt hands them out as `&'static mut`, safely.
    static mut X: [f32; PIXELS] = [0.0; PIXELS];
    static mut WS: [f32; SPEC.min_predict_workspace_len(1)] =
        [0.0; SPEC.min_predict_workspace_len(1)];
    let (x, ws) = (X, WS);
    let net = match Model::from_bytes(CONV).map(|m| (m.spec() == &SPEC, m)) {
        Ok((true, m)) => match m.net() {
            Ok(n) => n,
            Err(e) => {
                hprintln!("conv model: {}", e);
                exit(false)
            }
        },
        Ok((false, _)) => {
            hprintln!("conv model is not the net of expected::CONV_LAYERS");
            exit(false)
        }
        Err(e) => {
            hprintln!("conv model rejected: {}", e);
            exit(false)
        }
    };
    let (mut same, mut correct, mut stack) = (0, 0, 0);
    for (i, (&label, &want)) in TEST_T.iter().zip(CONV_PRED).enumerate() {
        load_image(TEST_X, i, x);
        let sp = stack_pointer();
        if i == 0 {
            stack_paint();
            icount_start();
        }
        let y = match net.predict(black_box(&x[..]), black_box(&mut ws[..])) {
            Ok(y) => y,
            Err(e) => {
                hprintln!("conv predict failed: {}", e);
                exit(false)
            }
        };
        if i == 0 {
            icount_stop();
            stack = stack_used(sp);
        }
        let class = argmax(y);
        same += (class == want as usize) as usize;
        correct += (class == label as usize) as usize;
    }
    let n = TEST_T.len();
    hprintln!(
        "conv inference: {} layers, {} parameters, workspace {} floats: {}/{} classes as the desktop's, {} correct (desktop: {}); stack of one predict: {} bytes",
        SPEC.len(),
        SPEC.param_len(),
        SPEC.min_predict_workspace_len(1),
        same,
        n,
        correct,
        expected::CONV_CORRECT,
        stack
    );
    // The head alone on the first image: its parameters are the first of the model's.
    load_image(TEST_X, 0, x);
    let head = match Net::new(HEAD, &net.params()[..HEAD.param_len()]) {
        Ok(h) => h,
        Err(e) => {
            hprintln!("head: {}", e);
            exit(false)
        }
    };
    icount_start();
    let ok = head
        .predict(black_box(&x[..]), black_box(&mut ws[..]))
        .is_ok();
    icount_stop();
    exit(ok && same == n && CONV_PRED.len() == n && correct == expected::CONV_CORRECT)
}
