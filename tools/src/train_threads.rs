//! The book's training run on several threads: the same mini-batches, the work of each step
//! split by input features.
//!
//! Member `t` of the team owns a contiguous range of the 784 input features, which is a
//! contiguous block of rows of `W1`. The two big products of a step (`X·W1` forward and the
//! `W1` update `W1 -= lr·Xᵀ·dA1` backward) split exactly along that range, so each member
//! gathers only its columns of the mini-batch and keeps its rows of `W1` in its own cache;
//! what crosses between members per step is small (the 100×50 partial sums and `dA1`).
//! Layer 2 is small and runs on member 0; meanwhile the others gather their columns of the
//! next mini-batch, and member 0 gets fewer features to even out the work
//! ([`feature_split`]). Every member runs the same loop in lockstep ([`crate::team`]):
//!
//! ```text
//! A  member 0: samples the mini-batch after next (the same draws as the single-thread
//!    run), gathers its columns of this one; every member: its partial product
//!    X[:, f]·W1[f, :]
//! ─── barrier
//! L  member 0: A1 = relu(Σ partials + b1) (summed in member order), layer 2 forward,
//!    softmax with loss, layer 2 backward fused with its update, dA1, the b1 update;
//!    the others: their columns of the next mini-batch
//! ─── barrier
//! C  every member: W1[f, :] -= lr·X[:, f]ᵀ·dA1, fused into the product
//! E  at each evaluation (between barriers), each member counts the correct answers in its
//!    share of the images
//! ```
//!
//! The forward sum is split by features, so results differ in rounding from the
//! single-thread run, but a run is bit-reproducible for a given thread count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeronn::gemm::{self, MatMut, MatRef, PACK_LEN};
use zeronn::random::{self, seeded};
use zeronn::{Affine, Relu, Sgd, SoftmaxWithLoss, TwoLayerNet, TwoLayerShape};

use crate::mnist::{Mnist, Split};
use crate::sparse::{Compact, EvalScratch, EvalSet};
use crate::team::{PoisonOnPanic, Shared, SpinBarrier, part};
use crate::train::{EVAL_CHUNK, Epoch, Event, TrainConfig, TrainReport};

/// What member 0 holds besides the others: the generator and the event sink.
type Leader<'a> = Option<(&'a mut random::XorShiftRng, &'a mut dyn FnMut(Event<'_>))>;

/// The work of a step per active feature, in relative units (measured on the book's run):
/// the two products, and gathering the feature's column of the mini-batch.
const PRODUCTS_COST: f64 = 0.72;
const GATHER_COST: f64 = 0.26;

/// Splits the `pixels` features among `n` members, as boundaries `f[0] = 0 ≤ … ≤ f[n] =
/// pixels`. What a member's range costs is the number of its features active in a
/// mini-batch of `batch` (a pixel is active if any image of the batch has it non-zero),
/// estimated from how often each pixel is non-zero in `data`. Member 0 gathers its columns
/// inside the step while the others gather theirs during layer 2 (which member 0 runs), so
/// member 0 gets the share that evens out its products and gathering against their products:
/// `p0·(P + G) = (1 − p0)·P / (n − 1)`.
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
    let p0 = if n == 1 {
        1.0
    } else {
        PRODUCTS_COST / (PRODUCTS_COST + (PRODUCTS_COST + GATHER_COST) * (n - 1) as f64)
    };
    // Member t's range ends where the running weight reaches its cumulative share.
    let mut bounds = vec![0usize; n + 1];
    let (mut f, mut acc) = (0, 0.0);
    for (t, bound) in bounds.iter_mut().enumerate().skip(1) {
        let share = p0 + (1.0 - p0) * (t - 1) as f64 / (n - 1).max(1) as f64;
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

/// A member's columns of one mini-batch: its active features and their values.
struct Cols {
    compact: Compact,
    /// The active features, relative to the member's first (rows of its block of `W1`).
    rel: Vec<usize>,
    /// `batch × rel.len()`, row-major.
    x: Vec<f32>,
}

impl Cols {
    fn new() -> Self {
        Cols {
            compact: Compact::new(),
            rel: Vec::new(),
            x: Vec::new(),
        }
    }

    /// Gathers features `f0..f1` of the images `rows` of `data`, active ones only.
    fn gather(&mut self, data: &Split, rows: &[usize], f0: usize, f1: usize) {
        self.compact
            .find_active_in(data, rows.iter().copied(), f0, f1);
        let k = self.compact.len();
        self.rel.clear();
        self.rel
            .extend(self.compact.active().iter().map(|&f| f - f0));
        self.x.resize(rows.len() * k, 0.0); // every element is written below
        for (&r, row) in rows.iter().zip(self.x.chunks_exact_mut(k.max(1))) {
            self.compact.compact_row(data, r, row);
        }
    }

    /// The gathered values as a `batch × k` matrix.
    fn x(&self, batch: usize) -> zeronn::Result<MatRef<'_, f32>> {
        MatRef::row_major(&self.x[..batch * self.rel.len()], batch, self.rel.len())
    }
}

/// Runs the training on `threads` threads (see the module docs). ReLU nets only (the book's
/// chapter 5 net); the batch must fit one fused k block (`layers::FUSED_MAX_BATCH`).
pub fn train_threads(
    cfg: &TrainConfig,
    data: &Mnist,
    threads: usize,
    mut on_event: impl FnMut(Event<'_>),
) -> zeronn::Result<TrainReport> {
    let train_size = data.train.len();
    let shape =
        TwoLayerShape::new(data.train.pixels, cfg.hidden, 10).with_activation(cfg.activation);
    let (inputs, hidden, classes, batch) = (
        shape.input_size,
        shape.hidden_size,
        shape.output_size,
        cfg.batch_size,
    );
    let n = threads.clamp(1, inputs);
    if shape.activation != zeronn::Activation::Relu {
        return Err(zeronn::Error::ShapeMismatch {
            what: "multi-threaded training supports the ReLU net",
            expected: 0,
            actual: 1,
        });
    }
    if batch > zeronn::layers::FUSED_MAX_BATCH {
        return Err(zeronn::Error::BatchTooLarge {
            batch,
            capacity: zeronn::layers::FUSED_MAX_BATCH,
        });
    }
    let iter_per_epoch = cfg.eval_every.unwrap_or((train_size / batch).max(1)).max(1);
    let mut net =
        TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()])?.with_backend(cfg.backend)?;
    let mut rng = seeded(cfg.seed);
    net.init_params(&mut rng, cfg.weight_init_std);
    let backend = net.backend();
    let sgd = Sgd::new(cfg.lr);
    let [w1, b1, _, _] = shape.layout();
    let (plen, tail) = (shape.param_len(), b1.offset);
    debug_assert_eq!(w1.len(), tail);

    let params = Shared::new(net.into_params());
    let (eval_train, eval_test) = (
        EvalSet::new_on(&data.train, EVAL_CHUNK, n),
        EvalSet::new_on(&data.test, EVAL_CHUNK, n),
    );
    let bounds = feature_split(&data.train, n, batch);
    let partials = Shared::new(vec![0.0f32; n * batch * hidden]);
    let d1 = Shared::new(vec![0.0f32; batch * hidden]);
    // The masks of mini-batches i, i + 1 and i + 2, by i mod 3.
    let masks = Shared::new(vec![0usize; 3 * batch]);
    let counts = Shared::new(vec![0usize; 2 * n]);
    let barrier = SpinBarrier::new(n);
    let first_error: Mutex<Option<zeronn::Error>> = Mutex::new(None);
    type Log = (Vec<f32>, Vec<Epoch>, Duration, Duration);
    let report: Mutex<Log> = Mutex::new((Vec::new(), Vec::new(), Duration::ZERO, Duration::ZERO));
    let mask_at = |i: usize| (i % 3) * batch..(i % 3 + 1) * batch;

    // One member of the team. Member 0 (the calling thread) also samples, runs layer 2 and
    // reports.
    let member = |me: usize, mut leader: Leader<'_>| {
        let _poison = PoisonOnPanic(&barrier);
        let fail = |e: zeronn::Error| {
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        };
        let (f0, f1) = (bounds[me], bounds[me + 1]);
        // This member's columns of the current mini-batch and (not member 0) of the next.
        let (mut cur, mut nxt) = (Cols::new(), Cols::new());
        let mut pack = vec![0.0f32; PACK_LEN];
        let mut ws = vec![0.0f32; shape.workspace_len(EVAL_CHUNK)];
        let mut scratch = EvalScratch::default();
        // Member 0's layer 2 buffers.
        let mut tb = vec![0u8; batch];
        let mut a1 = vec![0.0f32; batch * hidden];
        let mut y = vec![0.0f32; batch * classes];
        let mut drawn = vec![0usize; batch];
        let mut log: Log = (
            Vec::with_capacity(cfg.iters),
            Vec::new(),
            Duration::ZERO,
            Duration::ZERO,
        );
        if let Some((rng, _)) = leader.as_mut() {
            for i in 0..cfg.iters.min(2) {
                random::choice(*rng, train_size, &mut drawn);
                // SAFETY: nobody else touches the masks before the first barrier.
                unsafe { masks.part_mut(mask_at(i).start, mask_at(i).end) }.copy_from_slice(&drawn);
            }
        }
        barrier.wait();
        if me != 0 && cfg.iters > 0 {
            // SAFETY: mask 0 is written before the barrier above and not again until step 1.
            let m = unsafe { masks.part(mask_at(0).start, mask_at(0).end) };
            cur.gather(&data.train, m, f0, f1);
        }
        for i in 0..cfg.iters {
            let start = Instant::now();
            // A: member 0 samples mini-batch i + 2 (whose mask was last read in step i - 1)
            // and gathers its columns of this one; everyone prefetches its columns of the
            // next one and computes its partial product.
            if let Some((rng, _)) = leader.as_mut() {
                if i + 2 < cfg.iters {
                    random::choice(*rng, train_size, &mut drawn);
                    let at = mask_at(i + 2);
                    // SAFETY: this mask was last read in step i - 1 (member 0) and in step
                    // i - 2 (the others), before barriers every member has passed.
                    unsafe { masks.part_mut(at.start, at.end) }.copy_from_slice(&drawn);
                }
                // SAFETY: masks i and i + 1 are only read in this step.
                let m = unsafe { masks.part(mask_at(i).start, mask_at(i).end) };
                cur.gather(&data.train, m, f0, f1);
                for (label, &r) in tb.iter_mut().zip(m) {
                    *label = data.train.t[r];
                }
            }
            if i + 1 < cfg.iters {
                // SAFETY: as above.
                for &r in unsafe { masks.part(mask_at(i + 1).start, mask_at(i + 1).end) } {
                    data.train.prefetch_part(r, f0, f1);
                }
            }
            {
                // SAFETY: nobody writes rows f0..f1 of W1 but this member, and each member
                // writes only its own partial sum (read by member 0 after the barrier).
                let (w1_part, p) = unsafe {
                    (
                        params.part(f0 * hidden, f1 * hidden),
                        partials.part_mut(me * batch * hidden, (me + 1) * batch * hidden),
                    )
                };
                let r = (|| {
                    gemm::gemm(
                        backend,
                        1.0,
                        cur.x(batch)?,
                        MatRef::gather_rows(w1_part, &cur.rel, hidden, hidden)?,
                        0.0,
                        MatMut::row_major(p, batch, hidden)?,
                        &mut pack,
                    )
                })();
                if let Err(e) = r {
                    fail(e);
                }
            }
            barrier.wait();
            // L: member 0 runs layer 2 and the b1 update, the others gather their columns of
            // the next mini-batch.
            if leader.is_some() {
                // SAFETY: the partials are only read in this phase; member 0 alone touches
                // b1, W2 and b2 outside the evaluations, and writes dA1 (read after the
                // barrier).
                let (parts, tail_p, d) = unsafe {
                    (
                        partials.read(),
                        params.part_mut(tail, plen),
                        d1.part_mut(0, batch * hidden),
                    )
                };
                let (b1, rest) = tail_p.split_at_mut(hidden);
                let (w2, b2) = rest.split_at_mut(hidden * classes);
                let r = (|| {
                    // Σ partials in member order, then the bias and the ReLU.
                    a1.copy_from_slice(&parts[..batch * hidden]);
                    for other in parts.chunks_exact(batch * hidden).skip(1) {
                        for (x, &q) in a1.iter_mut().zip(other) {
                            *x += q;
                        }
                    }
                    for row in a1.chunks_exact_mut(hidden) {
                        for (x, &bj) in row.iter_mut().zip(&*b1) {
                            let v = *x + bj;
                            *x = if v <= 0.0 { 0.0 } else { v };
                        }
                    }
                    let mut g = gemm::Context::new(backend, &mut pack);
                    let affine2 = Affine::new(hidden, classes);
                    affine2.forward(&mut g, &mut y, &a1, w2, b2)?;
                    let loss =
                        SoftmaxWithLoss::new(classes).forward_backward_inplace(&mut y, &tb)?;
                    affine2.backward_sgd(&mut g, Some(&mut *d), &y, &a1, w2, b2, sgd.lr)?;
                    Relu::backward_inplace(d, &a1)?;
                    Affine::new(inputs, hidden).sgd_bias(d, b1, sgd.lr)?;
                    Ok::<f32, zeronn::Error>(loss)
                })();
                let loss = r.unwrap_or_else(|e| {
                    fail(e);
                    f32::NAN
                });
                if let Some((_, report)) = leader.as_mut() {
                    log.0.push(loss);
                    report(Event::Iter(i, loss));
                }
            } else if i + 1 < cfg.iters {
                // SAFETY: mask i + 1 is only read in this step.
                let m = unsafe { masks.part(mask_at(i + 1).start, mask_at(i + 1).end) };
                nxt.gather(&data.train, m, f0, f1);
            }
            barrier.wait();
            // C: W1[f0..f1, :] -= lr·X[:, f0..f1]ᵀ·dA1, fused into the product.
            {
                // SAFETY: dA1 is only read in this phase (member 0 writes it again after the
                // next step's first barrier); rows f0..f1 of W1 are this member's alone.
                let (d, w1_part) =
                    unsafe { (d1.read(), params.part_mut(f0 * hidden, f1 * hidden)) };
                let r = (|| {
                    gemm::gemm(
                        backend,
                        -sgd.lr,
                        cur.x(batch)?.t(),
                        MatRef::row_major(d, batch, hidden)?,
                        1.0,
                        MatMut::gather_rows(w1_part, &cur.rel, hidden, hidden)?,
                        &mut pack,
                    )
                })();
                if let Err(e) = r {
                    fail(e);
                }
            }
            if me != 0 {
                std::mem::swap(&mut cur, &mut nxt);
            }
            if leader.is_some() {
                log.2 += start.elapsed();
            }
            // E: evaluation, every epoch.
            if i % iter_per_epoch == 0 {
                barrier.wait();
                let start = Instant::now();
                {
                    // SAFETY: nobody writes the parameters in this phase; each member writes
                    // only its own two count slots.
                    let (p, c) = unsafe { (params.read(), counts.part_mut(2 * me, 2 * me + 2)) };
                    let r = TwoLayerNet::new(shape, p)
                        .and_then(|net| net.with_backend(backend))
                        .and_then(|net| {
                            Ok((
                                eval_train.count_correct(
                                    &net,
                                    part(eval_train.chunks(), n, me),
                                    &mut scratch,
                                    &mut ws,
                                )?,
                                eval_test.count_correct(
                                    &net,
                                    part(eval_test.chunks(), n, me),
                                    &mut scratch,
                                    &mut ws,
                                )?,
                            ))
                        });
                    match r {
                        Ok((a, b)) => (c[0], c[1]) = (a, b),
                        Err(e) => fail(e),
                    }
                }
                barrier.wait();
                if let Some((_, report)) = leader.as_mut() {
                    // SAFETY: the counts are only written in the next evaluation phase, after
                    // at least two more barriers.
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
            }
        }
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

    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let (losses, epochs, train_time, eval_time) =
        report.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(TrainReport {
        shape,
        params: params.into_inner(),
        losses,
        epochs,
        train_time,
        eval_time,
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
            t: vec![0; images],
            pixels,
        }
    }

    #[test]
    fn the_split_covers_every_feature_once_and_gives_member_0_less_work() {
        let data = ramp(200, 500);
        for n in 1..5 {
            let b = feature_split(&data, n, 1);
            assert_eq!(b.len(), n + 1);
            assert_eq!((b[0], b[n]), (0, 200));
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{n}: {b:?}");
        }
        // With batch 1 a pixel's weight is how often it is on: about f / 200, so member 0's
        // share of the weight is (b1 / 200)², and it must be near p0.
        let b = feature_split(&data, 2, 1);
        let p0 = PRODUCTS_COST / (2.0 * PRODUCTS_COST + GATHER_COST);
        let share = (b[1] as f64 / 200.0).powi(2);
        assert!(
            (share - p0).abs() < 0.03,
            "share {share}, p0 {p0}, split {b:?}"
        );
    }
}
