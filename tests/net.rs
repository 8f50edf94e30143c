//! TwoLayerNet: backprop against the numerical gradient, errors before any write, and
//! learning on a small problem.

mod common;

use common::{labels, rng, uniform, uniform_f32};
use zeronn::gemm::Backend;
use zeronn::random::seeded;
use zeronn::{Activation, Error, Sgd, TwoLayerNet, TwoLayerShape};

fn gradcheck_f64(shape: TwoLayerShape, backend: Backend) -> f64 {
    let mut g = rng(20);
    let batch = 4;
    let x = uniform(&mut g, batch * shape.input_size);
    let t = labels(&mut g, batch, shape.output_size);
    let mut net = TwoLayerNet::new(shape, vec![0.0f64; shape.param_len()])
        .unwrap()
        .with_backend(backend)
        .unwrap();
    // Large weights so the hidden pre-activations are O(1), away from ReLU's kink.
    net.init_params(&mut seeded(5), 1.0);
    let mut ws = vec![0.0; shape.workspace_len(batch)];
    let mut back = vec![0.0; shape.param_len()];
    let mut num = vec![0.0; shape.param_len()];
    net.gradient(&x, &t, &mut back, &mut ws).unwrap();
    let before = net.params().to_vec();
    net.numerical_gradient(1e-5, &x, &t, &mut num, &mut ws)
        .unwrap();
    assert_eq!(
        net.params(),
        &before[..],
        "numerical_gradient restores every parameter"
    );
    common::max_abs_diff(&back, &num)
}

#[test]
fn relu_net_backprop_matches_numerical_gradient_in_f64() {
    let d = gradcheck_f64(TwoLayerShape::new(6, 5, 3), Backend::Auto);
    assert!(d < 1e-8, "max |backprop - numerical| = {d}");
}

#[test]
fn sigmoid_net_backprop_matches_numerical_gradient_in_f64() {
    let d = gradcheck_f64(
        TwoLayerShape::new(6, 5, 3).with_activation(Activation::Sigmoid),
        Backend::Naive,
    );
    assert!(d < 1e-8, "max |backprop - numerical| = {d}");
}

#[test]
fn f32_backprop_matches_numerical_gradient_with_a_larger_step() {
    let shape = TwoLayerShape::new(8, 6, 4).with_activation(Activation::Sigmoid);
    let mut g = rng(21);
    let x = uniform_f32(&mut g, 3 * 8);
    let t = labels(&mut g, 3, 4);
    let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(6), 1.0);
    let mut ws = vec![0.0; shape.workspace_len(3)];
    let (mut back, mut num) = (vec![0.0; shape.param_len()], vec![0.0; shape.param_len()]);
    net.gradient(&x, &t, &mut back, &mut ws).unwrap();
    net.numerical_gradient(1e-2, &x, &t, &mut num, &mut ws)
        .unwrap();
    let diff: f32 = back
        .iter()
        .zip(&num)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        .sqrt();
    let norm: f32 = back
        .iter()
        .zip(&num)
        .map(|(a, b)| a * a + b * b)
        .sum::<f32>()
        .sqrt();
    assert!(diff / norm < 1e-3, "relative error {}", diff / norm);
}

#[test]
fn errors_come_before_any_write() {
    let shape = TwoLayerShape::new(4, 3, 2);
    let mut net = TwoLayerNet::new(shape, vec![0.5f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(1), 0.1);
    let params = net.params().to_vec();
    let mut grads = vec![7.0f32; shape.param_len()];
    let mut ws = vec![7.0f32; shape.min_workspace_len(2)];
    let x = [0.1f32; 8];

    // Batch over capacity.
    let r = net.gradient(&[0.1; 12], &[0u8, 1, 0], &mut grads, &mut ws);
    assert_eq!(
        r,
        Err(Error::BatchTooLarge {
            batch: 3,
            capacity: 2
        })
    );
    // Label out of range.
    let r = net.gradient(&x, &[0u8, 2], &mut grads, &mut ws);
    assert_eq!(
        r,
        Err(Error::LabelOutOfRange {
            index: 1,
            label: 2,
            classes: 2
        })
    );
    // x not a whole number of rows, or not matching t.
    assert!(matches!(
        net.gradient(&x[..7], &[0u8], &mut grads, &mut ws),
        Err(Error::BufferLength { buffer: "x", .. })
    ));
    assert!(matches!(
        net.gradient(&x, &[0u8], &mut grads, &mut ws),
        Err(Error::BufferLength { buffer: "t", .. })
    ));
    assert_eq!(
        net.gradient(&[], &[0u8; 0], &mut grads, &mut ws),
        Err(Error::EmptyBatch)
    );
    // Wrong gradient buffer.
    assert!(matches!(
        net.gradient(&x, &[0u8, 1], &mut grads[1..], &mut ws),
        Err(Error::BufferLength {
            buffer: "grads",
            ..
        })
    ));
    assert!(grads.iter().all(|&g| g == 7.0));
    assert!(ws.iter().all(|&w| w == 7.0));
    assert_eq!(net.params(), &params[..]);

    // Wrong parameter length and zero sizes are refused up front.
    assert!(matches!(
        TwoLayerNet::new(shape, vec![0.0f32; 3]),
        Err(Error::BufferLength {
            buffer: "params",
            ..
        })
    ));
    assert_eq!(
        TwoLayerNet::new(TwoLayerShape::new(4, 0, 2), vec![0.0f32; 2]).err(),
        Some(Error::ZeroSize {
            what: "Affine output size"
        })
    );
    // Predict needs less workspace than gradient.
    let mut small = vec![0.0f32; shape.min_predict_workspace_len(2)];
    assert!(net.predict(&x, &mut small).is_ok());
    assert!(matches!(
        net.gradient(&x, &[0u8, 1], &mut grads, &mut small),
        Err(Error::BatchTooLarge { .. })
    ));
}

#[test]
fn one_hidden_unit_or_one_input_still_gets_random_weights() {
    for shape in [TwoLayerShape::new(1, 4, 2), TwoLayerShape::new(4, 1, 2)] {
        let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
        net.init_params(&mut seeded(1), 0.1);
        for name in ["W1", "W2"] {
            assert!(
                net.tensor(name).unwrap().iter().all(|&w| w != 0.0),
                "{shape:?} {name}"
            );
        }
        for name in ["b1", "b2"] {
            assert!(
                net.tensor(name).unwrap().iter().all(|&b| b == 0.0),
                "{shape:?} {name}"
            );
        }
    }
}

#[test]
fn learns_a_separable_problem() {
    // Points uniform in [-1, 1)², class = sign of x0 + x1: linearly separable.
    let shape = TwoLayerShape::new(2, 8, 2);
    let mut g = rng(30);
    let n = 200;
    let x = uniform_f32(&mut g, 2 * n);
    let t: Vec<u8> = x.chunks(2).map(|p| (p[0] + p[1] > 0.0) as u8).collect();
    let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(2), 0.5);
    let mut grads = vec![0.0; shape.param_len()];
    let mut ws = vec![0.0; shape.workspace_len(n)];
    let first = net.loss(&x, &t, &mut ws).unwrap();
    let sgd = Sgd::new(0.5f32);
    for _ in 0..300 {
        net.gradient(&x, &t, &mut grads, &mut ws).unwrap();
        sgd.update(net.params_mut(), &grads).unwrap();
    }
    let last = net.loss(&x, &t, &mut ws).unwrap();
    let acc = net.accuracy(&x, &t, &mut ws).unwrap();
    assert!(last < first / 4.0, "loss {first} -> {last}");
    assert!(acc > 0.97, "accuracy {acc}");
}

#[test]
fn backends_agree_on_the_gradient() {
    let shape = TwoLayerShape::new(300, 20, 10);
    let mut g = rng(40);
    let x = uniform_f32(&mut g, 7 * 300);
    let t = labels(&mut g, 7, 10);
    let mut grads = Vec::new();
    // The reference first, then every other backend this machine has.
    let backends: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|&b| b != Backend::Auto && b.is_available())
        .collect();
    assert_eq!(backends[..2], [Backend::Naive, Backend::Portable]);
    for &backend in &backends {
        let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()])
            .unwrap()
            .with_backend(backend)
            .unwrap();
        net.init_params(&mut seeded(3), 0.1);
        let mut gr = vec![0.0; shape.param_len()];
        net.gradient(&x, &t, &mut gr, &mut vec![0.0; shape.workspace_len(7)])
            .unwrap();
        grads.push(gr);
    }
    for (other, backend) in grads[1..].iter().zip(&backends[1..]) {
        assert_eq!(other.len(), grads[0].len());
        for (a, b) in grads[0].iter().zip(other) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "{backend:?}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn same_seed_same_parameters() {
    let shape = TwoLayerShape::new(10, 5, 3);
    let mut a = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    let mut b = TwoLayerNet::new(shape, vec![1.0f32; shape.param_len()]).unwrap();
    a.init_params(&mut seeded(9), 0.01);
    b.init_params(&mut seeded(9), 0.01);
    assert_eq!(a.params(), b.params());
    assert!(a.tensor("b1").unwrap().iter().all(|&v| v == 0.0));
    assert!(a.tensor("W1").unwrap().iter().any(|&v| v != 0.0));
    assert_eq!(a.tensor("W2").unwrap().len(), 15);
    assert!(a.tensor("W3").is_none());
}

#[test]
fn predict_returns_the_scores() {
    let shape = TwoLayerShape::new(2, 2, 2);
    // W1 = I, b1 = 0, W2 = [[1, 0], [0, 2]], b2 = [0, 1].
    let params = [
        1.0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 1.0,
    ];
    let net = TwoLayerNet::new(shape, &params[..]).unwrap();
    let mut ws = [0.0f32; 8];
    let y = net.predict(&[3.0, -1.0, 1.0, 2.0], &mut ws).unwrap();
    assert_eq!(y, &[3.0, 1.0, 1.0, 5.0]);
    assert_eq!(
        net.count_correct(&[3.0, -1.0, 1.0, 2.0], &[0u8, 0], &mut ws)
            .unwrap(),
        1
    );
}

fn heap_free_backends() -> Vec<Backend> {
    [
        Backend::Naive,
        Backend::Portable,
        Backend::Avx2,
        Backend::Avx512,
    ]
    .into_iter()
    .filter(|b| b.is_available())
    .collect()
}

#[test]
fn fused_train_step_is_bit_identical_to_gradient_then_update() {
    for activation in [Activation::Relu, Activation::Sigmoid] {
        let shape = TwoLayerShape::new(784, 50, 10).with_activation(activation);
        let mut g = rng(50);
        let x = uniform_f32(&mut g, 100 * 784);
        let t = labels(&mut g, 100, 10);
        for backend in heap_free_backends() {
            let new_net = || {
                let mut n = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()])
                    .unwrap()
                    .with_backend(backend)
                    .unwrap();
                n.init_params(&mut seeded(8), 0.05);
                n
            };
            let (mut fused, mut split) = (new_net(), new_net());
            let sgd = Sgd::new(0.1f32);
            let mut ws = vec![0.0; shape.workspace_len(100)];
            let mut grads = vec![0.0; shape.param_len()];
            for step in 0..3 {
                let a = fused.train_step(&x, &t, &sgd, &mut ws).unwrap();
                let b = split.gradient(&x, &t, &mut grads, &mut ws).unwrap();
                sgd.update(split.params_mut(), &grads).unwrap();
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{backend} {activation:?} step {step}: loss"
                );
                let same = fused
                    .params()
                    .iter()
                    .zip(split.params())
                    .all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "{backend} {activation:?} step {step}: parameters differ"
                );
            }
        }
    }
}

#[test]
fn fused_train_step_refuses_batches_it_cannot_fuse_exactly() {
    let shape = TwoLayerShape::new(4, 3, 2);
    let n = zeronn::layers::FUSED_MAX_BATCH + 1;
    let mut net = TwoLayerNet::new(shape, vec![0.5f32; shape.param_len()]).unwrap();
    let mut ws = vec![0.0f32; shape.workspace_len(n)];
    let r = net.train_step(&vec![0.1; 4 * n], &vec![0u8; n], &Sgd::new(0.1), &mut ws);
    assert_eq!(
        r,
        Err(Error::FusedBatchTooLarge {
            batch: n,
            max: n - 1
        })
    );
    assert!(net.params().iter().all(|&p| p == 0.5));
    // The message says the limit is the fused step's (the workspace was big enough), and what
    // to do instead.
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains(&format!("at most {}", n - 1)) && msg.contains(&format!("not {n}")),
        "{msg}"
    );
    assert!(
        msg.contains("gradient then update") && !msg.contains("workspace capacity"),
        "{msg}"
    );
}

#[test]
fn errors_name_the_argument_the_limit_and_the_remedy() {
    let shape = TwoLayerShape::new(784, 3, 2);
    let net = TwoLayerNet::new(shape, vec![0.5f32; shape.param_len()]).unwrap();
    let mut ws = vec![0.0f32; shape.workspace_len(4)];
    // An x shorter than one sample: not "empty", but how long a sample is.
    let e = net.predict(&[0.1f32; 30], &mut ws).unwrap_err();
    assert_eq!(
        e,
        Error::ShortInput {
            per_sample: 784,
            actual: 30
        }
    );
    let msg = e.to_string();
    assert!(msg.contains("30 values") && msg.contains("784"), "{msg}");
    // An empty x.
    assert_eq!(net.predict(&[], &mut ws).unwrap_err(), Error::EmptyBatch);
    // A batch over the workspace's capacity: both numbers.
    let mut small = vec![0.0f32; shape.min_predict_workspace_len(4)];
    let msg = net
        .predict(&[0.1f32; 784 * 5], &mut small)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("batch of 5") && msg.contains("capacity of 4"),
        "{msg}"
    );
    // A model in a misaligned buffer (as bytes read at run time may be): the remedy for that.
    let spec = zeronn::NetSpec::new(&[zeronn::Layer::Affine {
        input: 1,
        output: 1,
    }]);
    let len = zeronn::model::encoded_len(&spec);
    let mut model = vec![0u8; len];
    zeronn::model::write(&spec, &[1.0, 0.0], &[], &mut model).unwrap();
    // Words are 4-aligned: their bytes from offset 1 are not.
    let mut words = vec![0u32; len / 4 + 2];
    let all: &mut [u8] = bytemuck_bytes(&mut words);
    all[1..1 + len].copy_from_slice(&model);
    let msg = zeronn::Model::from_bytes(&all[1..1 + len])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("run time") && msg.contains("include_model!"),
        "{msg}"
    );
}

/// The bytes of `words`.
fn bytemuck_bytes(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: `words` is `4 × len` initialised bytes, u8 has alignment 1, and the slice
    // borrows `words` mutably for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}

#[test]
fn gradients_of_parts_add_up_to_the_whole_batch() {
    let shape = TwoLayerShape::new(30, 8, 4);
    let mut g = rng(60);
    let x = uniform_f32(&mut g, 10 * 30);
    let t = labels(&mut g, 10, 4);
    let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(4), 0.3);
    let mut ws = vec![0.0; shape.workspace_len(10)];
    let mut whole = vec![0.0; shape.param_len()];
    let loss = net.gradient(&x, &t, &mut whole, &mut ws).unwrap();
    let (mut g1, mut g2) = (vec![0.0; shape.param_len()], vec![0.0; shape.param_len()]);
    let l1 = net
        .gradient_part(&x[..4 * 30], &t[..4], 10, &mut g1, &mut ws)
        .unwrap();
    let l2 = net
        .gradient_part(&x[4 * 30..], &t[4..], 10, &mut g2, &mut ws)
        .unwrap();
    assert!((l1 + l2 - loss).abs() < 1e-6, "{l1} + {l2} vs {loss}");
    for ((a, b), w) in g1.iter().zip(&g2).zip(&whole) {
        assert!((a + b - w).abs() < 1e-6, "{a} + {b} vs {w}");
    }
    assert!(net.gradient_part(&x, &t, 9, &mut g1, &mut ws).is_err());
}
