//! Layers as `forward`/`backward` pairs over caller-owned slices, with the book's names.
//!
//! Conventions (llm.c's, with the book's vocabulary): outputs first, then inputs, then
//! parameters; gradients carry a `d` prefix; each function states the shape of every argument;
//! each `backward` names the forward line it differentiates. Rows are samples (row-major
//! `batch × features`; a sample of the convolution layers is `channels × height × width`,
//! NCHW as in the book). Parameter gradients are overwritten, as in the book's layers
//! (`self.dW = np.dot(self.x.T, dout)`). Every length is checked before anything is written.

/// Defines `fn NAME<T: Float>(ARGS)` that runs `BODY(ARGS)` (an `#[inline(always)]` function
/// of the same arguments) compiled for AVX-512 where the CPU has it, so that the compiler
/// vectorises its loops 16 lanes wide (the same operations, so the same values), and as it is
/// elsewhere.
macro_rules! avx512_build {
    ($(#[$m:meta])* $vis:vis fn $name:ident<T: Float>($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$m])*
        $vis fn $name<T: Float>($($arg: $ty),*) {
            /// The body compiled for AVX-512.
            ///
            /// # Safety
            /// The CPU must have AVX-512F.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512<T: Float>($($arg: $ty),*) {
                $body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if crate::gemm::detect::avx512() {
                // SAFETY: AVX-512F is present, all `avx512` enables.
                return unsafe { avx512($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}

mod affine;
mod batch_norm;
mod convolution;
mod dims;
mod dropout;
pub(crate) mod pooling;
mod relu;
mod sigmoid;
mod softmax_with_loss;
mod winograd;

pub use affine::{Affine, FUSED_MAX_BATCH};
pub use batch_norm::{BATCH_NORM_EPS, BATCH_NORM_MOMENTUM, BatchNorm};
pub use convolution::{Convolution, col2im, im2col};
pub use dims::Dims;
pub use dropout::Dropout;
pub use pooling::Pooling;
pub use relu::Relu;
pub use sigmoid::Sigmoid;
pub use softmax_with_loss::SoftmaxWithLoss;
