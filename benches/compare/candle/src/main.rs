//! The book's chapter 5 run in candle, written as a candle user would: candle-nn `Linear`
//! layers on trainable `Var`s, ReLU, `loss::cross_entropy`, autograd, `optim::SGD`, f32 on the
//! CPU, the book's init (N(0, 0.01²) weights, zero biases), batch 100 sampled with
//! replacement, lr 0.1, 10 000 iterations, accuracy on the full train and test sets per epoch
//! of 600 iterations. The loss of each step is read back, as the book records it. Mirrors
//! `book_torch.py`.
//!
//! Usage: book-candle DATA_DIR {whole,micro} [--seed N]; threads from RAYON_NUM_THREADS.
//! Prints one JSON object with the timings (seconds).

use std::time::Instant;

use candle_core::{D, DType, Device, Module, Result, Tensor, Var};
use candle_nn::{Linear, Optimizer, SGD};

struct Model {
    l1: Linear,
    l2: Linear,
}

impl Module for Model {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.relu()?)
    }
}

/// A layer with N(0, 0.01²) weights and zero biases, and its trainable variables. (candle's
/// CPU generator cannot be seeded, so the weights are drawn here.)
fn linear(
    rng: &mut Rng,
    dev: &Device,
    inputs: usize,
    outputs: usize,
) -> Result<(Linear, [Var; 2])> {
    let w: Vec<f32> = (0..inputs * outputs).map(|_| 0.01 * rng.normal()).collect();
    let w = Var::from_tensor(&Tensor::from_vec(w, (outputs, inputs), dev)?)?;
    let b = Var::from_tensor(&Tensor::zeros(outputs, DType::F32, dev)?)?;
    Ok((
        Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())),
        [w, b],
    ))
}

fn make_model(dev: &Device, seed: u64) -> Result<(Vec<Var>, Model)> {
    let mut rng = Rng::new(seed);
    let (l1, v1) = linear(&mut rng, dev, 784, 50)?;
    let (l2, v2) = linear(&mut rng, dev, 50, 10)?;
    Ok((v1.into_iter().chain(v2).collect(), Model { l1, l2 }))
}

fn accuracy(model: &Model, x: &Tensor, t: &Tensor) -> Result<f32> {
    model
        .forward(x)?
        .argmax(D::Minus1)?
        .eq(t)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()
}

/// Initial weights and batch indices: xorshift64* (the draws need not match the others').
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> u32 {
        ((self.next() >> 32) % n as u64) as u32
    }

    /// A standard normal draw (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

struct Data {
    x_train: Tensor,
    t_train: Tensor,
    x_test: Tensor,
    t_test: Tensor,
}

fn whole(d: &Data, dev: &Device, seed: u64) -> Result<String> {
    let (vars, model) = make_model(dev, seed)?;
    let mut opt = SGD::new(vars, 0.1)?;
    let (iters, batch) = (10_000, 100);
    let train_size = d.x_train.dim(0)?;
    let iter_per_epoch = (train_size / batch).max(1);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let (mut train_s, mut eval_s) = (0.0, 0.0);
    let (mut train_acc, mut test_acc) = (0.0, 0.0);
    let start = Instant::now();
    for i in 0..iters {
        let t0 = Instant::now();
        let idx: Vec<u32> = (0..batch).map(|_| rng.below(train_size)).collect();
        let idx = Tensor::from_vec(idx, batch, dev)?;
        let logits = model.forward(&d.x_train.index_select(&idx, 0)?)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &d.t_train.index_select(&idx, 0)?)?;
        opt.backward_step(&loss)?;
        loss.to_scalar::<f32>()?;
        train_s += t0.elapsed().as_secs_f64();
        if i % iter_per_epoch == 0 {
            let t0 = Instant::now();
            train_acc = accuracy(&model, &d.x_train, &d.t_train)?;
            test_acc = accuracy(&model, &d.x_test, &d.t_test)?;
            eval_s += t0.elapsed().as_secs_f64();
        }
    }
    let whole_s = start.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"whole_s\": {whole_s}, \"train_s\": {train_s}, \"eval_s\": {eval_s}, \
         \"final_train_acc\": {train_acc}, \"final_test_acc\": {test_acc}}}"
    ))
}

/// Median over `reps` samples of the mean time of `inner` calls, after one warm-up call.
fn median_time(reps: usize, inner: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        for _ in 0..inner {
            f()?;
        }
        samples.push(t0.elapsed().as_secs_f64() / inner as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[reps / 2])
}

fn micro(d: &Data, dev: &Device, seed: u64) -> Result<String> {
    let (vars, model) = make_model(dev, seed)?;
    let mut opt = SGD::new(vars, 0.1)?;
    let (xb, tb) = (d.x_train.narrow(0, 0, 100)?, d.t_train.narrow(0, 0, 100)?);
    let step_s = median_time(7, 200, || {
        let loss = candle_nn::loss::cross_entropy(&model.forward(&xb)?, &tb)?;
        opt.backward_step(&loss)?;
        loss.to_scalar::<f32>().map(|_| ())
    })?;
    let eval_pass_s = median_time(7, 1, || {
        accuracy(&model, &d.x_train, &d.t_train)?;
        accuracy(&model, &d.x_test, &d.t_test).map(|_| ())
    })?;
    let x1 = d.x_test.narrow(0, 0, 1)?;
    let forward1_s = median_time(7, 2000, || model.forward(&x1).map(|_| ()))?;
    Ok(format!(
        "{{\"step_s\": {step_s}, \"eval_pass_s\": {eval_pass_s}, \"forward1_s\": {forward1_s}}}"
    ))
}

fn tensors(s: &zeronn_tools::mnist::Split, dev: &Device) -> Result<(Tensor, Tensor)> {
    // The book's normalize=True: pixel / 255 as f32.
    let x: Vec<f32> = s.raw.iter().map(|&p| p as f32 / 255.0).collect();
    let t: Vec<u32> = s.t.iter().map(|&l| u32::from(l)).collect();
    Ok((
        Tensor::from_vec(x, (s.len(), s.pixels), dev)?,
        Tensor::from_vec(t, s.len(), dev)?,
    ))
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: book-candle DATA_DIR {whole,micro} [--seed N]";
    let (dir, mode) = match &args[1..] {
        [dir, mode, ..] => (dir, mode.as_str()),
        _ => return Err(usage.into()),
    };
    let seed = match &args[3..] {
        [] => 1,
        [flag, n] if flag == "--seed" => n.parse()?,
        _ => return Err(usage.into()),
    };
    let mnist = zeronn_tools::mnist::load(std::path::Path::new(dir))?;
    let dev = Device::Cpu;
    let (x_train, t_train) = tensors(&mnist.train, &dev)?;
    let (x_test, t_test) = tensors(&mnist.test, &dev)?;
    let d = Data {
        x_train,
        t_train,
        x_test,
        t_test,
    };
    let out = match mode {
        "whole" => whole(&d, &dev, seed)?,
        "micro" => micro(&d, &dev, seed)?,
        _ => return Err(usage.into()),
    };
    println!("{out}");
    Ok(())
}
