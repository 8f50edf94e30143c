//! The book's gradient check (5.7.3, and chapter 6's `batch_norm_gradient_check.py`):
//! backprop against the numerical gradient on the first training images, per named tensor,
//! in f64 (the book's NumPy precision) or f32, for any net the training takes.

use zeronn::gradient::BOOK_H;
use zeronn::random::seeded;
use zeronn::{Float, Net};

use crate::mnist::Split;
use crate::train::TrainConfig;

/// What to check.
#[derive(Debug, Clone)]
pub struct GradcheckConfig {
    /// The net (hidden sizes, activation, BatchNorm, Dropout, weight decay, init), as for
    /// training; the optimizer, batch and schedule are not used.
    pub net: TrainConfig,
    /// Images from the start of the training set (the book takes 3).
    pub samples: usize,
    /// Seed of the weight initialisation.
    pub seed: u64,
    /// Run in f32 instead of f64.
    pub f32: bool,
    /// Central-difference step; default 1e-4 in f64 (the book's), [`F32_H`] in f32.
    pub h: Option<f64>,
}

impl Default for GradcheckConfig {
    fn default() -> Self {
        GradcheckConfig {
            net: TrainConfig::default(),
            samples: 3,
            seed: 0,
            f32: false,
            h: None,
        }
    }
}

/// The step for f32: large enough that rounding (ε·|loss|/h) stays below the truncation error.
pub const F32_H: f64 = 1e-3;

/// Tolerances on the mean absolute difference per tensor, in f64: `W1`, `b1` (with the book's
/// 0.01-scale weights their pre-activations can sit within `h` of ReLU's kink), and every
/// other tensor.
pub const F64_TOLERANCE: [f64; 3] = [5e-6, 5e-5, 1e-6];

/// Tolerance on the relative error `‖g_b − g_n‖ / (‖g_b‖ + ‖g_n‖)` per tensor, in f32.
pub const F32_RELATIVE_TOLERANCE: f64 = 0.1;

/// The comparison for one tensor.
#[derive(Debug, Clone)]
pub struct TensorDiff {
    /// The tensor's name (`W1`, `b1`, `gamma1`, …).
    pub name: &'static str,
    /// Mean of |backprop − numerical| (the book's figure).
    pub mean_abs_diff: f64,
    /// `‖backprop − numerical‖₂ / (‖backprop‖₂ + ‖numerical‖₂)`.
    pub relative: f64,
    /// Whether it is within tolerance.
    pub passed: bool,
}

/// Runs the check and returns one line per tensor.
pub fn gradcheck(cfg: &GradcheckConfig, train: &Split) -> zeronn::Result<Vec<TensorDiff>> {
    if cfg.f32 {
        check::<f32>(cfg, train, cfg.h.unwrap_or(F32_H))
    } else {
        check::<f64>(cfg, train, cfg.h.unwrap_or(BOOK_H))
    }
}

fn check<T: Float>(
    cfg: &GradcheckConfig,
    train: &Split,
    h: f64,
) -> zeronn::Result<Vec<TensorDiff>> {
    let data = train.head(cfg.samples);
    let x: Vec<T> = data
        .x_f32()
        .iter()
        .map(|&v| T::from_f64(v as f64))
        .collect();
    let t = &data.t;
    let spec = cfg.net.spec(data.pixels, 10);
    let mut net = Net::with_state(
        spec,
        vec![T::ZERO; spec.param_len()],
        vec![T::ZERO; spec.state_len()],
    )?
    .with_weight_decay(T::from_f64(cfg.net.weight_decay))?;
    net.init(&mut seeded(cfg.seed), cfg.net.weight_init);
    net.seed_dropout(crate::train::dropout_seed(cfg.seed, 0));
    let mut ws = vec![T::ZERO; spec.workspace_len(data.len())];
    let mut backprop = vec![T::ZERO; spec.param_len()];
    let mut numerical = vec![T::ZERO; spec.param_len()];
    // Backprop first: it draws the Dropout masks, which the numerical gradient holds fixed.
    net.gradient(&x, t, &mut backprop, &mut ws)?;
    net.numerical_gradient(T::from_f64(h), &x, t, &mut numerical, &mut ws)?;

    Ok(spec
        .tensors()
        .map(|tensor| {
            let tol = match tensor.name {
                "W1" => F64_TOLERANCE[0],
                "b1" => F64_TOLERANCE[1],
                _ => F64_TOLERANCE[2],
            };
            let (b, n) = (&backprop[tensor.range()], &numerical[tensor.range()]);
            let (mut sum_abs, mut diff2, mut b2, mut n2) = (0.0, 0.0, 0.0, 0.0);
            for (&bi, &ni) in b.iter().zip(n) {
                let (bi, ni) = (bi.to_f64(), ni.to_f64());
                sum_abs += (bi - ni).abs();
                diff2 += (bi - ni) * (bi - ni);
                b2 += bi * bi;
                n2 += ni * ni;
            }
            let mean_abs_diff = sum_abs / b.len() as f64;
            let norm = b2.sqrt() + n2.sqrt();
            let relative = if norm > 0.0 { diff2.sqrt() / norm } else { 0.0 };
            let passed = if cfg.f32 {
                relative <= F32_RELATIVE_TOLERANCE
            } else {
                mean_abs_diff <= tol
            };
            TensorDiff {
                name: tensor.name,
                mean_abs_diff,
                relative,
                passed,
            }
        })
        .collect())
}
