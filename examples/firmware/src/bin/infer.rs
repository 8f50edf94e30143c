//! Inference from the model in flash, in place: the accuracy on the embedded test images must
//! equal what `zeronn eval` gives on the same images.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use zeronn::functions::argmax;
use zeronn::{Model, TwoLayerShape};
use zeronn_firmware::{
    MODEL, PIXELS, TEST_T, TEST_X, exit, expected, icount_start, icount_stop, load_image,
    stack_paint, stack_pointer, stack_used,
};

/// The net the model holds (checked against the model's header at run time).
const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt hands them out as `&'static mut`, safely.
    // One image, as f32, and the workspace of one forward pass (hidden and output activations).
    static mut X: [f32; PIXELS] = [0.0; PIXELS];
    static mut WS: [f32; SHAPE.min_predict_workspace_len(1)] =
        [0.0; SHAPE.min_predict_workspace_len(1)];
    let (x, ws) = (X, WS);

    let model = match Model::from_bytes(MODEL) {
        Ok(m) => m,
        Err(e) => {
            hprintln!("model rejected: {}", e);
            exit(false)
        }
    };
    let net = match model.two_layer_net() {
        Ok(n) if n.shape() == SHAPE => n,
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
    exit(n == expected::TEST_IMAGES && correct == expected::TEST_CORRECT)
}
