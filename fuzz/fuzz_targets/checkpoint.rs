//! Checkpoints of training runs: a checkpoint or an error, never a panic or a huge allocation;
//! a decoded checkpoint encodes to bytes that decode to the same bytes again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = zeronn_tools::checkpoint::Checkpoint::decode(data) {
        assert_eq!(
            zeronn_tools::checkpoint::Checkpoint::decode(&ck.encode()).ok(),
            Some(ck)
        );
    }
});
