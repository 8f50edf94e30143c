//! A net's architecture: a fixed-capacity list of layers, and from it, as `const fn`s, the
//! length of every buffer the net needs and the names and places of its tensors.
//!
//! ```
//! use zeronn::net::{Layer, NetSpec};
//! // 784-100-100-10 with BatchNorm, as the book's MultiLayerNetExtend(use_batchnorm=True).
//! const SPEC: NetSpec = NetSpec::new(&[
//!     Layer::Affine { input: 784, output: 100 },
//!     Layer::BatchNorm { features: 100 },
//!     Layer::Relu,
//!     Layer::Affine { input: 100, output: 100 },
//!     Layer::BatchNorm { features: 100 },
//!     Layer::Relu,
//!     Layer::Affine { input: 100, output: 10 },
//!     Layer::SoftmaxWithLoss,
//! ]);
//! static PARAMS: [f32; SPEC.param_len()] = [0.0; SPEC.param_len()];
//! static STATE: [f32; SPEC.state_len()] = [0.0; SPEC.state_len()];
//! assert_eq!(PARAMS.len(), 784 * 100 + 100 + 2 * 100 + 100 * 100 + 100 + 2 * 100 + 100 * 10 + 10);
//! assert_eq!(STATE.len(), 4 * 100);
//! assert!(SPEC.validate().is_ok());
//! ```
//!
//! # Buffers
//!
//! | buffer | holds | length |
//! | --- | --- | --- |
//! | params | the trainable tensors in layer order: `W1, b1, gamma1, beta1, W2, b2, …` | [`NetSpec::param_len`] |
//! | grads | their gradient, in the same layout | the same |
//! | state | what is kept but not trained: BatchNorm's `running_mean1, running_var1, …` | [`NetSpec::state_len`] |
//! | workspace | the activations of a batch, what backward needs, then gemm packing space | [`NetSpec::workspace_len`], [`NetSpec::min_workspace_len`], [`NetSpec::min_predict_workspace_len`] |
//!
//! Affine and Convolution layers are numbered in order for the names `W1`, `b1`, …;
//! BatchNorm layers have their own count (`gamma1`, `beta1`, `running_mean1`, …), which in the
//! book's nets (one BatchNorm after each hidden Affine) is the number of the Affine before.
//!
//! # The workspace
//!
//! For a batch of `B` rows: one *slot* of `B × width` for the output of every Affine,
//! Convolution and Pooling (and for the first layer if it is not one); the other layers work
//! in place on the slot before them,
//! except a BatchNorm, Sigmoid or SoftmaxWithLoss after a layer whose backward reads its own
//! output (a Relu, a Sigmoid, or a Pooling over a Relu's output), which gets a slot of its
//! own. Then, for training: each BatchNorm's
//! centred input `xc` (`B × features`), each Dropout's mask and each Pooling's argmax
//! (`B × width`), each BatchNorm's standard deviations (`features`, not per row) and each
//! Convolution's parameter gradient (for the fused SGD step), and one or two buffers of
//! `B × width` for the gradients that flow back (one if only one layer must pass a gradient to
//! the layer before it, two used in turn otherwise). Then, with any Convolution, room for one
//! sample's patches of the largest (`col`, [`NetSpec::col_len`]; in prediction it follows the
//! slots). Whatever follows is gemm packing space.
//!
//! ```
//! use zeronn::net::{Layer, NetSpec};
//! use zeronn::layers::{Convolution, Dims};
//! // The book's SimpleConvNet (ch07): conv 30×5×5, ReLU, pool 2×2, Affine 100, ReLU, Affine 10.
//! const SIMPLE: NetSpec = NetSpec::new(&[
//!     Layer::Convolution(Convolution::new(Dims::new(1, 28, 28), 30, 5)),
//!     Layer::Relu,
//!     Layer::Pooling { h: 2, w: 2, stride: 2 },
//!     Layer::Affine { input: 30 * 12 * 12, output: 100 },
//!     Layer::Relu,
//!     Layer::Affine { input: 100, output: 10 },
//!     Layer::SoftmaxWithLoss,
//! ]);
//! static WS: [f32; SIMPLE.min_predict_workspace_len(1)] = [0.0; SIMPLE.min_predict_workspace_len(1)];
//! assert_eq!(SIMPLE.param_len(), 30 * 25 + 30 + 4320 * 100 + 100 + 100 * 10 + 10);
//! assert_eq!(SIMPLE.col_len(), 25 * 24 * 24);
//! assert_eq!(WS.len(), 30 * 24 * 24 + 30 * 12 * 12 + 100 + 10 + 25 * 24 * 24);
//! assert!(SIMPLE.validate().is_ok());
//! ```

use crate::error::{Error, Result};
use crate::gemm::PACK_LEN;
pub use crate::layers::Dims;
use crate::layers::{Convolution, Pooling};
use crate::math::Float;

/// The most layers a [`NetSpec`] holds (the book's deepest nets have 26).
pub const MAX_LAYERS: usize = 32;

/// One layer of a net, with the book's names. Layers that change the number of values state
/// their input and output sizes; the others take the shape of the layer before.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    /// Fully connected, `out = x·W + b` (`W`: input × output).
    Affine {
        /// Values in (the previous layer's, flattened).
        input: usize,
        /// Values out.
        output: usize,
    },
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Batch normalization (the book's `BatchNormalization`), per value, with `gamma`, `beta`
    /// and the running mean and variance.
    BatchNorm {
        /// Values per sample (the previous layer's).
        features: usize,
    },
    /// Dropout of a fraction `ratio` of the values in training; scaled by `1 - ratio` in
    /// inference (the book's `Dropout`).
    Dropout {
        /// The fraction dropped, in `[0, 1)`.
        ratio: f32,
    },
    /// Softmax and the cross-entropy loss: the last layer of a net that trains.
    SoftmaxWithLoss,
    /// Convolution (the book's `Convolution`), stating the shape it takes: `W` is
    /// `filters × channels × kernel_h × kernel_w`, `b` is `filters`.
    Convolution(Convolution),
    /// Max pooling of `h × w` windows every `stride` values (the book's `Pooling`), over the
    /// shape of the layer before.
    Pooling {
        /// Window height.
        h: usize,
        /// Window width.
        w: usize,
        /// Step between two windows.
        stride: usize,
    },
}

impl Layer {
    /// Trainable parameters this layer owns.
    pub const fn param_len(&self) -> usize {
        match *self {
            Layer::Affine { input, output } => input.saturating_mul(output).saturating_add(output),
            Layer::BatchNorm { features } => features.saturating_mul(2),
            Layer::Convolution(c) => c.param_len(),
            _ => 0,
        }
    }

    /// Non-trainable values this layer keeps (BatchNorm's running mean and variance).
    pub const fn state_len(&self) -> usize {
        match *self {
            Layer::BatchNorm { features } => features.saturating_mul(2),
            _ => 0,
        }
    }

    /// The shape this layer gives for the shape `input` it takes.
    pub const fn output_dims(&self, input: Dims) -> Dims {
        match *self {
            Layer::Affine { output, .. } => Dims::flat(output),
            Layer::Convolution(c) => c.output_dims(),
            Layer::Pooling { h, w, stride } => Pooling::new(input, h, w, stride).output_dims(),
            _ => input,
        }
    }

    /// Whether this layer has parameters (and so a gradient to compute).
    pub const fn has_params(&self) -> bool {
        self.param_len() > 0
    }

    /// Whether this layer computes its output in place, over its input (given the layer
    /// before, see the module docs): activations, BatchNorm, Dropout, SoftmaxWithLoss.
    const fn in_place_after(&self, prev: Option<&Layer>, slot_keeps_outputs: bool) -> bool {
        match self {
            Layer::Affine { .. } | Layer::Convolution(_) | Layer::Pooling { .. } => false,
            _ if prev.is_none() => false,
            // Zeroing values, or ReLU over values that are all ≥ 0 where an activation's
            // backward reads them: those backwards still see what they need.
            Layer::Dropout { .. } | Layer::Relu => true,
            Layer::Sigmoid | Layer::BatchNorm { .. } | Layer::SoftmaxWithLoss => {
                !slot_keeps_outputs
            }
        }
    }

    /// Whether this layer's backward reads its own output (which later layers must then not
    /// change in place): activations, and a Pooling over a ReLU's output (its output is the
    /// ReLU's mask at each window's maximum, see [`crate::Pooling::backward_relu`]).
    const fn backward_reads_output(&self, prev: Option<&Layer>) -> bool {
        match self {
            Layer::Relu | Layer::Sigmoid => true,
            Layer::Pooling { .. } => matches!(prev, Some(Layer::Relu)),
            _ => false,
        }
    }

    /// Workspace per batch row for what backward needs besides the activations (`width`:
    /// values per sample out).
    const fn extra_row_len(&self, width: usize) -> usize {
        match *self {
            Layer::BatchNorm { features } => features,
            Layer::Dropout { .. } | Layer::Pooling { .. } => width,
            _ => 0,
        }
    }

    /// Workspace for backward that does not grow with the batch: BatchNorm's standard
    /// deviations, a Convolution's parameter gradient for the SGD step.
    const fn extra_fixed_len(&self) -> usize {
        match *self {
            Layer::BatchNorm { features } => features,
            Layer::Convolution(c) => c.param_len(),
            _ => 0,
        }
    }

    /// Workspace for a Convolution's patches (`col`), forward and backward.
    const fn col_len(&self) -> usize {
        match *self {
            Layer::Convolution(c) => c.col_len(),
            _ => 0,
        }
    }

    /// Whether this layer computes new values from its input, into a slot of its own, and
    /// its input's gradient into a buffer of its own (an Affine, a Convolution, a Pooling);
    /// the others can work in place, forward and backward.
    pub(crate) const fn computes_new_values(&self) -> bool {
        matches!(
            self,
            Layer::Affine { .. } | Layer::Convolution(_) | Layer::Pooling { .. }
        )
    }

    /// Whether this layer has weights numbered `W1`, `W2`, … (an Affine or a Convolution).
    pub const fn is_weighted(&self) -> bool {
        matches!(self, Layer::Affine { .. } | Layer::Convolution(_))
    }

    /// Elements of this layer's weight `W` (0 without one).
    pub const fn weight_len(&self) -> usize {
        match *self {
            Layer::Affine { input, output } => input.saturating_mul(output),
            Layer::Convolution(c) => c.weight_len(),
            _ => 0,
        }
    }

    /// The book's name of the layer kind.
    pub const fn name(&self) -> &'static str {
        match self {
            Layer::Affine { .. } => "Affine",
            Layer::Relu => "Relu",
            Layer::Sigmoid => "Sigmoid",
            Layer::BatchNorm { .. } => "BatchNorm",
            Layer::Dropout { .. } => "Dropout",
            Layer::SoftmaxWithLoss => "SoftmaxWithLoss",
            Layer::Convolution(_) => "Convolution",
            Layer::Pooling { .. } => "Pooling",
        }
    }
}

/// Where a layer's values live: offsets per batch row in the workspace's regions (scaled to
/// a batch by a [`Frame`]), and offsets in the parameters and the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Place {
    /// Values per sample in.
    pub width_in: usize,
    /// Values per sample out.
    pub width_out: usize,
    /// The shape of a sample in.
    pub dims_in: Dims,
    /// Per-row offset of the slot holding its input (`None`: the caller's `x`).
    pub input: Option<usize>,
    /// Per-row offset of the slot holding its output.
    pub output: usize,
    /// Per-row offset of its extras (BatchNorm `xc`, Dropout mask) in the extras region.
    pub extra: usize,
    /// Offset of its fixed extras (BatchNorm's standard deviations) in the fixed region.
    pub fixed: usize,
    /// Offset of its parameters in params and grads.
    pub param: usize,
    /// Offset of its state.
    pub state: usize,
    /// Its number among the Affine layers, or among the BatchNorm layers, from 1.
    pub number: usize,
    /// It works in place over its input's slot.
    pub in_place: bool,
}

/// The running totals of [`NetSpec::walk`].
#[derive(Debug, Clone, Copy)]
struct Walk {
    /// The last layer walked.
    place: Place,
    /// The shape of the last layer's output.
    dims: Dims,
    /// The largest Convolution's patches.
    col: usize,
    /// Per row: slots, extras; fixed extras; parameters; state.
    slots: usize,
    extras: usize,
    fixed: usize,
    params: usize,
    state: usize,
    /// A layer sharing the current slot reads its output in backward.
    keeps: bool,
    affines: usize,
    norms: usize,
    /// Affine layers that pass a gradient back, and the widest such gradient.
    grad_count: usize,
    grad_width: usize,
    /// A layer walked so far has parameters.
    params_before: bool,
}

/// The sizes of a workspace's regions: per row (slots, extras, gradient buffers) and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Sizes {
    slots: usize,
    extras: usize,
    fixed: usize,
    grad_count: usize,
    grad_width: usize,
    col: usize,
}

impl Sizes {
    /// The regions for a batch of `batch` rows.
    pub(crate) const fn frame(&self, batch: usize) -> Frame {
        let slots = batch.saturating_mul(self.slots);
        let extras = slots.saturating_add(batch.saturating_mul(self.extras));
        let grads = extras.saturating_add(self.fixed);
        let grad_len = batch.saturating_mul(self.grad_width);
        let col_train = grads.saturating_add(grad_len.saturating_mul(self.grad_count));
        Frame {
            batch,
            extras: slots,
            fixed: extras,
            grads: [
                grads,
                grads.saturating_add(if self.grad_count > 1 { grad_len } else { 0 }),
            ],
            grad_len: if self.grad_count > 0 { grad_len } else { 0 },
            col: [slots, col_train],
            col_len: self.col,
            end_backward: col_train.saturating_add(self.col),
            end_predict: slots.saturating_add(self.col),
        }
    }

    /// The largest batch a workspace of `len` elements holds for training (`backward`) or
    /// prediction (at least 0).
    pub(crate) const fn capacity(&self, len: usize, backward: bool) -> usize {
        let (row, fixed) = if backward {
            (
                self.slots
                    .saturating_add(self.extras)
                    .saturating_add(self.grad_count.saturating_mul(self.grad_width)),
                self.fixed.saturating_add(self.col),
            )
        } else {
            (self.slots, self.col)
        };
        if len < fixed || row == 0 {
            0
        } else {
            (len - fixed) / row
        }
    }
}

/// The regions of a workspace for one batch: slots from 0, then the extras, the fixed extras,
/// the gradient buffers, the patches of the Convolutions (`col`), and from `end_backward`
/// (training) or `end_predict` the gemm packing space. In prediction, `col` follows the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Rows.
    pub batch: usize,
    /// Start of the extras.
    pub extras: usize,
    /// Start of the fixed extras.
    pub fixed: usize,
    /// Start of the two gradient buffers (equal if there is at most one).
    pub grads: [usize; 2],
    /// Length of each gradient buffer (0 if there is none).
    pub grad_len: usize,
    /// Start of the patches' buffer in prediction and in training.
    pub col: [usize; 2],
    /// Length of the patches' buffer.
    pub col_len: usize,
    /// End of what training uses.
    pub end_backward: usize,
    /// End of what prediction uses.
    pub end_predict: usize,
}

impl Frame {
    /// The range of a slot at per-row offset `row` holding `width` values per row.
    pub fn slot(&self, row: usize, width: usize) -> core::ops::Range<usize> {
        let at = self.batch * row;
        at..at + self.batch * width
    }

    /// The range of a layer's per-row extras.
    pub fn extra(&self, p: &Place, width: usize) -> core::ops::Range<usize> {
        let at = self.extras + self.batch * p.extra;
        at..at + self.batch * width
    }

    /// The range of a layer's fixed extras.
    pub fn fixed(&self, p: &Place, len: usize) -> core::ops::Range<usize> {
        let at = self.fixed + p.fixed;
        at..at + len
    }

    /// The range of the patches' buffer, in training or in prediction.
    pub fn col(&self, train: bool) -> core::ops::Range<usize> {
        let at = self.col[train as usize];
        at..at + self.col_len
    }

    /// The range of gradient buffer `k` (0 or 1), `width` values per row.
    pub fn grad(&self, k: usize, width: usize) -> core::ops::Range<usize> {
        let at = self.grads[k];
        at..at + self.batch * width
    }
}

/// The layer list of a net. Build one with [`NetSpec::new`] (a `const fn`, so firmware can
/// write its net as a constant) or a preset ([`NetSpec::mlp`]); check it with
/// [`NetSpec::validate`] (every net constructor does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetSpec {
    layers: [Layer; MAX_LAYERS],
    len: usize,
    /// How many layers were given (more than [`MAX_LAYERS`] is an error of `validate`).
    given: usize,
}

/// The hidden layers' activation of a preset net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// [`Layer::Relu`] (the book's chapter 5 net and the default of chapter 6).
    #[default]
    Relu,
    /// [`Layer::Sigmoid`] (the book's chapter 4 net).
    Sigmoid,
}

impl Activation {
    /// The layer.
    pub const fn layer(self) -> Layer {
        match self {
            Activation::Relu => Layer::Relu,
            Activation::Sigmoid => Layer::Sigmoid,
        }
    }
}

/// The book's `MultiLayerNetExtend` options for [`NetSpec::mlp`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpOptions {
    /// The hidden activation.
    pub activation: Activation,
    /// A BatchNorm after each hidden Affine (`use_batchnorm`).
    pub batch_norm: bool,
    /// A Dropout of this ratio after each hidden activation (`use_dropout`, `dropout_ration`).
    pub dropout: Option<f32>,
}

impl MlpOptions {
    /// ReLU, no BatchNorm, no Dropout.
    pub const PLAIN: MlpOptions = MlpOptions {
        activation: Activation::Relu,
        batch_norm: false,
        dropout: None,
    };
}

impl Default for MlpOptions {
    fn default() -> Self {
        Self::PLAIN
    }
}

impl NetSpec {
    /// The net of these layers, in order. More than [`MAX_LAYERS`] are cut off here and
    /// reported by [`NetSpec::validate`].
    pub const fn new(layers: &[Layer]) -> Self {
        let mut spec = NetSpec {
            layers: [Layer::Relu; MAX_LAYERS],
            len: 0,
            given: layers.len(),
        };
        while spec.len < layers.len() && spec.len < MAX_LAYERS {
            spec.layers[spec.len] = layers[spec.len];
            spec.len += 1;
        }
        spec
    }

    /// The book's `MultiLayerNetExtend(input_size, hidden_size_list, output_size, …)`: for each
    /// hidden size an Affine, then BatchNorm if asked, the activation, then Dropout if asked;
    /// then the output Affine and SoftmaxWithLoss. A list too long for [`MAX_LAYERS`] is
    /// reported by [`NetSpec::validate`].
    pub const fn mlp(input: usize, hidden: &[usize], output: usize, options: MlpOptions) -> Self {
        let mut spec = NetSpec::new(&[]);
        let mut width = input;
        let mut i = 0;
        while i < hidden.len() {
            spec = spec.push(Layer::Affine {
                input: width,
                output: hidden[i],
            });
            width = hidden[i];
            if options.batch_norm {
                spec = spec.push(Layer::BatchNorm { features: width });
            }
            spec = spec.push(options.activation.layer());
            if let Some(ratio) = options.dropout {
                spec = spec.push(Layer::Dropout { ratio });
            }
            i += 1;
        }
        spec.push(Layer::Affine {
            input: width,
            output,
        })
        .push(Layer::SoftmaxWithLoss)
    }

    /// The book's `SimpleConvNet` (ch07): Convolution of `filters` filters of
    /// `kernel × kernel` (stride 1, no padding) over `input`, ReLU, 2×2 max pooling (stride 2),
    /// Affine to `hidden`, ReLU, Affine to `classes`, SoftmaxWithLoss. The book's run:
    /// `simple_conv_net(Dims::new(1, 28, 28), 30, 5, 100, 10)`.
    pub const fn simple_conv_net(
        input: Dims,
        filters: usize,
        kernel: usize,
        hidden: usize,
        classes: usize,
    ) -> Self {
        let conv = Convolution::new(input, filters, kernel);
        let pool = Layer::Pooling {
            h: 2,
            w: 2,
            stride: 2,
        };
        let pooled = pool.output_dims(conv.output_dims());
        NetSpec::new(&[
            Layer::Convolution(conv),
            Layer::Relu,
            pool,
            Layer::Affine {
                input: pooled.len(),
                output: hidden,
            },
            Layer::Relu,
            Layer::Affine {
                input: hidden,
                output: classes,
            },
            Layer::SoftmaxWithLoss,
        ])
    }

    /// The book's `DeepConvNet` (ch08) for 1 × 28 × 28 images and 10 classes: three times two
    /// Convolutions of 3×3 filters (16, 16, then 32, 32 (the second with padding 2), then 64,
    /// 64; padding 1 otherwise), each with a ReLU, and a 2×2 max pooling; then Affine 50,
    /// ReLU, Dropout 0.5, Affine 10, Dropout 0.5, SoftmaxWithLoss.
    pub const fn deep_conv_net() -> Self {
        const fn conv(input: Dims, filters: usize, pad: usize) -> Convolution {
            Convolution::new(input, filters, 3).pad(pad)
        }
        const POOL: Layer = Layer::Pooling {
            h: 2,
            w: 2,
            stride: 2,
        };
        let c1 = conv(Dims::new(1, 28, 28), 16, 1);
        let c2 = conv(c1.output_dims(), 16, 1);
        let c3 = conv(POOL.output_dims(c2.output_dims()), 32, 1);
        let c4 = conv(c3.output_dims(), 32, 2);
        let c5 = conv(POOL.output_dims(c4.output_dims()), 64, 1);
        let c6 = conv(c5.output_dims(), 64, 1);
        let flat = POOL.output_dims(c6.output_dims()).len();
        NetSpec::new(&[
            Layer::Convolution(c1),
            Layer::Relu,
            Layer::Convolution(c2),
            Layer::Relu,
            POOL,
            Layer::Convolution(c3),
            Layer::Relu,
            Layer::Convolution(c4),
            Layer::Relu,
            POOL,
            Layer::Convolution(c5),
            Layer::Relu,
            Layer::Convolution(c6),
            Layer::Relu,
            POOL,
            Layer::Affine {
                input: flat,
                output: 50,
            },
            Layer::Relu,
            Layer::Dropout { ratio: 0.5 },
            Layer::Affine {
                input: 50,
                output: 10,
            },
            Layer::Dropout { ratio: 0.5 },
            Layer::SoftmaxWithLoss,
        ])
    }

    /// This list with `layer` appended (counted, and cut off past [`MAX_LAYERS`]).
    pub const fn push(mut self, layer: Layer) -> Self {
        if self.len < MAX_LAYERS {
            self.layers[self.len] = layer;
            self.len += 1;
        }
        self.given += 1;
        self
    }

    /// The layers.
    pub const fn layers(&self) -> &[Layer] {
        self.layers.split_at(self.len).0
    }

    /// Number of layers.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no layers.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Layer `i` (`i < len()`).
    const fn layer(&self, i: usize) -> &Layer {
        &self.layers[i]
    }

    /// The shape of one sample of input: what the first layer states it takes.
    pub const fn input_dims(&self) -> Dims {
        if self.len == 0 {
            return Dims::flat(0);
        }
        match *self.layer(0) {
            Layer::Affine { input, .. } => Dims::flat(input),
            Layer::BatchNorm { features } => Dims::flat(features),
            Layer::Convolution(c) => c.input,
            _ => Dims::flat(0),
        }
    }

    /// Values per sample of input.
    pub const fn input_size(&self) -> usize {
        self.input_dims().len()
    }

    /// The shape of the output of layer `i` (`i < len()`).
    pub const fn dims_after(&self, i: usize) -> Dims {
        let mut d = self.input_dims();
        let mut j = 0;
        while j <= i && j < self.len {
            d = self.layer(j).output_dims(d);
            j += 1;
        }
        d
    }

    /// Values per sample of the scores (the net's output, before any softmax): the classes.
    pub const fn output_size(&self) -> usize {
        if self.len == 0 {
            0
        } else {
            self.dims_after(self.len - 1).len()
        }
    }

    /// Whether the net ends with [`Layer::SoftmaxWithLoss`], so that it has a loss and trains.
    pub const fn has_loss(&self) -> bool {
        self.len > 0 && matches!(self.layer(self.len - 1), Layer::SoftmaxWithLoss)
    }

    /// Layers run by `predict` (all but a final SoftmaxWithLoss).
    pub const fn predict_len(&self) -> usize {
        if self.has_loss() {
            self.len - 1
        } else {
            self.len
        }
    }

    /// Elements of the parameter buffer, and of the gradient buffer.
    pub const fn param_len(&self) -> usize {
        let (mut n, mut i) = (0usize, 0);
        while i < self.len {
            n = n.saturating_add(self.layer(i).param_len());
            i += 1;
        }
        n
    }

    /// Elements of the state buffer (BatchNorm's running means and variances; 0 without
    /// BatchNorm).
    pub const fn state_len(&self) -> usize {
        let (mut n, mut i) = (0usize, 0);
        while i < self.len {
            n = n.saturating_add(self.layer(i).state_len());
            i += 1;
        }
        n
    }

    /// Scratch elements for [`Net::step_with`](crate::net::Net::step_with): the largest
    /// layer's parameters, and room for the zero gradient of some rows of a sparse first
    /// layer.
    pub const fn apply_scratch_len(&self) -> usize {
        let (mut most, mut width, mut i) = (0usize, 0usize, 0);
        while i < self.len {
            let l = self.layer(i);
            if l.param_len() > most {
                most = l.param_len();
            }
            if let Layer::Affine { output, .. } = *l
                && output > width
            {
                width = output;
            }
            i += 1;
        }
        most.saturating_add(width.saturating_mul(crate::net::multi_layer_net::ZERO_ROWS))
    }

    /// The weight decay term of the loss, `0.5·λ·ΣW²` over the weights of every Affine and
    /// Convolution (the book's `MultiLayerNet.loss`), for the parameter buffer `params` of this list:
    /// each layer's sum in order, the layers' terms added in order. Weights `params` does not
    /// hold count as zero.
    pub fn weight_decay_term<T: Float>(&self, params: &[T], lambda: T) -> T {
        if lambda == T::ZERO {
            return T::ZERO;
        }
        let (mut sum, mut at) = (T::ZERO, 0usize);
        for layer in self.layers() {
            if layer.is_weighted() {
                let w = params.get(at..at.saturating_add(layer.weight_len()));
                let mut s = T::ZERO;
                for &v in w.unwrap_or_default() {
                    s += v * v;
                }
                sum += T::from_f64(0.5) * lambda * s;
            }
            at = at.saturating_add(layer.param_len());
        }
        sum
    }

    /// Number of layers with weights (`W1` … `Wn`).
    pub const fn weighted_layers(&self) -> usize {
        let (mut n, mut i) = (0, 0);
        while i < self.len {
            if self.layer(i).is_weighted() {
                n += 1;
            }
            i += 1;
        }
        n
    }

    /// Walks the layers `0..upto` (at most `len()`), placing each: one pass, so every length
    /// below costs one walk.
    const fn walk(&self, upto: usize) -> Walk {
        let mut w = Walk {
            place: Place {
                width_in: 0,
                width_out: self.input_size(),
                dims_in: Dims::flat(0),
                input: None,
                output: 0,
                extra: 0,
                fixed: 0,
                param: 0,
                state: 0,
                number: 0,
                in_place: false,
            },
            dims: self.input_dims(),
            col: 0,
            slots: 0,
            extras: 0,
            fixed: 0,
            params: 0,
            state: 0,
            keeps: false,
            affines: 0,
            norms: 0,
            grad_count: 0,
            grad_width: 0,
            params_before: false,
        };
        let mut j = 0;
        while j < upto && j < self.len {
            let layer = self.layer(j);
            let prev = if j == 0 {
                None
            } else {
                Some(self.layer(j - 1))
            };
            let width_in = w.place.width_out;
            let dims_in = w.dims;
            w.dims = layer.output_dims(dims_in);
            let width_out = w.dims.len();
            let in_place = layer.in_place_after(prev, w.keeps);
            if layer.col_len() > w.col {
                w.col = layer.col_len();
            }
            let p = &mut w.place;
            p.width_in = width_in;
            p.width_out = width_out;
            p.dims_in = dims_in;
            p.input = if j == 0 { None } else { Some(p.output) };
            p.in_place = in_place;
            if !in_place {
                p.output = w.slots;
                w.slots = w.slots.saturating_add(width_out);
                w.keeps = false;
            }
            if layer.backward_reads_output(prev) {
                w.keeps = true;
            }
            p.extra = w.extras;
            p.fixed = w.fixed;
            p.param = w.params;
            p.state = w.state;
            w.extras = w.extras.saturating_add(layer.extra_row_len(width_out));
            w.fixed = w.fixed.saturating_add(layer.extra_fixed_len());
            if layer.computes_new_values() && w.params_before {
                w.grad_count += 1;
                if width_in > w.grad_width {
                    w.grad_width = width_in;
                }
            }
            w.params = w.params.saturating_add(layer.param_len());
            w.params_before |= layer.has_params();
            w.state = w.state.saturating_add(layer.state_len());
            p.number = match layer {
                Layer::Affine { .. } | Layer::Convolution(_) => {
                    w.affines += 1;
                    w.affines
                }
                Layer::BatchNorm { .. } => {
                    w.norms += 1;
                    w.norms
                }
                _ => 0,
            };
            j += 1;
        }
        w
    }

    /// Whether layer `i` works in place over the slot of layer `i - 1`.
    #[cfg(test)]
    pub(crate) const fn in_place(&self, i: usize) -> bool {
        self.walk(i + 1).place.in_place
    }

    /// The gradient buffers: how many (0, 1 or 2) and their width per row.
    const fn grad_buffers(&self) -> (usize, usize) {
        let w = self.walk(self.len);
        (
            if w.grad_count > 2 { 2 } else { w.grad_count },
            w.grad_width,
        )
    }

    /// Workspace elements per batch row for `predict`, `loss` and `accuracy`.
    pub const fn predict_row_len(&self) -> usize {
        self.walk(self.len).slots
    }

    /// Workspace for the largest Convolution's patches (any batch; 0 without one).
    pub const fn col_len(&self) -> usize {
        self.walk(self.len).col
    }

    /// Workspace elements per batch row for `gradient` and the training steps.
    pub const fn gradient_row_len(&self) -> usize {
        let w = self.walk(self.len);
        let (count, width) = self.grad_buffers();
        w.slots
            .saturating_add(w.extras)
            .saturating_add(count.saturating_mul(width))
    }

    /// Backward's workspace that does not grow with the batch.
    const fn extras_fixed_len(&self) -> usize {
        let w = self.walk(self.len);
        w.fixed.saturating_add(w.col)
    }

    /// The least workspace for any method with batches up to `max_batch`; the products run
    /// unpacked. Right for firmware.
    pub const fn min_workspace_len(&self, max_batch: usize) -> usize {
        max_batch
            .saturating_mul(self.gradient_row_len())
            .saturating_add(self.extras_fixed_len())
    }

    /// The least workspace for `predict`, `loss` and `accuracy` with batches up to
    /// `max_batch`.
    pub const fn min_predict_workspace_len(&self, max_batch: usize) -> usize {
        max_batch
            .saturating_mul(self.predict_row_len())
            .saturating_add(self.col_len())
    }

    /// Workspace for any method with batches up to `max_batch`, plus full gemm packing space
    /// ([`PACK_LEN`]) for speed. Right for the desktop.
    pub const fn workspace_len(&self, max_batch: usize) -> usize {
        self.min_workspace_len(max_batch).saturating_add(PACK_LEN)
    }

    /// Where layer `i`'s values live, per batch row (see [`Place`]).
    pub(crate) const fn place_row(&self, i: usize) -> Place {
        self.walk(i + 1).place
    }

    /// The per-row and fixed sizes of the workspace's regions (one walk; a net keeps them).
    pub(crate) const fn sizes(&self) -> Sizes {
        let w = self.walk(self.len);
        let (count, width) = self.grad_buffers();
        Sizes {
            slots: w.slots,
            extras: w.extras,
            fixed: w.fixed,
            grad_count: count,
            grad_width: width,
            col: w.col,
        }
    }

    /// The layout of a workspace for a batch of `batch` rows.
    #[cfg(test)]
    pub(crate) const fn frame(&self, batch: usize) -> Frame {
        self.sizes().frame(batch)
    }

    /// Checks the list: at least one layer and at most [`MAX_LAYERS`]; the first layer states
    /// its input (an Affine or a BatchNorm); every size is positive and chains (each layer's
    /// stated input is the previous one's output); Dropout ratios are in `[0, 1)`;
    /// SoftmaxWithLoss comes last, if at all; and every buffer length fits in `usize`.
    pub fn validate(&self) -> Result<()> {
        if self.given > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                layers: self.given,
                max: MAX_LAYERS,
            });
        }
        if self.len == 0 {
            return Err(Error::ZeroSize { what: "layer list" });
        }
        let mut dims: Option<Dims> = None;
        for (i, layer) in self.layers().iter().enumerate() {
            let bad = |what: &'static str, expected: usize, actual: usize| Error::LayerShape {
                layer: i,
                kind: layer.name(),
                what,
                expected,
                actual,
            };
            let width = dims.map(|d| d.len());
            // A size the layer states for its input: positive, and the previous layer's output.
            let stated = |size: usize, zero: &'static str, name: &'static str| match width {
                _ if size == 0 => Err(Error::ZeroSize { what: zero }),
                Some(w) if w != size => Err(bad(name, w, size)),
                _ => Ok(()),
            };
            match *layer {
                Layer::Affine { input, output } => {
                    stated(input, "Affine input size", "input")?;
                    if output == 0 {
                        return Err(Error::ZeroSize {
                            what: "Affine output size",
                        });
                    }
                    input.checked_mul(output).ok_or(Error::SizeOverflow)?;
                }
                Layer::BatchNorm { features } => {
                    stated(features, "BatchNorm features", "features")?;
                }
                Layer::Dropout { ratio } if !(0.0..1.0).contains(&ratio) => {
                    return Err(Error::InvalidValue {
                        what: "Dropout ratio (must be in [0, 1))",
                    });
                }
                Layer::Convolution(c) => {
                    stated(
                        c.input.len(),
                        "Convolution input",
                        "input (channels × height × width)",
                    )?;
                    if c.filters == 0 || c.kernel_h == 0 || c.kernel_w == 0 {
                        return Err(Error::ZeroSize {
                            what: "Convolution filters or kernel",
                        });
                    }
                    if c.stride == 0 {
                        return Err(Error::InvalidValue {
                            what: "Convolution stride (must be at least 1)",
                        });
                    }
                    let d = c.input;
                    if c.output_dims().is_empty() {
                        return Err(bad(
                            "kernel (larger than the padded input)",
                            d.height.min(d.width).saturating_add(2 * c.pad),
                            c.kernel_h.max(c.kernel_w),
                        ));
                    }
                    c.validate()?;
                }
                Layer::Pooling { h, w, stride } => {
                    if h == 0 || w == 0 {
                        return Err(Error::ZeroSize {
                            what: "Pooling window",
                        });
                    }
                    if stride == 0 {
                        return Err(Error::InvalidValue {
                            what: "Pooling stride (must be at least 1)",
                        });
                    }
                    let d = dims.unwrap_or_default();
                    if layer.output_dims(d).is_empty() {
                        return Err(bad(
                            "window (larger than its input's height or width)",
                            d.height.min(d.width),
                            h.max(w),
                        ));
                    }
                }
                Layer::SoftmaxWithLoss if i + 1 != self.len => {
                    return Err(bad(
                        "position (SoftmaxWithLoss must be last)",
                        self.len - 1,
                        i,
                    ));
                }
                _ => {}
            }
            if i == 0
                && !matches!(
                    layer,
                    Layer::Affine { .. } | Layer::BatchNorm { .. } | Layer::Convolution(_)
                )
            {
                return Err(bad(
                    "first layer (must state its input: Affine, BatchNorm or Convolution)",
                    0,
                    0,
                ));
            }
            dims = Some(layer.output_dims(dims.unwrap_or(self.input_dims())));
        }
        // Lengths that saturated did not fit.
        let probe = [
            self.param_len(),
            self.state_len(),
            self.gradient_row_len(),
            self.min_workspace_len(1),
            self.workspace_len(1),
        ];
        if probe.contains(&usize::MAX) {
            return Err(Error::SizeOverflow);
        }
        Ok(())
    }

    /// The trainable tensors, in buffer order: `W1`, `b1`, (`gamma1`, `beta1`,) `W2`, ….
    pub fn tensors(&self) -> Tensors<'_> {
        Tensors {
            spec: self,
            layer: 0,
            part: 0,
            offset: 0,
            state: false,
            affines: 0,
            norms: 0,
        }
    }

    /// The state tensors, in buffer order: `running_mean1`, `running_var1`, ….
    pub fn state_tensors(&self) -> Tensors<'_> {
        Tensors {
            state: true,
            ..self.tensors()
        }
    }

    /// The trainable tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.tensors().find(|t| t.name == name)
    }
}

/// One named tensor inside a flat buffer: `rows × cols` at `offset` (a vector has
/// `rows == 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tensor {
    /// The book's name: `"W1"`, `"b1"`, `"gamma1"`, `"running_mean1"`, ….
    pub name: &'static str,
    /// First element in the flat buffer.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl Tensor {
    /// Number of elements (saturating: a tensor of a shape too large for `usize`, which
    /// [`NetSpec::validate`] rejects, does not panic).
    pub const fn len(&self) -> usize {
        self.rows.saturating_mul(self.cols)
    }
    /// Whether it has no elements.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the flat buffer.
    pub const fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset.saturating_add(self.len())
    }
}

/// The names `prefix1` … `prefix32`, as static strings.
macro_rules! numbered {
    ($p:literal) => {
        [
            concat!($p, 1),
            concat!($p, 2),
            concat!($p, 3),
            concat!($p, 4),
            concat!($p, 5),
            concat!($p, 6),
            concat!($p, 7),
            concat!($p, 8),
            concat!($p, 9),
            concat!($p, 10),
            concat!($p, 11),
            concat!($p, 12),
            concat!($p, 13),
            concat!($p, 14),
            concat!($p, 15),
            concat!($p, 16),
            concat!($p, 17),
            concat!($p, 18),
            concat!($p, 19),
            concat!($p, 20),
            concat!($p, 21),
            concat!($p, 22),
            concat!($p, 23),
            concat!($p, 24),
            concat!($p, 25),
            concat!($p, 26),
            concat!($p, 27),
            concat!($p, 28),
            concat!($p, 29),
            concat!($p, 30),
            concat!($p, 31),
            concat!($p, 32),
        ]
    };
}

const W_NAMES: [&str; MAX_LAYERS] = numbered!("W");
const B_NAMES: [&str; MAX_LAYERS] = numbered!("b");
const GAMMA_NAMES: [&str; MAX_LAYERS] = numbered!("gamma");
const BETA_NAMES: [&str; MAX_LAYERS] = numbered!("beta");
const MEAN_NAMES: [&str; MAX_LAYERS] = numbered!("running_mean");
const VAR_NAMES: [&str; MAX_LAYERS] = numbered!("running_var");

/// The tensors of a [`NetSpec`], in buffer order ([`NetSpec::tensors`],
/// [`NetSpec::state_tensors`]).
#[derive(Debug, Clone)]
pub struct Tensors<'s> {
    spec: &'s NetSpec,
    layer: usize,
    part: usize,
    offset: usize,
    state: bool,
    affines: usize,
    norms: usize,
}

impl Iterator for Tensors<'_> {
    type Item = Tensor;

    fn next(&mut self) -> Option<Tensor> {
        while self.layer < self.spec.len {
            let layer = *self.spec.layer(self.layer);
            let (count, names, rows, cols): (usize, [&[&'static str]; 2], [usize; 2], [usize; 2]) =
                match (layer, self.state) {
                    (Layer::Affine { input, output }, false) => {
                        (2, [&W_NAMES, &B_NAMES], [input, 1], [output, output])
                    }
                    (Layer::BatchNorm { features }, false) => {
                        (2, [&GAMMA_NAMES, &BETA_NAMES], [1, 1], [features, features])
                    }
                    (Layer::BatchNorm { features }, true) => {
                        (2, [&MEAN_NAMES, &VAR_NAMES], [1, 1], [features, features])
                    }
                    // W as filters × (channels·kernel_h·kernel_w): the book's 4-D filter, each
                    // filter a row.
                    (Layer::Convolution(c), false) => (
                        2,
                        [&W_NAMES, &B_NAMES],
                        [c.filters, 1],
                        [c.patch_len(), c.filters],
                    ),
                    _ => (0, [&[], &[]], [0, 0], [0, 0]),
                };
            if self.part == 0 {
                // Entering the layer: count it.
                match layer {
                    Layer::Affine { .. } | Layer::Convolution(_) => self.affines += 1,
                    Layer::BatchNorm { .. } => self.norms += 1,
                    _ => {}
                }
            }
            if self.part < count {
                let number = match layer {
                    Layer::Affine { .. } | Layer::Convolution(_) => self.affines,
                    _ => self.norms,
                };
                let t = Tensor {
                    name: names[self.part][number - 1],
                    offset: self.offset,
                    rows: rows[self.part],
                    cols: cols[self.part],
                };
                self.offset = self.offset.saturating_add(t.len());
                self.part += 1;
                return Some(t);
            }
            self.layer += 1;
            self.part = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BN: NetSpec = NetSpec::mlp(
        784,
        &[100, 100],
        10,
        MlpOptions {
            activation: Activation::Relu,
            batch_norm: true,
            dropout: Some(0.2),
        },
    );

    #[test]
    fn mlp_is_the_books_layer_order() {
        use Layer::*;
        assert_eq!(
            BN.layers(),
            &[
                Affine {
                    input: 784,
                    output: 100
                },
                BatchNorm { features: 100 },
                Relu,
                Dropout { ratio: 0.2 },
                Affine {
                    input: 100,
                    output: 100
                },
                BatchNorm { features: 100 },
                Relu,
                Dropout { ratio: 0.2 },
                Affine {
                    input: 100,
                    output: 10
                },
                SoftmaxWithLoss
            ]
        );
        assert!(BN.validate().is_ok());
        assert_eq!(BN.input_size(), 784);
        assert_eq!(BN.output_size(), 10);
    }

    #[test]
    fn tensors_have_the_books_names_in_layer_order() {
        let names: std::vec::Vec<_> = BN.tensors().map(|t| (t.name, t.offset, t.len())).collect();
        let w1 = 784 * 100;
        assert_eq!(
            names,
            [
                ("W1", 0, w1),
                ("b1", w1, 100),
                ("gamma1", w1 + 100, 100),
                ("beta1", w1 + 200, 100),
                ("W2", w1 + 300, 10000),
                ("b2", w1 + 10300, 100),
                ("gamma2", w1 + 10400, 100),
                ("beta2", w1 + 10500, 100),
                ("W3", w1 + 10600, 1000),
                ("b3", w1 + 11600, 10),
            ]
        );
        assert_eq!(BN.param_len(), w1 + 11610);
        let state: std::vec::Vec<_> = BN.state_tensors().map(|t| t.name).collect();
        assert_eq!(
            state,
            [
                "running_mean1",
                "running_var1",
                "running_mean2",
                "running_var2"
            ]
        );
        assert_eq!(BN.state_len(), 400);
        assert_eq!(BN.tensor("gamma2").map(|t| t.offset), Some(w1 + 10400));
    }

    #[test]
    fn the_books_conv_nets_have_its_shapes() {
        let simple = NetSpec::simple_conv_net(Dims::new(1, 28, 28), 30, 5, 100, 10);
        assert!(simple.validate().is_ok());
        let shapes: std::vec::Vec<_> = simple.tensors().map(|t| (t.name, t.len())).collect();
        assert_eq!(
            shapes,
            [
                ("W1", 750),
                ("b1", 30),
                ("W2", 4320 * 100),
                ("b2", 100),
                ("W3", 1000),
                ("b3", 10)
            ]
        );
        let deep = NetSpec::deep_conv_net();
        assert!(deep.validate().is_ok());
        assert_eq!(deep.len(), 21);
        // The book's `pre_node_nums`: 64·4·4 into the first Affine.
        assert_eq!(
            deep.tensor("W7").map(|t| (t.rows, t.cols)),
            Some((1024, 50))
        );
        assert_eq!(
            deep.tensor("W4").map(|t| (t.rows, t.cols)),
            Some((32, 32 * 9))
        );
        assert_eq!(deep.output_size(), 10);
    }

    #[test]
    fn the_chapter_5_net_keeps_its_workspace() {
        let s = NetSpec::mlp(784, &[50], 10, MlpOptions::PLAIN);
        assert_eq!(s.predict_row_len(), 60);
        assert_eq!(s.gradient_row_len(), 110);
        assert_eq!(s.min_workspace_len(100), 11_000);
        assert_eq!(s.workspace_len(1), 110 + PACK_LEN);
    }

    #[test]
    fn workspace_places_do_not_overlap() {
        // Affine, BatchNorm (in place), Relu (in place), Dropout (in place), Affine, …
        let b = 7;
        let f = BN.frame(b);
        let mut end = 0;
        for i in 0..BN.len() {
            let p = BN.place_row(i);
            let out = f.slot(p.output, p.width_out);
            if !BN.in_place(i) {
                assert_eq!(out.start, end, "layer {i}");
                end = out.end;
            } else {
                assert_eq!(Some(p.output), p.input, "layer {i}");
            }
        }
        assert_eq!(end, b * BN.predict_row_len());
        assert_eq!(f.end_predict, end);
        assert_eq!(f.grad_len, b * 100);
        assert_eq!(f.grads[1], f.grads[0] + f.grad_len);
        assert_eq!(f.grads[1] + f.grad_len, BN.min_workspace_len(b));
        assert_eq!(f.end_backward, BN.min_workspace_len(b));
        // The extras: xc of each BatchNorm and each Dropout mask, then the std of each
        // BatchNorm.
        let extra = |i: usize| f.extra(&BN.place_row(i), 100);
        assert_eq!(extra(1), end..end + b * 100);
        assert_eq!(extra(3).start, end + b * 100);
        assert_eq!(extra(5).start, end + 2 * b * 100);
        assert_eq!(extra(7).start, end + 3 * b * 100);
        assert_eq!(f.fixed(&BN.place_row(1), 100).start, end + 4 * b * 100);
        assert_eq!(
            f.fixed(&BN.place_row(5), 100).start,
            end + 4 * b * 100 + 100
        );
        assert_eq!(BN.place_row(4).param, 784 * 100 + 300);
        assert_eq!(BN.place_row(5).state, 200);
        assert_eq!(BN.place_row(5).number, 2);
        assert_eq!(BN.place_row(8).number, 3);
    }

    #[test]
    fn an_activation_read_by_its_backward_is_not_overwritten() {
        use Layer::*;
        let s = NetSpec::new(&[
            Affine {
                input: 4,
                output: 3,
            },
            Relu,
            Dropout { ratio: 0.5 },
            // Relu's backward reads the slot: BatchNorm gets its own.
            BatchNorm { features: 3 },
            // BatchNorm's backward does not read its output: Sigmoid works over it.
            Sigmoid,
            // ReLU of values ≥ 0 changes nothing Sigmoid's backward reads.
            Relu,
            // Sigmoid's backward reads the slot: Sigmoid and SoftmaxWithLoss get their own.
            Sigmoid,
            SoftmaxWithLoss,
        ]);
        assert!(s.validate().is_ok());
        let in_place: std::vec::Vec<bool> = (0..s.len()).map(|i| s.in_place(i)).collect();
        assert_eq!(
            in_place,
            [false, true, true, false, true, true, false, false]
        );
        assert_eq!(s.predict_row_len(), 4 * 3);
    }

    #[test]
    fn validate_names_what_is_wrong() {
        use Layer::*;
        let chain = NetSpec::new(&[
            Affine {
                input: 4,
                output: 3,
            },
            Relu,
            Affine {
                input: 5,
                output: 2,
            },
        ]);
        assert_eq!(
            chain.validate(),
            Err(Error::LayerShape {
                layer: 2,
                kind: "Affine",
                what: "input",
                expected: 3,
                actual: 5
            })
        );
        let long = NetSpec::new(&[Relu; 40]);
        assert_eq!(
            long.validate(),
            Err(Error::TooManyLayers {
                layers: 40,
                max: MAX_LAYERS
            })
        );
        assert!(NetSpec::new(&[]).validate().is_err());
        assert!(NetSpec::new(&[Relu]).validate().is_err());
        let softmax_first = NetSpec::new(&[
            Affine {
                input: 4,
                output: 3,
            },
            SoftmaxWithLoss,
            Relu,
        ]);
        assert!(softmax_first.validate().is_err());
        let ratio = NetSpec::new(&[
            Affine {
                input: 4,
                output: 3,
            },
            Dropout { ratio: 1.0 },
        ]);
        assert!(ratio.validate().is_err());
        let huge = NetSpec::new(&[Affine {
            input: usize::MAX / 2,
            output: 3,
        }]);
        assert_eq!(huge.validate(), Err(Error::SizeOverflow));
    }
}
