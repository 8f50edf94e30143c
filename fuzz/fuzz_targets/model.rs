//! Model files (versions 1 and 2, any layers, f32 and int8): validation never panics, and a
//! model it accepts runs a prediction (f32: on a zero input; int8: on 1 to 16 samples, with
//! the fast kernels and the reference loop, which must agree).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeronn::{Model, QModel};

fuzz_target!(|data: &[u8]| {
    // The format's in-place view needs 4-byte alignment: copy into an aligned buffer (the
    // misaligned case is an error, covered by the tests).
    let mut words = vec![0u32; data.len().div_ceil(4)];
    let bytes = {
        let b: &mut [u8] = bytemuck_free(&mut words);
        b[..data.len()].copy_from_slice(data);
        &b[..data.len()]
    };
    if let Ok(model) = Model::from_bytes(bytes)
        && let Ok(net) = model.net()
    {
        let spec = *net.spec();
        // Keep each run small: skip nets whose one-sample workspace is huge.
        let ws_len = spec.workspace_len(1);
        if ws_len <= 1 << 22 && spec.input_size() <= 1 << 20 {
            let x = vec![0.0f32; spec.input_size()];
            let mut ws = vec![0.0f32; ws_len];
            let _ = net.predict(&x, &mut ws);
        }
    }
    if let Ok(model) = QModel::from_bytes(bytes) {
        // 1 to 16 samples (from 8 on, AMX's tiles where the CPU has them), their inputs the
        // file's own bytes over and over, so that the kernels see more than zeros.
        let batch = 1 + data.len() % 16;
        let ws_len = QModel::workspace_len(model.spec(), batch);
        let inputs = model.spec().input_size() * batch;
        if ws_len <= 1 << 22 && inputs <= 1 << 20 {
            let x: Vec<i8> = data.iter().cycle().take(inputs).map(|&b| b as i8).collect();
            let mut ws = vec![0i8; ws_len];
            let mut pack = vec![0i32; QModel::pack_len(model.spec())];
            if let Ok(packed) = model.pack(&mut pack) {
                let fast = model
                    .predict(&x, &mut ws, Some(&packed))
                    .map(|y| y.to_vec());
                let slow = model.predict(&x, &mut ws, None).map(|y| y.to_vec());
                assert_eq!(
                    fast.ok(),
                    slow.ok(),
                    "the fast kernel and the reference disagree"
                );
            }
        }
    }
});

/// The bytes of `words` (u32 has no padding and any bytes are a valid u32).
fn bytemuck_free(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: `words` is `4 × len` initialised bytes, u8 has alignment 1, and the slice
    // borrows `words` mutably for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}
