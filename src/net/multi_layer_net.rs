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
use crate::layers::{
    Affine, BatchNorm, Convolution, Dropout, FUSED_MAX_BATCH, Pooling, Relu, Sigmoid,
    SoftmaxWithLoss,
};
use crate::math::Float;
use crate::net::spec::{Frame, Layer, MAX_LAYERS, NetSpec, Place, Sizes};
use crate::optimizer::{Optimizer, Sgd};
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
    layout: Layout,
    params: P,
    state: P,
    backend: Backend,
    weight_decay: T,
    rng: XorShiftRng,
}

/// A layer list with the places of its values worked out once: what a [`Net`] keeps besides
/// its buffers, and what trains the layers after the first when that one is computed
/// elsewhere ([`Layout::step_after_first`]).
#[derive(Debug, Clone)]
pub struct Layout {
    spec: NetSpec,
    plan: [Place; MAX_LAYERS],
    sizes: Sizes,
}

impl Layout {
    /// The layout of `spec`, which is validated.
    pub fn new(spec: impl Into<NetSpec>) -> Result<Self> {
        let spec = spec.into();
        spec.validate()?;
        let mut plan = [Place::default(); MAX_LAYERS];
        for (i, p) in plan.iter_mut().enumerate().take(spec.len()) {
            *p = spec.place_row(i);
        }
        Ok(Layout {
            spec,
            plan,
            sizes: spec.sizes(),
        })
    }

    /// The layer list.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    fn ctx(&self, backend: Backend, base: usize) -> Ctx<'_> {
        Ctx {
            spec: &self.spec,
            plan: &self.plan,
            backend,
            base,
        }
    }

    /// The workspace's regions for `batch`, checked to fit `ws_len` elements.
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
pub enum Update<'g, T> {
    /// Stores them, in the parameters' layout (weight decay added).
    Grads(&'g mut [T]),
    /// Takes an SGD step with this learning rate as they are made.
    Sgd(T),
    /// Applies an optimizer to each layer's parameters as soon as their gradient is made
    /// (weight decay added), the gradient held in a scratch buffer for one layer.
    Apply(Apply<'g, T>),
}

impl<T> core::fmt::Debug for Update<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Update::Grads(_) => "Update::Grads",
            Update::Sgd(_) => "Update::Sgd",
            Update::Apply(_) => "Update::Apply",
        })
    }
}

/// An optimizer applied layer by layer during backward ([`Update::Apply`]).
pub struct Apply<'g, T> {
    /// The optimizer (its step is begun by the pass).
    pub opt: &'g mut dyn Optimizer<T>,
    /// Its state planes over the whole parameter buffer ([`Optimizer::state_len`] of
    /// [`NetSpec::param_len`]).
    pub state: &'g mut [T],
    /// Room for one layer's gradient: [`NetSpec::apply_scratch_len`] elements.
    pub scratch: &'g mut [T],
}

impl<T: Copy> Update<'_, T> {
    fn reborrow(&mut self) -> Update<'_, T> {
        match self {
            Update::Grads(g) => Update::Grads(g),
            Update::Sgd(lr) => Update::Sgd(*lr),
            Update::Apply(a) => Update::Apply(Apply {
                opt: &mut *a.opt,
                state: &mut *a.state,
                scratch: &mut *a.scratch,
            }),
        }
    }
}

/// Applies `opt` to `params[at..at + g.len()]` with the gradient `g`, the matching parts of
/// its planes (each `plen` long, one after the other in `state`).
fn apply_part<T: Float>(
    opt: &dyn Optimizer<T>,
    state: &mut [T],
    plen: usize,
    params: &mut [T],
    at: usize,
    g: &[T],
) -> Result<()> {
    let (n, planes) = (g.len(), opt.planes());
    let (s0, s1) = state.split_at_mut(if planes > 0 { plen } else { 0 });
    let s0: &mut [T] = if planes > 0 {
        &mut s0[at..at + n]
    } else {
        &mut []
    };
    let s1: &mut [T] = if planes > 1 {
        &mut s1[at..at + n]
    } else {
        &mut []
    };
    opt.apply(&mut params[at..at + n], g, s0, s1)
}

/// Rows of zero gradient handed to the optimizer at a time for the inactive inputs of a
/// sparse first layer (see [`NetSpec::apply_scratch_len`]).
pub(crate) const ZERO_ROWS: usize = 32;

/// What the passes need of a net besides its buffers.
struct Ctx<'a> {
    spec: &'a NetSpec,
    plan: &'a [Place; MAX_LAYERS],
    backend: Backend,
    /// The offset in the whole parameter buffer of the parameter slices given to the pass
    /// (0, or the first Affine's weight count when it runs elsewhere).
    base: usize,
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

/// The parameters `(W, b)` of a Convolution at `at`.
fn conv_params<'p, T>(p: &'p [T], at: usize, conv: &Convolution) -> (&'p [T], &'p [T]) {
    let (w, rest) = p[at..].split_at(conv.weight_len());
    (w, &rest[..conv.filters])
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
    mut rng: Option<&mut XorShiftRng>,
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
        if !p.in_place && !layer.computes_new_values() {
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
                let (w, b) = affine_params(params, p.param - c.base, input, output);
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
            Layer::Convolution(conv) => {
                let (w, b) = conv_params(params, p.param - c.base, &conv);
                // A Convolution followed by a Relu: the ReLU as each sample is made.
                let fuse = i + 1 < layers.end && list[i + 1] == Layer::Relu;
                let xin_r = p.input.map_or(0..0, |r| f.slot(r, p.width_in));
                let train = matches!(mode, Mode::Train { .. });
                // … and a Pooling after the Relu: each sample pooled while it is in cache.
                let pool = match list.get(i + 2) {
                    Some(&Layer::Pooling { h, w, stride }) if fuse && i + 2 < layers.end => {
                        let pp = &c.plan[i + 2];
                        let arg_r = if train {
                            f.extra(pp, pp.width_out)
                        } else {
                            0..0
                        };
                        let pool = Pooling::new(pp.dims_in, h, w, stride);
                        Some((pool, f.slot(pp.output, pp.width_out), arg_r))
                    }
                    _ => None,
                };
                let (pout_r, arg_r) = pool
                    .as_ref()
                    .map_or((0..0, 0..0), |(_, o, a)| (o.clone(), a.clone()));
                let [xin_ws, out, col, pack, pout, arg] = carve(
                    ws,
                    [xin_r, out_r, f.col(train), end..ws.len(), pout_r, arg_r],
                );
                let xin: &[T] = if p.input.is_some() { xin_ws } else { x };
                let mut g = Context::new(c.backend, pack);
                match pool {
                    None => conv.forward(&mut g, out, xin, w, b, col, fuse)?,
                    Some((pool, _, _)) => {
                        let (ni, no) = (conv.input.len(), p.width_out);
                        let np = pool.output_dims().len();
                        check_len("x", f.batch * ni, xin.len())?;
                        check_len("pooled", f.batch * np, pout.len())?;
                        // Every part of the batch (a sample, or the few of a chunk of Winograd
                        // tiles) made in the first samples' part of the slot: nothing reads the
                        // Relu's output once it is pooled (the Pooling's backward masks with its
                        // own output), so it stays in cache instead of going to memory.
                        let part = conv.part_len(col.len(), f.batch);
                        let mut n = 0;
                        while n < f.batch {
                            let m = part.min(f.batch - n);
                            let (on, xn) = (&mut out[..m * no], &xin[n * ni..(n + m) * ni]);
                            conv.forward_part(&mut g, on, xn, w, b, col, true, n == 0, f.batch)?;
                            for (j, oj) in on.chunks_exact(no).enumerate() {
                                let s = (n + j) * np..(n + j + 1) * np;
                                pool.forward(&mut pout[s.clone()], oj, arg.get_mut(s))?;
                            }
                            n += m;
                        }
                        i += 1;
                    }
                }
                if fuse {
                    i += 1;
                }
            }
            Layer::Pooling { h, w, stride } => {
                let pool = Pooling::new(p.dims_in, h, w, stride);
                let xin_r = p.input.map_or(0..0, |r| f.slot(r, p.width_in));
                let arg_r = match mode {
                    Mode::Infer => 0..0,
                    Mode::Train { .. } => f.extra(p, p.width_out),
                };
                let [xin_ws, out, arg] = carve(ws, [xin_r, out_r, arg_r]);
                let xin: &[T] = if p.input.is_some() { xin_ws } else { x };
                let arg = if arg.is_empty() { None } else { Some(arg) };
                pool.forward(out, xin, arg)?
            }
            Layer::Relu => Relu::forward_inplace(&mut ws[out_r]),
            Layer::Sigmoid => Sigmoid::forward_inplace(&mut ws[out_r]),
            Layer::BatchNorm { features } => {
                let bn = BatchNorm::new(features);
                let (gamma, beta) = params[p.param - c.base..].split_at(features);
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
                            let Some(rng) = rng.as_deref_mut() else {
                                return Err(Error::Unsupported {
                                    what: "Dropout masks drawn without a generator",
                                });
                            };
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

/// Where the gradient flowing back is: a range of the workspace, or the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grad {
    Ws(Range<usize>),
    Out,
}

/// The gradient flowing back (`d`) and `N` other ranges of `ws`, as mutable slices.
fn with_grad<'a, T, const N: usize>(
    ws: &'a mut [T],
    out: &'a mut [T],
    d: &Grad,
    others: [Range<usize>; N],
) -> (&'a mut [T], [&'a mut [T]; N]) {
    match d {
        Grad::Out => (out, carve(ws, others)),
        Grad::Ws(r) => {
            // N + 1 ranges, `d` first.
            let mut all: [Range<usize>; 8] = core::array::from_fn(|_| 0..0);
            all[0] = r.clone();
            for (a, o) in all[1..].iter_mut().zip(&others) {
                *a = o.clone();
            }
            let [d, a, b, c, e, f, g, h] = carve(ws, all);
            let mut rest = [a, b, c, e, f, g, h].into_iter();
            (d, core::array::from_fn(|_| rest.next().unwrap_or_default()))
        }
    }
}

/// A Pooling's backward (with its ReLU's) left to the first Convolution below them, which runs
/// it a sample at a time and uses each sample's gradient at once, in cache
/// ([`Convolution::backward_streamed`]): the Pooling, and its `dout`, `argmax` and output in
/// the workspace.
struct StreamedPool {
    pool: Pooling,
    ranges: [Range<usize>; 3],
}

/// How far backward goes and what it leaves: layers from `down_to` up are differentiated;
/// with `out`, the lowest Affine differentiated writes its input's gradient there (and the
/// layers below it work on it there) instead of in the workspace; with `defer`, that Affine
/// only computes that gradient, and its parameters' are left for later.
struct Down<'o, T> {
    down_to: usize,
    out: Option<&'o mut [T]>,
    defer: bool,
}

/// What [`backward`] left undone with [`Down::defer`]: the Affine's index and where its
/// output's gradient is in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deferred {
    layer: usize,
    dout: Range<usize>,
}

/// Backward from the loss's gradient in `d` down to the first layer with parameters (or to
/// `down.down_to`), each layer's parameter gradient stored or applied as `upd` says.
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
    d: Range<usize>,
    down: Down<'_, T>,
) -> Result<Option<Deferred>> {
    let list = c.spec.layers();
    let Some(lowest) = list.iter().position(Layer::has_params) else {
        return Ok(None);
    };
    let down_to = down.down_to.max(lowest);
    let top = c.spec.predict_len();
    // The lowest layer that passes a new gradient back: if an Affine, it may hand it out.
    let last_affine = (down_to..top)
        .find(|&i| list[i].computes_new_values())
        .filter(|&i| matches!(list[i], Layer::Affine { .. }));
    let end = f.end_backward;
    let out_buf: &mut [T] = down.out.unwrap_or_default();
    let use_out = !out_buf.is_empty();
    let mut d = Grad::Ws(d);
    let mut streamed = None;
    let mut deferred = None;
    let mut next = 0;
    let mut i = top;
    while i > down_to {
        i -= 1;
        let (p, layer) = (&c.plan[i], list[i]);
        let out_r = f.slot(p.output, p.width_out);
        let at = p.param.wrapping_sub(c.base);
        match layer {
            Layer::Relu => {
                let (dd, [out]) = with_grad(ws, out_buf, &d, [out_r]);
                Relu::backward_inplace(dd, out)?
            }
            Layer::Sigmoid => {
                let (dd, [out]) = with_grad(ws, out_buf, &d, [out_r]);
                Sigmoid::backward_inplace(dd, out)?
            }
            Layer::Dropout { .. } => {
                let (dd, [mask]) = with_grad(ws, out_buf, &d, [f.extra(p, p.width_out)]);
                Dropout::backward_inplace(dd, mask)?
            }
            Layer::BatchNorm { features } => {
                let bn = BatchNorm::new(features);
                let (dd, [xc, sd]) = with_grad(
                    ws,
                    out_buf,
                    &d,
                    [f.extra(p, features), f.fixed(p, features)],
                );
                match &mut upd {
                    Update::Grads(g) => {
                        let (dgamma, dbeta) = g[at..].split_at_mut(features);
                        let gamma = &params[at..at + features];
                        bn.backward_inplace(dd, xc, sd, gamma, dgamma, &mut dbeta[..features])?
                    }
                    Update::Sgd(lr) => {
                        let (gamma, beta) = params[at..].split_at_mut(features);
                        bn.backward_sgd_inplace(dd, xc, sd, gamma, &mut beta[..features], *lr)?
                    }
                    Update::Apply(a) => {
                        let (dgamma, rest) = a.scratch.split_at_mut(features);
                        let gamma = &params[at..at + features];
                        bn.backward_inplace(dd, xc, sd, gamma, dgamma, &mut rest[..features])?;
                        let plen = c.spec.param_len();
                        let g = &a.scratch[..2 * features];
                        apply_part(&*a.opt, a.state, plen, params, at, g)?
                    }
                }
            }
            Layer::Affine { input, output } => {
                let aff = Affine::new(input, output);
                let needs_dx = i > lowest;
                let lowest_here = Some(i) == last_affine;
                let to_out = needs_dx && lowest_here && use_out;
                let dx_r = if needs_dx && !to_out {
                    f.grad(next, p.width_in)
                } else {
                    0..0
                };
                let xin_r = p.input.map_or(0..0, |r| f.slot(r, p.width_in));
                let Grad::Ws(dout_r) = d.clone() else {
                    return Err(Error::Unsupported {
                        what: "an Affine below the layers working on the handed-out gradient",
                    });
                };
                let [dout, dx_ws, xin_ws, pack] =
                    carve(ws, [dout_r.clone(), dx_r.clone(), xin_r, end..ws.len()]);
                let xin: &[T] = if p.input.is_some() { xin_ws } else { x };
                let dx: Option<&mut [T]> = match (needs_dx, to_out) {
                    (false, _) => None,
                    (true, true) => Some(&mut *out_buf),
                    (true, false) => Some(dx_ws),
                };
                let mut g = Context::new(c.backend, pack);
                let first_active = if i == 0 { active } else { None };
                if lowest_here && down.defer {
                    // Only the input's gradient now; the parameters' later.
                    if let Some(dx) = dx {
                        let (w, _) = affine_params(params, at, input, output);
                        aff.backward_dx(&mut g, dx, dout, w)?;
                    }
                    deferred = Some(Deferred {
                        layer: i,
                        dout: dout_r,
                    });
                } else {
                    affine_update(
                        &aff,
                        &mut g,
                        params,
                        upd.reborrow(),
                        weight_decay,
                        at,
                        dx,
                        dout,
                        xin,
                        first_active,
                    )?;
                }
                if needs_dx {
                    if to_out {
                        d = Grad::Out;
                    } else {
                        d = Grad::Ws(dx_r);
                        next ^= 1;
                    }
                }
            }
            Layer::Convolution(conv) => {
                let needs_dx = i > lowest;
                let dx_r = if needs_dx {
                    f.grad(next, p.width_in)
                } else {
                    0..0
                };
                let Grad::Ws(dout_r) = d.clone() else {
                    return Err(Error::Unsupported {
                        what: "a Convolution below the layers working on the handed-out gradient",
                    });
                };
                let xin_r = p.input.map_or(0..0, |r| f.slot(r, p.width_in));
                let (nw, np) = (conv.weight_len(), conv.param_len());
                let sgd_r = f.fixed(p, np);
                // The Pooling above hands its gradient over undone (`dout_r` is then scratch
                // for one sample's).
                let (pool, [pool_d, pool_arg, pool_out]) = match streamed.take() {
                    Some(StreamedPool { pool, ranges }) => (Some(pool), ranges),
                    None => (None, [0..0, 0..0, 0..0]),
                };
                let [
                    dout,
                    dx_ws,
                    xin_ws,
                    col,
                    sgd_g,
                    pack,
                    pool_d,
                    pool_arg,
                    pool_out,
                ] = carve(
                    ws,
                    [
                        dout_r,
                        dx_r.clone(),
                        xin_r,
                        f.col(true),
                        sgd_r,
                        end..ws.len(),
                        pool_d,
                        pool_arg,
                        pool_out,
                    ],
                );
                let xin: &[T] = if p.input.is_some() { xin_ws } else { x };
                let dx = if needs_dx { Some(dx_ws) } else { None };
                let mut g = Context::new(c.backend, pack);
                // The gradient made where `upd` wants it (the SGD step's in the workspace).
                let grad: &mut [T] = match &mut upd {
                    Update::Grads(gr) => &mut gr[at..at + np],
                    Update::Sgd(_) => sgd_g,
                    Update::Apply(a) => &mut a.scratch[..np],
                };
                let (dw, db) = grad.split_at_mut(nw);
                if let Some(pool) = pool {
                    // Each sample's gradient through the Pooling and its ReLU, then at once
                    // into dW (see `StreamedPool`).
                    let po = pool.output_dims().len();
                    conv.backward_streamed(&mut g, dw, db, xin, col, dout, |n, dn| {
                        /// Sample `n`'s part of a batch's values, `po` each.
                        fn part<T>(v: &[T], n: usize, po: usize) -> Result<&[T]> {
                            v.get(n * po..(n + 1) * po).ok_or(Error::BufferLength {
                                buffer: "Pooling gradient, argmax or output",
                                expected: (n + 1) * po,
                                actual: v.len(),
                            })
                        }
                        let d = part(pool_d, n, po)?;
                        let (a, o) = (part(pool_arg, n, po)?, part(pool_out, n, po)?);
                        pool.backward_relu(dn, d, a, o)
                    })?;
                } else {
                    conv.backward(&mut g, dx, dw, db, dout, xin, &params[at..at + nw], col)?;
                }
                if weight_decay != T::ZERO {
                    for (dwv, &wv) in dw.iter_mut().zip(&params[at..at + nw]) {
                        *dwv += weight_decay * wv;
                    }
                }
                match &mut upd {
                    Update::Grads(_) => {}
                    Update::Sgd(lr) => {
                        let g = &ws[f.fixed(p, np)];
                        for (pv, &gv) in params[at..at + np].iter_mut().zip(g) {
                            *pv -= *lr * gv;
                        }
                    }
                    Update::Apply(a) => {
                        let plen = c.spec.param_len();
                        apply_part(&*a.opt, a.state, plen, params, at, &a.scratch[..np])?
                    }
                }
                if needs_dx {
                    d = Grad::Ws(dx_r);
                    next ^= 1;
                }
            }
            Layer::Pooling { h, w, stride } => {
                let pool = Pooling::new(p.dims_in, h, w, stride);
                let Grad::Ws(dout_r) = d.clone() else {
                    return Err(Error::Unsupported {
                        what: "a Pooling below the layers working on the handed-out gradient",
                    });
                };
                let dx_r = f.grad(next, p.width_in);
                let arg_r = f.extra(p, p.width_out);
                // A Relu just below: its backward in the same pass (the Pooling's output, kept
                // for it by the plan, as the mask at each window's maximum), and the Relu is
                // done.
                let relu = i > down_to && list[i - 1] == Layer::Relu;
                // A first Convolution below the ReLU whose dW goes through patches: the
                // Pooling's and ReLU's backward run there, a sample at a time.
                let conv_below = match list[..i] {
                    [.., Layer::Convolution(conv), Layer::Relu] => Some(conv),
                    _ => None,
                };
                let stream = relu
                    && !use_out
                    && i - 2 == lowest
                    && down_to == lowest
                    && conv_below.is_some_and(|conv| conv.streams_dw(f.col(true).len()));
                if stream {
                    let out_r = f.slot(p.output, p.width_out);
                    streamed = Some(StreamedPool {
                        pool,
                        ranges: [dout_r, arg_r, out_r],
                    });
                    d = Grad::Ws(dx_r);
                    i -= 1;
                    continue;
                }
                if relu {
                    let out_r = f.slot(p.output, p.width_out);
                    let [dout, dx, arg, out] = carve(ws, [dout_r, dx_r.clone(), arg_r, out_r]);
                    pool.backward_relu(dx, dout, arg, out)?;
                    i -= 1;
                } else {
                    let [dout, dx, arg] = carve(ws, [dout_r, dx_r.clone(), arg_r]);
                    pool.backward(dx, dout, arg)?;
                }
                d = Grad::Ws(dx_r);
                next ^= 1;
            }
            Layer::SoftmaxWithLoss => {
                return Err(Error::Unsupported {
                    what: "SoftmaxWithLoss before the last layer",
                });
            }
        }
    }
    debug_assert!(streamed.is_none(), "a Pooling's backward left undone");
    if use_out && let Grad::Ws(r) = d {
        // No Affine handed its input's gradient out: the gradient reached down here is it.
        check_len("dz", r.len(), out_buf.len())?;
        out_buf.copy_from_slice(&ws[r]);
    }
    Ok(deferred)
}

/// An Affine's backward at parameter offset `at`: `dx` if asked, and its parameters'
/// gradient stored (weight decay added) or applied by SGD, as `upd` says.
#[allow(clippy::too_many_arguments)]
fn affine_update<T: Float>(
    aff: &Affine,
    g: &mut Context<'_, T>,
    params: &mut [T],
    upd: Update<'_, T>,
    weight_decay: T,
    at: usize,
    dx: Option<&mut [T]>,
    dout: &[T],
    xin: &[T],
    first_active: Option<&[usize]>,
) -> Result<()> {
    let (input, output) = (aff.input_size, aff.output_size);
    match upd {
        Update::Grads(grads) => {
            let (dw, db) = affine_params_mut(grads, at, input, output);
            let (w, _) = affine_params(params, at, input, output);
            match first_active {
                Some(a) => aff.backward_active(g, dw, db, dout, xin, a)?,
                None => aff.backward(g, dx, dw, db, dout, xin, w)?,
            }
            if weight_decay != T::ZERO {
                for (dwv, &wv) in dw.iter_mut().zip(w) {
                    *dwv += weight_decay * wv;
                }
            }
        }
        Update::Sgd(lr) => {
            let (w, b) = affine_params_mut(params, at, input, output);
            match first_active {
                Some(a) => aff.backward_sgd_active(g, dout, xin, a, w, b, lr)?,
                None => aff.backward_sgd(g, dx, dout, xin, w, b, lr)?,
            }
        }
        Update::Apply(Apply {
            opt,
            state,
            scratch,
        }) => {
            let plen = params.len();
            let n = input * output;
            let Some(a) = first_active else {
                let (dw, rest) = scratch.split_at_mut(n);
                let (w, _) = affine_params(params, at, input, output);
                aff.backward(g, dx, dw, &mut rest[..output], dout, xin, w)?;
                if weight_decay != T::ZERO {
                    for (dwv, &wv) in dw.iter_mut().zip(w) {
                        *dwv += weight_decay * wv;
                    }
                }
                return apply_part(&*opt, state, plen, params, at, &scratch[..n + output]);
            };
            // The active rows' gradient compactly, then the optimizer on runs of active rows
            // and on runs of inactive ones (zero gradient, plus λ·W).
            let k = a.len();
            let (dwc, rest) = scratch.split_at_mut(k * output);
            let (db, rest) = rest.split_at_mut(output);
            let zero = &mut rest[..ZERO_ROWS * output];
            aff.backward_active_compact(g, dwc, db, dout, xin, a)?;
            let (mut r, mut j) = (0, 0);
            while r < input {
                if j < k && a[j] == r {
                    let j0 = j;
                    while j < k && a[j] == r + (j - j0) {
                        j += 1;
                    }
                    let rows = &mut dwc[j0 * output..j * output];
                    if weight_decay != T::ZERO {
                        let w = &params[at + r * output..][..rows.len()];
                        for (dwv, &wv) in rows.iter_mut().zip(w) {
                            *dwv += weight_decay * wv;
                        }
                    }
                    apply_part(&*opt, state, plen, params, at + r * output, rows)?;
                    r += j - j0;
                } else {
                    let end = if j < k { a[j] } else { input };
                    let run = (end - r).min(ZERO_ROWS);
                    let rows = &mut zero[..run * output];
                    if weight_decay != T::ZERO {
                        let w = &params[at + r * output..][..rows.len()];
                        for (z, &wv) in rows.iter_mut().zip(w) {
                            *z = T::ZERO + weight_decay * wv;
                        }
                    } else {
                        rows.fill(T::ZERO);
                    }
                    apply_part(&*opt, state, plen, params, at + r * output, rows)?;
                    r += run;
                }
            }
            apply_part(&*opt, state, plen, params, at + n, db)?;
        }
    }
    Ok(())
}

/// What [`Layout::step_after_first`] leaves for [`Layout::finish_after_first`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterFirst {
    batch: usize,
    deferred: Option<Deferred>,
}

impl Layout {
    /// Elements of the first layer's weight (`W1`, when the first layer is an Affine): the
    /// parameters [`Layout::step_after_first`] does not take.
    pub fn first_weight_len(&self) -> usize {
        match self.spec.layers().first() {
            Some(Layer::Affine { input, output }) => input * output,
            _ => 0,
        }
    }

    /// Values per sample out of the first layer.
    pub fn first_output_width(&self) -> usize {
        self.plan[0].width_out
    }

    /// One training step of the layers after the first, for a net whose first layer is an
    /// Affine computed elsewhere (split across threads by its inputs, say):
    ///
    /// - `fill` writes the first layer's output `z = x·W1 + b1` (batch × its width) into the
    ///   slice it is given, and applies ReLU to it too if its flag says so (the layer after
    ///   is a Relu, which then is not run again);
    /// - the layers after it run forward in training (BatchNorm's running statistics in
    ///   `state` updated, Dropout masks from `rng`), then SoftmaxWithLoss against `t`, then
    ///   backward: `dz` receives the gradient of the loss with respect to `z`;
    /// - their parameters, `rest` (the parameter buffer from the first layer's bias on, that
    ///   is from [`Layout::first_weight_len`]), are updated by SGD as they go, or their
    ///   gradients stored into the same part of a gradient buffer (`upd`), weight decay
    ///   added;
    /// - except the parameters of the lowest Affine after the first, whose gradient needs the
    ///   workspace only, and the first layer's bias, whose needs `dz`: those are left for
    ///   [`Layout::finish_after_first`], so that `dz` can be handed on first.
    ///
    /// Returns the batch's loss (cross-entropy only: the weight decay term needs `W1`, which
    /// is the caller's), and what the finish needs. `ws` is a workspace for the batch.
    #[allow(clippy::too_many_arguments)]
    pub fn step_after_first<T: Float, L: Label>(
        &self,
        backend: Backend,
        rest: &mut [T],
        state: &mut [T],
        mut upd: Update<'_, T>,
        weight_decay: T,
        rng: &mut XorShiftRng,
        fill: impl FnOnce(&mut [T], bool) -> Result<()>,
        t: &[L],
        dz: &mut [T],
        ws: &mut [T],
    ) -> Result<(T, AfterFirst)> {
        let batch = self.check_after_first(backend, rest, &upd, weight_decay, dz, t.len())?;
        let spec = &self.spec;
        if !spec.has_loss() {
            return Err(Error::Unsupported {
                what: "a loss needs a net that ends with SoftmaxWithLoss",
            });
        }
        check_labels(t, spec.output_size())?;
        check_len("state", spec.state_len(), state.len())?;
        let f = self.frame(batch, ws.len(), true)?;
        let c = self.ctx(backend, self.first_weight_len());
        let p0 = &self.plan[0];
        let relu = spec.layers().get(1) == Some(&Layer::Relu);
        fill(&mut ws[f.slot(p0.output, p0.width_out)], relu)?;
        let from = if relu { 2 } else { 1 };
        forward(
            &c,
            rest,
            State::Update(state),
            &[],
            None,
            Mode::Train { draw: true },
            Some(rng),
            &f,
            ws,
            from..spec.predict_len(),
        )?;
        let sm = softmax_range(&c, &f, ws);
        let loss = SoftmaxWithLoss::new(spec.output_size())
            .forward_backward_inplace(&mut ws[sm.clone()], t)?;
        let down = Down {
            down_to: 1,
            out: Some(dz),
            defer: true,
        };
        let deferred = backward(
            &c,
            rest,
            upd.reborrow(),
            weight_decay,
            &[],
            None,
            &f,
            ws,
            sm,
            down,
        )?;
        Ok((loss, AfterFirst { batch, deferred }))
    }

    /// The rest of [`Layout::step_after_first`]'s step, once `dz` is handed on: the
    /// parameters of the lowest Affine after the first, and the first layer's bias (whose
    /// gradient is `Σ_rows dz`), updated or their gradients stored as `upd` says (as in the
    /// step). `ws` is the step's workspace, as the step left it.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_after_first<T: Float>(
        &self,
        backend: Backend,
        rest: &mut [T],
        mut upd: Update<'_, T>,
        weight_decay: T,
        after: &AfterFirst,
        dz: &[T],
        ws: &mut [T],
    ) -> Result<()> {
        self.check_after_first(backend, rest, &upd, weight_decay, dz, after.batch)?;
        let f = self.frame(after.batch, ws.len(), true)?;
        let c = self.ctx(backend, self.first_weight_len());
        if let Some(d) = &after.deferred {
            let p = &self.plan[d.layer];
            let Layer::Affine { input, output } = self.spec.layers()[d.layer] else {
                return Err(Error::Unsupported {
                    what: "a deferred update of a layer other than an Affine",
                });
            };
            let xin_r = p.input.map_or(0..0, |r| f.slot(r, p.width_in));
            let [dout, xin, pack] = carve(ws, [d.dout.clone(), xin_r, f.end_backward..ws.len()]);
            let mut g = Context::new(c.backend, pack);
            let at = p.param - c.base;
            let aff = Affine::new(input, output);
            affine_update(
                &aff,
                &mut g,
                rest,
                upd.reborrow(),
                weight_decay,
                at,
                None,
                dout,
                xin,
                None,
            )?;
        }
        let Some(Layer::Affine { input, output }) = self.spec.layers().first().copied() else {
            return Ok(());
        };
        let first = Affine::new(input, output);
        match upd {
            Update::Sgd(lr) => first.sgd_bias(dz, &mut rest[..output], lr),
            Update::Grads(g) => first.bias_gradient(dz, &mut g[..output]),
            // Refused by the check above.
            Update::Apply(_) => Err(Error::Unsupported {
                what: "an optimizer applied during the split step (store the gradients)",
            }),
        }
    }

    /// Checks the lengths of the split step; returns the batch.
    fn check_after_first<T: Float>(
        &self,
        backend: Backend,
        rest: &[T],
        upd: &Update<'_, T>,
        weight_decay: T,
        dz: &[T],
        batch: usize,
    ) -> Result<usize> {
        backend.resolve()?;
        if !matches!(self.spec.layers().first(), Some(Layer::Affine { .. })) {
            return Err(Error::Unsupported {
                what: "the split step needs a net whose first layer is an Affine",
            });
        }
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        let n = self.spec.param_len() - self.first_weight_len();
        check_len("params after W1", n, rest.len())?;
        if let Update::Grads(g) = upd {
            check_len("grads after W1", n, g.len())?;
        }
        if matches!(upd, Update::Sgd(_)) && weight_decay != T::ZERO {
            return Err(Error::Unsupported {
                what: "the fused SGD step with weight decay (use gradients, then update)",
            });
        }
        if matches!(upd, Update::Apply(_)) {
            return Err(Error::Unsupported {
                what: "an optimizer applied during the split step (store the gradients)",
            });
        }
        check_len("dz", batch * self.first_output_width(), dz.len())?;
        Ok(batch)
    }
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
        let layout = Layout::new(spec)?;
        let spec = &layout.spec;
        check_len("params", spec.param_len(), params.as_ref().len())?;
        check_len("state", spec.state_len(), state.as_ref().len())?;
        Ok(Net {
            layout,
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
        &self.layout.spec
    }

    /// The layer list and the places of its values.
    pub fn layout(&self) -> &Layout {
        &self.layout
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
        let t = self.spec().tensor(name)?;
        Some(&self.params()[t.range()])
    }

    /// A named state tensor (`"running_mean1"`, `"running_var1"`, …).
    pub fn state_tensor(&self, name: &str) -> Option<&[T]> {
        let t = self.spec().state_tensors().find(|t| t.name == name)?;
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
        self.layout.ctx(self.backend, 0)
    }

    /// The batch size of `x`, checked to be whole and positive.
    fn batch_of(&self, x: &[T]) -> Result<usize> {
        let n = self.spec().input_size();
        let batch = x.len() / n;
        if x.is_empty() {
            return Err(Error::EmptyBatch);
        }
        if batch == 0 {
            return Err(Error::ShortInput {
                per_sample: n,
                actual: x.len(),
            });
        }
        check_len("x", batch * n, x.len())?;
        Ok(batch)
    }

    /// Checks `x` and `t` and returns the batch size.
    fn check_batch<L: Label>(&self, x: &[T], t: &[L]) -> Result<usize> {
        let batch = self.batch_of(x)?;
        check_len("t", batch, t.len())?;
        check_labels(t, self.spec().output_size())?;
        Ok(batch)
    }

    /// The workspace's regions for `batch`, checked to fit `ws`.
    fn frame(&self, batch: usize, ws_len: usize, backward: bool) -> Result<Frame> {
        self.layout.frame(batch, ws_len, backward)
    }

    /// Checks that the first layer is an Affine, for the `_active` methods.
    fn check_first_affine(&self) -> Result<()> {
        match self.spec().layers().first() {
            Some(Layer::Affine { .. }) => Ok(()),
            _ => Err(Error::Unsupported {
                what: "active inputs need a net whose first layer is an Affine",
            }),
        }
    }

    /// The inference forward pass of a batch; returns where its scores are in `ws`.
    fn infer(
        &self,
        x: &[T],
        active: Option<&[usize]>,
        batch: usize,
        ws: &mut [T],
    ) -> Result<Range<usize>> {
        let f = self.frame(batch, ws.len(), false)?;
        let c = self.ctx();
        forward(
            &c,
            self.params(),
            State::Read(self.state()),
            x,
            active,
            Mode::Infer,
            None,
            &f,
            ws,
            0..c.spec.predict_len(),
        )?;
        Ok(scores_range(&c, &f))
    }

    /// The inference loss of a batch with labels `t` (the scores softmaxed in place), with
    /// the weight decay term.
    fn infer_loss<L: Label>(
        &self,
        x: &[T],
        active: Option<&[usize]>,
        t: &[L],
        ws: &mut [T],
    ) -> Result<T> {
        self.check_loss()?;
        check_labels(t, self.spec().output_size())?;
        let r = self.infer(x, active, t.len(), ws)?;
        // In prediction the SoftmaxWithLoss has no slot of its own: it works on the scores.
        let loss =
            SoftmaxWithLoss::new(self.spec().output_size()).forward_inplace(&mut ws[r], t)?;
        Ok(loss
            + self
                .spec()
                .weight_decay_term(self.params(), self.weight_decay))
    }

    /// The scores of a batch `x` (batch × input size), as a batch × output size slice of the
    /// workspace (the book's `predict(x, train_flg=False)`: Dropout scaled, BatchNorm with the
    /// running statistics).
    pub fn predict<'w>(&self, x: &[T], ws: &'w mut [T]) -> Result<&'w [T]> {
        let batch = self.batch_of(x)?;
        let r = self.infer(x, None, batch, ws)?;
        Ok(&ws[r])
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
        let r = self.infer(x, Some(active), batch, ws)?;
        Ok(&ws[r])
    }

    /// The mean cross-entropy loss on a batch with labels `t`, in inference (the book's
    /// `loss(x, t, train_flg=False)`), with the weight decay term.
    pub fn loss<L: Label>(&self, x: &[T], t: &[L], ws: &mut [T]) -> Result<T> {
        self.check_batch(x, t)?;
        self.infer_loss(x, None, t, ws)
    }

    /// [`Net::loss`] for a batch whose inputs are zero outside `active` (ascending input
    /// indices): `x` holds only the `active` inputs of each row. The first layer must be an
    /// Affine.
    pub fn loss_active<L: Label>(
        &self,
        x: &[T],
        active: &[usize],
        t: &[L],
        ws: &mut [T],
    ) -> Result<T> {
        self.check_first_affine()?;
        self.infer_loss(x, Some(active), t, ws)
    }

    fn check_loss(&self) -> Result<()> {
        if self.spec().has_loss() {
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
        Ok(count_argmax(y, t, self.spec().output_size()))
    }

    /// [`Net::count_correct`] through [`Net::predict_active`].
    pub fn count_correct_active<L: Label>(
        &self,
        x: &[T],
        active: &[usize],
        t: &[L],
        ws: &mut [T],
    ) -> Result<usize> {
        check_labels(t, self.spec().output_size())?;
        let y = self.predict_active(x, active, t.len(), ws)?;
        Ok(count_argmax(y, t, self.spec().output_size()))
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

    /// The book's initialisation: each Affine's and Convolution's weights ~ N(0, std²), drawn
    /// in layer order, with `std` from `init` and the layer's inputs (a Convolution's:
    /// channels × kernel height × kernel width, as the book's `pre_node_nums`); biases and `beta` 0, `gamma` 1; the
    /// running mean and variance 0.
    pub fn init<R: Rng + ?Sized>(&mut self, rng: &mut R, init: WeightInit) {
        let (spec, plan) = (self.layout.spec, self.layout.plan);
        let p = self.params.as_mut();
        for (i, layer) in spec.layers().iter().enumerate() {
            let at = plan[i].param;
            match *layer {
                Layer::Affine { input, output } => {
                    let (w, b) = affine_params_mut(p, at, input, output);
                    gaussian(rng, init.std(input), w);
                    b.fill(T::ZERO);
                }
                Layer::Convolution(conv) => {
                    let (w, b) = p[at..at + conv.param_len()].split_at_mut(conv.weight_len());
                    gaussian(rng, init.std(conv.patch_len()), w);
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
                check_labels(t, self.spec().output_size())?;
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
        let plen = self.spec().param_len();
        let mut upd = upd;
        match &mut upd {
            Update::Grads(g) => check_len("grads", plen, g.len())?,
            Update::Apply(a) => {
                check_len("optimizer state", a.opt.state_len(plen), a.state.len())?;
                let need = self.spec().apply_scratch_len();
                if a.scratch.len() < need {
                    return Err(Error::BufferLength {
                        buffer: "scratch",
                        expected: need,
                        actual: a.scratch.len(),
                    });
                }
                // Everything is checked: the step begins.
                a.opt.begin_step();
            }
            Update::Sgd(_) => {}
        }
        let c = self.layout.ctx(self.backend, 0);
        let params = self.params.as_mut();
        forward(
            &c,
            params,
            State::Update(self.state.as_mut()),
            x,
            active,
            Mode::Train { draw: true },
            Some(&mut self.rng),
            &f,
            ws,
            0..c.spec.predict_len(),
        )?;
        let sm = softmax_range(&c, &f, ws);
        let softmax = SoftmaxWithLoss::new(c.spec.output_size());
        let loss = softmax.forward_backward_part_inplace(&mut ws[sm.clone()], t, full_batch)?;
        let loss = loss + c.spec.weight_decay_term(params, self.weight_decay);
        let down = Down {
            down_to: 0,
            out: None,
            defer: false,
        };
        backward(
            &c,
            params,
            upd,
            self.weight_decay,
            x,
            active,
            &f,
            ws,
            sm,
            down,
        )?;
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

    /// One training step with any optimizer (its step begun here), applied layer by layer as
    /// backward makes each gradient, held in `scratch` ([`NetSpec::apply_scratch_len`]):
    /// the same arithmetic as [`Net::gradient`] (or [`Net::gradient_active`] with `active`)
    /// then [`Optimizer::update`], with no gradient buffer for the whole net and each gradient
    /// still in cache when it is used. `opt_state` holds the optimizer's planes over the
    /// parameters. Returns the batch's loss (before the update).
    #[allow(clippy::too_many_arguments)]
    pub fn step_with<L: Label>(
        &mut self,
        x: &[T],
        active: Option<&[usize]>,
        t: &[L],
        opt: &mut dyn Optimizer<T>,
        opt_state: &mut [T],
        scratch: &mut [T],
        ws: &mut [T],
    ) -> Result<T> {
        let upd = Update::Apply(Apply {
            opt,
            state: opt_state,
            scratch,
        });
        self.train_pass(x, active, t, t.len(), upd, ws)
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
            return Err(Error::FusedBatchTooLarge {
                batch: t.len(),
                max: FUSED_MAX_BATCH,
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
        check_len("grads", self.spec().param_len(), grads.len())?;
        let f = self.layout.frame(batch, ws.len(), true)?;
        let c = self.layout.ctx(self.backend, 0);
        let (state, lambda) = (self.state.as_ref(), self.weight_decay);
        let classes = c.spec.output_size();
        numerical_gradient(h, self.params.as_mut(), grads, |p| {
            forward(
                &c,
                p,
                State::Read(state),
                x,
                None,
                Mode::Train { draw: false },
                None,
                &f,
                ws,
                0..c.spec.predict_len(),
            )?;
            let sm = softmax_range(&c, &f, ws);
            let loss = SoftmaxWithLoss::new(classes).forward_inplace(&mut ws[sm], t)?;
            Ok(loss + c.spec.weight_decay_term(p, lambda))
        })
    }
}
