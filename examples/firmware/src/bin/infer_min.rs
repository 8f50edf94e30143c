//! The inference path alone, for its code size: validate the model in flash, classify one
//! image, exit with whether it was right. No printing (the size script subtracts `empty`).
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use zeronn::functions::argmax;
use zeronn::{Model, TwoLayerShape};
use zeronn_firmware::{MODEL, PIXELS, TEST_T, TEST_X, exit, load_image};

const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);

#[entry]
fn main() -> ! {
    static mut X: [f32; PIXELS] = [0.0; PIXELS];
    static mut WS: [f32; SHAPE.min_predict_workspace_len(1)] =
        [0.0; SHAPE.min_predict_workspace_len(1)];
    let (x, ws) = (X, WS);
    let i = black_box(0);
    load_image(TEST_X, i, x);
    let ok = Model::from_bytes(MODEL)
        .ok()
        .and_then(|m| m.two_layer_net().ok())
        .filter(|net| *net.spec() == SHAPE.spec())
        .and_then(|net| net.predict(x, ws).ok().map(argmax))
        .is_some_and(|c| c == TEST_T[i] as usize);
    exit(ok)
}
