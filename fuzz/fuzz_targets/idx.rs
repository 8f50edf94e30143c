//! IDX files, raw and gzip (detected by magic, as the loader does): errors, never panics,
//! hangs or huge allocations.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("zeronn-fuzz-idx-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = zeronn_tools::mnist::load_images(&path);
    let _ = zeronn_tools::mnist::load_labels(&path);
});
