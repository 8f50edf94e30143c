//! Inference from the models in flash, in place: the book's 784-50-10 net, whose accuracy on
//! the embedded test images must equal what `zeronn eval` gives on them, then a model of any
//! layer list (`expected::MLP_LAYERS`, the chapter 6 MLP with BatchNorm folded), whose class
//! for every image must be the desktop's.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use zeronn::functions::argmax;
use zeronn::{Model, NetSpec, TwoLayerShape};
use zeronn_firmware::{
    MLP, MLP_PRED, MODEL, PIXELS, TEST_T, TEST_X, exit, expected, icount_start, icount_stop,
    load_image, stack_paint, stack_pointer, stack_used,
};

/// The net the model holds (checked against the model's header at run time).
const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);

/// The second model's layers, known at compile time, so its workspace is a `static`.
const MLP_SPEC: NetSpec = NetSpec::new(expected::MLP_LAYERS);

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt hands them out as `&'static mut`, safely.
    // One image, as f32, and the workspace of one forward pass (hidden and output activations).
    static mut X: [f32; PIXELS] = [0.0; PIXELS];
    static mut WS: [f32; SHAPE.min_predict_workspace_len(1)] =
        [0.0; SHAPE.min_predict_workspace_len(1)];
    // The second model's workspace, sized from its layer list at compile time.
    static mut MLP_WS: [f32; MLP_SPEC.min_predict_workspace_len(1)] =
        [0.0; MLP_SPEC.min_predict_workspace_len(1)];
    let (x, ws, mlp_ws) = (X, WS, MLP_WS);

    let model = match Model::from_bytes(MODEL) {
        Ok(m) => m,
        Err(e) => {
            hprintln!("model rejected: {}", e);
            exit(false)
        }
    };
    let net = match model.two_layer_net() {
        Ok(n) if *n.spec() == SHAPE.spec() => n,
        _ => {
            hprintln!("model is not the 784-50-10 net");
            exit(false)
        }
    };
    let n = TEST_T.len();
    let (mut correct, mut stack) = (0, 0);
    for (i, &label) in TEST_T.iter().enumerate() {
        load_image(TEST_X, i, x);
        let sp = stack_pointer();
        if i == 0 {
            stack_paint();
            icount_start();
        }
        let y = match net.predict(black_box(&x[..]), black_box(&mut ws[..])) {
            Ok(y) => y,
            Err(e) => {
                hprintln!("predict failed: {}", e);
                exit(false)
            }
        };
        if i == 0 {
            icount_stop();
            stack = stack_used(sp);
        }
        correct += (argmax(y) == label as usize) as usize;
    }
    hprintln!(
        "inference: {}/{} test images correct (zeronn eval: {}/{}); stack of one predict: {} bytes",
        correct,
        n,
        expected::TEST_CORRECT,
        expected::TEST_IMAGES,
        stack
    );
    let ok = n == expected::TEST_IMAGES && correct == expected::TEST_CORRECT;
    exit(ok & mlp(x, mlp_ws))
}

/// The second model: every image's class against the desktop's; true if all agree. `x` is
/// room for one image, `ws` the model's workspace.
fn mlp(x: &mut [f32; PIXELS], ws: &mut [f32]) -> bool {
    let net = match Model::from_bytes(MLP).map(|m| (m.spec() == &MLP_SPEC, m)) {
        Ok((true, m)) => match m.net() {
            Ok(n) => n,
            Err(e) => {
                hprintln!("mlp model: {}", e);
                return false;
            }
        },
        Ok((false, _)) => {
            hprintln!("mlp model is not the net of expected::MLP_LAYERS");
            return false;
        }
        Err(e) => {
            hprintln!("mlp model rejected: {}", e);
            return false;
        }
    };
    let (mut same, mut correct) = (0, 0);
    for (i, (&label, &want)) in TEST_T.iter().zip(MLP_PRED).enumerate() {
        load_image(TEST_X, i, x);
        if i == 0 {
            icount_start();
        }
        let y = match net.predict(black_box(&x[..]), black_box(&mut ws[..])) {
            Ok(y) => y,
            Err(e) => {
                hprintln!("mlp predict failed: {}", e);
                return false;
            }
        };
        if i == 0 {
            icount_stop();
        }
        let class = argmax(y);
        same += (class == want as usize) as usize;
        correct += (class == label as usize) as usize;
    }
    let n = TEST_T.len();
    hprintln!(
        "mlp inference: {} layers, {} parameters: {}/{} classes as the desktop's, {} correct (desktop: {})",
        MLP_SPEC.len(),
        MLP_SPEC.param_len(),
        same,
        n,
        correct,
        expected::MLP_CORRECT
    );
    same == n && MLP_PRED.len() == n && correct == expected::MLP_CORRECT
}
