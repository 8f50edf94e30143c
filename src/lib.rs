//! # zeronn
//!
//! The networks of *Deep Learning from Scratch* (Saitoh, O'Reilly Japan) as a `no_std` core
//! that needs no heap: for microcontroller firmware (inference and on-device training) and
//! for fast, exact experiments on the desktop.
//!
//! ## Memory model: the caller owns every buffer
//!
//! A net is a list of layers ([`NetSpec`]: Affine, Relu, Sigmoid, BatchNorm, Dropout,
//! SoftmaxWithLoss) run by one engine ([`Net`]; the chapter 5 [`TwoLayerNet`] is a preset).
//!
//! | buffer | holds | length |
//! | --- | --- | --- |
//! | params | all trainable tensors of a net, one flat slice with the book's names (`W1`, `b1`, `gamma1`, `beta1`, `W2`, …) | [`NetSpec::param_len`] |
//! | grads | the gradient, in the same layout | the same |
//! | state | BatchNorm's running means and variances | [`NetSpec::state_len`] |
//! | optimizer state | the optimizer's planes (Momentum's `v`, Adam's `m` and `v`, …) | [`Adam::state_len`] and the like |
//! | workspace | forward/backward activations of a batch, what backward keeps, then gemm packing space | [`NetSpec::workspace_len`] (desktop) or [`NetSpec::min_workspace_len`] (firmware) |
//!
//! All lengths are `const fn`s of the layer list and the largest batch, so firmware declares
//! `static` arrays and knows its memory at compile time. Shapes are runtime values; every
//! length and capacity is checked before anything is written, and a mismatch is an
//! [`Error`], never a panic.
//!
//! ## Modules
//!
//! - [`math`]: the element type ([`Float`], `f32` or `f64`) and the one place calling `libm`
//! - [`gemm`]: `C ← αAB + βC` with strides: naive reference, cache-blocked driver, backends
//! - [`functions`]: softmax, sigmoid, argmax, labels
//! - [`layers`]: [`Affine`], [`Relu`], [`Sigmoid`], [`BatchNorm`], [`Dropout`],
//!   [`SoftmaxWithLoss`] as forward/backward pairs
//! - [`net`]: the layer list [`NetSpec`], the net [`Net`], the preset [`TwoLayerNet`] and its
//!   [`TwoLayerShape`], BatchNorm folding
//! - [`optimizer`]: [`Sgd`], [`Momentum`], [`Nesterov`], [`AdaGrad`], [`RmsProp`], [`Adam`]
//! - [`gradient`]: [`numerical_gradient`] by central differences
//! - [`random`], [`init`]: seeded generator, sampling, weight initialisation ([`WeightInit`])
//! - [`model`]: the on-flash model format (any layer list, with BatchNorm's state), validated
//!   and used in place
//! - [`quant`]: int8 inference in TensorFlow Lite's scheme ([`quant::QAffine`], the fixed-point
//!   requantization)
//!
//! ## Features
//!
//! - `std`: detect the CPU's SIMD features at run time (AVX-512, AVX2+FMA). Without it the SIMD
//!   backends are chosen at compile time from `-C target-feature` / `-C target-cpu`.
//! - `matrixmultiply`: adds [`gemm::Backend::MatrixMultiply`] (needs `alloc` and a global
//!   allocator: that crate heap-allocates its packing buffers).
//!
//! ## Example: one training step
//!
//! ```
//! use zeronn::{Sgd, TwoLayerNet, TwoLayerShape, random};
//!
//! const SHAPE: TwoLayerShape = TwoLayerShape::new(4, 3, 2);
//! let mut params = [0f32; SHAPE.param_len()];
//! let mut grads = [0f32; SHAPE.param_len()];
//! let mut ws = [0f32; SHAPE.min_workspace_len(2)];
//!
//! let mut net = TwoLayerNet::new(SHAPE, &mut params[..])?;
//! net.init_params(&mut random::seeded(42), 0.01);
//! let x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
//! let t = [0u8, 1];
//! let loss = net.gradient(&x, &t, &mut grads, &mut ws)?;
//! Sgd::new(0.1).update(net.params_mut(), &grads)?;
//! assert!(loss > 0.0);
//! # Ok::<(), zeronn::Error>(())
//! ```
//!
//! ## Example: firmware
//!
//! What a microcontroller program does with zeronn, whole: no heap, every buffer a `static`
//! sized by `const fn`s of the layer list, a model in flash run in place, and on-device
//! training. On the board the model comes from `include_model!("model.zrnn")` (a file that
//! `zeronn train --save` wrote) and `main` is the board's entry point (`#[cortex_m_rt::entry]`;
//! `examples/firmware` is such a program for three Cortex-M boards under QEMU). Here, to run as
//! a test, the "flash" is a static written by [`model::write`] from a net trained in place.
//!
//! ```
//! use core::ptr::addr_of_mut;
//! use zeronn::functions::argmax;
//! use zeronn::model::{self, Aligned};
//! use zeronn::{Layer, Model, Net, NetSpec, Sgd, WeightInit, random};
//!
//! // The book's chapter 5 net on 28 × 28 images.
//! const NET: NetSpec = NetSpec::new(&[
//!     Layer::Affine { input: 784, output: 50 },
//!     Layer::Relu,
//!     Layer::Affine { input: 50, output: 10 },
//!     Layer::SoftmaxWithLoss,
//! ]);
//! const BATCH: usize = 10;
//!
//! // Every buffer, its size known at compile time (the linker map shows the RAM it takes).
//! static mut PARAMS: [f32; NET.param_len()] = [0.0; NET.param_len()];
//! static mut X: [f32; BATCH * NET.input_size()] = [0.0; BATCH * NET.input_size()];
//! static mut T: [u8; BATCH] = [0; BATCH];
//! static mut WS: [f32; NET.min_workspace_len(BATCH)] = [0.0; NET.min_workspace_len(BATCH)];
//! // On the board: `static MODEL: &[u8] = zeronn::include_model!("model.zrnn");`
//! static mut FLASH: Aligned<[u8; model::encoded_len(&NET)]> =
//!     Aligned([0; model::encoded_len(&NET)]);
//!
//! fn main() -> Result<(), zeronn::Error> {
//!     // SAFETY: one thread, and these are the only references to the statics.
//!     let (params, x, t, ws, flash) = unsafe {
//!         (
//!             &mut *addr_of_mut!(PARAMS),
//!             &mut *addr_of_mut!(X),
//!             &mut *addr_of_mut!(T),
//!             &mut *addr_of_mut!(WS),
//!             &mut (*addr_of_mut!(FLASH)).0,
//!         )
//!     };
//!     // On-device training: a batch from the sensor (here, ten made-up "images", each
//!     // lighting up a band of pixels that gives its class), then SGD steps fused into
//!     // backward, with no gradient buffer.
//!     for (i, (image, label)) in x.chunks_exact_mut(784).zip(t.iter_mut()).enumerate() {
//!         *label = i as u8;
//!         image[i * 78..(i + 1) * 78].fill(1.0);
//!     }
//!     let mut net = Net::new(NET, &mut params[..])?;
//!     net.init(&mut random::seeded(1), WeightInit::He);
//!     let sgd = Sgd::new(0.1);
//!     let first = net.train_step(&x[..], &t[..], &sgd, &mut ws[..])?;
//!     let mut last = first;
//!     for _ in 0..50 {
//!         last = net.train_step(&x[..], &t[..], &sgd, &mut ws[..])?;
//!     }
//!     assert!(last < first / 4.0, "loss {first} -> {last}");
//!
//!     // The model in flash, validated (magic, sizes, CRC) and run in place: no copy.
//!     let n = model::write(&NET, net.params(), &[], &mut flash[..])?;
//!     let model = Model::from_bytes(&flash[..n])?;
//!     let net = model.net()?;
//!     // One sample at a time, with the workspace of one forward pass (a prefix of WS).
//!     let ws = &mut ws[..NET.min_predict_workspace_len(1)];
//!     for (i, image) in x.chunks_exact(784).enumerate() {
//!         assert_eq!(argmax(net.predict(image, ws)?), i);
//!     }
//!     Ok(())
//! }
//! ```

#![no_std]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(any(test, feature = "std"))]
extern crate std;

// The `matrixmultiply` backend allocates (the crate's packing buffers, and copies of views it
// cannot read), so it needs a global allocator.
#[cfg(feature = "matrixmultiply")]
extern crate alloc;

mod error;
pub mod functions;
pub mod gemm;
pub mod gradient;
pub mod init;
pub mod layers;
pub mod math;
pub mod model;
#[cfg(feature = "std")]
pub mod model_file;
pub mod net;
pub mod optimizer;
pub mod quant;
pub mod random;

pub use error::{Error, Result};
pub use functions::Label;
pub use gradient::numerical_gradient;
pub use init::WeightInit;
pub use layers::{
    Affine, BatchNorm, Convolution, Dims, Dropout, Pooling, Relu, Sigmoid, SoftmaxWithLoss,
};
pub use math::Float;
pub use model::{Model, ModelError};
#[cfg(feature = "std")]
pub use model_file::{FileError, ModelFile};
pub use net::{Activation, Layer, MlpOptions, Net, NetSpec, Tensor, TwoLayerNet, TwoLayerShape};
pub use optimizer::{AdaGrad, Adam, AnyOptimizer, Momentum, Nesterov, Optimizer, RmsProp, Sgd};
pub use quant::QModel;
