//! zeronn net → ONNX graph (opset 13), for ONNX Runtime, Netron and friends.
//!
//! The graph takes `x` (`N × features`, or `N × C × H × W` for a net that starts with a
//! Convolution) and gives `logits` (what zeronn's `predict` gives) and, for a net that ends
//! with SoftmaxWithLoss, `probabilities` (their softmax). Layers become nodes named as the
//! book's `OrderedDict` names them (`Affine1`, `Relu1`, `Conv1`, `Pool1`, …) and the
//! parameters initializers with the book's names (`W1`, `b1`, `gamma1`, …): Affine → `Gemm`
//! (`W` as stored, input × output), Convolution → `Conv`, Pooling → `MaxPool`, Relu, Sigmoid,
//! BatchNorm → `BatchNormalization` (on `N × features`; after a Convolution, where zeronn's
//! BatchNorm is per value, its inference form `x·s + t` as `Mul` and `Add`), Dropout → `Mul` by
//! `1 − ratio` (the book's inference scaling), and a `Flatten` before the first Affine after an
//! image.

use prost::Message;
use zeronn::layers::{BATCH_NORM_EPS, Dims};
use zeronn::{Layer, NetSpec};

use super::proto::attribute_proto::AttributeType;
use super::proto::tensor_proto::DataType;
use super::proto::tensor_shape_proto::{Dimension, dimension};
use super::proto::type_proto::{self, Value as Type};
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The opset the graph declares.
pub const OPSET: i64 = 13;
/// The IR version that goes with it.
const IR_VERSION: i64 = 7;

/// The bytes of an ONNX model computing the net's inference (see the module docs).
pub fn export(spec: &NetSpec, params: &[f32], state: &[f32]) -> Result<Vec<u8>, String> {
    spec.validate().map_err(|e| e.to_string())?;
    if params.len() != spec.param_len() || state.len() != spec.state_len() {
        return Err(format!(
            "{} parameters and {} state values for a net of {} and {}",
            params.len(),
            state.len(),
            spec.param_len(),
            spec.state_len()
        ));
    }
    let mut g = Graph::default();
    let mut tensors = spec.tensors();
    let mut states = spec.state_tensors();
    let next = |it: &mut zeronn::net::Tensors, buf: &[f32]| -> Result<(String, Vec<f32>), String> {
        let t = it
            .next()
            .ok_or("internal: fewer tensors than layers need")?;
        Ok((t.name.to_string(), buf[t.range()].to_vec()))
    };
    let mut dims = spec.input_dims();
    let image_input = matches!(spec.layers()[0], Layer::Convolution(_));
    let mut image = image_input;
    let mut cur = "x".to_string();
    let mut count = std::collections::HashMap::<&str, usize>::new();
    let mut numbered = |what: &'static str| {
        let n = count.entry(what).or_default();
        *n += 1;
        format!("{what}{n}")
    };
    for (i, layer) in spec.layers().iter().enumerate() {
        if i + 1 == spec.len() && matches!(layer, Layer::SoftmaxWithLoss) {
            break;
        }
        let out = match *layer {
            Layer::Affine { input, output } => {
                if image {
                    let name = numbered("Flatten");
                    g.node("Flatten", &name, &[&cur], vec![attr_int("axis", 1)]);
                    cur = name;
                    image = false;
                }
                let (w, wv) = next(&mut tensors, params)?;
                let (b, bv) = next(&mut tensors, params)?;
                g.init(&w, &[input, output], wv);
                g.init(&b, &[output], bv);
                let name = numbered("Affine");
                g.node("Gemm", &name, &[&cur, &w, &b], vec![]);
                name
            }
            Layer::Relu => {
                let name = numbered("Relu");
                g.node("Relu", &name, &[&cur], vec![]);
                name
            }
            Layer::Sigmoid => {
                let name = numbered("Sigmoid");
                g.node("Sigmoid", &name, &[&cur], vec![]);
                name
            }
            Layer::Convolution(c) => {
                let (w, wv) = next(&mut tensors, params)?;
                let (b, bv) = next(&mut tensors, params)?;
                let shape = [c.filters, c.input.channels, c.kernel_h, c.kernel_w];
                g.init(&w, &shape, wv);
                g.init(&b, &[c.filters], bv);
                let name = numbered("Conv");
                let (s, p) = (c.stride as i64, c.pad as i64);
                let attrs = vec![
                    attr_ints("kernel_shape", &[c.kernel_h as i64, c.kernel_w as i64]),
                    attr_ints("strides", &[s, s]),
                    attr_ints("pads", &[p, p, p, p]),
                ];
                g.node("Conv", &name, &[&cur, &w, &b], attrs);
                name
            }
            Layer::Pooling { h, w, stride } => {
                let name = numbered("Pool");
                let s = stride as i64;
                let attrs = vec![
                    attr_ints("kernel_shape", &[h as i64, w as i64]),
                    attr_ints("strides", &[s, s]),
                ];
                g.node("MaxPool", &name, &[&cur], attrs);
                name
            }
            Layer::BatchNorm { features } => {
                let (gamma, gv) = next(&mut tensors, params)?;
                let (beta, bv) = next(&mut tensors, params)?;
                let (mean, mv) = next(&mut states, state)?;
                let (var, vv) = next(&mut states, state)?;
                let name = numbered("BatchNorm");
                if image {
                    // x·s + t with s = gamma / √(var + ε), t = beta − mean·s, per value.
                    let s: Vec<f64> = gv
                        .iter()
                        .zip(&vv)
                        .map(|(&g, &v)| g as f64 / (v as f64 + BATCH_NORM_EPS).sqrt())
                        .collect();
                    let t: Vec<f32> = (0..features)
                        .map(|j| (bv[j] as f64 - mv[j] as f64 * s[j]) as f32)
                        .collect();
                    let shape = [dims.channels, dims.height, dims.width];
                    let (sn, tn) = (format!("{name}_scale"), format!("{name}_shift"));
                    g.init(&sn, &shape, s.iter().map(|&v| v as f32).collect());
                    g.init(&tn, &shape, t);
                    let mul = format!("{name}_mul");
                    g.node("Mul", &mul, &[&cur, &sn], vec![]);
                    g.node("Add", &name, &[&mul, &tn], vec![]);
                } else {
                    g.init(&gamma, &[features], gv);
                    g.init(&beta, &[features], bv);
                    g.init(&mean, &[features], mv);
                    g.init(&var, &[features], vv);
                    let attrs = vec![attr_float("epsilon", BATCH_NORM_EPS as f32)];
                    g.node(
                        "BatchNormalization",
                        &name,
                        &[&cur, &gamma, &beta, &mean, &var],
                        attrs,
                    );
                }
                name
            }
            Layer::Dropout { ratio } => {
                let name = numbered("Dropout");
                let scale = format!("{name}_scale");
                g.init(&scale, &[], vec![1.0 - ratio]);
                g.node("Mul", &name, &[&cur, &scale], vec![]);
                name
            }
            Layer::SoftmaxWithLoss => {
                return Err("SoftmaxWithLoss before the last layer".into());
            }
            l => return Err(format!("layer {} has no ONNX export yet", l.name())),
        };
        dims = layer.output_dims(dims);
        cur = out;
    }
    // The scores are called `logits`: rename the last node's output.
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec!["logits".into()];
    }
    let classes = dims.len();
    let mut outputs = vec![value_info("logits", &[classes])];
    if spec.has_loss() {
        g.node("Softmax", "Softmax", &["logits"], vec![attr_int("axis", 1)]);
        g.nodes.last_mut().expect("just pushed").output = vec!["probabilities".into()];
        outputs.push(value_info("probabilities", &[classes]));
    }
    let input_dims: Vec<usize> = if image_input {
        let d: Dims = spec.input_dims();
        vec![d.channels, d.height, d.width]
    } else {
        vec![spec.input_size()]
    };
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("zeronn".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            name: Some("zeronn".into()),
            node: g.nodes,
            initializer: g.inits,
            input: vec![value_info("x", &input_dims)],
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

#[derive(Default)]
pub(super) struct Graph {
    pub(super) nodes: Vec<NodeProto>,
    pub(super) inits: Vec<TensorProto>,
}

impl Graph {
    /// A node whose output tensor has the node's name.
    pub(super) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..Default::default()
        });
    }

    /// A FLOAT initializer (raw little-endian data).
    pub(super) fn init(&mut self, name: &str, dims: &[usize], values: Vec<f32>) {
        self.inits.push(TensorProto {
            name: Some(name.to_string()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
    }
}

/// A FLOAT tensor `N × dims` (the batch `N` symbolic).
pub(super) fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let batch = Dimension {
        value: Some(dimension::Value::DimParam("N".into())),
        ..Default::default()
    };
    let rest = dims.iter().map(|&d| Dimension {
        value: Some(dimension::Value::DimValue(d as i64)),
        ..Default::default()
    });
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(Type::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: std::iter::once(batch).chain(rest).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

pub(super) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}
