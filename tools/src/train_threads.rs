//! The book's training run on several threads: the same mini-batches, the work of each step
//! split by input features.
//!
//! Thread `t` owns a contiguous range of the 784 input features, which is a contiguous block
//! of rows of `W1`. The two big products of a step (`X·W1` forward and the `W1` update
//! `W1 -= lr·Xᵀ·dA1` backward) split exactly along that range, so each thread gathers only its
//! columns of the mini-batch and keeps its rows of `W1` in its own cache; what crosses between
//! threads per step is small (100×50 partial sums and the 100×50 `dA1`). Every thread runs
//! the same loop in lockstep ([`crate::team`]):
//!
//! ```text
//! S  thread 0 samples the mini-batch (the same draws as the single-thread run)
//! A  each thread: its columns of the batch, and its partial product X[:, f]·W1[f, :]
//! B  each thread, its rows of the batch: A1 = relu(Σ partials + b1) (summed in thread
//!    order), layer 2 forward, softmax with loss, dA1 = dY·W2ᵀ
//! C  each thread, its slice of the parameters: W2 rows and b1 entries of its hidden units,
//!    b2 (thread 0), and W1[f, :] -= lr·X[:, f]ᵀ·dA1 fused into the product
//! E  at each evaluation, each thread counts the correct answers in its share of the images
//! ```
//!
//! The forward sum is split by features, so results differ in rounding from the
//! single-thread run, but a run is bit-reproducible for a given thread count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeronn::gemm::{self, MatMut, MatRef, PACK_LEN};
use zeronn::random::{self, seeded};
use zeronn::{Affine, Relu, Sgd, SoftmaxWithLoss, TwoLayerNet, TwoLayerShape};

use crate::mnist::Mnist;
use crate::sparse::{Compact, EvalScratch, EvalSet};
use crate::team::{PoisonOnPanic, Shared, SpinBarrier, part};
use crate::train::{EVAL_CHUNK, Epoch, Event, TrainConfig, TrainReport};

/// What member 0 holds besides the others: the generator and the event sink.
type Leader<'a> = Option<(&'a mut random::XorShiftRng, &'a mut dyn FnMut(Event<'_>))>;

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
    let partials = Shared::new(vec![0.0f32; n * batch * hidden]);
    let a1 = Shared::new(vec![0.0f32; batch * hidden]);
    let d1 = Shared::new(vec![0.0f32; batch * hidden]);
    let ys = Shared::new(vec![0.0f32; batch * classes]);
    let losses = Shared::new(vec![0.0f32; n]);
    let mask = Shared::new(vec![0usize; batch]);
    let next_mask = Shared::new(vec![0usize; batch]);
    let counts = Shared::new(vec![0usize; 2 * n]);
    let barrier = SpinBarrier::new(n);
    let first_error: Mutex<Option<zeronn::Error>> = Mutex::new(None);
    type Log = (Vec<f32>, Vec<Epoch>, Duration, Duration);
    let report: Mutex<Log> = Mutex::new((Vec::new(), Vec::new(), Duration::ZERO, Duration::ZERO));

    // One member of the team. Member 0 (the calling thread) also samples, runs phase B and
    // reports.
    let member = |me: usize, mut leader: Leader<'_>| {
        let _poison = PoisonOnPanic(&barrier);
        let fail = |e: zeronn::Error| {
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        };
        let (f0, f1) = part(inputs, n, me);
        let w = f1 - f0;
        let mut xb = vec![0.0f32; batch * w];
        // This member's active pixels of the batch, relative to f0 (rows of its block of W1).
        let (mut compact, mut rel) = (Compact::new(), Vec::new());
        let mut kw;
        let mut tb = vec![0u8; batch];
        let mut pack = vec![0.0f32; PACK_LEN];
        let mut ws = vec![0.0f32; shape.workspace_len(EVAL_CHUNK)];
        let mut next = vec![0usize; batch];
        let mut scratch = EvalScratch::default();
        let mut log: Log = (
            Vec::with_capacity(cfg.iters),
            Vec::new(),
            Duration::ZERO,
            Duration::ZERO,
        );
        for i in 0..cfg.iters {
            let start = Instant::now();
            // S: sample, one step ahead (as the single-thread run), prefetching the next batch.
            if let Some((rng, _)) = leader.as_mut() {
                if i == 0 {
                    random::choice(*rng, train_size, &mut next);
                }
                // SAFETY: only member 0 touches the masks in this phase.
                unsafe { mask.part_mut(0, batch) }.copy_from_slice(&next);
                if i + 1 < cfg.iters {
                    random::choice(*rng, train_size, &mut next);
                    // SAFETY: as above.
                    unsafe { next_mask.part_mut(0, batch) }.copy_from_slice(&next);
                }
            }
            barrier.wait();
            // A: this member's columns of the batch, and its partial product.
            if leader.is_some() && i + 1 < cfg.iters {
                // SAFETY: the next mask is written only in phase S.
                for &r in unsafe { next_mask.read() } {
                    data.train.prefetch_part(r, f0, f1);
                }
            }
            {
                // SAFETY: nobody writes the mask in this phase, nor rows f0..f1 of W1 (only
                // this member writes them, in phase C); each member writes only its own
                // partial sum.
                let (m, w1_part, p) = unsafe {
                    (
                        mask.read(),
                        &params.read()[f0 * hidden..f1 * hidden],
                        partials.part_mut(me * batch * hidden, (me + 1) * batch * hidden),
                    )
                };
                // Only this member's pixels that are non-zero somewhere in the batch, and the
                // matching rows of W1 (as the single-thread run does; see `sparse.rs`).
                compact.find_active_in(&data.train, m.iter().copied(), f0, f1);
                kw = compact.len();
                rel.clear();
                rel.extend(compact.active().iter().map(|&f| f - f0));
                xb.resize(batch * kw, 0.0);
                if compact.is_empty() {
                    xb.fill(0.0);
                }
                for (&r, row) in m.iter().zip(xb.chunks_exact_mut(kw.max(1))) {
                    compact.compact_row(&data.train, r, row);
                }
                // The labels apart: with no active pixel there are no rows of x to zip with.
                for (label, &r) in tb.iter_mut().zip(m) {
                    *label = data.train.t[r];
                }
                let r = (|| {
                    gemm::gemm(
                        backend,
                        1.0,
                        MatRef::row_major(&xb[..batch * kw], batch, kw)?,
                        MatRef::gather_rows(w1_part, &rel, hidden, hidden)?,
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
            // B: each member, its rows of the batch: A1 = relu(Σ partials + b1), layer 2
            // forward, softmax with loss, dA1 = dY·W2ᵀ (with W2 before its update).
            {
                let (r0, r1) = part(batch, n, me);
                // SAFETY: the partials and the parameters are only read in this phase; each
                // member writes only its rows of A1, Y and dA1, and its loss slot.
                let (parts, p, a, y, d, l) = unsafe {
                    (
                        partials.read(),
                        &params.read()[tail..],
                        a1.part_mut(r0 * hidden, r1 * hidden),
                        ys.part_mut(r0 * classes, r1 * classes),
                        d1.part_mut(r0 * hidden, r1 * hidden),
                        losses.part_mut(me, me + 1),
                    )
                };
                let (b1, rest) = p.split_at(hidden);
                let (w2, b2) = rest.split_at(hidden * classes);
                let r = (|| {
                    // Σ partials in member order, then the bias and the ReLU.
                    a.copy_from_slice(&parts[r0 * hidden..r1 * hidden]);
                    for other in parts.chunks_exact(batch * hidden).skip(1) {
                        for (x, &q) in a.iter_mut().zip(&other[r0 * hidden..r1 * hidden]) {
                            *x += q;
                        }
                    }
                    for row in a.chunks_exact_mut(hidden) {
                        for (x, &bj) in row.iter_mut().zip(b1) {
                            let v = *x + bj;
                            *x = if v <= 0.0 { 0.0 } else { v };
                        }
                    }
                    let rows = r1 - r0;
                    if rows == 0 {
                        return Ok(0.0);
                    }
                    let mut g = gemm::Context::new(backend, &mut pack);
                    Affine::new(hidden, classes).forward(&mut g, y, a, w2, b2)?;
                    let loss = SoftmaxWithLoss::new(classes).forward_backward_part_inplace(
                        y,
                        &tb[r0..r1],
                        batch,
                    )?;
                    g.gemm(
                        1.0,
                        MatRef::row_major(y, rows, classes)?,
                        MatRef::row_major(w2, hidden, classes)?.t(),
                        0.0,
                        MatMut::row_major(d, rows, hidden)?,
                    )?;
                    Relu::backward_inplace(d, a)?;
                    Ok::<f32, zeronn::Error>(loss)
                })();
                match r {
                    Ok(loss) => l[0] = loss,
                    Err(e) => fail(e),
                }
            }
            if leader.is_none() && i + 1 < cfg.iters {
                // Bring this member's columns of the next mini-batch into its cache.
                // SAFETY: the next mask is written only in phase S.
                for &r in unsafe { next_mask.read() } {
                    data.train.prefetch_part(r, f0, f1);
                }
            }
            barrier.wait();
            // C: the updates, each member its own slice: W2 rows and b1 entries of its hidden
            // units (sums over all rows), b2 (member 0), and W1[f0..f1, :] -= lr·X[:, f0..f1]ᵀ·dA1
            // fused into the product.
            if let Some((_, report)) = leader.as_mut() {
                // SAFETY: the loss slots are only read in this phase.
                let loss = unsafe { losses.read() }.iter().fold(0.0f32, |s, &l| s + l);
                log.0.push(loss);
                report(Event::Iter(i, loss));
            }
            {
                let (h0, h1) = part(hidden, n, me);
                let (w2_at, b1_at, b2_at) = (tail + hidden, tail, tail + hidden + hidden * classes);
                // SAFETY: A1, Y (now dY) and dA1 are only read in this phase; each member
                // writes only its hidden units' rows of W2 and entries of b1, member 0 b2, and
                // each its own rows f0..f1 of W1: disjoint parts.
                let (a, dy, d, w2_rows, b1_part, w1_part) = unsafe {
                    (
                        a1.read(),
                        ys.read(),
                        d1.read(),
                        params.part_mut(w2_at + h0 * classes, w2_at + h1 * classes),
                        params.part_mut(b1_at + h0, b1_at + h1),
                        params.part_mut(f0 * hidden, f1 * hidden),
                    )
                };
                let r = (|| {
                    let hw = h1 - h0;
                    if hw > 0 {
                        gemm::gemm(
                            backend,
                            -sgd.lr,
                            MatRef::new(&a[h0..], hw, batch, 1, hidden)?,
                            MatRef::row_major(dy, batch, classes)?,
                            1.0,
                            MatMut::row_major(w2_rows, hw, classes)?,
                            &mut pack,
                        )?;
                    }
                    for (q, bj) in b1_part.iter_mut().enumerate() {
                        let mut s = d[h0 + q];
                        for row in d.chunks_exact(hidden).skip(1) {
                            s += row[h0 + q];
                        }
                        *bj -= sgd.lr * s;
                    }
                    if me == 0 {
                        // SAFETY: b2 is member 0's alone in this phase.
                        let b2 = unsafe { params.part_mut(b2_at, plen) };
                        for (j, bj) in b2.iter_mut().enumerate() {
                            let mut s = dy[j];
                            for row in dy.chunks_exact(classes).skip(1) {
                                s += row[j];
                            }
                            *bj -= sgd.lr * s;
                        }
                    }
                    gemm::gemm(
                        backend,
                        -sgd.lr,
                        MatRef::row_major(&xb[..batch * kw], batch, kw)?.t(),
                        MatRef::row_major(d, batch, hidden)?,
                        1.0,
                        MatMut::gather_rows(w1_part, &rel, hidden, hidden)?,
                        &mut pack,
                    )
                })();
                if let Err(e) = r {
                    fail(e);
                }
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
                    // at least three more barriers.
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
