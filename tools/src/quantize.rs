//! Post-training quantization of a net to int8 (the scheme of [`zeronn::quant`]): BatchNorm
//! folded into the Affine before it and Dropout's inference scale into the Affine after it,
//! activation ranges calibrated on sample inputs, weights per output channel (per filter of a
//! Convolution), biases int32, multipliers in fixed point, a ReLU folded into the clamp, max
//! pooling kept as it is. The layers run through [`QAffine`], the core's int8 Affine (a
//! Convolution as an Affine over its patches, [`zeronn::quant::QConvolution`]).

use zeronn::layers::{Convolution, Pooling};
use zeronn::quant::requant::quantize_multiplier;
use zeronn::quant::{QAffine, QParams, WeightLayout};
use zeronn::{Layer, NetSpec};

use crate::mnist::Split;

/// One int8 weighted layer (an Affine, or a Convolution as an Affine over its patches),
/// owning its buffers (see [`QAffine`]).
#[derive(Debug, Clone)]
pub struct QLayer {
    /// Values in and out.
    pub input: usize,
    /// Values out.
    pub output: usize,
    /// `output × input`, row `j` for output `j`.
    pub w: Vec<i8>,
    /// Per output.
    pub bias: Vec<i32>,
    /// Per output: the Q31 multiplier and shift of `s_in · s_w[j] / s_out`.
    pub multiplier: Vec<i32>,
    /// Per output.
    pub shift: Vec<i32>,
    /// The weights' scales, per output.
    pub w_scale: Vec<f32>,
    /// The input's and the output's int8 parameters.
    pub input_q: QParams,
    /// The output's.
    pub output_q: QParams,
    /// A ReLU follows (folded into the clamp).
    pub relu: bool,
    /// This layer is a Convolution of this geometry (`input` its patch, `output` its filters).
    pub conv: Option<Convolution>,
    /// A max pooling follows (after the ReLU, if any).
    pub pool: Option<Pooling>,
}

impl QLayer {
    /// The core's layer over these buffers.
    pub fn layer(&self) -> QAffine<'_> {
        QAffine {
            input: self.input,
            output: self.output,
            w: &self.w,
            layout: WeightLayout::Rows,
            bias: &self.bias,
            multiplier: &self.multiplier,
            shift: &self.shift,
            input_zero_point: self.input_q.zero_point,
            input_scale: self.input_q.scale,
            output_zero_point: self.output_q.zero_point,
            output_scale: self.output_q.scale,
            act_min: if self.relu {
                self.output_q.zero_point.clamp(-128, 127) as i8
            } else {
                -128
            },
            act_max: 127,
        }
    }
}

/// A net in int8: its input's parameters, then its weighted layers.
#[derive(Debug, Clone)]
pub struct QuantizedNet {
    /// How the real inputs become int8.
    pub input_q: QParams,
    /// The layers, in order.
    pub layers: Vec<QLayer>,
}

/// A weighted layer of the float net after folding: `W` (input × output, the book's Affine
/// layout; a Convolution's `filters × C·FH·FW` transposed to it, its patch the input), `b`,
/// whether a ReLU and a max pooling follow.
struct FloatAffine {
    input: usize,
    output: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    relu: bool,
    conv: Option<Convolution>,
    pool: Option<Pooling>,
}

/// The net as a chain of weighted layers (BatchNorm folded, Dropout's `1 − ratio` folded into
/// the next Affine's weights, ReLU and Pooling attached to the layer before); an error naming
/// the first layer int8 does not take yet.
fn affines(spec: &NetSpec, params: &[f32], state: &[f32]) -> Result<Vec<FloatAffine>, String> {
    let folded = zeronn::net::folded_spec(spec);
    let mut p = vec![0.0f32; folded.param_len()];
    let mut s = vec![0.0f32; folded.state_len()];
    zeronn::net::fold_batch_norm(spec, params, state, &mut p, &mut s)
        .map_err(|e| format!("folding BatchNorm: {e}"))?;
    let mut out: Vec<FloatAffine> = Vec::new();
    let (mut at, mut scale) = (0usize, 1.0f32);
    let layers = folded.layers();
    for (i, layer) in layers.iter().enumerate() {
        match *layer {
            Layer::Affine { input, output } => {
                let w = p[at..at + input * output]
                    .iter()
                    .map(|&v| v * scale)
                    .collect();
                let b = p[at + input * output..at + input * output + output].to_vec();
                at += input * output + output;
                scale = 1.0;
                out.push(FloatAffine {
                    input,
                    output,
                    w,
                    b,
                    relu: false,
                    conv: None,
                    pool: None,
                });
            }
            Layer::Convolution(c) => {
                let (patch, filters) = (c.patch_len(), c.filters);
                let book = &p[at..at + filters * patch];
                // Transposed to input × output, the Affine's layout (a Dropout's scale before
                // it folded in).
                let mut w = vec![0.0f32; patch * filters];
                for (f, row) in book.chunks_exact(patch).enumerate() {
                    for (k, &v) in row.iter().enumerate() {
                        w[k * filters + f] = v * scale;
                    }
                }
                let b = p[at + filters * patch..at + c.param_len()].to_vec();
                at += c.param_len();
                scale = 1.0;
                out.push(FloatAffine {
                    input: patch,
                    output: filters,
                    w,
                    b,
                    relu: false,
                    conv: Some(c),
                    pool: None,
                });
            }
            Layer::Relu => match out.last_mut() {
                Some(a)
                    if !a.relu
                        && matches!(
                            layers.get(i - 1),
                            Some(Layer::Affine { .. } | Layer::Convolution(_))
                        ) =>
                {
                    a.relu = true
                }
                _ => {
                    return Err(format!(
                        "layer {}: int8 takes a ReLU only right after an Affine or a Convolution",
                        i + 1
                    ));
                }
            },
            Layer::Pooling { h, w, stride } => match out.last_mut() {
                Some(a) if a.conv.is_some() && a.pool.is_none() => {
                    let d = folded.dims_after(i - 1);
                    a.pool = Some(Pooling::new(d, h, w, stride))
                }
                _ => {
                    return Err(format!(
                        "layer {}: int8 takes a Pooling only after a Convolution (and its ReLU)",
                        i + 1
                    ));
                }
            },
            Layer::Dropout { ratio } => scale *= 1.0 - ratio,
            Layer::SoftmaxWithLoss if i + 1 == layers.len() => {}
            other => {
                return Err(format!(
                    "layer {} ({other:?}): int8 takes nets of Affine, Convolution, Pooling, ReLU, \
                     BatchNorm (right after an Affine) and Dropout layers for now",
                    i + 1
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("the net has no Affine layer".into());
    }
    Ok(out)
}

/// Runs the float chain on `x` (`n × input`), calling `seen(layer, outputs)` with each layer's
/// outputs (after its ReLU, before its pooling).
fn float_forward(chain: &[FloatAffine], x: &[f32], mut seen: impl FnMut(usize, &[f32])) {
    let mut cur = x.to_vec();
    for (l, a) in chain.iter().enumerate() {
        if let Some(c) = a.conv {
            // The direct convolution, the filters back in the book's layout.
            let n = cur.len() / c.input.len();
            let mut book = vec![0.0f32; a.w.len()];
            for (k, row) in a.w.chunks_exact(a.output).enumerate() {
                for (f, &v) in row.iter().enumerate() {
                    book[f * a.input + k] = v;
                }
            }
            let mut next = vec![0.0f32; n * c.output_dims().len()];
            c.forward_naive(&mut next, &cur, &book, &a.b)
                .expect("the chain's shapes are the net's");
            if a.relu {
                next.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            seen(l, &next);
            cur = match a.pool {
                Some(p) => {
                    let mut pooled = vec![0.0f32; n * p.output_dims().len()];
                    let mut arg = vec![0.0f32; pooled.len()];
                    p.forward_naive(&mut pooled, &next, &mut arg)
                        .expect("the chain's shapes are the net's");
                    pooled
                }
                None => next,
            };
            continue;
        }
        let n = cur.len() / a.input;
        let mut next = vec![0.0f32; n * a.output];
        for (xr, yr) in cur
            .chunks_exact(a.input)
            .zip(next.chunks_exact_mut(a.output))
        {
            yr.copy_from_slice(&a.b);
            for (&xi, wr) in xr.iter().zip(a.w.chunks_exact(a.output)) {
                if xi != 0.0 {
                    for (y, &w) in yr.iter_mut().zip(wr) {
                        *y += xi * w;
                    }
                }
            }
            if a.relu {
                yr.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        seen(l, &next);
        cur = next;
    }
}

/// Quantizes the net `spec` with `params` and `state` to int8, with the activation ranges of
/// the calibration inputs `calib` (`n × inputs` reals).
pub fn quantize(
    spec: &NetSpec,
    params: &[f32],
    state: &[f32],
    calib: &[f32],
) -> Result<QuantizedNet, String> {
    let chain = affines(spec, params, state)?;
    let inputs = chain[0].conv.map_or(chain[0].input, |c| c.input.len());
    if calib.is_empty() || !calib.len().is_multiple_of(inputs) {
        return Err(format!(
            "calibration data: a whole number of samples of {inputs} values, not {}",
            calib.len()
        ));
    }
    let range = |v: &[f32]| {
        v.iter()
            .fold((0.0f32, 0.0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)))
    };
    let (lo, hi) = range(calib);
    let input_q = QParams::from_range(lo, hi).map_err(|e| format!("the inputs: {e}"))?;
    let mut ranges = vec![(0.0f32, 0.0f32); chain.len()];
    float_forward(&chain, calib, |l, y| ranges[l] = range(y));
    let mut layers = Vec::with_capacity(chain.len());
    let mut in_q = input_q;
    for (l, (a, &(lo, hi))) in chain.iter().zip(&ranges).enumerate() {
        let out_q = QParams::from_range(lo, hi).map_err(|e| format!("layer {}: {e}", l + 1))?;
        let (mut w, mut bias) = (vec![0i8; a.input * a.output], vec![0i32; a.output]);
        let (mut multiplier, mut shift, mut w_scale) =
            (vec![0; a.output], vec![0; a.output], vec![0.0f32; a.output]);
        for j in 0..a.output {
            let max = (0..a.input)
                .map(|i| a.w[i * a.output + j].abs())
                .fold(0.0f32, f32::max);
            let s_w = if max > 0.0 {
                f64::from(max) / 127.0
            } else {
                1.0
            };
            w_scale[j] = s_w as f32;
            for i in 0..a.input {
                let q = (f64::from(a.w[i * a.output + j]) / s_w)
                    .round()
                    .clamp(-127.0, 127.0);
                w[j * a.input + i] = q as i8;
            }
            let s_b = f64::from(in_q.scale) * s_w;
            bias[j] = (f64::from(a.b[j]) / s_b)
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
            (multiplier[j], shift[j]) = quantize_multiplier(s_b / f64::from(out_q.scale));
        }
        layers.push(QLayer {
            input: a.input,
            output: a.output,
            w,
            bias,
            multiplier,
            shift,
            w_scale,
            input_q: in_q,
            output_q: out_q,
            relu: a.relu,
            conv: a.conv,
            pool: a.pool,
        });
        in_q = out_q;
    }
    Ok(QuantizedNet { input_q, layers })
}

impl QuantizedNet {
    /// The int8 layer list: each Affine or Convolution, its ReLU and its Pooling if it has
    /// them, then SoftmaxWithLoss.
    pub fn spec(&self) -> NetSpec {
        let mut spec = NetSpec::new(&[]);
        for l in &self.layers {
            spec = spec.push(match l.conv {
                Some(c) => Layer::Convolution(c),
                None => Layer::Affine {
                    input: l.input,
                    output: l.output,
                },
            });
            if l.relu {
                spec = spec.push(Layer::Relu);
            }
            if let Some(p) = l.pool {
                spec = spec.push(Layer::Pooling {
                    h: p.pool_h,
                    w: p.pool_w,
                    stride: p.stride,
                });
            }
        }
        spec.push(Layer::SoftmaxWithLoss)
    }

    /// The int8 model file ([`zeronn::quant::model`]), the Affines' weights in `layout` (a
    /// Convolution's stay in rows).
    pub fn to_bytes(&self, layout: WeightLayout) -> zeronn::Result<Vec<u8>> {
        let spec = self.spec();
        let mut out = vec![0u8; zeronn::quant::model::encoded_len_in(&spec, layout)];
        let layout_of = |l: &QLayer| {
            if l.conv.is_some() {
                WeightLayout::Rows
            } else {
                layout
            }
        };
        let mut arranged: Vec<Vec<i8>> = Vec::new();
        for l in &self.layers {
            let mut w = vec![0i8; layout_of(l).len(l.input, l.output)];
            l.layer().arrange(layout_of(l), &mut w)?;
            arranged.push(w);
        }
        let layers: Vec<QAffine<'_>> = self
            .layers
            .iter()
            .zip(&arranged)
            .map(|(l, w)| QAffine {
                w,
                layout: layout_of(l),
                ..l.layer()
            })
            .collect();
        let n = zeronn::quant::model::write(&spec, &layers, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

/// Training images `zeronn quantize` calibrates on by default.
pub const CALIB: usize = 300;

/// [`quantize`] with the ranges of the first `n` images of `train` (all of them if fewer).
pub fn quantize_on(
    spec: &NetSpec,
    params: &[f32],
    state: &[f32],
    train: &Split,
    n: usize,
) -> Result<QuantizedNet, String> {
    let n = n.min(train.len());
    let mut x = vec![0f32; n * train.pixels];
    train.images_f32(0, n, &mut x);
    quantize(spec, params, state, &x)
}

/// Samples as int8 in a model's input parameters. For MNIST's calibration (pixel `b` stands
/// for `b − 128`) a flip of the top bit, which vectorises; otherwise each value quantized.
#[derive(Debug, Clone, Copy)]
pub struct ToInt8 {
    input: QParams,
    /// Pixel `b` quantizes to `b − 128` for every byte.
    flip: bool,
}

impl ToInt8 {
    /// The conversion into `input`'s parameters (looked at once, not per image).
    pub fn new(input: QParams) -> Self {
        let flip = (0..=255u8).all(|b| input.quantize(f32::from(b) / 255.0) == (b ^ 0x80) as i8);
        ToInt8 { input, flip }
    }

    /// Samples `lo..hi` of `split` into `out` (`(hi − lo) × pixels` values).
    pub fn samples(&self, split: &Split, lo: usize, hi: usize, out: &mut [i8]) {
        let out = &mut out[..(hi - lo) * split.pixels];
        if self.flip && !split.is_float() {
            for (i, row) in out.chunks_exact_mut(split.pixels).enumerate() {
                for (q, &b) in row.iter_mut().zip(split.image_raw(lo + i)) {
                    *q = (b ^ 0x80) as i8;
                }
            }
        } else {
            let mut x = vec![0f32; out.len()];
            split.images_f32(lo, hi, &mut x);
            for (q, &v) in out.iter_mut().zip(&x) {
                *q = self.input.quantize(v);
            }
        }
    }
}
