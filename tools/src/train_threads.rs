//! The training run on several threads: the same mini-batches, the work of each step split
//! by input features. Any net whose first layer is an Affine (every net `zeronn train`
//! builds), any optimizer.
//!
//! Member `t` of the team owns a contiguous range of the 784 input features, which is a
//! contiguous block of rows of `W1`. The two big products of a step (`X·W1` forward and the
//! `W1` gradient `X·ᵀdZ1` backward) split exactly along that range, so each member gathers
//! only its columns of the mini-batch and keeps its rows of `W1` in its own cache; what
//! crosses between members per step is small (the partial sums and `dZ1`, batch × the first
//! layer's width). Members do not meet at barriers within a step: each publishes how far it
//! has got ([`Signal`]) and waits only for what it reads, gathering its columns of the next
//! mini-batch (then of the one after) while it waits, and with nothing of its own left,
//! scanning pieces of the others' columns for active features (`ScanJob`). The layers
//! after the first are small and serial; the first member done with its partial product
//! runs them ([`Layout::step_after_first`]), so a member slowed down (by the machine, or by
//! running them the step before) leaves them to the others:
//!
//! ```text
//! A  member 0: samples the mini-batch three steps ahead (the same draws as the
//!    single-thread run); every member: its partial product X[:, f]·W1[f, :], then says so
//! L  the first member done with A, once every partial product is done: Z1 = Σ partials +
//!    b1 (summed in member order), the layers after the first forward (BatchNorm, Dropout
//!    masks seeded by the step), softmax with loss, backward to dZ1, then says so; then the
//!    update (or gradient and optimizer step) of the lowest Affine after the first and of b1
//!    the others: wait for dZ1
//! C  every member: W1[f, :] -= lr·X[:, f]ᵀ·dZ1 fused into the product (plain SGD), or the
//!    gradient of its rows of W1 and the optimizer's step on them; finishes gathering its
//!    columns of the next mini-batch
//! E  at each evaluation (between two barriers), members take chunks of images as they get
//!    free and count the correct answers
//! ```
//!
//! The forward sum is split by features, so results differ in rounding from the
//! single-thread run, but a run is bit-reproducible for a given thread count: the split
//! depends only on the data, and the layers after the first compute the same whoever runs
//! them.
//!
//! The split is into parts (`Part`), one per member, and a part computes the same whoever
//! runs it. On a busy machine (another process on a core) a descheduled member stalls the
//! others, and two threads run slower than one. So every 200 steps (`SEGMENT`, and at each
//! evaluation) member 0 may take every part for the next stretch of steps and run them one
//! after the other while the others sleep: it does when team steps keep parking and running
//! alone proves faster, and tries the team again after 4, 8, 16, then every 32 stretches
//! (`Pacer`). The bits do not depend on who ran what.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zeronn::Net;
use zeronn::gemm::{self, MatMut, MatRef, PACK_LEN};
use zeronn::net::{Layout, Update};
use zeronn::optimizer::{AnyOptimizer, Optimizer};
use zeronn::random::{self, seeded};

use crate::checkpoint::Checkpoint;
use crate::mnist::{Mnist, Split};
use crate::sparse::{Compact, EvalScratch, EvalSet, prefetch_scan};
use crate::team::{self, PoisonOnPanic, Shared, Signal, SpinBarrier};
use crate::train::{
    Checkpointing, EVAL_CHUNK, Epoch, Event, RunError, TrainConfig, TrainReport, check_resume,
    dropout_seed, new_net,
};

/// What member 0 holds besides the others: the generator and the event sink.
type Leader<'a> = Option<(&'a mut random::XorShiftRng, &'a mut dyn FnMut(Event<'_>))>;

/// Splits the `pixels` features among `n` members, as boundaries `f[0] = 0 ≤ … ≤ f[n] =
/// pixels`, with equal work. What a member's range costs is the number of its features active
/// in a mini-batch of `batch` (a pixel is active if any image of the batch has it non-zero),
/// estimated from how often each pixel is non-zero in `data`.
pub fn feature_split(data: &Split, n: usize, batch: usize) -> Vec<usize> {
    let pixels = data.pixels;
    let n = n.clamp(1, pixels.max(1));
    // How often each pixel is non-zero, over (up to) the first 10 000 images.
    let sample = data.len().min(10_000);
    let mut nonzero = vec![0u32; pixels];
    for i in 0..sample {
        for (c, &p) in nonzero.iter_mut().zip(data.image_raw(i)) {
            *c += u32::from(p != 0);
        }
    }
    let weight: Vec<f64> = nonzero
        .iter()
        .map(|&c| 1.0 - (1.0 - f64::from(c) / sample.max(1) as f64).powi(batch as i32))
        .collect();
    let total: f64 = weight.iter().sum();
    // Member t's range ends where the running weight reaches its cumulative share.
    let mut bounds = vec![0usize; n + 1];
    let (mut f, mut acc) = (0, 0.0);
    for (t, bound) in bounds.iter_mut().enumerate().skip(1) {
        let share = t as f64 / n as f64;
        let target = if t == n { f64::INFINITY } else { share * total };
        while f < pixels && acc + weight[f] / 2.0 < target {
            acc += weight[f];
            f += 1;
        }
        // At least one feature each, when there are enough.
        f = f.max((*bound).max(t.min(pixels)));
        *bound = f.min(pixels);
    }
    bounds[n] = pixels;
    bounds
}

/// Mini-batch masks in flight: member 0 samples three steps ahead.
const MASKS: usize = 4;

/// Images per piece of gathering ([`Cols::work`]): what a member scans or packs between two
/// looks at what it waits for, and what a helper takes of another member's scan.
const PIECE: usize = 4;

/// The low bits of a [`ScanJob`] counter, which count pieces (the mini-batch is above them).
const PIECE_BITS: u32 = 20;

/// The counter's tag for mini-batch `batch`, with a count of 0.
fn tag(batch: usize) -> u64 {
    (batch as u64 + 1) << PIECE_BITS
}

/// One member's scan of its features of one mini-batch for the active ones, shared: the
/// member takes the images a piece at a time, and so does any member with nothing else to do,
/// so a member slowed down by the machine leaves part of its scan to the others. A scan finds
/// a union of non-zero bits: the same whoever scans which piece.
struct ScanJob {
    /// `(mini-batch + 1) << PIECE_BITS | pieces taken` (0: never opened).
    taken: AtomicU64,
    /// `(mini-batch + 1) << PIECE_BITS | pieces done`.
    done: AtomicU64,
    /// What the helpers found, in the member's 64-pixel words.
    bits: Vec<AtomicU64>,
}

impl ScanJob {
    fn new(words: usize) -> Self {
        ScanJob {
            taken: AtomicU64::new(0),
            done: AtomicU64::new(0),
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Opens the scan of mini-batch `batch` unless it is open already. Whoever opens it (the
    /// owner, or a helper) does so only once the owner is done with the job's last scan.
    fn open(&self, batch: usize) {
        let tag = tag(batch);
        let mut t = self.taken.load(Ordering::Acquire);
        loop {
            if t >= tag {
                return;
            }
            // Taken by nobody while it is reset: the count is past any number of pieces.
            match self.taken.compare_exchange_weak(
                t,
                tag | ((1 << PIECE_BITS) - 1),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => t = now,
            }
        }
        for b in &self.bits {
            b.store(0, Ordering::Relaxed);
        }
        self.done.store(tag, Ordering::Relaxed);
        // Orders the stores above before any take of this scan.
        self.taken.store(tag, Ordering::Release);
    }

    /// Takes the next of the `pieces` pieces of the scan of mini-batch `batch`, if that scan
    /// is open and has one left.
    fn take(&self, batch: usize, pieces: usize) -> Option<usize> {
        let mut t = self.taken.load(Ordering::Acquire);
        loop {
            // A later mini-batch's tag leaves a count past any number of pieces.
            let p = t.checked_sub(tag(batch)).map_or(usize::MAX, |p| p as usize);
            if p >= pieces {
                return None;
            }
            match self
                .taken
                .compare_exchange_weak(t, t + 1, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(p),
                Err(now) => t = now,
            }
        }
    }

    /// Gives back a piece taken, with the bits found (in the member's words; none from the
    /// owner, who keeps its own).
    fn give(&self, bits: &[u64]) {
        for (a, &b) in self.bits.iter().zip(bits) {
            if b != 0 {
                a.fetch_or(b, Ordering::Relaxed);
            }
        }
        // Orders the bits before the count the owner reads.
        self.done.fetch_add(1, Ordering::Release);
    }

    /// Helps with the scan of mini-batch `batch` (its images `rows`, features `f0..f1`),
    /// opening it if need be: takes a piece if one is left, scans it with `scratch` and gives
    /// it back. Returns whether there was one. The owner must be done with the job's last
    /// scan, and `rows` must stay put until this returns.
    fn help(
        &self,
        data: &Split,
        batch: usize,
        rows: &[usize],
        (f0, f1): (usize, usize),
        scratch: &mut Compact,
    ) -> bool {
        self.open(batch);
        let Some(p) = self.take(batch, rows.len().div_ceil(PIECE)) else {
            return false;
        };
        let piece = &rows[p * PIECE..((p + 1) * PIECE).min(rows.len())];
        for &r in piece {
            prefetch_scan(data, r, f0, f1);
        }
        scratch.begin_scan(data);
        for &r in piece {
            scratch.scan_row(data, r, f0, f1);
        }
        self.give(&scratch.words()[f0 / 64..]);
        true
    }

    /// Whether all `pieces` pieces of the scan of `batch` are given back: then
    /// [`ScanJob::bits`] are complete.
    fn all_done(&self, batch: usize, pieces: usize) -> bool {
        self.done.load(Ordering::Acquire) == tag(batch) | pieces as u64
    }
}

/// The columns of mini-batches `i`, `i + 1` and `i + 2` in a ring of three.
fn ring(cols: &mut [Cols; 3], i: usize) -> (&mut Cols, &mut Cols, &mut Cols) {
    let [a, b, c] = cols;
    match i % 3 {
        0 => (a, b, c),
        1 => (b, c, a),
        _ => (c, a, b),
    }
}

/// A member's columns of one mini-batch: its active features and their values, gathered a
/// piece at a time ([`Cols::work`]) so that the member can fill its waits with it.
struct Cols {
    /// Which mini-batch (its step) this holds or is gathering.
    batch: Option<usize>,
    compact: Compact,
    /// The images, whether their scan for active features is done, and how many are packed.
    rows: Vec<usize>,
    scanned: bool,
    packed: usize,
    /// The active features, relative to the member's first (rows of its block of `W1`).
    rel: Vec<usize>,
    /// `batch × rel.len()`, row-major.
    x: Vec<f32>,
}

impl Cols {
    fn new() -> Self {
        Cols {
            batch: None,
            compact: Compact::new(),
            rows: Vec::new(),
            // Nothing to gather until started.
            scanned: true,
            packed: 0,
            rel: Vec::new(),
            x: Vec::new(),
        }
    }

    /// Starts gathering features `f0..f1` of the images `rows` of `data`, opening `job` for
    /// its scan.
    fn start(&mut self, data: &Split, job: &ScanJob, rows: &[usize], batch: usize) {
        self.batch = Some(batch);
        self.rows.clear();
        self.rows.extend_from_slice(rows);
        self.compact.begin_scan(data);
        (self.scanned, self.packed) = (false, 0);
        job.open(batch);
    }

    /// [`Cols::start`] unless mini-batch `batch` is started already.
    fn start_once(&mut self, data: &Split, job: &ScanJob, rows: &[usize], batch: usize) {
        if self.batch != Some(batch) {
            self.start(data, job, rows, batch);
        }
    }

    /// Does one piece of the gathering begun by [`Cols::start`] (scans or packs [`PIECE`]
    /// images, or finds the scan's last pieces still with helpers); returns whether any is
    /// left.
    fn work(&mut self, data: &Split, job: &ScanJob, f0: usize, f1: usize) -> bool {
        let n = self.rows.len();
        if !self.scanned {
            let pieces = n.div_ceil(PIECE);
            if let Some(p) = self.batch.and_then(|b| job.take(b, pieces)) {
                let mine = &self.rows[p * PIECE..((p + 1) * PIECE).min(n)];
                // The next piece's images, in case this member takes it too.
                for &q in self.rows.iter().skip((p + 1) * PIECE).take(PIECE) {
                    prefetch_scan(data, q, f0, f1);
                }
                for &r in mine {
                    self.compact.scan_row(data, r, f0, f1);
                }
                job.give(&[]);
            } else if self.batch.is_some_and(|b| job.all_done(b, pieces)) {
                let w0 = f0 / 64;
                self.compact
                    .add_words(w0, job.bits.iter().map(|b| b.load(Ordering::Relaxed)));
                self.end_scan(f0, f1);
            } else {
                // The last pieces are with helpers, who give them back within microseconds.
                std::hint::spin_loop();
            }
            return true;
        }
        let k = self.rel.len();
        let end = (self.packed + PIECE).min(n);
        while self.packed < end {
            let (i, r) = (self.packed, self.rows[self.packed]);
            self.compact
                .compact_row(data, r, &mut self.x[i * k..(i + 1) * k]);
            self.packed += 1;
        }
        self.packed < n
    }

    /// Finishes the gathering. Panics instead of waiting forever for a helper if `team` is
    /// poisoned.
    fn finish(
        &mut self,
        data: &Split,
        job: &ScanJob,
        (f0, f1): (usize, usize),
        team: &SpinBarrier,
    ) {
        while self.work(data, job, f0, f1) {
            team.check();
        }
    }

    fn end_scan(&mut self, f0: usize, f1: usize) {
        self.scanned = true;
        self.compact.end_scan(f0, f1);
        self.rel.clear();
        self.rel
            .extend(self.compact.active().iter().map(|&f| f - f0));
        self.x.resize(self.rows.len() * self.rel.len(), 0.0); // packing writes every element
    }

    /// The gathered values as a `batch × k` matrix.
    fn x(&self, batch: usize) -> zeronn::Result<MatRef<'_, f32>> {
        debug_assert!(
            self.scanned && self.packed == self.rows.len(),
            "gathering not finished"
        );
        MatRef::row_major(&self.x[..batch * self.rel.len()], batch, self.rel.len())
    }
}

/// `z = Σ_t parts[t] + b1`, then `max(z, 0)` if `relu`, row by row (`hidden` columns), the
/// members' partial products (`parts`, each as long as `z`) summed in member order. On the
/// critical path of a step, so compiled for AVX-512 where the CPU has it (the same operations
/// in the same order: the same bits).
fn sum_bias(z: &mut [f32], parts: &[f32], b1: &[f32], hidden: usize, relu: bool) {
    #[inline(always)]
    fn body(z: &mut [f32], parts: &[f32], b1: &[f32], hidden: usize, relu: bool) {
        let size = z.len();
        for (r, row) in z.chunks_exact_mut(hidden.max(1)).enumerate() {
            let mut members = parts.chunks_exact(size).map(|p| &p[r * hidden..][..hidden]);
            row.copy_from_slice(members.next().unwrap_or_default());
            for p in members {
                for (x, &q) in row.iter_mut().zip(p) {
                    *x += q;
                }
            }
            if relu {
                for (x, &bj) in row.iter_mut().zip(b1) {
                    let v = *x + bj;
                    *x = if v <= 0.0 { 0.0 } else { v };
                }
            } else {
                for (x, &bj) in row.iter_mut().zip(b1) {
                    *x += bj;
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f")]
        fn avx512(z: &mut [f32], parts: &[f32], b1: &[f32], hidden: usize, relu: bool) {
            body(z, parts, b1, hidden, relu)
        }
        // SAFETY: AVX-512F is present (checked just above).
        return unsafe { avx512(z, parts, b1, hidden, relu) };
    }
    body(z, parts, b1, hidden, relu)
}

/// The parts `lo..hi` of the optimizer's planes (each `plen` long, one after the other in
/// `state`); empty slices for the planes the optimizer does not have.
///
/// # Safety
/// As for [`Shared::part_mut`]: nobody else may use those parts while they are borrowed.
// Mutable parts from a shared buffer: what `Shared` is for (see `Shared::part_mut`).
#[allow(clippy::mut_from_ref)]
unsafe fn plane_parts(
    state: &Shared<f32>,
    planes: usize,
    plen: usize,
    lo: usize,
    hi: usize,
) -> (&mut [f32], &mut [f32]) {
    // SAFETY: the caller's promise, for each plane's part.
    unsafe {
        (
            if planes > 0 {
                state.part_mut(lo, hi)
            } else {
                &mut []
            },
            if planes > 1 {
                state.part_mut(plen + lo, plen + hi)
            } else {
                &mut []
            },
        )
    }
}

/// One part of every step's work: a range `f0..f1` of the input features (a block of rows of
/// `W1`), its columns of the mini-batches in flight, and what updating its rows needs. Whoever
/// holds it runs it (member `t` in a team segment, member 0 in a solo one); the bits are the
/// same either way, as the partial products are summed in part order.
struct Part {
    t: usize,
    f0: usize,
    f1: usize,
    /// The pixels a scan for active features reads: whole 64-pixel words.
    s0: usize,
    s1: usize,
    /// Its columns of mini-batches i, i + 1 and i + 2, by i mod 3.
    cols: [Cols; 3],
    /// The gradient of its rows of `W1` (not with plain SGD, which is fused).
    w1_grads: Vec<f32>,
    /// Its optimizer, which counts the steps (Adam's bias correction) as every part's does.
    opt: AnyOptimizer<f32>,
}

/// How the team decides who runs a segment's steps (the 200 steps between two
/// handoffs, or fewer before an evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The whole team, unless the machine keeps members waiting for ones it does not run:
    /// then member 0 alone, trying the team again now and then.
    Adaptive,
    /// The team and member 0 alone in turn, segment after segment (for tests: the bits must
    /// not change).
    Alternate,
}

/// Steps between two handoffs (and at each evaluation): where member 0 may take every part, or
/// give them back. Enough steps to time a mode over scheduler slices, few enough that trying
/// the team on a busy machine costs little.
const SEGMENT: usize = 200;
/// Steps a mode runs before the pacer judges it.
const PACER_STEPS: usize = SEGMENT;
/// Segments member 0 runs alone before it first tries the team again.
const FIRST_SOLO: u32 = 4;
/// Parks per step in a team segment above which the pacer tries member 0 alone: on a quiet
/// machine a step seldom parks, with a member descheduled nearly every step does.
const PARKS_PER_STEP: f64 = 0.5;
/// The most segments member 0 runs alone before it tries the team again.
const MAX_SOLO: u32 = 32;

/// Decides at each evaluation whether the next segment runs on the whole team or on member 0
/// alone. On a busy machine a descheduled member stalls the team, whose steps then take longer
/// than one thread's: when team steps park often, member 0 tries running every part itself,
/// and keeps doing so while that is faster, trying the team again after 4, 8, 16 and then
/// every 32 segments.
struct Pacer {
    n: usize,
    pace: Pace,
    solo: bool,
    /// Steps, time and parks since the mode last changed.
    steps: usize,
    time: Duration,
    parks: u64,
    /// The last time per step measured on the team and alone.
    team_step: Option<f64>,
    solo_step: Option<f64>,
    /// Whether this team segment is a try after solo ones; solo segments left before the next
    /// try (after the current one); the solo segments before a try.
    trying: bool,
    wait: u32,
    backoff: u32,
    /// Print each decision (`ZERONN_PACER_TRACE` set).
    trace: bool,
}

impl Pacer {
    fn new(n: usize, pace: Pace) -> Self {
        Pacer {
            n,
            pace,
            solo: false,
            steps: 0,
            time: Duration::ZERO,
            parks: 0,
            team_step: None,
            solo_step: None,
            trying: false,
            wait: 0,
            backoff: FIRST_SOLO,
            trace: std::env::var_os("ZERONN_PACER_TRACE").is_some(),
        }
    }

    /// Takes a segment's steps, time and parks; returns whether member 0 runs the next alone.
    fn segment(&mut self, steps: usize, time: Duration, parks: u64) -> bool {
        if self.n == 1 {
            return false;
        }
        if self.pace == Pace::Alternate {
            self.solo = !self.solo;
            return self.solo;
        }
        (self.steps, self.time, self.parks) =
            (self.steps + steps, self.time + time, self.parks + parks);
        if self.steps < PACER_STEPS {
            return self.solo;
        }
        let per_step = self.time.as_secs_f64() / self.steps as f64;
        let parks_per_step = self.parks as f64 / self.steps as f64;
        (self.steps, self.time, self.parks) = (0, Duration::ZERO, 0);
        if self.solo {
            self.solo_step = Some(per_step);
            if self.team_step.is_some_and(|t| per_step >= t) {
                // No faster alone: back to the team.
                self.solo = false;
            } else if self.wait > 0 {
                self.wait -= 1;
            } else {
                (self.solo, self.trying) = (false, true);
            }
        } else {
            self.team_step = Some(per_step);
            let slower = self.solo_step.is_none_or(|s| per_step >= s);
            if self.trying {
                self.trying = false;
                if slower {
                    self.backoff = (self.backoff * 2).min(MAX_SOLO);
                    (self.solo, self.wait) = (true, self.backoff - 1);
                } else {
                    self.backoff = FIRST_SOLO;
                }
            } else if parks_per_step > PARKS_PER_STEP && slower {
                (self.solo, self.wait) = (true, self.backoff - 1);
            }
        }
        if self.trace {
            eprintln!(
                "pacer: {per_step:.2e} s/step, {parks_per_step:.3} parks/step -> {}",
                if self.solo { "solo" } else { "team" }
            );
        }
        self.solo
    }
}

/// Runs the training on `threads` threads (see the module docs): any net of `cfg` (its first
/// layer is an Affine), any optimizer. On a busy machine member 0 may run stretches of steps
/// alone ([`Pace::Adaptive`]), with the same bits.
pub fn train_threads(
    cfg: &TrainConfig,
    data: &Mnist,
    threads: usize,
    on_event: impl FnMut(Event<'_>),
) -> zeronn::Result<TrainReport> {
    let none = Checkpointing::default();
    train_threads_paced(cfg, data, threads, Pace::Adaptive, &none, on_event)
        .map_err(|e| e.into_zeronn())
}

/// [`train_threads`] with checkpoints (written at a meeting of the whole team, every
/// `ck.every` iterations) and a resume from one, as [`crate::train::train_resumable`].
pub fn train_threads_resumable(
    cfg: &TrainConfig,
    data: &Mnist,
    threads: usize,
    ck: &Checkpointing,
    on_event: impl FnMut(Event<'_>),
) -> Result<TrainReport, RunError> {
    train_threads_paced(cfg, data, threads, Pace::Adaptive, ck, on_event)
}

/// [`train_threads_resumable`] with the team paced as `pace` says.
pub fn train_threads_paced(
    cfg: &TrainConfig,
    data: &Mnist,
    threads: usize,
    pace: Pace,
    ck: &Checkpointing,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<TrainReport, RunError> {
    let train_size = data.train.len();
    let spec = cfg.spec(data.train.pixels, cfg.classes);
    let layout = Layout::new(spec)?;
    let (inputs, hidden, batch) = (
        spec.input_size(),
        layout.first_output_width(),
        cfg.batch_size,
    );
    let n = threads.clamp(1, inputs);
    let iter_per_epoch = cfg.iter_per_epoch(train_size);
    let mut rng = seeded(cfg.seed);
    let net = new_net(cfg, spec, &mut rng)?;
    let backend = net.backend();
    let optimizer = AnyOptimizer::<f32>::new(cfg.optimizer, cfg.lr)?;
    // Plain SGD is fused into the products; otherwise gradients, then the optimizer.
    let fused = cfg.fused();
    let (lr, lambda) = (cfg.lr as f32, net.weight_decay());
    let (plen, tail) = (spec.param_len(), layout.first_weight_len());
    let planes = optimizer.planes();
    let dropout = spec
        .layers()
        .iter()
        .any(|l| matches!(l, zeronn::Layer::Dropout { .. }));

    let (mut p, mut st) = net.into_parts();
    // The optimizer's planes, one after the other, each in the parameters' layout.
    let mut planes_init = vec![0.0f32; if fused { 0 } else { planes * plen }];
    // A resumed run starts from its checkpoint's state, at its iteration.
    let first_iter = match &ck.resume {
        Some(r) => {
            check_resume(
                r,
                &ck.fingerprint,
                cfg.iters,
                [p.len(), st.len(), planes_init.len()],
            )?;
            p.copy_from_slice(&r.params);
            st.copy_from_slice(&r.state);
            planes_init.copy_from_slice(&r.opt_state);
            r.next_iter
        }
        None => 0,
    };
    let (params, state) = (Shared::new(p), Shared::new(st));
    let opt_state = Shared::new(planes_init);
    let (eval_train, eval_test) = (
        EvalSet::new_on(&data.train, EVAL_CHUNK, n),
        EvalSet::new_on(&data.test, EVAL_CHUNK, n),
    );
    let bounds = feature_split(&data.train, n, batch);
    let partials = Shared::new(vec![0.0f32; n * batch * hidden]);
    // The scans of member t's columns of mini-batch j: jobs[3·t + j mod 3], over its words.
    let jobs: Vec<ScanJob> = (0..n)
        .flat_map(|t| {
            let words = bounds[t + 1].div_ceil(64) - bounds[t] / 64;
            (0..3).map(move |_| ScanJob::new(words))
        })
        .collect();
    let d1 = Shared::new(vec![0.0f32; batch * hidden]);
    // The masks of mini-batches i to i + 3, by i mod 4.
    let masks = Shared::new(vec![0usize; MASKS * batch]);
    let counts = Shared::new(vec![0usize; 2 * n]);
    // The next chunk of the evaluation sets to count (see E below).
    let next_chunk = AtomicUsize::new(0);
    let barrier = SpinBarrier::new(n);
    // Members done with their partial product, over all steps: the first of a step runs
    // the layers after the first (see L below).
    let arrivals = AtomicUsize::new(first_iter * n);
    // Steps whose partial product member t has written, and steps whose dZ1 is written.
    let partial_done: Vec<Signal> = (0..n).map(|_| Signal::new()).collect();
    let d1_done = Signal::new();
    // The loss of the step whose dZ1 is written (f32 bits).
    let step_loss = AtomicU32::new(0);
    let first_error: Mutex<Option<zeronn::Error>> = Mutex::new(None);
    // A checkpoint that could not be written, or a non-finite loss: the members stop at the
    // meeting after it.
    let ck_error: Mutex<Option<String>> = Mutex::new(None);
    let halt = AtomicBool::new(false);
    type Log = (Vec<f32>, Vec<Epoch>, Duration, Duration);
    let report: Mutex<Log> = Mutex::new((Vec::new(), Vec::new(), Duration::ZERO, Duration::ZERO));
    let mask_at = |i: usize| (i % MASKS) * batch..(i % MASKS + 1) * batch;

    // The parts of each step's work, one per member: member t runs part t in a team segment;
    // in a solo segment member 0 runs them all, one after the other, and the others sit out
    // until the next evaluation (see `Pacer`).
    let parts: Vec<Mutex<Part>> = (0..n)
        .map(|t| {
            let (f0, f1) = (bounds[t], bounds[t + 1]);
            Mutex::new(Part {
                t,
                f0,
                f1,
                // The pixels a scan for active features reads: whole 64-pixel words.
                s0: f0 / 64 * 64,
                s1: (f1.div_ceil(64) * 64).min(inputs),
                cols: [Cols::new(), Cols::new(), Cols::new()],
                w1_grads: vec![0.0f32; if fused { 0 } else { (f1 - f0) * hidden }],
                opt: {
                    let mut opt = optimizer.clone();
                    if let (Some(r), AnyOptimizer::Adam(a)) = (&ck.resume, &mut opt) {
                        a.iter = r.opt_steps;
                    }
                    opt
                },
            })
        })
        .collect();
    // The members that run the steps of this segment (between two evaluations): n or 1.
    let active = AtomicUsize::new(n);
    // Where the members sitting out a segment sleep until member 0 reaches its evaluation:
    // the evaluations member 0 has reached. Not the team's parking, which every publish of a
    // step would wake.
    let bench = (Mutex::new(0usize), Condvar::new());

    // One member of the team. Member 0 (the calling thread) also samples, reports and paces.
    let member = |me: usize, mut leader: Leader<'_>| {
        let _poison = PoisonOnPanic(&barrier);
        let fail = |e: zeronn::Error| {
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        };
        // The parts this member runs while `active` members run the steps.
        let take = |active: usize| -> Vec<MutexGuard<'_, Part>> {
            let lock = |t: usize| parts[t].lock().unwrap_or_else(|p| p.into_inner());
            match (active == n, me) {
                (true, _) => vec![lock(me)],
                (false, 0) => (0..n).map(lock).collect(),
                (false, _) => Vec::new(),
            }
        };
        let mut pack = vec![0.0f32; PACK_LEN];
        // The layers after the first (when this member runs them), then the evaluations.
        let mut ws = vec![0.0f32; spec.workspace_len(batch.max(EVAL_CHUNK))];
        let mut scratch = EvalScratch::default();
        let job = |t: usize, j: usize| &jobs[3 * t + j % 3];
        // For pieces of the others' scans.
        let mut helper = Compact::new();
        let mut labels = vec![0u8; batch];
        let mut b1 = vec![0.0f32; hidden];
        // The gradients of the parameters after W1 (when this member runs those layers).
        let mut rest_grads = vec![0.0f32; if fused { 0 } else { plen - tail }];
        let mut drawn = vec![0usize; batch];
        let mut log: Log = (
            Vec::with_capacity(cfg.losses_capacity()),
            Vec::new(),
            Duration::ZERO,
            Duration::ZERO,
        );
        let mut pacer = Pacer::new(n, pace);
        // This segment's steps, their time and the parks before it (member 0's count).
        let mut segment = (0usize, Duration::ZERO, team::parks());
        if let (Some(r), true) = (&ck.resume, leader.is_some()) {
            log.0.extend_from_slice(&r.losses);
            log.1.extend_from_slice(&r.epochs);
        }
        if let Some((rng, _)) = leader.as_mut() {
            // A resumed run draws the mini-batches before its first again (the same numbers).
            for _ in 0..first_iter {
                random::choice(*rng, train_size, &mut drawn);
            }
            for i in first_iter..cfg.iters.min(first_iter + MASKS - 1) {
                random::choice(*rng, train_size, &mut drawn);
                // SAFETY: nobody else touches the masks before the first barrier.
                unsafe { masks.part_mut(mask_at(i).start, mask_at(i).end) }.copy_from_slice(&drawn);
            }
        }
        barrier.wait();
        let mut held = take(n);
        let f = first_iter;
        if cfg.iters > f {
            // SAFETY: mask f is written before the barrier above and not again until step
            // f + 1.
            let m = unsafe { masks.part(mask_at(f).start, mask_at(f).end) };
            for g in held.iter_mut() {
                let p = &mut **g;
                p.cols[f % 3].start(&data.train, job(p.t, f), m, f);
                p.cols[f % 3].finish(&data.train, job(p.t, f), (p.f0, p.f1), &barrier);
            }
        }
        for i in first_iter..cfg.iters {
            // A member sitting out this segment waits at its evaluation (E below).
            if !held.is_empty() {
                let start = Instant::now();
                for g in held.iter_mut() {
                    g.opt.begin_step();
                }
                // A: member 0 samples mini-batch i + 3; every part prefetches its columns of
                // the one after next and computes its partial product.
                if let Some((rng, _)) = leader.as_mut()
                    && i + 3 < cfg.iters
                {
                    random::choice(*rng, train_size, &mut drawn);
                    let at = mask_at(i + 3);
                    // SAFETY: this mask (of mini-batch i - 1) was last read before dA1 of
                    // step i - 1 was written (gathering and layer 2), which member 0 has
                    // waited for or written itself.
                    unsafe { masks.part_mut(at.start, at.end) }.copy_from_slice(&drawn);
                }
                // SAFETY: member 0 wrote masks i to i + 2 before its partial products of
                // earlier steps, which every member has seen (directly, or through dA1 of
                // those steps). It next writes mask i's slot at the start of step i + 1,
                // which it reaches only after this step's layer 2 (the last to read mask i)
                // has written dA1; the slots of masks i + 1 and i + 2 later still (the
                // gathering copies the rows it reads).
                let mask = |j: usize| {
                    (j < cfg.iters).then(|| unsafe { masks.part(mask_at(j).start, mask_at(j).end) })
                };
                let (batch1, batch2) = (mask(i + 1), mask(i + 2));
                let mut first = false;
                for g in held.iter_mut() {
                    let p = &mut **g;
                    for &r in batch2.unwrap_or_default() {
                        data.train.prefetch_part(r, p.s0, p.s1);
                    }
                    let (cur, next, _) = ring(&mut p.cols, i);
                    // SAFETY: nobody writes rows f0..f1 of W1 but the holder of this part;
                    // layer 2 of the last step, done reading this part's partial sum, wrote
                    // dA1, which this member has waited for or written itself (or, for a
                    // part it holds from this segment on, which the evaluation's barriers
                    // ordered before).
                    let (w1_part, out) = unsafe {
                        (
                            params.part(p.f0 * hidden, p.f1 * hidden),
                            partials.part_mut(p.t * batch * hidden, (p.t + 1) * batch * hidden),
                        )
                    };
                    let r = (|| {
                        gemm::gemm(
                            backend,
                            1.0,
                            cur.x(batch)?,
                            MatRef::gather_rows(w1_part, &cur.rel, hidden, hidden)?,
                            0.0,
                            MatMut::row_major(out, batch, hidden)?,
                            &mut pack,
                        )
                    })();
                    if let Err(e) = r {
                        fail(e);
                    }
                    // Every part arrives once a step, before its product is said to be done,
                    // so no part arrives for step i + 1 before all have for step i.
                    first |= arrivals.fetch_add(1, Ordering::Relaxed) == i * n;
                    partial_done[p.t].publish(i + 1);
                    // Gathering the next mini-batch, then the one after, fills the waits
                    // below: a member early in this step is ahead in the next.
                    if let Some(m) = batch1 {
                        next.start_once(&data.train, job(p.t, i + 1), m, i + 1);
                    }
                }
                // With nothing of its own left, a member takes pieces of the scans of the
                // next two mini-batches of the parts others hold (whose masks stay put until
                // every member is past this step).
                let others = held.len() < n;
                let mut help = || {
                    others
                        && (0..n).filter(|&t| t != me).any(|t| {
                            let range = (bounds[t], bounds[t + 1]);
                            (i + 1..i + 3).any(|j| {
                                mask(j).is_some_and(|m| {
                                    job(t, j).help(&data.train, j, m, range, &mut helper)
                                })
                            })
                        })
                };
                let mut gather = || {
                    for g in held.iter_mut() {
                        let p = &mut **g;
                        let (_, next, after) = ring(&mut p.cols, i);
                        if next.work(&data.train, job(p.t, i + 1), p.f0, p.f1) {
                            return true;
                        }
                        if let Some(m) = batch2 {
                            after.start_once(&data.train, job(p.t, i + 2), m, i + 2);
                            if after.work(&data.train, job(p.t, i + 2), p.f0, p.f1) {
                                return true;
                            }
                        }
                    }
                    help()
                };
                // L: the first member done with its product (the least loaded of this step)
                // runs the layers after the first once all are done; the others wait for dZ1.
                // Those layers compute the same whoever runs them.
                let loss = if first {
                    for done in &partial_done {
                        done.wait_for(i + 1, &barrier, &mut gather);
                    }
                    // The weight decay term needs every weight, W1 included: read before
                    // anyone writes (the parts' rows of W1 are updated only once dZ1 is
                    // written).
                    let decay = if lambda != 0.0 {
                        // SAFETY: nobody writes the parameters until dZ1 is written (below).
                        spec.weight_decay_term(unsafe { params.read() }, lambda)
                    } else {
                        0.0
                    };
                    // SAFETY: the partials are all written (waited for above) and not written
                    // again before dZ1 is; only the runner of these layers touches the
                    // parameters after W1, the state and the optimizer's state of those
                    // parameters outside the evaluations, and it hands them on to the next
                    // with its partial product of the next step; the others read dZ1 only once
                    // it is written (the mutable `d` is not used after that).
                    let (all, rest, st, d) = unsafe {
                        (
                            partials.read(),
                            params.part_mut(tail, plen),
                            state.part_mut(0, spec.state_len()),
                            d1.part_mut(0, batch * hidden),
                        )
                    };
                    b1.copy_from_slice(&rest[..hidden]);
                    // Mask i is read here only, by the runner of these layers (see the SAFETY
                    // above).
                    let this = mask(i).unwrap_or_default();
                    for (l, &r) in labels.iter_mut().zip(this) {
                        *l = data.train.t[r];
                    }
                    let mut masks_rng = seeded(if dropout {
                        dropout_seed(cfg.seed, i)
                    } else {
                        0
                    });
                    let upd = if fused {
                        Update::Sgd(lr)
                    } else {
                        Update::Grads(&mut rest_grads[..])
                    };
                    // What the others wait for first: dZ1.
                    let fill = |z: &mut [f32], relu: bool| {
                        sum_bias(z, all, &b1, hidden, relu);
                        Ok(())
                    };
                    let stepped = layout.step_after_first(
                        backend,
                        rest,
                        st,
                        upd,
                        lambda,
                        &mut masks_rng,
                        fill,
                        &labels,
                        d,
                        &mut ws,
                    );
                    let (loss, after) = match stepped {
                        Ok((l, a)) => (l + decay, Some(a)),
                        Err(e) => {
                            fail(e);
                            (f32::NAN, None)
                        }
                    };
                    step_loss.store(loss.to_bits(), Ordering::Relaxed);
                    d1_done.publish(i + 1);
                    // Then the updates of the lowest Affine after W1 and of b1, while the
                    // others update W1. Every part's optimizer has counted the same steps:
                    // the first held one serves.
                    let opt = &mut held[0].opt;
                    // SAFETY: dZ1 is only read from here until it is written again in the
                    // next step, after every part's next partial product.
                    let d = unsafe { d1.read() };
                    if let Some(after) = after {
                        let upd = if fused {
                            Update::Sgd(lr)
                        } else {
                            Update::Grads(&mut rest_grads[..])
                        };
                        let r = layout
                            .finish_after_first(backend, rest, upd, lambda, &after, d, &mut ws)
                            .and_then(|()| {
                                if fused {
                                    return Ok(());
                                }
                                // SAFETY: this part of each plane belongs to the parameters
                                // after W1, this runner's (see above).
                                let (s0, s1) =
                                    unsafe { plane_parts(&opt_state, planes, plen, tail, plen) };
                                opt.apply(rest, &rest_grads, s0, s1)
                            });
                        if let Err(e) = r {
                            fail(e);
                        }
                    }
                    loss
                } else {
                    d1_done.wait_for(i + 1, &barrier, &mut gather);
                    f32::from_bits(step_loss.load(Ordering::Relaxed))
                };
                if let Some((_, report)) = leader.as_mut() {
                    log.0.push(loss);
                    report(Event::Iter(i, loss));
                }
                // C: each part's rows of W1: W1[f0..f1, :] -= lr·X[:, f0..f1]ᵀ·dZ1 fused into
                // the product, or their gradient (zero for the inactive rows, then λ·W1),
                // then the optimizer on them.
                for g in held.iter_mut() {
                    let p = &mut **g;
                    let cur = &p.cols[i % 3];
                    // SAFETY: dZ1 is written (it is written again only after every part's
                    // next partial product); rows f0..f1 of W1, and their part of the
                    // optimizer's planes, are this part's, which this member holds.
                    let (d, w1_part) =
                        unsafe { (d1.read(), params.part_mut(p.f0 * hidden, p.f1 * hidden)) };
                    let r = (|| {
                        let dz = MatRef::row_major(d, batch, hidden)?;
                        if fused {
                            return gemm::gemm(
                                backend,
                                -lr,
                                cur.x(batch)?.t(),
                                dz,
                                1.0,
                                MatMut::gather_rows(w1_part, &cur.rel, hidden, hidden)?,
                                &mut pack,
                            );
                        }
                        p.w1_grads.fill(0.0);
                        gemm::gemm(
                            backend,
                            1.0,
                            cur.x(batch)?.t(),
                            dz,
                            0.0,
                            MatMut::gather_rows(&mut p.w1_grads, &cur.rel, hidden, hidden)?,
                            &mut pack,
                        )?;
                        if lambda != 0.0 {
                            for (g, &w) in p.w1_grads.iter_mut().zip(w1_part.iter()) {
                                *g += lambda * w;
                            }
                        }
                        // SAFETY: see above.
                        let (s0, s1) = unsafe {
                            plane_parts(&opt_state, planes, plen, p.f0 * hidden, p.f1 * hidden)
                        };
                        p.opt.apply(w1_part, &p.w1_grads, s0, s1)
                    })();
                    if let Err(e) = r {
                        fail(e);
                    }
                }
                for g in held.iter_mut() {
                    let p = &mut **g;
                    let (_, next, _) = ring(&mut p.cols, i);
                    next.finish(&data.train, job(p.t, i + 1), (p.f0, p.f1), &barrier);
                }
                if leader.is_some() {
                    let took = start.elapsed();
                    log.2 += took;
                    segment.0 += 1;
                    segment.1 += took;
                }
            }
            // E: evaluation, every epoch, and a handoff every SEGMENT steps: between two
            // barriers, the members count the evaluation's chunks and member 0 decides who
            // runs the next segment. The parts change hands only here (the barriers carry
            // what the last holder wrote to the next).
            let evaluate = i % iter_per_epoch == 0;
            let save = ck.path.is_some() && (i + 1) % ck.every.max(1) == 0 && i + 1 < cfg.iters;
            if evaluate || save || (n > 1 && i % SEGMENT == 0) {
                let (reached, bell) = &bench;
                if leader.is_some() {
                    *reached.lock().unwrap_or_else(|p| p.into_inner()) = i + 1;
                    bell.notify_all();
                } else if held.is_empty() {
                    let mut r = reached.lock().unwrap_or_else(|p| p.into_inner());
                    while *r <= i {
                        barrier.check();
                        r = bell
                            .wait_timeout(r, Duration::from_millis(100))
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
                held.clear();
                barrier.wait();
                let start = Instant::now();
                if evaluate {
                    // SAFETY: nobody writes the parameters in this phase; each member writes
                    // only its own two count slots.
                    let (p, sv, c) = unsafe {
                        (
                            params.read(),
                            state.read(),
                            counts.part_mut(2 * me, 2 * me + 2),
                        )
                    };
                    // The chunks go to whoever is free: a member slowed by the machine takes
                    // fewer. The counts do not depend on who counts.
                    let tc = eval_train.chunks();
                    let chunks = tc + eval_test.chunks();
                    let r = Net::with_state(spec, p, sv)
                        .and_then(|net| net.with_backend(backend))
                        .and_then(|net| {
                            let (mut a, mut b) = (0, 0);
                            loop {
                                let c = next_chunk.fetch_add(1, Ordering::Relaxed);
                                if c >= chunks {
                                    break Ok((a, b));
                                } else if c < tc {
                                    let s = (c, c + 1);
                                    a +=
                                        eval_train.count_correct(&net, s, &mut scratch, &mut ws)?;
                                } else {
                                    let s = (c - tc, c - tc + 1);
                                    b += eval_test.count_correct(&net, s, &mut scratch, &mut ws)?;
                                }
                            }
                        });
                    match r {
                        Ok((a, b)) => (c[0], c[1]) = (a, b),
                        Err(e) => fail(e),
                    }
                }
                if leader.is_some() {
                    // The next segment's team: read by every member after the barrier below.
                    let (steps, time, parks) = segment;
                    let solo = pacer.segment(steps, time, team::parks() - parks);
                    active.store(if solo { 1 } else { n }, Ordering::Relaxed);
                    // A non-finite loss since the last meeting: the run stops here (the
                    // report names the first such iteration).
                    if log.0[log.0.len() - steps..].iter().any(|l| !l.is_finite()) {
                        halt.store(true, Ordering::Relaxed);
                    }
                }
                barrier.wait();
                let diverged = halt.load(Ordering::Relaxed);
                if let Some((_, report)) = leader.as_mut().filter(|_| evaluate) {
                    // For the next evaluation: nobody takes a chunk before its first barrier,
                    // which member 0 reaches after this.
                    next_chunk.store(0, Ordering::Relaxed);
                    // SAFETY: the counts are only written in the next evaluation phase, after
                    // its first barrier, which member 0 reaches after this read.
                    let c = unsafe { counts.read() };
                    let train_ok: usize = (0..n).map(|t| c[2 * t]).sum();
                    let test_ok: usize = (0..n).map(|t| c[2 * t + 1]).sum();
                    log.1.push(Epoch {
                        iter: i,
                        train_acc: train_ok as f64 / train_size as f64,
                        test_acc: test_ok as f64 / data.test.len() as f64,
                    });
                    report(Event::Epoch(&log.1[log.1.len() - 1]));
                    log.3 += start.elapsed();
                }
                if diverged {
                    break;
                }
                if let (Some(path), true) = (&ck.path, save) {
                    // C: the checkpoint, of a sound state only (a diverging run keeps its last
                    // good one), while every member waits at the barrier below.
                    // SAFETY: nobody writes the parameters, the state or the optimizer's
                    // planes until everyone has passed that barrier.
                    let (p, sv, planes) =
                        unsafe { (params.read(), state.read(), opt_state.read()) };
                    if leader.is_some() && p.iter().all(|x| x.is_finite()) {
                        let lock = parts[0].lock().unwrap_or_else(|p| p.into_inner());
                        let opt_steps = match &lock.opt {
                            AnyOptimizer::Adam(a) => a.iter,
                            _ => 0,
                        };
                        drop(lock);
                        let c = Checkpoint {
                            fingerprint: ck.fingerprint.clone(),
                            next_iter: i + 1,
                            opt_steps,
                            params: p.to_vec(),
                            state: sv.to_vec(),
                            opt_state: planes.to_vec(),
                            losses: log.0.clone(),
                            epochs: log.1.clone(),
                        };
                        if let Err(e) = crate::checkpoint::save(path, &c) {
                            *ck_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            halt.store(true, Ordering::Relaxed);
                        }
                    }
                    barrier.wait();
                    if halt.load(Ordering::Relaxed) {
                        break;
                    }
                }
                if leader.is_some() {
                    segment = (0, Duration::ZERO, team::parks());
                }
                held = take(active.load(Ordering::Relaxed));
            }
        }
        drop(held);
        if leader.is_some() {
            *report.lock().unwrap_or_else(|p| p.into_inner()) = log;
        }
    };

    std::thread::scope(|s| {
        for me in 1..n {
            let member = &member;
            s.spawn(move || member(me, None));
        }
        member(0, Some((&mut rng, &mut on_event)));
    });

    if let Some(e) = ck_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(RunError::Checkpoint(e));
    }
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(RunError::Net(e));
    }
    let (losses, epochs, train_time, mut eval_time) =
        report.into_inner().unwrap_or_else(|p| p.into_inner());
    let (params, state) = (params.into_inner(), state.into_inner());
    let final_test_acc = crate::train::final_eval(cfg, &mut eval_time, || {
        let net =
            zeronn::Net::with_state(spec, &params[..], &state[..])?.with_backend(cfg.backend)?;
        let mut ws = vec![0.0f32; spec.workspace_len(EVAL_CHUNK)];
        eval_test.accuracy(&net, &mut ws)
    })?;
    // The team stops at the first meeting after a non-finite loss (its members do not stop
    // on their own within a segment); the first non-finite loss is where the run went wrong.
    let diverged = losses.iter().position(|l| !l.is_finite());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Images whose pixel f is non-zero in a fraction of the images that grows with f.
    fn ramp(pixels: usize, images: usize) -> Split {
        let mut raw = vec![0u8; pixels * images];
        for (i, img) in raw.chunks_exact_mut(pixels).enumerate() {
            for (f, p) in img.iter_mut().enumerate() {
                // Pixel f is on in about f / pixels of the images.
                *p = u8::from((i * 7919 + f * 104_729) % pixels < f);
            }
        }
        Split {
            raw,
            floats: Vec::new(),
            t: vec![0; images],
            pixels,
        }
    }

    /// Small random images (some pixels always blank, the last 64-pixel word partial) with
    /// labels that depend on them, so that the net can learn.
    fn digits(images: usize, seed: u64) -> Split {
        use zeronn::random::Rng;
        let pixels = 100;
        let mut rng = seeded(seed);
        let mut raw = vec![0u8; pixels * images];
        let mut t = vec![0u8; images];
        for (img, label) in raw.chunks_exact_mut(pixels).zip(&mut t) {
            *label = (rng.next_u32() % 10) as u8;
            for (f, p) in img.iter_mut().enumerate().skip(5) {
                if f % 10 == usize::from(*label) || rng.next_u32().is_multiple_of(5) {
                    *p = (rng.next_u32() % 256) as u8;
                }
            }
        }
        Split {
            raw,
            floats: Vec::new(),
            t,
            pixels,
        }
    }

    /// Every team size, short runs and evaluations at every step, for the chapter 5 net with
    /// fused SGD and for a chapter 6 net (two hidden layers, BatchNorm, Dropout, weight decay,
    /// Adam): a run repeats bit for bit (parameters, state, losses and every evaluation), and
    /// so does one where member 0 runs every other segment alone; its
    /// losses are those of the single-thread run up to rounding, and the last evaluation's
    /// counts are those of an independent pass over the final parameters.
    #[test]
    fn teams_of_every_size_repeat_their_runs_and_agree_with_one_thread() {
        use zeronn::WeightInit;
        use zeronn::optimizer::OptimizerKind;
        let data = Mnist {
            train: digits(300, 1),
            test: digits(60, 2),
        };
        let chapter5 = TrainConfig {
            hidden: vec![8],
            seed: 3,
            eval_every: Some(1),
            ..TrainConfig::default()
        };
        let chapter6 = TrainConfig {
            hidden: vec![8, 6],
            batch_norm: true,
            dropout: Some(0.2),
            weight_decay: 0.01,
            weight_init: WeightInit::He,
            optimizer: OptimizerKind::Adam,
            lr: 0.01,
            ..chapter5.clone()
        };
        let runs = [(0, 7), (1, 7), (2, 2), (3, 7), (300, 20)]
            .into_iter()
            .flat_map(|(iters, batch)| {
                [&chapter5, &chapter6].map(|c| TrainConfig {
                    iters,
                    batch_size: batch,
                    ..c.clone()
                })
            });
        for cfg in runs {
            let (iters, batch) = (cfg.iters, cfg.batch_size);
            let one = crate::train::train(&cfg, &data, |_| {}).unwrap();
            for n in 1..=4 {
                let run = || train_threads(&cfg, &data, n, |_| {}).unwrap();
                let (a, b) = (run(), run());
                let bits = |p: &[f32]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&a.params),
                    bits(&b.params),
                    "{n} threads, {iters} iterations, batch {batch}"
                );
                assert_eq!(bits(&a.state), bits(&b.state));
                assert_eq!(a.epochs, b.epochs);
                assert_eq!(bits(&a.losses), bits(&b.losses));
                // Member 0 running every part in every other segment changes no bit.
                let none = Checkpointing::default();
                let c =
                    train_threads_paced(&cfg, &data, n, Pace::Alternate, &none, |_| {}).unwrap();
                assert_eq!(bits(&a.params), bits(&c.params), "{n} threads, alternating");
                assert_eq!(bits(&a.state), bits(&c.state));
                assert_eq!(a.epochs, c.epochs);
                assert_eq!(bits(&a.losses), bits(&c.losses));
                assert_eq!(a.losses.len(), iters);
                assert_eq!(one.losses.len(), iters);
                for (x, y) in a.losses.iter().zip(&one.losses) {
                    assert!(
                        (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                        "{n}: loss {x} vs {y}"
                    );
                }
                assert_eq!(a.epochs.len(), iters);
                if let Some(last) = a.epochs.last() {
                    let net = Net::with_state(a.spec, &a.params[..], &a.state[..]).unwrap();
                    let mut ws = vec![0.0f32; a.spec.workspace_len(EVAL_CHUNK)];
                    let mut acc = |s: &Split| EvalSet::new(s, EVAL_CHUNK).accuracy(&net, &mut ws);
                    assert_eq!(last.train_acc, acc(&data.train).unwrap(), "{n} threads");
                    assert_eq!(last.test_acc, acc(&data.test).unwrap(), "{n} threads");
                }
            }
            if iters == 300 {
                let last = one.epochs.last().unwrap();
                assert!(
                    last.train_acc > 0.3,
                    "no better than chance (0.1): {last:?} {cfg:?}"
                );
            }
        }
    }

    /// The pacer keeps a quiet team; on a busy machine it runs member 0 alone while that is
    /// faster, tries the team after 4, 8, 16, then every 32 segments, and goes back to it when
    /// the team is faster again (or when running alone proves no faster).
    #[test]
    fn the_pacer_runs_alone_only_while_that_is_faster() {
        let seg = |us: f64| Duration::from_secs_f64(us * 1e-6 * SEGMENT as f64);
        let parks = |per_step: f64| (per_step * SEGMENT as f64) as u64;
        // Quiet: few parks, the team stays.
        let mut p = Pacer::new(2, Pace::Adaptive);
        for _ in 0..100 {
            assert!(!p.segment(SEGMENT, seg(60.0), parks(0.01)));
        }
        // Busy: team steps of 170 µs that park twice a step, 110 µs alone.
        let mut p = Pacer::new(2, Pace::Adaptive);
        let mut modes = String::new();
        let mut solo = false;
        for _ in 0..80 {
            solo = if solo {
                p.segment(SEGMENT, seg(110.0), 0)
            } else {
                p.segment(SEGMENT, seg(170.0), parks(2.0))
            };
            modes.push(if solo { 's' } else { 't' });
        }
        let want = format!(
            "{}t{}t{}t{}t{}",
            "s".repeat(4),
            "s".repeat(8),
            "s".repeat(16),
            "s".repeat(32),
            "s".repeat(80 - 4 - 8 - 16 - 32 - 4)
        );
        assert_eq!(modes, want);
        // The load goes: the next try (at most 32 segments on) finds the team faster, and it
        // stays.
        let alone = (0..32)
            .take_while(|_| p.segment(SEGMENT, seg(110.0), 0))
            .count();
        // The last 16 of the 80 were the first of 32 alone.
        assert_eq!(alone, 32 - 16);
        for _ in 0..10 {
            assert!(!p.segment(SEGMENT, seg(60.0), parks(0.01)));
        }
        // Parks, but running alone proves slower: back to the team at once.
        let mut p = Pacer::new(2, Pace::Adaptive);
        assert!(p.segment(SEGMENT, seg(100.0), parks(2.0)));
        assert!(!p.segment(SEGMENT, seg(150.0), 0));
        // Too few steps to judge: the mode stays until there are enough.
        let mut p = Pacer::new(2, Pace::Adaptive);
        assert!(!p.segment(SEGMENT / 2, seg(85.0), parks(2.0)));
        assert!(p.segment(SEGMENT / 2, seg(85.0), parks(2.0)));
        // One thread: always the team.
        let mut p = Pacer::new(1, Pace::Adaptive);
        assert!(!p.segment(SEGMENT, seg(170.0), parks(2.0)));
    }

    /// A scan shared with helpers finds the features one scan finds, and the columns are
    /// gathered the same: pieces taken by a helper before the owner starts (so their bits are
    /// merged every time), then helpers on two other threads racing the owner, over a job
    /// reopened for mini-batch after mini-batch.
    #[test]
    fn a_scan_shared_with_helpers_finds_what_one_scan_finds() {
        use std::sync::atomic::AtomicBool;
        use zeronn::random::Rng;
        // Images with two non-zero pixels each: a batch leaves about half the pixels blank,
        // so missing a piece's pixels shows.
        let (pixels, images) = (150, 400);
        let mut rng = seeded(5);
        let mut raw = vec![0u8; pixels * images];
        for img in raw.chunks_exact_mut(pixels) {
            for _ in 0..2 {
                img[rng.next_u32() as usize % pixels] = 1 + (rng.next_u32() % 255) as u8;
            }
        }
        let data = Split {
            raw,
            floats: Vec::new(),
            t: vec![0; images],
            pixels,
        };
        let batches: Vec<Vec<usize>> = (0..8)
            .map(|j| (0..37).map(|k| (j * 53 + k * 11) % images).collect())
            .collect();
        let barrier = SpinBarrier::new(1);
        for range @ (f0, f1) in [(0usize, 150usize), (5, 70), (64, 150), (30, 31)] {
            let job = ScanJob::new(f1.div_ceil(64) - f0 / 64);
            let mut cols = Cols::new();
            for (j, rows) in batches.iter().enumerate() {
                let mut want = Compact::new();
                want.find_active_in(&data, rows.iter().copied(), f0, f1);
                let mut scratch = Compact::new();
                for _ in 0..2 {
                    assert!(job.help(&data, j, rows, range, &mut scratch));
                }
                let done = AtomicBool::new(false);
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            let mut scratch = Compact::new();
                            while !done.load(Ordering::Acquire) {
                                job.help(&data, j, rows, range, &mut scratch);
                            }
                        });
                    }
                    cols.start(&data, &job, rows, j);
                    cols.finish(&data, &job, range, &barrier);
                    done.store(true, Ordering::Release);
                });
                let got: Vec<usize> = cols.rel.iter().map(|&f| f + f0).collect();
                assert_eq!(got, want.active(), "features {f0}..{f1}, mini-batch {j}");
                let mut row = vec![0.0f32; got.len()];
                for (i, &r) in rows.iter().enumerate() {
                    want.compact_row(&data, r, &mut row);
                    assert_eq!(cols.x[i * got.len()..(i + 1) * got.len()], row[..]);
                }
            }
        }
    }

    #[test]
    fn the_split_covers_every_feature_once_and_evens_out_the_active_ones() {
        let data = ramp(200, 500);
        for n in 1..5 {
            let b = feature_split(&data, n, 1);
            assert_eq!(b.len(), n + 1);
            assert_eq!((b[0], b[n]), (0, 200));
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{n}: {b:?}");
        }
        // With batch 1 a pixel's weight is how often it is on: about f / 200, so the first
        // t members' share of the weight is (b[t] / 200)², which must be near t / n (and
        // not the t / n of the features: the ramp puts more work at the end).
        for n in 2..5 {
            let b = feature_split(&data, n, 1);
            for t in 1..n {
                let share = (b[t] as f64 / 200.0).powi(2);
                let want = t as f64 / n as f64;
                assert!(
                    (share - want).abs() < 0.03,
                    "{n}: {t}: {share} {want} {b:?}"
                );
            }
        }
    }
}
