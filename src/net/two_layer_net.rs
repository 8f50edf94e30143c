//! `TwoLayerNet`: Affine → Relu (or Sigmoid) → Affine → SoftmaxWithLoss, the book's chapter 5
//! net, as a preset of the general [`Net`](crate::net::Net).
//!
//! Buffers (all owned by the caller; lengths from the `const fn`s of [`TwoLayerShape`]):
//! - params `[W1 | b1 | W2 | b2]`: W1 input×hidden, b1 hidden, W2 hidden×output, b2 output
//! - grads: the same layout
//! - workspace, for a batch of `B` rows: `a1` B×hidden (the hidden activations),
//!   `y` B×output (scores, then probabilities, then `dy`), `d1` B×hidden (for backward),
//!   then whatever remains is gemm packing space (see [`crate::gemm::PACK_LEN`]).

use crate::error::{Error, Result};
use crate::layers::Affine;
use crate::net::multi_layer_net::Net;
use crate::net::spec::{Activation, MlpOptions, NetSpec, Tensor};

/// The book's `TwoLayerNet`: the general [`Net`] of a [`TwoLayerShape`].
///
/// ```
/// use zeronn::{TwoLayerNet, TwoLayerShape};
/// const SHAPE: TwoLayerShape = TwoLayerShape::new(4, 3, 2);
/// let net = TwoLayerNet::<f32, _>::new(SHAPE, vec![0.0; SHAPE.param_len()])?;
/// assert_eq!(net.spec().layers().len(), 4);
/// # Ok::<(), zeronn::Error>(())
/// ```
pub type TwoLayerNet<T, P> = Net<T, P>;

/// The sizes of a [`TwoLayerNet`], and from them every buffer length, as `const fn`s so that
/// firmware can declare `static` buffers of exactly the right size. (Lengths saturate at
/// `usize::MAX` instead of overflowing; [`TwoLayerShape::validate`] rejects such shapes.)
///
/// ```
/// use zeronn::TwoLayerShape;
/// const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);
/// static PARAMS: [f32; SHAPE.param_len()] = [0.0; SHAPE.param_len()];
/// static WORKSPACE: [f32; SHAPE.min_workspace_len(1)] = [0.0; SHAPE.min_workspace_len(1)];
/// assert_eq!(PARAMS.len(), 784 * 50 + 50 + 50 * 10 + 10);
/// assert_eq!(WORKSPACE.len(), 50 + 10 + 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoLayerShape {
    /// Inputs per sample (784 for MNIST).
    pub input_size: usize,
    /// Hidden units (50 in the book).
    pub hidden_size: usize,
    /// Classes (10 for MNIST).
    pub output_size: usize,
    /// The hidden activation.
    pub activation: Activation,
}

impl TwoLayerShape {
    /// The book's `TwoLayerNet(input_size, hidden_size, output_size)` with ReLU.
    pub const fn new(input_size: usize, hidden_size: usize, output_size: usize) -> Self {
        TwoLayerShape {
            input_size,
            hidden_size,
            output_size,
            activation: Activation::Relu,
        }
    }

    /// The same sizes with another hidden activation.
    pub const fn with_activation(self, activation: Activation) -> Self {
        TwoLayerShape { activation, ..self }
    }

    /// The layer list: Affine, the activation, Affine, SoftmaxWithLoss.
    pub const fn spec(&self) -> NetSpec {
        NetSpec::mlp(
            self.input_size,
            &[self.hidden_size],
            self.output_size,
            MlpOptions {
                activation: self.activation,
                ..MlpOptions::PLAIN
            },
        )
    }

    /// The shape of a layer list that is a two-layer net (Affine, Relu or Sigmoid, Affine,
    /// and optionally SoftmaxWithLoss).
    pub fn from_spec(spec: &NetSpec) -> Option<TwoLayerShape> {
        use crate::net::Layer::*;
        let act = |l: &crate::net::Layer| match l {
            Relu => Some(Activation::Relu),
            Sigmoid => Some(Activation::Sigmoid),
            _ => None,
        };
        match spec.layers() {
            [
                Affine {
                    input,
                    output: hidden,
                },
                a,
                Affine { input: h2, output },
                rest @ ..,
            ] if matches!(rest, [] | [SoftmaxWithLoss]) && hidden == h2 => {
                Some(TwoLayerShape::new(*input, *hidden, *output).with_activation(act(a)?))
            }
            _ => None,
        }
    }

    /// The first layer.
    pub const fn affine1(&self) -> Affine {
        Affine::new(self.input_size, self.hidden_size)
    }

    /// The second layer.
    pub const fn affine2(&self) -> Affine {
        Affine::new(self.hidden_size, self.output_size)
    }

    /// Elements of the parameter buffer (and of the gradient buffer).
    pub const fn param_len(&self) -> usize {
        self.spec().param_len()
    }

    /// Workspace elements per batch row for `predict`, `loss` and `accuracy`.
    pub const fn predict_row_len(&self) -> usize {
        self.spec().predict_row_len()
    }

    /// Workspace elements per batch row for `gradient`.
    pub const fn gradient_row_len(&self) -> usize {
        self.spec().gradient_row_len()
    }

    /// The least workspace for any method with batches up to `max_batch`; the products run
    /// unpacked. Right for firmware.
    pub const fn min_workspace_len(&self, max_batch: usize) -> usize {
        self.spec().min_workspace_len(max_batch)
    }

    /// The least workspace for `predict`/`loss`/`accuracy` with batches up to `max_batch`.
    pub const fn min_predict_workspace_len(&self, max_batch: usize) -> usize {
        self.spec().min_predict_workspace_len(max_batch)
    }

    /// Workspace for any method with batches up to `max_batch`, plus full gemm packing space
    /// ([`PACK_LEN`](crate::gemm::PACK_LEN)) for speed. Right for the desktop.
    pub const fn workspace_len(&self, max_batch: usize) -> usize {
        self.spec().workspace_len(max_batch)
    }

    /// The named tensors, in buffer order. (Offsets saturate for a shape too large for
    /// `usize`, which [`TwoLayerShape::validate`] rejects.)
    pub const fn layout(&self) -> [Tensor; 4] {
        let (i, h, o) = (self.input_size, self.hidden_size, self.output_size);
        let ih = i.saturating_mul(h);
        let (b1, w2) = (ih, ih.saturating_add(h));
        [
            Tensor {
                name: "W1",
                offset: 0,
                rows: i,
                cols: h,
            },
            Tensor {
                name: "b1",
                offset: b1,
                rows: 1,
                cols: h,
            },
            Tensor {
                name: "W2",
                offset: w2,
                rows: h,
                cols: o,
            },
            Tensor {
                name: "b2",
                offset: w2.saturating_add(h.saturating_mul(o)),
                rows: 1,
                cols: o,
            },
        ]
    }

    /// Checks that every size is positive and the buffer lengths fit in `usize`.
    pub fn validate(&self) -> Result<()> {
        let (i, h, o) = (self.input_size, self.hidden_size, self.output_size);
        if i == 0 {
            return Err(Error::ZeroSize { what: "input_size" });
        }
        if h == 0 {
            return Err(Error::ZeroSize {
                what: "hidden_size",
            });
        }
        if o == 0 {
            return Err(Error::ZeroSize {
                what: "output_size",
            });
        }
        self.spec().validate()
    }
}

impl From<TwoLayerShape> for NetSpec {
    fn from(shape: TwoLayerShape) -> Self {
        shape.spec()
    }
}

impl From<&TwoLayerShape> for NetSpec {
    fn from(shape: &TwoLayerShape) -> Self {
        shape.spec()
    }
}
