//! Picks the memory map for the board of the target, links with cortex-m-rt's `link.x`, and
//! brings in the data bundle that `zeronn export` wrote (model, images, expected results).
//! The bundle is never committed: the build reads it from `ZERONN_FIRMWARE_DATA`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target = env::var("TARGET").unwrap_or_default();
    let memory = if target.starts_with("thumbv8m") {
        "memory/mps2-an505.x"
    } else {
        "memory/mps2-an385.x"
    };
    fs::copy(memory, out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo:rerun-if-env-changed=ZERONN_FIRMWARE_DATA");
    let Some(data) = env::var_os("ZERONN_FIRMWARE_DATA").map(PathBuf::from) else {
        panic!(
            "ZERONN_FIRMWARE_DATA is not set: point it at the directory `zeronn export --out DIR` wrote \
             (model.zrnn, test-x.u8, test-t.u8, train-x.u8, train-t.u8, expected.rs)"
        );
    };
    for name in [
        "model.zrnn",
        "mlp.zrnn",
        "mlp-pred.u8",
        "conv.zrnn",
        "conv-pred.u8",
        "test-x.u8",
        "test-t.u8",
        "train-x.u8",
        "train-t.u8",
        "expected.rs",
    ] {
        let src = data.join(name);
        println!("cargo:rerun-if-changed={}", src.display());
        if let Err(e) = fs::copy(&src, out.join(name)) {
            panic!(
                "{}: {e} (run `zeronn export` to make the firmware data bundle)",
                src.display()
            );
        }
    }
}
