//! int8 inference from flash, in place: the book's 784-50-10 net quantized by `zeronn
//! quantize` (`QModel`: no heap, every buffer a static sized by `const fn`s; on a core with the
//! DSP extension the `SMLAD` kernel of the model's weight layout). Its int8 logits for every
//! embedded test image must equal the desktop's byte for byte, and its correct answers the
//! desktop's count. The same layers with their weights rearranged output by output
//! ([`WeightLayout::Rows`], in RAM) must give the same logits too, so that both layouts'
//! kernels are checked on the device (icount region 1: one inference that way).
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
    exit(same == n && same_rows == n && correct == expected::INT8_CORRECT)
}
