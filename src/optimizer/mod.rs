//! Optimizers (the book's `common/optimizer.py`): each `update` is one loop over the whole
//! flat parameter slice, with its state in a caller-owned buffer.
//!
//! The state of an optimizer is zero, one or two *planes* of one value per parameter
//! (Momentum's velocity `v`; AdaGrad's and RMSprop's `h`; Adam's `m` and `v`), laid out one
//! after the other in one buffer of `planes × n` elements ([`Optimizer::state_len`], or each
//! optimizer's `const fn state_len` for a `static`), zero to start, as the book's `None`.
//!
//! [`Optimizer::update`] is the book's `update(params, grads)`. A step can also be applied
//! part by part ([`Optimizer::begin_step`] once, then [`Optimizer::apply`] on each part with
//! the matching parts of the planes), which is how a step split across threads updates each
//! thread's rows: the parts together are the same as the whole.

mod adagrad;
pub(crate) mod adam;
mod momentum;
mod nesterov;
mod rmsprop;
mod sgd;

pub use adagrad::AdaGrad;
pub use adam::Adam;
pub use momentum::Momentum;
pub use nesterov::Nesterov;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use crate::error::{Error, Result, check_len};
use crate::math::Float;

/// The book's `1e-7` in AdaGrad, RMSprop and Adam: `p -= lr·g / (√h + 1e-7)`.
pub const DENOMINATOR_EPS: f64 = 1e-7;

/// Elements per block of the optimizers that take square roots: each block's roots are taken
/// in one vectorized call, so that the loops around it vectorize too.
pub(crate) const BLOCK: usize = 64;

/// What every optimizer does.
pub trait Optimizer<T: Float> {
    /// Planes of state, one value per parameter each (0, 1 or 2).
    fn planes(&self) -> usize;

    /// Elements of state for `n` parameters.
    fn state_len(&self, n: usize) -> usize {
        self.planes().saturating_mul(n)
    }

    /// Starts a step (Adam counts them; the others keep no count).
    fn begin_step(&mut self) {}

    /// The current step's update of some parameters, given their gradients and their parts
    /// of the state planes (`s0`, `s1`: as long as `params`, or empty when the optimizer has
    /// fewer planes). Every length is checked before anything is written.
    fn apply(&self, params: &mut [T], grads: &[T], s0: &mut [T], s1: &mut [T]) -> Result<()>;

    /// One step of the whole parameter slice (the book's `update(params, grads)`): `state`
    /// holds [`Optimizer::state_len`] elements. Checked before anything changes.
    fn update(&mut self, params: &mut [T], grads: &[T], state: &mut [T]) -> Result<()> {
        let n = params.len();
        check_len("grads", n, grads.len())?;
        check_len("optimizer state", self.state_len(n), state.len())?;
        let (s0, s1) = state.split_at_mut(if self.planes() > 0 { n } else { 0 });
        self.begin_step();
        self.apply(params, grads, s0, s1)
    }

    /// The learning rate, if this is plain SGD (whose step the nets can fuse into their
    /// backward pass).
    fn sgd_lr(&self) -> Option<T> {
        None
    }
}

/// The step of AdaGrad and RMSprop: `accumulate(h, g)` for every parameter, then
/// `p -= lr·g / (√h + 1e-7)`, in blocks whose square roots are one vectorized call.
pub(crate) fn rooted_step<T: Float>(
    params: &mut [T],
    grads: &[T],
    h: &mut [T],
    lr: T,
    accumulate: impl Fn(&mut T, T),
) {
    let eps = T::from_f64(DENOMINATOR_EPS);
    let mut root = [T::ZERO; BLOCK];
    for ((p, g), h) in params
        .chunks_mut(BLOCK)
        .zip(grads.chunks(BLOCK))
        .zip(h.chunks_mut(BLOCK))
    {
        let root = &mut root[..p.len()];
        for ((&g, h), r) in g.iter().zip(h.iter_mut()).zip(&mut *root) {
            accumulate(h, g);
            *r = *h;
        }
        T::sqrt_slice(root);
        for ((p, &g), &r) in p.iter_mut().zip(g).zip(root.iter()) {
            *p -= lr * g / (r + eps);
        }
    }
}

/// Checks the lengths of an [`Optimizer::apply`] call: grads as long as params, and `planes`
/// state planes as long as params (the others empty).
pub(crate) fn check_apply<T>(
    planes: usize,
    params: &[T],
    grads: &[T],
    s0: &[T],
    s1: &[T],
) -> Result<()> {
    let n = params.len();
    check_len("grads", n, grads.len())?;
    check_len(
        "optimizer state plane 0",
        if planes > 0 { n } else { 0 },
        s0.len(),
    )?;
    check_len(
        "optimizer state plane 1",
        if planes > 1 { n } else { 0 },
        s1.len(),
    )?;
    Ok(())
}

/// A learning rate must be finite and positive.
pub(crate) fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            what: "learning rate (must be finite and positive)",
        })
    }
}

/// Any of the book's optimizers, chosen at run time (the `--optimizer` of the tools).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyOptimizer<T> {
    /// [`Sgd`].
    Sgd(Sgd<T>),
    /// [`Momentum`].
    Momentum(Momentum<T>),
    /// [`Nesterov`].
    Nesterov(Nesterov<T>),
    /// [`AdaGrad`].
    AdaGrad(AdaGrad<T>),
    /// [`RmsProp`].
    RmsProp(RmsProp<T>),
    /// [`Adam`].
    Adam(Adam<T>),
}

/// The kinds of [`AnyOptimizer`], by the book's class names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// `SGD`
    Sgd,
    /// `Momentum`
    Momentum,
    /// `Nesterov`
    Nesterov,
    /// `AdaGrad`
    AdaGrad,
    /// `RMSprop`
    RmsProp,
    /// `Adam`
    Adam,
}

impl OptimizerKind {
    /// All six, in the book's order.
    pub const ALL: [OptimizerKind; 6] = [
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::Nesterov,
        OptimizerKind::AdaGrad,
        OptimizerKind::RmsProp,
        OptimizerKind::Adam,
    ];

    /// The book's class name.
    pub const fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "SGD",
            OptimizerKind::Momentum => "Momentum",
            OptimizerKind::Nesterov => "Nesterov",
            OptimizerKind::AdaGrad => "AdaGrad",
            OptimizerKind::RmsProp => "RMSprop",
            OptimizerKind::Adam => "Adam",
        }
    }

    /// The book's default learning rate (`lr=0.01`, Adam's `lr=0.001`).
    pub const fn default_lr(self) -> f64 {
        match self {
            OptimizerKind::Adam => 0.001,
            _ => 0.01,
        }
    }

    /// Planes of state.
    pub const fn planes(self) -> usize {
        match self {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Adam => 2,
            _ => 1,
        }
    }
}

impl<T: Float> AnyOptimizer<T> {
    /// The optimizer of `kind` with learning rate `lr` and the book's other defaults
    /// (momentum 0.9, decay 0.99, β1 0.9, β2 0.999); `lr` must be finite and positive.
    pub fn new(kind: OptimizerKind, lr: f64) -> Result<Self> {
        check_lr(lr)?;
        let l = T::from_f64(lr);
        Ok(match kind {
            OptimizerKind::Sgd => AnyOptimizer::Sgd(Sgd::new(l)),
            OptimizerKind::Momentum => AnyOptimizer::Momentum(Momentum::new(l)),
            OptimizerKind::Nesterov => AnyOptimizer::Nesterov(Nesterov::new(l)),
            OptimizerKind::AdaGrad => AnyOptimizer::AdaGrad(AdaGrad::new(l)),
            OptimizerKind::RmsProp => AnyOptimizer::RmsProp(RmsProp::new(l)),
            OptimizerKind::Adam => AnyOptimizer::Adam(Adam::new(lr)),
        })
    }

    /// Its kind.
    pub fn kind(&self) -> OptimizerKind {
        match self {
            AnyOptimizer::Sgd(_) => OptimizerKind::Sgd,
            AnyOptimizer::Momentum(_) => OptimizerKind::Momentum,
            AnyOptimizer::Nesterov(_) => OptimizerKind::Nesterov,
            AnyOptimizer::AdaGrad(_) => OptimizerKind::AdaGrad,
            AnyOptimizer::RmsProp(_) => OptimizerKind::RmsProp,
            AnyOptimizer::Adam(_) => OptimizerKind::Adam,
        }
    }

    fn inner(&self) -> &dyn Optimizer<T> {
        match self {
            AnyOptimizer::Sgd(o) => o,
            AnyOptimizer::Momentum(o) => o,
            AnyOptimizer::Nesterov(o) => o,
            AnyOptimizer::AdaGrad(o) => o,
            AnyOptimizer::RmsProp(o) => o,
            AnyOptimizer::Adam(o) => o,
        }
    }
}

impl<T: Float> Optimizer<T> for AnyOptimizer<T> {
    fn planes(&self) -> usize {
        self.inner().planes()
    }
    fn begin_step(&mut self) {
        if let AnyOptimizer::Adam(a) = self {
            a.begin_step();
        }
    }
    fn apply(&self, params: &mut [T], grads: &[T], s0: &mut [T], s1: &mut [T]) -> Result<()> {
        self.inner().apply(params, grads, s0, s1)
    }
    fn sgd_lr(&self) -> Option<T> {
        self.inner().sgd_lr()
    }
}
