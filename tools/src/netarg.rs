//! A layer list written on the command line (`--net`), and the book's conv nets as presets
//! (`--preset`).
//!
//! `--net` takes comma-separated layers, applied to the images (1 × 28 × 28 for MNIST) in
//! order; a SoftmaxWithLoss is appended when the list does not end with `softmax`:
//!
//! | token | layer |
//! | --- | --- |
//! | `conv30x5` | Convolution: 30 filters of 5 × 5, stride 1, no padding |
//! | `conv16x3p1`, `conv16x3s2p1` | … with padding `p`, stride `s` |
//! | `pool2`, `pool3s2` | max Pooling of 2 × 2 every 2, of 3 × 3 every 2 |
//! | `100` | Affine to 100 values |
//! | `relu`, `sigmoid` | activations |
//! | `bn` | BatchNorm over the values of the layer before |
//! | `dropout`, `dropout0.3` | Dropout (ratio 0.5, 0.3) |
//! | `softmax` | SoftmaxWithLoss (last) |
//!
//! The book's SimpleConvNet is `conv30x5,relu,pool2,100,relu,10`.

use zeronn::layers::{Convolution, Dims};
use zeronn::net::{Layer, NetSpec};
use zeronn::{Error, WeightInit};

/// The book's conv nets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// ch07's SimpleConvNet and train_convnet.py: conv 30×5×5, ReLU, pool 2, Affine 100,
    /// ReLU, Affine 10; init std 0.01; Adam lr 0.001; batch 100; 20 epochs
    SimpleConvnet,
    /// ch08's DeepConvNet and train_deepnet.py: six conv 3×3 (16, 16, 32, 32, 64, 64) with
    /// ReLU, a pool after each pair, Affine 50, ReLU, Dropout 0.5, Affine 10, Dropout 0.5;
    /// He init; Adam lr 0.001; batch 100; 20 epochs
    DeepConvnet,
}

impl Preset {
    /// The net, for 1 × 28 × 28 images and 10 classes.
    pub fn spec(self) -> NetSpec {
        match self {
            Preset::SimpleConvnet => NetSpec::simple_conv_net(Dims::new(1, 28, 28), 30, 5, 100, 10),
            Preset::DeepConvnet => NetSpec::deep_conv_net(),
        }
    }

    /// The weight initialisation of the book's script.
    pub fn weight_init(self) -> WeightInit {
        match self {
            Preset::SimpleConvnet => WeightInit::Std(0.01),
            Preset::DeepConvnet => WeightInit::He,
        }
    }

    /// The epochs of the book's script.
    pub const EPOCHS: usize = 20;
}

/// The images of MNIST as a net's input.
pub const MNIST: Dims = Dims::new(1, 28, 28);

/// The layer list `text` (see the module docs) over inputs of shape `input`, ending in
/// `classes` scores; an error names the token whose layer does not fit.
pub fn parse_net(text: &str, input: Dims, classes: usize) -> Result<NetSpec, String> {
    let spec = parse_layers(text, input)?;
    if spec.output_size() != classes {
        return Err(format!(
            "--net: the last layer gives {} values per image, but there are {classes} classes \
             (end with {classes})",
            spec.output_size()
        ));
    }
    Ok(spec)
}

/// The layer list `text` over inputs of shape `input`, whatever its output size.
pub fn parse_layers(text: &str, input: Dims) -> Result<NetSpec, String> {
    let tokens: Vec<&str> = text.split(',').map(str::trim).collect();
    let mut spec = NetSpec::new(&[]);
    let mut dims = input;
    for (i, tok) in tokens.iter().enumerate() {
        let bad = |why: &str| format!("--net: layer {} '{tok}': {why}", i + 1);
        let layer = parse_layer(tok, dims).map_err(|e| bad(&e))?;
        if matches!(layer, Layer::SoftmaxWithLoss) && i + 1 != tokens.len() {
            return Err(bad("softmax must be the last layer"));
        }
        spec = spec.push(layer);
        // Check as we go, so the error names this token.
        spec.validate().map_err(|e| bad(&explain(&e)))?;
        dims = layer.output_dims(dims);
    }
    if !spec.has_loss() {
        spec = spec.push(Layer::SoftmaxWithLoss);
        spec.validate()
            .map_err(|e| format!("--net: {}", explain(&e)))?;
    }
    Ok(spec)
}

/// The layer list as `--net` writes it (the inverse of [`parse_layers`] over the net's input):
/// `conv30x5,relu,pool2,100,relu,10,softmax`.
pub fn format_net(spec: &NetSpec) -> String {
    spec.layers()
        .iter()
        .map(|l| match *l {
            Layer::Affine { output, .. } => output.to_string(),
            Layer::Relu => "relu".into(),
            Layer::Sigmoid => "sigmoid".into(),
            Layer::BatchNorm { .. } => "bn".into(),
            Layer::Dropout { ratio } => format!("dropout{ratio}"),
            Layer::SoftmaxWithLoss => "softmax".into(),
            Layer::Convolution(c) => {
                let mut t = format!("conv{}x{}", c.filters, c.kernel_h);
                if c.kernel_w != c.kernel_h {
                    t += &format!("x{}", c.kernel_w);
                }
                if c.stride != 1 {
                    t += &format!("s{}", c.stride);
                }
                if c.pad != 0 {
                    t += &format!("p{}", c.pad);
                }
                t
            }
            Layer::Pooling { h, w, stride } => {
                let mut t = format!("pool{h}");
                if w != h {
                    t += &format!("x{w}");
                }
                if stride != h {
                    t += &format!("s{stride}");
                }
                t
            }
            _ => l.name().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An input shape as `CxHxW` (`1x28x28`), or `N` for a flat input.
pub fn format_dims(d: Dims) -> String {
    if d.height == 1 && d.width == 1 {
        d.channels.to_string()
    } else {
        format!("{}x{}x{}", d.channels, d.height, d.width)
    }
}

/// The inverse of [`format_dims`].
pub fn parse_dims(s: &str) -> Result<Dims, String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse().ok().filter(|&n| n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("'{s}' is not an input shape (CxHxW, e.g. 1x28x28, or N)"))?;
    match v[..] {
        [n] => Ok(Dims::flat(n)),
        [c, h, w] => Ok(Dims::new(c, h, w)),
        _ => Err(format!(
            "'{s}' is not an input shape (CxHxW, e.g. 1x28x28, or N)"
        )),
    }
}

/// An error of `validate` in words.
fn explain(e: &Error) -> String {
    match *e {
        Error::LayerShape {
            what,
            expected,
            actual,
            ..
        } => format!("{what}: {actual} where {expected} fits"),
        ref other => other.to_string(),
    }
}

/// `s` as a number after the prefix `p`, if it starts so.
fn after<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    s.strip_prefix(p)
}

/// Splits `5s2p1` into the leading number and the `s`/`p` options.
fn numbers(s: &str) -> Result<(usize, Option<usize>, Option<usize>), String> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let lead = s[..end]
        .parse()
        .map_err(|_| format!("a size is missing in '{s}'"))?;
    let (mut stride, mut pad) = (None, None);
    let mut rest = &s[end..];
    while !rest.is_empty() {
        // By characters: the text may be any UTF-8 (a file's metadata, a typo).
        let mut chars = rest.chars();
        let key = chars.next().map(String::from).unwrap_or_default();
        let tail = chars.as_str();
        let end = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        let v: usize = tail[..end]
            .parse()
            .map_err(|_| format!("'{key}' needs a number"))?;
        match key.as_str() {
            "s" => stride = Some(v),
            "p" => pad = Some(v),
            _ => return Err(format!("unknown option '{key}' (s: stride, p: pad)")),
        }
        rest = &tail[end..];
    }
    Ok((lead, stride, pad))
}

/// Splits `3x5s2` into `3`, `5` and `s2`; `3s2` into `3`, `3` and `s2` (a square).
fn second(s: &str) -> Result<(usize, usize, &str), String> {
    let num = |s: &str| -> Result<(usize, usize), String> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let v = s[..end]
            .parse()
            .map_err(|_| format!("a size is missing in '{s}'"))?;
        Ok((v, end))
    };
    let (a, end) = num(s)?;
    match s[end..].strip_prefix('x') {
        Some(tail) => {
            let (b, e2) = num(tail)?;
            Ok((a, b, &tail[e2..]))
        }
        None => Ok((a, a, &s[end..])),
    }
}

fn parse_layer(tok: &str, dims: Dims) -> Result<Layer, String> {
    let t = tok.to_ascii_lowercase();
    if let Ok(n) = t.parse::<usize>() {
        return Ok(Layer::Affine {
            input: dims.len(),
            output: n,
        });
    }
    Ok(match t.as_str() {
        "relu" => Layer::Relu,
        "sigmoid" => Layer::Sigmoid,
        "bn" | "batchnorm" => Layer::BatchNorm {
            features: dims.len(),
        },
        "softmax" => Layer::SoftmaxWithLoss,
        "dropout" => Layer::Dropout { ratio: 0.5 },
        _ => {
            if let Some(r) = after(&t, "dropout") {
                let ratio: f32 = r.parse().map_err(|_| format!("'{r}' is not a ratio"))?;
                Layer::Dropout { ratio }
            } else if let Some(r) = after(&t, "conv") {
                let (filters, rest) = r
                    .split_once('x')
                    .ok_or("write a convolution as conv<filters>x<kernel>, e.g. conv30x5")?;
                let filters = filters
                    .parse()
                    .map_err(|_| format!("'{filters}' is not a number of filters"))?;
                let (kernel, kw, rest) = second(rest)?;
                let (_, stride, pad) = numbers(&format!("{kernel}{rest}"))?;
                Layer::Convolution(
                    Convolution::new(dims, filters, kernel)
                        .kernel(kernel, kw)
                        .stride(stride.unwrap_or(1))
                        .pad(pad.unwrap_or(0)),
                )
            } else if let Some(r) = after(&t, "pool") {
                let (k, w, rest) = second(r)?;
                let (_, stride, pad) = numbers(&format!("{k}{rest}"))?;
                if pad.is_some() {
                    return Err("Pooling takes no padding".into());
                }
                Layer::Pooling {
                    h: k,
                    w,
                    stride: stride.unwrap_or(k),
                }
            } else {
                return Err(
                    "unknown layer (conv<F>x<K>[s<S>][p<P>], pool<K>[s<S>], <N> for an Affine, \
                     relu, sigmoid, bn, dropout[<R>], softmax)"
                        .into(),
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_is_an_error_not_a_panic() {
        // Found by the safetensors fuzzer: a multi-byte character after an option.
        for text in [
            "conv2x3p1\u{186}elu",
            "pool2s\u{e9}",
            "conv\u{1F600}x3",
            "\u{e9}",
            "conv2x3x",
        ] {
            assert!(parse_layers(text, MNIST).is_err(), "{text}");
        }
    }

    #[test]
    fn format_net_reads_back_as_the_same_list() {
        for text in [
            "conv30x5,relu,pool2,100,relu,10,softmax",
            "conv8x3x5s2p1,sigmoid,pool3x2s2,bn,dropout0.3,20,relu,10",
            "100,bn,relu,dropout0.5,100,sigmoid,10,softmax",
        ] {
            let spec = parse_layers(text, MNIST).unwrap();
            assert_eq!(
                parse_layers(&format_net(&spec), MNIST).unwrap(),
                spec,
                "{text}"
            );
        }
        assert_eq!(parse_dims(&format_dims(MNIST)).unwrap(), MNIST);
        assert_eq!(parse_dims("784").unwrap(), Dims::flat(784));
        assert!(parse_dims("1x28").is_err() && parse_dims("0x1x1").is_err());
    }

    #[test]
    fn the_books_simple_convnet_written_out_is_the_preset() {
        let spec = parse_net("conv30x5,relu,pool2,100,relu,10", MNIST, 10).unwrap();
        assert_eq!(spec, Preset::SimpleConvnet.spec());
        let deep = parse_net(
            "conv16x3p1,relu,conv16x3p1,relu,pool2,conv32x3p1,relu,conv32x3p2,relu,pool2,\
             conv64x3p1,relu,conv64x3p1,relu,pool2,50,relu,dropout,10,dropout,softmax",
            MNIST,
            10,
        )
        .unwrap();
        assert_eq!(deep, Preset::DeepConvnet.spec());
    }

    #[test]
    fn options_and_mlps_parse() {
        let spec = parse_net("conv4x3s2p1,bn,sigmoid,pool3s1,dropout0.25,10", MNIST, 10).unwrap();
        let Layer::Convolution(c) = spec.layers()[0] else {
            panic!()
        };
        assert_eq!((c.stride, c.pad, c.filters), (2, 1, 4));
        assert_eq!(c.output_dims(), Dims::new(4, 14, 14));
        assert_eq!(
            spec.layers()[3],
            Layer::Pooling {
                h: 3,
                w: 3,
                stride: 1
            }
        );
        assert_eq!(spec.layers()[4], Layer::Dropout { ratio: 0.25 });
        let mlp = parse_net("50,relu,10", MNIST, 10).unwrap();
        assert_eq!(
            mlp,
            NetSpec::mlp(784, &[50], 10, zeronn::net::MlpOptions::PLAIN)
        );
    }

    #[test]
    fn errors_name_the_layer() {
        let e = parse_net("conv30x5,relu,pool2,pool2,pool2,pool2,pool2,10", MNIST, 10).unwrap_err();
        assert!(e.contains("layer 7 'pool2'"), "{e}");
        let e = parse_net("conv30x29", MNIST, 10).unwrap_err();
        assert!(e.contains("layer 1 'conv30x29'"), "{e}");
        let e = parse_net("conv30x5,relu,pool2,100", MNIST, 10).unwrap_err();
        assert!(e.contains("100 values"), "{e}");
        let e = parse_net("conv30x5,relu,maxpool,10", MNIST, 10).unwrap_err();
        assert!(e.contains("layer 3 'maxpool': unknown layer"), "{e}");
        let e = parse_net("conv30x5q1,10", MNIST, 10).unwrap_err();
        assert!(e.contains("unknown option 'q'"), "{e}");
        let e = parse_net("softmax,10", MNIST, 10).unwrap_err();
        assert!(e.contains("layer 1"), "{e}");
        assert!(parse_net("conv0x5,10", MNIST, 10).is_err());
        assert!(parse_net("conv3x3s0,10", MNIST, 10).is_err());
        assert!(parse_net("dropout1.5,10", MNIST, 10).is_err());
    }
}
