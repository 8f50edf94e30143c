//! `zeronn bench`: the end-to-end figures of the book's run, with GFLOP/s and the fraction of
//! the machine's measured FMA peak. Medians of repeated runs (this machine is shared and noisy).

use std::hint::black_box;
use std::time::{Duration, Instant};

use zeronn::gemm::{self, Backend, MatMut, MatRef, PACK_LEN};
use zeronn::random::{self, seeded};
use zeronn::{Layer, NetSpec, Sgd, TwoLayerNet, TwoLayerShape};

/// Median wall time of one call of `f`, over `reps` samples of `inner` calls each.
pub fn median_time(reps: usize, inner: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm up caches and lazy detection
    let mut v: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..inner.max(1) {
                f();
            }
            t.elapsed() / inner.max(1) as u32
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

/// One gemm shape to time: `C(m×n) = A(m×k)·B(k×n)`, A and/or B given transposed in memory.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// What it is in the training step.
    pub name: &'static str,
    /// Rows of C.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of C.
    pub n: usize,
    /// A is stored as its transpose (k × m row-major).
    pub a_t: bool,
    /// B is stored as its transpose (n × k row-major).
    pub b_t: bool,
}

/// The products of one training step of the book's net (batch 100), and the evaluation's.
pub const TRAINING_SHAPES: [Shape; 8] = [
    Shape {
        name: "X·W1 (forward 1)",
        m: 100,
        k: 784,
        n: 50,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "Xᵀ·dA1 (dW1)",
        m: 784,
        k: 100,
        n: 50,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "Z1·W2 (forward 2)",
        m: 100,
        k: 50,
        n: 10,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "dY·W2ᵀ (dZ1)",
        m: 100,
        k: 10,
        n: 50,
        a_t: false,
        b_t: true,
    },
    Shape {
        name: "Z1ᵀ·dY (dW2)",
        m: 50,
        k: 100,
        n: 10,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "X·W1 (evaluation, 1000 rows)",
        m: 1000,
        k: 784,
        n: 50,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "x·W1 (one image)",
        m: 1,
        k: 784,
        n: 50,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "z1·W2 (one image)",
        m: 1,
        k: 50,
        n: 10,
        a_t: false,
        b_t: false,
    },
];

/// The products of a training step of chapter 6's `optimizers` net (784-100-100-100-100-10,
/// batch 128), dense.
pub const CHAPTER6_SHAPES: [Shape; 6] = [
    Shape {
        name: "X·W1 (ch. 6 net, forward 1)",
        m: 128,
        k: 784,
        n: 100,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "Xᵀ·dZ1 (ch. 6 net, dW1)",
        m: 784,
        k: 128,
        n: 100,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "H·W (ch. 6 net, forward 2–4)",
        m: 128,
        k: 100,
        n: 100,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "Hᵀ·dZ (ch. 6 net, dW 2–4)",
        m: 100,
        k: 128,
        n: 100,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "dZ·Wᵀ (ch. 6 net, dH 1–3)",
        m: 128,
        k: 100,
        n: 100,
        a_t: false,
        b_t: true,
    },
    Shape {
        name: "H·W5 (ch. 6 net, forward 5)",
        m: 128,
        k: 100,
        n: 10,
        a_t: false,
        b_t: false,
    },
];

/// The per-sample products of every Convolution of the book's conv nets: forward
/// `W·col` (filters × patch × positions), the weights' gradient `dout·colᵀ`, and the patches'
/// gradient `Wᵀ·dout` (not for a first layer).
pub fn conv_shapes() -> Vec<Shape> {
    use crate::netarg::Preset;
    let mut shapes = Vec::new();
    for (net, preset) in [
        ("SimpleConvNet", Preset::SimpleConvnet),
        ("DeepConvNet", Preset::DeepConvnet),
    ] {
        let spec = preset.spec();
        let convs = spec.layers().iter().filter_map(|l| match l {
            Layer::Convolution(c) => Some(*c),
            _ => None,
        });
        for (i, c) in convs.enumerate() {
            let (f, k, p) = (c.filters, c.patch_len(), c.output_dims().plane());
            let name = |what: &str| -> &'static str {
                Box::leak(format!("{net} conv{} {what}", i + 1).into_boxed_str())
            };
            let shape = |what, m, k, n, a_t, b_t| Shape {
                name: name(what),
                m,
                k,
                n,
                a_t,
                b_t,
            };
            shapes.push(shape("W·col (forward)", f, k, p, false, false));
            shapes.push(shape("dout·colᵀ (dW)", f, p, k, false, true));
            if i > 0 {
                shapes.push(shape("Wᵀ·dout (dcol)", k, f, p, true, false));
            }
        }
    }
    shapes
}

/// Square sizes of the ladder.
pub const LADDER: [usize; 6] = [32, 64, 128, 256, 512, 1024];

/// Median seconds of one product of `s` with `backend`.
pub fn time_gemm(backend: Backend, s: &Shape, reps: usize) -> zeronn::Result<f64> {
    let mut rng = seeded(1);
    let a: Vec<f32> = (0..s.m * s.k)
        .map(|_| random::uniform01(&mut rng) as f32)
        .collect();
    let b: Vec<f32> = (0..s.k * s.n)
        .map(|_| random::uniform01(&mut rng) as f32)
        .collect();
    let mut c = vec![0f32; s.m * s.n];
    let mut pack = vec![0f32; PACK_LEN];
    let am = if s.a_t {
        MatRef::row_major(&a, s.k, s.m)?.t()
    } else {
        MatRef::row_major(&a, s.m, s.k)?
    };
    let bm = if s.b_t {
        MatRef::row_major(&b, s.n, s.k)?.t()
    } else {
        MatRef::row_major(&b, s.k, s.n)?
    };
    let flops = 2.0 * (s.m * s.k * s.n) as f64;
    let inner = ((2e7 / flops) as usize).clamp(1, 10_000);
    let mut result = Ok(());
    let t = median_time(reps, inner, || {
        let cm = MatMut::row_major(&mut c, s.m, s.n).expect("shape");
        if let Err(e) = gemm::gemm(backend, 1.0, am, bm, 0.0, cm, &mut pack) {
            result = Err(e);
        }
        black_box(&mut c);
    });
    result.map(|_| t.as_secs_f64())
}

/// Synthetic MNIST-shaped data for timing without the dataset.
pub struct Synthetic {
    /// 784 pixels per image.
    pub x: Vec<f32>,
    /// Labels.
    pub t: Vec<u8>,
}

impl Synthetic {
    /// `n` random images.
    pub fn new(n: usize) -> Self {
        let mut rng = seeded(2);
        Synthetic {
            x: (0..n * 784)
                .map(|_| random::uniform01(&mut rng) as f32)
                .collect(),
            t: (0..n).map(|_| random::index(&mut rng, 10) as u8).collect(),
        }
    }
}

/// The book's net: 784-50-10.
pub const BOOK_SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);

/// The book's net with initial weights, on `backend`.
pub fn book_net(backend: Backend) -> zeronn::Result<TwoLayerNet<f32, Vec<f32>>> {
    let mut net =
        TwoLayerNet::new(BOOK_SHAPE, vec![0f32; BOOK_SHAPE.param_len()])?.with_backend(backend)?;
    net.init_params(&mut seeded(3), 0.01);
    Ok(net)
}

/// Median seconds of one training step at batch 100, as `zeronn train` takes it: with MNIST,
/// on its first 100 training images through the compact step (`sparse::train_step`, the
/// non-blank pixels only); without, on random dense images through `train_step`. The
/// matrixmultiply backend runs `gradient` then `Sgd::update` (fusing is not exact there).
pub fn time_train_step(
    backend: Backend,
    data: Option<&crate::mnist::Split>,
    reps: usize,
) -> zeronn::Result<f64> {
    let synthetic = Synthetic::new(100);
    let mut net = book_net(backend)?;
    let shape = *net.spec();
    let mut grads = vec![0f32; shape.param_len()];
    let mut ws = vec![0f32; shape.workspace_len(100)];
    let sgd = Sgd::new(0.1f32);
    let idx: Vec<usize> = (0..100).collect();
    let (mut compact, mut x, mut t) = (crate::sparse::Compact::new(), Vec::new(), vec![0u8; 100]);
    let mut result = Ok(());
    let time = median_time(reps, 200, || {
        let r = match data {
            _ if backend == Backend::MatrixMultiply => net
                .gradient(&synthetic.x, &synthetic.t, &mut grads, &mut ws)
                .and_then(|_| sgd.update(net.params_mut(), &grads)),
            Some(d) => crate::sparse::train_step(
                &mut compact,
                &mut net,
                d,
                &idx,
                &mut x,
                &mut t,
                &sgd,
                &mut ws,
            )
            .map(|_| ()),
            None => net
                .train_step(&synthetic.x, &synthetic.t, &sgd, &mut ws)
                .map(|_| ()),
        };
        if let Err(e) = r {
            result = Err(e);
        }
    });
    result.map(|_| time.as_secs_f64())
}

/// Median seconds of the forward pass of one image: the first test image with MNIST, a
/// random dense one without.
pub fn time_forward1(
    backend: Backend,
    data: Option<&crate::mnist::Split>,
    reps: usize,
) -> zeronn::Result<f64> {
    let x = match data {
        Some(d) => d.head(1).x_f32(),
        None => Synthetic::new(1).x,
    };
    let net = book_net(backend)?;
    let mut ws = vec![0f32; net.spec().workspace_len(1)];
    let mut result = Ok(());
    let t = median_time(reps, 2000, || match net.predict(black_box(&x), &mut ws) {
        Ok(y) => {
            black_box(y);
        }
        Err(e) => result = Err(e),
    });
    result.map(|_| t.as_secs_f64())
}

/// Median seconds of one evaluation pass: accuracy on every image of `splits`, in chunks
/// of [`EVAL_CHUNK`](crate::train::EVAL_CHUNK) rows.
pub fn time_eval_pass(
    backend: Backend,
    splits: &[&crate::sparse::EvalSet],
    reps: usize,
) -> zeronn::Result<f64> {
    let net = book_net(backend)?;
    let mut ws = vec![0f32; net.spec().workspace_len(crate::train::EVAL_CHUNK)];
    let mut result = Ok(());
    let t = median_time(reps, 1, || {
        for s in splits {
            match crate::train::accuracy(&net, s, &mut ws) {
                Ok(a) => {
                    black_box(a);
                }
                Err(e) => result = Err(e),
            }
        }
    });
    result.map(|_| t.as_secs_f64())
}

/// Floating-point operations of the dense products of one training step of `spec` on
/// `batch` rows: forward `X·W` of every Affine (and `W ⋆ X` of every Convolution), backward
/// `dW` of each and `dX` of each but the first (the gradient of the input is not needed). What the book's NumPy code
/// computes; zeronn skips the pixels blank across the mini-batch, so it executes fewer.
pub fn step_flops(spec: impl Into<NetSpec>, batch: usize) -> f64 {
    let spec = spec.into();
    let macs: Vec<f64> = affine_macs(&spec).collect();
    let dx: f64 = macs.iter().skip(1).sum();
    2.0 * batch as f64 * (2.0 * macs.iter().sum::<f64>() + dx)
}

/// Floating-point operations of the dense forward products (`X·W` of every Affine, `W ⋆ X`
/// of every Convolution) of `spec` on `rows` images.
pub fn forward_flops(spec: impl Into<NetSpec>, rows: usize) -> f64 {
    let spec = spec.into();
    2.0 * rows as f64 * affine_macs(&spec).sum::<f64>()
}

/// Multiply-adds per sample of each Affine's and Convolution's product.
fn affine_macs(spec: &NetSpec) -> impl Iterator<Item = f64> + '_ {
    spec.layers().iter().filter_map(|l| match *l {
        Layer::Affine { input, output } => Some(input as f64 * output as f64),
        Layer::Convolution(c) => Some(c.macs() as f64),
        _ => None,
    })
}

/// The run of the book's script for a conv net preset on `backend` (seed 1).
pub fn conv_config(preset: crate::netarg::Preset, backend: Backend) -> crate::train::TrainConfig {
    use zeronn::optimizer::OptimizerKind;
    crate::train::TrainConfig {
        net: Some(preset.spec()),
        weight_init: preset.weight_init(),
        optimizer: OptimizerKind::Adam,
        lr: 0.001,
        batch_size: 100,
        seed: 1,
        backend,
        ..crate::train::TrainConfig::default()
    }
}

/// Median seconds of one training step (Adam, batch 100) of a conv net preset on MNIST's
/// training images, and the step's dense floating-point operations.
pub fn time_conv_step(
    preset: crate::netarg::Preset,
    backend: Backend,
    data: &crate::mnist::Split,
    reps: usize,
) -> zeronn::Result<(f64, f64)> {
    time_steps(&conv_config(preset, backend), data, 8, reps)
}

/// Median seconds per image of inference (`predict`) of a conv net preset, freshly
/// initialised, on MNIST test images in batches of `batch`, and the dense floating-point
/// operations per image.
pub fn time_conv_infer(
    preset: crate::netarg::Preset,
    backend: Backend,
    test: &crate::mnist::Split,
    batch: usize,
    reps: usize,
) -> zeronn::Result<(f64, f64)> {
    let cfg = conv_config(preset, backend);
    let spec = preset.spec();
    let net = crate::train::new_net(&cfg, spec, &mut seeded(1))?;
    let n = 200usize.div_ceil(batch) * batch;
    let x = test.head(n.min(test.len())).x_f32();
    let rows = x.len() / spec.input_size();
    let mut ws = vec![0.0f32; spec.workspace_len(batch)];
    let (mut result, mut at) = (Ok(()), 0);
    let width = batch * spec.input_size();
    let t = median_time(reps, 8, || {
        let start = (at % (rows / batch).max(1)) * width;
        if let Err(e) = net.predict(&x[start..start + width], &mut ws) {
            result = Err(e);
        }
        at += 1;
    });
    result.map(|_| (t.as_secs_f64() / batch as f64, forward_flops(spec, 1)))
}

/// The book's chapter 5 run (the default configuration, seed 1) on `backend`.
pub fn book_config(backend: Backend) -> crate::train::TrainConfig {
    crate::train::TrainConfig {
        seed: 1,
        backend,
        ..Default::default()
    }
}

/// Runs of `cfg` timed on `threads` threads: the median over `reps` runs of the wall time
/// (or, with `training_only`, of the run's training time, evaluations left out), and the
/// dense floating-point operations of what was timed (the steps, and the evaluation passes
/// unless `training_only`).
pub fn time_runs(
    cfg: &crate::train::TrainConfig,
    data: &crate::mnist::Mnist,
    threads: usize,
    reps: usize,
    training_only: bool,
) -> zeronn::Result<(f64, f64)> {
    let mut times = Vec::with_capacity(reps.max(1));
    let mut report = None;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let r = if threads <= 1 {
            crate::train::train(cfg, data, |_| {})
        } else {
            crate::train_threads::train_threads(cfg, data, threads, |_| {})
        }?;
        let wall = start.elapsed().as_secs_f64();
        times.push(if training_only {
            r.train_time.as_secs_f64()
        } else {
            wall
        });
        report = Some(r);
    }
    times.sort_by(f64::total_cmp);
    // Every run does the same steps and evaluations: count the last one's.
    let flops = report.map_or(0.0, |r| {
        let images = data.train.len() + data.test.len();
        let evals = if training_only { 0 } else { r.epochs.len() };
        r.losses.len() as f64 * step_flops(r.spec, cfg.batch_size)
            + evals as f64 * forward_flops(r.spec, images)
    });
    Ok((times[times.len() / 2], flops))
}

/// Chapter 6's `optimizers` workload with Adam (optimizer_compare_mnist.py's Adam net):
/// 784-100-100-100-100-10, He initial weights, Adam lr 0.001, batch 128, 2000 iterations.
pub fn optimizers_config(backend: Backend) -> crate::train::TrainConfig {
    use zeronn::optimizer::OptimizerKind;
    crate::train::TrainConfig {
        hidden: vec![100; 4],
        weight_init: zeronn::WeightInit::He,
        optimizer: OptimizerKind::Adam,
        lr: 0.001,
        batch_size: 128,
        iters: 2000,
        seed: 1,
        eval_every: Some(usize::MAX),
        backend,
        ..crate::train::TrainConfig::default()
    }
}

/// Median seconds of one Adam step of the `optimizers` workload on MNIST's training images
/// (mini-batches drawn as a run draws them), and the step's dense floating-point operations.
pub fn time_adam_step(
    backend: Backend,
    data: &crate::mnist::Split,
    reps: usize,
) -> zeronn::Result<(f64, f64)> {
    time_steps(&optimizers_config(backend), data, 200, reps)
}

/// Median seconds of one training step of the run `cfg` on `data`, over `batches`
/// mini-batches drawn as a run draws them, and the step's dense floating-point operations.
fn time_steps(
    cfg: &crate::train::TrainConfig,
    data: &crate::mnist::Split,
    batches: usize,
    reps: usize,
) -> zeronn::Result<(f64, f64)> {
    let spec = cfg.spec(data.pixels, 10);
    let mut rng = seeded(1);
    let mut trainer = crate::train::Trainer::new(cfg, spec, &mut rng)?;
    let masks: Vec<Vec<usize>> = (0..batches)
        .map(|_| {
            let mut m = vec![0usize; cfg.batch_size];
            random::choice(&mut rng, data.len(), &mut m);
            m
        })
        .collect();
    let (mut result, mut i) = (Ok(()), 0);
    let t = median_time(reps, masks.len(), || {
        if let Err(e) = trainer.step(data, &masks[i % masks.len()], i) {
            result = Err(e);
        }
        i += 1;
    });
    result.map(|_| (t.as_secs_f64(), step_flops(spec, cfg.batch_size)))
}

/// One evaluation pass of an int8 model over every image of `splits`: bytes to int8, the
/// layers (the fast kernel with `packed`), argmax and count, in chunks of
/// [`EVAL_CHUNK`](crate::train::EVAL_CHUNK) (`ws` and `xq` sized for a chunk). The count of
/// correct answers.
pub fn int8_pass(
    model: &zeronn::QModel<'_>,
    packed: Option<&zeronn::quant::QPacked<'_>>,
    to_int8: &crate::quantize::ToInt8,
    splits: &[&crate::mnist::Split],
    ws: &mut [i8],
    xq: &mut [i8],
) -> Result<usize, String> {
    let chunk = crate::train::EVAL_CHUNK;
    let classes = model.spec().output_size().max(1);
    let mut correct = 0usize;
    for s in splits {
        for lo in (0..s.len()).step_by(chunk) {
            let hi = (lo + chunk).min(s.len());
            let xq = &mut xq[..(hi - lo) * s.pixels];
            to_int8.samples(s, lo, hi, xq);
            let logits = model.predict(xq, ws, packed).map_err(|e| e.to_string())?;
            for (k, l) in logits.chunks_exact(classes).enumerate() {
                correct += usize::from(zeronn::quant::argmax(l) == usize::from(s.t[lo + k]));
            }
        }
    }
    Ok(correct)
}

/// The int8 figures of the book's net (its initial weights, quantized by
/// [`crate::quantize::quantize`] with ranges from 300 training images): the median seconds of
/// an evaluation pass over every image of `splits` with the fast kernel (chunks of similar
/// images compacted to their active pixels, prepared once, [`crate::sparse::Int8Set`])
/// and with the reference loop (whole images, [`int8_pass`]), and of one image's forward with
/// the fast kernel.
pub fn time_int8(splits: &[&crate::mnist::Split], reps: usize) -> Result<(f64, f64, f64), String> {
    let net = book_net(Backend::Auto).map_err(|e| e.to_string())?;
    let spec = *net.spec();
    let train = splits.first().ok_or("no data")?;
    let q = crate::quantize::quantize_on(&spec, net.params(), &[], train, crate::quantize::CALIB)?;
    let bytes = q
        .to_bytes(zeronn::quant::WeightLayout::Rows)
        .map_err(|e| e.to_string())?;
    let file = zeronn::ModelFile::from_bytes("(bench)", &bytes);
    let model = file.int8_model().map_err(|e| e.to_string())?;
    let to_int8 = crate::quantize::ToInt8::new(model.input_params());
    let chunk = crate::train::EVAL_CHUNK;
    let mut ws = vec![0i8; zeronn::QModel::workspace_len(model.spec(), chunk)];
    let mut pack = vec![0i32; zeronn::QModel::pack_len(model.spec())];
    let packed = model.pack(&mut pack).map_err(|e| e.to_string())?;
    let mut xq = vec![0i8; chunk * train.pixels];
    let mut result = Ok(());
    // The fast pass as a training run evaluates: chunks of similar images, compacted.
    let sets: Vec<_> = splits
        .iter()
        .map(|s| crate::sparse::EvalSet::new(s, chunk))
        .collect();
    let mut prepared = sets
        .iter()
        .map(|s| s.int8(&model).ok_or("the book's net takes MNIST's pixels"))
        .collect::<Result<Vec<_>, _>>()?;
    let ready = prepared
        .iter_mut()
        .map(|p| p.ready(&model))
        .collect::<Result<Vec<_>, _>>()?;
    let mut scratch = crate::sparse::Int8Scratch::default();
    let mut pass = |fast: bool| {
        let got = if fast {
            ready.iter().try_fold(0, |n, set| {
                Ok::<usize, String>(n + set.count_correct(&mut scratch)?)
            })
        } else {
            int8_pass(&model, None, &to_int8, splits, &mut ws, &mut xq)
        };
        match got {
            Ok(correct) => {
                black_box(correct);
            }
            Err(e) => result = Err(e),
        }
    };
    let fast = median_time(reps, 1, || pass(true)).as_secs_f64();
    let slow = median_time(reps.min(3), 1, || pass(false)).as_secs_f64();
    result?;
    let mut one = vec![0i8; train.pixels];
    to_int8.samples(train, 0, 1, &mut one);
    let mut result = Ok(());
    let t1 = median_time(reps, 2000, || {
        match model.predict(black_box(&one), &mut ws, Some(&packed)) {
            Ok(y) => {
                black_box(y);
            }
            Err(e) => result = Err(e.to_string()),
        }
    });
    result?;
    Ok((fast, slow, t1.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The book's run: 10 000 steps of 16 MFLOP and 17 passes of 5.6 GFLOP, the issue's
    /// 160 and 94 GFLOP.
    #[test]
    fn the_books_run_counts_its_flops() {
        let shape = BOOK_SHAPE;
        // forward 2·100·(784·50 + 50·10), backward 2·100·(50·10 + 10·50 + 784·50)
        assert_eq!(step_flops(shape, 100), 7_940_000.0 + 8_040_000.0);
        assert_eq!(forward_flops(shape, 1), 79_400.0);
        assert_eq!(crate::train::TrainConfig::default().evaluations(60_000), 17);
        let training = 10_000.0 * step_flops(shape, 100);
        let evaluation = 17.0 * forward_flops(shape, 70_000);
        assert!((training / 1e9 - 159.8).abs() < 0.1, "{training}");
        assert!((evaluation / 1e9 - 94.5).abs() < 0.1, "{evaluation}");
    }
}
