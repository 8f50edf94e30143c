//! `TwoLayerNet`: Affine → Relu (or Sigmoid) → Affine → SoftmaxWithLoss, the book's chapter 5 net.
//!
//! Buffers (all owned by the caller; lengths from the `const fn`s of [`TwoLayerShape`]):
//! - params `[W1 | b1 | W2 | b2]`: W1 input×hidden, b1 hidden, W2 hidden×output, b2 output
//! - grads: the same layout
//! - workspace, for a batch of `B` rows: `a1` B×hidden (the hidden activations),
//!   `y` B×output (scores, then probabilities, then `dy`), `d1` B×hidden (for backward),
//!   then whatever remains is gemm packing space (see [`crate::gemm::PACK_LEN`]).

use core::marker::PhantomData;
use core::ops::Range;

use crate::error::{Error, Result, check_len};
use crate::functions::{Label, argmax, check_labels};
use crate::gemm::{Backend, Context, PACK_LEN};
use crate::gradient::numerical_gradient;
use crate::layers::{Affine, FUSED_MAX_BATCH, Relu, Sigmoid, SoftmaxWithLoss};
use crate::math::Float;
use crate::optimizer::Sgd;
use crate::random::Rng;

/// The hidden layer's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// [`Relu`] (the book's chapter 5 net).
    #[default]
    Relu,
    /// [`Sigmoid`] (the book's chapter 4 net).
    Sigmoid,
}

/// One named tensor inside a flat parameter buffer: `rows × cols` at `offset` (a vector has
/// `rows == 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tensor {
    /// The book's name: `"W1"`, `"b1"`, `"W2"`, `"b2"`.
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
    /// [`TwoLayerShape::validate`] rejects, does not panic).
    pub const fn len(&self) -> usize {
        self.rows.saturating_mul(self.cols)
    }
    /// Whether it has no elements.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the flat buffer.
    pub const fn range(&self) -> Range<usize> {
        self.offset..self.offset.saturating_add(self.len())
    }
}

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
        self.affine1()
            .param_len()
            .saturating_add(self.affine2().param_len())
    }

    /// Workspace elements per batch row for `predict`, `loss` and `accuracy`.
    pub const fn predict_row_len(&self) -> usize {
        self.hidden_size.saturating_add(self.output_size)
    }

    /// Workspace elements per batch row for `gradient`.
    pub const fn gradient_row_len(&self) -> usize {
        self.hidden_size
            .saturating_mul(2)
            .saturating_add(self.output_size)
    }

    /// The least workspace for any method with batches up to `max_batch`; the products run
    /// unpacked. Right for firmware.
    pub const fn min_workspace_len(&self, max_batch: usize) -> usize {
        max_batch.saturating_mul(self.gradient_row_len())
    }

    /// The least workspace for `predict`/`loss`/`accuracy` with batches up to `max_batch`.
    pub const fn min_predict_workspace_len(&self, max_batch: usize) -> usize {
        max_batch.saturating_mul(self.predict_row_len())
    }

    /// Workspace for any method with batches up to `max_batch`, plus full gemm packing space
    /// ([`PACK_LEN`]) for speed. Right for the desktop.
    pub const fn workspace_len(&self, max_batch: usize) -> usize {
        self.min_workspace_len(max_batch).saturating_add(PACK_LEN)
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
        let p1 = i.checked_mul(h).and_then(|w| w.checked_add(h));
        let p2 = h.checked_mul(o).and_then(|w| w.checked_add(o));
        let row = h.checked_mul(2).and_then(|x| x.checked_add(o));
        match (p1, p2, row) {
            (Some(a), Some(b), Some(_)) if a.checked_add(b).is_some() => Ok(()),
            _ => Err(Error::SizeOverflow),
        }
    }
}

/// The views into a workspace for one batch.
struct Work<'w, T> {
    a1: &'w mut [T],
    y: &'w mut [T],
    d1: &'w mut [T],
    pack: &'w mut [T],
}

/// Splits `ws` for a batch, checking capacity first. `backward` adds the `d1` region.
fn split_workspace<'w, T>(
    shape: &TwoLayerShape,
    ws: &'w mut [T],
    batch: usize,
    backward: bool,
) -> Result<Work<'w, T>> {
    let row = if backward {
        shape.gradient_row_len()
    } else {
        shape.predict_row_len()
    };
    let (h, o) = (shape.hidden_size, shape.output_size);
    if batch.checked_mul(row).is_none_or(|need| need > ws.len()) {
        return Err(Error::BatchTooLarge {
            batch,
            capacity: ws.len() / row,
        });
    }
    let (a1, rest) = ws.split_at_mut(batch * h);
    let (y, rest) = rest.split_at_mut(batch * o);
    let (d1, pack) = rest.split_at_mut(if backward { batch * h } else { 0 });
    Ok(Work { a1, y, d1, pack })
}

/// The batch size of `x`, checked to be whole and positive.
fn batch_of<T>(shape: &TwoLayerShape, x: &[T]) -> Result<usize> {
    let batch = x.len() / shape.input_size;
    if batch == 0 {
        return Err(Error::EmptyBatch);
    }
    check_len("x", batch * shape.input_size, x.len())?;
    Ok(batch)
}

/// `[W1, b1, W2, b2]` of a flat buffer.
fn split_params<'p, T>(shape: &TwoLayerShape, p: &'p [T]) -> [&'p [T]; 4] {
    let [w1, b1, w2, b2] = shape.layout();
    [
        &p[w1.range()],
        &p[b1.range()],
        &p[w2.range()],
        &p[b2.range()],
    ]
}

/// The forward pass up to the scores: `a1 = act(x·W1 + b1)`, `y = a1·W2 + b2`.
/// With `active`, `x` holds only those inputs of each row (see [`Affine::forward_active`]).
fn forward<T: Float>(
    shape: &TwoLayerShape,
    backend: Backend,
    params: &[T],
    x: &[T],
    active: Option<&[usize]>,
    w: &mut Work<'_, T>,
) -> Result<()> {
    let [w1, b1, w2, b2] = split_params(shape, params);
    let mut g = Context::new(backend, w.pack);
    let relu = shape.activation == Activation::Relu;
    let layer1 = shape.affine1();
    match active {
        Some(a) => layer1.forward_active(&mut g, w.a1, x, a, w1, b1, relu)?,
        None if relu => layer1.forward_relu(&mut g, w.a1, x, w1, b1)?,
        None => layer1.forward(&mut g, w.a1, x, w1, b1)?,
    }
    if !relu {
        Sigmoid::forward_inplace(w.a1);
    }
    shape.affine2().forward(&mut g, w.y, w.a1, w2, b2)
}

/// Checks `x` and `t` against the shape and returns the batch size.
fn check_batch<T, L: Label>(shape: &TwoLayerShape, x: &[T], t: &[L]) -> Result<usize> {
    let batch = batch_of(shape, x)?;
    check_len("t", batch, t.len())?;
    check_labels(t, shape.output_size)?;
    Ok(batch)
}

/// The loss of parameters `params` on a batch (free function so that the numerical gradient
/// can call it while it perturbs the parameters).
fn loss_of<T: Float, L: Label>(
    shape: &TwoLayerShape,
    backend: Backend,
    params: &[T],
    x: &[T],
    t: &[L],
    ws: &mut [T],
) -> Result<T> {
    let batch = check_batch(shape, x, t)?;
    let mut w = split_workspace(shape, ws, batch, false)?;
    forward(shape, backend, params, x, None, &mut w)?;
    SoftmaxWithLoss::new(shape.output_size).forward_inplace(w.y, t)
}

/// The two-layer network of the book's chapter 5 over a flat parameter buffer `P`, borrowed
/// (`&[f32]`, `&mut [f32]`, a zero-copy model in flash) or owned (`Vec<f32>`).
///
/// Methods that only read parameters need `P: AsRef<[T]>`; training needs `AsMut` too.
#[derive(Debug, Clone)]
pub struct TwoLayerNet<T, P> {
    shape: TwoLayerShape,
    params: P,
    backend: Backend,
    _t: PhantomData<T>,
}

impl<T: Float, P: AsRef<[T]>> TwoLayerNet<T, P> {
    /// A net of `shape` over `params` (length [`TwoLayerShape::param_len`]).
    pub fn new(shape: TwoLayerShape, params: P) -> Result<Self> {
        shape.validate()?;
        check_len("params", shape.param_len(), params.as_ref().len())?;
        Ok(TwoLayerNet {
            shape,
            params,
            backend: Backend::Auto,
            _t: PhantomData,
        })
    }

    /// Uses `backend` for every product (checked to be available).
    pub fn with_backend(mut self, backend: Backend) -> Result<Self> {
        backend.resolve()?;
        self.backend = backend;
        Ok(self)
    }

    /// The gemm backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The shape.
    pub fn shape(&self) -> TwoLayerShape {
        self.shape
    }

    /// The flat parameter buffer `[W1 | b1 | W2 | b2]`.
    pub fn params(&self) -> &[T] {
        self.params.as_ref()
    }

    /// A named tensor (`"W1"`, `"b1"`, `"W2"`, `"b2"`).
    pub fn tensor(&self, name: &str) -> Option<&[T]> {
        let t = self.shape.layout().into_iter().find(|t| t.name == name)?;
        Some(&self.params()[t.range()])
    }

    /// Gives the parameter buffer back.
    pub fn into_params(self) -> P {
        self.params
    }

    /// The scores `x·W1 + b1 → act → ·W2 + b2` for a batch `x` (batch × input_size), as a
    /// batch × output_size slice of the workspace.
    pub fn predict<'w>(&self, x: &[T], ws: &'w mut [T]) -> Result<&'w [T]> {
        let batch = batch_of(&self.shape, x)?;
        let mut w = split_workspace(&self.shape, ws, batch, false)?;
        forward(&self.shape, self.backend, self.params(), x, None, &mut w)?;
        Ok(w.y)
    }

    /// The mean cross-entropy loss on a batch with labels `t`.
    pub fn loss<L: Label>(&self, x: &[T], t: &[L], ws: &mut [T]) -> Result<T> {
        loss_of(&self.shape, self.backend, self.params(), x, t, ws)
    }

    /// How many rows of the batch the net classifies as their label.
    pub fn count_correct<L: Label>(&self, x: &[T], t: &[L], ws: &mut [T]) -> Result<usize> {
        check_batch(&self.shape, x, t)?;
        let y = self.predict(x, ws)?;
        Ok(y.chunks_exact(self.shape.output_size)
            .zip(t)
            .filter(|(row, l)| argmax(row) == l.class())
            .count())
    }

    /// [`TwoLayerNet::predict`] for a batch whose inputs are zero outside `active` (ascending
    /// input indices): `x` holds only the `active` inputs of each row. The same scores, with
    /// the zero inputs' work skipped.
    pub fn predict_active<'w>(
        &self,
        x: &[T],
        active: &[usize],
        batch: usize,
        ws: &'w mut [T],
    ) -> Result<&'w [T]> {
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        let mut w = split_workspace(&self.shape, ws, batch, false)?;
        forward(
            &self.shape,
            self.backend,
            self.params(),
            x,
            Some(active),
            &mut w,
        )?;
        Ok(w.y)
    }

    /// [`TwoLayerNet::count_correct`] through [`TwoLayerNet::predict_active`].
    pub fn count_correct_active<L: Label>(
        &self,
        x: &[T],
        active: &[usize],
        t: &[L],
        ws: &mut [T],
    ) -> Result<usize> {
        check_labels(t, self.shape.output_size)?;
        let y = self.predict_active(x, active, t.len(), ws)?;
        Ok(y.chunks_exact(self.shape.output_size)
            .zip(t)
            .filter(|(row, l)| argmax(row) == l.class())
            .count())
    }

    /// The fraction of the batch classified correctly (the book's `accuracy`).
    pub fn accuracy<L: Label>(&self, x: &[T], t: &[L], ws: &mut [T]) -> Result<f64> {
        Ok(self.count_correct(x, t, ws)? as f64 / t.len() as f64)
    }

    /// Backpropagation: writes the gradient of the loss into `grads` (same layout as the
    /// parameters) and returns the loss of this forward pass.
    pub fn gradient<L: Label>(&self, x: &[T], t: &[L], grads: &mut [T], ws: &mut [T]) -> Result<T> {
        self.gradient_part(x, t, t.len(), grads, ws)
    }

    /// [`TwoLayerNet::gradient`] of rows that are part of a batch of `full_batch` rows split
    /// across workers: loss and gradient are means over `full_batch`, so the parts' results
    /// add up to the whole batch's (up to the order of that sum).
    pub fn gradient_part<L: Label>(
        &self,
        x: &[T],
        t: &[L],
        full_batch: usize,
        grads: &mut [T],
        ws: &mut [T],
    ) -> Result<T> {
        let shape = &self.shape;
        let batch = check_batch(shape, x, t)?;
        check_len("grads", shape.param_len(), grads.len())?;
        let mut w = split_workspace(shape, ws, batch, true)?;
        if full_batch < batch {
            return Err(Error::ShapeMismatch {
                what: "full batch must hold the part",
                expected: batch,
                actual: full_batch,
            });
        }
        let [w1, _, w2, _] = split_params(shape, self.params());
        let [l1, l2, l3, _] = shape.layout();
        let (dw1, rest) = grads.split_at_mut(l1.len());
        let (db1, rest) = rest.split_at_mut(l2.len());
        let (dw2, db2) = rest.split_at_mut(l3.len());

        forward(shape, self.backend, self.params(), x, None, &mut w)?;
        let softmax = SoftmaxWithLoss::new(shape.output_size);
        let loss = softmax.forward_backward_part_inplace(w.y, t, full_batch)?; // y is now dy
        let mut g = Context::new(self.backend, w.pack);
        shape
            .affine2()
            .backward(&mut g, Some(w.d1), dw2, db2, w.y, w.a1, w2)?;
        activation_backward(shape.activation, w.d1, w.a1)?;
        shape
            .affine1()
            .backward(&mut g, None, dw1, db1, w.d1, x, w1)?;
        Ok(loss)
    }
}

/// `dz = dout ⊙ act'(z)` in place, from the activation's output `z`.
fn activation_backward<T: Float>(act: Activation, d: &mut [T], z: &[T]) -> Result<()> {
    match act {
        Activation::Relu => Relu::backward_inplace(d, z),
        Activation::Sigmoid => Sigmoid::backward_inplace(d, z),
    }
}

impl<T: Float, P: AsRef<[T]> + AsMut<[T]>> TwoLayerNet<T, P> {
    /// One SGD step on a batch, with the update fused into the backward products (see
    /// [`Affine::backward_sgd`]): no gradient buffer, two fewer passes over the parameters.
    /// Returns the batch's loss (before the update). Bit for bit the same parameters as
    /// [`TwoLayerNet::gradient`] followed by [`Sgd::update`](crate::Sgd::update), for
    /// batches of at most [`FUSED_MAX_BATCH`] rows (a larger batch is an error).
    pub fn train_step<L: Label>(
        &mut self,
        x: &[T],
        t: &[L],
        sgd: &Sgd<T>,
        ws: &mut [T],
    ) -> Result<T> {
        self.step(x, None, t, sgd, ws)
    }

    /// [`TwoLayerNet::train_step`] on a batch whose inputs are zero outside `active`
    /// (ascending input indices): `x` holds only the `active` inputs of each row
    /// (batch × `active.len()`). The zero inputs add nothing to the forward pass and leave their
    /// rows of `W1` unchanged, so this is the same step with their work skipped: the rows of
    /// `W1` not in `active` are neither read nor written. (On MNIST a third of the pixels are
    /// blank across a batch of 100.)
    pub fn train_step_active<L: Label>(
        &mut self,
        x: &[T],
        active: &[usize],
        t: &[L],
        sgd: &Sgd<T>,
        ws: &mut [T],
    ) -> Result<T> {
        self.step(x, Some(active), t, sgd, ws)
    }

    fn step<L: Label>(
        &mut self,
        x: &[T],
        active: Option<&[usize]>,
        t: &[L],
        sgd: &Sgd<T>,
        ws: &mut [T],
    ) -> Result<T> {
        let shape = self.shape;
        let batch = match active {
            None => check_batch(&shape, x, t)?,
            Some(_) => {
                check_labels(t, shape.output_size)?;
                t.len()
            }
        };
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        if batch > FUSED_MAX_BATCH {
            return Err(Error::BatchTooLarge {
                batch,
                capacity: FUSED_MAX_BATCH,
            });
        }
        let mut w = split_workspace(&shape, ws, batch, true)?;
        forward(
            &shape,
            self.backend,
            self.params.as_ref(),
            x,
            active,
            &mut w,
        )?;
        let loss = SoftmaxWithLoss::new(shape.output_size).forward_backward_inplace(w.y, t)?; // y is now dy

        let [l1, l2, l3, _] = shape.layout();
        let (w1, rest) = self.params.as_mut().split_at_mut(l1.len());
        let (b1, rest) = rest.split_at_mut(l2.len());
        let (w2, b2) = rest.split_at_mut(l3.len());
        let mut g = Context::new(self.backend, w.pack);
        shape
            .affine2()
            .backward_sgd(&mut g, Some(w.d1), w.y, w.a1, w2, b2, sgd.lr)?;
        activation_backward(shape.activation, w.d1, w.a1)?;
        match active {
            Some(a) => shape
                .affine1()
                .backward_sgd_active(&mut g, w.d1, x, a, w1, b1, sgd.lr)?,
            None => shape
                .affine1()
                .backward_sgd(&mut g, None, w.d1, x, w1, b1, sgd.lr)?,
        }
        Ok(loss)
    }

    /// The flat parameter buffer, mutably (for an optimizer's `update`).
    pub fn params_mut(&mut self) -> &mut [T] {
        self.params.as_mut()
    }

    /// The book's initialisation: weights ~ N(0, `weight_init_std`²), biases 0.
    pub fn init_params<R: Rng + ?Sized>(&mut self, rng: &mut R, weight_init_std: f64) {
        let [w1, b1, w2, b2] = self.shape.layout();
        let p = self.params.as_mut();
        crate::init::gaussian(rng, weight_init_std, &mut p[w1.range()]);
        p[b1.range()].fill(T::ZERO);
        crate::init::gaussian(rng, weight_init_std, &mut p[w2.range()]);
        p[b2.range()].fill(T::ZERO);
    }

    /// The gradient by central differences with step `h` (the book uses 1e-4, see
    /// [`crate::gradient::BOOK_H`]): slow, and the check on [`TwoLayerNet::gradient`].
    /// Each parameter is perturbed and restored exactly; nothing is allocated.
    pub fn numerical_gradient<L: Label>(
        &mut self,
        h: T,
        x: &[T],
        t: &[L],
        grads: &mut [T],
        ws: &mut [T],
    ) -> Result<()> {
        let shape = self.shape;
        let backend = self.backend;
        let batch = check_batch(&shape, x, t)?;
        check_len("grads", shape.param_len(), grads.len())?;
        split_workspace(&shape, ws, batch, false)?;
        numerical_gradient(h, self.params.as_mut(), grads, |p| {
            loss_of(&shape, backend, p, x, t, ws)
        })
    }
}
