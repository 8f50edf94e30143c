//! The general net (the book's MultiLayerNetExtend): BatchNorm and Dropout against naive twins
//! of the book's formulas, backprop against the numerical gradient (BatchNorm, Dropout with
//! the mask held fixed, weight decay), the fused SGD step against gradient + update, and the
//! first layer on active inputs against the dense one.

mod common;

use common::{labels, rng, uniform, uniform_f32};
use zeronn::layers::{BATCH_NORM_EPS, BatchNorm, Dropout};
use zeronn::net::{Activation, Layer, MlpOptions, Net, NetSpec};
use zeronn::random::seeded;
use zeronn::{Error, Sgd, WeightInit};

/// The book's `BatchNormalization.__forward` (training) and `__backward`, written out in f64
/// over row-major `n × d` arrays, the sums down each column in row order.
struct BookBatchNorm {
    xc: Vec<f64>,
    std: Vec<f64>,
    n: usize,
    d: usize,
}

impl BookBatchNorm {
    fn forward(x: &[f64], n: usize, d: usize, gamma: &[f64], beta: &[f64]) -> (Vec<f64>, Self) {
        let col = |j: usize| (0..n).map(move |i| i * d + j);
        let mu: Vec<f64> = (0..d)
            .map(|j| col(j).map(|k| x[k]).fold(0.0, |a, v| a + v) / n as f64)
            .collect();
        let xc: Vec<f64> = (0..n * d).map(|k| x[k] - mu[k % d]).collect();
        let var: Vec<f64> = (0..d)
            .map(|j| col(j).map(|k| xc[k] * xc[k]).fold(0.0, |a, v| a + v) / n as f64)
            .collect();
        let std: Vec<f64> = var.iter().map(|v| (v + BATCH_NORM_EPS).sqrt()).collect();
        let out = (0..n * d)
            .map(|k| gamma[k % d] * (xc[k] / std[k % d]) + beta[k % d])
            .collect();
        (out, BookBatchNorm { xc, std, n, d })
    }

    /// Returns (dx, dgamma, dbeta).
    fn backward(&self, dout: &[f64], gamma: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (n, d) = (self.n, self.d);
        let col = |j: usize| (0..n).map(move |i| i * d + j);
        let xn: Vec<f64> = (0..n * d).map(|k| self.xc[k] / self.std[k % d]).collect();
        let dbeta: Vec<f64> = (0..d)
            .map(|j| col(j).map(|k| dout[k]).fold(0.0, |a, v| a + v))
            .collect();
        let dgamma: Vec<f64> = (0..d)
            .map(|j| col(j).map(|k| xn[k] * dout[k]).fold(0.0, |a, v| a + v))
            .collect();
        let dxn: Vec<f64> = (0..n * d).map(|k| gamma[k % d] * dout[k]).collect();
        let mut dxc: Vec<f64> = (0..n * d).map(|k| dxn[k] / self.std[k % d]).collect();
        let dstd: Vec<f64> = (0..d)
            .map(|j| {
                -col(j)
                    .map(|k| dxn[k] * self.xc[k] / (self.std[j] * self.std[j]))
                    .fold(0.0, |a, v| a + v)
            })
            .collect();
        let dvar: Vec<f64> = (0..d).map(|j| 0.5 * dstd[j] / self.std[j]).collect();
        for k in 0..n * d {
            dxc[k] += (2.0 / n as f64) * self.xc[k] * dvar[k % d];
        }
        let dmu: Vec<f64> = (0..d)
            .map(|j| col(j).map(|k| dxc[k]).fold(0.0, |a, v| a + v))
            .collect();
        let dx = (0..n * d).map(|k| dxc[k] - dmu[k % d] / n as f64).collect();
        (dx, dgamma, dbeta)
    }
}

#[test]
fn batch_norm_is_the_books_formulas_bit_for_bit() {
    // 70 features: a full block of 64 columns and a part.
    let (n, d) = (9, 70);
    let mut g = rng(1);
    let x: Vec<f64> = uniform(&mut g, n * d)
        .iter()
        .map(|v| 3.0 * v + 1.0)
        .collect();
    let gamma: Vec<f64> = uniform(&mut g, d).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = uniform(&mut g, d);
    let dout = uniform(&mut g, n * d);

    let (want_out, book) = BookBatchNorm::forward(&x, n, d, &gamma, &beta);
    let (want_dx, want_dgamma, want_dbeta) = book.backward(&dout, &gamma);

    let bn = BatchNorm::new(d);
    let mut io = x.clone();
    let (mut xc, mut std) = (vec![0.0; n * d], vec![0.0; d]);
    let (mut rm, mut rv) = (vec![0.5; d], vec![2.0; d]);
    bn.forward_train_inplace(
        &mut io,
        &mut xc,
        &mut std,
        &gamma,
        &beta,
        Some((&mut rm, &mut rv)),
    )
    .unwrap();
    assert_eq!(io, want_out);
    assert_eq!(xc, book.xc);
    assert_eq!(std, book.std);
    // running = 0.9·running + 0.1·batch
    let mean0 = (0..n).map(|i| x[i * d]).fold(0.0, |a, v| a + v) / n as f64;
    assert_eq!(rm[0], 0.9 * 0.5 + (1.0 - 0.9) * mean0);
    let var0 = (0..n)
        .map(|i| xc[i * d] * xc[i * d])
        .fold(0.0, |a, v| a + v)
        / n as f64;
    assert_eq!(rv[0], 0.9 * 2.0 + (1.0 - 0.9) * var0);

    let mut dio = dout.clone();
    let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
    bn.backward_inplace(&mut dio, &xc, &std, &gamma, &mut dgamma, &mut dbeta)
        .unwrap();
    assert_eq!(dio, want_dx);
    assert_eq!(dgamma, want_dgamma);
    assert_eq!(dbeta, want_dbeta);

    // The SGD form: the same dx, and gamma, beta stepped by the same gradients.
    let mut dio2 = dout.clone();
    let (mut g2, mut b2) = (gamma.clone(), beta.clone());
    bn.backward_sgd_inplace(&mut dio2, &xc, &std, &mut g2, &mut b2, 0.25)
        .unwrap();
    assert_eq!(dio2, want_dx);
    for j in 0..d {
        assert_eq!(g2[j], gamma[j] - 0.25 * want_dgamma[j]);
        assert_eq!(b2[j], beta[j] - 0.25 * want_dbeta[j]);
    }

    // Inference: the running statistics.
    let mut io = x.clone();
    bn.forward_infer_inplace(&mut io, &gamma, &beta, &rm, &rv)
        .unwrap();
    for k in [0, 1, 69, 70, n * d - 1] {
        let j = k % d;
        let want = gamma[j] * ((x[k] - rm[j]) / (rv[j] + BATCH_NORM_EPS).sqrt()) + beta[j];
        assert_eq!(io[k], want, "element {k}");
    }
}

#[test]
fn batch_norm_checks_lengths_before_writing() {
    let bn = BatchNorm::new(3);
    let mut io = [1.0f32; 6];
    let (mut xc, mut std) = ([7.0f32; 6], [7.0f32; 3]);
    let r = bn.forward_train_inplace(&mut io, &mut xc, &mut std, &[1.0; 3], &[0.0; 2], None);
    assert!(matches!(r, Err(Error::BufferLength { buffer: "beta", .. })));
    assert_eq!((io, xc, std), ([1.0; 6], [7.0; 6], [7.0; 3]));
    assert!(matches!(
        bn.forward_train_inplace(&mut io[..5], &mut xc, &mut std, &[1.0; 3], &[0.0; 3], None),
        Err(Error::BufferLength { buffer: "x", .. })
    ));
}

#[test]
fn dropout_masks_repeat_from_a_seed_and_inference_scales() {
    let drop = Dropout::new(0.3);
    let x: Vec<f32> = (1..=1000).map(|v| v as f32).collect();
    let (mut a, mut b) = (x.clone(), x.clone());
    let (mut ma, mut mb) = (vec![0.0f32; 1000], vec![0.0f32; 1000]);
    drop.forward_train_inplace(&mut a, &mut ma, &mut seeded(9))
        .unwrap();
    drop.forward_train_inplace(&mut b, &mut mb, &mut seeded(9))
        .unwrap();
    assert_eq!(a, b);
    assert!(ma.iter().all(|&m| m == 0.0 || m == 1.0));
    let kept = ma.iter().filter(|&&m| m == 1.0).count();
    assert!(
        (650..=750).contains(&kept),
        "kept {kept} of 1000 at ratio 0.3"
    );
    for ((&o, &m), &v) in a.iter().zip(&ma).zip(&x) {
        assert_eq!(o, v * m);
    }
    // The same mask again, and backward through it.
    let mut c = x.clone();
    drop.forward_masked_inplace(&mut c, &ma).unwrap();
    assert_eq!(c, a);
    let mut d = vec![2.0f32; 1000];
    Dropout::backward_inplace(&mut d, &ma).unwrap();
    assert!(d.iter().zip(&ma).all(|(&v, &m)| v == 2.0 * m));
    // Inference: × (1 − ratio), the book's `x * (1.0 - self.dropout_ratio)`.
    let mut e = x.clone();
    drop.forward_infer_inplace(&mut e).unwrap();
    assert_eq!(e[9], 10.0 * (1.0 - 0.3f32 as f64) as f32);
    assert!(Dropout::new(1.0).forward_infer_inplace(&mut e).is_err());
}

/// A batch of `batch` MNIST-like rows of `inputs` values: mostly zeros, the rest in (0, 1].
fn sparse_images(seed: u64, batch: usize, inputs: usize) -> Vec<f64> {
    let mut g = rng(seed);
    uniform(&mut g, batch * inputs)
        .iter()
        .map(|&u| if u < 0.2 { 0.0 } else { (u - 0.2) / 0.8 })
        .collect()
}

/// Backprop and the numerical gradient (h = 1e-4, the book's) of `net` on a batch: the
/// mean absolute difference per tensor, by name.
fn gradcheck(net: &mut Net<f64, Vec<f64>>, x: &[f64], t: &[u8]) -> Vec<(&'static str, f64)> {
    let spec = *net.spec();
    let batch = t.len();
    let mut ws = vec![0.0; spec.workspace_len(batch)];
    let (mut back, mut num) = (vec![0.0; spec.param_len()], vec![0.0; spec.param_len()]);
    net.gradient(x, t, &mut back, &mut ws).unwrap();
    let before = net.params().to_vec();
    net.numerical_gradient(1e-4, x, t, &mut num, &mut ws)
        .unwrap();
    assert_eq!(net.params(), &before[..], "parameters restored exactly");
    spec.tensors()
        .map(|tensor| {
            let r = tensor.range();
            let d = back[r.clone()]
                .iter()
                .zip(&num[r])
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
                / tensor.len() as f64;
            (tensor.name, d)
        })
        .collect()
}

fn assert_within(diffs: &[(&str, f64)], tol: f64) {
    for &(name, d) in diffs {
        assert!(
            d <= tol,
            "{name}: mean |backprop − numerical| = {d:e} > {tol:e} ({diffs:?})"
        );
    }
}

/// The check: 784-100-100-10 with BatchNorm, He init, a batch of 10 (with a batch of
/// 1, BatchNorm makes most gradients zero).
#[test]
fn batch_norm_net_784_100_100_10_passes_the_books_gradient_check() {
    let options = MlpOptions {
        batch_norm: true,
        ..MlpOptions::PLAIN
    };
    let spec = NetSpec::mlp(784, &[100, 100], 10, options);
    let mut net = Net::with_state(
        spec,
        vec![0.0; spec.param_len()],
        vec![0.0; spec.state_len()],
    )
    .unwrap();
    net.init(&mut seeded(1), WeightInit::He);
    // Gamma and beta away from 1 and 0, as after some training.
    let mut g = rng(2);
    for name in ["gamma1", "beta1", "gamma2", "beta2"] {
        let r = spec.tensor(name).unwrap().range();
        let u = uniform(&mut g, r.len());
        for (p, v) in net.params_mut()[r].iter_mut().zip(u) {
            *p += 0.5 * v;
        }
    }
    let x = sparse_images(3, 10, 784);
    let t = labels(&mut rng(4), 10, 10);
    let diffs = gradcheck(&mut net, &x, &t);
    eprintln!("{diffs:?}");
    assert_eq!(diffs.len(), 10);
    assert_within(&diffs, 1e-6);
}

#[test]
fn dropout_with_the_mask_held_fixed_and_weight_decay_pass_the_gradient_check() {
    let options = MlpOptions {
        activation: Activation::Relu,
        batch_norm: true,
        dropout: Some(0.3),
    };
    let spec = NetSpec::mlp(20, &[12, 9, 7], 5, options);
    let mut net = Net::with_state(
        spec,
        vec![0.0; spec.param_len()],
        vec![0.0; spec.state_len()],
    )
    .unwrap()
    .with_weight_decay(0.1)
    .unwrap();
    net.init(&mut seeded(5), WeightInit::He);
    net.seed_dropout(11);
    let x = sparse_images(6, 8, 20);
    let t = labels(&mut rng(7), 8, 5);
    let diffs = gradcheck(&mut net, &x, &t);
    assert_within(&diffs, 1e-7);
}

#[test]
fn sigmoid_xavier_and_a_batch_norm_first_layer_pass_the_gradient_check() {
    let spec = NetSpec::new(&[
        Layer::BatchNorm { features: 6 },
        Layer::Affine {
            input: 6,
            output: 5,
        },
        Layer::Sigmoid,
        Layer::BatchNorm { features: 5 },
        Layer::Sigmoid,
        Layer::Dropout { ratio: 0.2 },
        Layer::Affine {
            input: 5,
            output: 4,
        },
        Layer::SoftmaxWithLoss,
    ]);
    let mut net = Net::with_state(
        spec,
        vec![0.0; spec.param_len()],
        vec![0.0; spec.state_len()],
    )
    .unwrap();
    net.init(&mut seeded(8), WeightInit::Xavier);
    let x = uniform(&mut rng(9), 5 * 6);
    let t = labels(&mut rng(10), 5, 4);
    let diffs = gradcheck(&mut net, &x, &t);
    let names: Vec<_> = diffs.iter().map(|d| d.0).collect();
    assert_eq!(
        names,
        ["gamma1", "beta1", "W1", "b1", "gamma2", "beta2", "W2", "b2"]
    );
    assert_within(&diffs, 1e-8);
}

/// A BatchNorm + Dropout net in f32, its parameters and state, after `init`.
fn bn_dropout_net(seed: u64) -> Net<f32, Vec<f32>> {
    let options = MlpOptions {
        activation: Activation::Relu,
        batch_norm: true,
        dropout: Some(0.25),
    };
    let spec = NetSpec::mlp(30, &[20, 16], 10, options);
    let mut net = Net::with_state(
        spec,
        vec![0.0; spec.param_len()],
        vec![0.0; spec.state_len()],
    )
    .unwrap();
    net.init(&mut seeded(seed), WeightInit::He);
    net
}

#[test]
fn the_fused_sgd_step_is_gradient_then_update_bit_for_bit() {
    let (mut fused, mut plain) = (bn_dropout_net(1), bn_dropout_net(1));
    fused.seed_dropout(3);
    plain.seed_dropout(3);
    let spec = *fused.spec();
    let mut ws = vec![0.0f32; spec.workspace_len(16)];
    let mut grads = vec![0.0f32; spec.param_len()];
    let sgd = Sgd::new(0.1f32);
    let mut g = rng(12);
    for _ in 0..5 {
        let x = uniform_f32(&mut g, 16 * 30);
        let t = labels(&mut g, 16, 10);
        let a = fused.train_step(&x, &t, &sgd, &mut ws).unwrap();
        let b = plain.gradient(&x, &t, &mut grads, &mut ws).unwrap();
        sgd.update(plain.params_mut(), &grads).unwrap();
        assert_eq!(a.to_bits(), b.to_bits());
    }
    assert_eq!(fused.params(), plain.params());
    assert_eq!(fused.state(), plain.state());
    // Weight decay is not fused: an error, before anything changes.
    let mut decayed = bn_dropout_net(1).with_weight_decay(0.1).unwrap();
    let before = decayed.params().to_vec();
    let x = uniform_f32(&mut g, 16 * 30);
    let t = labels(&mut g, 16, 10);
    assert!(matches!(
        decayed.train_step(&x, &t, &sgd, &mut ws),
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(decayed.params(), &before[..]);
}

#[test]
fn active_inputs_give_the_dense_gradient_and_predictions() {
    let (mut dense, mut sparse) = (bn_dropout_net(2), bn_dropout_net(2));
    dense.seed_dropout(4);
    sparse.seed_dropout(4);
    let spec = *dense.spec();
    let batch = 6;
    // Inputs 0, 5, 6, 29 and every third are active; the rest are zero in every row.
    let active: Vec<usize> = (0..30)
        .filter(|i| i % 3 == 0 || [5, 29].contains(i))
        .collect();
    let vals = uniform_f32(&mut rng(13), batch * active.len());
    let mut x = vec![0.0f32; batch * 30];
    for r in 0..batch {
        for (k, &a) in active.iter().enumerate() {
            x[r * 30 + a] = vals[r * active.len() + k];
        }
    }
    let t = labels(&mut rng(14), batch, 10);
    let mut ws = vec![0.0f32; spec.workspace_len(batch)];
    let (mut gd, mut gs) = (
        vec![0.0f32; spec.param_len()],
        vec![9.0f32; spec.param_len()],
    );
    let ld = dense.gradient(&x, &t, &mut gd, &mut ws).unwrap();
    let ls = sparse
        .gradient_active(&vals, &active, &t, &mut gs, &mut ws)
        .unwrap();
    assert!((ld - ls).abs() <= 1e-6 * ld.abs(), "{ld} vs {ls}");
    for (i, (a, b)) in gd.iter().zip(&gs).enumerate() {
        assert!((a - b).abs() <= 1e-6, "gradient {i}: {a} vs {b}");
    }
    // The rows of W1 for inactive inputs: exactly zero.
    let w1 = spec.tensor("W1").unwrap();
    for i in (0..30).filter(|i| !active.contains(i)) {
        assert!(gs[w1.offset + i * 20..][..20].iter().all(|&v| v == 0.0));
    }
    let pd = dense.predict(&x, &mut ws).unwrap().to_vec();
    let ps = sparse
        .predict_active(&vals, &active, batch, &mut ws)
        .unwrap()
        .to_vec();
    for (a, b) in pd.iter().zip(&ps) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
}

#[test]
fn inference_uses_the_running_statistics_so_rows_do_not_meet() {
    // The naive products: a row sums the same terms in the same order in any batch.
    let mut net = bn_dropout_net(3)
        .with_backend(zeronn::gemm::Backend::Naive)
        .unwrap();
    let spec = *net.spec();
    let mut ws = vec![0.0f32; spec.workspace_len(16)];
    let mut grads = vec![0.0f32; spec.param_len()];
    let mut g = rng(15);
    for _ in 0..3 {
        let x = uniform_f32(&mut g, 16 * 30);
        let t = labels(&mut g, 16, 10);
        net.gradient(&x, &t, &mut grads, &mut ws).unwrap();
    }
    assert!(
        net.state_tensor("running_var1")
            .unwrap()
            .iter()
            .all(|&v| v > 0.0)
    );
    let x = uniform_f32(&mut g, 4 * 30);
    let all = net.predict(&x, &mut ws).unwrap().to_vec();
    for r in 0..4 {
        let one = net.predict(&x[r * 30..(r + 1) * 30], &mut ws).unwrap();
        assert_eq!(one, &all[r * 10..(r + 1) * 10], "row {r}");
    }
}

#[test]
fn init_draws_each_layer_at_its_scale() {
    let spec = NetSpec::mlp(400, &[200, 100], 10, MlpOptions::PLAIN);
    let mut net = Net::new(spec, vec![0.0f64; spec.param_len()]).unwrap();
    for (init, stds) in [
        (
            WeightInit::He,
            [(2.0f64 / 400.0).sqrt(), 0.1, (2.0f64 / 100.0).sqrt()],
        ),
        (WeightInit::Xavier, [0.05, (1.0f64 / 200.0).sqrt(), 0.1]),
        (WeightInit::Std(0.01), [0.01; 3]),
    ] {
        net.init(&mut seeded(1), init);
        for (name, want) in ["W1", "W2", "W3"].iter().zip(stds) {
            let w = net.tensor(name).unwrap();
            let sd = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
            assert!(
                (sd / want - 1.0).abs() < 0.05,
                "{init} {name}: std {sd}, want {want}"
            );
        }
        for name in ["b1", "b2", "b3"] {
            assert!(net.tensor(name).unwrap().iter().all(|&v| v == 0.0));
        }
    }
    let bn = bn_dropout_net(1);
    assert!(bn.tensor("gamma2").unwrap().iter().all(|&v| v == 1.0));
    assert!(bn.tensor("beta2").unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn nets_refuse_bad_buffers_and_lists() {
    let spec = bn_dropout_net(1).spec().to_owned();
    assert!(matches!(
        Net::new(spec, vec![0.0f32; spec.param_len()]),
        Err(Error::BufferLength {
            buffer: "state",
            ..
        })
    ));
    let no_loss = NetSpec::new(&[Layer::Affine {
        input: 3,
        output: 2,
    }]);
    let mut net = Net::new(no_loss, vec![0.0f32; 8]).unwrap();
    let mut ws = vec![0.0f32; no_loss.workspace_len(1)];
    assert!(net.predict(&[1.0, 2.0, 3.0], &mut ws).is_ok());
    assert!(matches!(
        net.gradient(&[1.0, 2.0, 3.0], &[0u8], &mut [0.0; 8], &mut ws),
        Err(Error::Unsupported { .. })
    ));
    assert!(
        Net::new(no_loss, vec![0.0f32; 8])
            .unwrap()
            .with_weight_decay(-1.0)
            .is_err()
    );
}

#[test]
fn folding_batch_norm_keeps_the_inference_predictions() {
    let mut net = bn_dropout_net(4);
    let spec = *net.spec();
    let mut ws = vec![0.0f32; spec.workspace_len(16)];
    let mut grads = vec![0.0f32; spec.param_len()];
    let mut g = rng(16);
    for _ in 0..20 {
        let x = uniform_f32(&mut g, 16 * 30);
        let t = labels(&mut g, 16, 10);
        net.gradient(&x, &t, &mut grads, &mut ws).unwrap();
        Sgd::new(0.05f32).update(net.params_mut(), &grads).unwrap();
    }
    let folded = zeronn::net::folded_spec(&spec);
    assert!(
        !folded
            .layers()
            .iter()
            .any(|l| matches!(l, Layer::BatchNorm { .. }))
    );
    assert_eq!(folded.len(), spec.len() - 2);
    assert_eq!(folded.state_len(), 0);
    let mut params = vec![0.0f32; folded.param_len()];
    let got = zeronn::net::fold_batch_norm(&spec, net.params(), net.state(), &mut params, &mut [])
        .unwrap();
    assert_eq!(got, folded);
    let plain = Net::new(folded, params).unwrap();
    let x = uniform_f32(&mut g, 8 * 30);
    let a = net.predict(&x, &mut ws).unwrap().to_vec();
    let b = plain.predict(&x, &mut ws).unwrap();
    for (u, v) in a.iter().zip(b) {
        assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "{u} vs {v}");
    }
    // A BatchNorm after an activation cannot fold: it stays, with its state.
    let keep = NetSpec::new(&[
        Layer::Affine {
            input: 3,
            output: 2,
        },
        Layer::Relu,
        Layer::BatchNorm { features: 2 },
        Layer::SoftmaxWithLoss,
    ]);
    assert_eq!(zeronn::net::folded_spec(&keep), keep);
}

/// The first layer run outside the net, as the threads do: `z = x·W1 + b1` given to the split
/// step, `W1` updated from the `dz` it hands out. The same step as the whole net's.
#[test]
fn the_step_split_after_the_first_layer_is_the_whole_step() {
    use zeronn::Affine;
    use zeronn::gemm::{Backend, Context, MatMut, MatRef};
    use zeronn::net::{Layout, Update};
    let plain = NetSpec::mlp(30, &[12], 10, MlpOptions::PLAIN);
    let deep = bn_dropout_net(5).spec().to_owned();
    for (spec, lambda) in [(plain, 0.0f32), (deep, 0.0), (deep, 0.05)] {
        let layout = Layout::new(spec).unwrap();
        let (inputs, width) = (30, layout.first_output_width());
        let w1_len = layout.first_weight_len();
        assert_eq!(w1_len, inputs * width);
        let new = || {
            let mut n = Net::with_state(
                spec,
                vec![0.0f32; spec.param_len()],
                vec![0.0f32; spec.state_len()],
            )
            .unwrap()
            .with_backend(Backend::Portable)
            .unwrap()
            .with_weight_decay(lambda)
            .unwrap();
            n.init(&mut seeded(6), WeightInit::He);
            n.seed_dropout(8);
            n
        };
        let (mut whole, mut split) = (new(), new());
        let batch = 16;
        let mut g = rng(17);
        let mut ws = vec![0.0f32; spec.workspace_len(batch)];
        let mut ws2 = vec![0.0f32; spec.workspace_len(batch)];
        let (mut gw, mut gs) = (
            vec![0.0f32; spec.param_len()],
            vec![0.0f32; spec.param_len()],
        );
        let mut dz = vec![0.0f32; batch * width];
        let first = Affine::new(inputs, width);
        for step in 0..4 {
            let x = uniform_f32(&mut g, batch * inputs);
            let t = labels(&mut g, batch, 10);
            let mut rng_split = seeded(100 + step);
            whole.seed_dropout(100 + step);
            let sgd = Sgd::new(0.1f32);
            let fused = lambda == 0.0;
            let want = if fused {
                whole.train_step(&x, &t, &sgd, &mut ws).unwrap()
            } else {
                whole.gradient(&x, &t, &mut gw, &mut ws).unwrap()
            };
            // The split: z from the first layer, then the rest.
            let (params, state) = (split.params().to_vec(), split.state().to_vec());
            let (mut p, mut st) = (params.clone(), state.clone());
            let (w1, rest) = p.split_at_mut(w1_len);
            let mut z = vec![0.0f32; batch * width];
            let mut pack = vec![0.0f32; zeronn::gemm::PACK_LEN];
            let mut ctx = Context::new(Backend::Portable, &mut pack);
            first
                .forward(&mut ctx, &mut z, &x, w1, &rest[..width])
                .unwrap();
            let fill = |out: &mut [f32], relu: bool| {
                for (o, &v) in out.iter_mut().zip(&z) {
                    *o = if relu && v <= 0.0 { 0.0 } else { v };
                }
                Ok(())
            };
            let (w1g, rest_g) = gs.split_at_mut(w1_len);
            let upd = if fused {
                Update::Sgd(0.1)
            } else {
                Update::Grads(&mut *rest_g)
            };
            let (loss, after) = layout
                .step_after_first(
                    Backend::Portable,
                    rest,
                    &mut st,
                    upd,
                    lambda,
                    &mut rng_split,
                    fill,
                    &t,
                    &mut dz,
                    &mut ws2,
                )
                .unwrap();
            if fused {
                layout
                    .finish_after_first(
                        Backend::Portable,
                        rest,
                        Update::Sgd(0.1),
                        0.0,
                        &after,
                        &dz,
                        &mut ws2,
                    )
                    .unwrap();
                // W1 -= lr·xᵀ·dz, as the fused first layer does it.
                ctx.gemm(
                    -0.1,
                    MatRef::row_major(&x, batch, inputs).unwrap().t(),
                    MatRef::row_major(&dz, batch, width).unwrap(),
                    1.0,
                    MatMut::row_major(w1, inputs, width).unwrap(),
                )
                .unwrap();
                assert_eq!(loss.to_bits(), want.to_bits(), "{spec:?}");
                split.params_mut().copy_from_slice(&p);
                split.state_mut().copy_from_slice(&st);
                assert_eq!(split.params(), whole.params(), "step {step}");
                assert_eq!(split.state(), whole.state(), "step {step}");
            } else {
                layout
                    .finish_after_first(
                        Backend::Portable,
                        rest,
                        Update::Grads(rest_g),
                        lambda,
                        &after,
                        &dz,
                        &mut ws2,
                    )
                    .unwrap();
                let mut db1 = vec![0.0f32; width];
                first
                    .backward(&mut ctx, None, w1g, &mut db1, &dz, &x, w1)
                    .unwrap();
                for (d, &w) in w1g.iter_mut().zip(w1.iter()) {
                    *d += lambda * w;
                }
                assert_eq!(db1, gs[w1_len..w1_len + width]);
                let decay: f32 = ["W1", "W2", "W3"]
                    .iter()
                    .map(|n| {
                        0.5 * lambda * split.tensor(n).unwrap().iter().map(|v| v * v).sum::<f32>()
                    })
                    .sum();
                assert!(
                    (loss + decay - want).abs() <= 1e-5 * want.abs(),
                    "{loss} + {decay} vs {want}"
                );
                for (i, (a, b)) in gs.iter().zip(&gw).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                        "gradient {i}: {a} vs {b}"
                    );
                }
                assert_eq!(st, whole.state());
                // Both take the same SGD step, so the next steps start equal.
                sgd.update(whole.params_mut(), &gw).unwrap();
                split.params_mut().copy_from_slice(whole.params());
                split.state_mut().copy_from_slice(whole.state());
            }
        }
    }
}

/// The optimizer applied layer by layer during backward is gradient, then update: every
/// optimizer, the dense and the sparse first layer, with BatchNorm, Dropout and weight decay.
#[test]
fn an_optimizer_applied_during_backward_is_gradient_then_update() {
    use zeronn::optimizer::{AnyOptimizer, Optimizer, OptimizerKind};
    let batch = 12;
    // Inputs 0..40 of which every third and 7, 8 are active (runs of active and inactive rows
    // longer and shorter than the zero rows handed out at a time).
    let active: Vec<usize> = (0..40)
        .filter(|i| i % 3 == 0 || [7, 8].contains(i))
        .collect();
    let mut g = rng(30);
    let vals = uniform_f32(&mut g, batch * active.len());
    let mut x = vec![0.0f32; batch * 40];
    for r in 0..batch {
        for (k, &a) in active.iter().enumerate() {
            x[r * 40 + a] = vals[r * active.len() + k];
        }
    }
    let t = labels(&mut g, batch, 10);
    for kind in OptimizerKind::ALL {
        for (lambda, sparse) in [(0.0f32, false), (0.01, false), (0.0, true), (0.02, true)] {
            let options = MlpOptions {
                activation: Activation::Relu,
                batch_norm: true,
                dropout: Some(0.1),
            };
            let spec = NetSpec::mlp(40, &[16, 12], 10, options);
            let new = || {
                let mut n = Net::with_state(
                    spec,
                    vec![0.0f32; spec.param_len()],
                    vec![0.0f32; spec.state_len()],
                )
                .unwrap()
                .with_weight_decay(lambda)
                .unwrap();
                n.init(&mut seeded(9), WeightInit::He);
                n.seed_dropout(4);
                n
            };
            let (mut a, mut b) = (new(), new());
            let mut oa = AnyOptimizer::<f32>::new(kind, 0.01).unwrap();
            let mut ob = oa.clone();
            let mut sa = vec![0.0f32; oa.state_len(spec.param_len())];
            let mut sb = sa.clone();
            let mut scratch = vec![0.0f32; spec.apply_scratch_len()];
            let mut grads = vec![0.0f32; spec.param_len()];
            let mut ws = vec![0.0f32; spec.workspace_len(batch)];
            for _ in 0..3 {
                let (la, lb) = if sparse {
                    let la = a
                        .step_with(
                            &vals,
                            Some(&active),
                            &t,
                            &mut oa,
                            &mut sa,
                            &mut scratch,
                            &mut ws,
                        )
                        .unwrap();
                    let lb = b
                        .gradient_active(&vals, &active, &t, &mut grads, &mut ws)
                        .unwrap();
                    (la, lb)
                } else {
                    let la = a
                        .step_with(&x, None, &t, &mut oa, &mut sa, &mut scratch, &mut ws)
                        .unwrap();
                    (la, b.gradient(&x, &t, &mut grads, &mut ws).unwrap())
                };
                ob.update(b.params_mut(), &grads, &mut sb).unwrap();
                assert_eq!(
                    la.to_bits(),
                    lb.to_bits(),
                    "{} λ {lambda} sparse {sparse}",
                    kind.name()
                );
            }
            assert_eq!(
                a.params(),
                b.params(),
                "{} λ {lambda} sparse {sparse}",
                kind.name()
            );
            assert_eq!(sa, sb);
            assert_eq!(a.state(), b.state());
        }
    }
    // Short scratch: refused before the optimizer's step begins.
    let spec = NetSpec::mlp(40, &[16], 10, MlpOptions::PLAIN);
    let mut n = Net::new(spec, vec![0.0f32; spec.param_len()]).unwrap();
    let mut o = AnyOptimizer::<f32>::new(OptimizerKind::Adam, 0.01).unwrap();
    let mut st = vec![0.0f32; o.state_len(spec.param_len())];
    let mut ws = vec![0.0f32; spec.workspace_len(batch)];
    let r = n.step_with(&x, None, &t, &mut o, &mut st, &mut [0.0; 10], &mut ws);
    assert!(matches!(
        r,
        Err(Error::BufferLength {
            buffer: "scratch",
            ..
        })
    ));
    let AnyOptimizer::Adam(adam) = &o else {
        unreachable!()
    };
    assert_eq!(adam.iter, 0);
}
