//! Picks the memory map for the board of the target, links with cortex-m-rt's `link.x`, and
//! brings in the data bundle that `zeronn export` wrote (model, images, expected results).
//! The bundle is never committed: the build reads it from `ZERONN_FIRMWARE_DATA`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target = env::var("TARGET").unwrap_or_default();
    // A Cortex-M55 is `thumbv8m.main-none-eabihf` with `-C target-cpu=cortex-m55` (build it in
    // a target dir of its own, `target/m55`, as CI and costs.py do, so that the M33's build is
    // never linked with this map or the other way round).
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let memory = if flags.contains("target-cpu=cortex-m55") {
        "memory/mps3-an547.x"
    } else if target.starts_with("thumbv8m") {
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
    println!("cargo:rerun-if-env-changed=ZERONN_MODEL");
    let bundle = env::var_os("CARGO_FEATURE_BUNDLE").is_some();
    let data = env::var_os("ZERONN_FIRMWARE_DATA").map(PathBuf::from);
    if bundle {
        let Some(data) = &data else {
            panic!(
                "ZERONN_FIRMWARE_DATA is not set: point it at the directory `zeronn export --out DIR` wrote \
                 (model.zrnn, test-x.u8, test-t.u8, train-x.u8, train-t.u8, expected.rs); or build only \
                 the classify template from one model: --no-default-features with ZERONN_MODEL=FILE"
            );
        };
        for name in [
            "model.zrnn",
            "model-int8.zrnn",
            "int8-logits.i8",
            "mlp.zrnn",
            "mlp-pred.u8",
            "conv.zrnn",
            "conv-pred.u8",
            "conv-int8.zrnn",
            "conv-int8-logits.i8",
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

    // The classify template's model: ZERONN_MODEL, else the bundle's second model. Its layer
    // list is written as Rust constants from the file itself, so the workspace is a static
    // sized at compile time for whatever net the file holds.
    let model = match (env::var_os("ZERONN_MODEL"), &data) {
        (Some(m), _) => PathBuf::from(m),
        (None, Some(d)) if bundle => d.join("mlp.zrnn"),
        _ => panic!("ZERONN_MODEL is not set: point it at the model file (.zrnn) to embed"),
    };
    println!("cargo:rerun-if-changed={}", model.display());
    let file = zeronn::ModelFile::read(&model).unwrap_or_else(|e| panic!("ZERONN_MODEL: {e}"));
    let spec = *file
        .model()
        .unwrap_or_else(|e| panic!("ZERONN_MODEL: {e}"))
        .spec();
    fs::write(out.join("app.zrnn"), file.bytes()).unwrap();
    let doc = format!("The layers of {} (read at build time).", model.display());
    let mut rs = zeronn::model_file::layers_rs("LAYERS", &doc, &spec);
    rs += &format!(
        "/// Whether the model is the bundle's second one (whose desktop classes the bundle has).\npub const IS_BUNDLE_MLP: bool = {};\n",
        env::var_os("ZERONN_MODEL").is_none()
    );
    fs::write(out.join("app.rs"), rs).unwrap();
}
