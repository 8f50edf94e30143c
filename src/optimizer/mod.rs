//! Optimizers: each `update` is one loop over the whole flat parameter slice.

mod sgd;

pub use sgd::Sgd;
