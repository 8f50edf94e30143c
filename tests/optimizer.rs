//! The six optimizers against the book's formulas (`common/optimizer.py`): steps worked by
//! hand, a transcription of the formulas in f64 over several steps (bit for bit), f32 close
//! to it, a step applied in parts equal to the whole, and errors before any write.

mod common;

use common::{rng, uniform};
use zeronn::optimizer::{AnyOptimizer, Optimizer, OptimizerKind};
use zeronn::{AdaGrad, Adam, Error, Momentum, Nesterov, RmsProp, Sgd};

/// Runs `opt` on one parameter from 1.0 with gradients 1 then 2; the parameter after each.
fn two_steps(mut opt: impl Optimizer<f64>) -> [f64; 2] {
    let mut p = [1.0f64];
    let mut state = vec![0.0; opt.state_len(1)];
    let mut out = [0.0; 2];
    for (k, g) in [1.0, 2.0].iter().enumerate() {
        opt.update(&mut p, &[*g], &mut state).unwrap();
        out[k] = p[0];
    }
    out
}

fn close(a: [f64; 2], b: [f64; 2]) -> bool {
    a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12)
}

#[test]
fn steps_worked_by_hand() {
    // SGD: 1 − 0.1·1 = 0.9; 0.9 − 0.1·2 = 0.7.
    let got = two_steps(Sgd::new(0.1));
    assert!(close(got, [0.9, 0.7]), "{got:?}");
    // Momentum: v = −0.1, p = 0.9; v = 0.9·(−0.1) − 0.2 = −0.29, p = 0.61.
    let got = two_steps(Momentum::new(0.1));
    assert!(close(got, [0.9, 0.61]), "{got:?}");
    // Nesterov: p = 1 + 0.81·0 − 1.9·0.1·1 = 0.81, v = −0.1;
    // p = 0.81 + 0.81·(−0.1) − 1.9·0.1·2 = 0.349.
    let got = two_steps(Nesterov::new(0.1));
    assert!(close(got, [0.81, 0.349]), "{got:?}");
    // AdaGrad: h = 1, p = 1 − 0.1/(1 + 1e-7); h = 5, p −= 0.2/(√5 + 1e-7).
    let p1 = 1.0 - 0.1 / (1.0 + 1e-7);
    let got = two_steps(AdaGrad::new(0.1));
    assert!(close(got, [p1, p1 - 0.2 / (5f64.sqrt() + 1e-7)]), "{got:?}");
    // RMSprop: h = 0.01·1, p = 1 − 0.1/(0.1 + 1e-7); h = 0.99·0.01 + 0.01·4 = 0.0499.
    let p1 = 1.0 - 0.1 / (0.1 + 1e-7);
    let got = two_steps(RmsProp::new(0.1));
    assert!(
        close(got, [p1, p1 - 0.2 / (0.0499f64.sqrt() + 1e-7)]),
        "{got:?}"
    );
    // Adam: m = 0.1, v = 0.001, lr_t = 0.1·√0.001/0.1; then m = 0.29, v = 0.004999,
    // lr_t = 0.1·√(1 − 0.999²)/(1 − 0.81).
    let lr1 = 0.1 * 0.001f64.sqrt() / 0.1;
    let p1 = 1.0 - lr1 * 0.1 / (0.001f64.sqrt() + 1e-7);
    let lr2 = 0.1 * (1.0 - 0.999f64 * 0.999).sqrt() / (1.0 - 0.81);
    let p2 = p1 - lr2 * 0.29 / (0.004999f64.sqrt() + 1e-7);
    let got = two_steps(Adam::new(0.1));
    assert!(close(got, [p1, p2]), "{got:?} vs {:?}", [p1, p2]);
}

/// The book's update of one parameter, in f64, written out from `common/optimizer.py`.
/// `s` holds the state (`v`, `h` or `m, v`) and `iter` Adam's count.
fn book_update(kind: OptimizerKind, lr: f64, p: &mut f64, g: f64, s: &mut [f64; 2], iter: u64) {
    match kind {
        OptimizerKind::Sgd => *p -= lr * g,
        OptimizerKind::Momentum => {
            s[0] = 0.9 * s[0] - lr * g;
            *p += s[0];
        }
        OptimizerKind::Nesterov => {
            *p += 0.9 * 0.9 * s[0];
            *p -= (1.0 + 0.9) * lr * g;
            s[0] *= 0.9;
            s[0] -= lr * g;
        }
        OptimizerKind::AdaGrad => {
            s[0] += g * g;
            *p -= lr * g / (s[0].sqrt() + 1e-7);
        }
        OptimizerKind::RmsProp => {
            s[0] *= 0.99;
            s[0] += (1.0 - 0.99) * g * g;
            *p -= lr * g / (s[0].sqrt() + 1e-7);
        }
        OptimizerKind::Adam => {
            let i = iter as f64;
            let lr_t = lr * (1.0 - 0.999f64.powf(i)).sqrt() / (1.0 - 0.9f64.powf(i));
            s[0] += (1.0 - 0.9) * (g - s[0]);
            s[1] += (1.0 - 0.999) * (g * g - s[1]);
            *p -= lr_t * s[0] / (s[1].sqrt() + 1e-7);
        }
    }
}

#[test]
fn every_optimizer_follows_the_books_formulas_over_many_steps() {
    let n = 37;
    for kind in OptimizerKind::ALL {
        let lr = kind.default_lr();
        let mut g = rng(3);
        let p0 = uniform(&mut g, n);
        let steps: Vec<Vec<f64>> = (0..6).map(|_| uniform(&mut g, n)).collect();

        let mut want = p0.clone();
        let mut ws = vec![[0.0f64; 2]; n];
        for (k, grads) in steps.iter().enumerate() {
            for i in 0..n {
                book_update(kind, lr, &mut want[i], grads[i], &mut ws[i], k as u64 + 1);
            }
        }

        let mut opt = AnyOptimizer::<f64>::new(kind, lr).unwrap();
        let mut got = p0.clone();
        let mut state = vec![0.0; opt.state_len(n)];
        assert_eq!(state.len(), kind.planes() * n);
        for grads in &steps {
            opt.update(&mut got, grads, &mut state).unwrap();
        }
        assert_eq!(got, want, "{}", kind.name());

        // f32: the same steps, within f32's rounding.
        let mut opt = AnyOptimizer::<f32>::new(kind, lr).unwrap();
        let mut got32: Vec<f32> = p0.iter().map(|&v| v as f32).collect();
        let mut state = vec![0.0f32; opt.state_len(n)];
        for grads in &steps {
            let g32: Vec<f32> = grads.iter().map(|&v| v as f32).collect();
            opt.update(&mut got32, &g32, &mut state).unwrap();
        }
        for (a, b) in got32.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-5, "{}: {a} vs {b}", kind.name());
        }
    }
}

#[test]
fn a_step_in_parts_is_the_whole_step() {
    let n = 50;
    for kind in OptimizerKind::ALL {
        let mut g = rng(4);
        let p0 = uniform(&mut g, n);
        let grads = uniform(&mut g, n);
        let mut whole = AnyOptimizer::<f64>::new(kind, 0.01).unwrap();
        let mut parts = whole.clone();
        let (mut a, mut b) = (p0.clone(), p0.clone());
        let mut sa = vec![0.0; whole.state_len(n)];
        let mut sb = sa.clone();
        for _ in 0..3 {
            whole.update(&mut a, &grads, &mut sa).unwrap();
            parts.begin_step();
            let planes = parts.planes();
            let (s0, s1) = sb.split_at_mut(if planes > 0 { n } else { 0 });
            for r in [0..17, 17..18, 18..50] {
                let (p0, p1) = (
                    if planes > 0 {
                        &mut s0[r.clone()]
                    } else {
                        &mut [][..]
                    },
                    if planes > 1 {
                        &mut s1[r.clone()]
                    } else {
                        &mut [][..]
                    },
                );
                parts
                    .apply(&mut b[r.clone()], &grads[r.clone()], p0, p1)
                    .unwrap();
            }
        }
        assert_eq!(a, b, "{}", kind.name());
        assert_eq!(sa, sb, "{}", kind.name());
    }
}

#[test]
fn lengths_are_checked_before_anything_changes() {
    let state_lens = [
        Sgd::<f32>::state_len(10),
        Momentum::<f32>::state_len(10),
        Nesterov::<f32>::state_len(10),
        AdaGrad::<f32>::state_len(10),
        RmsProp::<f32>::state_len(10),
        Adam::<f32>::state_len(10),
    ];
    assert_eq!(state_lens, [0, 10, 10, 10, 10, 20]);
    for kind in OptimizerKind::ALL {
        let mut opt = AnyOptimizer::<f32>::new(kind, 0.1).unwrap();
        let mut p = [1.0f32; 4];
        let mut state = vec![5.0f32; opt.state_len(4) + 1];
        let r = opt.update(&mut p, &[1.0; 4], &mut state);
        assert!(
            matches!(r, Err(Error::BufferLength { .. })),
            "{}",
            kind.name()
        );
        assert!(
            opt.update(&mut p, &[1.0; 3], &mut state[..kind.planes() * 4])
                .is_err()
        );
        assert_eq!(p, [1.0; 4]);
        assert!(state.iter().all(|&s| s == 5.0));
        if let AnyOptimizer::Adam(a) = &opt {
            assert_eq!(a.iter, 0, "a refused step is not counted");
        }
    }
    assert!(AnyOptimizer::<f32>::new(OptimizerKind::Adam, 0.0).is_err());
    assert!(AnyOptimizer::<f32>::new(OptimizerKind::Sgd, f64::NAN).is_err());
    // Adam applied before its step begins: an error, not NaN parameters.
    let adam = Adam::<f32>::new(0.001);
    let mut p = [1.0f32];
    assert!(adam.apply(&mut p, &[1.0], &mut [0.0], &mut [0.0]).is_err());
    assert_eq!(p, [1.0]);
}
