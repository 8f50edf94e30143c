//! The book's training runs (`ch05/train_neuralnet.py`, and chapter 6's nets of any depth,
//! optimizers, init, BatchNorm, Dropout and weight decay): mini-batch training with backprop on
//! MNIST, accuracy on the full train and test sets once per epoch.

use std::time::{Duration, Instant};

use zeronn::gemm::Backend;
use zeronn::layers::FUSED_MAX_BATCH;
use zeronn::optimizer::{AnyOptimizer, Optimizer, OptimizerKind};
use zeronn::random::{self, seeded};
use zeronn::{Activation, MlpOptions, Net, NetSpec, Sgd, WeightInit};

use crate::checkpoint::Checkpoint;
use crate::mnist::{Mnist, Split};
use crate::sparse::{self, EvalSet};

/// Hyperparameters; `Default` is the book's chapter 5 run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// A whole layer list (`--net`, `--preset`: a conv net, say), instead of the
    /// `MultiLayerNetExtend` of the fields below.
    pub net: Option<NetSpec>,
    /// Hidden layer sizes (`hidden_size = 50`; chapter 6's `hidden_size_list`).
    pub hidden: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// A BatchNorm after each hidden Affine (`use_batchnorm`).
    pub batch_norm: bool,
    /// A Dropout of this ratio after each hidden activation (`use_dropout`).
    pub dropout: Option<f32>,
    /// Weight decay λ (`weight_decay_lambda`), 0 for none.
    pub weight_decay: f64,
    /// Weight initialisation (`weight_init_std = 0.01`).
    pub weight_init: WeightInit,
    /// The optimizer (`SGD`).
    pub optimizer: OptimizerKind,
    /// Mini-batch size (`batch_size = 100`), sampled with replacement.
    pub batch_size: usize,
    /// Learning rate (`learning_rate = 0.1`).
    pub lr: f64,
    /// Iterations (`iters_num = 10000`).
    pub iters: usize,
    /// Seed of the one generator that draws the initial weights, then the mini-batches (the
    /// Dropout masks of step `i` come from [`dropout_seed`]).
    pub seed: u64,
    /// Evaluate every this many iterations (default: one epoch, `train_size / batch_size`).
    pub eval_every: Option<usize>,
    /// The gemm backend.
    pub backend: Backend,
    /// Evaluate the test set once more after the last iteration (the book's "Final Test
    /// Accuracy" of its `Trainer`).
    pub final_eval: bool,
    /// Classes of the data (10 for MNIST): the scores of the last layer.
    pub classes: usize,
}

impl TrainConfig {
    /// Iterations between two evaluations on a training set of `train_size` images.
    pub fn iter_per_epoch(&self, train_size: usize) -> usize {
        self.eval_every
            .unwrap_or((train_size / self.batch_size).max(1))
            .max(1)
    }

    /// Room to reserve for the per-iteration losses: all of them, up to a million (a huge
    /// `iters` runs for ages, it does not abort on the reservation).
    pub fn losses_capacity(&self) -> usize {
        self.iters.min(1 << 20)
    }

    /// How many evaluations a run makes: one every [`TrainConfig::iter_per_epoch`]
    /// iterations, from iteration 0.
    pub fn evaluations(&self, train_size: usize) -> usize {
        self.iters.div_ceil(self.iter_per_epoch(train_size))
    }

    /// The net: the layer list given, or `inputs`, the hidden layers, `classes` (the book's
    /// `MultiLayerNetExtend`).
    pub fn spec(&self, inputs: usize, classes: usize) -> NetSpec {
        if let Some(net) = self.net {
            return net;
        }
        NetSpec::mlp(
            inputs,
            &self.hidden,
            classes,
            MlpOptions {
                activation: self.activation,
                batch_norm: self.batch_norm,
                dropout: self.dropout,
            },
        )
    }

    /// Whether the SGD update can be fused into the backward products: plain SGD, no weight
    /// decay, a batch in one block of the fused products, and our own kernels.
    pub fn fused(&self) -> bool {
        self.optimizer == OptimizerKind::Sgd
            && self.weight_decay == 0.0
            && self.batch_size <= FUSED_MAX_BATCH
            && self.backend != Backend::MatrixMultiply
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![50],
            activation: Activation::Relu,
            batch_norm: false,
            dropout: None,
            weight_decay: 0.0,
            weight_init: WeightInit::Std(zeronn::init::BOOK_WEIGHT_INIT_STD),
            optimizer: OptimizerKind::Sgd,
            batch_size: 100,
            lr: 0.1,
            iters: 10_000,
            seed: 0,
            eval_every: None,
            backend: Backend::Auto,
            net: None,
            final_eval: false,
            classes: 10,
        }
    }
}

/// The seed of the Dropout masks of step `step` of a run seeded with `seed`: a function of the
/// two only, so a run draws the same masks on any number of threads and from any step on.
pub fn dropout_seed(seed: u64, step: usize) -> u64 {
    seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One evaluation: after the update of iteration `iter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// The iteration it followed.
    pub iter: usize,
    /// Accuracy on the whole training set.
    pub train_acc: f64,
    /// Accuracy on the whole test set.
    pub test_acc: f64,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The net trained.
    pub spec: NetSpec,
    /// The final parameters `[W1 | b1 | … ]`.
    pub params: Vec<f32>,
    /// The final state (BatchNorm's running statistics).
    pub state: Vec<f32>,
    /// The loss of each mini-batch, from the forward pass of its gradient.
    pub losses: Vec<f32>,
    /// The evaluations.
    pub epochs: Vec<Epoch>,
    /// Accuracy on the test set after the last iteration, if asked
    /// ([`TrainConfig::final_eval`]).
    pub final_test_acc: Option<f64>,
    /// Time in sampling, gradient and update.
    pub train_time: Duration,
    /// Time in evaluation.
    pub eval_time: Duration,
    /// The iteration whose loss was not finite, where the run stopped (the parameters are
    /// then those after that iteration's update, no longer usable).
    pub diverged: Option<usize>,
}

/// Rows per chunk when evaluating a whole split. Smaller chunks have fewer active pixels (on
/// MNIST's training set, in the evaluation set's order, 40% for 64 images, 41% for 128, 43%
/// for 250) but more per-chunk overhead: the 17 evaluations of the book's run took 0.425 s with
/// 128, against 0.465 s with 64 and 0.455 s with 250 (one thread, medians of 8).
pub const EVAL_CHUNK: usize = 128;

/// Accuracy of `net` on a whole split (prepared with [`EvalSet::new`] in chunks of
/// [`EVAL_CHUNK`]), through `ws`, a workspace for a chunk.
pub fn accuracy<P: AsRef<[f32]>>(
    net: &Net<f32, P>,
    data: &EvalSet,
    ws: &mut [f32],
) -> zeronn::Result<f64> {
    data.accuracy(net, ws)
}

/// What [`train`] reports as it goes (for printing).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Iteration `i` (from 0) is done; its mini-batch had this loss.
    Iter(usize, f32),
    /// An evaluation is done.
    Epoch(&'a Epoch),
}

/// A net of `spec` for the run `cfg`: backend, weight decay, initialised from `rng`.
pub fn new_net(
    cfg: &TrainConfig,
    spec: NetSpec,
    rng: &mut random::XorShiftRng,
) -> zeronn::Result<Net<f32, Vec<f32>>> {
    let mut net = Net::with_state(
        spec,
        vec![0.0f32; spec.param_len()],
        vec![0.0f32; spec.state_len()],
    )?
    .with_backend(cfg.backend)?
    .with_weight_decay(cfg.weight_decay as f32)?;
    net.init(rng, cfg.weight_init);
    Ok(net)
}

/// One net in training: the net, its optimizer, and the buffers a step needs. A step is
/// the book's two lines, `grads = network.gradient(x_batch, t_batch)` and
/// `optimizer.update(network.params, grads)`, with plain SGD fused into the backward
/// products; a net whose first layer is an Affine runs on the batch's non-blank pixels only
/// (exactly: see `sparse.rs`).
#[derive(Debug)]
pub struct Trainer {
    /// The net.
    pub net: Net<f32, Vec<f32>>,
    optimizer: AnyOptimizer<f32>,
    sgd: Sgd<f32>,
    fused: bool,
    sparse: bool,
    dropout: bool,
    seed: u64,
    scratch: Vec<f32>,
    opt_state: Vec<f32>,
    ws: Vec<f32>,
    x: Vec<f32>,
    t: Vec<u8>,
    compact: sparse::Compact,
}

impl Trainer {
    /// A net of `spec` initialised from `rng` as `cfg` says, with its optimizer, for batches
    /// of `cfg.batch_size` and evaluations in chunks of [`EVAL_CHUNK`].
    pub fn new(
        cfg: &TrainConfig,
        spec: NetSpec,
        rng: &mut random::XorShiftRng,
    ) -> zeronn::Result<Self> {
        let net = new_net(cfg, spec, rng)?;
        let optimizer = AnyOptimizer::<f32>::new(cfg.optimizer, cfg.lr)?;
        let fused = cfg.fused();
        Ok(Trainer {
            scratch: vec![0.0f32; if fused { 0 } else { spec.apply_scratch_len() }],
            opt_state: vec![0.0f32; optimizer.state_len(spec.param_len())],
            ws: vec![0.0f32; spec.workspace_len(cfg.batch_size.max(EVAL_CHUNK))],
            x: vec![0.0f32; cfg.batch_size * spec.input_size()],
            t: vec![0u8; cfg.batch_size],
            net,
            optimizer,
            sgd: Sgd::new(cfg.lr as f32),
            fused,
            sparse: cfg.backend != Backend::MatrixMultiply
                && matches!(spec.layers().first(), Some(zeronn::Layer::Affine { .. })),
            dropout: spec
                .layers()
                .iter()
                .any(|l| matches!(l, zeronn::Layer::Dropout { .. })),
            seed: cfg.seed,
            compact: sparse::Compact::new(),
        })
    }

    /// The run's state before iteration `next_iter`, as a checkpoint.
    pub fn checkpoint(
        &self,
        fingerprint: &str,
        next_iter: usize,
        losses: &[f32],
        epochs: &[Epoch],
    ) -> Checkpoint {
        Checkpoint {
            fingerprint: fingerprint.to_string(),
            next_iter,
            opt_steps: match &self.optimizer {
                AnyOptimizer::Adam(a) => a.iter,
                _ => 0,
            },
            params: self.net.params().to_vec(),
            state: self.net.state().to_vec(),
            opt_state: self.opt_state.clone(),
            losses: losses.to_vec(),
            epochs: epochs.to_vec(),
        }
    }

    /// Takes the state of checkpoint `ck` of a run of `iters` iterations with settings
    /// `fingerprint`; returns the iteration to run next.
    pub fn resume(
        &mut self,
        ck: &Checkpoint,
        fingerprint: &str,
        iters: usize,
    ) -> Result<usize, RunError> {
        check_resume(
            ck,
            fingerprint,
            iters,
            [
                self.net.params().len(),
                self.net.state().len(),
                self.opt_state.len(),
            ],
        )?;
        self.net.params_mut().copy_from_slice(&ck.params);
        self.net.state_mut().copy_from_slice(&ck.state);
        self.opt_state.copy_from_slice(&ck.opt_state);
        if let AnyOptimizer::Adam(a) = &mut self.optimizer {
            a.iter = ck.opt_steps;
        }
        Ok(ck.next_iter)
    }

    /// Step `i` on the images `idx` of `data`: the gradient by backpropagation, then the
    /// update. Returns the loss of the gradient's forward pass (before the update).
    pub fn step(&mut self, data: &Split, idx: &[usize], i: usize) -> zeronn::Result<f32> {
        // Float data has no blank pixels to skip.
        self.sparse &= !data.is_float();
        if self.dropout {
            self.net.seed_dropout(dropout_seed(self.seed, i));
        }
        if self.fused && !self.sparse {
            data.gather(idx, &mut self.x, &mut self.t);
            return self
                .net
                .train_step(&self.x, &self.t, &self.sgd, &mut self.ws);
        }
        if self.fused {
            // Gradient by backpropagation and the SGD update, fused, on the batch's non-blank
            // pixels only (the two steps below up to rounding; see `sparse.rs` and
            // `Net::train_step`).
            return sparse::train_step(
                &mut self.compact,
                &mut self.net,
                data,
                idx,
                &mut self.x,
                &mut self.t,
                &self.sgd,
                &mut self.ws,
            );
        }
        // The gradient by backpropagation and the optimizer's update, layer by layer as
        // backward makes each gradient (the two steps of the book, the same arithmetic).
        let (x, active) = if self.sparse {
            let x = sparse::gather_active(&mut self.compact, data, idx, &mut self.x, &mut self.t);
            (x, Some(self.compact.active()))
        } else {
            data.gather(idx, &mut self.x, &mut self.t);
            (&self.x[..], None)
        };
        self.net.step_with(
            x,
            active,
            &self.t,
            &mut self.optimizer,
            &mut self.opt_state,
            &mut self.scratch,
            &mut self.ws,
        )
    }

    /// The loss on the last step's batch with the parameters after its update, in inference
    /// (the book's `loss = network.loss(x_batch, t_batch)` after `update`: one more forward
    /// pass).
    pub fn loss_after(&mut self) -> zeronn::Result<f32> {
        if self.sparse {
            let k = self.compact.len();
            let n = self.t.len();
            let x = &self.x[..n * k];
            self.net
                .loss_active(x, self.compact.active(), &self.t, &mut self.ws)
        } else {
            self.net.loss(&self.x, &self.t, &mut self.ws)
        }
    }

    /// Accuracy on a prepared split.
    pub fn accuracy(&mut self, data: &EvalSet) -> zeronn::Result<f64> {
        accuracy(&self.net, data, &mut self.ws)
    }
}

/// The test accuracy after the last iteration from `accuracy`, if `cfg` asks for it
/// ([`TrainConfig::final_eval`]), its time added to `eval_time`.
pub fn final_eval(
    cfg: &TrainConfig,
    eval_time: &mut Duration,
    accuracy: impl FnOnce() -> zeronn::Result<f64>,
) -> zeronn::Result<Option<f64>> {
    if !cfg.final_eval {
        return Ok(None);
    }
    let start = Instant::now();
    let acc = accuracy()?;
    *eval_time += start.elapsed();
    Ok(Some(acc))
}

/// Runs the training, calling `on_event` after every iteration and every evaluation.
pub fn train(
    cfg: &TrainConfig,
    data: &Mnist,
    on_event: impl FnMut(Event<'_>),
) -> zeronn::Result<TrainReport> {
    train_resumable(cfg, data, &Checkpointing::default(), on_event).map_err(|e| e.into_zeronn())
}

/// Checkpoints of a run ([`train_resumable`]).
#[derive(Debug, Default)]
pub struct Checkpointing {
    /// Where to write them (none: no checkpoints).
    pub path: Option<std::path::PathBuf>,
    /// Iterations between two.
    pub every: usize,
    /// The checkpoint to continue from.
    pub resume: Option<Checkpoint>,
    /// The settings and data of this run, which a checkpoint must match.
    pub fingerprint: String,
}

/// Checks that checkpoint `ck` belongs to this run (settings `fingerprint`, `iters`
/// iterations, and `lens` elements of parameters, state and optimizer state).
pub(crate) fn check_resume(
    ck: &Checkpoint,
    fingerprint: &str,
    iters: usize,
    lens: [usize; 3],
) -> Result<(), RunError> {
    let bad = |what: String| Err(RunError::Checkpoint(what));
    if ck.fingerprint != fingerprint {
        return bad(format!(
            "the checkpoint is of another run (its settings: {}; this run's: {fingerprint}); give the same flags and data, --seed included",
            ck.fingerprint
        ));
    }
    if [ck.params.len(), ck.state.len(), ck.opt_state.len()] != lens
        || ck.next_iter > iters
        || ck.losses.len() != ck.next_iter
    {
        return bad("the checkpoint's sizes do not fit this run".into());
    }
    Ok(())
}

/// What stops a resumable run: the core's error, or a checkpoint's.
#[derive(Debug)]
pub enum RunError {
    /// From the net.
    Net(zeronn::Error),
    /// Writing or matching a checkpoint.
    Checkpoint(String),
}

impl RunError {
    pub(crate) fn into_zeronn(self) -> zeronn::Error {
        match self {
            RunError::Net(e) => e,
            RunError::Checkpoint(_) => zeronn::Error::InvalidValue {
                what: "checkpoint (none was asked for)",
            },
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Net(e) => write!(f, "{e}"),
            RunError::Checkpoint(e) => f.write_str(e),
        }
    }
}

impl From<zeronn::Error> for RunError {
    fn from(e: zeronn::Error) -> Self {
        RunError::Net(e)
    }
}

/// [`train`], writing a checkpoint every `ck.every` iterations and continuing from
/// `ck.resume`: a run resumed from any of its checkpoints ends with the parameters of the run
/// that was not interrupted, bit for bit.
pub fn train_resumable(
    cfg: &TrainConfig,
    data: &Mnist,
    ck: &Checkpointing,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<TrainReport, RunError> {
    let train_size = data.train.len();
    let spec = cfg.spec(data.train.pixels, cfg.classes);
    let iter_per_epoch = cfg.iter_per_epoch(train_size);
    let mut rng = seeded(cfg.seed);
    let mut trainer = Trainer::new(cfg, spec, &mut rng)?;
    let mut batch_mask = vec![0usize; cfg.batch_size];
    let (mut losses, mut epochs) = (Vec::with_capacity(cfg.losses_capacity()), Vec::new());
    let (mut train_time, mut eval_time) = (Duration::ZERO, Duration::ZERO);

    // Mini-batches are drawn one step ahead (the same draws, in the same order) so that the
    // next batch's images are on their way from memory while this step computes.
    let mut next_mask = vec![0usize; cfg.batch_size];
    let (eval_train, eval_test) = (
        EvalSet::new(&data.train, EVAL_CHUNK),
        EvalSet::new(&data.test, EVAL_CHUNK),
    );
    random::choice(&mut rng, train_size, &mut next_mask);
    let mut first = 0;
    if let Some(r) = &ck.resume {
        first = trainer.resume(r, &ck.fingerprint, cfg.iters)?;
        losses.extend_from_slice(&r.losses);
        epochs.extend_from_slice(&r.epochs);
        // The generator's draws up to there, again (the same numbers, the same batches).
        for i in 0..first {
            std::mem::swap(&mut batch_mask, &mut next_mask);
            if i + 1 < cfg.iters {
                random::choice(&mut rng, train_size, &mut next_mask);
            }
        }
    }
    let mut diverged = None;
    for i in first..cfg.iters {
        let start = Instant::now();
        // Sample a mini-batch.
        std::mem::swap(&mut batch_mask, &mut next_mask);
        if i + 1 < cfg.iters {
            random::choice(&mut rng, train_size, &mut next_mask);
            data.train.prefetch(&next_mask);
        }
        // Gradient, update.
        let loss = trainer.step(&data.train, &batch_mask, i)?;
        train_time += start.elapsed();
        // Record.
        losses.push(loss);
        on_event(Event::Iter(i, loss));
        if !loss.is_finite() {
            diverged = Some(i);
            break;
        }
        if i % iter_per_epoch == 0 {
            let start = Instant::now();
            let train_acc = trainer.accuracy(&eval_train)?;
            let test_acc = trainer.accuracy(&eval_test)?;
            eval_time += start.elapsed();
            epochs.push(Epoch {
                iter: i,
                train_acc,
                test_acc,
            });
            on_event(Event::Epoch(&epochs[epochs.len() - 1]));
        }
        // Checkpoint (only of a sound state: a diverging run keeps its last good one).
        if let Some(path) = &ck.path
            && (i + 1) % ck.every.max(1) == 0
            && i + 1 < cfg.iters
            && trainer.net.params().iter().all(|p| p.is_finite())
        {
            let c = trainer.checkpoint(&ck.fingerprint, i + 1, &losses, &epochs);
            crate::checkpoint::save(path, &c).map_err(RunError::Checkpoint)?;
        }
    }
    let final_test_acc = match diverged {
        Some(_) => None,
        None => final_eval(cfg, &mut eval_time, || trainer.accuracy(&eval_test))?,
    };
    let (params, state) = trainer.net.into_parts();
    Ok(TrainReport {
        spec,
        params,
        state,
        losses,
        epochs,
        final_test_acc,
        train_time,
        eval_time,
        diverged,
    })
}
