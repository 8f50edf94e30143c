"""Runs zeronn and its peers in alternation on the book's chapter 5 run (JAX jit, a step a call
and 600 steps a call with fori_loop; PyTorch eager on 1 and 2 threads and torch.compile; candle;
the book's own NumPy code), each with its best setting (peer_run), then micro-benchmarks that
add the inference runtimes (ONNX Runtime, LiteRT), and prints medians and ratios. Called by
run.sh (which makes the virtualenvs and builds the candle program)."""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DONE = re.compile(r"done in ([0-9.]+) s \(training ([0-9.]+) s, evaluation ([0-9.]+) s\)")


def zeronn_whole(exe, data, threads, seed):
    out = subprocess.run([exe, "train", "--data", data, "--seed", str(seed), "--threads", str(threads),
                          "--no-progress"], capture_output=True, text=True, check=True)
    m = DONE.search(out.stderr)
    last = out.stdout.strip().splitlines()[-1].split()
    return {"whole_s": float(m[1]), "train_s": float(m[2]), "eval_s": float(m[3]),
            "final_train_acc": float(last[0]), "final_test_acc": float(last[1])}


def zeronn_micro(exe, data, reps):
    out = subprocess.run([exe, "bench", "--data", data, "--backend", "auto", "--reps", str(reps),
                          "--whole-reps", "0"], capture_output=True, text=True, check=True).stdout
    def cell(name):
        # "| training step, batch 100 | 102.0 µs (156.6 GFLOP/s, 91%) |"
        row = next(l for l in out.splitlines() if l.startswith("| " + name))
        value, unit = row.split("|")[2].split()[:2]
        return float(value) * {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    return {"step_s": cell("training step"), "eval_pass_s": cell("evaluation pass"),
            "forward1_s": cell("forward of one image")}


def candle_run(exe, data, mode, seed=1):
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run([exe, data, mode, "--seed", str(seed)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


OPT_ARGS = ["--hidden", "100,100,100,100", "--optimizer", "adam", "--weight-init-std", "he",
            "--batch-size", "128", "--iters", "2000", "--eval-every", "1999"]


def zeronn_optimizers(exe, data, threads, seed):
    """zeronn train on the optimizers workload: training time of the 2000 iterations."""
    out = subprocess.run([exe, "train", "--data", data, "--seed", str(seed), "--threads", str(threads),
                          "--no-progress"] + OPT_ARGS, capture_output=True, text=True, check=True)
    m = DONE.search(out.stderr)
    loss = float(re.search(r"mean loss of the last 100 batches ([0-9.]+)", out.stderr)[1])
    last = out.stdout.strip().splitlines()[-1].split()
    return {"train_s": float(m[2]), "final_test_acc": float(last[1]), "last100_loss": loss}


def optimizers_run(impl, data, threads, seed):
    """benches/compare/optimizers.py with each library's best setting (peer_run)."""
    return peer_run(impl, threads, ["optimizers.py", data, impl, "--seed", str(seed),
                                    "--threads", str(threads)])


def peer_run(impl, threads, args, python=sys.executable):
    """One of our Python scripts (args: its name and arguments) for library impl, each with its
    best setting: PyTorch and NumPy with their thread counts set, NumPy's OpenBLAS free to
    pick its own kernel, JAX jit on one thread (XLA's intra-op pool off, the process pinned
    to one core). Returns the JSON object the script prints last."""
    cmd = [python, os.path.join(HERE, args[0])] + args[1:]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    if impl == "numpy":
        # NumPy's best setting: OpenBLAS picks its own kernel for this CPU.
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if impl == "jax":
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        cmd = ["taskset", "-c", "1"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=HERE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def openblas_kernel():
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    code = ("from threadpoolctl import threadpool_info; import numpy; "
            "print(', '.join(f\"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}\" "
            "for i in threadpool_info()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return out.stdout.strip() or "unknown (threadpoolctl missing)"


def optimizers_compare(a):
    """The chapter 6 optimizers workload (784-100×4-10, Adam, batch 128, 2000 iterations)."""
    contenders = [
        ("zeronn 1 thread", lambda s: zeronn_optimizers(a.zeronn, a.data, 1, s)),
        ("zeronn 2 threads", lambda s: zeronn_optimizers(a.zeronn, a.data, 2, s)),
        ("PyTorch 1 thread", lambda s: optimizers_run("torch", a.data, 1, s)),
        ("PyTorch 2 threads", lambda s: optimizers_run("torch", a.data, 2, s)),
        ("JAX jit 1 thread", lambda s: optimizers_run("jax", a.data, 1, s)),
        ("NumPy (float64), 1 thread", lambda s: optimizers_run("numpy", a.data, 1, s)),
    ]
    runs = {name: [] for name, _ in contenders}
    for rep in range(a.reps):
        for name, run in contenders:
            r = run(rep + 1)
            runs[name].append(r)
            print(f"rep {rep + 1} {name}: {r['train_s']:.2f} s (test acc {r['final_test_acc']:.4f})",
                  file=sys.stderr)
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    base = runs["zeronn 1 thread"]
    paired = lambda rs: statistics.median(r["train_s"] / b["train_s"] for r, b in zip(rs, base))
    print(f"\nThe optimizers workload (784-100-100-100-100-10, He init, Adam lr 0.001, batch 128, "
          f"2000 iterations; training time), median of {a.reps} alternating runs; NumPy's OpenBLAS: "
          f"{openblas_kernel()}:\n")
    print("| implementation | 2000 iterations | per iteration | final test acc | mean loss, last 100 "
          "| time ÷ zeronn 1 thread (of medians; median per repetition) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rs in runs.items():
        print(f"| {name} | {med(rs, 'train_s'):.2f} s | {med(rs, 'train_s') / 2000 * 1e6:.0f} µs "
              f"| {med(rs, 'final_test_acc'):.4f} | {med(rs, 'last100_loss'):.4f} "
              f"| {med(rs, 'train_s') / med(base, 'train_s'):.2f}×; {paired(rs):.2f}× |")
    print("\n(zeronn's loss is each batch's before its update, from the gradient's forward pass; "
          "PyTorch's and JAX's the same; NumPy's after the update, as the book records it.)")


CONV_NETS = (("simple", "SimpleConvNet", "--preset", "simple-convnet"),
             ("deep", "DeepConvNet", "--preset", "deep-convnet"))


def zeronn_conv_bench(exe, data, reps):
    """zeronn bench --conv: the conv nets' step and inference rows, in seconds."""
    out = subprocess.run([exe, "bench", "--data", data, "--backend", "auto", "--reps", str(reps),
                          "--whole-reps", "0", "--conv"], capture_output=True, text=True,
                         check=True).stdout
    def cell(name):
        row = next(l for l in out.splitlines() if l.startswith("| " + name))
        value, unit = row.split("|")[2].split()[:2]
        return float(value) * {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    r = {}
    for key, name, _, _ in CONV_NETS:
        r[key] = {"step_s": cell(f"{name} training step (Adam, batch 100) |"),
                  "infer100_s": cell(f"{name} inference per image, batch 100 |"),
                  "infer1_s": cell(f"{name} inference per image, batch 1 |")}
    return r


def zeronn_conv_train(exe, data, preset, iters, threads):
    """A short run of a conv preset: its training and evaluation seconds."""
    out = subprocess.run([exe, "train", "--data", data, "--preset", preset, "--iters", str(iters),
                          "--seed", "1", "--threads", str(threads), "--no-progress"],
                         capture_output=True, text=True, check=True)
    m = DONE.search(out.stderr)
    return {"train_s": float(m[2]), "eval_s": float(m[3]), "iters": iters}


def conv_run(impl, data, net, what, threads, seed):
    """benches/compare/convnets.py with each library's best setting (peer_run)."""
    return peer_run(impl, threads, ["convnets.py", data, impl, "--net", net, "--what", what,
                                    "--seed", str(seed), "--threads", str(threads),
                                    "--steps", "8" if (impl, net) == ("numpy", "deep") else "20"])


def convnets_compare(a):
    """The book's conv nets: a training step (Adam, batch 100) and inference per image at
    batch 100 and 1, zeronn against PyTorch, JAX, ONNX Runtime and the book's NumPy; and
    zeronn's short runs on 1 and 2 threads."""
    peers = [("PyTorch 1 thread", "torch", 1, ("step", "infer")),
             ("PyTorch 2 threads", "torch", 2, ("step",)),
             ("JAX jit 1 thread", "jax", 1, ("step", "infer")),
             ("ONNX Runtime 1 thread", "onnxruntime", 1, ("infer",)),
             ("NumPy (float64), 1 thread", "numpy", 1, ("step", "infer"))]
    runs = {name: {net: [] for net, *_ in CONV_NETS} for name in ["zeronn 1 thread"] + [p[0] for p in peers]}
    threads = {net: {1: [], 2: []} for net, *_ in CONV_NETS}
    short = {"simple": 300, "deep": 40}
    for rep in range(a.reps):
        z = zeronn_conv_bench(a.zeronn, a.data, 5)
        for net, *_ in CONV_NETS:
            runs["zeronn 1 thread"][net].append(z[net])
        print(f"rep {rep + 1} zeronn: {z}", file=sys.stderr)
        for name, impl, th, whats in peers:
            for net, *_ in CONV_NETS:
                r = {}
                for what in whats:
                    r.update(conv_run(impl, a.data, net, what, th, rep + 1))
                runs[name][net].append(r)
                print(f"rep {rep + 1} {name} {net}: {r}", file=sys.stderr)
        for net, _, _, preset in CONV_NETS:
            for th in (1, 2):
                r = zeronn_conv_train(a.zeronn, a.data, preset, short[net], th)
                threads[net][th].append(r)
                print(f"rep {rep + 1} zeronn {net} {short[net]} steps, {th} threads: {r}", file=sys.stderr)

    def med(rs, k):
        xs = [r[k] for r in rs if k in r]
        return statistics.median(xs) if xs else None

    print(f"\nThe book's conv nets, median of {a.reps} alternating repetitions (each figure itself a "
          f"median); NumPy's OpenBLAS: {openblas_kernel()}:\n")
    for net, title, *_ in CONV_NETS:
        base = runs["zeronn 1 thread"][net]
        print(f"{title}:\n")
        print("| implementation | training step (Adam, batch 100) | inference per image, batch 100 "
              "| inference per image, batch 1 |")
        print("| --- | --- | --- | --- |")
        for name, rs in runs.items():
            cells = []
            for k, unit, scale in (("step_s", "ms", 1e3), ("infer100_s", "µs", 1e6), ("infer1_s", "µs", 1e6)):
                v = med(rs[net], k)
                if v is None:
                    cells.append("")
                    continue
                ratio = "" if name.startswith("zeronn") else f" ({v / med(base, k):.2f}×)"
                cells.append(f"{v * scale:.1f} {unit}{ratio}")
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()
    print("(×: how many times longer than zeronn 1 thread)\n")
    print("zeronn on 1 and 2 threads, short runs of `zeronn train --preset P --iters N` (seed 1):\n")
    print("| net | steps | training, 1 thread | 2 threads | speed-up | evaluations, 1 thread | 2 threads | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for net, title, *_ in CONV_NETS:
        one, two = threads[net][1], threads[net][2]
        t1, t2, e1, e2 = med(one, "train_s"), med(two, "train_s"), med(one, "eval_s"), med(two, "eval_s")
        print(f"| {title} | {short[net]} | {t1:.2f} s | {t2:.2f} s | {t1 / t2:.2f}× | {e1:.2f} s "
              f"| {e2:.2f} s | {e1 / e2:.2f}× |")


def quartiles(xs):
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[1], q[2]


def thread_pairs(exe, data, pairs, loaded):
    """zeronn on 1 and 2 threads, alternating, seed 1 (the same run each time): the two-thread
    speed-up as the medians of the pairs' ratios, with quartiles. With `loaded`, another
    process spins on one core all the while (a busy machine: the case where a spin-waiting
    thread team stalls). Minutes, not the hour of the whole comparison."""
    hog = None
    if loaded:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        runs = []
        for p in range(pairs):
            one, two = zeronn_whole(exe, data, 1, 1), zeronn_whole(exe, data, 2, 1)
            runs.append((one, two))
            print(f"pair {p + 1}{' (loaded)' if loaded else ''}: 1 thread {one['whole_s']:.2f} s, "
                  f"2 threads {two['whole_s']:.2f} s, {one['whole_s'] / two['whole_s']:.2f}×", file=sys.stderr)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    med = lambda k, t: statistics.median(r[t][k] for r in runs)
    how = "with another process spinning on one core" if loaded else "on a quiet machine"
    print(f"\nzeronn on 1 and 2 threads {how}, {pairs} alternating pairs (seed 1):\n")
    print("| part | 1 thread (median) | 2 threads (median) | speed-up: ratio of the medians "
          "| speed-up: median of the pairs (quartiles) |")
    print("| --- | --- | --- | --- | --- |")
    for name, k in (("whole run", "whole_s"), ("training", "train_s"), ("evaluations", "eval_s")):
        lo, mid, hi = quartiles([one[k] / two[k] for one, two in runs])
        print(f"| {name} | {med(k, 0):.2f} s | {med(k, 1):.2f} s | {med(k, 0) / med(k, 1):.2f}× "
              f"| {mid:.2f}× ({lo:.2f}×, {hi:.2f}×) |")


def zeronn_pass(exe, data, model, reps, env=None):
    """`zeronn eval --time-passes`: the median seconds of an evaluation pass over all 70 000
    images, and the test accuracy (`env`: variables to set for the run)."""
    out = subprocess.run([exe, "eval", "--data", data, "--model", model, "--time-passes", str(reps)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    ms = float(re.search(r"evaluation pass over \d+ images: ([\d.]+) ms", out)[1])
    acc = float(re.search(r"test accuracy: ([\d.]+)", out)[1])
    return {"pass_s": ms / 1e3, "test_acc": acc}


def int8_compare(a):
    """The int8 evaluation pass of the chapter 5 net (trained here, seed 1) against zeronn's f32
    pass, LiteRT int8 and ONNX Runtime int8 and f32, each quantizing the same f32 weights with
    its own tool, in alternation; medians."""
    d = tempfile.mkdtemp()
    model, q = os.path.join(d, "model.zrnn"), os.path.join(d, "model-int8.zrnn")
    subprocess.run([a.zeronn, "train", "--data", a.data, "--seed", "1", "--no-progress", "--save", model],
                   capture_output=True, check=True)
    subprocess.run([a.zeronn, "quantize", "--data", a.data, "--model", model, "--out", q],
                   capture_output=True, check=True)
    # zeronn takes AMX's tiles where the CPU and OS have them; ZERONN_AMX=0 keeps it to VNNI.
    runs = {"zeronn int8": lambda: zeronn_pass(a.zeronn, a.data, q, 7),
            "zeronn int8, VNNI only (ZERONN_AMX=0)": lambda: zeronn_pass(a.zeronn, a.data, q, 7, {"ZERONN_AMX": "0"}),
            "zeronn f32": lambda: zeronn_pass(a.zeronn, a.data, model, 7)}

    def ort():
        r = peer_run("ort", 1, ["int8_ort.py", a.data, model])
        return {"ONNX Runtime int8 (QOperator, u8 × s8)": {"pass_s": r["int8_eval_pass_s"], "test_acc": r["int8_test_acc"]},
                "ONNX Runtime f32": {"pass_s": r["f32_eval_pass_s"], "test_acc": r["f32_test_acc"]}}

    def litert():
        r = peer_run("litert", 1, ["int8_litert.py", a.data, model], python=a.litert_python)
        return {"LiteRT int8 (XNNPACK)": {"pass_s": r["int8_eval_pass_s"], "test_acc": r["int8_test_acc"]}}

    results = {}
    for rep in range(a.reps):
        for name, run in runs.items():
            results.setdefault(name, []).append(run())
        for peer in [ort] + ([litert] if a.litert_python else []):
            for name, r in peer().items():
                results.setdefault(name, []).append(r)
        print(f"rep {rep + 1} done", file=sys.stderr)
    med = {name: statistics.median(r["pass_s"] for r in rs) for name, rs in results.items()}
    base = med["zeronn int8"]
    print(f"\nEvaluation pass over all 70 000 images (chunks of 1000, one thread), the chapter 5 net "
          f"(seed 1) in int8, each runtime quantizing the same f32 weights; median of {a.reps} alternating "
          f"runs (each the median of 7 passes):\n")
    print("| implementation | evaluation pass | ÷ zeronn int8 | test accuracy |")
    print("| --- | --- | --- | --- |")
    for name, rs in sorted(results.items(), key=lambda kv: med[kv[0]]):
        print(f"| {name} | {med[name] * 1e3:.1f} ms | {med[name] / base:.2f}× | {rs[0]['test_acc']:.4f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zeronn", required=True)
    ap.add_argument("--candle", help="the book-candle program (candle/); left out if not given")
    ap.add_argument("--data", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-numpy-whole", action="store_true", help="skip the slow NumPy whole runs")
    ap.add_argument("--litert-python", metavar="PYTHON",
                    help="a Python with tensorflow and ai-edge-litert, for the LiteRT row (left out if not given)")
    ap.add_argument("--pairs", type=int, metavar="N",
                    help="only zeronn on 1 against 2 threads: N alternating pairs on a quiet machine, "
                    "then N with another process spinning on one core")
    ap.add_argument("--workload", choices=["book", "optimizers", "convnets", "int8"], default="book",
                    help="the chapter 5 run (default), chapter 6's optimizers workload, the conv nets, "
                    "or the int8 evaluation pass against LiteRT and ONNX Runtime")
    a = ap.parse_args()
    if a.workload == "int8":
        return int8_compare(a)
    if a.workload == "optimizers":
        return optimizers_compare(a)
    if a.workload == "convnets":
        return convnets_compare(a)
    if a.pairs is not None:
        if a.pairs < 1:
            ap.error("--pairs needs at least 1")
        thread_pairs(a.zeronn, a.data, a.pairs, loaded=False)
        return thread_pairs(a.zeronn, a.data, a.pairs, loaded=True)

    book = lambda impl, script, mode, threads, s, *extra: peer_run(
        impl, threads, [script, a.data, mode, "--seed", str(s)] + list(extra))
    contenders = [
        ("zeronn 1 thread", lambda s: zeronn_whole(a.zeronn, a.data, 1, s)),
        ("zeronn 2 threads", lambda s: zeronn_whole(a.zeronn, a.data, 2, s)),
        ("JAX jit, fori_loop (600 steps a call)", lambda s: book("jax", "book_jax.py", "whole-fori", 1, s)),
        ("JAX jit, a step a call", lambda s: book("jax", "book_jax.py", "whole", 1, s)),
        ("PyTorch 1 thread", lambda s: book("torch", "book_torch.py", "whole", 1, s, "--threads", "1")),
        ("PyTorch 2 threads", lambda s: book("torch", "book_torch.py", "whole", 2, s, "--threads", "2")),
        ("PyTorch torch.compile, 1 thread",
         lambda s: book("torch", "book_torch.py", "whole", 1, s, "--threads", "1", "--compile")),
    ]
    if a.candle:
        contenders.append(("candle 1 thread", lambda s: candle_run(a.candle, a.data, "whole", s)))
    if not a.no_numpy_whole:
        contenders.append(("NumPy (float64), the book's code",
                           lambda s: book("numpy", "book_numpy.py", "whole", 1, s)))
    print(f"NumPy's BLAS, free to pick its kernel: {openblas_kernel()}", file=sys.stderr)
    whole = {name: [] for name, _ in contenders}
    for rep in range(a.reps):
        for name, run in contenders:
            r = run(rep + 1)
            whole[name].append(r)
            print(f"rep {rep + 1} {name}: {r['whole_s']:.2f} s (test acc {r['final_test_acc']:.4f})", file=sys.stderr)

    micro_runs = [
        ("zeronn 1 thread", lambda: zeronn_micro(a.zeronn, a.data, 7)),
        ("JAX jit", lambda: peer_run("jax", 1, ["book_jax.py", a.data, "micro"])),
        ("PyTorch 1 thread", lambda: peer_run("torch", 1, ["book_torch.py", a.data, "micro", "--threads", "1"])),
        ("PyTorch 2 threads", lambda: peer_run("torch", 2, ["book_torch.py", a.data, "micro", "--threads", "2"])),
        ("PyTorch torch.compile, 1 thread",
         lambda: peer_run("torch", 1, ["book_torch.py", a.data, "micro", "--threads", "1", "--compile"])),
        ("NumPy (float64), the book's code", lambda: peer_run("numpy", 1, ["book_numpy.py", a.data, "micro"])),
        ("ONNX Runtime 1 thread (inference only)",
         lambda: peer_run("ort", 1, ["book_infer.py", a.data, "onnxruntime"])),
    ]
    if a.litert_python:
        micro_runs.append(("LiteRT (XNNPACK) 1 thread (inference only)",
                           lambda: peer_run("litert", 1, ["book_infer.py", a.data, "litert"],
                                            python=a.litert_python)))
    if a.candle:
        micro_runs.insert(6, ("candle 1 thread", lambda: candle_run(a.candle, a.data, "micro")))
    micro = {name: [] for name, _ in micro_runs}
    for rep in range(a.reps):
        for name, run in micro_runs:
            micro[name].append(run())

    med = lambda rs, k: statistics.median(r[k] for r in rs)
    base = whole["zeronn 1 thread"]
    # Ratios two ways: of the medians, and the median of each repetition's ratio (runs of one
    # repetition are minutes apart, so this one is less swayed by a noisy stretch).
    paired = lambda rs: statistics.median(r["whole_s"] / b["whole_s"] for r, b in zip(rs, base))
    print(f"\nWhole book run (10 000 iterations + 17 evaluations), median of {a.reps} alternating runs:\n")
    print("| implementation | whole run | training, per iteration | evaluation, per pass | final test acc "
          "| time ÷ zeronn 1 thread (of medians; median per repetition) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rs in whole.items():
        ratio = med(rs, "whole_s") / med(base, "whole_s")
        print(f"| {name} | {med(rs, 'whole_s'):.2f} s | {med(rs, 'train_s') / 10000 * 1e6:.0f} µs "
              f"| {med(rs, 'eval_s') / 17 * 1e3:.1f} ms | {med(rs, 'final_test_acc'):.4f} "
              f"| {ratio:.2f}×; {paired(rs):.2f}× |")
    peers = {n: med(rs, "whole_s") for n, rs in whole.items() if not n.startswith("zeronn")}
    if peers:
        best = min(peers, key=peers.get)
        print(f"\nThe strongest peer on the whole run: {best}, {peers[best]:.2f} s; zeronn on 1 thread is "
              f"{peers[best] / med(base, 'whole_s'):.2f}× faster (ratio of the medians).")
    two = whole["zeronn 2 threads"]
    print(f"\nzeronn on 2 threads is {med(base, 'whole_s') / med(two, 'whole_s'):.2f}× faster than on 1 "
          f"(ratio of the medians); the median of the repetitions' ratios is {1 / paired(two):.2f}×.")

    mbase = micro["zeronn 1 thread"]
    print(f"\nMicro-benchmarks (fixed batch; median of {a.reps} runs, each itself a median):\n")
    print("| implementation | training step, batch 100 | evaluation pass, 70 000 images | forward of one image |")
    print("| --- | --- | --- | --- |")
    for name, rs in micro.items():
        cells = []
        for k, unit, scale in (("step_s", "µs", 1e6), ("eval_pass_s", "ms", 1e3), ("forward1_s", "µs", 1e6)):
            if k not in rs[0]:
                cells.append("—")
                continue
            v = med(rs, k)
            cells.append(f"{v * scale:.1f} {unit}" + ("" if rs is mbase else f" ({v / med(mbase, k):.1f}×)"))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n(×: how many times longer than zeronn 1 thread)")


if __name__ == "__main__":
    main()
