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
};

/// The net the model holds (checked against the model's header at run time).
const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);

/// One image, as f32.
static mut X: [f32; PIXELS] = [0.0; PIXELS];
/// The workspace of one forward pass of one image: hidden and output activations.
static mut WS: [f32; SHAPE.min_predict_workspace_len(1)] =
    [0.0; SHAPE.min_predict_workspace_len(1)];

#[entry]
fn main() -> ! {
    // SAFETY: `main` runs once, with interrupts that never touch these buffers; these are the
    // only references made to them.
    let (x, ws) = unsafe { (&mut *&raw mut X, &mut *&raw mut WS) };
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
    let mut correct = 0;
    for i in 0..n {
        load_image(TEST_X, i, x);
        if i == 0 {
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
        }
        correct += (argmax(y) == TEST_T[i] as usize) as usize;
    }
    hprintln!(
        "inference: {}/{} test images correct (zeronn eval: {}/{})",
        correct,
        n,
        expected::TEST_CORRECT,
        expected::TEST_IMAGES
    );
    exit(n == expected::TEST_IMAGES && correct == expected::TEST_CORRECT)
}
