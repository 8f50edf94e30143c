//! `zeronn`: train, check, evaluate and benchmark the book's networks on MNIST, and export
//! models for firmware.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use zeronn::gemm::Backend;
use zeronn::layers::Dims;
use zeronn::optimizer::OptimizerKind;
use zeronn::{Activation, Layer, NetSpec, WeightInit};
use zeronn_tools::dataset;
use zeronn_tools::format::py_repr;
use zeronn_tools::gradcheck::{GradcheckConfig, gradcheck};
use zeronn_tools::mnist::{self, Mnist};
use zeronn_tools::netarg::{self, MNIST, Preset, parse_net};
use zeronn_tools::progress::Progress;
use zeronn_tools::sparse::EvalSet;
use zeronn_tools::train::{Event, TrainConfig, accuracy};
use zeronn_tools::{modelfile, train::EVAL_CHUNK};

#[derive(Parser)]
#[command(
    name = "zeronn",
    version,
    about = "The networks of 'Deep Learning from Scratch', fast and exact, on MNIST"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a net on MNIST; the defaults are the book's chapter 5 run (train_neuralnet.py), the flags give chapter 6's nets
    Train(TrainArgs),
    /// Compare backprop with the numerical gradient on the first training images (the book's 5.7.3)
    Gradcheck(GradcheckArgs),
    /// Accuracy of a saved model on the MNIST test set
    Eval(EvalArgs),
    /// Time the book's run: gemm shapes, training step, evaluation pass, batch-1 forward, whole run
    Bench(BenchArgs),
    /// Write what a firmware build embeds: the model, test and training images, and the results the desktop computes on them
    Export(ExportArgs),
    /// Classify pictures of digits (PNG or JPEG, any size, dark on light or light on dark) with a saved model
    Predict(PredictArgs),
    /// Bring a model in: an ONNX graph (from torch.onnx.export or onnx.helper) becomes a zeronn model file
    Import(ImportArgs),
    /// Write a zeronn model as an ONNX graph (for ONNX Runtime, Netron, ...)
    ExportOnnx(ExportOnnxArgs),
    /// Reproduce one of the book's experiments: chapter 6 as a CSV of every curve and a PNG plot like the book's figure; chapters 7-8 as pictures of a trained conv net (--model)
    Experiment(ExperimentArgs),
    /// Fetch the four MNIST files (or Fashion-MNIST's) from the usual mirrors, checked by SHA-256, into the folder every command reads by default
    Download(DownloadArgs),
    /// Quantize a net to int8 (an MLP or a conv net; TensorFlow Lite's scheme, ranges calibrated on training images) and compare its test accuracy with the f32 model's
    Quantize(QuantizeArgs),
}

#[derive(Args)]
struct QuantizeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The f32 model file (from `zeronn train --save`): Affine, Convolution, Pooling, ReLU,
    /// BatchNorm (after an Affine) and Dropout layers
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Training images whose activations set the int8 ranges
    #[arg(long, value_name = "N", default_value_t = zeronn_tools::quantize::CALIB)]
    calib: usize,
    /// Write the int8 model to FILE (the int8 model format; `zeronn eval` takes it)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// How the file lays out the weights: `rows` (output by output), or `cortex-m`, made for
    /// the DSP extension of Cortex-M4/M7/M33 (1.29 instructions a multiply-add for the
    /// book's net on a Cortex-M4 instead of 1.51; any core, and the desktop, read both; a
    /// Convolution's weights stay in rows)
    #[arg(long, value_enum, default_value = "rows")]
    layout: LayoutArg,
    /// Evaluate only the first N test images
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

/// `zeronn quantize --layout`.
#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    /// Output by output.
    Rows,
    /// For Cortex-M's DSP extension.
    CortexM,
}

#[derive(Args)]
struct DownloadArgs {
    /// The folder to put the files in [default: the cache folder, e.g. ~/.cache/zeronn/mnist,
    /// where commands look without --data]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Fashion-MNIST instead of MNIST [default folder: ~/.cache/zeronn/fashion-mnist]
    #[arg(long)]
    fashion: bool,
    /// No progress bar, even on a terminal
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct ExperimentArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The experiment
    #[arg(value_enum)]
    name: zeronn_tools::experiment::Name,
    /// Directory for the CSV and the PNG (created if need be)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of the run's one generator
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Matrix-multiply backend
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// No progress bar, even on a terminal
    #[arg(long)]
    no_progress: bool,
    /// Iterations of optimizers and weight-init [default: the book's 2000]
    #[arg(long, value_name = "N")]
    iters: Option<usize>,
    /// Epochs [default: the book's: batch-norm 20, weight-decay 201, dropout 301, hyperparameters 50]
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Trials of hyperparameters [default: 100]
    #[arg(long, value_name = "N")]
    trials: Option<usize>,
    /// Weight scales of batch-norm, from 1 down to 1e-4 [default: 16]
    #[arg(long, value_name = "N")]
    scales: Option<usize>,
    /// The trained model of filters and misclassified
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
}

#[derive(Args)]
struct DataArgs {
    /// Directory holding the four MNIST IDX files (raw or .gz) [default: $ZERONN_DATA]; for
    /// train and eval also your own data: a CSV file, a NumPy .npz (arrays x and t), or x.npy,t.npy
    #[arg(long, value_name = "DIR|FILE")]
    data: Option<PathBuf>,
    /// With your own --data: the test set, a file of the same kind [default for train: 20 % of
    /// --data held out, shuffled with seed 0]
    #[arg(long, value_name = "FILE")]
    test_data: Option<PathBuf>,
    /// With a CSV: the label column, by header name or by number from 1 [default: a column
    /// named label, else the last]
    #[arg(long, value_name = "COLUMN")]
    label: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ActivationArg {
    Relu,
    Sigmoid,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Momentum,
    Nesterov,
    Adagrad,
    Rmsprop,
    Adam,
}

impl From<OptimizerArg> for OptimizerKind {
    fn from(o: OptimizerArg) -> Self {
        match o {
            OptimizerArg::Sgd => OptimizerKind::Sgd,
            OptimizerArg::Momentum => OptimizerKind::Momentum,
            OptimizerArg::Nesterov => OptimizerKind::Nesterov,
            OptimizerArg::Adagrad => OptimizerKind::AdaGrad,
            OptimizerArg::Rmsprop => OptimizerKind::RmsProp,
            OptimizerArg::Adam => OptimizerKind::Adam,
        }
    }
}

/// The net, as the book's `MultiLayerNetExtend` takes it, or a layer list, or a preset.
#[derive(Args)]
struct NetArgs {
    /// One of the book's conv nets, with its script's settings (init, Adam lr 0.001, 20 epochs) unless given
    #[arg(long, value_enum, conflicts_with = "net")]
    preset: Option<Preset>,
    /// A layer list, comma-separated, e.g. conv30x5,relu,pool2,100,relu,10 (conv<F>x<K>[s<S>][p<P>], pool<K>[s<S>], <N> for an Affine, relu, sigmoid, bn, dropout[<R>]; SoftmaxWithLoss appended)
    #[arg(long, value_name = "LAYERS", conflicts_with_all = ["hidden", "batch_norm", "dropout", "activation"])]
    net: Option<String>,
    /// Hidden layer sizes, comma-separated: 50 is the chapter 5 net, 100,100,100,100 a chapter 6 one
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50",
        value_name = "N,N,..."
    )]
    hidden: Vec<usize>,
    /// Hidden activation
    #[arg(long, value_enum, default_value = "relu")]
    activation: ActivationArg,
    /// Initial weights: a standard deviation, xavier (or sigmoid: sqrt(1/n)), he (or relu: sqrt(2/n)) [default: 0.01, or the preset's]
    #[arg(long, value_parser = parse_init, value_name = "STD|xavier|he")]
    weight_init_std: Option<WeightInit>,
    /// A BatchNorm after each hidden Affine
    #[arg(long)]
    batch_norm: bool,
    /// A Dropout of this ratio after each hidden activation
    #[arg(long, value_name = "RATIO")]
    dropout: Option<f32>,
    /// Weight decay λ: 0.5·λ·ΣW² added to the loss
    #[arg(long, value_name = "LAMBDA", default_value_t = 0.0)]
    weight_decay: f64,
}

fn parse_init(s: &str) -> std::result::Result<WeightInit, String> {
    WeightInit::parse(s)
        .ok_or_else(|| format!("'{s}' is not a non-negative number, xavier, sigmoid, he or relu"))
}

impl NetArgs {
    /// The flags that need no data, checked (before any data is loaded).
    fn check(&self) -> Result<()> {
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err("--hidden takes positive sizes, e.g. 50 or 100,100,100".into());
        }
        if let Some(r) = self.dropout
            && !(0.0..1.0).contains(&r)
        {
            return Err("--dropout takes a ratio in [0, 1)".into());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err("--weight-decay must be a non-negative number".into());
        }
        Ok(())
    }

    /// The net part of a training configuration for samples of shape `input` and `classes`
    /// classes, checked.
    fn apply(&self, cfg: &mut TrainConfig, input: Dims, classes: usize) -> Result<()> {
        self.check()?;
        cfg.hidden = self.hidden.clone();
        cfg.activation = match self.activation {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::Sigmoid => Activation::Sigmoid,
        };
        cfg.weight_init = self
            .weight_init_std
            .or(self.preset.map(Preset::weight_init))
            .unwrap_or(TrainConfig::default().weight_init);
        cfg.batch_norm = self.batch_norm;
        cfg.dropout = self.dropout;
        cfg.weight_decay = self.weight_decay;
        cfg.net = match (&self.net, self.preset) {
            (Some(text), _) => Some(parse_net(text, input, classes)?),
            (None, Some(p)) => Some(p.spec()),
            (None, None) => None,
        };
        let spec = cfg.spec(input.len(), classes);
        spec.validate()
            .map_err(|e| format!("--hidden {:?}: {e}", self.hidden))?;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum BackendArg {
    Auto,
    Naive,
    Portable,
    Avx2,
    Avx512,
    Matrixmultiply,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Naive => Backend::Naive,
            BackendArg::Portable => Backend::Portable,
            BackendArg::Avx2 => Backend::Avx2,
            BackendArg::Avx512 => Backend::Avx512,
            BackendArg::Matrixmultiply => Backend::MatrixMultiply,
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    net: NetArgs,
    /// The optimizer [default: sgd, or the preset's adam]
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// Mini-batch size (sampled with replacement)
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Learning rate [default: 0.1 for sgd (the chapter 5 run), else the book's: 0.01, Adam 0.001]
    #[arg(long)]
    lr: Option<f64>,
    /// Iterations [default: 10000, or the preset's 20 epochs]
    #[arg(long, conflicts_with = "epochs")]
    iters: Option<usize>,
    /// Epochs of train size / batch size iterations each, instead of --iters
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Train on the first N training images only (the book's overfitting experiments take 300)
    #[arg(long, value_name = "N")]
    train_size: Option<usize>,
    /// Seed for the initial weights and the mini-batches; the same seed repeats the run bit for bit [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate every N iterations [default: one epoch, train size / batch size]
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Write the trained parameters to FILE (zeronn model format)
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Write the run's state to FILE every --checkpoint-every iterations (atomically), so that
    /// `--resume FILE` continues it after a crash, bit for bit
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Iterations between two checkpoints [default: one epoch]
    #[arg(long, value_name = "N", requires = "checkpoint")]
    checkpoint_every: Option<usize>,
    /// Continue the run of a checkpoint (give the same flags and data, --seed included)
    #[arg(long, value_name = "FILE")]
    resume: Option<PathBuf>,
    /// Draw the run as a PNG: train and test accuracy per epoch, and the loss per iteration
    /// (smoothed as the book's smooth_curve), as the book's figures
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// Matrix-multiply backend
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// No progress bar, even on a terminal
    #[arg(long)]
    no_progress: bool,
    /// Threads: each step split by input features (pixels), or, for a net that does not start with an Affine (a conv net), by images; evaluations by images; bit-reproducible for a given count (with --backend matrixmultiply, the picked rows of W1 are copied out for the crate and back)
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct GradcheckArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Check in f32 (default f64, as the book's NumPy)
    #[arg(long)]
    f32: bool,
    /// Training images to use (with BatchNorm take several: with one, most gradients are zero)
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// Seed for the initial weights
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Central-difference step [default: 1e-4 in f64, 1e-3 in f32]
    #[arg(long)]
    h: Option<f64>,
}

#[derive(Args)]
struct PredictArgs {
    /// The model file (28 × 28 inputs)
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The pictures
    #[arg(value_name = "PICTURE", required = true)]
    pictures: Vec<PathBuf>,
    /// Also write each picture as the net sees it (28 × 28 PNG) into DIR
    #[arg(long, value_name = "DIR")]
    converted: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    /// The data bundle a firmware build embeds (directory)
    Firmware,
    /// An ONNX graph, as `zeronn export-onnx` writes it
    Onnx,
    /// safetensors with the book's tensor names and the layer list in the metadata
    Safetensors,
}

#[derive(Args)]
struct ImportArgs {
    /// The model to import: an ONNX graph (.onnx) or safetensors (.safetensors)
    #[arg(value_name = "MODEL")]
    model: PathBuf,
    /// The zeronn model file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// safetensors: the layer list, as `train --net` takes it [default: the file's metadata]
    #[arg(long, value_name = "LAYERS")]
    net: Option<String>,
    /// safetensors: the input's shape, CxHxW or N [default: the file's metadata, else 1x28x28]
    #[arg(long, value_name = "SHAPE")]
    input: Option<String>,
}

#[derive(Args)]
struct ExportOnnxArgs {
    /// The zeronn model file
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The ONNX file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The model file (from `zeronn train --save`)
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Evaluate only the first N test images
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Matrix-multiply backend
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Also write the scores (logits, before any softmax) of every evaluated image to FILE,
    /// a NumPy .npy array of float32, images × classes
    #[arg(long, value_name = "FILE")]
    logits: Option<PathBuf>,
    /// Also time N evaluation passes over every image of MNIST-like --data (the training and
    /// the test set, as a training run evaluates them; one thread) and print the median
    #[arg(long, value_name = "N")]
    time_passes: Option<usize>,
    /// With an int8 --model: the f32 model it was quantized from, evaluated on the same
    /// images; prints both accuracies and how many images get the same class
    #[arg(long, value_name = "FILE")]
    f32: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Backends to time (repeat the flag) [default: auto and matrixmultiply]
    #[arg(long, value_enum)]
    backend: Vec<BackendArg>,
    /// Samples per figure (the median is printed)
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Only the gemm products (no MNIST needed)
    #[arg(long)]
    gemm_only: bool,
    /// Whole runs per figure of the whole book run, on 1 and 2 threads (0: skip them)
    #[arg(long, default_value_t = 3, value_name = "N")]
    whole_reps: usize,
    /// The conv nets too (SimpleConvNet, DeepConvNet): training step, inference at batch 100 and 1
    #[arg(long)]
    conv: bool,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The model file (from `zeronn train --save`)
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// What to write: the firmware's data bundle (a directory), or the model alone as an ONNX
    /// graph or as safetensors (a file; the options below are the firmware's)
    #[arg(long, value_enum, default_value = "firmware")]
    format: ExportFormat,
    /// Directory to write the bundle as: a new one, or one an earlier export wrote (replaced
    /// whole, and only once the new bundle is complete); the file, for --format onnx or
    /// safetensors
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Test images to embed (the first N of the test set)
    #[arg(long, default_value_t = 200)]
    test_images: usize,
    /// Training images to embed for on-device training (the first N of the training set)
    #[arg(long, default_value_t = 300)]
    train_images: usize,
    /// On-device training: SGD steps
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// On-device training: mini-batch size
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// On-device training: hidden units
    #[arg(long, default_value_t = 50)]
    hidden: usize,
    /// On-device training: seed
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A second model of any layer list for the firmware to run (BatchNorm folded into the Affine before it) [default: --model]
    #[arg(long, value_name = "FILE")]
    mlp_model: Option<PathBuf>,
    /// A conv net for the firmware's conv inference (any layer list; BatchNorm after an Affine folded) [default: --mlp-model]
    #[arg(long, value_name = "FILE")]
    conv_model: Option<PathBuf>,
    /// On-device Adam training: hidden sizes of the 784-…-10 net with BatchNorm
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,100",
        value_name = "N,N,..."
    )]
    adam_hidden: Vec<usize>,
    /// On-device Adam training: steps
    #[arg(long, default_value_t = 10)]
    adam_steps: usize,
}

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Train(a) => cmd_train(a),
        Cmd::Gradcheck(a) => cmd_gradcheck(a),
        Cmd::Eval(a) => cmd_eval(a),
        Cmd::Bench(a) => cmd_bench(a),
        Cmd::Export(a) => cmd_export(a),
        Cmd::Predict(a) => cmd_predict(a),
        Cmd::Import(a) => cmd_import(a),
        Cmd::ExportOnnx(a) => cmd_export_onnx(a),
        Cmd::Experiment(a) => cmd_experiment(a),
        Cmd::Download(a) => cmd_download(a),
        Cmd::Quantize(a) => cmd_quantize(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zeronn: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_data(arg: &DataArgs) -> Result<Mnist> {
    if arg.data.as_deref().is_some_and(dataset::is_own) {
        return Err(
            "this command takes MNIST (a directory); your own data goes to train and eval".into(),
        );
    }
    let dir = mnist::data_dir(arg.data.as_deref())?;
    mnist::load(&dir).map_err(|e| e.to_string())
}

/// The data of `train`: MNIST, or your own files (see `dataset.rs`), with one sample's shape
/// and the number of classes.
fn load_own_or_mnist(arg: &DataArgs) -> Result<(Mnist, Dims, usize)> {
    let Some(path) = arg.data.as_deref().filter(|p| dataset::is_own(p)) else {
        if arg.test_data.is_some() || arg.label.is_some() {
            return Err(
                "--test-data and --label are for your own --data (a CSV or NumPy file)".into(),
            );
        }
        return Ok((load_data(arg)?, MNIST, 10));
    };
    let label = arg.label.as_deref();
    let main = dataset::load(path, label)?;
    let (train, test) = match &arg.test_data {
        Some(t) => {
            let test = dataset::load(t, label)?;
            if test.dims != main.dims || test.split.is_float() != main.split.is_float() {
                return Err(format!(
                    "--test-data {}: {} {} per sample, --data has {} {}",
                    t.display(),
                    test.dims.len(),
                    if test.split.is_float() {
                        "features"
                    } else {
                        "pixels"
                    },
                    main.dims.len(),
                    if main.split.is_float() {
                        "features"
                    } else {
                        "pixels"
                    },
                ));
            }
            (main.split, test.split)
        }
        None => {
            // Hold out 20 %, shuffled with seed 0 (the same split for every run).
            let n = main.split.len();
            let mut order: Vec<usize> = (0..n).collect();
            let mut rng = zeronn::random::seeded(0);
            for i in (1..n).rev() {
                order.swap(i, zeronn::random::index(&mut rng, i + 1));
            }
            let cut = n - (n / 5).max(1).min(n - 1);
            if n < 2 {
                return Err(format!(
                    "{}: one sample; give more, or --test-data",
                    path.display()
                ));
            }
            eprintln!(
                "zeronn: {}: {} samples for training, {} held out for testing (give --test-data to choose)",
                path.display(),
                cut,
                n - cut
            );
            (
                main.split.select(&order[..cut]),
                main.split.select(&order[cut..]),
            )
        }
    };
    let classes = dataset::classes(&[&train, &test]);
    Ok((Mnist { train, test }, main.dims, classes))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn positive(name: &str, v: usize) -> Result<usize> {
    if v == 0 {
        Err(format!("--{name} must be at least 1"))
    } else {
        Ok(v)
    }
}

fn cmd_train(a: TrainArgs) -> Result<ExitCode> {
    let preset = a.net.preset;
    let kind = match (a.optimizer, preset) {
        (Some(o), _) => OptimizerKind::from(o),
        (None, Some(_)) => OptimizerKind::Adam,
        (None, None) => OptimizerKind::Sgd,
    };
    let lr = a.lr.unwrap_or(match kind {
        OptimizerKind::Sgd => 0.1,
        k => k.default_lr(),
    });
    if !(lr.is_finite() && lr > 0.0) {
        return Err("--lr must be a positive number".into());
    }
    let mut cfg = TrainConfig {
        optimizer: kind,
        batch_size: positive("batch-size", a.batch_size)?,
        lr,
        iters: a.iters.unwrap_or(10_000),
        seed: a.seed.unwrap_or_else(clock_seed),
        eval_every: a
            .eval_every
            .map(|n| positive("eval-every", n))
            .transpose()?,
        backend: Backend::from(a.backend)
            .resolve()
            .map_err(|e| e.to_string())?,
        ..TrainConfig::default()
    };
    a.net.check()?;
    let threads = positive("threads", a.threads)?;
    let train_size = a
        .train_size
        .map(|n| positive("train-size", n))
        .transpose()?;
    if let Some(path) = &a.save {
        modelfile::check_savable("--save", path)?;
    }
    if let Some(path) = &a.checkpoint {
        modelfile::check_savable("--checkpoint", path)?;
    }
    if let Some(path) = &a.plot {
        modelfile::check_savable("--plot", path)?;
    }
    let resume = a
        .resume
        .as_deref()
        .map(zeronn_tools::checkpoint::load)
        .transpose()?;
    if resume.is_some() && a.seed.is_none() {
        return Err(
            "--resume needs the run's --seed (the checkpoint's run replays its draws)".into(),
        );
    }
    let (mut data, dims, classes) = load_own_or_mnist(&a.data)?;
    a.net.apply(&mut cfg, dims, classes)?;
    cfg.classes = classes;
    // A net given whole: the test set once more after the last step, as the book's Trainer.
    cfg.final_eval = cfg.net.is_some();
    if let Some(n) = train_size {
        if n > data.train.len() {
            return Err(format!(
                "--train-size {n}: the training set has {} images",
                data.train.len()
            ));
        }
        data.train = data.train.head(n);
    }
    let epochs = a
        .epochs
        .or(preset.filter(|_| a.iters.is_none()).map(|_| Preset::EPOCHS));
    if let Some(e) = epochs {
        cfg.iters = positive("epochs", e)?.saturating_mul(cfg.iter_per_epoch(data.train.len()));
    }
    let spec = cfg.spec(data.train.pixels, classes);
    if spec.input_size() != data.train.pixels {
        return Err(format!(
            "the net takes {} values per sample, the data has {}",
            spec.input_size(),
            data.train.pixels
        ));
    }
    if spec.output_size() < classes {
        return Err(format!(
            "the net gives {} scores, the data has {classes} classes",
            spec.output_size()
        ));
    }
    if a.save.is_some() {
        modelfile::check_size(&spec).map_err(|e| format!("--hidden {:?}: {e}", cfg.hidden))?;
    }
    eprintln!(
        "zeronn train: {}, batch {}, lr {}, {} iterations, seed {}, backend {}, {} thread(s)",
        describe_run(&cfg, &spec),
        cfg.batch_size,
        cfg.lr,
        cfg.iters,
        cfg.seed,
        cfg.backend,
        a.threads
    );
    eprintln!("train_acc test_acc (after the update of every epoch's first iteration)");
    let start = Instant::now();
    let mut progress = Progress::new(cfg.iters, !a.no_progress);
    let on_event = |event: Event<'_>| match event {
        Event::Iter(i, loss) => progress.tick(i + 1, loss),
        Event::Epoch(e) => {
            progress.clear();
            println!("{} {}", py_repr(e.train_acc), py_repr(e.test_acc));
        }
    };
    let first_affine = matches!(spec.layers().first(), Some(Layer::Affine { .. }));
    let team = first_affine && !data.train.is_float();
    if (a.checkpoint.is_some() || a.resume.is_some()) && threads != 1 && !team {
        return Err(format!(
            "--checkpoint and --resume on {threads} threads need a net whose first layer is an \
             Affine, on image data (the thread team); this run would split its batches \
             instead: use --threads 1"
        ));
    }
    let checkpointing = zeronn_tools::train::Checkpointing {
        every: match a.checkpoint_every {
            Some(n) => positive("checkpoint-every", n)?,
            None => cfg.iter_per_epoch(data.train.len()),
        },
        path: a.checkpoint.clone(),
        fingerprint: fingerprint(&cfg, &spec, &data, threads),
        resume,
    };
    let report = if threads == 1 {
        zeronn_tools::train::train_resumable(&cfg, &data, &checkpointing, on_event)
            .map_err(|e| e.to_string())
    } else if team {
        zeronn_tools::train_threads::train_threads_resumable(
            &cfg,
            &data,
            threads,
            &checkpointing,
            on_event,
        )
        .map_err(|e| e.to_string())
    } else {
        zeronn_tools::data_parallel::train_data_parallel(&cfg, &data, threads, on_event)
            .map_err(|e| e.to_string())
    }?;
    progress.clear();
    if let Some(acc) = report.final_test_acc {
        eprintln!(
            "final test accuracy (after the last iteration) {}",
            py_repr(acc)
        );
    }
    let total = start.elapsed();
    let tail = report.losses.len().min(100);
    let loss = if tail == 0 {
        String::from("no batches")
    } else {
        let sum: f64 = report.losses[report.losses.len() - tail..]
            .iter()
            .map(|&l| l as f64)
            .sum();
        format!(
            "mean loss of the last {tail} batches {:.4}",
            sum / tail as f64
        )
    };
    eprintln!(
        "done in {:.2} s (training {:.2} s, evaluation {:.2} s); {loss}",
        total.as_secs_f64(),
        report.train_time.as_secs_f64(),
        report.eval_time.as_secs_f64(),
    );
    if let Some(path) = &a.plot {
        let per_epoch = cfg.iter_per_epoch(data.train.len()) as f64;
        zeronn_tools::plot::draw_run(path, &describe_run(&cfg, &spec), &report, per_epoch)?;
        eprintln!("plotted {}", path.display());
    }
    if let Some(i) = report.diverged {
        return Err(format!(
            "training diverged at iteration {i}: its loss is {} (try a smaller --lr or \
             --weight-init-std){}",
            report.losses[i],
            if a.save.is_some() { "; not saved" } else { "" }
        ));
    }
    if !report
        .params
        .iter()
        .chain(&report.state)
        .all(|p| p.is_finite())
    {
        return Err(format!(
            "training diverged: the parameters hold NaN or infinite values (try a smaller --lr \
             or --weight-init-std){}",
            if a.save.is_some() { "; not saved" } else { "" }
        ));
    }
    if let Some(path) = &a.save {
        // Should the file fail now, the run is not lost: the model goes to the temporary
        // directory instead, and the error says where.
        let spare = std::env::temp_dir().join(format!(
            "zeronn-seed{}-{}.zrnn",
            cfg.seed,
            std::process::id()
        ));
        modelfile::save_or_spare(path, &spare, &report.spec, &report.params, &report.state)?;
        eprintln!("saved {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The settings and data a checkpoint belongs to, in words. A run on several threads rounds differently from one on one thread (its forward sums are
/// split by features): the thread count is part of it then.
fn fingerprint(cfg: &TrainConfig, spec: &NetSpec, data: &Mnist, threads: usize) -> String {
    let labels = zeronn::model::crc32(&[&data.train.t[..], &data.test.t[..]].concat());
    let threads = if threads > 1 {
        format!(" threads {threads}")
    } else {
        String::new()
    };
    format!(
        "{}; {:?} lr {} batch {} iterations {} seed {} weight decay {} init {:?} eval every {:?} \
         backend {}{threads}; data {}+{} samples of {}, labels crc {labels:08x}",
        zeronn_tools::describe::layers(spec),
        cfg.optimizer,
        cfg.lr,
        cfg.batch_size,
        cfg.iters,
        cfg.seed,
        cfg.weight_decay,
        cfg.weight_init,
        cfg.eval_every,
        cfg.backend,
        data.train.len(),
        data.test.len(),
        data.train.pixels
    )
}

/// The net and optimizer of a run, for its header line: `784-50-10 Relu` for the chapter 5
/// run, with whatever differs from it after.
fn describe_run(cfg: &TrainConfig, spec: &NetSpec) -> String {
    let mut s = if cfg.net.is_some() {
        zeronn_tools::describe::layers(spec)
    } else {
        format!(
            "{} {:?}",
            zeronn_tools::describe::sizes(spec),
            cfg.activation
        )
    };
    if cfg.batch_norm {
        s += " BatchNorm";
    }
    if let Some(r) = cfg.dropout {
        s += &format!(" Dropout {r}");
    }
    if cfg.weight_init != TrainConfig::default().weight_init {
        s += &format!(", init {}", cfg.weight_init);
    }
    if cfg.weight_decay > 0.0 {
        s += &format!(", weight decay {}", cfg.weight_decay);
    }
    if cfg.optimizer != OptimizerKind::Sgd {
        s += &format!(", {}", cfg.optimizer.name());
    }
    s
}

fn cmd_gradcheck(a: GradcheckArgs) -> Result<ExitCode> {
    let mut net = TrainConfig::default();
    a.net.apply(&mut net, MNIST, 10)?;
    let cfg = GradcheckConfig {
        net,
        samples: positive("samples", a.samples)?,
        seed: a.seed,
        f32: a.f32,
        h: a.h,
    };
    if let Some(h) = cfg.h
        && !(h.is_finite() && h > 0.0)
    {
        return Err("--h must be a positive number".into());
    }
    let data = load_data(&a.data)?;
    let diffs = gradcheck(&cfg, &data.train).map_err(|e| e.to_string())?;
    let mut ok = true;
    for d in &diffs {
        if cfg.f32 {
            println!(
                "{}:{} relative:{}",
                d.name,
                py_repr(d.mean_abs_diff),
                py_repr(d.relative)
            );
        } else {
            println!("{}:{}", d.name, py_repr(d.mean_abs_diff));
        }
        ok &= d.passed;
    }
    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<_> = diffs.iter().filter(|d| !d.passed).map(|d| d.name).collect();
        eprintln!("zeronn: gradient check FAILED for {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

fn cmd_eval(a: EvalArgs) -> Result<ExitCode> {
    let bytes = modelfile::read(&a.model)?;
    if bytes.is_int8() {
        return eval_int8(&a, &bytes);
    }
    if a.f32.is_some() {
        return Err(format!(
            "--f32 compares an int8 --model with the f32 model it came from; {} is an f32 model",
            a.model.display()
        ));
    }
    let model = modelfile::parse(&bytes)?;
    let net = model
        .net()
        .and_then(|n| n.with_backend(a.backend.into()))
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let data = match a.data.data.as_deref().filter(|p| dataset::is_own(p)) {
        Some(path) => {
            let own = dataset::load(path, a.data.label.as_deref())?;
            own.check_labels(&path.display().to_string(), net.spec().output_size())?;
            Mnist {
                train: mnist::Split::default(),
                test: own.split,
            }
        }
        None if a.data.label.is_some() => return Err("--label is for a CSV --data".into()),
        None => load_data(&a.data)?,
    };
    if a.data.test_data.is_some() {
        return Err("eval evaluates --data itself; --test-data is for train".into());
    }
    check_model_fits(&a.model, net.spec(), &data)?;
    if let Some(reps) = a.time_passes {
        let reps = positive("time-passes", reps)?;
        if data.train.is_empty() {
            return Err("--time-passes times MNIST-like --data (a directory of IDX files)".into());
        }
        let sets = [
            EvalSet::new(&data.train, EVAL_CHUNK),
            EvalSet::new(&data.test, EVAL_CHUNK),
        ];
        let mut ws = vec![0.0f32; net.spec().workspace_len(EVAL_CHUNK)];
        let mut result = Ok(());
        let t = zeronn_tools::bench::median_time(reps, 1, || {
            for s in &sets {
                if let Err(e) = accuracy(&net, s, &mut ws) {
                    result = Err(e.to_string());
                }
            }
        });
        result?;
        print_pass_time(data.train.len() + data.test.len(), t, reps);
    }
    let test = match a.limit {
        Some(n) => data.test.head(positive("limit", n)?),
        None => data.test,
    };
    if let Some(path) = &a.logits {
        modelfile::check_savable("--logits", path)?;
    }
    let mut ws = vec![0.0f32; net.spec().workspace_len(EVAL_CHUNK)];
    let acc =
        accuracy(&net, &EvalSet::new(&test, EVAL_CHUNK), &mut ws).map_err(|e| e.to_string())?;
    let correct = (acc * test.len() as f64).round() as usize;
    println!("test accuracy: {} ({correct}/{})", py_repr(acc), test.len());
    if let Some(path) = &a.logits {
        let classes = net.spec().output_size();
        let mut scores = Vec::with_capacity(test.len() * classes);
        let mut x = vec![0.0f32; EVAL_CHUNK * test.pixels];
        for lo in (0..test.len()).step_by(EVAL_CHUNK) {
            let hi = (lo + EVAL_CHUNK).min(test.len());
            let x = &mut x[..(hi - lo) * test.pixels];
            test.images_f32(lo, hi, x);
            scores.extend_from_slice(net.predict(x, &mut ws).map_err(|e| e.to_string())?);
        }
        let npy = zeronn_tools::format::npy_f32(&scores, &[test.len(), classes]);
        modelfile::write_atomic(path, &npy)
            .map_err(|e| format!("--logits {}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `zeronn eval --time-passes`'s line.
fn print_pass_time(images: usize, t: std::time::Duration, reps: usize) {
    println!(
        "evaluation pass over {images} images: {:.2} ms (median of {reps}, one thread)",
        t.as_secs_f64() * 1e3
    );
}

/// `zeronn eval` of an int8 model (from `zeronn quantize --out`).
fn eval_int8(a: &EvalArgs, file: &zeronn::ModelFile) -> Result<ExitCode> {
    let model = file.int8_model().map_err(|e| e.to_string())?;
    if a.logits.is_some() || a.data.label.is_some() || a.data.test_data.is_some() {
        return Err("an int8 model is evaluated on MNIST-like data only (no --logits, --label or --test-data yet)".into());
    }
    let data = load_data(&a.data)?;
    let inputs = model.spec().input_size();
    if inputs != data.test.pixels {
        return Err(format!(
            "{}: the model takes {inputs} inputs, the data has {} per image",
            a.model.display(),
            data.test.pixels
        ));
    }
    let pixels = data.test.pixels;
    let to_int8 = zeronn_tools::quantize::ToInt8::new(model.input_params());
    let mut ws = vec![0i8; zeronn::QModel::workspace_len(model.spec(), EVAL_CHUNK)];
    let mut pack = vec![0i32; zeronn::QModel::pack_len(model.spec())];
    let packed = model.pack(&mut pack).map_err(|e| e.to_string())?;
    let mut qx = vec![0i8; EVAL_CHUNK * pixels];
    let mut scratch = zeronn_tools::sparse::Int8Scratch::default();
    if let Some(reps) = a.time_passes {
        let reps = positive("time-passes", reps)?;
        // As a training run evaluates: chunks of images of similar extent, compacted to
        // their active pixels, prepared once (the whole images where the model's input is
        // not MNIST's).
        let sets = [
            EvalSet::new(&data.train, EVAL_CHUNK),
            EvalSet::new(&data.test, EVAL_CHUNK),
        ];
        let mut prepared: Vec<_> = sets.iter().map(|s| s.int8(&model)).collect();
        let ready = prepared
            .iter_mut()
            .map(|p| p.as_mut().map(|p| p.ready(&model)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let splits = [&data.train, &data.test];
        let mut result = Ok(());
        let t = zeronn_tools::bench::median_time(reps, 1, || {
            for (set, split) in ready.iter().zip(splits) {
                let pass = match set {
                    Some(set) => set.count_correct(&mut scratch),
                    None => zeronn_tools::bench::int8_pass(
                        &model,
                        Some(&packed),
                        &to_int8,
                        &[split],
                        &mut ws,
                        &mut qx,
                    ),
                };
                if let Err(e) = pass {
                    result = Err(e);
                }
            }
        });
        result?;
        print_pass_time(data.train.len() + data.test.len(), t, reps);
        println!("int8 kernel: {}", zeronn::quant::kernel_name());
    }
    let test = match a.limit {
        Some(n) => data.test.head(positive("limit", n)?),
        None => data.test,
    };
    let correct = zeronn_tools::bench::int8_pass(
        &model,
        Some(&packed),
        &to_int8,
        &[&test],
        &mut ws,
        &mut qx,
    )?;
    // The compacted evaluation (what --time-passes times) must count the same.
    let set = EvalSet::new(&test, EVAL_CHUNK);
    if let Some(mut prepared) = set.int8(&model) {
        let c = prepared.ready(&model)?.count_correct(&mut scratch)?;
        if c != correct {
            return Err(format!(
                "internal error: the compacted int8 evaluation counts {c} correct, whole images {correct}"
            ));
        }
    }
    if let Some(path) = &a.f32 {
        let bytes = modelfile::read(path)?;
        let f32_model = modelfile::parse(&bytes)?;
        let net = f32_model
            .net()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return print_f32_against_int8(&net, &model, &test).map(|()| ExitCode::SUCCESS);
    }
    let acc = correct as f64 / test.len() as f64;
    println!(
        "test accuracy: {} ({correct}/{}), int8",
        py_repr(acc),
        test.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_predict(a: PredictArgs) -> Result<ExitCode> {
    use zeronn_tools::predict;
    let bytes = modelfile::read(&a.model)?;
    let model = modelfile::parse(&bytes)?;
    let net = model
        .net()
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    if net.spec().input_size() != predict::SIDE * predict::SIDE {
        return Err(format!(
            "{}: the model takes {} inputs; pictures become 28 × 28 = 784",
            a.model.display(),
            net.spec().input_size()
        ));
    }
    if let Some(dir) = &a.converted {
        std::fs::create_dir_all(dir).map_err(|e| format!("--converted {}: {e}", dir.display()))?;
    }
    let mut ws = vec![0.0f32; net.spec().workspace_len(1)];
    let mut x = vec![0.0f32; predict::SIDE * predict::SIDE];
    for path in &a.pictures {
        let pixels = predict::load(path)?;
        if let Some(dir) = &a.converted {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            let out = dir.join(format!("{name}.28x28.png"));
            predict::to_picture(&pixels)
                .save(&out)
                .map_err(|e| format!("{}: {e}", out.display()))?;
        }
        zeronn_tools::pixels::to_unit_f32(&pixels, &mut x);
        let mut p = net
            .predict(&x, &mut ws)
            .map_err(|e| e.to_string())?
            .to_vec();
        zeronn::functions::softmax_inplace(&mut p);
        let best: Vec<String> = predict::top(&p, 3)
            .iter()
            .map(|(c, q)| format!("{c} ({:.1} %)", 100.0 * q))
            .collect();
        println!("{}: {}", path.display(), best.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_import(a: ImportArgs) -> Result<ExitCode> {
    let shown = a.model.display();
    modelfile::check_savable("--out", &a.out)?;
    let bytes = std::fs::read(&a.model).map_err(|e| format!("{shown}: {e}"))?;
    // safetensors: an 8-byte header length, then the JSON header.
    let safetensors = a.model.extension().is_some_and(|e| e == "safetensors")
        || (bytes.len() > 8 && bytes[8] == b'{');
    let imported = if safetensors {
        let input = a.input.as_deref().map(netarg::parse_dims).transpose()?;
        let (spec, params, state) =
            zeronn_tools::safetensors_file::import(&bytes, a.net.as_deref(), input)
                .map_err(|e| format!("{shown}: {e}"))?;
        zeronn_tools::onnx::Imported {
            spec,
            params,
            state,
            notes: vec![],
        }
    } else {
        if a.net.is_some() || a.input.is_some() {
            return Err(
                "--net and --input are for safetensors files (an ONNX graph has its own)".into(),
            );
        }
        zeronn_tools::onnx::import(&bytes).map_err(|e| format!("{shown}: {e}"))?
    };
    modelfile::check_size(&imported.spec).map_err(|e| format!("{shown}: {e}"))?;
    for note in &imported.notes {
        eprintln!("{shown}: {note}");
    }
    let spec = &imported.spec;
    modelfile::save(&a.out, spec, &imported.params, &imported.state)?;
    println!(
        "imported {shown}: {} ({}), {} parameters -> {}",
        zeronn_tools::describe::sizes(spec),
        zeronn_tools::describe::layers(spec),
        spec.param_len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_export_onnx(a: ExportOnnxArgs) -> Result<ExitCode> {
    export_file(&a.model, &a.out, ExportFormat::Onnx)
}

/// Writes the model at `path` to `out` as ONNX or safetensors.
fn export_file(path: &Path, out: &Path, format: ExportFormat) -> Result<ExitCode> {
    let bytes = modelfile::read(path)?;
    let model = modelfile::parse(&bytes)?;
    let (spec, params, state) = (model.spec(), model.params(), model.state());
    let (what, written) = match format {
        ExportFormat::Onnx => (
            format!("ONNX (opset {})", zeronn_tools::onnx::OPSET),
            zeronn_tools::onnx::export(spec, params, state),
        ),
        _ => (
            "safetensors".to_string(),
            zeronn_tools::safetensors_file::export(spec, params, state),
        ),
    };
    let written = written.map_err(|e| format!("{}: {e}", path.display()))?;
    modelfile::check_savable("--out", out)?;
    modelfile::write_atomic(out, &written).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "exported {} as {what}: {} bytes -> {}",
        path.display(),
        written.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Fails unless the model at `path` takes the data's samples and gives a score for each of
/// their classes.
fn check_model_fits(path: &Path, spec: &NetSpec, data: &Mnist) -> Result<()> {
    let classes = dataset::classes(&[&data.test]).max(dataset::classes(&[&data.train]));
    if spec.input_size() != data.test.pixels || spec.output_size() < classes {
        return Err(format!(
            "{}: the model is {}, the data needs {} inputs and {} outputs (one per class)",
            path.display(),
            zeronn_tools::describe::sizes(spec),
            data.test.pixels,
            if data.test.is_float() { classes } else { 10 }
        ));
    }
    Ok(())
}

fn cmd_bench(a: BenchArgs) -> Result<ExitCode> {
    use zeronn_tools::bench;
    let reps = positive("reps", a.reps)?;
    let backends: Vec<Backend> = if a.backend.is_empty() {
        vec![Backend::Auto, Backend::MatrixMultiply]
    } else {
        a.backend.iter().map(|&b| b.into()).collect()
    };
    let backends: Vec<Backend> = backends
        .into_iter()
        .map(|b| b.resolve().map_err(|e| e.to_string()))
        .collect::<Result<_>>()?;
    let (peak, isa) = zeronn_tools::peak::fma_peak_gflops(reps);
    println!("FMA peak measured on this core ({isa}): {peak:.1} GFLOP/s");
    println!();
    println!(
        "| product | m×k×n | {} |",
        backends
            .iter()
            .map(|b| format!("{b} GFLOP/s (of peak)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("| --- | --- |{}", " --- |".repeat(backends.len()));
    let conv_shapes = if a.conv {
        bench::conv_shapes()
    } else {
        Vec::new()
    };
    let shapes = bench::TRAINING_SHAPES
        .iter()
        .chain(&bench::CHAPTER6_SHAPES)
        .chain(&conv_shapes)
        .copied()
        .chain(bench::LADDER.iter().map(|&s| bench::Shape {
            name: "square",
            m: s,
            k: s,
            n: s,
            a_t: false,
            b_t: false,
        }));
    for s in shapes {
        let flops = 2.0 * (s.m * s.k * s.n) as f64;
        let cells: Vec<String> = backends
            .iter()
            .map(|&b| {
                bench::time_gemm(b, &s, reps)
                    .map(|t| {
                        format!(
                            "{:.1} ({:.0}%)",
                            flops / t / 1e9,
                            100.0 * flops / t / 1e9 / peak
                        )
                    })
                    .unwrap_or_else(|e| e.to_string())
            })
            .collect();
        println!(
            "| {} | {}×{}×{} | {} |",
            s.name,
            s.m,
            s.k,
            s.n,
            cells.join(" | ")
        );
    }
    if a.gemm_only {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!(
        "| figure | {} |",
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("| --- |{}", " --- |".repeat(backends.len()));
    // A figure's time, with the dense FLOPs of the book's computation per second and their
    // fraction of the peak.
    let row = |name: &str, f: &dyn Fn(Backend) -> Result<(f64, f64)>, unit: f64, suffix: &str| {
        let cells: Vec<String> = backends
            .iter()
            .map(|&b| {
                f(b).map(|(t, flops)| {
                    let gflops = flops / t / 1e9;
                    let digits = if suffix == "s" { 2 } else { 1 };
                    format!(
                        "{:.digits$} {suffix} ({gflops:.1} GFLOP/s, {:.0}%)",
                        t * unit,
                        100.0 * gflops / peak
                    )
                })
                .unwrap_or_else(|e| e)
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    let shape = bench::BOOK_SHAPE;
    let data = load_data(&a.data)
        .map_err(|e| eprintln!("with random images (no MNIST: {e})"))
        .ok();
    let (train, test) = (
        data.as_ref().map(|d| &d.train),
        data.as_ref().map(|d| &d.test),
    );
    row(
        "training step, batch 100",
        &|b| {
            bench::time_train_step(b, train, reps)
                .map(|t| (t, bench::step_flops(shape, 100)))
                .map_err(|e| e.to_string())
        },
        1e6,
        "µs",
    );
    row(
        "forward of one image",
        &|b| {
            bench::time_forward1(b, test, reps)
                .map(|t| (t, bench::forward_flops(shape, 1)))
                .map_err(|e| e.to_string())
        },
        1e6,
        "µs",
    );
    if let Some(d) = &data {
        let (train, test) = (
            EvalSet::new(&d.train, EVAL_CHUNK),
            EvalSet::new(&d.test, EVAL_CHUNK),
        );
        let splits = [&train, &test];
        let images = train.len() + test.len();
        row(
            &format!("evaluation pass, {images} images"),
            &|b| {
                bench::time_eval_pass(b, &splits, reps)
                    .map(|t| (t, bench::forward_flops(shape, images)))
                    .map_err(|e| e.to_string())
            },
            1e3,
            "ms",
        );
        row(
            "Adam step, ch. 6 net (784-100×4-10), batch 128",
            &|b| bench::time_adam_step(b, &d.train, reps).map_err(|e| e.to_string()),
            1e6,
            "µs",
        );
        if a.conv {
            for preset in [Preset::SimpleConvnet, Preset::DeepConvnet] {
                let name = match preset {
                    Preset::SimpleConvnet => "SimpleConvNet",
                    Preset::DeepConvnet => "DeepConvNet",
                };
                row(
                    &format!("{name} training step (Adam, batch 100)"),
                    &|b| {
                        bench::time_conv_step(preset, b, &d.train, reps).map_err(|e| e.to_string())
                    },
                    1e3,
                    "ms",
                );
                for batch in [100, 1] {
                    row(
                        &format!("{name} inference per image, batch {batch}"),
                        &|b| {
                            bench::time_conv_infer(preset, b, &d.test, batch, reps)
                                .map_err(|e| e.to_string())
                        },
                        1e6,
                        "µs",
                    );
                }
            }
        }
        if a.whole_reps > 0 {
            let book = TrainConfig::default();
            let evaluations = book.evaluations(d.train.len());
            let workloads = [
                (
                    "optimizers workload, 2000 Adam steps (training)".to_string(),
                    bench::optimizers_config as fn(Backend) -> TrainConfig,
                    true,
                ),
                (
                    format!("whole run (10 000 steps, {evaluations} evaluations)"),
                    bench::book_config,
                    false,
                ),
            ];
            for (name, config, training_only) in &workloads {
                for threads in [1, 2] {
                    row(
                        &format!(
                            "{name}, {threads} thread{}",
                            if threads == 1 { "" } else { "s" }
                        ),
                        &|b| {
                            let cfg = config(b);
                            bench::time_runs(&cfg, d, threads, a.whole_reps, *training_only)
                                .map_err(|e| e.to_string())
                        },
                        1.0,
                        "s",
                    );
                }
            }
        }
    }
    println!();
    println!(
        "(GFLOP/s: the dense floating-point operations of the book's computation per second, \
         and their fraction of the peak; zeronn skips the pixels that are zero across a \
         mini-batch or an evaluation chunk, so this can pass 100%.)"
    );
    if let Some(d) = &data {
        let images = d.train.len() + d.test.len();
        let (fast, slow, one) = bench::time_int8(&[&d.train, &d.test], reps)?;
        println!();
        println!("int8 (the book's net through zeronn quantize; medians of {reps}):");
        println!();
        println!(
            "| figure | fast kernel ({}) | reference loop |",
            zeronn::quant::kernel_name()
        );
        println!("| --- | --- | --- |");
        println!(
            "| evaluation pass, {images} images | {:.1} ms | {:.1} ms |",
            fast * 1e3,
            slow * 1e3
        );
        println!("| forward of one image | {:.2} µs | |", one * 1e6);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_export(a: ExportArgs) -> Result<ExitCode> {
    if a.format != ExportFormat::Firmware {
        return export_file(&a.model, &a.out, a.format);
    }
    let bytes = modelfile::read(&a.model)?;
    let model = modelfile::parse(&bytes)?;
    let net = model
        .two_layer_net()
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let cfg = zeronn_tools::export::DeviceTraining {
        hidden: positive("hidden", a.hidden)?,
        batch: positive("batch", a.batch)?,
        steps: positive("steps", a.steps)?,
        seed: a.seed,
        ..Default::default()
    };
    if cfg.batch > zeronn::layers::FUSED_MAX_BATCH {
        return Err(format!(
            "--batch must be at most {}",
            zeronn::layers::FUSED_MAX_BATCH
        ));
    }
    if a.adam_hidden.is_empty() || a.adam_hidden.contains(&0) {
        return Err("--adam-hidden takes positive sizes, e.g. 100,100".into());
    }
    let adam = zeronn_tools::export::DeviceAdam {
        hidden: a.adam_hidden.clone(),
        steps: positive("adam-steps", a.adam_steps)?,
        ..Default::default()
    };
    let mlp_path = a.mlp_model.clone().unwrap_or_else(|| a.model.clone());
    let mlp_bytes = modelfile::read(&mlp_path)?;
    let mlp = modelfile::parse(&mlp_bytes)?;
    let conv_path = a.conv_model.clone().unwrap_or_else(|| mlp_path.clone());
    let conv_bytes = modelfile::read(&conv_path)?;
    let conv = modelfile::parse(&conv_bytes)?;
    let data = load_data(&a.data)?;
    check_model_fits(&a.model, net.spec(), &data)?;
    check_model_fits(&mlp_path, mlp.spec(), &data)?;
    check_model_fits(&conv_path, conv.spec(), &data)?;
    let summary = zeronn_tools::export::export(
        bytes.bytes(),
        &net,
        &mlp,
        &conv,
        &data,
        &a.out,
        positive("test-images", a.test_images)?,
        positive("train-images", a.train_images)?,
        &cfg,
        &adam,
    )?;
    eprintln!("exported {summary}");
    Ok(ExitCode::SUCCESS)
}

fn cmd_experiment(a: ExperimentArgs) -> Result<ExitCode> {
    use zeronn_tools::experiment::{self, Options};
    let name = a.name;
    let check = |flag: &str, v: Option<usize>| v.map(|n| positive(flag, n)).transpose();
    let opts = Options {
        seed: a.seed,
        backend: Backend::from(a.backend)
            .resolve()
            .map_err(|e| e.to_string())?,
        progress: !a.no_progress,
        iters: check("iters", a.iters)?,
        epochs: check("epochs", a.epochs)?,
        trials: check("trials", a.trials)?,
        scales: check("scales", a.scales)?,
        model: a.model,
    };
    // The filters are the model's alone: no data needed.
    let data = if name == experiment::Name::Filters {
        let none = || zeronn_tools::mnist::Split {
            raw: Vec::new(),
            floats: Vec::new(),
            t: Vec::new(),
            pixels: 0,
        };
        zeronn_tools::mnist::Mnist {
            train: none(),
            test: none(),
        }
    } else {
        load_data(&a.data)?
    };
    eprintln!(
        "zeronn experiment {}: seed {}, backend {}",
        name.as_str(),
        opts.seed,
        opts.backend
    );
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    let files = experiment::run(name, &data, &a.out, &opts, &mut out)?;
    eprintln!("done in {:.1} s", start.elapsed().as_secs_f64());
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_quantize(a: QuantizeArgs) -> Result<ExitCode> {
    if let Some(path) = &a.out {
        modelfile::check_savable("--out", path)?;
    }
    let bytes = modelfile::read(&a.model)?;
    let model = modelfile::parse(&bytes)?;
    let net = model
        .net()
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let (data, _, _) = load_own_or_mnist(&a.data)?;
    check_model_fits(&a.model, net.spec(), &data)?;
    if data.train.is_empty() || data.test.is_empty() {
        return Err("quantize needs training samples (to calibrate) and test samples".into());
    }
    let calib = positive("calib", a.calib)?.min(data.train.len());
    let test = match a.limit {
        Some(n) => data.test.head(positive("limit", n)?),
        None => data.test,
    };
    let q = zeronn_tools::quantize::quantize_on(
        net.spec(),
        model.params(),
        model.state(),
        &data.train,
        calib,
    )
    .map_err(|e| format!("{}: {e}", a.model.display()))?;
    // Evaluated as a file: the bytes written, loaded and validated as `zeronn eval` loads them.
    let layout = match a.layout {
        LayoutArg::Rows => zeronn::quant::WeightLayout::Rows,
        LayoutArg::CortexM => zeronn::quant::WeightLayout::Dsp,
    };
    let file_bytes = q.to_bytes(layout).map_err(|e| e.to_string())?;
    let shown = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("(the int8 model)"));
    let file = zeronn::ModelFile::from_bytes(shown, &file_bytes);
    let qmodel = file.int8_model().map_err(|e| e.to_string())?;
    print_f32_against_int8(&net, &qmodel, &test)?;
    println!(
        "model: {} bytes in f32, {} in int8 (weights int8, biases and multipliers int32); ranges from {calib} training images",
        bytes.bytes().len(),
        file_bytes.len()
    );
    if let Some(path) = &a.out {
        modelfile::write_atomic(path, &file_bytes)
            .map_err(|e| format!("--out {}: {e}", path.display()))?;
        eprintln!("saved {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The f32 net and its int8 model on the same `test` images: both accuracies, the change in
/// points and how many images get the same class (`zeronn quantize`, `zeronn eval --f32`).
fn print_f32_against_int8(
    net: &zeronn::Net<f32, &[f32]>,
    qmodel: &zeronn::QModel<'_>,
    test: &zeronn_tools::mnist::Split,
) -> Result<()> {
    let pixels = test.pixels;
    let classes = net.spec().output_size();
    // The same weighted layers (an Affine's inputs and outputs, a Convolution's patch and
    // filters), in order: the int8 model quantized from this net.
    let weighted = net.spec().layers().iter().filter_map(|l| match l {
        zeronn::Layer::Affine { input, output } => Some((*input, *output)),
        zeronn::Layer::Convolution(c) => Some((c.patch_len(), c.filters)),
        _ => None,
    });
    if !weighted.eq(qmodel.layers().map(|l| (l.input, l.output)))
        || qmodel.spec().input_size() != net.spec().input_size()
    {
        return Err(
            "the f32 model is not the one the int8 model was quantized from: their layers differ"
                .into(),
        );
    }
    let (mut f32_ok, mut int8_ok, mut same) = (0usize, 0usize, 0usize);
    let mut ws = vec![0.0f32; net.spec().workspace_len(EVAL_CHUNK)];
    let mut qws = vec![0i8; zeronn::QModel::workspace_len(qmodel.spec(), EVAL_CHUNK)];
    let mut pack = vec![0i32; zeronn::QModel::pack_len(qmodel.spec())];
    let packed = qmodel.pack(&mut pack).map_err(|e| e.to_string())?;
    let (mut chunk, mut qx) = (
        vec![0.0f32; EVAL_CHUNK * pixels],
        vec![0i8; EVAL_CHUNK * pixels],
    );
    let to_int8 = zeronn_tools::quantize::ToInt8::new(qmodel.input_params());
    for lo in (0..test.len()).step_by(EVAL_CHUNK) {
        let hi = (lo + EVAL_CHUNK).min(test.len());
        let chunk = &mut chunk[..(hi - lo) * pixels];
        test.images_f32(lo, hi, chunk);
        let qx = &mut qx[..chunk.len()];
        to_int8.samples(test, lo, hi, qx);
        let scores = net.predict(chunk, &mut ws).map_err(|e| e.to_string())?;
        let logits = qmodel
            .predict(qx, &mut qws, Some(&packed))
            .map_err(|e| e.to_string())?;
        for (k, (s, l)) in scores
            .chunks_exact(classes)
            .zip(logits.chunks_exact(classes))
            .enumerate()
        {
            let (a, b) = (zeronn::functions::argmax(s), zeronn::quant::argmax(l));
            let t = usize::from(test.t[lo + k]);
            f32_ok += usize::from(a == t);
            int8_ok += usize::from(b == t);
            same += usize::from(a == b);
        }
    }
    let n = test.len();
    let (fa, ia) = (f32_ok as f64 / n as f64, int8_ok as f64 / n as f64);
    println!("f32 test accuracy:  {} ({f32_ok}/{n})", py_repr(fa));
    println!(
        "int8 test accuracy: {} ({int8_ok}/{n}), {:+.2} points; the same class as f32 on {same}/{n} images",
        py_repr(ia),
        (ia - fa) * 100.0
    );
    Ok(())
}

fn cmd_download(a: DownloadArgs) -> Result<ExitCode> {
    use zeronn_tools::download::{self, Dataset, Options};
    let dataset = if a.fashion {
        Dataset::Fashion
    } else {
        Dataset::Mnist
    };
    let default = download::default_dir(dataset);
    let out = match (&a.out, &default) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return Err("no cache folder (HOME is not set): give --out DIR".into());
        }
    };
    let opts = Options::new(dataset, out, !a.no_progress);
    eprintln!(
        "zeronn download: {} into {} (from {})",
        dataset.title(),
        opts.out.display(),
        opts.mirrors.join(", then ")
    );
    download::download(&opts, |name, outcome| eprintln!("{name}: {outcome}"))?;
    // Commands find MNIST in the default folder by themselves.
    let found_alone = dataset == Dataset::Mnist
        && std::env::var_os(mnist::DATA_ENV).is_none_or(|d| d.is_empty())
        && mnist::data_dir(None).ok().as_deref() == Some(opts.out.as_path());
    println!("{} is in {}", dataset.title(), opts.out.display());
    if found_alone {
        println!("train with: zeronn train");
    } else {
        println!(
            "train with: zeronn train --data {}",
            shell_quote(&opts.out.display().to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `s` as one word for a POSIX shell: as it is if it is plain, else in single quotes.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
