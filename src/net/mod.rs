//! Networks: named parameter layouts over one flat buffer, `const fn` buffer sizes, and the
//! book's `predict` / `loss` / `accuracy` / `gradient` / `numerical_gradient`.

mod two_layer_net;

pub use two_layer_net::{Activation, Tensor, TwoLayerNet, TwoLayerShape};
