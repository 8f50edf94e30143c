#!/usr/bin/env bash
# Regenerates onnx.rs from onnx.proto with prost-build (needs protoc: apt-get install
# protobuf-compiler). onnx.proto is the official file, as the `onnx` Python package ships it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
mkdir -p "$tmp/src"
cat > "$tmp/Cargo.toml" <<'TOML'
[package]
name = "regen-onnx"
version = "0.1.0"
edition = "2021"
[dependencies]
prost-build = "0.14"
[workspace]
TOML
cat > "$tmp/src/main.rs" <<'RS'
fn main() {
    let mut a = std::env::args().skip(1);
    let (proto, out) = (a.next().unwrap(), a.next().unwrap());
    let dir = std::path::Path::new(&proto).parent().unwrap().to_path_buf();
    prost_build::Config::new().out_dir(&out).compile_protos(&[&proto], &[dir]).unwrap();
}
RS
out=$(mktemp -d)
(cd "$tmp" && cargo run -q --release -- "$here/onnx.proto" "$out")
cp "$out/onnx.rs" "$here/onnx.rs"
echo "wrote $here/onnx.rs"
