#!/usr/bin/env python3
"""Cost figures of zeronn in firmware, as a Markdown table for README.md.

Builds the firmware for the three boards (and the int8 MLP's for a Cortex-M55), runs each binary under QEMU with the instruction
counting plugin (exact counts between the `icount_start`/`icount_stop` markers around the real
API calls), and reads flash and RAM from the ELF files.

    ZERONN_FIRMWARE_DATA=DIR examples/firmware/costs.py

Needs on PATH: qemu-system-arm. Builds the plugin from ../shared/tools/qemu-icount/icount.c
(or $ZERONN_ICOUNT_SRC) with gcc, and uses llvm-size/llvm-nm from rustup's llvm-tools.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TARGETS = [
    ("thumbv7em-none-eabihf", "Cortex-M4F (mps2-an386)"),
    ("thumbv7m-none-eabi", "Cortex-M3, no FPU (mps2-an385)"),
    ("thumbv8m.main-none-eabihf", "Cortex-M33 (mps2-an505)"),
]
# Multiply-adds of the book's 784-50-10 net.
MACS_INFER = 784 * 50 + 50 * 10


def macs_train_step(batch, hidden=50):
    forward = batch * (784 * hidden + hidden * 10)
    backward = batch * 10 * hidden + hidden * batch * 10 + 784 * batch * hidden  # dZ1, dW2, dW1
    return forward + backward


def mlp_macs(layers):
    """Multiply-adds of one inference and of one training step (batch rows) of a layer list
    from expected.rs: every Affine forward and its weight gradient, and the input gradient of
    every Affine but the first."""
    affine = [(int(i), int(o)) for i, o in re.findall(r"Affine \{ input: (\d+), output: (\d+) \}", layers)]
    infer = sum(i * o for i, o in affine)
    return infer, lambda batch: batch * (2 * infer + sum(i * o for i, o in affine[1:]))


def layers_of(expected, name):
    return re.search(name + r": &\[zeronn::Layer\] = &\[(.*?)\];", expected, re.S)[1]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def llvm_tool(name):
    sysroot = run(["rustc", "--print", "sysroot"]).stdout.strip()
    host = re.search(r"host: (\S+)", run(["rustc", "-vV"]).stdout)[1]
    path = os.path.join(sysroot, "lib", "rustlib", host, "bin", name)
    if not os.path.exists(path):
        run(["rustup", "component", "add", "llvm-tools"])
    return path


def sections(elf):
    out = run([llvm_tool("llvm-size"), "-A", elf]).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", out, re.M)}


def symbol_sizes(elf):
    out = run([llvm_tool("llvm-nm"), "--print-size", "--radix=d", "-C", elf]).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1])
    return sizes


def flash(s):
    return s.get(".vector_table", 0) + s.get(".text", 0) + s.get(".rodata", 0) + s.get(".data", 0)


def main():
    data = os.environ.get("ZERONN_FIRMWARE_DATA")
    if not data:
        sys.exit("set ZERONN_FIRMWARE_DATA to the directory `zeronn export` wrote")
    src = os.environ.get("ZERONN_ICOUNT_SRC", os.path.join(ROOT, "..", "shared", "tools", "qemu-icount", "icount.c"))
    plugin = os.path.join(HERE, "target", "libicount.so")
    os.makedirs(os.path.dirname(plugin), exist_ok=True)
    run(["gcc", "-shared", "-fPIC", "-O2", "-o", plugin, src])
    expected = open(os.path.join(data, "expected.rs")).read()
    batch = int(re.search(r"TRAIN_BATCH: usize = (\d+)", expected)[1])

    rows, int8_rows = [], []
    for target, board in TARGETS:
        run(["cargo", "build", "--release", "--target", target], cwd=HERE)
        counts, stacks, extra = {}, {}, {}
        for b in ("infer", "train", "infer_conv", "infer_int8", "infer_conv_int8"):
            log = os.path.join(HERE, "target", f"icount-{target}-{b}.log")
            env = dict(os.environ, ZERONN_ICOUNT=plugin, ZERONN_ICOUNT_LOG=log)
            out = run([os.path.join(HERE, "run.sh"), os.path.join(HERE, "target", target, "release", b)], env=env).stdout
            m = re.search(r"stack of one predict: (\d+) bytes", out)
            if m:
                stacks[b] = int(m[1])
            text = open(log).read()
            counts[b] = int(re.search(r"icount region 0: (\d+) insns", text)[1])
            m = re.search(r"icount region 1: (\d+) insns", text)
            extra[b] = int(m[1]) if m else None
        rows.append((board, target, counts["infer"], counts["train"], stacks["infer"], extra["infer"], extra["train"],
                     counts["infer_conv"], extra["infer_conv"], counts["infer_conv_int8"], extra["infer_conv_int8"],
                     stacks["infer_conv_int8"]))
        int8_rows.append((board, target, counts["infer"], counts["infer_int8"], extra["infer_int8"],
                          stacks["infer"], stacks["infer_int8"]))

    # The Cortex-M55 (Helium): the M33's target with the CPU named, in its own target dir;
    # only the int8 MLP's firmware fits the 512 KB ITCM that QEMU's mps3-an547 boots from.
    m55 = "thumbv8m.main-none-eabihf"
    m55_dir = os.path.join(HERE, "target", "m55")
    run(["cargo", "build", "--release", "--target", m55, "--target-dir", m55_dir, "--bin", "infer_int8"],
        cwd=HERE, env=dict(os.environ, RUSTFLAGS="-C target-cpu=cortex-m55"))
    log = os.path.join(HERE, "target", "icount-m55-infer_int8.log")
    out = run([os.path.join(HERE, "run.sh"), os.path.join(m55_dir, m55, "release", "infer_int8")],
              env=dict(os.environ, ZERONN_ICOUNT=plugin, ZERONN_ICOUNT_LOG=log)).stdout
    text = open(log).read()
    int8_rows.append(("Cortex-M55 (mps3-an547)", f"{m55}` + `cortex-m55", None,
                      int(re.search(r"icount region 0: (\d+) insns", text)[1]),
                      int(re.search(r"icount region 1: (\d+) insns", text)[1]), None,
                      int(re.search(r"stack of one predict: (\d+) bytes", out)[1])))

    print(f"Exact instruction counts (QEMU TCG plugin; markers around `predict` of one image and the first")
    print(f"`train_step`, batch {batch}, with runtime shapes), the book's 784-50-10 net:\n")
    print("| board | target | one inference | per multiply-add | one training step | per multiply-add | stack of one inference |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    mt = macs_train_step(batch)
    for board, target, inf, tr, stack, *_ in rows:
        print(f"| {board} | `{target}` | {inf:,} | {inf / MACS_INFER:.2f} | {tr:,} | {tr / mt:.2f} | {stack:,} B |")

    model_f32 = os.path.getsize(os.path.join(data, "model.zrnn"))
    model_int8 = os.path.getsize(os.path.join(data, "model-int8.zrnn"))
    int8_code = sum(v for k, v in symbol_sizes(os.path.join(HERE, "target", TARGETS[0][0], "release", "infer_int8")).items()
                    if k.startswith("zeronn::"))
    print(f"\nThe same net in int8 (`infer_int8`: `model-int8.zrnn`, {model_int8:,} B in flash against "
          f"{model_f32:,} B in f32; zeronn's code in it {int8_code:,} B on {TARGETS[0][0]}):\n")
    print("| board | target | f32 inference | per multiply-add | int8, Cortex-M layout | per multiply-add "
          "| int8, rows layout | per multiply-add | stack f32 | stack int8 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for board, target, f, q, r, sf, sq in int8_rows:
        f32 = f"{f:,} | {f / MACS_INFER:.2f}" if f else "— | —"
        print(f"| {board} | `{target}` | {f32} | {q:,} | {q / MACS_INFER:.2f} "
              f"| {r:,} | {r / MACS_INFER:.2f} | {f'{sf:,} B' if sf else '—'} | {sq:,} B |")
    print("\nOn the M55 the rows layout runs Helium (`VMLADAVA.S8`, 16 multiply-adds an instruction), "
          "the Cortex-M layout `SMLAD`.")

    mlp = layers_of(expected, "MLP_LAYERS")
    adam = layers_of(expected, "ADAM_LAYERS")
    mlp_infer, _ = mlp_macs(mlp)
    adam_infer, adam_step = mlp_macs(adam)
    adam_batch = int(re.search(r"ADAM_BATCH: u64 = (\d+)", expected)[1])
    sizes = lambda layers: "-".join([re.search(r"input: (\d+)", layers)[1]] + re.findall(r"output: (\d+)", layers))
    print(f"\nThe chapter 6 MLP ({sizes(mlp)}, trained with BatchNorm, He and Adam, BatchNorm folded for "
          f"inference): one inference; and one Adam step of batch {adam_batch} of the {sizes(adam)} net with "
          f"BatchNorm on the device (the optimizer applied during backward):\n")
    print("| board | target | one inference | per multiply-add | one Adam training step | per multiply-add |")
    print("| --- | --- | --- | --- | --- | --- |")
    for board, target, _, _, _, inf, tr, *_ in rows:
        print(f"| {board} | `{target}` | {inf:,} | {inf / mlp_infer:.2f} | {tr:,} | {tr / adam_step(adam_batch):.2f} |")

    conv = layers_of(expected, "CONV_LAYERS")
    c = re.search(r"Dims::new\((\d+), (\d+), (\d+)\), (\d+), \d+\)\.kernel\((\d+), (\d+)\)\.stride\((\d+)\)\.pad\((\d+)\)", conv)
    if c:
        ch, h, w, f, kh, kw, st, pad = map(int, c.groups())
        oh, ow = (h + 2 * pad - kh) // st + 1, (w + 2 * pad - kw) // st + 1
        conv_macs = f * oh * ow * ch * kh * kw
        affine_macs, _ = mlp_macs(conv)
        print(f"\nThe conv net of `conv.zrnn` (SimpleConvNet): one inference, and apart its first three layers "
              f"(Convolution, ReLU, Pooling: {conv_macs:,} multiply-adds) and the Affine layers "
              f"({affine_macs:,}):\n")
        print("| board | target | one inference | per multiply-add | conv+relu+pool | per conv multiply-add | Affine layers | per multiply-add |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for board, target, *_, inf, head, _, _, _ in rows:
            aff = inf - head
            print(f"| {board} | `{target}` | {inf:,} | {inf / (conv_macs + affine_macs):.2f} | {head:,} | "
                  f"{head / conv_macs:.2f} | {aff:,} | {aff / affine_macs:.2f} |")
        conv_int8 = os.path.getsize(os.path.join(data, "conv-int8.zrnn"))
        conv_f32 = os.path.getsize(os.path.join(data, "conv.zrnn"))
        print(f"\nThe same conv net in int8 (`infer_conv_int8`: `conv-int8.zrnn`, {conv_int8:,} B in flash "
              f"against {conv_f32:,} B in f32; the Convolution and its Pooling in one pass, counted apart):\n")
        print("| board | target | f32 inference | int8 inference | per multiply-add | int8 conv+relu+pool "
              "| per conv multiply-add | int8 Affine layers | per multiply-add | stack int8 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for board, target, *_, inf, _, q, qhead, qstack in rows:
            aff = q - qhead
            print(f"| {board} | `{target}` | {inf:,} | {q:,} | {q / (conv_macs + affine_macs):.2f} | {qhead:,} | "
                  f"{qhead / conv_macs:.2f} | {aff:,} | {aff / affine_macs:.2f} | {qstack:,} B |")

    t = "thumbv7em-none-eabihf"
    rel = os.path.join(HERE, "target", t, "release")
    s = {b: sections(os.path.join(rel, b)) for b in ("empty", "infer_min", "infer")}
    syms = symbol_sizes(os.path.join(rel, "infer"))
    aligned = lambda name: next((v for k, v in syms.items() if k.startswith(f"zeronn_firmware::{name}::ALIGNED")), 0)
    model, mlp_model = aligned("MODEL"), aligned("MLP")
    images = sum(os.path.getsize(os.path.join(data, f)) for f in ("test-x.u8", "test-t.u8", "mlp-pred.u8"))
    code_infer = s["infer_min"][".text"] - s["empty"][".text"]
    printing = s["infer"][".text"] - s["infer_min"][".text"]
    runtime = s["empty"][".text"] + s["empty"].get(".vector_table", 0)
    zeronn_code = sum(v for k, v in symbol_sizes(os.path.join(rel, "infer_min")).items() if k.startswith("zeronn::"))
    bss_min = s["infer_min"].get(".bss", 0)
    print(f"\nFootprint of the inference firmware (`infer`, {t}, release, LTO); flash {flash(s['infer']):,} B, "
          f"static RAM {s['infer'].get('.bss', 0) + s['infer'].get('.data', 0):,} B:\n")
    print("| part | flash | RAM |")
    print("| --- | --- | --- |")
    print(f"| the model, used in place (`include_model!`, zero-copy) | {model:,} B | 0 |")
    print(f"| inference code: model validation, `predict`, the loop (`infer_min` − `empty`) | {code_infer:,} B | |")
    print(f"| … of which functions of `zeronn` itself | {zeronn_code:,} B | |")
    print(f"| runtime: vector table, reset, semihosting exit (`empty`) | {runtime:,} B | |")
    print(f"| demo: the embedded test images, their labels and the desktop's classes | {images:,} B | |")
    print(f"| the chapter 6 MLP's model, in place (`mlp.zrnn`, BatchNorm folded) | {mlp_model:,} B | 0 |")
    print(f"| demo: printing with `core::fmt` (`infer` − `infer_min`) | {printing:,} B | |")
    print(f"| one image as f32 + the workspace of one inference (`min_predict_workspace_len(1)` = 60 floats) "
          f"| | {bss_min:,} B (const fns: {(784 + 60) * 4:,} B) |")
    print(f"| stack of one inference (measured by painting) | | {rows[0][4]:,} B |")
    train_syms = symbol_sizes(os.path.join(rel, "train"))
    adam_ram = next((v for k, v in train_syms.items() if "ADAM_RUN" in k), 0)
    mlp_ws = 4 * (784 + sum(int(o) for o in re.findall(r"output: (\d+)", mlp)))
    print(f"| the chapter 6 MLP's image and workspace of one inference (`min_predict_workspace_len(1)`) | | {mlp_ws:,} B |")
    print(f"| the Adam run's buffers in `train` (parameters, state, Adam's moments, one layer's gradient, "
          f"workspace, batch; all from const fns) | | {adam_ram:,} B |")


if __name__ == "__main__":
    main()
