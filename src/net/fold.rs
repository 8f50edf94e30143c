//! Folding BatchNorm into the Affine before it, for inference: with
//! `s = gamma / √(running_var + ε)`, the layers `x·W + b` then
//! `gamma·(· − running_mean) / √(running_var + ε) + beta` are one Affine `x·W' + b'` with
//! `W'[:, j] = W[:, j]·s_j` and `b'_j = (b_j − running_mean_j)·s_j + beta_j`. The folded net
//! predicts what the net does in inference (up to rounding), with fewer layers, no state, and
//! no BatchNorm code on the device.

use crate::error::{Result, check_len};
use crate::layers::BATCH_NORM_EPS;
use crate::math::{Float, sqrt_f64};
use crate::net::spec::{Layer, NetSpec};

/// Whether layer `i` is a BatchNorm right after an Affine (which folding removes).
const fn folds(spec: &NetSpec, i: usize) -> bool {
    i > 0
        && matches!(spec.layers()[i], Layer::BatchNorm { .. })
        && matches!(spec.layers()[i - 1], Layer::Affine { .. })
}

/// The layer list after [`fold_batch_norm`]: every BatchNorm that follows an Affine removed
/// (a BatchNorm anywhere else stays, with its state).
pub const fn folded_spec(spec: &NetSpec) -> NetSpec {
    let mut out = NetSpec::new(&[]);
    let mut i = 0;
    while i < spec.len() {
        if !folds(spec, i) {
            out = out.push(spec.layers()[i]);
        }
        i += 1;
    }
    out
}

/// Folds every BatchNorm that follows an Affine into that Affine (see the module docs):
/// writes the parameters and state of [`folded_spec`] into `out_params` and `out_state`
/// (their lengths) and returns that list. The arithmetic is in `f64`.
pub fn fold_batch_norm<T: Float>(
    spec: &NetSpec,
    params: &[T],
    state: &[T],
    out_params: &mut [T],
    out_state: &mut [T],
) -> Result<NetSpec> {
    spec.validate()?;
    check_len("params", spec.param_len(), params.len())?;
    check_len("state", spec.state_len(), state.len())?;
    let folded = folded_spec(spec);
    check_len("folded params", folded.param_len(), out_params.len())?;
    check_len("folded state", folded.state_len(), out_state.len())?;
    let (mut p, mut s, mut op, mut os) = (0, 0, 0, 0);
    let layers = spec.layers();
    for (i, layer) in layers.iter().enumerate() {
        match *layer {
            Layer::Affine { input, output } => {
                let n = input * output + output;
                out_params[op..op + n].copy_from_slice(&params[p..p + n]);
                if let Some(Layer::BatchNorm { features }) = layers.get(i + 1) {
                    let f = *features;
                    let (gamma, beta) = params[p + n..p + n + 2 * f].split_at(f);
                    let (mean, var) = state[s..s + 2 * f].split_at(f);
                    let (w, b) = out_params[op..op + n].split_at_mut(input * output);
                    for j in 0..f {
                        let scale = gamma[j].to_f64() / sqrt_f64(var[j].to_f64() + BATCH_NORM_EPS);
                        for row in w.chunks_exact_mut(output) {
                            row[j] = T::from_f64(row[j].to_f64() * scale);
                        }
                        b[j] = T::from_f64(
                            (b[j].to_f64() - mean[j].to_f64()) * scale + beta[j].to_f64(),
                        );
                    }
                }
                p += n;
                op += n;
            }
            Layer::BatchNorm { features } => {
                let f = features;
                if !folds(spec, i) {
                    out_params[op..op + 2 * f].copy_from_slice(&params[p..p + 2 * f]);
                    out_state[os..os + 2 * f].copy_from_slice(&state[s..s + 2 * f]);
                    op += 2 * f;
                    os += 2 * f;
                }
                p += 2 * f;
                s += 2 * f;
            }
            // Every other layer's parameters (a Convolution's W and b) are copied as they are.
            other => {
                let n = other.param_len();
                out_params[op..op + n].copy_from_slice(&params[p..p + n]);
                p += n;
                op += n;
            }
        }
    }
    Ok(folded)
}
