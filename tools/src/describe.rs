//! Short descriptions of nets for messages and headers.

use zeronn::{Layer, NetSpec};

/// The sizes of a net's values from input to output through each Affine, as the book writes
/// them: `784-50-10`.
pub fn sizes(spec: &NetSpec) -> String {
    let mut parts = vec![spec.input_size().to_string()];
    for l in spec.layers() {
        if let Layer::Affine { output, .. } = l {
            parts.push(output.to_string());
        }
    }
    parts.join("-")
}

/// The layer list, one name per layer: `Conv(30x5x5) Relu Pool(2x2,stride 2) Affine(4320,100)
/// … SoftmaxWithLoss`.
pub fn layers(spec: &NetSpec) -> String {
    spec.layers()
        .iter()
        .map(|l| match *l {
            Layer::Affine { input, output } => format!("Affine({input},{output})"),
            Layer::Dropout { ratio } => format!("Dropout({ratio})"),
            Layer::Convolution(c) => {
                let mut s = format!("Conv({}x{}x{}", c.filters, c.kernel_h, c.kernel_w);
                if c.stride != 1 {
                    s += &format!(",stride {}", c.stride);
                }
                if c.pad != 0 {
                    s += &format!(",pad {}", c.pad);
                }
                s + ")"
            }
            Layer::Pooling { h, w, stride } => format!("Pool({h}x{w},stride {stride})"),
            other => other.name().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
