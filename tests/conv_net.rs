//! Convolutional nets (the book's chapters 7 and 8) on the one engine: backprop against the
//! numerical gradient in f64, the optimizers applied during backward and the fused SGD step
//! against gradient + update, the net's forward pass against the layers' naive twins, and
//! shapes that do not fit named by layer.

mod common;

use common::{labels, rng, uniform, uniform_f32};
use zeronn::layers::{Convolution, Dims, Pooling};
use zeronn::net::{Layer, Net, NetSpec};
use zeronn::random::seeded;
use zeronn::{Error, Sgd, WeightInit};

/// The small CNN: conv 3×3 (pad 1) + ReLU + pool 2×2 + Affine + SoftmaxWithLoss, on
/// 2 × 6 × 6 inputs.
const SMALL: NetSpec = NetSpec::new(&[
    Layer::Convolution(Convolution::new(Dims::new(2, 6, 6), 3, 3).pad(1)),
    Layer::Relu,
    Layer::Pooling {
        h: 2,
        w: 2,
        stride: 2,
    },
    Layer::Affine {
        input: 3 * 3 * 3,
        output: 4,
    },
    Layer::SoftmaxWithLoss,
]);

/// The shape of the book's DeepConvNet, small: two convolutions (stride 2, then pad 1) before
/// a pool, Affine, ReLU, Dropout, Affine, Dropout.
const DEEP: NetSpec = NetSpec::new(&[
    Layer::Convolution(Convolution::new(Dims::new(1, 9, 9), 3, 3).stride(2).pad(1)),
    Layer::Relu,
    Layer::Convolution(Convolution::new(Dims::new(3, 5, 5), 4, 3).pad(1)),
    Layer::Relu,
    Layer::Pooling {
        h: 2,
        w: 2,
        stride: 2,
    },
    Layer::Affine {
        input: 4 * 2 * 2,
        output: 6,
    },
    Layer::Relu,
    Layer::Dropout { ratio: 0.3 },
    Layer::Affine {
        input: 6,
        output: 5,
    },
    Layer::Dropout { ratio: 0.3 },
    Layer::SoftmaxWithLoss,
]);

fn net_f64(spec: NetSpec, seed: u64, init: WeightInit) -> Net<f64, Vec<f64>> {
    let mut net = Net::with_state(
        spec,
        vec![0.0; spec.param_len()],
        vec![0.0; spec.state_len()],
    )
    .unwrap();
    net.init(&mut seeded(seed), init);
    net
}

/// Backprop and the numerical gradient (h = 1e-4) of `net` on a batch: the mean absolute
/// difference per tensor, by name.
fn gradcheck(net: &mut Net<f64, Vec<f64>>, x: &[f64], t: &[u8]) -> Vec<(&'static str, f64)> {
    let spec = *net.spec();
    let mut ws = vec![0.0; spec.workspace_len(t.len())];
    let (mut back, mut num) = (vec![0.0; spec.param_len()], vec![0.0; spec.param_len()]);
    net.gradient(x, t, &mut back, &mut ws).unwrap();
    let before = net.params().to_vec();
    net.numerical_gradient(1e-4, x, t, &mut num, &mut ws)
        .unwrap();
    assert_eq!(net.params(), &before[..], "parameters restored exactly");
    // The check must see real gradients, not zeros on both sides.
    assert!(
        back.iter().any(|&g| g.abs() > 1e-3),
        "gradient all but zero"
    );
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

#[test]
fn a_small_cnn_passes_the_books_gradient_check() {
    assert!(SMALL.validate().is_ok());
    let names: Vec<_> = SMALL.tensors().map(|t| (t.name, t.rows, t.cols)).collect();
    assert_eq!(
        names,
        [("W1", 3, 18), ("b1", 1, 3), ("W2", 27, 4), ("b2", 1, 4)]
    );
    let mut net = net_f64(SMALL, 1, WeightInit::He);
    let batch = 3;
    let x = uniform(&mut rng(2), batch * 72);
    let t = labels(&mut rng(3), batch, 4);
    let diffs = gradcheck(&mut net, &x, &t);
    eprintln!("{diffs:?}");
    assert_eq!(diffs.len(), 4);
    assert_within(&diffs, 1e-6);
}

#[test]
fn a_deep_cnn_with_stride_padding_dropout_and_weight_decay_passes_the_gradient_check() {
    assert!(DEEP.validate().is_ok());
    let mut net = net_f64(DEEP, 4, WeightInit::He)
        .with_weight_decay(0.05)
        .unwrap();
    net.seed_dropout(7);
    let batch = 4;
    let x = uniform(&mut rng(5), batch * 81);
    let t = labels(&mut rng(6), batch, 5);
    let diffs = gradcheck(&mut net, &x, &t);
    eprintln!("{diffs:?}");
    assert_eq!(diffs.len(), 8);
    assert_within(&diffs, 1e-6);
}

#[test]
fn a_convolution_with_batch_norm_passes_the_gradient_check() {
    let spec = NetSpec::new(&[
        Layer::Convolution(Convolution::new(Dims::new(1, 5, 5), 2, 2).kernel(2, 3)),
        Layer::BatchNorm {
            features: 2 * 4 * 3,
        },
        Layer::Relu,
        Layer::Pooling {
            h: 2,
            w: 1,
            stride: 1,
        },
        Layer::Affine {
            input: 2 * 3 * 3,
            output: 3,
        },
        Layer::SoftmaxWithLoss,
    ]);
    assert!(spec.validate().is_ok());
    let mut net = net_f64(spec, 8, WeightInit::Xavier);
    let x = uniform(&mut rng(9), 5 * 25);
    let t = labels(&mut rng(10), 5, 3);
    assert_within(&gradcheck(&mut net, &x, &t), 1e-6);
}

/// A first Convolution whose dW goes through patches, under its ReLU and Pooling: its
/// gradient is made a sample at a time from the Pooling's (`Convolution::backward_streamed`),
/// the ReLU's mask from the Pooling's output. Then a Dropout or a BatchNorm over that output
/// (in place, or in a slot of its own so the output stays for the mask).
#[test]
fn a_first_convolution_fed_a_sample_at_a_time_passes_the_gradient_check() {
    let conv = Convolution::new(Dims::new(1, 9, 9), 3, 3).stride(2).pad(1);
    let pool = Layer::Pooling {
        h: 2,
        w: 2,
        stride: 2,
    };
    let after = [
        Layer::Dropout { ratio: 0.3 },
        Layer::BatchNorm { features: 12 },
    ];
    for (k, &layer) in after.iter().enumerate() {
        let spec = NetSpec::new(&[
            Layer::Convolution(conv),
            Layer::Relu,
            pool,
            layer,
            Layer::Affine {
                input: 12,
                output: 4,
            },
            Layer::SoftmaxWithLoss,
        ]);
        assert!(spec.validate().is_ok());
        assert!(conv.streams_dw(spec.col_len()), "the streamed path");
        let mut net = net_f64(spec, 11 + k as u64, WeightInit::He);
        net.seed_dropout(12);
        let x = uniform(&mut rng(13), 4 * 81);
        let t = labels(&mut rng(14), 4, 4);
        let diffs = gradcheck(&mut net, &x, &t);
        eprintln!("{layer:?}: {diffs:?}");
        assert_within(&diffs, 1e-6);
    }
}

/// The scores of the net equal the layers' naive twins run one after the other.
#[test]
fn predict_is_the_naive_layers_in_turn() {
    let spec = SMALL;
    let mut net = Net::new(spec, vec![0.0f64; spec.param_len()]).unwrap();
    net.init(&mut seeded(11), WeightInit::Std(0.3));
    let batch = 2;
    let x = uniform(&mut rng(12), batch * 72);
    let mut ws = vec![0.0; spec.min_predict_workspace_len(batch)];
    let got = net.predict(&x, &mut ws).unwrap().to_vec();

    let Layer::Convolution(conv) = spec.layers()[0] else {
        unreachable!()
    };
    let p = net.params();
    let (w1, b1) = (
        &p[spec.tensor("W1").unwrap().range()],
        &p[spec.tensor("b1").unwrap().range()],
    );
    let mut a = vec![0.0; batch * conv.output_dims().len()];
    conv.forward_naive(&mut a, &x, w1, b1).unwrap();
    a.iter_mut().for_each(|v| *v = v.max(0.0));
    let pool = Pooling::new(conv.output_dims(), 2, 2, 2);
    let mut z = vec![0.0; batch * pool.output_dims().len()];
    pool.forward(&mut z, &a, None).unwrap();
    let (w2, b2) = (
        &p[spec.tensor("W2").unwrap().range()],
        &p[spec.tensor("b2").unwrap().range()],
    );
    let mut want = vec![0.0; batch * 4];
    for r in 0..batch {
        for j in 0..4 {
            let mut s = b2[j];
            for k in 0..27 {
                s += z[r * 27 + k] * w2[k * 4 + j];
            }
            want[r * 4 + j] = s;
        }
    }
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}

/// Every optimizer applied layer by layer during backward, and the fused SGD step, are
/// gradient then update, bit for bit, on a conv net.
#[test]
fn optimizers_during_backward_and_the_fused_step_are_gradient_then_update() {
    use zeronn::optimizer::{AnyOptimizer, Optimizer, OptimizerKind};
    let spec = DEEP;
    let batch = 6;
    let mut g = rng(20);
    let x = uniform_f32(&mut g, batch * 81);
    let t = labels(&mut g, batch, 5);
    let new = |lambda: f32| {
        let mut n = Net::new(spec, vec![0.0f32; spec.param_len()])
            .unwrap()
            .with_weight_decay(lambda)
            .unwrap();
        n.init(&mut seeded(21), WeightInit::He);
        n.seed_dropout(22);
        n
    };
    let mut ws = vec![0.0f32; spec.workspace_len(batch)];
    let mut grads = vec![0.0f32; spec.param_len()];
    for kind in OptimizerKind::ALL {
        for lambda in [0.0f32, 0.01] {
            let (mut a, mut b) = (new(lambda), new(lambda));
            let mut oa = AnyOptimizer::<f32>::new(kind, 0.01).unwrap();
            let mut ob = oa.clone();
            let mut sa = vec![0.0f32; oa.state_len(spec.param_len())];
            let mut sb = sa.clone();
            let mut scratch = vec![0.0f32; spec.apply_scratch_len()];
            for _ in 0..3 {
                let la = a
                    .step_with(&x, None, &t, &mut oa, &mut sa, &mut scratch, &mut ws)
                    .unwrap();
                let lb = b.gradient(&x, &t, &mut grads, &mut ws).unwrap();
                ob.update(b.params_mut(), &grads, &mut sb).unwrap();
                assert_eq!(la.to_bits(), lb.to_bits(), "{}", kind.name());
            }
            assert_eq!(a.params(), b.params(), "{} λ {lambda}", kind.name());
        }
    }
    // The fused SGD step.
    let (mut a, mut b) = (new(0.0), new(0.0));
    let sgd = Sgd::new(0.1f32);
    for _ in 0..3 {
        let la = a.train_step(&x, &t, &sgd, &mut ws).unwrap();
        let lb = b.gradient(&x, &t, &mut grads, &mut ws).unwrap();
        sgd.update(b.params_mut(), &grads).unwrap();
        assert_eq!(la.to_bits(), lb.to_bits());
    }
    assert_eq!(a.params(), b.params());
}

/// A step of a small CNN lowers the loss on its batch (the net learns, not only computes).
#[test]
fn training_steps_lower_the_loss() {
    let spec = SMALL;
    let mut net = Net::new(spec, vec![0.0f32; spec.param_len()]).unwrap();
    net.init(&mut seeded(30), WeightInit::He);
    let x = uniform_f32(&mut rng(31), 8 * 72);
    let t = labels(&mut rng(32), 8, 4);
    let mut ws = vec![0.0f32; spec.workspace_len(8)];
    let sgd = Sgd::new(0.1f32);
    let first = net.train_step(&x, &t, &sgd, &mut ws).unwrap();
    let mut last = first;
    for _ in 0..50 {
        last = net.train_step(&x, &t, &sgd, &mut ws).unwrap();
    }
    assert!(last < 0.5 * first, "{first} -> {last}");
}

#[test]
fn shapes_that_do_not_fit_are_named_by_layer() {
    let wrong_affine = NetSpec::new(&[
        Layer::Convolution(Convolution::new(Dims::new(1, 28, 28), 30, 5)),
        Layer::Relu,
        Layer::Pooling {
            h: 2,
            w: 2,
            stride: 2,
        },
        Layer::Affine {
            input: 30 * 24 * 24,
            output: 100,
        },
    ]);
    assert_eq!(
        wrong_affine.validate(),
        Err(Error::LayerShape {
            layer: 3,
            kind: "Affine",
            what: "input",
            expected: 30 * 12 * 12,
            actual: 30 * 24 * 24
        })
    );
    let big_kernel = NetSpec::new(&[Layer::Convolution(Convolution::new(
        Dims::new(1, 4, 4),
        2,
        5,
    ))]);
    assert!(matches!(
        big_kernel.validate(),
        Err(Error::LayerShape {
            layer: 0,
            kind: "Convolution",
            ..
        })
    ));
    let big_window = NetSpec::new(&[
        Layer::Affine {
            input: 4,
            output: 4,
        },
        Layer::Pooling {
            h: 2,
            w: 2,
            stride: 2,
        },
    ]);
    assert!(matches!(
        big_window.validate(),
        Err(Error::LayerShape {
            layer: 1,
            kind: "Pooling",
            ..
        })
    ));
    let pool_first = NetSpec::new(&[Layer::Pooling {
        h: 2,
        w: 2,
        stride: 2,
    }]);
    assert!(pool_first.validate().is_err());
    // A workspace too small is an error, not a panic.
    let net = Net::new(SMALL, vec![0.0f32; SMALL.param_len()]).unwrap();
    let mut ws = vec![0.0f32; SMALL.min_predict_workspace_len(2) - 1];
    assert!(net.predict(&[0.0; 144], &mut ws).is_err());
    let mut ws = vec![0.0f32; SMALL.min_predict_workspace_len(2)];
    assert!(net.predict(&[0.0; 144], &mut ws).is_ok());
}

/// Folding for the device: a conv net's Convolutions keep their parameters, the BatchNorm after
/// its Affine folds away, the one after a Convolution stays; the predictions are the net's.
#[test]
fn folding_a_conv_net_keeps_its_convolutions_and_predictions() {
    let spec = NetSpec::new(&[
        Layer::Convolution(Convolution::new(Dims::new(1, 6, 6), 2, 3)),
        Layer::BatchNorm {
            features: 2 * 4 * 4,
        },
        Layer::Relu,
        Layer::Pooling {
            h: 2,
            w: 2,
            stride: 2,
        },
        Layer::Affine {
            input: 2 * 2 * 2,
            output: 5,
        },
        Layer::BatchNorm { features: 5 },
        Layer::Relu,
        Layer::Affine {
            input: 5,
            output: 3,
        },
        Layer::SoftmaxWithLoss,
    ]);
    let mut net = Net::with_state(
        spec,
        vec![0.0f32; spec.param_len()],
        vec![0.0f32; spec.state_len()],
    )
    .unwrap();
    net.init(&mut seeded(3), WeightInit::He);
    let mut g = rng(4);
    let mut ws = vec![0.0f32; spec.workspace_len(8)];
    let mut grads = vec![0.0f32; spec.param_len()];
    for _ in 0..5 {
        let x = uniform_f32(&mut g, 8 * 36);
        let t = labels(&mut g, 8, 3);
        net.gradient(&x, &t, &mut grads, &mut ws).unwrap();
        Sgd::new(0.1f32).update(net.params_mut(), &grads).unwrap();
    }
    let folded = zeronn::net::folded_spec(&spec);
    assert_eq!(folded.len(), spec.len() - 1);
    let mut params = vec![0.0f32; folded.param_len()];
    let mut state = vec![0.0f32; folded.state_len()];
    zeronn::net::fold_batch_norm(&spec, net.params(), net.state(), &mut params, &mut state)
        .unwrap();
    let plain = Net::with_state(folded, params, state).unwrap();
    assert_eq!(plain.tensor("W1"), net.tensor("W1"));
    let x = uniform_f32(&mut g, 4 * 36);
    let a = net.predict(&x, &mut ws).unwrap().to_vec();
    let b = plain.predict(&x, &mut ws).unwrap();
    for (u, v) in a.iter().zip(b) {
        assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "{u} vs {v}");
    }
}
