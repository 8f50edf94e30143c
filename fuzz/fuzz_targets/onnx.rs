//! ONNX import: any bytes give a net or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(imported) = zeronn_tools::onnx::import(data) {
        assert_eq!(imported.params.len(), imported.spec.param_len());
        assert_eq!(imported.state.len(), imported.spec.state_len());
    }
});
