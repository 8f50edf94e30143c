//! On-device training with no heap: every buffer is a `static` sized by the core's `const fn`s.
//! A few hundred SGD steps on embedded MNIST images; the loss must fall and the final
//! parameters must be bit-identical to the same run on the desktop through the portable kernel
//! (`zeronn export` computes it there). Then the gradient check, on the device. Then a few
//! Adam steps of a deeper net with BatchNorm (`expected::ADAM_LAYERS`), the optimizer applied
//! during backward with no gradient buffer, bit-identical to the desktop's run too.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::mem::size_of;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use zeronn::model::crc32_params;
use zeronn::optimizer::Adam;
use zeronn::random::{self, seeded};
use zeronn::{Net, NetSpec, Sgd, TwoLayerNet, TwoLayerShape, WeightInit};
use zeronn_firmware::{
    PIXELS, TRAIN_T, TRAIN_X, UNIT, exit, expected, icount_start, icount_stop, load_image,
};

const SHAPE: TwoLayerShape = TwoLayerShape::new(PIXELS, expected::TRAIN_HIDDEN, 10);
const BATCH: usize = expected::TRAIN_BATCH;

type Params = [f32; SHAPE.param_len()];
type Workspace = [f32; SHAPE.min_workspace_len(BATCH)];
type Batch = [f32; BATCH * PIXELS];

// The buffers and the net agree, at compile time: the workspace holds exactly the forward and
// backward activations of a batch, the batch fits one fused step, and everything fits the
// board's 4 MiB of RAM.
const _: () = assert!(size_of::<Workspace>() == 4 * BATCH * (2 * expected::TRAIN_HIDDEN + 10));
const _: () = assert!(BATCH <= zeronn::layers::FUSED_MAX_BATCH);
const _: () = assert!(size_of::<Params>() + size_of::<Workspace>() + size_of::<Batch>() < 4 << 20);

/// The gradient check's net: 7×7 pooled images, 10 hidden units, 10 classes.
const CHECK: TwoLayerShape = TwoLayerShape::new(49, 10, 10);
const CHECK_BATCH: usize = 3;

/// The Adam run's net, known at compile time from the bundle.
const ADAM: NetSpec = NetSpec::new(expected::ADAM_LAYERS);
const ADAM_BATCH: usize = expected::ADAM_BATCH as usize;

/// Every buffer of the Adam run: parameters, BatchNorm state, Adam's two planes, one layer's
/// gradient, the workspace of a batch, the batch.
struct AdamBuffers {
    params: [f32; ADAM.param_len()],
    state: [f32; ADAM.state_len()],
    moments: [f32; Adam::<f32>::state_len(ADAM.param_len())],
    scratch: [f32; ADAM.apply_scratch_len()],
    ws: [f32; ADAM.min_workspace_len(ADAM_BATCH)],
    xb: [f32; ADAM_BATCH * PIXELS],
    tb: [u8; ADAM_BATCH],
    idx: [usize; ADAM_BATCH],
}

const _: () = assert!(size_of::<AdamBuffers>() < 3 << 20);

/// Every buffer of the training run, in one `static`: its size is known at compile time.
struct TrainBuffers {
    params: Params,
    ws: Workspace,
    xb: Batch,
    tb: [u8; BATCH],
    idx: [usize; BATCH],
}

/// Every buffer of the gradient check.
struct CheckBuffers {
    params: [f32; CHECK.param_len()],
    backprop: [f32; CHECK.param_len()],
    numerical: [f32; CHECK.param_len()],
    ws: [f32; CHECK.min_workspace_len(CHECK_BATCH)],
}

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt hands them out as `&'static mut`, safely.
    static mut TRAIN: TrainBuffers = TrainBuffers {
        params: [0.0; SHAPE.param_len()],
        ws: [0.0; SHAPE.min_workspace_len(BATCH)],
        xb: [0.0; BATCH * PIXELS],
        tb: [0; BATCH],
        idx: [0; BATCH],
    };
    static mut GRADCHECK: CheckBuffers = CheckBuffers {
        params: [0.0; CHECK.param_len()],
        backprop: [0.0; CHECK.param_len()],
        numerical: [0.0; CHECK.param_len()],
        ws: [0.0; CHECK.min_workspace_len(CHECK_BATCH)],
    };
    static mut ADAM_RUN: AdamBuffers = AdamBuffers {
        params: [0.0; ADAM.param_len()],
        state: [0.0; ADAM.state_len()],
        moments: [0.0; Adam::<f32>::state_len(ADAM.param_len())],
        scratch: [0.0; ADAM.apply_scratch_len()],
        ws: [0.0; ADAM.min_workspace_len(ADAM_BATCH)],
        xb: [0.0; ADAM_BATCH * PIXELS],
        tb: [0; ADAM_BATCH],
        idx: [0; ADAM_BATCH],
    };
    let t = TRAIN;
    let trained = train(&mut t.params, &mut t.ws, &mut t.xb, &mut t.tb, &mut t.idx);
    let c = GRADCHECK;
    let checked = gradient_check(&mut c.params, &mut c.backprop, &mut c.numerical, &mut c.ws);
    let adam = adam_training(ADAM_RUN);
    exit(trained && checked && adam)
}

/// The Adam run; true if it matched the desktop's bit for bit and the loss fell.
fn adam_training(b: &mut AdamBuffers) -> bool {
    let Ok(mut net) = Net::with_state(ADAM, &mut b.params[..], &mut b.state[..]) else {
        return false;
    };
    let mut rng = seeded(expected::ADAM_SEED_U64);
    net.init(&mut rng, WeightInit::He);
    let mut adam = Adam::<f32>::new(f64::from_bits(expected::ADAM_LR_BITS));
    let images = TRAIN_T.len();
    let (mut first, mut last) = (0.0f32, 0.0f32);
    for step in 0..expected::ADAM_STEPS as usize {
        random::choice(&mut rng, images, &mut b.idx[..]);
        for (k, &i) in b.idx.iter().enumerate() {
            load_image(TRAIN_X, i, &mut b.xb[k * PIXELS..(k + 1) * PIXELS]);
            b.tb[k] = TRAIN_T[i];
        }
        if step == 0 {
            icount_start();
        }
        let loss = match net.step_with(
            black_box(&b.xb[..]),
            None,
            black_box(&b.tb[..]),
            &mut adam,
            &mut b.moments[..],
            &mut b.scratch[..],
            black_box(&mut b.ws[..]),
        ) {
            Ok(l) => l,
            Err(e) => {
                hprintln!("Adam step failed: {}", e);
                return false;
            }
        };
        if step == 0 {
            icount_stop();
            first = loss;
        }
        last = loss;
    }
    let (crc, state_crc) = (crc32_params(net.params()), crc32_params(net.state()));
    let same = crc == expected::ADAM_PARAMS_CRC
        && state_crc == expected::ADAM_STATE_CRC
        && first.to_bits() == expected::ADAM_FIRST_LOSS_BITS
        && last.to_bits() == expected::ADAM_LAST_LOSS_BITS;
    hprintln!(
        "Adam training: {} layers with BatchNorm, {} parameters, {} steps of batch {}; loss {} -> {} (per mille); parameters crc {:08x}, state crc {:08x}, desktop {:08x} {:08x}: {}",
        ADAM.len(),
        ADAM.param_len(),
        expected::ADAM_STEPS,
        ADAM_BATCH,
        (first * 1000.0) as u32,
        (last * 1000.0) as u32,
        crc,
        state_crc,
        expected::ADAM_PARAMS_CRC,
        expected::ADAM_STATE_CRC,
        if same { "bit-identical" } else { "DIFFERENT" }
    );
    same && last < first
}

/// The training run; true if it matched the desktop's bit for bit and the loss fell.
fn train(
    params: &mut Params,
    ws: &mut Workspace,
    xb: &mut Batch,
    tb: &mut [u8; BATCH],
    idx: &mut [usize; BATCH],
) -> bool {
    let Ok(mut net) = TwoLayerNet::new(SHAPE, &mut params[..]) else {
        return false;
    };
    let mut rng = seeded(expected::TRAIN_SEED);
    net.init_params(&mut rng, expected::TRAIN_INIT_STD);
    let sgd = Sgd::new(f32::from_bits(expected::TRAIN_LR_BITS));
    let images = TRAIN_T.len();
    let (mut first, mut last) = (0.0f32, 0.0f32);
    for step in 0..expected::TRAIN_STEPS {
        random::choice(&mut rng, images, &mut idx[..]);
        for (b, &i) in idx.iter().enumerate() {
            load_image(TRAIN_X, i, &mut xb[b * PIXELS..(b + 1) * PIXELS]);
            tb[b] = TRAIN_T[i];
        }
        if step == 0 {
            icount_start();
        }
        let loss = match net.train_step(
            black_box(&xb[..]),
            black_box(&tb[..]),
            &sgd,
            black_box(&mut ws[..]),
        ) {
            Ok(l) => l,
            Err(e) => {
                hprintln!("train_step failed: {}", e);
                return false;
            }
        };
        if step == 0 {
            icount_stop();
            first = loss;
        }
        last = loss;
    }
    let crc = crc32_params(net.params());
    let same = crc == expected::TRAIN_PARAMS_CRC
        && first.to_bits() == expected::TRAIN_FIRST_LOSS_BITS
        && last.to_bits() == expected::TRAIN_LAST_LOSS_BITS;
    hprintln!(
        "training: {} steps of batch {} on {} images; loss {} -> {} (per mille); parameters crc {:08x}, desktop {:08x}: {}",
        expected::TRAIN_STEPS,
        BATCH,
        images,
        (first * 1000.0) as u32,
        (last * 1000.0) as u32,
        crc,
        expected::TRAIN_PARAMS_CRC,
        if same { "bit-identical" } else { "DIFFERENT" }
    );
    same && last < first
}

/// The book's gradient check on the device, in f32: backprop against central differences on a
/// small net over 7×7 pooled training images; true if every tensor agrees within 2%.
fn gradient_check(params: &mut [f32], back: &mut [f32], num: &mut [f32], ws: &mut [f32]) -> bool {
    let mut x = [0.0f32; CHECK_BATCH * 49];
    for (b, row) in x.chunks_exact_mut(49).enumerate() {
        let img = &TRAIN_X[b * PIXELS..(b + 1) * PIXELS];
        for (k, v) in row.iter_mut().enumerate() {
            let (r, c) = (k / 7 * 4, k % 7 * 4);
            let mut s = 0.0f32;
            for dr in 0..4 {
                for dc in 0..4 {
                    s += UNIT[img[(r + dr) * 28 + c + dc] as usize];
                }
            }
            *v = s / 16.0;
        }
    }
    let t = &TRAIN_T[..CHECK_BATCH];
    let Ok(mut net) = TwoLayerNet::new(CHECK, &mut params[..]) else {
        return false;
    };
    net.init_params(&mut seeded(7), 0.5);
    if net.gradient(&x, t, back, ws).is_err()
        || net.numerical_gradient(1e-2, &x, t, num, ws).is_err()
    {
        return false;
    }
    let mut ok = true;
    for tensor in CHECK.layout() {
        let (b, n) = (&back[tensor.range()], &num[tensor.range()]);
        let (mut d2, mut b2, mut n2) = (0.0f32, 0.0f32, 0.0f32);
        for (&p, &q) in b.iter().zip(n) {
            d2 += (p - q) * (p - q);
            b2 += p * p;
            n2 += q * q;
        }
        let rel = zeronn::Float::sqrt(d2) / (zeronn::Float::sqrt(b2) + zeronn::Float::sqrt(n2));
        hprintln!(
            "gradient check {}: relative error {} ppm",
            tensor.name,
            (rel * 1e6) as u32
        );
        ok &= rel < 0.02;
    }
    ok
}
