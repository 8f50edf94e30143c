//! Your own data: CSV text, .npy arrays and .npz archives give samples or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = zeronn_tools::dataset::csv(text, None);
        let _ = zeronn_tools::dataset::csv(text, Some("label"));
    }
    let _ = zeronn_tools::dataset::parse_npy(data);
    let path = std::env::temp_dir().join(format!("zeronn-fuzz-npz-{}.npz", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = zeronn_tools::dataset::load(&path, None);
});
