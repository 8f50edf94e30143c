//! Tells the int8 kernels whether the target has Cortex-M's DSP extension (`SMLAD`,
//! `SXTB16`): every ARMv7E-M core (Cortex-M4, M7) has it; on ARMv8-M Mainline it is optional,
//! so a Cortex-M33/M35P/M55/M85 build says so with `-C target-cpu=cortex-m33` (or the like) or
//! `-C target-feature=+dsp` (and `-dsp` turns it off). Sets `cfg(zeronn_dsp)`; nothing else.
use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(zeronn_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let named = |cpu: &str| flags.contains(&format!("target-cpu={cpu}"));
    let dsp = !flags.contains("-dsp")
        && (target.starts_with("thumbv7em")
            || (target.starts_with("thumbv8m.main") || target.starts_with("thumbv8.1m.main"))
                && (flags.contains("+dsp")
                    || ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"]
                        .into_iter()
                        .any(named)));
    if dsp {
        println!("cargo::rustc-cfg=zeronn_dsp");
    }
}
