//! safetensors import (with the metadata's layer list, or a given one): a net or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zeronn_tools::safetensors_file::import(data, None, None);
    let _ = zeronn_tools::safetensors_file::import(
        data,
        Some("4,relu,3"),
        Some(zeronn::layers::Dims::flat(2)),
    );
});
