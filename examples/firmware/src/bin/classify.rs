//! The template for your own board: one model in flash, whatever net it holds. The build
//! script reads the model file (ZERONN_MODEL) and writes its layer list as constants
//! (`app::LAYERS`), so the input and the workspace below are statics sized at compile time
//! from the model itself; nothing here names a shape. Replace the input with your sensor's.
//!
//! Built with the data bundle (the default feature), it classifies the embedded test images as
//! a self-check (and, for the bundle's own second model, against the desktop's classes).
//! Built with `--no-default-features`, it needs only the model.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use zeronn::functions::argmax;
use zeronn::{Model, NetSpec};
use zeronn_firmware::{APP_MODEL, app, exit};

/// The net, from the model file's own layer list.
const NET: NetSpec = NetSpec::new(app::LAYERS);

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt hands them out as `&'static mut`, safely.
    // One input and the workspace of one forward pass, sized from the model's layers.
    static mut X: [f32; NET.input_size()] = [0.0; NET.input_size()];
    static mut WS: [f32; NET.min_predict_workspace_len(1)] =
        [0.0; NET.min_predict_workspace_len(1)];
    let (x, ws) = (X, WS);
    let net = match Model::from_bytes(APP_MODEL).map(|m| (m.spec() == &NET, m)) {
        Ok((true, m)) => match m.net() {
            Ok(n) => n,
            Err(e) => {
                hprintln!("model: {}", e);
                exit(false)
            }
        },
        Ok((false, _)) => {
            hprintln!("the model is not the net its layer list was built for");
            exit(false)
        }
        Err(e) => {
            hprintln!("model rejected: {}", e);
            exit(false)
        }
    };
    hprintln!(
        "classify: {} layers, {} inputs, {} classes, {} parameters; workspace {} floats",
        NET.len(),
        NET.input_size(),
        NET.output_size(),
        NET.param_len(),
        NET.min_predict_workspace_len(1)
    );
    // Your input goes here (a sensor, a camera): `x` is one sample, as the model was trained on.
    let mut classify = |x: &[f32]| match net.predict(black_box(x), black_box(&mut ws[..])) {
        Ok(scores) => argmax(scores),
        Err(e) => {
            hprintln!("predict failed: {}", e);
            exit(false)
        }
    };
    hprintln!("an all-zero input: class {}", classify(&x[..]));
    exit(self_check(x, &mut classify))
}

/// With the bundle: the class of every embedded test image, against its label (and against
/// the desktop's classes for the bundle's own model). True if all is as it should be.
#[cfg(feature = "bundle")]
fn self_check(x: &mut [f32], classify: &mut impl FnMut(&[f32]) -> usize) -> bool {
    use zeronn_firmware::{MLP_PRED, PIXELS, TEST_T, TEST_X, load_image};
    if x.len() != PIXELS {
        hprintln!("self-check skipped: the model does not take 28 x 28 images");
        return true;
    }
    let (mut correct, mut same) = (0, 0);
    for (i, &label) in TEST_T.iter().enumerate() {
        load_image(TEST_X, i, x);
        let class = classify(x);
        correct += usize::from(class == label as usize);
        same += usize::from(MLP_PRED.get(i) == Some(&(class as u8)));
    }
    let n = TEST_T.len();
    if app::IS_BUNDLE_MLP {
        hprintln!(
            "self-check: {}/{} correct, {}/{} classes as the desktop's",
            correct,
            n,
            same,
            n
        );
        same == n
    } else {
        hprintln!("self-check: {}/{} test images correct", correct, n);
        true
    }
}

/// Without the bundle there are no test images: nothing to check.
#[cfg(not(feature = "bundle"))]
fn self_check(_: &mut [f32], _: &mut impl FnMut(&[f32]) -> usize) -> bool {
    true
}
