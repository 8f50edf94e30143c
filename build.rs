//! Tells the int8 kernels whether the target has Cortex-M's DSP extension (`SMLAD`,
//! `SXTB16`): every ARMv7E-M core (Cortex-M4, M7) has it; on ARMv8-M Mainline it is optional,
//! so a Cortex-M33/M35P/M55/M85 build says so with `-C target-cpu=cortex-m33` (or the like) or
//! `-C target-feature=+dsp` (and `-dsp` turns it off). Sets `cfg(zeronn_dsp)`, and
//! `cfg(zeronn_mve)` where the target has Helium (the M55 and M85); nothing else.
use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(zeronn_dsp)");
    println!("cargo::rustc-check-cfg=cfg(zeronn_mve)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let named = |cpu: &str| flags.contains(&format!("target-cpu={cpu}"));
    // Target features as given (`-C target-feature=+a,-b`): `feature('+', "dsp")`.
    let feature = |sign: char, name: &str| {
        flags
            .split(['\x1f', ',', ' ', '='])
            .any(|f| f.strip_prefix(sign) == Some(name))
    };
    let mainline = target.starts_with("thumbv8m.main") || target.starts_with("thumbv8.1m.main");
    let dsp = !feature('-', "dsp")
        && (target.starts_with("thumbv7em")
            || mainline
                && (feature('+', "dsp")
                    || ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"]
                        .into_iter()
                        .any(named)));
    // Helium (MVE) on ARMv8.1-M Mainline: the Cortex-M55 and M85 (Rust's target for them is
    // `thumbv8m.main-none-eabihf` with the CPU named), or `+mve`. It needs the DSP extension
    // (LLVM's `mve` implies `dsp`, and `-dsp` takes `mve` away too).
    let mve = mainline
        && !feature('-', "mve")
        && !feature('-', "dsp")
        && (feature('+', "mve") || ["cortex-m55", "cortex-m85"].into_iter().any(named));
    if dsp || mve {
        println!("cargo::rustc-cfg=zeronn_dsp");
    }
    if mve {
        println!("cargo::rustc-cfg=zeronn_mve");
    }
}
