//! Each layer on small hand-worked values, then its backward against `numerical_gradient`.

mod common;

use common::{max_abs_diff, rng, uniform, uniform_f32};
use zeronn::gemm::{Backend, Context};
use zeronn::{Affine, Error, Relu, Sigmoid, SoftmaxWithLoss, numerical_gradient};

fn ctx<T: zeronn::Float>(pack: &mut [T]) -> Context<'_, T> {
    Context::new(Backend::Auto, pack)
}

#[test]
fn affine_forward_by_hand() {
    let layer = Affine::new(2, 3);
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let w = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
    let b = [0.5, -1.0, 2.0];
    let mut out = [0.0f32; 6];
    layer
        .forward(&mut ctx(&mut []), &mut out, &x, &w, &b)
        .unwrap();
    assert_eq!(out, [5.5, 1.0, 1.0, 11.5, 3.0, -1.0]);
}

#[test]
fn affine_backward_by_hand() {
    let layer = Affine::new(2, 3);
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let w = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
    let dout = [1.0, 0.0, 1.0, 0.0, 1.0, -1.0];
    let (mut dx, mut dw, mut db) = ([9.0f32; 4], [9.0f32; 6], [9.0f32; 3]);
    layer
        .backward(
            &mut ctx(&mut []),
            Some(&mut dx),
            &mut dw,
            &mut db,
            &dout,
            &x,
            &w,
        )
        .unwrap();
    assert_eq!(dx, [0.0, 2.0, 1.0, 1.0]);
    assert_eq!(dw, [1.0, 3.0, -2.0, 2.0, 4.0, -2.0]);
    assert_eq!(db, [1.0, 1.0, 0.0]);
}

/// The input gradient alone, then the update without it, is the fused backward with it, bit
/// for bit; wrong sizes are refused.
#[test]
fn affine_backward_dx_then_the_update_is_backward_sgd() {
    let mut r = rng(12);
    let (batch, k, n) = (9, 37, 10);
    let layer = Affine::new(k, n);
    let x = uniform_f32(&mut r, batch * k);
    let dout = uniform_f32(&mut r, batch * n);
    let (w0, b0) = (uniform_f32(&mut r, k * n), uniform_f32(&mut r, n));
    let (mut w, mut b, mut dx) = (w0.clone(), b0.clone(), vec![0.0f32; batch * k]);
    layer
        .backward_sgd(
            &mut ctx(&mut []),
            Some(&mut dx),
            &dout,
            &x,
            &mut w,
            &mut b,
            0.1,
        )
        .unwrap();
    let (mut w2, mut b2, mut dx2) = (w0.clone(), b0.clone(), vec![0.0f32; batch * k]);
    layer
        .backward_dx(&mut ctx(&mut []), &mut dx2, &dout, &w2)
        .unwrap();
    layer
        .backward_sgd(&mut ctx(&mut []), None, &dout, &x, &mut w2, &mut b2, 0.1)
        .unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&dx), bits(&dx2));
    assert_eq!(bits(&w), bits(&w2));
    assert_eq!(bits(&b), bits(&b2));
    assert_ne!(w, w0, "the update changed nothing");
    assert!(
        layer
            .backward_dx(&mut ctx(&mut []), &mut dx2[1..], &dout, &w0)
            .is_err()
    );
    assert!(
        layer
            .backward_dx(&mut ctx(&mut []), &mut dx2, &dout[1..], &w0)
            .is_err()
    );
    assert!(
        layer
            .backward_dx(&mut ctx(&mut []), &mut dx2, &dout, &w0[1..])
            .is_err()
    );
    assert!(
        layer
            .backward_dx(&mut ctx(&mut []), &mut [], &[], &w0)
            .is_err()
    );
}

/// The bias update alone is `b - lr·db` with the backward pass's `db`, bit for bit, and
/// refuses a `b` or a `dout` that does not fit the layer.
#[test]
fn affine_sgd_bias_is_the_backward_bias_update() {
    let mut r = rng(11);
    let (batch, k, n) = (7, 5, 70);
    let layer = Affine::new(k, n);
    let x = uniform_f32(&mut r, batch * k);
    let w = uniform_f32(&mut r, k * n);
    let dout = uniform_f32(&mut r, batch * n);
    let (mut dw, mut db) = (vec![0.0f32; k * n], vec![0.0f32; n]);
    layer
        .backward(&mut ctx(&mut []), None, &mut dw, &mut db, &dout, &x, &w)
        .unwrap();
    let b0 = uniform_f32(&mut r, n);
    let mut b = b0.clone();
    layer.sgd_bias(&dout, &mut b, 0.1).unwrap();
    for j in 0..n {
        assert_eq!(b[j].to_bits(), (b0[j] - 0.1 * db[j]).to_bits(), "b[{j}]");
    }
    let before = b.clone();
    assert!(layer.sgd_bias(&dout[1..], &mut b, 0.1).is_err());
    assert!(layer.sgd_bias(&dout, &mut b[1..], 0.1).is_err());
    assert_eq!(b, before);
}

#[test]
fn affine_rejects_wrong_lengths_and_writes_nothing() {
    let layer = Affine::new(2, 3);
    let mut out = [7.0f32; 6];
    let r = layer.forward(&mut ctx(&mut []), &mut out, &[1.0; 4], &[0.0; 5], &[0.0; 3]);
    assert!(matches!(
        r,
        Err(Error::BufferLength {
            buffer: "W",
            expected: 6,
            actual: 5
        })
    ));
    let r = layer.forward(&mut ctx(&mut []), &mut out, &[1.0; 3], &[0.0; 6], &[0.0; 3]);
    assert!(matches!(r, Err(Error::BufferLength { buffer: "x", .. })));
    let r = layer.forward(&mut ctx(&mut []), &mut out, &[], &[0.0; 6], &[0.0; 3]);
    assert_eq!(r, Err(Error::EmptyBatch));
    assert_eq!(out, [7.0; 6]);
    let (mut dw, mut db) = ([7.0f32; 6], [7.0f32; 3]);
    let r = layer.backward(
        &mut ctx(&mut []),
        None,
        &mut dw,
        &mut db,
        &[0.0; 5],
        &[1.0; 4],
        &[0.0; 6],
    );
    assert!(matches!(r, Err(Error::BufferLength { buffer: "dout", .. })));
    assert_eq!((dw, db), ([7.0; 6], [7.0; 3]));
}

#[test]
fn huge_sizes_are_an_error_not_an_overflow() {
    let layer = Affine::new(4, 1 << 62);
    let r = layer.forward(
        &mut ctx(&mut []),
        &mut [0.0f32; 4],
        &[0.0; 4],
        &[0.0; 4],
        &[0.0; 2],
    );
    assert_eq!(r, Err(Error::SizeOverflow));
    let layer = Affine::new(1, 1 << 63);
    let r = layer.forward(
        &mut ctx(&mut []),
        &mut [0.0f32; 4],
        &[0.0; 2],
        &[0.0; 4],
        &[0.0; 2],
    );
    assert!(r.is_err());
    let s = SoftmaxWithLoss::new(1 << 63);
    assert_eq!(
        s.forward_inplace::<f32, u8>(&mut [], &[0, 0]),
        Err(Error::SizeOverflow)
    );
    assert_eq!(
        zeronn::functions::one_hot::<f32, u8>(&[], 0, &mut []),
        Err(Error::ZeroSize { what: "classes" })
    );
}

#[test]
fn relu_passes_nan_through() {
    let mut x = [f32::NAN, -1.0];
    Relu::forward_inplace(&mut x);
    assert!(x[0].is_nan());
    assert_eq!(x[1], 0.0);
}

#[test]
fn relu_by_hand() {
    let x = [-1.0f32, 0.0, 2.0];
    let mut out = [9.0; 3];
    Relu::forward(&mut out, &x).unwrap();
    assert_eq!(out, [0.0, 0.0, 2.0]);
    let mut dx = [9.0; 3];
    Relu::backward(&mut dx, &[5.0, 6.0, 7.0], &out).unwrap();
    assert_eq!(
        dx,
        [0.0, 0.0, 7.0],
        "gradient 0 at x == 0, as the book's Relu"
    );
    let mut inplace = [-1.0f32, 0.0, 2.0];
    Relu::forward_inplace(&mut inplace);
    assert_eq!(inplace, out);
    let mut d = [5.0f32, 6.0, 7.0];
    Relu::backward_inplace(&mut d, &out).unwrap();
    assert_eq!(d, dx);
    assert!(Relu::forward(&mut [0.0f32; 2], &x).is_err());
}

#[test]
fn sigmoid_by_hand() {
    let mut y = [0.0f64; 3];
    Sigmoid::forward(&mut y, &[0.0, 2.0f64.ln(), -(2.0f64.ln())]).unwrap();
    assert!((y[0] - 0.5).abs() < 1e-15);
    assert!((y[1] - 2.0 / 3.0).abs() < 1e-15);
    assert!((y[2] - 1.0 / 3.0).abs() < 1e-15);
    let mut dx = [0.0; 3];
    Sigmoid::backward(&mut dx, &[1.0, 3.0, 1.0], &y).unwrap();
    assert!((dx[0] - 0.25).abs() < 1e-15);
    assert!((dx[1] - 3.0 * (2.0 / 9.0)).abs() < 1e-15);
    assert!((dx[2] - 2.0 / 9.0).abs() < 1e-15);
}

#[test]
fn softmax_with_loss_by_hand() {
    let layer = SoftmaxWithLoss::new(2);
    // Row 0: equal scores, label 1: y = [1/2, 1/2], loss ln 2.
    // Row 1: scores [0, ln 3], label 0: y = [1/4, 3/4], loss ln 4.
    let x = [0.0f64, 0.0, 0.0, 3.0f64.ln()];
    let t = [1u8, 0];
    let mut y = [0.0; 4];
    let loss = layer.forward(&mut y, &x, &t).unwrap();
    assert!((loss - (2.0f64.ln() + 4.0f64.ln()) / 2.0).abs() < 1e-15);
    for (a, b) in y.iter().zip([0.5, 0.5, 0.25, 0.75]) {
        assert!((a - b).abs() < 1e-15);
    }
    let mut dx = [0.0; 4];
    layer.backward(&mut dx, &y, &t).unwrap();
    for (a, b) in dx.iter().zip([0.25, -0.25, -0.375, 0.375]) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
}

#[test]
fn softmax_with_loss_rejects_bad_labels_before_writing() {
    let layer = SoftmaxWithLoss::new(3);
    let mut y = [5.0f32; 6];
    let r = layer.forward(&mut y, &[0.0; 6], &[1u8, 3]);
    assert_eq!(
        r,
        Err(Error::LabelOutOfRange {
            index: 1,
            label: 3,
            classes: 3
        })
    );
    assert_eq!(y, [5.0; 6]);
    assert_eq!(
        layer.forward::<f32, u8>(&mut [], &[], &[]),
        Err(Error::EmptyBatch)
    );
}

#[test]
fn softmax_with_loss_survives_huge_scores() {
    let layer = SoftmaxWithLoss::new(3);
    let mut x = [1e30f32, -1e30, 0.0];
    let loss = layer.forward_inplace(&mut x, &[0u8]).unwrap();
    assert_eq!(loss, 0.0);
    assert!(x.iter().all(|v| v.is_finite()));
}

/// Σ out ⊙ r for a fixed random r: its gradient with respect to `out` is `r`, so a layer's
/// backward with `dout = r` must match the numerical gradient of this scalar.
fn weighted_sum(out: &[f64], r: &[f64]) -> f64 {
    out.iter().zip(r).map(|(a, b)| a * b).sum()
}

const H: f64 = 1e-5;

#[test]
fn affine_backward_matches_numerical_gradient() {
    let mut g = rng(10);
    let layer = Affine::new(5, 4);
    let batch = 3;
    let mut x = uniform(&mut g, batch * 5);
    let mut w = uniform(&mut g, 20);
    let mut b = uniform(&mut g, 4);
    let r = uniform(&mut g, batch * 4);
    let (mut dx, mut dw, mut db) = (vec![0.0; batch * 5], vec![0.0; 20], vec![0.0; 4]);
    layer
        .backward(
            &mut ctx(&mut []),
            Some(&mut dx),
            &mut dw,
            &mut db,
            &r,
            &x,
            &w,
        )
        .unwrap();

    let mut out = vec![0.0; batch * 4];
    let mut num = vec![0.0; batch * 5];
    let (w0, b0) = (w.clone(), b.clone());
    numerical_gradient(H, &mut x, &mut num, |x| {
        layer.forward(&mut ctx(&mut []), &mut out, x, &w0, &b0)?;
        Ok(weighted_sum(&out, &r))
    })
    .unwrap();
    assert!(max_abs_diff(&dx, &num) < 1e-9, "dx");

    let x0 = x.clone();
    let mut num = vec![0.0; 20];
    numerical_gradient(H, &mut w, &mut num, |w| {
        layer.forward(&mut ctx(&mut []), &mut out, &x0, w, &b0)?;
        Ok(weighted_sum(&out, &r))
    })
    .unwrap();
    assert!(max_abs_diff(&dw, &num) < 1e-9, "dW");

    let mut num = vec![0.0; 4];
    numerical_gradient(H, &mut b, &mut num, |b| {
        layer.forward(&mut ctx(&mut []), &mut out, &x0, &w0, b)?;
        Ok(weighted_sum(&out, &r))
    })
    .unwrap();
    assert!(max_abs_diff(&db, &num) < 1e-9, "db");
}

#[test]
fn relu_backward_matches_numerical_gradient() {
    let mut g = rng(11);
    // Keep inputs away from the kink at 0, where the derivative does not exist.
    let mut x: Vec<f64> = uniform(&mut g, 40)
        .into_iter()
        .map(|v| if v.abs() < 0.05 { v + 0.1 } else { v })
        .collect();
    let r = uniform(&mut g, 40);
    let mut out = vec![0.0; 40];
    Relu::forward(&mut out, &x).unwrap();
    let mut dx = vec![0.0; 40];
    Relu::backward(&mut dx, &r, &out).unwrap();
    let mut num = vec![0.0; 40];
    numerical_gradient(H, &mut x, &mut num, |x| {
        Relu::forward(&mut out, x)?;
        Ok(weighted_sum(&out, &r))
    })
    .unwrap();
    assert!(max_abs_diff(&dx, &num) < 1e-9);
    assert!(dx.contains(&0.0) && dx.iter().any(|&d| d != 0.0));
}

#[test]
fn sigmoid_backward_matches_numerical_gradient() {
    let mut g = rng(12);
    let mut x: Vec<f64> = uniform(&mut g, 40).into_iter().map(|v| 4.0 * v).collect();
    let r = uniform(&mut g, 40);
    let mut out = vec![0.0; 40];
    Sigmoid::forward(&mut out, &x).unwrap();
    let mut dx = vec![0.0; 40];
    Sigmoid::backward(&mut dx, &r, &out).unwrap();
    let mut num = vec![0.0; 40];
    numerical_gradient(H, &mut x, &mut num, |x| {
        Sigmoid::forward(&mut out, x)?;
        Ok(weighted_sum(&out, &r))
    })
    .unwrap();
    assert!(max_abs_diff(&dx, &num) < 1e-9);
}

#[test]
fn softmax_with_loss_backward_matches_numerical_gradient() {
    let mut g = rng(13);
    let layer = SoftmaxWithLoss::new(7);
    let batch = 5;
    let mut x: Vec<f64> = uniform(&mut g, batch * 7)
        .into_iter()
        .map(|v| 3.0 * v)
        .collect();
    let t = common::labels(&mut g, batch, 7);
    let mut y = vec![0.0; batch * 7];
    layer.forward(&mut y, &x, &t).unwrap();
    let mut dx = vec![0.0; batch * 7];
    layer.backward(&mut dx, &y, &t).unwrap();
    let mut num = vec![0.0; batch * 7];
    numerical_gradient(H, &mut x, &mut num, |x| layer.forward(&mut y, x, &t)).unwrap();
    assert!(max_abs_diff(&dx, &num) < 1e-9);
}
