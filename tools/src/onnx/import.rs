//! ONNX graph → zeronn layer list, parameters and state.
//!
//! The graph must be a chain: from its one data input, each node takes the tensor the node
//! before gave (weights come from initializers or `Constant` nodes), up to a graph output.
//! Each node becomes a layer (`Gemm`, `MatMul` → Affine, with a following `Add` as its bias;
//! `Conv` → Convolution; `MaxPool` → Pooling; `Relu`, `Sigmoid`), is folded into the layer
//! before (`BatchNormalization` after a `Gemm`/`MatMul`/`Conv`: `W·s`, `(b − mean)·s + beta`
//! with `s = scale / √(var + ε)`), becomes a zeronn BatchNorm (a `BatchNormalization`
//! anywhere else, per channel spread over the channel's values), or disappears (`Dropout`,
//! `Identity`; `Flatten` and a flattening `Reshape`, implicit in zeronn). `Add` and `Mul` by
//! a constant (a scalar, per channel or per value) fold into the Gemm/MatMul/Conv before them
//! or else become a BatchNorm in inference form (`x·s + t`: running mean 0, variance 1 − ε). A final `Softmax`
//! or `LogSoftmax` becomes SoftmaxWithLoss; a graph without one gets it too, so the imported
//! net trains, and its scores (zeronn's `predict`) are the graph's logits either way.

use std::collections::HashMap;

use prost::Message;
use zeronn::layers::{BATCH_NORM_EPS, Convolution, Dims};
use zeronn::{Layer, NetSpec};

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::{self, AttributeProto, ModelProto, NodeProto, TensorProto};
use super::{SUPPORTED_OPS, type_name};

/// A zeronn net read from an ONNX graph.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The layer list.
    pub spec: NetSpec,
    /// The parameters, in zeronn's order.
    pub params: Vec<f32>,
    /// The state (BatchNorm running means and variances).
    pub state: Vec<f32>,
    /// What was folded, dropped or added, one line each, for the user.
    pub notes: Vec<String>,
}

/// A layer with its own parameters, before they are laid out in one buffer.
enum Item {
    Affine {
        input: usize,
        output: usize,
        /// `input × output`, row-major.
        w: Vec<f32>,
        b: Vec<f32>,
        node: String,
    },
    Conv {
        conv: Convolution,
        /// `filters × channels × kh × kw`.
        w: Vec<f32>,
        b: Vec<f32>,
        node: String,
    },
    Plain(Layer),
    BatchNorm {
        gamma: Vec<f32>,
        beta: Vec<f32>,
        mean: Vec<f32>,
        var: Vec<f32>,
    },
    /// `x·s + t` per value (`Mul`/`Add` by constants): a BatchNorm in inference form.
    Scale {
        s: Vec<f32>,
        t: Vec<f32>,
    },
}

/// The per-sample shape of the tensor flowing along the chain.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Flat(usize),
    Image(Dims),
}

impl Shape {
    fn len(self) -> usize {
        match self {
            Shape::Flat(n) => n,
            Shape::Image(d) => d.len(),
        }
    }
}

/// Reads an ONNX model (the bytes of a `.onnx` file) into a zeronn net. Errors name the node,
/// its op type and what is wrong.
pub fn import(bytes: &[u8]) -> Result<Imported, String> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| format!("not an ONNX model (protobuf decoding failed: {e})"))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or("the model imports no opset of the default ONNX domain")?;
    if opset < 13 {
        return Err(format!(
            "opset {opset}: zeronn reads opset 13 and later (export again with opset_version=13 or later)"
        ));
    }
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let mut consts: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        consts.insert(t.name.as_deref().unwrap_or(""), t);
    }
    if !graph.sparse_initializer.is_empty() {
        return Err("sparse initializers are not supported".into());
    }
    let data: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !consts.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = data[..] else {
        return Err(format!(
            "the graph has {} data inputs (inputs that are not initializers); zeronn needs one",
            data.len()
        ));
    };
    let input_name = input.name.clone().unwrap_or_default();
    let input_shape = shape_of_input(input)?;
    let mut shape = input_shape;
    let mut cur = input_name.clone();
    let mut items: Vec<Item> = Vec::new();
    let mut notes = Vec::new();
    let mut ended = false;
    for node in &graph.node {
        let op = node.op_type.as_deref().unwrap_or("");
        let name = node_name(node);
        if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            return Err(format!(
                "{name}: op {op} of domain {:?} is not supported (zeronn imports the default ONNX domain: {SUPPORTED_OPS})",
                node.domain.as_deref().unwrap_or("")
            ));
        }
        if op == "Constant" {
            let [out] = &node.output[..] else {
                return Err(format!("{name}: a Constant must have one output"));
            };
            let t = attr(node, "value")
                .and_then(|a| a.t.as_ref())
                .ok_or_else(|| {
                    format!("{name}: only Constant nodes with a tensor `value` are supported")
                })?;
            consts.insert(out.as_str(), t);
            continue;
        }
        // Add may have the data on either side.
        let data_at = usize::from(matches!(op, "Add" | "Mul") && node.input.get(1) == Some(&cur));
        if node.input.get(data_at) != Some(&cur) {
            return Err(format!(
                "{name} (op {op}) does not take the output of the node before ({cur:?}): zeronn imports a chain of layers"
            ));
        }
        if ended {
            return Err(format!(
                "{name} (op {op}) follows the final Softmax/LogSoftmax: nothing may come after it"
            ));
        }
        let out = node
            .output
            .first()
            .ok_or_else(|| format!("{name} (op {op}) has no output"))?;
        let get = |i: usize, what: &str| -> Result<Vec<f32>, String> {
            let key = node
                .input
                .get(i)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{name} (op {op}): input {i} ({what}) is missing"))?;
            let t = consts.get(key.as_str()).ok_or_else(|| {
                format!("{name} (op {op}): input {i} ({what}, {key:?}) must be an initializer or a Constant")
            })?;
            floats(t).map_err(|e| format!("{name} (op {op}), {what} {key:?}: {e}"))
        };
        let dims_of = |i: usize| -> Vec<i64> {
            node.input
                .get(i)
                .and_then(|k| consts.get(k.as_str()))
                .map(|t| t.dims.clone())
                .unwrap_or_default()
        };
        match op {
            "Gemm" => {
                let Shape::Flat(n) = shape else {
                    return Err(format!(
                        "{name} (Gemm): its input is an image {shape:?}; flatten it first (Flatten or Reshape)"
                    ));
                };
                if attr_i(node, "transA", 0) != 0 {
                    return Err(format!("{name} (Gemm): transA = 1 is not supported"));
                }
                let alpha = attr_f(node, "alpha", 1.0);
                let beta = attr_f(node, "beta", 1.0);
                let trans_b = attr_i(node, "transB", 0) != 0;
                let bd = dims_of(1);
                let b_raw = get(1, "B")?;
                let [r, c] = two_dims(&bd)
                    .ok_or_else(|| format!("{name} (Gemm): B has shape {bd:?}, not 2-D"))?;
                let (input, output) = if trans_b { (c, r) } else { (r, c) };
                if input != n {
                    return Err(format!(
                        "{name} (Gemm): B is {r}×{c}{}, so it takes {input} values, but its input has {n}",
                        if trans_b { " (transB = 1)" } else { "" }
                    ));
                }
                let mut w = vec![0.0f32; input * output];
                for i in 0..input {
                    for o in 0..output {
                        let v = if trans_b {
                            b_raw[o * input + i]
                        } else {
                            b_raw[i * output + o]
                        };
                        w[i * output + o] = alpha * v;
                    }
                }
                let b = if node.input.get(2).is_some_and(|s| !s.is_empty()) {
                    let c = get(2, "C")?;
                    bias(&c, output).ok_or_else(|| {
                        format!("{name} (Gemm): C has {} values; zeronn needs a bias of {output} (or 1)", c.len())
                    })?
                    .into_iter()
                    .map(|v| beta * v)
                    .collect()
                } else {
                    vec![0.0; output]
                };
                items.push(Item::Affine {
                    input,
                    output,
                    w,
                    b,
                    node: name.clone(),
                });
                shape = Shape::Flat(output);
            }
            "MatMul" => {
                let Shape::Flat(n) = shape else {
                    return Err(format!(
                        "{name} (MatMul): its input is an image {shape:?}; flatten it first"
                    ));
                };
                let bd = dims_of(1);
                let w = get(1, "B")?;
                let [input, output] = two_dims(&bd)
                    .ok_or_else(|| format!("{name} (MatMul): B has shape {bd:?}, not 2-D"))?;
                if input != n {
                    return Err(format!(
                        "{name} (MatMul): B is {input}×{output}, but its input has {n} values"
                    ));
                }
                items.push(Item::Affine {
                    input,
                    output,
                    w,
                    b: vec![0.0; output],
                    node: name.clone(),
                });
                shape = Shape::Flat(output);
            }
            "Add" | "Mul" => {
                let k = 1 - data_at;
                let (c, cd) = (get(k, "the constant")?, dims_of(k));
                let v = per_value(&c, &cd, shape).ok_or_else(|| {
                    format!("{name} ({op}): a constant of shape {cd:?} is not a scalar, per channel or per value of its input {shape:?}")
                })?;
                let mul = op == "Mul";
                match items.last_mut() {
                    Some(Item::Affine { w, b, output, .. }) => {
                        if mul {
                            for row in w.chunks_exact_mut(*output) {
                                row.iter_mut().zip(&v).for_each(|(x, s)| *x *= s);
                            }
                            b.iter_mut().zip(&v).for_each(|(x, s)| *x *= s);
                        } else {
                            b.iter_mut().zip(&v).for_each(|(x, s)| *x += s);
                        }
                    }
                    Some(Item::Conv { w, b, conv, .. }) if per_channel(&v, conv.output_dims()) => {
                        let plane = conv.output_dims().plane();
                        let per = conv.weight_len() / conv.filters;
                        for (f, bf) in b.iter_mut().enumerate() {
                            let s = v[f * plane];
                            if mul {
                                w[f * per..(f + 1) * per].iter_mut().for_each(|x| *x *= s);
                                *bf *= s;
                            } else {
                                *bf += s;
                            }
                        }
                    }
                    Some(Item::Scale { s, t }) => {
                        for ((s, t), c) in s.iter_mut().zip(t.iter_mut()).zip(&v) {
                            if mul {
                                *s *= c;
                                *t *= c;
                            } else {
                                *t += c;
                            }
                        }
                    }
                    _ => {
                        let n = v.len();
                        let (s, t) = if mul {
                            (v, vec![0.0; n])
                        } else {
                            (vec![1.0; n], v)
                        };
                        items.push(Item::Scale { s, t });
                        notes.push(format!(
                            "{name} ({op} by a constant): a BatchNorm layer in its inference form (running mean 0, variance 1 − ε); it would not train as {op}"
                        ));
                    }
                }
            }
            "Conv" => {
                let Shape::Image(d) = shape else {
                    return Err(format!(
                        "{name} (Conv): its input is flat ({} values), not an image",
                        shape.len()
                    ));
                };
                let wd = dims_of(1);
                let w = get(1, "W")?;
                let &[f, c, kh, kw] = &wd[..] else {
                    return Err(format!(
                        "{name} (Conv): W has shape {wd:?}, not 4-D (filters, channels, kh, kw)"
                    ));
                };
                let [f, c, kh, kw] = [f, c, kh, kw].map(|v| v.max(0) as usize);
                if c != d.channels {
                    return Err(format!(
                        "{name} (Conv): W takes {c} channels, its input has {}",
                        d.channels
                    ));
                }
                if attr_i(node, "group", 1) != 1 {
                    return Err(format!(
                        "{name} (Conv): group = {} is not supported (only 1)",
                        attr_i(node, "group", 1)
                    ));
                }
                check_ones(node, "dilations")?;
                let stride = square(node, "strides", 1)?;
                let pad = conv_pad(node, kh, kw, stride)?;
                let conv = Convolution::new(d, f, kh)
                    .kernel(kh, kw)
                    .stride(stride)
                    .pad(pad);
                let out_dims = conv.output_dims();
                if out_dims.is_empty() {
                    return Err(format!(
                        "{name} (Conv): a {kh}×{kw} kernel does not fit its {}×{} input (pad {pad})",
                        d.height, d.width
                    ));
                }
                let b = if node.input.get(2).is_some_and(|s| !s.is_empty()) {
                    let b = get(2, "B")?;
                    if b.len() != f {
                        return Err(format!(
                            "{name} (Conv): B has {} values, W has {f} filters",
                            b.len()
                        ));
                    }
                    b
                } else {
                    vec![0.0; f]
                };
                items.push(Item::Conv {
                    conv,
                    w,
                    b,
                    node: name.clone(),
                });
                shape = Shape::Image(out_dims);
            }
            "MaxPool" => {
                let Shape::Image(d) = shape else {
                    return Err(format!("{name} (MaxPool): its input is flat, not an image"));
                };
                if node.output.len() > 1 {
                    return Err(format!(
                        "{name} (MaxPool): the Indices output is not supported"
                    ));
                }
                let ks = attr_ints(node, "kernel_shape");
                let &[h, w] = &ks[..] else {
                    return Err(format!("{name} (MaxPool): kernel_shape {ks:?} is not 2-D"));
                };
                let (h, w) = (h.max(0) as usize, w.max(0) as usize);
                let stride = square(node, "strides", 1)?;
                check_ones(node, "dilations")?;
                if attr_ints(node, "pads").iter().any(|&p| p != 0)
                    || !matches!(auto_pad(node).as_str(), "NOTSET" | "VALID")
                {
                    return Err(format!("{name} (MaxPool): padding is not supported"));
                }
                if attr_i(node, "storage_order", 0) != 0 {
                    return Err(format!(
                        "{name} (MaxPool): storage_order = 1 is not supported"
                    ));
                }
                if h == 0 || w == 0 || h > d.height || w > d.width {
                    return Err(format!(
                        "{name} (MaxPool): a {h}×{w} window does not fit its {}×{} input",
                        d.height, d.width
                    ));
                }
                if attr_i(node, "ceil_mode", 0) != 0
                    && ((d.height - h) % stride != 0 || (d.width - w) % stride != 0)
                {
                    return Err(format!(
                        "{name} (MaxPool): ceil_mode = 1 gives a partial window here, which zeronn does not have"
                    ));
                }
                let layer = Layer::Pooling { h, w, stride };
                shape = Shape::Image(layer.output_dims(d));
                items.push(Item::Plain(layer));
            }
            "Relu" => items.push(Item::Plain(Layer::Relu)),
            "Sigmoid" => items.push(Item::Plain(Layer::Sigmoid)),
            "Dropout" | "Identity" => {
                if op == "Dropout" && node.input.get(2).is_some_and(|s| !s.is_empty()) {
                    let on = node.input[2].as_str();
                    let training = consts
                        .get(on)
                        .and_then(|t| bools(t).ok())
                        .unwrap_or_default();
                    if training.first() != Some(&false) {
                        return Err(format!(
                            "{name} (Dropout): training_mode must be a constant false"
                        ));
                    }
                }
                notes.push(format!("{name} ({op}): identity in inference, dropped"));
            }
            "Flatten" => {
                let axis = attr_i(node, "axis", 1);
                let rank = match shape {
                    Shape::Flat(_) => 2,
                    Shape::Image(_) => 4,
                };
                if axis != 1 && axis != 1 - rank {
                    return Err(format!(
                        "{name} (Flatten): axis {axis} is not supported (only 1: batch × features)"
                    ));
                }
                shape = Shape::Flat(shape.len());
            }
            "Reshape" => {
                let target = node
                    .input
                    .get(1)
                    .and_then(|k| consts.get(k.as_str()))
                    .map(|t| ints(t))
                    .transpose()
                    .map_err(|e| format!("{name} (Reshape): shape: {e}"))?
                    .ok_or_else(|| {
                        format!("{name} (Reshape): the shape must be an initializer or a Constant")
                    })?;
                let n = shape.len() as i64;
                let flattens = match target[..] {
                    [-1, m] => m == n,
                    [b, m] if b >= 0 => m == n || m == -1,
                    _ => false,
                };
                if !flattens {
                    return Err(format!(
                        "{name} (Reshape): shape {target:?} is not batch × {n} (zeronn reshapes only to flatten)"
                    ));
                }
                shape = Shape::Flat(shape.len());
            }
            "BatchNormalization" => {
                if attr_i(node, "training_mode", 0) != 0 || node.output.len() > 1 {
                    return Err(format!(
                        "{name} (BatchNormalization): training mode is not supported"
                    ));
                }
                let eps = attr_f(node, "epsilon", 1e-5) as f64;
                let [gamma, beta, mean, var] =
                    [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")]
                        .map(|(i, what)| get(i, what));
                let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
                let channels = match shape {
                    Shape::Flat(n) => n,
                    Shape::Image(d) => d.channels,
                };
                if [&gamma, &beta, &mean, &var]
                    .iter()
                    .any(|v| v.len() != channels)
                {
                    return Err(format!(
                        "{name} (BatchNormalization): its tensors must have {channels} values (one per channel)"
                    ));
                }
                let s: Vec<f64> = gamma
                    .iter()
                    .zip(&var)
                    .map(|(&g, &v)| g as f64 / (v as f64 + eps).sqrt())
                    .collect();
                let shift = |j: usize| beta[j] as f64 - mean[j] as f64 * s[j];
                match items.last_mut() {
                    Some(Item::Affine {
                        w,
                        b,
                        output,
                        node: before,
                        ..
                    }) => {
                        for row in w.chunks_exact_mut(*output) {
                            for (x, s) in row.iter_mut().zip(&s) {
                                *x = (*x as f64 * s) as f32;
                            }
                        }
                        for (j, b) in b.iter_mut().enumerate() {
                            *b = (*b as f64 * s[j] + shift(j)) as f32;
                        }
                        notes.push(format!("{name} (BatchNormalization): folded into {before}"));
                    }
                    Some(Item::Conv {
                        w,
                        b,
                        conv,
                        node: before,
                    }) => {
                        let per = conv.weight_len() / conv.filters;
                        for (j, f) in w.chunks_exact_mut(per).enumerate() {
                            for x in f {
                                *x = (*x as f64 * s[j]) as f32;
                            }
                        }
                        for (j, b) in b.iter_mut().enumerate() {
                            *b = (*b as f64 * s[j] + shift(j)) as f32;
                        }
                        notes.push(format!("{name} (BatchNormalization): folded into {before}"));
                    }
                    _ => {
                        // A zeronn BatchNorm per value: each channel's values share its numbers,
                        // and the variance absorbs the difference of the two epsilons.
                        let per = shape.len() / channels;
                        let spread = |v: &[f32], f: &dyn Fn(f32) -> f32| -> Vec<f32> {
                            v.iter()
                                .flat_map(|&x| std::iter::repeat_n(f(x), per))
                                .collect()
                        };
                        let var_z = spread(&var, &|v| (v as f64 + eps - BATCH_NORM_EPS) as f32);
                        items.push(Item::BatchNorm {
                            gamma: spread(&gamma, &|v| v),
                            beta: spread(&beta, &|v| v),
                            mean: spread(&mean, &|v| v),
                            var: var_z,
                        });
                        notes.push(format!("{name} (BatchNormalization): kept as a BatchNorm layer (nothing to fold it into)"));
                    }
                }
            }
            "Softmax" | "LogSoftmax" => {
                let axis = attr_i(node, "axis", -1);
                if !matches!(shape, Shape::Flat(_)) || !(axis == -1 || axis == 1) {
                    return Err(format!(
                        "{name} ({op}): only over the classes of a batch × classes tensor"
                    ));
                }
                items.push(Item::Plain(Layer::SoftmaxWithLoss));
                ended = true;
            }
            _ => {
                return Err(format!(
                    "{name}: op {op} is not supported (zeronn imports {SUPPORTED_OPS})"
                ));
            }
        }
        cur = out.clone();
    }
    let outputs: Vec<&str> = graph
        .output
        .iter()
        .filter_map(|o| o.name.as_deref())
        .collect();
    if !outputs.contains(&cur.as_str()) {
        return Err(format!(
            "the chain from the input ends at {cur:?}, which is not a graph output ({outputs:?})"
        ));
    }
    if !ended {
        items.push(Item::Plain(Layer::SoftmaxWithLoss));
        notes.push(
            "SoftmaxWithLoss added at the end (the graph gives logits), so the net trains".into(),
        );
    }
    assemble(items, input_shape, notes)
}

/// Lays the items out as a zeronn net: the layer list, then parameters and state in order.
fn assemble(items: Vec<Item>, input: Shape, notes: Vec<String>) -> Result<Imported, String> {
    let mut spec = NetSpec::new(&[]);
    let (mut params, mut state) = (Vec::new(), Vec::new());
    let mut dims = match input {
        Shape::Flat(n) => Dims::flat(n),
        Shape::Image(d) => d,
    };
    for item in items {
        let layer = match item {
            Item::Affine {
                input,
                output,
                w,
                b,
                ..
            } => {
                params.extend(w);
                params.extend(b);
                Layer::Affine { input, output }
            }
            Item::Conv { conv, w, b, .. } => {
                params.extend(w);
                params.extend(b);
                Layer::Convolution(conv)
            }
            Item::BatchNorm {
                gamma,
                beta,
                mean,
                var,
            } => {
                params.extend(gamma);
                params.extend(beta);
                state.extend(mean);
                state.extend(var);
                Layer::BatchNorm {
                    features: dims.len(),
                }
            }
            Item::Scale { s, t } => {
                let n = s.len();
                params.extend(s);
                params.extend(t);
                state.extend(std::iter::repeat_n(0.0, n));
                state.extend(std::iter::repeat_n((1.0 - BATCH_NORM_EPS) as f32, n));
                Layer::BatchNorm { features: n }
            }
            Item::Plain(l) => l,
        };
        dims = layer.output_dims(dims);
        spec = spec.push(layer);
    }
    spec.validate()
        .map_err(|e| format!("the imported layer list is not a zeronn net: {e}"))?;
    if params.len() != spec.param_len() || state.len() != spec.state_len() {
        return Err(format!(
            "internal: {} parameters and {} state values for a net of {} and {}",
            params.len(),
            state.len(),
            spec.param_len(),
            spec.state_len()
        ));
    }
    Ok(Imported {
        spec,
        params,
        state,
        notes,
    })
}

fn node_name(node: &NodeProto) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => format!("node {n:?}"),
        _ => format!(
            "node with output {:?}",
            node.output.first().map_or("", |s| s.as_str())
        ),
    }
}

/// The data input's per-sample shape: `[batch, features]` or `[batch, C, H, W]`.
fn shape_of_input(input: &proto::ValueInfoProto) -> Result<Shape, String> {
    use proto::tensor_shape_proto::dimension::Value;
    use proto::type_proto::Value as Type;
    let name = input.name.as_deref().unwrap_or("");
    let Some(Type::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("input {name:?} is not a tensor"));
    };
    if t.elem_type != Some(DataType::Float as i32) {
        return Err(format!(
            "input {name:?} is {}; zeronn takes FLOAT",
            type_name(t.elem_type.unwrap_or(0))
        ));
    }
    let dims: Vec<Option<i64>> = t
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Value::DimValue(v)) => Some(v),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let known = |i: usize| -> Result<usize, String> {
        match dims[i] {
            Some(v) if v > 0 => Ok(v as usize),
            _ => Err(format!(
                "input {name:?}: dimension {i} must be a fixed size (only the batch may vary)"
            )),
        }
    };
    match dims.len() {
        2 => Ok(Shape::Flat(known(1)?)),
        4 => Ok(Shape::Image(Dims::new(known(1)?, known(2)?, known(3)?))),
        n => Err(format!(
            "input {name:?} has rank {n}; zeronn takes batch × features or batch × channels × height × width"
        )),
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

fn attr_ints(node: &NodeProto, name: &str) -> Vec<i64> {
    attr(node, name).map(|a| a.ints.clone()).unwrap_or_default()
}

fn auto_pad(node: &NodeProto) -> String {
    attr(node, "auto_pad")
        .and_then(|a| a.s.as_ref())
        .map_or("NOTSET".into(), |s| String::from_utf8_lossy(s).into_owned())
}

/// An attribute that must be the same along both axes (strides), as one number.
fn square(node: &NodeProto, name: &str, default: i64) -> Result<usize, String> {
    let v = attr_ints(node, name);
    let s = match v[..] {
        [] => default,
        [a, b] if a == b => a,
        _ => {
            return Err(format!(
                "{}: {name} {v:?}: zeronn needs the same value along height and width",
                node_name(node)
            ));
        }
    };
    if s < 1 {
        return Err(format!(
            "{}: {name} {v:?} must be positive",
            node_name(node)
        ));
    }
    Ok(s as usize)
}

fn check_ones(node: &NodeProto, name: &str) -> Result<(), String> {
    let v = attr_ints(node, name);
    if v.iter().any(|&d| d != 1) {
        return Err(format!(
            "{}: {name} {v:?} is not supported (only 1)",
            node_name(node)
        ));
    }
    Ok(())
}

/// A Conv's padding, the same on all four sides.
fn conv_pad(node: &NodeProto, kh: usize, kw: usize, stride: usize) -> Result<usize, String> {
    let name = node_name(node);
    match auto_pad(node).as_str() {
        "NOTSET" => {
            let p = attr_ints(node, "pads");
            match p[..] {
                [] => Ok(0),
                [a, b, c, d] if a == b && b == c && c == d && a >= 0 => Ok(a as usize),
                _ => Err(format!(
                    "{name} (Conv): pads {p:?}: zeronn needs the same padding on all four sides"
                )),
            }
        }
        "VALID" => Ok(0),
        "SAME_UPPER" | "SAME_LOWER" if stride == 1 && kh == kw && kh % 2 == 1 => Ok(kh / 2),
        a => Err(format!(
            "{name} (Conv): auto_pad {a} is not supported here (use explicit pads)"
        )),
    }
}

/// A constant broadcast over one sample of `shape`, one value per value: a scalar, one per
/// channel of an image (`[C, 1, 1]` or `[1, C, 1, 1]`), or one per value.
fn per_value(c: &[f32], dims: &[i64], shape: Shape) -> Option<Vec<f32>> {
    let n = shape.len();
    if c.len() == 1 {
        return Some(vec![c[0]; n]);
    }
    if c.len() == n {
        // Per value, with the batch dimension (if any) of 1.
        let lead = dims.len().saturating_sub(match shape {
            Shape::Flat(_) => 1,
            Shape::Image(_) => 3,
        });
        return dims[..lead].iter().all(|&d| d == 1).then(|| c.to_vec());
    }
    if let Shape::Image(d) = shape {
        let trailing_ones = dims.len() >= 3 && dims[dims.len() - 2..].iter().all(|&x| x == 1);
        if c.len() == d.channels && trailing_ones {
            let plane = d.plane();
            return Some(
                c.iter()
                    .flat_map(|&x| std::iter::repeat_n(x, plane))
                    .collect(),
            );
        }
    }
    None
}

/// Whether per-value `v` over an image of `d` is one value per channel.
fn per_channel(v: &[f32], d: Dims) -> bool {
    v.chunks_exact(d.plane())
        .all(|p| p.iter().all(|&x| x == p[0]))
}

/// `[rows, cols]` of a 2-D shape.
fn two_dims(d: &[i64]) -> Option<[usize; 2]> {
    match *d {
        [r, c] if r > 0 && c > 0 => Some([r as usize, c as usize]),
        _ => None,
    }
}

/// A bias of `n` values from `c` (`n` values, or one broadcast).
fn bias(c: &[f32], n: usize) -> Option<Vec<f32>> {
    match c.len() {
        1 => Some(vec![c[0]; n]),
        l if l == n => Some(c.to_vec()),
        _ => None,
    }
}

/// Element count a tensor's shape promises (a scalar has one).
fn count(t: &TensorProto) -> Result<usize, String> {
    t.dims.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d)
            .ok()
            .and_then(|d| n.checked_mul(d))
            .ok_or_else(|| format!("bad shape {:?}", t.dims))
    })
}

fn check_stored(t: &TensorProto) -> Result<(), String> {
    if t.data_location == Some(DataLocation::External as i32) {
        return Err(
            "data in an external file is not supported (save the model with its weights inside)"
                .into(),
        );
    }
    Ok(())
}

/// A FLOAT tensor's values (raw little-endian bytes or `float_data`), checked against its shape.
fn floats(t: &TensorProto) -> Result<Vec<f32>, String> {
    check_stored(t)?;
    let ty = t.data_type.unwrap_or(0);
    if ty != DataType::Float as i32 {
        return Err(format!(
            "type {}; zeronn imports FLOAT weights",
            type_name(ty)
        ));
    }
    let n = count(t)?;
    let v: Vec<f32> = match &t.raw_data {
        Some(raw) if !raw.is_empty() || t.float_data.is_empty() => {
            if raw.len() != n * 4 {
                return Err(format!(
                    "{} bytes of data for shape {:?} ({n} floats)",
                    raw.len(),
                    t.dims
                ));
            }
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        }
        _ => t.float_data.clone(),
    };
    if v.len() != n {
        return Err(format!("{} values for shape {:?} ({n})", v.len(), t.dims));
    }
    Ok(v)
}

/// An INT64 tensor's values (a Reshape's shape).
fn ints(t: &TensorProto) -> Result<Vec<i64>, String> {
    check_stored(t)?;
    let ty = t.data_type.unwrap_or(0);
    if ty != DataType::Int64 as i32 {
        return Err(format!("type {}, not INT64", type_name(ty)));
    }
    let n = count(t)?;
    let v: Vec<i64> = match &t.raw_data {
        Some(raw) if !raw.is_empty() || t.int64_data.is_empty() => {
            if raw.len() != n * 8 {
                return Err(format!("{} bytes of data for {n} INT64 values", raw.len()));
            }
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
                .collect()
        }
        _ => t.int64_data.clone(),
    };
    if v.len() != n {
        return Err(format!("{} values for shape {:?}", v.len(), t.dims));
    }
    Ok(v)
}

/// A BOOL tensor's values (Dropout's training_mode).
fn bools(t: &TensorProto) -> Result<Vec<bool>, String> {
    check_stored(t)?;
    if t.data_type != Some(DataType::Bool as i32) {
        return Err("not BOOL".into());
    }
    Ok(match &t.raw_data {
        Some(raw) if !raw.is_empty() => raw.iter().map(|&b| b != 0).collect(),
        _ => t.int32_data.iter().map(|&b| b != 0).collect(),
    })
}
