//! The `zeronn` command's library: MNIST loading, the training run (on one thread or
//! several), the gradient check, evaluation, benchmarks, model files, export for firmware and
//! formatting. `main.rs` is the command line around it.

pub mod bench;
pub mod checkpoint;
pub mod data_parallel;
pub mod dataset;
pub mod describe;
pub mod download;
pub mod experiment;
pub mod export;
pub mod format;
pub mod gradcheck;
pub mod mnist;
pub mod modelfile;
pub mod netarg;
pub mod onnx;
pub mod peak;
pub mod pictures;
pub mod pixels;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod quantize;
pub mod safetensors_file;
pub mod sparse;
pub mod team;
pub mod train;
pub mod train_threads;
