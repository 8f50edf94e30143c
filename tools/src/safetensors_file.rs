//! safetensors in and out, with the book's tensor names.
//!
//! A zeronn net as safetensors holds one F32 tensor per named tensor of the net: `W1`, `b1`,
//! `gamma1`, `beta1`, …, and the BatchNorm state `running_mean1`, `running_var1`, …. An
//! Affine's `W` is `input × output` as zeronn and the book keep it (the transpose of PyTorch's
//! `Linear.weight`), a Convolution's `W` is `filters × channels × kh × kw` (as PyTorch's), and
//! vectors are 1-D. The metadata says which net the tensors belong to, so the file imports
//! without `--net`: `zeronn.net` is the layer list as `--net` writes it
//! (`conv30x5,relu,pool2,100,relu,10,softmax`) and `zeronn.input` the input's shape (`1x28x28`,
//! or `784` for a flat input).

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use zeronn::layers::Dims;
use zeronn::{Layer, NetSpec};

use crate::netarg::{format_dims, format_net, parse_dims, parse_layers};

/// Metadata key of the layer list.
pub const NET_KEY: &str = "zeronn.net";
/// Metadata key of the input shape.
pub const INPUT_KEY: &str = "zeronn.input";

/// Every tensor of `spec` (parameters, then state): its name, whether it is state, its
/// range in that buffer and its shape.
fn tensors(spec: &NetSpec) -> Vec<(&'static str, bool, std::ops::Range<usize>, Vec<usize>)> {
    let mut out = Vec::new();
    let (mut params, mut states) = (spec.tensors(), spec.state_tensors());
    for layer in spec.layers() {
        let (p, s): (Vec<Vec<usize>>, Vec<Vec<usize>>) = match *layer {
            Layer::Affine { input, output } => (vec![vec![input, output], vec![output]], vec![]),
            Layer::Convolution(c) => (
                vec![
                    vec![c.filters, c.input.channels, c.kernel_h, c.kernel_w],
                    vec![c.filters],
                ],
                vec![],
            ),
            Layer::BatchNorm { features } => (vec![vec![features]; 2], vec![vec![features]; 2]),
            _ => (vec![], vec![]),
        };
        for shape in p {
            let t = params.next().expect("a tensor for each parameter shape");
            out.push((t.name, false, t.range(), shape));
        }
        for shape in s {
            let t = states.next().expect("a tensor for each state shape");
            out.push((t.name, true, t.range(), shape));
        }
    }
    out
}

/// The bytes of a safetensors file holding the net (see the module docs).
pub fn export(spec: &NetSpec, params: &[f32], state: &[f32]) -> Result<Vec<u8>, String> {
    spec.validate().map_err(|e| e.to_string())?;
    if params.len() != spec.param_len() || state.len() != spec.state_len() {
        return Err("the parameters or state do not fit the net".into());
    }
    let list = tensors(spec);
    let bytes: Vec<Vec<u8>> = list
        .iter()
        .map(|(_, is_state, range, _)| {
            let src = if *is_state { state } else { params };
            src[range.clone()]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    let views = list
        .iter()
        .zip(&bytes)
        .map(|((name, _, _, shape), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let meta = HashMap::from([
        (NET_KEY.to_string(), format_net(spec)),
        (INPUT_KEY.to_string(), format_dims(spec.input_dims())),
    ]);
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

/// A net read from a safetensors file: the layer list from `net` (`--net` syntax) or else
/// the file's metadata, over inputs of shape `input` or else the metadata's (or MNIST's
/// `1x28x28`). Every tensor of the net must be in the file as F32 of its shape, and nothing
/// else may be.
pub fn import(
    bytes: &[u8],
    net: Option<&str>,
    input: Option<Dims>,
) -> Result<(NetSpec, Vec<f32>, Vec<f32>), String> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let text = match net {
        Some(n) => n.to_string(),
        None => info.get(NET_KEY).cloned().ok_or(
            "the file does not say which net it holds (no zeronn.net metadata): give --net",
        )?,
    };
    let dims = match (input, info.get(INPUT_KEY)) {
        (Some(d), _) => d,
        (None, Some(s)) => parse_dims(s).map_err(|e| format!("metadata {INPUT_KEY}: {e}"))?,
        (None, None) => crate::netarg::MNIST,
    };
    let spec = parse_layers(&text, dims)?;
    let (mut params, mut state) = (
        vec![0.0f32; spec.param_len()],
        vec![0.0f32; spec.state_len()],
    );
    let list = tensors(&spec);
    for (name, is_state, range, shape) in &list {
        let t = file.tensor(name).map_err(|_| {
            format!("tensor {name} (shape {shape:?}) is missing; the net is {text}")
        })?;
        if t.dtype() != Dtype::F32 {
            return Err(format!(
                "tensor {name} is {:?}; zeronn reads F32",
                t.dtype()
            ));
        }
        if t.shape() != &shape[..] {
            return Err(format!(
                "tensor {name} has shape {:?}; the net {text} needs {shape:?}{}",
                t.shape(),
                if shape.len() == 2 && t.shape() == [shape[1], shape[0]] {
                    " (zeronn's W is input × output, the transpose of PyTorch's Linear.weight)"
                } else {
                    ""
                }
            ));
        }
        let dst = if *is_state { &mut state } else { &mut params };
        for (d, b) in dst[range.clone()].iter_mut().zip(t.data().chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    let mut extra: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|n| !list.iter().any(|(name, ..)| name == n))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(format!(
            "tensors {} are not in the net {text} (a file for another net?)",
            extra.join(", ")
        ));
    }
    Ok((spec, params, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netarg::MNIST;

    #[test]
    fn a_conv_net_with_batch_norm_round_trips_bit_for_bit() {
        let spec = parse_layers("conv4x3p1,bn,relu,pool2,20,relu,dropout0.25,10", MNIST).unwrap();
        let params: Vec<f32> = (0..spec.param_len()).map(|i| i as f32 * 0.001).collect();
        let state: Vec<f32> = (0..spec.state_len()).map(|i| 1.0 + i as f32).collect();
        let bytes = export(&spec, &params, &state).unwrap();
        let (s, p, st) = import(&bytes, None, None).unwrap();
        assert_eq!((s, p, st), (spec, params, state));
    }

    #[test]
    fn wrong_files_are_refused_with_the_reason() {
        let spec = parse_layers("100,relu,10", Dims::flat(784)).unwrap();
        let params = vec![0.5f32; spec.param_len()];
        let bytes = export(&spec, &params, &[]).unwrap();
        // Another net given on the command line: W2 of the wrong shape.
        let e = import(&bytes, Some("100,relu,20"), None).unwrap_err();
        assert!(e.contains("W2") && e.contains("[100, 20]"), "{e}");
        // A W stored as PyTorch stores it.
        let w = vec![0u8; 784 * 100 * 4];
        let v = TensorView::new(Dtype::F32, vec![100, 784], &w).unwrap();
        let torch_like = safetensors::serialize([("W1", v)], None).unwrap();
        let e = import(&torch_like, Some("100"), Some(Dims::flat(784))).unwrap_err();
        assert!(e.contains("transpose"), "{e}");
        let e = import(&torch_like, None, None).unwrap_err();
        assert!(e.contains("--net"), "{e}");
        assert!(import(b"\x08\x00\x00\x00\x00\x00\x00\x00{}", None, None).is_err());
        assert!(
            import(&bytes[..bytes.len() - 1], None, None)
                .unwrap_err()
                .contains("not a safetensors")
        );
    }
}
