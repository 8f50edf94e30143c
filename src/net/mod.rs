//! Networks: a layer list ([`NetSpec`]) with `const fn` buffer sizes and named parameter
//! layouts over one flat buffer, and the net that runs it ([`Net`]) with the book's
//! `predict` / `loss` / `accuracy` / `gradient` / `numerical_gradient`. The chapter 5
//! [`TwoLayerNet`] is a preset of the same net.

mod fold;
pub(crate) mod multi_layer_net;
pub mod spec;
mod two_layer_net;

pub use fold::{fold_batch_norm, folded_spec};
pub use multi_layer_net::{AfterFirst, Apply, Layout, MultiLayerNet, Net, Update};
pub use spec::{Activation, Dims, Layer, MAX_LAYERS, MlpOptions, NetSpec, Tensor, Tensors};
pub use two_layer_net::{TwoLayerNet, TwoLayerShape};
