//! Checkpoints of training runs: a checkpoint or an error, never a panic or a huge allocation;
//! a decoded checkpoint encodes to bytes that decode to the same bytes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeronn_tools::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = Checkpoint::decode(data) {
        // Compared as bytes: values may be NaN, which no `==` finds equal to itself.
        let bytes = ck.encode();
        let again = Checkpoint::decode(&bytes).expect("its own encoding decodes");
        assert_eq!(again.encode(), bytes);
    }
});
