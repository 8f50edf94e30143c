//! Training on several threads by splitting each mini-batch's images among them: the nets
//! that do not start with an Affine (the conv nets), whose first layer cannot be split by
//! input features as `train_threads.rs` splits an MLP's.
//!
//! A step: each thread copies the parameters, takes its share of the batch's images, and runs
//! backprop on them as part of the whole batch (`Net::gradient_part`: loss and gradient are
//! means over the whole batch); the parts' gradients are added in thread order, weight decay
//! added once, and the optimizer updates the parameters. The sum's order depends on the thread
//! count only, so a run is bit-reproducible for a given count. Dropout masks are drawn per part
//! from the step's seed and the part's number. A BatchNorm normalises each part with the part's
//! own statistics (and keeps the running ones of the first part).

use std::ops::Range;
use std::time::{Duration, Instant};

use zeronn::optimizer::{AnyOptimizer, Optimizer};
use zeronn::random::{self, seeded};
use zeronn::{Layer, Net};

use crate::mnist::Mnist;
use crate::sparse::{EvalScratch, EvalSet};
use crate::team::Crew;
use crate::train::{
    EVAL_CHUNK, Epoch, Event, TrainConfig, TrainReport, dropout_seed, final_eval, new_net,
};

/// One thread's net and buffers.
struct Worker {
    net: Net<f32, Vec<f32>>,
    grads: Vec<f32>,
    ws: Vec<f32>,
    x: Vec<f32>,
    t: Vec<u8>,
    loss: zeronn::Result<f32>,
}

/// Rows `0..batch` in `parts` contiguous shares, the first ones a row longer.
fn shares(batch: usize, parts: usize) -> Vec<Range<usize>> {
    let (q, r) = (batch / parts, batch % parts);
    let mut at = 0;
    (0..parts)
        .map(|p| {
            let len = q + usize::from(p < r);
            at += len;
            at - len..at
        })
        .collect()
}

/// Accuracy of `net` on `set`, its chunks shared out to `threads` threads.
fn accuracy(net: &Net<f32, Vec<f32>>, set: &EvalSet, threads: usize) -> zeronn::Result<f64> {
    let spec = *net.spec();
    let parts = shares(set.chunks(), threads);
    let counts: Vec<zeronn::Result<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|r| {
                let r = r.clone();
                s.spawn(move || {
                    let mut ws = vec![0.0f32; spec.workspace_len(EVAL_CHUNK)];
                    let mut scratch = EvalScratch::default();
                    set.count_correct(net, (r.start, r.end), &mut scratch, &mut ws)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or(Err(zeronn::Error::Unsupported {
                    what: "a thread panicked",
                }))
            })
            .collect()
    });
    let mut correct = 0;
    for c in counts {
        correct += c?;
    }
    Ok(correct as f64 / set.len() as f64)
}

/// The step's update: the gradient = the workers' gradients (`parts`) added in worker order,
/// plus `λ·W` for the parameters in `decay`'s ranges when λ ≠ 0 (weight decay, added once to
/// the sum), then the optimizer's step, with the parameters (and the state) cut into one
/// share per worker, each share on its own thread. Every element gets the same arithmetic as the sum
/// and the update of the whole slice on one thread (both are element by element): the same
/// bits, in a fraction of the time (on one thread, the sum and Adam stream the parameters,
/// the gradients and both moments from memory, 7 MB for SimpleConvNet, while the other
/// threads wait). Each share goes in chunks of [`CHUNK`] elements: the chunk's sum is made
/// in a small buffer that stays in cache, the chunk updated, and its new parameters copied
/// into `copies` (the workers' parameters, kept equal to `params` for the next step), so
/// that memory sees only the reads of the parts, the parameters and the state and the writes
/// of the parameters, the state and the copies.
#[allow(clippy::too_many_arguments)]
fn sum_and_update(
    crew: &mut Crew<'_>,
    opt: &mut AnyOptimizer<f32>,
    parts: &[&[f32]],
    decay: (&[Range<usize>], f32),
    params: &mut [f32],
    state: &mut [f32],
    copies: Vec<&mut [f32]>,
) -> zeronn::Result<()> {
    let n = params.len();
    let lengths = [("optimizer state", opt.state_len(n), state.len())];
    let parts_len = parts.iter().map(|g| ("gradient part", n, g.len()));
    let copies_len = copies.iter().map(|c| ("parameter copy", n, c.len()));
    if let Some((buffer, expected, actual)) = lengths
        .into_iter()
        .chain(parts_len)
        .chain(copies_len)
        .find(|&(_, e, a)| e != a)
    {
        return Err(zeronn::Error::BufferLength {
            buffer,
            expected,
            actual,
        });
    }
    opt.begin_step();
    let opt = &*opt;
    let (mut s0, mut s1) = state.split_at_mut(if opt.planes() > 0 { n } else { 0 });
    let (mut p, mut c) = (params, copies);
    // Shares of whole cache lines.
    let cuts = shares(n.div_ceil(16), parts.len().max(1));
    let mut results = vec![Ok(()); cuts.len()];
    let mut jobs = Vec::with_capacity(cuts.len());
    {
        for (lines, result) in cuts.iter().zip(results.iter_mut()) {
            let r = (lines.start * 16).min(n)..(lines.end * 16).min(n);
            let len = r.len();
            let (pk, rest) = std::mem::take(&mut p).split_at_mut(len);
            p = rest;
            // A plane the optimizer does not have stays empty.
            let (la, lb) = (len.min(s0.len()), len.min(s1.len()));
            let (ak, rest) = std::mem::take(&mut s0).split_at_mut(la);
            s0 = rest;
            let (bk, rest) = std::mem::take(&mut s1).split_at_mut(lb);
            s1 = rest;
            let mut ck: Vec<&mut [f32]> = c
                .iter_mut()
                .map(|c| {
                    let (ck, rest) = std::mem::take(c).split_at_mut(len);
                    *c = rest;
                    ck
                })
                .collect();
            let share = move || {
                let mut sum = [0.0f32; CHUNK];
                for lo in (0..len).step_by(CHUNK) {
                    let hi = (lo + CHUNK).min(len);
                    // The chunk's elements among all the parameters.
                    let cr = r.start + lo..r.start + hi;
                    let gk = &mut sum[..hi - lo];
                    gk.fill(0.0);
                    for part in parts {
                        for (x, &y) in gk.iter_mut().zip(&part[cr.clone()]) {
                            *x += y;
                        }
                    }
                    let pk = &mut pk[lo..hi];
                    let (ranges, lambda) = decay;
                    if lambda != 0.0 {
                        for w in ranges {
                            let (from, to) = (w.start.max(cr.start), w.end.min(cr.end));
                            for i in (from..to).map(|i| i - cr.start) {
                                gk[i] += lambda * pk[i];
                            }
                        }
                    }
                    let (ak, bk) = (chunk(ak, lo, hi), chunk(bk, lo, hi));
                    if let Err(e) = opt.apply(pk, gk, ak, bk) {
                        *result = Err(e);
                        return;
                    }
                    // The chunk's new values to the workers' copies, while they are in cache.
                    for c in ck.iter_mut() {
                        c[lo..hi].copy_from_slice(pk);
                    }
                }
            };
            jobs.push(Some(share));
        }
    }
    // Each share on a thread of the crew (the first on this one).
    let mut calls: Vec<_> = jobs
        .iter_mut()
        .map(|job| move || job.take().map_or((), |mut share| share()))
        .collect();
    crew.run_all(&mut calls);
    drop(calls);
    drop(jobs);
    results.into_iter().collect()
}

/// Elements of a share updated at a time by [`sum_and_update`] (16 KB an array; the sum's
/// buffer is on the stack of the thread that runs the share).
const CHUNK: usize = 4096;

/// Elements `lo..hi` of an optimizer's state plane, or the empty plane it does not have.
fn chunk(plane: &mut [f32], lo: usize, hi: usize) -> &mut [f32] {
    if plane.is_empty() {
        plane
    } else {
        &mut plane[lo..hi]
    }
}

/// [`crate::train::train`] on `threads` threads, each step's images shared out among them.
pub fn train_data_parallel(
    cfg: &TrainConfig,
    data: &Mnist,
    threads: usize,
    mut on_event: impl FnMut(Event<'_>),
) -> zeronn::Result<TrainReport> {
    let threads = threads.clamp(1, cfg.batch_size.max(1));
    let train_size = data.train.len();
    let spec = cfg.spec(data.train.pixels, cfg.classes);
    let iter_per_epoch = cfg.iter_per_epoch(train_size);
    let mut rng = seeded(cfg.seed);
    // The same initial weights as on one thread.
    let mut net = new_net(cfg, spec, &mut rng)?;
    let lambda = net.weight_decay();
    let mut opt = AnyOptimizer::<f32>::new(cfg.optimizer, cfg.lr)?;
    let mut opt_state = vec![0.0f32; opt.state_len(spec.param_len())];
    let parts = shares(cfg.batch_size, threads);
    // The weights that weight decay acts on (the biases are left alone).
    let decayed: Vec<Range<usize>> = spec
        .tensors()
        .filter(|t| t.name.starts_with('W'))
        .map(|t| t.range())
        .collect();
    let dropout = spec
        .layers()
        .iter()
        .any(|l| matches!(l, Layer::Dropout { .. }));
    let mut workers = parts
        .iter()
        .map(|r| {
            // Weight decay is added once, to the sum.
            let net = Net::with_state(spec, net.params().to_vec(), net.state().to_vec())?
                .with_backend(cfg.backend)?;
            Ok(Worker {
                net,
                grads: vec![0.0f32; spec.param_len()],
                ws: vec![0.0f32; spec.workspace_len(r.len())],
                x: vec![0.0f32; r.len() * spec.input_size()],
                t: vec![0u8; r.len()],
                loss: Ok(0.0),
            })
        })
        .collect::<zeronn::Result<Vec<_>>>()?;
    let (eval_train, eval_test) = (
        EvalSet::new_on(&data.train, EVAL_CHUNK, threads),
        EvalSet::new_on(&data.test, EVAL_CHUNK, threads),
    );
    let mut mask = vec![0usize; cfg.batch_size];
    let (mut losses, mut epochs) = (Vec::with_capacity(cfg.losses_capacity()), Vec::new());
    let (mut train_time, mut eval_time) = (Duration::ZERO, Duration::ZERO);
    let mut diverged = None;
    // The helper threads, up for the whole run (a spawn a phase cost 0.3–0.7 ms here).
    let mut slots = Crew::slots(parts.len() - 1);
    std::thread::scope(|scope| -> zeronn::Result<()> {
        let mut crew = Crew::start(scope, &mut slots);
        for i in 0..cfg.iters {
            let start = Instant::now();
            // Sample a mini-batch.
            random::choice(&mut rng, train_size, &mut mask);
            // Gradient: each part on a thread of the crew (the first on this one). Each
            // worker's parameters are the net's: the last update copied them there.
            let state = net.state();
            let mut jobs: Vec<_> = workers
                .iter_mut()
                .zip(&parts)
                .enumerate()
                .map(|(k, (w, r))| {
                    let idx = &mask[r.clone()];
                    move || {
                        w.net.state_mut().copy_from_slice(state);
                        if dropout {
                            w.net.seed_dropout(dropout_seed(cfg.seed, i) ^ k as u64);
                        }
                        data.train.gather(idx, &mut w.x, &mut w.t);
                        w.loss = w.net.gradient_part(
                            &w.x,
                            &w.t,
                            cfg.batch_size,
                            &mut w.grads,
                            &mut w.ws,
                        );
                    }
                })
                .collect();
            crew.run_all(&mut jobs);
            drop(jobs);
            let mut loss = spec.weight_decay_term(net.params(), lambda);
            for w in &workers {
                loss += w.loss?;
            }
            // Sum, weight decay and update, each thread on its share of the parameters.
            let (grad_parts, copies): (Vec<&[f32]>, Vec<&mut [f32]>) = workers
                .iter_mut()
                .map(|w| (&w.grads[..], w.net.params_mut()))
                .unzip();
            sum_and_update(
                &mut crew,
                &mut opt,
                &grad_parts,
                (&decayed, lambda),
                net.params_mut(),
                &mut opt_state,
                copies,
            )?;
            net.state_mut().copy_from_slice(workers[0].net.state());
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
                let train_acc = accuracy(&net, &eval_train, threads)?;
                let test_acc = accuracy(&net, &eval_test, threads)?;
                eval_time += start.elapsed();
                epochs.push(Epoch {
                    iter: i,
                    train_acc,
                    test_acc,
                });
                on_event(Event::Epoch(&epochs[epochs.len() - 1]));
            }
        }
        Ok(())
    })?;
    let final_test_acc = match diverged {
        Some(_) => None,
        None => final_eval(cfg, &mut eval_time, || accuracy(&net, &eval_test, threads))?,
    };
    let (params, state) = net.into_parts();
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

    /// The update cut into shares on threads against the sum, the weight decay and the update
    /// of the whole slice on one thread: the same bits, for every optimizer, with and without
    /// weight decay, and 1 to 3 parts.
    #[test]
    fn the_shared_update_is_the_whole_update() {
        use zeronn::optimizer::OptimizerKind;
        // Three chunks in a share of one part, the last one short.
        let n = 2 * CHUNK + 1000;
        let val = |i: usize, k: usize| ((i * 7919 + k * 104_729) % 2001) as f32 / 1000.0 - 1.0;
        // Weight decay on three ranges, cut by the shares and by the chunks.
        let decayed = [100..400, CHUNK - 50..CHUNK + 900, n - 300..n];
        for (kind, lambda) in OptimizerKind::ALL
            .into_iter()
            .flat_map(|k| [(k, 0.0), (k, 0.1)])
        {
            for workers in 1..=3 {
                let grads: Vec<Vec<f32>> = (0..workers)
                    .map(|k| (0..n).map(|i| val(i, k + 1)).collect())
                    .collect();
                let parts: Vec<&[f32]> = grads.iter().map(|g| &g[..]).collect();
                let mut want_opt = AnyOptimizer::<f32>::new(kind, 0.01).unwrap();
                let mut got_opt = want_opt.clone();
                let mut want = (0..n).map(|i| val(i, 0)).collect::<Vec<_>>();
                let mut got = want.clone();
                let mut want_state = vec![0.0f32; want_opt.state_len(n)];
                let mut got_state = want_state.clone();
                let mut sum = vec![0.0f32; n];
                let mut copies = vec![vec![f32::NAN; n]; workers];
                let mut slots = Crew::slots(workers - 1);
                std::thread::scope(|scope| {
                    let mut crew = Crew::start(scope, &mut slots);
                    for _ in 0..3 {
                        sum.fill(0.0);
                        for g in &parts {
                            for (s, &x) in sum.iter_mut().zip(g.iter()) {
                                *s += x;
                            }
                        }
                        if lambda != 0.0 {
                            for r in &decayed {
                                for i in r.clone() {
                                    sum[i] += lambda * want[i];
                                }
                            }
                        }
                        want_opt.update(&mut want, &sum, &mut want_state).unwrap();
                        let decay = (&decayed[..], lambda);
                        sum_and_update(
                            &mut crew,
                            &mut got_opt,
                            &parts,
                            decay,
                            &mut got,
                            &mut got_state,
                            copies.iter_mut().map(|c| &mut c[..]).collect(),
                        )
                        .unwrap();
                        assert!(copies.iter().all(|c| *c == got), "the workers' copies");
                    }
                });
                // Bit for bit (-0 and +0 apart).
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{kind:?}, λ {lambda}, {workers} parts"
                );
                assert_eq!(
                    bits(&got_state),
                    bits(&want_state),
                    "{kind:?}, λ {lambda}, {workers} parts"
                );
            }
        }
    }

    #[test]
    fn shares_cover_the_batch_in_order() {
        assert_eq!(shares(100, 2), [0..50, 50..100]);
        assert_eq!(shares(10, 3), [0..4, 4..7, 7..10]);
        assert_eq!(shares(1, 1).len(), 1);
        assert_eq!(shares(1, 1)[0], 0..1);
    }
}
