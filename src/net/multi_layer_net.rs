//! [`Net`]: a net of any depth, the book's `MultiLayerNetExtend` over caller-owned buffers.
//! `predict` walks the layer list forward, `gradient` walks it back; one `match` on the
//! layer kind in each loop.
//!
//! Buffers (owned by the caller; lengths from the `const fn`s of [`NetSpec`]):
//! - params: the trainable tensors in layer order, `W1, b1, (gamma1, beta1,) W2, …`
//! - grads: the same layout
//! - state: BatchNorm's running means and variances (empty without BatchNorm)
//! - workspace: the activations of a batch, what backward needs, then gemm packing space
//!   (see [`crate::net::spec`])
//!
//! Fast paths are choices inside the two loops, not other nets: an Affine followed by a Relu
//! runs as one product with the ReLU in its store; the first Affine can run on the inputs that
//! are non-zero somewhere in the batch only (`_active` methods: the blank pixels of MNIST);
//! with plain SGD the update is fused into the backward products (`train_step`).

use core::ops::Range;

use crate::error::{Error, Result, check_len};
use crate::functions::{Label, argmax, check_labels};
use crate::gemm::{Backend, Context};
use crate::gradient::numerical_gradient;
use crate::init::{WeightInit, gaussian};
use crate::layers::{Affine, BatchNorm, Dropout, FUSED_MAX_BATCH, Relu, Sigmoid, SoftmaxWithLoss};
use crate::math::Float;
use crate::net::spec::{Frame, Layer, MAX_LAYERS, NetSpec, Place, Sizes};
use crate::optimizer::Sgd;
use crate::random::{Rng, XorShiftRng, seeded};

/// The book's `MultiLayerNetExtend`: [`Net`] under the book's name.
pub type MultiLayerNet<T, P> = Net<T, P>;

/// A net of any depth (the layers of a [`NetSpec`]) over a flat parameter buffer `P` and a
/// state buffer of the same type, borrowed (`&[f32]`, `&mut [f32]`, a zero-copy model in
/// flash) or owned (`Vec<f32>`).
///
/// Methods that only read (predict, loss, accuracy) need `P: AsRef<[T]>`; training needs
/// `AsMut` too. Training draws Dropout masks from the net's own generator
/// ([`Net::seed_dropout`]).
#[derive(Debug, Clone)]
pub struct Net<T, P> {
    spec: NetSpec,
    plan: [Place; MAX_LAYERS],
    sizes: Sizes,
    params: P,
    state: P,
    backend: Backend,
    weight_decay: T,
    rng: XorShiftRng,
}

/// Forward in training (batch statistics, Dropout masks) or inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Infer,
    /// `draw`: new Dropout masks; else the masks in the workspace are used again.
    Train {
        draw: bool,
    },
}

/// The state as the forward pass may use it: read, or read and updated (training).
enum State<'a, T> {
    Read(&'a [T]),
    Update(&'a mut [T]),
}

/// What backward does with the parameters' gradients.
enum Update<'g, T> {
    /// Stores them (weight decay added).
    Grads(&'g mut [T]),
    /// Takes an SGD step with them as they are made.
    Sgd(T),
}

/// What the passes need of a net besides its buffers.
struct Ctx<'a> {
    spec: &'a NetSpec,
    plan: &'a [Place; MAX_LAYERS],
    backend: Backend,
}

/// `N` disjoint ranges of `ws` as mutable slices, in the order given. A range that overlaps
/// one before it (by start) comes back empty, so a bad plan shows as a length error, never a
/// panic.
fn carve<'a, T, const N: usize>(ws: &'a mut [T], ranges: [Range<usize>; N]) -> [&'a mut [T]; N] {
    let mut order: [usize; N] = core::array::from_fn(|i| i);
    order.sort_unstable_by_key(|&i| ranges[i].start);
    let mut out: [&'a mut [T]; N] = core::array::from_fn(|_| Default::default());
    let (mut rest, mut at) = (ws, 0);
    for &k in &order {
        let r = &ranges[k];
        if r.is_empty() || r.start < at || r.end - at > rest.len() {
            continue;
        }
        let (_, tail) = core::mem::take(&mut rest).split_at_mut(r.start - at);
        let (mid, tail) = tail.split_at_mut(r.end - r.start);
        out[k] = mid;
        rest = tail;
        at = r.end;
    }
    out
}

/// The parameters `(W, b)` of an Affine at `at`.
fn affine_params<T>(p: &[T], at: usize, input: usize, output: usize) -> (&[T], &[T]) {
    let (w, rest) = p[at..].split_at(input * output);
    (w, &rest[..output])
}

/// The parameters `(W, b)` of an Affine at `at`, mutably.
fn affine_params_mut<T>(
    p: &mut [T],
    at: usize,
    input: usize,
    output: usize,
) -> (&mut [T], &mut [T]) {
    let (w, rest) = p[at..].split_at_mut(input * output);
    (w, &mut rest[..output])
}

/// The forward pass of layers `layers`, for a batch laid out by `f`, `x` its input (for the
/// first layer: only the `active` inputs of each row, if given).
#[allow(clippy::too_many_arguments)]
fn forward<T: Float>(
    c: &Ctx<'_>,
    params: &[T],
    mut state: State<'_, T>,
    x: &[T],
    active: Option<&[usize]>,
    mode: Mode,
    rng: &mut XorShiftRng,
    f: &Frame,
    ws: &mut [T],
    layers: Range<usize>,
) -> Result<()> {
    let end = match mode {
        Mode::Infer => f.end_predict,
        Mode::Train { .. } => f.end_backward,
    };
    let list = c.spec.layers();
    let mut i = layers.start;
    while i < layers.end {
        let (p, layer) = (&c.plan[i], list[i]);
        let out_r = f.slot(p.output, p.width_out);
        if !p.in_place && !matches!(layer, Layer::Affine { .. }) {
            // A layer that works in place, given a slot of its own: its input first.
            match p.input {
                None => {
                    check_len("x", out_r.len(), x.len())?;
                    ws[out_r.clone()].copy_from_slice(x);
                }
                Some(r) => ws.copy_within(f.slot(r, p.width_in), out_r.start),
            }
        }
        match layer {
            Layer::Affine { input, output } => {
                let aff = Affine::new(input, output);
                let (w, b) = affine_params(params, p.param, input, output);
                // An Affine followed by a Relu: the ReLU in the product's store.
                let fuse = i + 1 < layers.end && list[i + 1] == Layer::Relu;
                let (left, right) = ws.split_at_mut(out_r.start);
                let xin: &[T] = match p.input {
                    None => x,
                    Some(r) => &left[f.slot(r, p.width_in)],
                };
                let (out, rest) = right.split_at_mut(out_r.len());
                let mut g = Context::new(c.backend, &mut rest[end - out_r.end..]);
                match (i, active) {
                    (0, Some(a)) => aff.forward_active(&mut g, out, xin, a, w, b, fuse)?,
                    _ if fuse => aff.forward_relu(&mut g, out, xin, w, b)?,
                    _ => aff.forward(&mut g, out, xin, w, b)?,
                }
                if fuse {
                    i += 1;
                }
            }
            Layer::Relu => Relu::forward_inplace(&mut ws[out_r]),
            Layer::Sigmoid => Sigmoid::forward_inplace(&mut ws[out_r]),
            Layer::BatchNorm { features } => {
                let bn = BatchNorm::new(features);
                let (gamma, beta) = params[p.param..].split_at(features);
                let beta = &beta[..features];
                match mode {
                    Mode::Infer => {
                        let s = match &state {
                            State::Read(s) => &s[p.state..],
                            State::Update(s) => &s[p.state..],
                        };
                        let (rm, rv) = s.split_at(features);
                        bn.forward_infer_inplace(&mut ws[out_r], gamma, beta, rm, &rv[..features])?
                    }
                    Mode::Train { .. } => {
                        let [io, xc, sd] =
                            carve(ws, [out_r, f.extra(p, features), f.fixed(p, features)]);
                        let running = match &mut state {
                            State::Update(s) => {
                                let (rm, rv) = s[p.state..].split_at_mut(features);
                                Some((rm, &mut rv[..features]))
                            }
                            State::Read(_) => None,
                        };
                        bn.forward_train_inplace(io, xc, sd, gamma, beta, running)?
                    }
                }
            }
            Layer::Dropout { ratio } => {
                let drop = Dropout::new(ratio);
                match mode {
                    Mode::Infer => drop.forward_infer_inplace(&mut ws[out_r])?,
                    Mode::Train { draw } => {
                        let mask_r = f.extra(p, p.width_out);
                        let [io, mask] = carve(ws, [out_r, mask_r]);
                        if draw {
                            drop.forward_train_inplace(io, mask, rng)?
                        } else {
                            drop.forward_masked_inplace(io, mask)?
                        }
                    }
                }
            }
            // The loss methods run it on the scores.
            Layer::SoftmaxWithLoss => {}
        }
        i += 1;
    }
    Ok(())
}

/// The range of the scores (the output of the last layer before any SoftmaxWithLoss).
fn scores_range(c: &Ctx<'_>, f: &Frame) -> Range<usize> {
    let p = &c.plan[c.spec.predict_len() - 1];
    f.slot(p.output, p.width_out)
}

/// The range SoftmaxWithLoss works on, with the scores copied there if it has a slot of its
/// own.
fn softmax_range<T: Float>(c: &Ctx<'_>, f: &Frame, ws: &mut [T]) -> Range<usize> {
    let scores = scores_range(c, f);
    let p = &c.plan[c.spec.len() - 1];
    let r = f.slot(p.output, p.width_out);
    if r != scores {
        ws.copy_within(scores, r.start);
    }
    r
}

/// `0.5·λ·ΣW²` over the weights of every Affine (the book's weight decay term of the loss).
fn decay_term<T: Float>(c: &Ctx<'_>, params: &[T], lambda: T) -> T {
    if lambda == T::ZERO {
        return T::ZERO;
    }
    let mut sum = T::ZERO;
    for (i, layer) in c.spec.layers().iter().enumerate() {
        if let Layer::Affine { input, output } = *layer {
            let (w, _) = affine_params(params, c.plan[i].param, input, output);
            let mut s = T::ZERO;
            for &v in w {
                s += v * v;
            }
            sum += T::from_f64(0.5) * lambda * s;
        }
    }
    sum
}

/// Backward from the loss's gradient in `d` down to the first layer with parameters, each
/// layer's parameter gradient stored or applied as `upd` says.
#[allow(clippy::too_many_arguments)]
fn backward<T: Float>(
    c: &Ctx<'_>,
    params: &mut [T],
    mut upd: Update<'_, T>,
    weight_decay: T,
    x: &[T],
    active: Option<&[usize]>,
    f: &Frame,
    ws: &mut [T],
    mut d: Range<usize>,
) -> Result<()> {
    let list = c.spec.layers();
    let Some(lowest) = list.iter().position(Layer::has_params) else {
        return Ok(());
    };
    let end = f.end_backward;
    let mut next = 0;
    let mut i = c.spec.predict_len();
    while i > lowest {
        i -= 1;
        let (p, layer) = (&c.plan[i], list[i]);
        let out_r = f.slot(p.output, p.width_out);
        match layer {
            Layer::Relu => {
                let [dd, out] = carve(ws, [d.clone(), out_r]);
                Relu::backward_inplace(dd, out)?
            }
            Layer::Sigmoid => {
                let [dd, out] = carve(ws, [d.clone(), out_r]);
                Sigmoid::backward_inplace(dd, out)?
            }
            Layer::Dropout { .. } => {
                let [dd, mask] = carve(ws, [d.clone(), f.extra(p, p.width_out)]);
                Dropout::backward_inplace(dd, mask)?
            }
            Layer::BatchNorm { features } => {
                let bn = BatchNorm::new(features);
                let [dd, xc, sd] =
                    carve(ws, [d.clone(), f.extra(p, features), f.fixed(p, features)]);
                match &mut upd {
                    Update::Grads(g) => {
                        let (dgamma, dbeta) = g[p.param..].split_at_mut(features);
                        let gamma = &params[p.param..p.param + features];
                        bn.backward_inplace(dd, xc, sd, gamma, dgamma, &mut dbeta[..features])?
                    }
                    Update::Sgd(lr) => {
                        let (gamma, beta) = params[p.param..].split_at_mut(features);
                        bn.backward_sgd_inplace(dd, xc, sd, gamma, &mut beta[..features], *lr)?
                    }
                }
            }
            Layer::Affine { input, output } => {
                let aff = Affine::new(input, output);
                let needs_dx = i > lowest;
                let dx_r = if needs_dx {
                    f.grad(next, p.width_in)
                } else {
                    0..0
                };
                let xin_r = p.input.map_or(0..0, |r| f.slot(r, p.width_in));
                let [dout, dx, xin_ws, pack] =
                    carve(ws, [d.clone(), dx_r.clone(), xin_r, end..ws.len()]);
                let xin: &[T] = if p.input.is_some() { xin_ws } else { x };
                let dx = needs_dx.then_some(dx);
                let mut g = Context::new(c.backend, pack);
                let first_active = if i == 0 { active } else { None };
                match &mut upd {
                    Update::Grads(grads) => {
                        let (dw, db) = affine_params_mut(grads, p.param, input, output);
                        let (w, _) = affine_params(params, p.param, input, output);
                        match first_active {
                            Some(a) => aff.backward_active(&mut g, dw, db, dout, xin, a)?,
                            None => aff.backward(&mut g, dx, dw, db, dout, xin, w)?,
                        }
                        if weight_decay != T::ZERO {
                            for (dwv, &wv) in dw.iter_mut().zip(w) {
                                *dwv += weight_decay * wv;
                            }
                        }
                    }
                    Update::Sgd(lr) => {
                        let (w, b) = affine_params_mut(params, p.param, input, output);
                        match first_active {
                            Some(a) => aff.backward_sgd_active(&mut g, dout, xin, a, w, b, *lr)?,
                            None => aff.backward_sgd(&mut g, dx, dout, xin, w, b, *lr)?,
                        }
                    }
                }
                if needs_dx {
                    d = dx_r;
                    next ^= 1;
                }
            }
            Layer::SoftmaxWithLoss => {
                return Err(Error::Unsupported {
                    what: "SoftmaxWithLoss before the last layer",
                });
            }
        }
    }
    Ok(())
}

impl<T: Float, P: AsRef<[T]>> Net<T, P> {
    /// A net of `spec` over `params` (length [`NetSpec::param_len`]), for a net without state
    /// (no BatchNorm; else use [`Net::with_state`]).
    pub fn new(spec: impl Into<NetSpec>, params: P) -> Result<Self>
    where
        P: Default,
    {
        Self::with_state(spec, params, P::default())
    }

    /// A net of `spec` over `params` and `state` (lengths [`NetSpec::param_len`] and
    /// [`NetSpec::state_len`]).
    pub fn with_state(spec: impl Into<NetSpec>, params: P, state: P) -> Result<Self> {
        let spec = spec.into();
        spec.validate()?;
        check_len("params", spec.param_len(), params.as_ref().len())?;
        check_len("state", spec.state_len(), state.as_ref().len())?;
        let mut plan = [Place::default(); MAX_LAYERS];
        for (i, p) in plan.iter_mut().enumerate().take(spec.len()) {
            *p = spec.place_row(i);
        }
        Ok(Net {
            spec,
            plan,
            sizes: spec.sizes(),
            params,
            state,
            backend: Backend::Auto,
            weight_decay: T::ZERO,
            rng: seeded(0),
        })
    }

    /// Uses `backend` for every product (checked to be available).
    pub fn with_backend(mut self, backend: Backend) -> Result<Self> {
        backend.resolve()?;
        self.backend = backend;
        Ok(self)
    }

    /// Weight decay `λ` (the book's `weight_decay_lambda`): `0.5·λ·ΣW²` is added to the loss
    /// and `λ·W` to each weight's gradient (biases, gamma and beta untouched). Finite, ≥ 0.
    pub fn with_weight_decay(mut self, lambda: T) -> Result<Self> {
        if !(lambda.is_finite() && lambda >= T::ZERO) {
            return Err(Error::InvalidValue {
                what: "weight decay (must be finite and at least 0)",
            });
        }
        self.weight_decay = lambda;
        Ok(self)
    }

    /// The weight decay `λ`.
    pub fn weight_decay(&self) -> T {
        self.weight_decay
    }

    /// The gemm backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The layer list.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// The flat parameter buffer.
    pub fn params(&self) -> &[T] {
        self.params.as_ref()
    }

    /// The state buffer (BatchNorm's running statistics).
    pub fn state(&self) -> &[T] {
        self.state.as_ref()
    }

    /// A named trainable tensor (`"W1"`, `"b1"`, `"gamma1"`, …).
    pub fn tensor(&self, name: &str) -> Option<&[T]> {
        let t = self.spec.tensor(name)?;
        Some(&self.params()[t.range()])
    }

    /// A named state tensor (`"running_mean1"`, `"running_var1"`, …).
    pub fn state_tensor(&self, name: &str) -> Option<&[T]> {
        let t = self.spec.state_tensors().find(|t| t.name == name)?;
        Some(&self.state()[t.range()])
    }

    /// Gives the parameter buffer back.
    pub fn into_params(self) -> P {
        self.params
    }

    /// Gives the parameter and state buffers back.
    pub fn into_parts(self) -> (P, P) {
        (self.params, self.state)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            spec: &self.spec,
            plan: &self.plan,
            backend: self.backend,
        }
    }

    /// The batch size of `x`, checked to be whole and positive.
    fn batch_of(&self, x: &[T]) -> Result<usize> {
        let n = self.spec.input_size();
        let batch = x.len() / n;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_len("x", batch * n, x.len())?;
        Ok(batch)
    }

    /// Checks `x` and `t` and returns the batch size.
    fn check_batch<L: Label>(&self, x: &[T], t: &[L]) -> Result<usize> {
        let batch = self.batch_of(x)?;
        check_len("t", batch, t.len())?;
        check_labels(t, self.spec.output_size())?;
        Ok(batch)
    }

    /// The workspace's regions for `batch`, checked to fit `ws`.
    fn frame(&self, batch: usize, ws_len: usize, backward: bool) -> Result<Frame> {
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        let capacity = self.sizes.capacity(ws_len, backward);
        if batch > capacity {
            return Err(Error::BatchTooLarge { batch, capacity });
        }
        Ok(self.sizes.frame(batch))
    }

    /// Checks that the first layer is an Affine, for the `_active` methods.
    fn check_first_affine(&self) -> Result<()> {
        match self.spec.layers().first() {
            Some(Layer::Affine { .. }) => Ok(()),
            _ => Err(Error::Unsupported {
                what: "active inputs need a net whose first layer is an Affine",
            }),
        }
    }

    fn predict_with<'w>(
        &self,
        x: &[T],
        active: Option<&[usize]>,
        batch: usize,
        ws: &'w mut [T],
    ) -> Result<&'w [T]> {
        let f = self.frame(batch, ws.len(), false)?;
        let c = self.ctx();
        // Inference draws nothing: the generator is a stand-in.
        let mut rng = seeded(0);
        forward(
            &c,
            self.params(),
            State::Read(self.state()),
            x,
            active,
            Mode::Infer,
            &mut rng,
            &f,
            ws,
            0..self.spec.predict_len(),
        )?;
        let r = scores_range(&c, &f);
        Ok(&ws[r])
    }

    /// The scores of a batch `x` (batch × input size), as a batch × output size slice of the
    /// workspace (the book's `predict(x, train_flg=False)`: Dropout scaled, BatchNorm with the
    /// running statistics).
    pub fn predict<'w>(&self, x: &[T], ws: &'w mut [T]) -> Result<&'w [T]> {
        let batch = self.batch_of(x)?;
        self.predict_with(x, None, batch, ws)
    }

    /// [`Net::predict`] for a batch whose inputs are zero outside `active` (ascending input
    /// indices): `x` holds only the `active` inputs of each row. The same scores, with the zero
    /// inputs' work skipped. The first layer must be an Affine.
    pub fn predict_active<'w>(
        &self,
        x: &[T],
        active: &[usize],
        batch: usize,
        ws: &'w mut [T],
    ) -> Result<&'w [T]> {
        self.check_first_affine()?;
        self.predict_with(x, Some(active), batch, ws)
    }

    /// The mean cross-entropy loss on a batch with labels `t`, in inference (the book's
    /// `loss(x, t, train_flg=False)`), with the weight decay term.
    pub fn loss<L: Label>(&self, x: &[T], t: &[L], ws: &mut [T]) -> Result<T> {
        self.check_loss()?;
        let batch = self.check_batch(x, t)?;
        let f = self.frame(batch, ws.len(), false)?;
        let c = self.ctx();
        let mut rng = seeded(0);
        forward(
            &c,
            self.params(),
            State::Read(self.state()),
            x,
            None,
            Mode::Infer,
            &mut rng,
            &f,
            ws,
            0..self.spec.predict_len(),
        )?;
        // In prediction the SoftmaxWithLoss has no slot of its own: it works on the scores.
        let r = scores_range(&c, &f);
        let loss = SoftmaxWithLoss::new(self.spec.output_size()).forward_inplace(&mut ws[r], t)?;
        Ok(loss + decay_term(&c, self.params(), self.weight_decay))
    }

    fn check_loss(&self) -> Result<()> {
        if self.spec.has_loss() {
            Ok(())
        } else {
            Err(Error::Unsupported {
                what: "a loss needs a net that ends with SoftmaxWithLoss",
            })
        }
    }

    /// How many rows of the batch the net classifies as their label.
    pub fn count_correct<L: Label>(&self, x: &[T], t: &[L], ws: &mut [T]) -> Result<usize> {
        self.check_batch(x, t)?;
        let y = self.predict(x, ws)?;
        Ok(count_argmax(y, t, self.spec.output_size()))
    }

    /// [`Net::count_correct`] through [`Net::predict_active`].
    pub fn count_correct_active<L: Label>(
        &self,
        x: &[T],
        active: &[usize],
        t: &[L],
        ws: &mut [T],
    ) -> Result<usize> {
        check_labels(t, self.spec.output_size())?;
        let y = self.predict_active(x, active, t.len(), ws)?;
        Ok(count_argmax(y, t, self.spec.output_size()))
    }

    /// The fraction of the batch classified correctly (the book's `accuracy`).
    pub fn accuracy<L: Label>(&self, x: &[T], t: &[L], ws: &mut [T]) -> Result<f64> {
        Ok(self.count_correct(x, t, ws)? as f64 / t.len() as f64)
    }
}

/// Rows of `y` (`classes` columns) whose largest score is at their label.
fn count_argmax<T: Float, L: Label>(y: &[T], t: &[L], classes: usize) -> usize {
    y.chunks_exact(classes)
        .zip(t)
        .filter(|(row, l)| argmax(row) == l.class())
        .count()
}

impl<T: Float, P: AsRef<[T]> + AsMut<[T]>> Net<T, P> {
    /// The flat parameter buffer, mutably (for an optimizer's `update`).
    pub fn params_mut(&mut self) -> &mut [T] {
        self.params.as_mut()
    }

    /// The state buffer, mutably.
    pub fn state_mut(&mut self) -> &mut [T] {
        self.state.as_mut()
    }

    /// Seeds the generator of the Dropout masks (a net starts seeded with 0).
    pub fn seed_dropout(&mut self, seed: u64) {
        self.rng = seeded(seed);
    }

    /// The book's initialisation: each Affine's weights ~ N(0, std²), drawn in layer order,
    /// with `std` from `init` and the layer's inputs; biases and `beta` 0, `gamma` 1; the
    /// running mean and variance 0.
    pub fn init<R: Rng + ?Sized>(&mut self, rng: &mut R, init: WeightInit) {
        let (spec, plan) = (self.spec, self.plan);
        let p = self.params.as_mut();
        for (i, layer) in spec.layers().iter().enumerate() {
            let at = plan[i].param;
            match *layer {
                Layer::Affine { input, output } => {
                    let (w, b) = affine_params_mut(p, at, input, output);
                    gaussian(rng, init.std(input), w);
                    b.fill(T::ZERO);
                }
                Layer::BatchNorm { features } => {
                    let (gamma, beta) = p[at..].split_at_mut(features);
                    gamma.fill(T::ONE);
                    beta[..features].fill(T::ZERO);
                }
                _ => {}
            }
        }
        self.state.as_mut().fill(T::ZERO);
    }

    /// [`Net::init`] with one standard deviation for every layer (`weight_init_std`).
    pub fn init_params<R: Rng + ?Sized>(&mut self, rng: &mut R, weight_init_std: f64) {
        self.init(rng, WeightInit::Std(weight_init_std));
    }

    /// One training pass: forward (batch statistics, new Dropout masks, running statistics
    /// updated), loss, backward with `upd`.
    #[allow(clippy::too_many_arguments)]
    fn train_pass<L: Label>(
        &mut self,
        x: &[T],
        active: Option<&[usize]>,
        t: &[L],
        full_batch: usize,
        upd: Update<'_, T>,
        ws: &mut [T],
    ) -> Result<T> {
        self.check_loss()?;
        let batch = match active {
            None => self.check_batch(x, t)?,
            Some(_) => {
                self.check_first_affine()?;
                check_labels(t, self.spec.output_size())?;
                t.len()
            }
        };
        let f = self.frame(batch, ws.len(), true)?;
        if full_batch < batch {
            return Err(Error::ShapeMismatch {
                what: "full batch must hold the part",
                expected: batch,
                actual: full_batch,
            });
        }
        if let Update::Grads(g) = &upd {
            check_len("grads", self.spec.param_len(), g.len())?;
        }
        let c = Ctx {
            spec: &self.spec,
            plan: &self.plan,
            backend: self.backend,
        };
        let params = self.params.as_mut();
        forward(
            &c,
            params,
            State::Update(self.state.as_mut()),
            x,
            active,
            Mode::Train { draw: true },
            &mut self.rng,
            &f,
            ws,
            0..self.spec.predict_len(),
        )?;
        let sm = softmax_range(&c, &f, ws);
        let softmax = SoftmaxWithLoss::new(self.spec.output_size());
        let loss = softmax.forward_backward_part_inplace(&mut ws[sm.clone()], t, full_batch)?;
        let loss = loss + decay_term(&c, params, self.weight_decay);
        backward(&c, params, upd, self.weight_decay, x, active, &f, ws, sm)?;
        Ok(loss)
    }

    /// Backpropagation (the book's `gradient`): writes the gradient of the loss into `grads`
    /// (the parameters' layout) and returns the loss of this forward pass (with the weight
    /// decay term). As in the book, the forward pass is a training one: BatchNorm uses the
    /// batch's statistics and updates the running ones, Dropout draws new masks.
    pub fn gradient<L: Label>(
        &mut self,
        x: &[T],
        t: &[L],
        grads: &mut [T],
        ws: &mut [T],
    ) -> Result<T> {
        self.train_pass(x, None, t, t.len(), Update::Grads(grads), ws)
    }

    /// [`Net::gradient`] of rows that are part of a batch of `full_batch` rows split across
    /// workers: loss and gradient are means over `full_batch`, so for a net without
    /// BatchNorm (whose statistics are the part's own) the parts' results add up to the whole
    /// batch's (up to the order of that sum).
    pub fn gradient_part<L: Label>(
        &mut self,
        x: &[T],
        t: &[L],
        full_batch: usize,
        grads: &mut [T],
        ws: &mut [T],
    ) -> Result<T> {
        self.train_pass(x, None, t, full_batch, Update::Grads(grads), ws)
    }

    /// [`Net::gradient`] of a batch whose inputs are zero outside `active` (ascending input
    /// indices; `x` holds only those of each row): the rows of the first layer's weight
    /// gradient for the other inputs are zero (plus `λ·W` with weight decay).
    pub fn gradient_active<L: Label>(
        &mut self,
        x: &[T],
        active: &[usize],
        t: &[L],
        grads: &mut [T],
        ws: &mut [T],
    ) -> Result<T> {
        self.train_pass(x, Some(active), t, t.len(), Update::Grads(grads), ws)
    }

    /// One SGD step on a batch, with the update fused into the backward pass (see
    /// [`Affine::backward_sgd`]): no gradient buffer, fewer passes over the parameters.
    /// Returns the batch's loss (before the update). Bit for bit the same parameters as
    /// [`Net::gradient`] followed by [`Sgd::update`](crate::Sgd::update), for batches of at
    /// most [`FUSED_MAX_BATCH`] rows (a larger batch is an error), and without weight decay
    /// (an error: use gradient and update).
    pub fn train_step<L: Label>(
        &mut self,
        x: &[T],
        t: &[L],
        sgd: &Sgd<T>,
        ws: &mut [T],
    ) -> Result<T> {
        self.fused_step(x, None, t, sgd, ws)
    }

    /// [`Net::train_step`] on a batch whose inputs are zero outside `active` (ascending input
    /// indices): `x` holds only the `active` inputs of each row (batch × `active.len()`). The
    /// zero inputs add nothing to the forward pass and leave their rows of `W1` unchanged,
    /// so this is the same step with their work skipped: the rows of `W1` not in `active` are
    /// neither read nor written. (On MNIST a third of the pixels are blank across a batch of
    /// 100.)
    pub fn train_step_active<L: Label>(
        &mut self,
        x: &[T],
        active: &[usize],
        t: &[L],
        sgd: &Sgd<T>,
        ws: &mut [T],
    ) -> Result<T> {
        self.fused_step(x, Some(active), t, sgd, ws)
    }

    fn fused_step<L: Label>(
        &mut self,
        x: &[T],
        active: Option<&[usize]>,
        t: &[L],
        sgd: &Sgd<T>,
        ws: &mut [T],
    ) -> Result<T> {
        if self.weight_decay != T::ZERO {
            return Err(Error::Unsupported {
                what: "the fused SGD step with weight decay (use gradient, then update)",
            });
        }
        if t.len() > FUSED_MAX_BATCH {
            return Err(Error::BatchTooLarge {
                batch: t.len(),
                capacity: FUSED_MAX_BATCH,
            });
        }
        self.train_pass(x, active, t, t.len(), Update::Sgd(sgd.lr), ws)
    }

    /// The gradient by central differences with step `h` (the book uses 1e-4, see
    /// [`crate::gradient::BOOK_H`]): slow, and the check on [`Net::gradient`]. The loss is the
    /// training one, as the book's: BatchNorm on the batch's statistics (the running ones are
    /// not updated here), Dropout with the masks of the last [`Net::gradient`] on this
    /// workspace, held fixed. Each parameter is perturbed and restored exactly; nothing is
    /// allocated.
    pub fn numerical_gradient<L: Label>(
        &mut self,
        h: T,
        x: &[T],
        t: &[L],
        grads: &mut [T],
        ws: &mut [T],
    ) -> Result<()> {
        self.check_loss()?;
        let batch = self.check_batch(x, t)?;
        check_len("grads", self.spec.param_len(), grads.len())?;
        let f = self.frame(batch, ws.len(), true)?;
        let c = Ctx {
            spec: &self.spec,
            plan: &self.plan,
            backend: self.backend,
        };
        let (state, lambda) = (self.state.as_ref(), self.weight_decay);
        let classes = self.spec.output_size();
        let mut rng = seeded(0);
        numerical_gradient(h, self.params.as_mut(), grads, |p| {
            forward(
                &c,
                p,
                State::Read(state),
                x,
                None,
                Mode::Train { draw: false },
                &mut rng,
                &f,
                ws,
                0..c.spec.predict_len(),
            )?;
            let sm = softmax_range(&c, &f, ws);
            let loss = SoftmaxWithLoss::new(classes).forward_inplace(&mut ws[sm], t)?;
            Ok(loss + decay_term(&c, p, lambda))
        })
    }
}
