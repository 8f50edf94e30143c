//! IDX files, raw and gzip (detected by magic, as the loader does): errors, never panics,
//! hangs or huge allocations. Parsed from memory through the same reader code the file
//! loader uses (`open` only adds the file checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zeronn_tools::mnist::parse_idx(std::path::Path::new("fuzz-input"), data);
});
