//! `zeronn experiment NAME --out DIR`: the book's chapter 6 experiments (`ch06/*.py`), each
//! writing a CSV of every curve and a PNG plot like the book's figure.
//!
//! | name | the book's script | what |
//! | --- | --- | --- |
//! | `optimizers` | `optimizer_compare_mnist.py` | loss curves of SGD, Momentum, AdaGrad and Adam, 784-100-100-100-100-10, batch 128, 2000 iterations |
//! | `weight-init` | `weight_init_compare.py` | the same net with std 0.01, Xavier and He initial weights, SGD lr 0.01 |
//! | `batch-norm` | `batch_norm_test.py` | train accuracy with and without BatchNorm, 784-(100×5)-10, 1000 images, across 16 initial weight scales |
//! | `weight-decay` | `overfit_weight_decay.py` | train and test accuracy per epoch, 784-(100×6)-10 on 300 images, λ 0.1 (and 0, dashed) |
//! | `dropout` | `overfit_dropout.py` | the same with Dropout 0.2 (and without, dashed) |
//! | `hyperparameters` | `hyperparameter_optimization.py` | random search of lr and weight decay, 100 trials, validated on 100 of 500 images; the best listed and plotted |
//! | `filters` | `ch07/visualize_filter.py` | a conv net's first filters before and after training (`--model`; see `pictures.rs`) |
//! | `misclassified` | `ch08/misclassified_mnist.py` | the misclassified test images of `--model`, with label and answer |
//!
//! As in the book, the nets of one comparison train on the same mini-batches, the loss
//! recorded is the batch's after the update, and the accuracies are taken after the update of
//! every epoch's first iteration. Every draw comes from one generator seeded by `--seed`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeronn::gemm::Backend;
use zeronn::optimizer::OptimizerKind;
use zeronn::random::{self, XorShiftRng, seeded};
use zeronn::{Activation, WeightInit};

use crate::format::py_repr;
use crate::mnist::{Mnist, Split};
use crate::plot::{self, Panel, Series};
use crate::progress::Progress;
use crate::sparse::EvalSet;
use crate::train::{EVAL_CHUNK, TrainConfig, Trainer};

/// The experiments, by their command-line names (the variants' docs are the command's help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Name {
    /// optimizer_compare_mnist.py: loss curves of SGD, Momentum, AdaGrad and Adam
    Optimizers,
    /// weight_init_compare.py: std 0.01, Xavier and He initial weights
    WeightInit,
    /// batch_norm_test.py: with and without BatchNorm across 16 weight scales
    BatchNorm,
    /// overfit_weight_decay.py: 300 images, λ 0.1, train and test accuracy
    WeightDecay,
    /// overfit_dropout.py: 300 images, Dropout 0.2, train and test accuracy
    Dropout,
    /// hyperparameter_optimization.py: random search of lr and weight decay
    Hyperparameters,
    /// visualize_filter.py: the first layer's filters of --model, before and after training
    Filters,
    /// misclassified_mnist.py: the misclassified test images of --model
    Misclassified,
}

impl Name {
    /// The command-line name, also the stem of the files written.
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Optimizers => "optimizers",
            Name::WeightInit => "weight-init",
            Name::BatchNorm => "batch-norm",
            Name::WeightDecay => "weight-decay",
            Name::Dropout => "dropout",
            Name::Hyperparameters => "hyperparameters",
            Name::Filters => "filters",
            Name::Misclassified => "misclassified",
        }
    }
}

/// Settings of a run; `None` is the book's value.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of the one generator of the run.
    pub seed: u64,
    /// The gemm backend.
    pub backend: Backend,
    /// A progress bar on a terminal.
    pub progress: bool,
    /// Iterations (`optimizers`, `weight-init`: 2000).
    pub iters: Option<usize>,
    /// Epochs (`batch-norm` 20, `weight-decay` 201, `dropout` 301, `hyperparameters` 50).
    pub epochs: Option<usize>,
    /// Trials (`hyperparameters`: 100).
    pub trials: Option<usize>,
    /// Weight scales (`batch-norm`: 16, from 1 down to 1e-4).
    pub scales: Option<usize>,
    /// The trained model (`filters`, `misclassified`: needed).
    pub model: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            backend: Backend::Auto,
            progress: true,
            iters: None,
            epochs: None,
            trials: None,
            scales: None,
            model: None,
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn err(e: zeronn::Error) -> String {
    e.to_string()
}

/// A chapter 6 net for the experiments: MultiLayerNet(Extend) with `hidden`, He initial
/// weights (the book's default `'relu'`) and plain SGD at lr 0.01 unless changed.
fn book_net(hidden: &[usize], batch: usize, opts: &Options) -> TrainConfig {
    TrainConfig {
        hidden: hidden.to_vec(),
        activation: Activation::Relu,
        weight_init: WeightInit::He,
        optimizer: OptimizerKind::Sgd,
        lr: 0.01,
        batch_size: batch,
        seed: opts.seed,
        backend: opts.backend,
        ..TrainConfig::default()
    }
}

/// What a race of nets records.
struct Record {
    /// Per net, the loss after each iteration's update.
    losses: Vec<Vec<f64>>,
    /// Per net, per evaluation set, the accuracy at each evaluation.
    accs: Vec<Vec<Vec<f64>>>,
}

/// Trains `trainers` on the same mini-batches of `train` (`batch` images drawn with
/// replacement from `rng`) for `iters` iterations; after the update of every iteration `i`
/// with `i % every == 0`, evaluates each on every set of `sets` and calls `on_eval` with the
/// evaluation's number and the accuracies so far. With `losses`, records each net's loss on
/// the batch after its update (one more forward pass).
#[allow(clippy::too_many_arguments)]
fn race(
    trainers: &mut [Trainer],
    train: &Split,
    batch: usize,
    iters: usize,
    every: usize,
    sets: &[&EvalSet],
    rng: &mut XorShiftRng,
    losses: bool,
    progress: &mut Progress,
    done_before: usize,
    mut on_iter: impl FnMut(usize, &[Vec<f64>]),
    mut on_eval: impl FnMut(usize, &[Vec<Vec<f64>>]),
) -> Result<Record> {
    let mut rec = Record {
        losses: vec![Vec::with_capacity(if losses { iters } else { 0 }); trainers.len()],
        accs: vec![vec![Vec::new(); sets.len()]; trainers.len()],
    };
    let mut mask = vec![0usize; batch];
    let mut evals = 0;
    for i in 0..iters {
        random::choice(rng, train.len(), &mut mask);
        let mut last = 0.0f32;
        for (k, tr) in trainers.iter_mut().enumerate() {
            last = tr.step(train, &mask, i).map_err(err)?;
            if losses {
                let l = tr.loss_after().map_err(err)?;
                rec.losses[k].push(l as f64);
                last = l;
            }
        }
        progress.tick(done_before + i + 1, last);
        if losses {
            on_iter(i, &rec.losses);
        }
        if i % every.max(1) == 0 {
            for (k, tr) in trainers.iter_mut().enumerate() {
                for (s, set) in sets.iter().enumerate() {
                    let a = tr.accuracy(set).map_err(err)?;
                    rec.accs[k][s].push(a);
                }
            }
            progress.clear();
            on_eval(evals, &rec.accs);
            evals += 1;
        }
    }
    Ok(rec)
}

/// Writes `text` to `dir/name`, saying so in `files`.
fn write_file(dir: &Path, name: &str, text: &str, files: &mut Vec<PathBuf>) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    files.push(path);
    Ok(())
}

/// Draws a plot to `dir/name`, saying so in `files`.
fn write_plot(
    dir: &Path,
    name: &str,
    title: &str,
    panels: &[Panel],
    cols: usize,
    size: (u32, u32),
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let path = dir.join(name);
    plot::draw(&path, title, panels, cols, size)?;
    files.push(path);
    Ok(())
}

/// `(x, y)` points of a curve sampled at 0, 1, 2, ….
fn indexed(ys: &[f64]) -> Vec<(f64, f64)> {
    ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect()
}

/// Runs experiment `name` on `data`, writing its CSV and PNG into `out` (created if need be)
/// and what the book's script prints to `log`; returns the files written.
pub fn run(
    name: Name,
    data: &Mnist,
    out: &Path,
    opts: &Options,
    log: &mut dyn Write,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let mut files = Vec::new();
    match name {
        Name::Optimizers | Name::WeightInit => loss_curves(name, data, out, opts, log, &mut files)?,
        Name::BatchNorm => batch_norm(data, out, opts, log, &mut files)?,
        Name::WeightDecay | Name::Dropout => overfit(name, data, out, opts, log, &mut files)?,
        Name::Hyperparameters => hyperparameters(data, out, opts, log, &mut files)?,
        Name::Filters | Name::Misclassified => {
            let model = opts.model.as_deref().ok_or_else(|| {
                format!(
                    "experiment {} needs --model M (a trained conv net)",
                    name.as_str()
                )
            })?;
            files = if name == Name::Filters {
                crate::pictures::filters(model, out, opts.seed, log)?
            } else {
                crate::pictures::misclassified(model, data, out, log)?
            };
        }
    }
    Ok(files)
}

fn io(e: std::io::Error) -> String {
    format!("writing the log: {e}")
}

/// `optimizers` and `weight-init`: nets racing on the same mini-batches, their losses.
fn loss_curves(
    name: Name,
    data: &Mnist,
    out: &Path,
    opts: &Options,
    log: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let (batch, hidden) = (128, [100; 4]);
    let iters = opts.iters.unwrap_or(2000);
    let base = book_net(&hidden, batch, opts);
    let runs: Vec<(&str, TrainConfig)> = if name == Name::Optimizers {
        [
            ("SGD", OptimizerKind::Sgd),
            ("Momentum", OptimizerKind::Momentum),
            ("AdaGrad", OptimizerKind::AdaGrad),
            ("Adam", OptimizerKind::Adam),
        ]
        .into_iter()
        .map(|(label, kind)| {
            (
                label,
                TrainConfig {
                    optimizer: kind,
                    lr: kind.default_lr(),
                    ..base.clone()
                },
            )
        })
        .collect()
    } else {
        [
            ("std=0.01", WeightInit::Std(0.01)),
            ("Xavier", WeightInit::Xavier),
            ("He", WeightInit::He),
        ]
        .into_iter()
        .map(|(label, init)| {
            (
                label,
                TrainConfig {
                    weight_init: init,
                    ..base.clone()
                },
            )
        })
        .collect()
    };
    let mut rng = seeded(opts.seed);
    let spec = base.spec(data.train.pixels, 10);
    let mut trainers = runs
        .iter()
        .map(|(_, c)| Trainer::new(c, spec, &mut rng))
        .collect::<zeronn::Result<Vec<_>>>()
        .map_err(err)?;
    let mut progress = Progress::new(iters, opts.progress);
    let labels: Vec<&str> = runs.iter().map(|r| r.0).collect();
    let mut log_err = Ok(());
    let rec = race(
        &mut trainers,
        &data.train,
        batch,
        iters,
        usize::MAX,
        &[],
        &mut rng,
        true,
        &mut progress,
        0,
        |i, losses| {
            if i % 100 == 0 {
                progress_line(
                    log,
                    &mut log_err,
                    &format!("===========iteration:{i}==========="),
                );
                for (label, l) in labels.iter().zip(losses) {
                    progress_line(log, &mut log_err, &format!("{label}:{}", py_repr(l[i])));
                }
            }
        },
        |_, _| {},
    )?;
    progress.clear();
    log_err.map_err(io)?;
    // The end: test accuracy and the mean loss of the last 100 iterations of each.
    let test = EvalSet::new(&data.test, EVAL_CHUNK);
    for (tr, (label, l)) in trainers.iter_mut().zip(labels.iter().zip(&rec.losses)) {
        let acc = tr.accuracy(&test).map_err(err)?;
        let tail = l.len().min(100);
        let mean = l[l.len() - tail..].iter().sum::<f64>() / tail.max(1) as f64;
        writeln!(
            log,
            "{label}: test accuracy {}, mean loss of the last {tail} iterations {mean:.4}",
            py_repr(acc)
        )
        .map_err(io)?;
    }
    let smooth: Vec<Vec<f64>> = rec.losses.iter().map(|l| plot::smooth_curve(l)).collect();
    let stem = name.as_str();
    let mut csv = String::from("iteration");
    for l in &labels {
        let _ = write!(csv, ",{l}");
    }
    for l in &labels {
        let _ = write!(csv, ",{l} (smoothed)");
    }
    csv.push('\n');
    for i in 0..iters {
        let _ = write!(csv, "{i}");
        for l in rec.losses.iter().chain(&smooth) {
            let _ = write!(csv, ",{}", l[i]);
        }
        csv.push('\n');
    }
    write_file(out, &format!("{stem}.csv"), &csv, files)?;
    let series = labels
        .iter()
        .zip(&smooth)
        .map(|(label, s)| Series::new(*label, indexed(s)).marked(100))
        .collect();
    let (title, y_max) = if name == Name::Optimizers {
        (
            "Optimizers on MNIST: 784-100-100-100-100-10, batch 128 (optimizer_compare_mnist)",
            1.0,
        )
    } else {
        (
            "Initial weights on MNIST: 784-100-100-100-100-10, SGD lr 0.01 (weight_init_compare)",
            2.5,
        )
    };
    let panel = Panel {
        title: title.into(),
        x_label: "iterations".into(),
        y_label: "loss".into(),
        y_range: (0.0, y_max),
        series,
        legend: true,
    };
    write_plot(
        out,
        &format!("{stem}.png"),
        "",
        &[panel],
        1,
        (900, 600),
        files,
    )
}

/// Writes a line to the log, keeping the first error.
fn progress_line(log: &mut dyn Write, status: &mut std::io::Result<()>, line: &str) {
    if status.is_ok() {
        *status = writeln!(log, "{line}");
    }
}

/// The book's `np.logspace(0, -4, num=n)`.
fn logspace(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.0
            };
            10f64.powf(-4.0 * t)
        })
        .collect()
}

/// A weight scale as a short title.
fn scale_title(w: f64) -> String {
    if w >= 0.001 {
        format!("W:{}", (w * 1e4).round() / 1e4)
    } else {
        format!("W:{w:.1e}")
    }
}

/// `batch-norm`: with and without BatchNorm across 16 initial weight scales.
fn batch_norm(
    data: &Mnist,
    out: &Path,
    opts: &Options,
    log: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let (batch, hidden) = (100, [100; 5]);
    let train = data.train.head(1000);
    let set = EvalSet::new(&train, EVAL_CHUNK);
    let max_epochs = opts.epochs.unwrap_or(20);
    let every = (train.len() / batch).max(1);
    // Until `max_epochs` evaluations, the first after iteration 0.
    let iters = (max_epochs.max(1) - 1) * every + 1;
    let scales = logspace(opts.scales.unwrap_or(16));
    let mut rng = seeded(opts.seed);
    let mut progress = Progress::new(iters * scales.len(), opts.progress);
    let mut csv = String::from("scale,epoch,train_acc_batch_norm,train_acc_without\n");
    let mut panels = Vec::new();
    for (n, &w) in scales.iter().enumerate() {
        writeln!(
            log,
            "============== {}/{} ==============",
            n + 1,
            scales.len()
        )
        .map_err(io)?;
        let plain = TrainConfig {
            weight_init: WeightInit::Std(w),
            ..book_net(&hidden, batch, opts)
        };
        let bn = TrainConfig {
            batch_norm: true,
            ..plain.clone()
        };
        let spec_bn = bn.spec(train.pixels, 10);
        let spec_plain = plain.spec(train.pixels, 10);
        let mut trainers = vec![
            Trainer::new(&bn, spec_bn, &mut rng).map_err(err)?,
            Trainer::new(&plain, spec_plain, &mut rng).map_err(err)?,
        ];
        let mut log_err = Ok(());
        let rec = race(
            &mut trainers,
            &train,
            batch,
            iters,
            every,
            &[&set],
            &mut rng,
            false,
            &mut progress,
            n * iters,
            |_, _| {},
            |e, accs| {
                let (b, p) = (accs[0][0][e], accs[1][0][e]);
                progress_line(
                    log,
                    &mut log_err,
                    &format!("epoch:{e} | {} - {}", py_repr(p), py_repr(b)),
                );
            },
        )?;
        log_err.map_err(io)?;
        let (b, p) = (&rec.accs[0][0], &rec.accs[1][0]);
        for e in 0..b.len() {
            let _ = writeln!(csv, "{w},{e},{},{}", b[e], p[e]);
        }
        let last = n + 1 == scales.len();
        let (lb, lp) = if last {
            ("Batch Normalization", "Normal (without BatchNorm)")
        } else {
            ("", "")
        };
        panels.push(Panel {
            title: scale_title(w),
            x_label: if n + 4 >= scales.len() {
                "epochs".into()
            } else {
                String::new()
            },
            y_label: if n % 4 == 0 {
                "accuracy".into()
            } else {
                String::new()
            },
            y_range: (0.0, 1.0),
            series: vec![
                Series::new(lb, indexed(b)),
                Series::new(lp, indexed(p)).dashed(),
            ],
            legend: last,
        });
    }
    progress.clear();
    write_file(out, "batch-norm.csv", &csv, files)?;
    write_plot(
        out,
        "batch-norm.png",
        "Batch Normalization across initial weight scales: train accuracy, 1000 images (batch_norm_test)",
        &panels,
        4,
        (1400, 1100),
        files,
    )
}

/// `weight-decay` and `dropout`: overfitting 300 images with a 7-layer net, with the remedy
/// (solid) and without (dashed).
fn overfit(
    name: Name,
    data: &Mnist,
    out: &Path,
    opts: &Options,
    log: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let (batch, hidden) = (100, [100; 6]);
    let train = data.train.head(300);
    let sets = [
        &EvalSet::new(&train, EVAL_CHUNK),
        &EvalSet::new(&data.test, EVAL_CHUNK),
    ];
    let every = (train.len() / batch).max(1);
    let base = book_net(&hidden, batch, opts);
    let (with, label, epochs, iters) = if name == Name::WeightDecay {
        // overfit_weight_decay.py: until 201 evaluations.
        let epochs = opts.epochs.unwrap_or(201).max(1);
        let cfg = TrainConfig {
            weight_decay: 0.1,
            ..base.clone()
        };
        (
            cfg,
            "weight decay λ = 0.1",
            epochs,
            (epochs - 1) * every + 1,
        )
    } else {
        // overfit_dropout.py through the book's Trainer: epochs × iterations per epoch.
        let epochs = opts.epochs.unwrap_or(301).max(1);
        let cfg = TrainConfig {
            dropout: Some(0.2),
            ..base.clone()
        };
        (cfg, "Dropout 0.2", epochs, epochs * every)
    };
    let mut rng = seeded(opts.seed);
    let spec = with.spec(train.pixels, 10);
    let mut trainers = vec![
        Trainer::new(&with, spec, &mut rng).map_err(err)?,
        Trainer::new(&base, base.spec(train.pixels, 10), &mut rng).map_err(err)?,
    ];
    let mut progress = Progress::new(iters, opts.progress);
    let mut log_err = Ok(());
    let rec = race(
        &mut trainers,
        &train,
        batch,
        iters,
        every,
        &sets,
        &mut rng,
        false,
        &mut progress,
        0,
        |_, _| {},
        |e, accs| {
            progress_line(
                log,
                &mut log_err,
                &format!(
                    "epoch:{e}, train acc:{}, test acc:{} (without: {}, {})",
                    py_repr(accs[0][0][e]),
                    py_repr(accs[0][1][e]),
                    py_repr(accs[1][0][e]),
                    py_repr(accs[1][1][e])
                ),
            );
        },
    )?;
    progress.clear();
    log_err.map_err(io)?;
    debug_assert_eq!(rec.accs[0][0].len(), epochs);
    let test = sets[1];
    for (tr, which) in trainers.iter_mut().zip(["with", "without"]) {
        let acc = tr.accuracy(test).map_err(err)?;
        writeln!(log, "final test accuracy {which} {label}: {}", py_repr(acc)).map_err(io)?;
    }
    let stem = name.as_str();
    let mut csv = String::from("epoch,train_acc,test_acc,train_acc_without,test_acc_without\n");
    for e in 0..rec.accs[0][0].len() {
        let _ = writeln!(
            csv,
            "{e},{},{},{},{}",
            rec.accs[0][0][e], rec.accs[0][1][e], rec.accs[1][0][e], rec.accs[1][1][e]
        );
    }
    write_file(out, &format!("{stem}.csv"), &csv, files)?;
    let panel = Panel {
        title: format!(
            "Overfitting 300 images, 784-(100×6)-10, SGD lr 0.01: with {label} (solid) and without (dashed)"
        ),
        x_label: "epochs".into(),
        y_label: "accuracy".into(),
        y_range: (0.0, 1.0),
        series: vec![
            Series::new("train", indexed(&rec.accs[0][0])).marked(10),
            Series::new("test", indexed(&rec.accs[0][1])).marked(10),
            Series::new("train (without)", indexed(&rec.accs[1][0])).dashed(),
            Series::new("test (without)", indexed(&rec.accs[1][1])).dashed(),
        ],
        legend: true,
    };
    write_plot(
        out,
        &format!("{stem}.png"),
        "",
        &[panel],
        1,
        (1000, 650),
        files,
    )
}

/// `hyperparameters`: random search of the learning rate and weight decay.
fn hyperparameters(
    data: &Mnist,
    out: &Path,
    opts: &Options,
    log: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let (batch, hidden) = (100, [100; 6]);
    let mut rng = seeded(opts.seed);
    // 500 images, shuffled; the first 20% validate, the rest train.
    let mut order: Vec<usize> = (0..500.min(data.train.len())).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, random::index(&mut rng, i + 1));
    }
    let val_n = order.len() / 5;
    let (val, train) = (
        data.train.select(&order[..val_n]),
        data.train.select(&order[val_n..]),
    );
    let sets = [
        &EvalSet::new(&val, EVAL_CHUNK),
        &EvalSet::new(&train, EVAL_CHUNK),
    ];
    let epochs = opts.epochs.unwrap_or(50).max(1);
    let every = (train.len() / batch).max(1);
    let iters = epochs * every;
    let trials = opts.trials.unwrap_or(100).max(1);
    let mut progress = Progress::new(iters * trials, opts.progress);
    let mut results: Vec<(f64, f64, Vec<f64>, Vec<f64>)> = Vec::new();
    for n in 0..trials {
        let weight_decay = 10f64.powf(-8.0 + 4.0 * random::uniform01(&mut rng));
        let lr = 10f64.powf(-6.0 + 4.0 * random::uniform01(&mut rng));
        let cfg = TrainConfig {
            lr,
            weight_decay,
            ..book_net(&hidden, batch, opts)
        };
        let mut trainers =
            vec![Trainer::new(&cfg, cfg.spec(train.pixels, 10), &mut rng).map_err(err)?];
        let rec = race(
            &mut trainers,
            &train,
            batch,
            iters,
            every,
            &sets,
            &mut rng,
            false,
            &mut progress,
            n * iters,
            |_, _| {},
            |_, _| {},
        )?;
        let (v, t) = (rec.accs[0][0].clone(), rec.accs[0][1].clone());
        progress.clear();
        writeln!(
            log,
            "val acc:{} | lr:{}, weight decay:{}",
            py_repr(*v.last().unwrap_or(&0.0)),
            py_repr(lr),
            py_repr(weight_decay)
        )
        .map_err(io)?;
        results.push((lr, weight_decay, v, t));
    }
    writeln!(
        log,
        "=========== Hyper-Parameter Optimization Result ==========="
    )
    .map_err(io)?;
    let mut ranked: Vec<usize> = (0..results.len()).collect();
    let last = |k: usize| *results[k].2.last().unwrap_or(&0.0);
    ranked.sort_by(|&a, &b| last(b).total_cmp(&last(a)));
    for (i, &k) in ranked.iter().take(5).enumerate() {
        let (lr, wd, _, _) = &results[k];
        writeln!(
            log,
            "Best-{}(val acc:{}) | lr:{}, weight decay:{}",
            i + 1,
            py_repr(last(k)),
            py_repr(*lr),
            py_repr(*wd)
        )
        .map_err(io)?;
    }
    let mut csv = String::from("rank,trial,lr,weight_decay,epoch,val_acc,train_acc\n");
    for (rank, &k) in ranked.iter().enumerate() {
        let (lr, wd, v, t) = &results[k];
        for e in 0..v.len() {
            let _ = writeln!(csv, "{},{k},{lr},{wd},{e},{},{}", rank + 1, v[e], t[e]);
        }
    }
    write_file(out, "hyperparameters.csv", &csv, files)?;
    let panels: Vec<Panel> = ranked
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, &k)| {
            let (lr, wd, v, t) = &results[k];
            Panel {
                title: format!("Best-{}: lr {lr:.1e}, decay {wd:.1e}", i + 1),
                x_label: String::new(),
                y_label: String::new(),
                y_range: (0.0, 1.0),
                series: vec![
                    Series::new(if i == 0 { "validation" } else { "" }, indexed(v)),
                    Series::new(if i == 0 { "train" } else { "" }, indexed(t)).dashed(),
                ],
                legend: i == 0,
            }
        })
        .collect();
    write_plot(
        out,
        "hyperparameters.png",
        "Random search of lr and weight decay: accuracy per epoch of the best (hyperparameter_optimization)",
        &panels,
        5,
        (1500, 1000),
        files,
    )
}
