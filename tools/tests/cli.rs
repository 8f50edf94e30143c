//! The `zeronn` command end to end: the book's run reaches its accuracy, the gradient check
//! passes, seeds reproduce runs bit for bit, and bad input gives a clear error and no panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Scratch, mnist_dir};

fn zeronn(args: &[&str], data: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zeronn"));
    c.args(args).env_remove("ZERONN_DATA");
    // Nor the folder `zeronn download` fills, which commands read without ZERONN_DATA.
    let nowhere = std::env::temp_dir().join("zeronn-test-no-cache");
    c.env("XDG_CACHE_HOME", &nowhere)
        .env("HOME", &nowhere)
        .env("LOCALAPPDATA", &nowhere);
    if let Some(d) = data {
        c.env("ZERONN_DATA", d);
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails unless the command failed cleanly: exit code 1, a message, no panic.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// `(train_acc, test_acc)` per printed epoch line.
fn epochs(out: &str) -> Vec<(f64, f64)> {
    out.lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').expect("two numbers per line");
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

#[test]
fn help_lists_the_subcommands() {
    let o = zeronn(&["--help"], None);
    assert!(o.status.success());
    let h = stdout(&o);
    for sub in ["train", "gradcheck", "eval"] {
        assert!(h.contains(sub), "{h}");
    }
}

#[test]
fn missing_data_says_where_to_look_and_how_to_provide_it() {
    let o = zeronn(&["train"], None);
    assert_clean_failure(&o, "ZERONN_DATA");
    assert!(stderr(&o).contains("--data"));
    let s = Scratch::new("nodata");
    let o = zeronn(&["gradcheck", "--data", s.0.to_str().unwrap()], None);
    assert_clean_failure(&o, "train-images-idx3-ubyte");
    let o = zeronn(&["train", "--data", "/nonexistent/zeronn"], None);
    assert_clean_failure(&o, "/nonexistent/zeronn");
}

#[test]
fn corrupt_data_file_is_a_clear_error() {
    let s = Scratch::new("corrupt");
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(s.path(name), b"\x00\x00\x08\x03\x00\x00\x00\x05").unwrap();
    }
    let o = zeronn(&["train", "--iters", "1"], Some(&s.0));
    assert_clean_failure(&o, "train-images-idx3-ubyte");
}

#[test]
fn bad_model_file_is_a_clear_error() {
    let s = Scratch::new("model");
    let p = s.path("m.zrnn");
    std::fs::write(&p, b"ZRNN but not really a model").unwrap();
    let o = zeronn(&["eval", "--model", p.to_str().unwrap()], None);
    assert_clean_failure(&o, "m.zrnn");
    let o = zeronn(
        &["eval", "--model", s.path("absent").to_str().unwrap()],
        None,
    );
    assert_clean_failure(&o, "absent");
    // Not a regular file: refused, not read without end.
    for p in ["/dev/zero", s.0.to_str().unwrap()] {
        let o = zeronn(&["eval", "--model", p], None);
        assert_clean_failure(&o, "not a regular file");
    }
}

#[test]
fn bad_arguments_are_refused() {
    let o = zeronn(&["train", "--batch-size", "0"], None);
    assert_clean_failure(&o, "batch-size");
    let o = zeronn(&["train", "--lr", "nan"], None);
    assert_clean_failure(&o, "--lr");
    for (args, needle) in [
        (&["train", "--hidden", "0"][..], "--hidden"),
        (&["train", "--threads", "0"], "--threads"),
        (&["train", "--hidden", "50,0"][..], "--hidden"),
        (&["train", "--dropout", "1"][..], "--dropout"),
        (&["train", "--weight-decay=-1"][..], "--weight-decay"),
        (&["train", "--train-size", "0"][..], "--train-size"),
    ] {
        assert_clean_failure(&zeronn(args, None), needle);
    }
    // Refused by the argument parser: exit code 2 and a usage message.
    for (args, needle) in [
        (&["train", "--weight-init-std", "huge"][..], "xavier"),
        (&["train", "--optimizer", "adamw"][..], "adam"),
        (&["train", "--iters", "5", "--epochs", "2"][..], "--epochs"),
        (&["gradcheck", "--hidden", ""][..], "--hidden"),
    ] {
        let o = zeronn(args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

/// A directory of small MNIST-format files (raw IDX, 28×28 images): `train` and `test`
/// images, each label's digit drawn as a few lit pixels.
fn fake_mnist(tag: &str, train: u32, test: u32) -> Scratch {
    let s = Scratch::new(tag);
    let write = |name: &str, magic: u32, dims: &[u32], data: Vec<u8>| {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend(data);
        std::fs::write(s.path(name), v).unwrap();
    };
    for (stem, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let pixels: Vec<u8> = labels
            .iter()
            .flat_map(|&l| (0..784usize).map(move |p| if p % 37 == l as usize { 200 } else { 0 }))
            .collect();
        write(
            &format!("{stem}-images-idx3-ubyte"),
            0x803,
            &[n, 28, 28],
            pixels,
        );
        write(&format!("{stem}-labels-idx1-ubyte"), 0x801, &[n], labels);
    }
    s
}

#[test]
fn a_model_that_could_not_be_saved_is_refused_before_training() {
    let data = fake_mnist("save", 40, 10);
    let out = Scratch::new("save-out");
    let dir = out.0.to_str().unwrap();
    let missing = out.path("missing").join("m.zrnn");
    for (path, needle) in [
        (dir, "not a file name"),
        (missing.to_str().unwrap(), "does not exist"),
    ] {
        let o = zeronn(&["train", "--iters", "5", "--save", path], Some(&data.0));
        assert_clean_failure(&o, needle);
        assert!(
            !stderr(&o).contains("done in"),
            "trained first: {}",
            stderr(&o)
        );
    }
    // Too large for the model format: refused before training too.
    let m = out.path("m.zrnn");
    let o = zeronn(
        &[
            "train",
            "--hidden",
            "2000000",
            "--batch-size",
            "10",
            "--save",
            m.to_str().unwrap(),
        ],
        Some(&data.0),
    );
    assert_clean_failure(&o, "4 GiB");
    assert!(!m.exists());
}

#[test]
fn an_empty_split_is_refused_and_a_batch_may_exceed_the_training_set() {
    let empty = fake_mnist("empty", 40, 0);
    let o = zeronn(&["train", "--iters", "5"], Some(&empty.0));
    assert_clean_failure(&o, "holds no images");
    assert!(
        stderr(&o).contains("t10k-images-idx3-ubyte"),
        "{}",
        stderr(&o)
    );
    // Mini-batches are drawn with replacement, as in the book.
    let data = fake_mnist("small", 40, 10);
    let o = zeronn(
        &[
            "train",
            "--batch-size",
            "41",
            "--iters",
            "5",
            "--no-progress",
        ],
        Some(&data.0),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_diverged_run_is_an_error_and_saves_nothing() {
    let data = fake_mnist("diverge", 40, 10);
    let out = Scratch::new("diverge-out");
    let m = out.path("m.zrnn");
    let o = zeronn(
        &[
            "train",
            "--iters",
            "3",
            "--batch-size",
            "10",
            "--weight-init-std",
            "1e30",
            "--no-progress",
            "--save",
            m.to_str().unwrap(),
        ],
        Some(&data.0),
    );
    assert_clean_failure(&o, "training diverged at iteration");
    assert!(stderr(&o).contains("not saved"), "{}", stderr(&o));
    assert!(!m.exists());
    // A learning rate that blows up: the run stops at the first non-finite loss and names it,
    // rather than running its 10 000 iterations. The thread team stops at its next meeting
    // (here the evaluation after iteration 4, an epoch being 4 iterations), one line later.
    for (threads, lines) in [("1", 2), ("2", 3)] {
        let o = zeronn(
            &[
                "train",
                "--lr",
                "1e30",
                "--batch-size",
                "10",
                "--threads",
                threads,
                "--no-progress",
            ],
            Some(&data.0),
        );
        assert_clean_failure(&o, "training diverged at iteration 1: its loss is NaN");
        assert!(
            stdout(&o).lines().count() <= lines,
            "{threads} threads stopped early: {}",
            stdout(&o)
        );
    }
}

#[test]
fn train_plot_draws_the_run_as_a_png() {
    let data = fake_mnist("plot", 40, 10);
    let out = Scratch::new("plot-out");
    let png = out.path("run.png");
    let o = zeronn(
        &[
            "train",
            "--iters",
            "30",
            "--batch-size",
            "10",
            "--no-progress",
            "--plot",
            png.to_str().unwrap(),
        ],
        Some(&data.0),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    // A --plot that cannot be written is refused before training.
    let o = zeronn(
        &[
            "train",
            "--plot",
            out.path("no/such/dir/run.png").to_str().unwrap(),
        ],
        Some(&data.0),
    );
    assert_clean_failure(&o, "--plot");
}

#[test]
fn a_read_only_model_is_not_replaced_and_a_directory_is_not_an_idx_file() {
    let data = fake_mnist("readonly", 40, 10);
    let out = Scratch::new("readonly-out");
    let m = out.path("m.zrnn");
    std::fs::write(&m, b"precious").unwrap();
    let mut perms = std::fs::metadata(&m).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&m, perms).unwrap();
    let o = zeronn(
        &["train", "--iters", "2", "--save", m.to_str().unwrap()],
        Some(&data.0),
    );
    assert_clean_failure(&o, "the file is read-only");
    assert_eq!(std::fs::read(&m).unwrap(), b"precious");
    // An IDX file that is a directory.
    let dir = Scratch::new("idx-dir");
    for f in [
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::copy(data.0.join(f), dir.path(f)).unwrap();
    }
    std::fs::create_dir(dir.path("train-images-idx3-ubyte.gz")).unwrap();
    let o = zeronn(&["train", "--iters", "2"], Some(&dir.0));
    assert_clean_failure(&o, "train-images-idx3-ubyte.gz: not a regular file");
}

#[test]
fn a_model_of_the_wrong_shape_is_refused_by_eval_and_export() {
    let data = fake_mnist("shape", 40, 10);
    let out = Scratch::new("shape-out");
    for (shape, name) in [
        (zeronn::TwoLayerShape::new(100, 8, 10), "m100.zrnn"),
        (zeronn::TwoLayerShape::new(784, 8, 5), "m5.zrnn"),
    ] {
        let m = out.path(name);
        let params = vec![0.01f32; shape.param_len()];
        zeronn_tools::modelfile::save(&m, &shape.spec(), &params, &[]).unwrap();
        let (mp, bundle) = (m.to_str().unwrap(), out.path("bundle"));
        let want = format!("the model is {}-8-{}", shape.input_size, shape.output_size);
        let o = zeronn(&["eval", "--model", mp], Some(&data.0));
        assert_clean_failure(&o, &want);
        let o = zeronn(
            &["export", "--model", mp, "--out", bundle.to_str().unwrap()],
            Some(&data.0),
        );
        assert_clean_failure(&o, &want);
        assert!(stderr(&o).contains(name));
        assert!(!bundle.exists());
    }
}

#[test]
fn the_books_run_reaches_its_accuracy_and_eval_agrees() {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new("train");
    let model = s.path("book.zrnn");
    let o = zeronn(
        &["train", "--seed", "1", "--save", model.to_str().unwrap()],
        Some(&dir),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = epochs(&stdout(&o));
    assert_eq!(
        e.len(),
        17,
        "one line per epoch of 600 iterations, from iteration 0"
    );
    let (train, test) = e[16];
    eprintln!("final train {train} test {test}\n{}", stderr(&o));
    assert!(test >= 0.965 && train >= 0.97, "train {train} test {test}");
    assert!(
        e[0].1 < 0.5,
        "iteration 0 is evaluated after one update: {:?}",
        e[0]
    );
    // The saved model, evaluated on its own, is a valid model that scores like the run.
    let o = zeronn(&["eval", "--model", model.to_str().unwrap()], Some(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    let acc: f64 = stdout(&o)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (acc - test).abs() < 0.005,
        "eval {acc} vs last epoch {test}"
    );
}

#[test]
fn eval_matches_the_runs_own_last_evaluation() {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new("evalmatch");
    let model = s.path("m.zrnn");
    // 601 iterations: the evaluation after iteration 600 sees the final parameters.
    let o = zeronn(
        &[
            "train",
            "--seed",
            "3",
            "--iters",
            "601",
            "--save",
            model.to_str().unwrap(),
        ],
        Some(&dir),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let last = epochs(&stdout(&o))[1].1;
    let o = zeronn(&["eval", "--model", model.to_str().unwrap()], Some(&dir));
    let line = stdout(&o);
    let acc: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(acc, last, "{line}");
}

#[test]
fn the_same_seed_gives_bit_identical_parameters() {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new("seed");
    let run = |seed: &str, name: &str| {
        let p = s.path(name);
        let o = zeronn(
            &[
                "train",
                "--seed",
                seed,
                "--iters",
                "1500",
                "--eval-every",
                "100000",
                "--save",
                p.to_str().unwrap(),
            ],
            Some(&dir),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(p).unwrap()
    };
    let a = run("7", "a.zrnn");
    let b = run("7", "b.zrnn");
    let c = run("8", "c.zrnn");
    assert!(a == b, "same seed, different parameters");
    assert!(a != c, "different seeds, same parameters");
}

#[test]
fn gradcheck_passes_in_f64_within_the_tolerances() {
    let Some(dir) = mnist_dir() else { return };
    let o = zeronn(&["gradcheck"], Some(&dir));
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let tol = [("W1", 5e-6), ("b1", 5e-5), ("W2", 1e-6), ("b2", 1e-6)];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (line, (name, t)) in lines.iter().zip(tol) {
        let (n, v) = line.split_once(':').unwrap();
        assert_eq!(n, name);
        let v: f64 = v.parse().unwrap();
        assert!(v <= t, "{name}: {v} > {t}");
        eprintln!("{line}");
    }
}

#[test]
fn gradcheck_passes_in_f32_with_its_step() {
    let Some(dir) = mnist_dir() else { return };
    let o = zeronn(&["gradcheck", "--f32"], Some(&dir));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("relative:"));
}

#[test]
fn gradcheck_fails_loudly_when_the_tolerance_is_missed() {
    let Some(dir) = mnist_dir() else { return };
    // A step of 1 crosses ReLU kinks and the curvature dominates: the check must fail.
    let o = zeronn(&["gradcheck", "--h", "1", "--hidden", "5"], Some(&dir));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("FAILED"));
}

#[test]
fn two_and_three_threads_reproduce_bit_for_bit_and_learn() {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new("threads");
    for threads in ["2", "3"] {
        let run = |name: &str| {
            let p = s.path(&format!("{threads}-{name}"));
            let o = zeronn(
                &[
                    "train",
                    "--seed",
                    "5",
                    "--threads",
                    threads,
                    "--iters",
                    "1201",
                    "--save",
                    p.to_str().unwrap(),
                ],
                Some(&dir),
            );
            assert!(o.status.success(), "{}", stderr(&o));
            (std::fs::read(p).unwrap(), epochs(&stdout(&o)))
        };
        let (a, ea) = run("a.zrnn");
        let (b, eb) = run("b.zrnn");
        assert!(a == b, "{threads} threads, same seed, different parameters");
        assert_eq!(ea, eb);
        assert_eq!(ea.len(), 3);
        assert!(
            ea[2].1 > 0.9,
            "test accuracy after 1200 iterations on {threads} threads: {:?}",
            ea[2]
        );
    }
}

#[test]
fn bench_prints_every_figure_with_its_gflops_and_share_of_the_peak() {
    let Some(dir) = mnist_dir() else { return };
    let o = zeronn(
        &[
            "bench",
            "--reps",
            "1",
            "--whole-reps",
            "1",
            "--backend",
            "auto",
        ],
        Some(&dir),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("FMA peak measured on this core"), "{out}");
    for figure in [
        "| X·W1 (forward 1) |",
        "| Xᵀ·dA1 (dW1) |",
        "| training step, batch 100 |",
        "| forward of one image |",
        "| evaluation pass, 70000 images |",
        "| whole run (10 000 steps, 17 evaluations), 1 thread |",
        "| whole run (10 000 steps, 17 evaluations), 2 threads |",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(figure))
            .unwrap_or_else(|| panic!("no {figure} in {out}"));
        // The backend's cell: a time or rate, then the share of the peak, as in
        // "102.0 µs (156.6 GFLOP/s, 91%)" or "149.8 (87%)".
        let cell = line
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap()
            .trim();
        let (value, rest) = cell.split_once(' ').unwrap();
        assert!(value.parse::<f64>().unwrap() > 0.0, "{line}");
        let share = rest
            .strip_suffix("%)")
            .and_then(|r| r.rsplit([' ', '(']).next())
            .and_then(|p| p.parse::<f64>().ok());
        assert!(
            share.is_some_and(|p| p > 0.0),
            "share of the peak in {line}"
        );
        if !figure.contains('·') {
            // A time, then its rate: "(156.6 GFLOP/s, 91%)".
            let rate = rest
                .split_once('(')
                .and_then(|(_, r)| r.split_once(" GFLOP/s, "))
                .and_then(|(g, _)| g.parse::<f64>().ok());
            assert!(rate.is_some_and(|g| g > 0.0), "GFLOP/s in {line}");
        }
    }
    // The products' cells are rates: their table says so.
    assert!(
        out.lines()
            .any(|l| l.starts_with("| product") && l.contains("GFLOP/s (of peak)")),
        "{out}"
    );
}

#[test]
fn chapter_6_nets_train_save_evaluate_and_check_their_gradients() {
    let data = fake_mnist("ch6", 200, 40);
    let out = Scratch::new("ch6-out");
    let m = out.path("bn.zrnn");
    let net = [
        "--hidden",
        "20,16",
        "--batch-norm",
        "--dropout",
        "0.1",
        "--weight-decay",
        "0.01",
        "--weight-init-std",
        "he",
    ];
    let mut args = vec![
        "train",
        "--seed",
        "3",
        "--no-progress",
        "--optimizer",
        "adam",
    ];
    args.extend(net);
    // Evaluations after iterations 0, 5 and 10, the last: the last line is the saved model's.
    args.extend([
        "--batch-size",
        "40",
        "--iters",
        "11",
        "--eval-every",
        "5",
        "--save",
        m.to_str().unwrap(),
    ]);
    let o = zeronn(&args, Some(&data.0));
    assert!(o.status.success(), "{}", stderr(&o));
    let header = stderr(&o);
    assert!(
        header
            .contains("784-20-16-10 Relu BatchNorm Dropout 0.1, init he, weight decay 0.01, Adam"),
        "{header}"
    );
    assert!(header.contains("lr 0.001"), "{header}");
    let lines = epochs(&stdout(&o));
    assert_eq!(lines.len(), 3);
    let e = zeronn(&["eval", "--model", m.to_str().unwrap()], Some(&data.0));
    assert!(e.status.success(), "{}", stderr(&e));
    let acc: f64 = stdout(&e)
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .expect("test accuracy: A (n/N)");
    assert_eq!(
        acc, lines[2].1,
        "eval of the saved model = the run's last evaluation"
    );

    // --epochs and --train-size: 100 images in batches of 25 are 4 iterations an epoch.
    let o = zeronn(
        &[
            "train",
            "--seed",
            "1",
            "--no-progress",
            "--epochs",
            "3",
            "--train-size",
            "100",
            "--batch-size",
            "25",
        ],
        Some(&data.0),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("12 iterations"), "{}", stderr(&o));
    assert_eq!(epochs(&stdout(&o)).len(), 3);

    // The gradient check of the same net: one line per tensor, in the book's order.
    let mut args = vec!["gradcheck", "--samples", "5"];
    args.extend(net);
    let o = zeronn(&args, Some(&data.0));
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"
        ]
    );
}

#[test]
fn conv_nets_train_save_evaluate_and_check_their_gradients() {
    let data = fake_mnist("conv", 120, 30);
    let out = Scratch::new("conv-out");
    let m = out.path("conv.zrnn");
    let net = "conv4x5s2p1,relu,pool2,bn,12,relu,dropout0.2,10";
    let o = zeronn(
        &[
            "train",
            "--net",
            net,
            "--seed",
            "2",
            "--no-progress",
            "--optimizer",
            "adam",
            "--batch-size",
            "20",
            "--iters",
            "7",
            "--eval-every",
            "3",
            "--save",
            m.to_str().unwrap(),
        ],
        Some(&data.0),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("Conv(4x5x5,stride 2,pad 1) Relu Pool(2x2,stride 2) BatchNorm Affine(144,12)"),
        "{err}"
    );
    let lines = epochs(&stdout(&o));
    assert_eq!(lines.len(), 3);
    let final_acc: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("final test accuracy (after the last iteration) "))
        .and_then(|v| v.parse().ok())
        .expect("a final test accuracy");
    let e = zeronn(&["eval", "--model", m.to_str().unwrap()], Some(&data.0));
    assert!(e.status.success(), "{}", stderr(&e));
    let acc: f64 = stdout(&e)
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .expect("test accuracy: A (n/N)");
    assert_eq!(
        acc, final_acc,
        "eval of the saved model = the run's final evaluation"
    );

    // The book's pictures of the model: its filters, and its misclassified test images (as
    // many as eval finds wrong, the accuracy printed as the book prints it).
    let pics = out.path("pics");
    let p = pics.to_str().unwrap();
    let o = zeronn(
        &[
            "experiment",
            "filters",
            "--model",
            m.to_str().unwrap(),
            "--out",
            p,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("4 filters 5×5"), "{}", stdout(&o));
    assert_eq!(
        &std::fs::read(pics.join("filters.png")).unwrap()[1..4],
        b"PNG"
    );
    let o = zeronn(
        &[
            "experiment",
            "misclassified",
            "--model",
            m.to_str().unwrap(),
            "--out",
            p,
        ],
        Some(&data.0),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("test accuracy:{acc}\n")),
        "{}",
        stdout(&o)
    );
    let correct: usize = stdout(&e)
        .split(['(', '/'])
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("(n/N)");
    let csv = std::fs::read_to_string(pics.join("misclassified.csv")).unwrap();
    assert_eq!(csv.lines().count() - 1, 30 - correct, "{csv}");
    assert_eq!(
        &std::fs::read(pics.join("misclassified.png")).unwrap()[1..4],
        b"PNG"
    );
    let o = zeronn(&["experiment", "misclassified", "--out", p], Some(&data.0));
    assert_clean_failure(&o, "needs --model");

    // Two threads, the batch's images shared out: bit for bit the same run twice.
    let two = |name: &str| {
        let m = out.path(name);
        let o = zeronn(
            &[
                "train",
                "--net",
                net,
                "--seed",
                "4",
                "--no-progress",
                "--batch-size",
                "20",
                "--iters",
                "5",
                "--threads",
                "2",
                "--save",
                m.to_str().unwrap(),
            ],
            Some(&data.0),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(m).unwrap()
    };
    assert_eq!(two("a.zrnn"), two("b.zrnn"));

    // The gradient check of a small conv net, one line per tensor (a sigmoid after the
    // convolution: blank patches give exactly b1 = 0, where a ReLU has its kink).
    let o = zeronn(
        &[
            "gradcheck",
            "--net",
            "conv2x3s3,sigmoid,pool3,6,relu,10",
            "--samples",
            "2",
            "--weight-init-std",
            "he",
        ],
        Some(&data.0),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let names: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(names, ["W1", "b1", "W2", "b2", "W3", "b3"]);

    // Shapes that do not fit: the layer is named; conflicting flags refused.
    let o = zeronn(
        &[
            "train",
            "--net",
            "conv30x5,relu,pool2,pool2,pool2,pool2,pool2,10",
        ],
        Some(&data.0),
    );
    assert_clean_failure(&o, "layer 7 'pool2'");
    let o = zeronn(
        &["train", "--net", "conv30x5,relu,pool2,100"],
        Some(&data.0),
    );
    assert_clean_failure(&o, "10 classes");
    let o = zeronn(&["train", "--net", "10", "--hidden", "50"], Some(&data.0));
    assert!(!o.status.success());
}

#[test]
fn every_experiment_writes_its_csv_and_png() {
    let data = fake_mnist("exp", 200, 40);
    let out = Scratch::new("exp-out");
    let dir = out.path("figures");
    let d = dir.to_str().unwrap();
    // Short runs: (name, settings, lines of its CSV including the header).
    for (name, extra, lines) in [
        ("optimizers", &["--iters", "12"][..], 13),
        ("weight-init", &["--iters", "12"][..], 13),
        (
            "batch-norm",
            &["--epochs", "3", "--scales", "2"][..],
            1 + 2 * 3,
        ),
        ("weight-decay", &["--epochs", "4"][..], 5),
        ("dropout", &["--epochs", "4"][..], 5),
        (
            "hyperparameters",
            &["--epochs", "3", "--trials", "3"][..],
            1 + 3 * 3,
        ),
    ] {
        let mut args = vec![
            "experiment",
            name,
            "--out",
            d,
            "--no-progress",
            "--seed",
            "2",
        ];
        args.extend(extra);
        let o = zeronn(&args, Some(&data.0));
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let csv = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap();
        assert_eq!(csv.lines().count(), lines, "{name}: {csv}");
        let cols = csv.lines().next().unwrap().split(',').count();
        assert!(csv.lines().all(|l| l.split(',').count() == cols), "{name}");
        let png = std::fs::read(dir.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{name}"
        );
    }
    // The optimizers' four curves, and what the book's script prints.
    let csv = std::fs::read_to_string(dir.join("optimizers.csv")).unwrap();
    assert!(csv.starts_with("iteration,SGD,Momentum,AdaGrad,Adam,SGD (smoothed)"));
    let o = zeronn(
        &[
            "experiment",
            "hyperparameters",
            "--out",
            d,
            "--no-progress",
            "--epochs",
            "2",
            "--trials",
            "6",
        ],
        Some(&data.0),
    );
    let text = stdout(&o);
    assert!(text.contains("=========== Hyper-Parameter Optimization Result ==========="));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("Best-")).count(),
        5,
        "{text}"
    );
    // The same seed, the same curves.
    let again = Scratch::new("exp-again");
    let o = zeronn(
        &[
            "experiment",
            "optimizers",
            "--out",
            again.path("f").to_str().unwrap(),
            "--no-progress",
            "--iters",
            "12",
            "--seed",
            "2",
        ],
        Some(&data.0),
    );
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(again.path("f").join("optimizers.csv")).unwrap(),
        csv
    );
}

#[test]
fn export_folds_a_batch_norm_mlp_and_runs_the_devices_adam_steps() {
    let data = fake_mnist("export-mlp", 100, 30);
    let out = Scratch::new("export-mlp-out");
    let (m5, mlp, conv) = (
        out.path("m5.zrnn"),
        out.path("mlp.zrnn"),
        out.path("conv.zrnn"),
    );
    for (model, extra) in [
        (&m5, &["--hidden", "8"][..]),
        (&conv, &["--net", "conv3x5s2p1,relu,pool2,10"][..]),
        (
            &mlp,
            &["--hidden", "12,9", "--batch-norm", "--optimizer", "adam"][..],
        ),
    ] {
        let mut args = vec!["train", "--seed", "1", "--no-progress", "--iters", "30"];
        args.extend(extra);
        args.extend(["--save", model.to_str().unwrap()]);
        let o = zeronn(&args, Some(&data.0));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let bundle = out.path("bundle");
    let args = [
        "export",
        "--model",
        m5.to_str().unwrap(),
        "--mlp-model",
        mlp.to_str().unwrap(),
        "--conv-model",
        conv.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
        "--test-images",
        "20",
        "--train-images",
        "40",
        "--adam-hidden",
        "16,8",
        "--adam-steps",
        "3",
    ];
    let o = zeronn(&args, Some(&data.0));
    assert!(o.status.success(), "{}", stderr(&o));
    // The folded model: no BatchNorm left, and the desktop's class for each test image.
    let bytes = zeronn_tools::modelfile::read(&bundle.join("mlp.zrnn")).unwrap();
    let model = zeronn_tools::modelfile::parse(&bytes).unwrap();
    let names: Vec<&str> = model.spec().layers().iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        [
            "Affine",
            "Relu",
            "Affine",
            "Relu",
            "Affine",
            "SoftmaxWithLoss"
        ]
    );
    assert_eq!(std::fs::read(bundle.join("mlp-pred.u8")).unwrap().len(), 20);
    assert_eq!(
        std::fs::read(bundle.join("conv-pred.u8")).unwrap().len(),
        20
    );
    let rs = std::fs::read_to_string(bundle.join("expected.rs")).unwrap();
    for needle in [
        "pub const CONV_LAYERS: &[zeronn::Layer] = &[",
        "zeronn::Layer::Convolution(zeronn::layers::Convolution::new(zeronn::layers::Dims::new(1, 28, 28), 3, 5).kernel(5, 5).stride(2).pad(1)),",
        "zeronn::Layer::Pooling { h: 2, w: 2, stride: 2 },",
        "pub const MLP_LAYERS: &[zeronn::Layer] = &[",
        "zeronn::Layer::Affine { input: 784, output: 12 },",
        "pub const ADAM_LAYERS: &[zeronn::Layer] = &[",
        "zeronn::Layer::BatchNorm { features: 16 },",
        "pub const ADAM_STEPS: u64 = 3;",
        "pub const ADAM_PARAMS_CRC: u32 = 0x",
        "pub const ADAM_STATE_CRC: u32 = 0x",
    ] {
        assert!(rs.contains(needle), "{needle} in {rs}");
    }
    // The classes agree with the unfolded model's up to folding's rounding: here exactly.
    let e = zeronn(
        &["eval", "--model", mlp.to_str().unwrap(), "--limit", "20"],
        Some(&data.0),
    );
    let want: usize = stdout(&e)
        .split(['(', '/'])
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    let got = rs
        .lines()
        .find_map(|l| l.strip_prefix("pub const MLP_CORRECT: usize = "))
        .and_then(|v| v.trim_end_matches(';').parse::<usize>().ok())
        .unwrap();
    assert_eq!(got, want);
}

/// Draws a stroke of `width` pixels along the segments of `points` on `img` (dark ink).
fn stroke(img: &mut image::GrayImage, points: &[(f32, f32)], width: f32) {
    for seg in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (seg[0], seg[1]);
        let steps = ((x1 - x0).hypot(y1 - y0) * 2.0) as usize + 1;
        for i in 0..=steps {
            let t = i as f32 / steps as f32;
            let (cx, cy) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            for (x, y, p) in img.enumerate_pixels_mut() {
                if (x as f32 - cx).hypot(y as f32 - cy) <= width / 2.0 {
                    p[0] = 30;
                }
            }
        }
    }
}

#[test]
fn predict_classifies_mnist_pictures_as_eval_does_and_drawn_digits_on_paper() {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new("predict");
    let model = s.path("m.zrnn");
    let m = model.to_str().unwrap();
    let o = zeronn(
        &["train", "--seed", "1", "--iters", "3000", "--save", m],
        Some(&dir),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let n = 40;
    let logits = s.path("logits.npy");
    let o = zeronn(
        &[
            "eval",
            "--model",
            m,
            "--limit",
            &n.to_string(),
            "--logits",
            logits.to_str().unwrap(),
        ],
        Some(&dir),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The classes eval gives, from the .npy (header, then n × 10 little-endian f32).
    let npy = std::fs::read(&logits).unwrap();
    let body = &npy[10 + u16::from_le_bytes([npy[8], npy[9]]) as usize..];
    let eval: Vec<usize> = body
        .chunks_exact(40)
        .map(|row| {
            let v: Vec<f32> = row
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            zeronn::functions::argmax(&v)
        })
        .collect();
    assert_eq!(eval.len(), n);
    let data = zeronn_tools::mnist::load(&dir).unwrap();
    let (mut plain, mut paper) = (vec![], vec![]);
    for i in 0..n {
        let px = data.test.image_raw(i);
        let img = image::GrayImage::from_raw(28, 28, px.to_vec()).unwrap();
        let p = s.path(&format!("mnist{i:02}.png"));
        img.save(&p).unwrap();
        plain.push(p);
        // The same digit drawn large, dark on light grey paper, off centre; PNG and JPEG.
        let big = image::imageops::resize(&img, 196, 196, image::imageops::FilterType::Triangle);
        let mut sheet = image::GrayImage::from_pixel(320, 250, image::Luma([235]));
        for (x, y, q) in big.enumerate_pixels() {
            sheet.put_pixel(
                x + 90,
                y + 20,
                image::Luma([235 - (q[0] as u32 * 205 / 255) as u8]),
            );
        }
        let p = s.path(&format!(
            "paper{i:02}.{}",
            if i % 2 == 0 { "png" } else { "jpg" }
        ));
        sheet.save(&p).unwrap();
        paper.push(p);
    }
    let classes = |files: &[std::path::PathBuf]| -> Vec<usize> {
        let mut args = vec!["predict", "--model", m];
        args.extend(files.iter().map(|p| p.to_str().unwrap()));
        let o = zeronn(&args, None);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| l.split(": ").nth(1).unwrap()[..1].parse().unwrap())
            .collect()
    };
    assert_eq!(
        classes(&plain),
        eval,
        "28 × 28 MNIST pictures are classified as eval does"
    );
    let drawn = classes(&paper);
    let same = drawn.iter().zip(&eval).filter(|(a, b)| a == b).count();
    eprintln!("drawn large on paper: {same}/{n} classes as eval's");
    assert!(same >= n * 9 / 10, "{same}/{n}: {drawn:?} vs {eval:?}");
    // A 7 and a 1 drawn with a pen on white paper.
    let mut seven = image::GrayImage::from_pixel(240, 300, image::Luma([255]));
    stroke(
        &mut seven,
        &[(50.0, 50.0), (190.0, 50.0), (110.0, 260.0)],
        18.0,
    );
    let mut one = image::GrayImage::from_pixel(300, 300, image::Luma([255]));
    stroke(
        &mut one,
        &[(130.0, 60.0), (160.0, 40.0), (160.0, 260.0)],
        18.0,
    );
    let (p7, p1) = (s.path("seven.png"), s.path("one.png"));
    seven.save(&p7).unwrap();
    one.save(&p1).unwrap();
    assert_eq!(classes(&[p7, p1]), vec![7, 1]);
    // Not a picture: a clear error.
    let o = zeronn(&["predict", "--model", m, m], None);
    assert_clean_failure(&o, "not a PNG or JPEG");
}

/// Three classes of points in 4 dimensions around distinct centres, noise from a fixed
/// sequence: a CSV with a header and the label in the middle column.
fn blobs_csv(path: &Path, n: usize, seed: u64) {
    let centres = [
        [0.0, 0.0, 0.0, 0.0],
        [3.0, 1.0, 0.0, -1.0],
        [0.0, 3.0, 2.0, 1.0],
    ];
    let mut s = seed;
    let mut noise = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // A sum of uniforms: roughly normal, mean 0, spread about 1.
        (0..4)
            .map(|k| ((s >> (8 + 12 * k)) & 0xfff) as f64 / 4096.0)
            .sum::<f64>()
            * 1.7
            - 3.4
    };
    let mut text = String::from("f1,f2,label,f3,f4\n");
    for i in 0..n {
        let c = centres[i % 3];
        let v: Vec<f64> = c.iter().map(|m| m + noise()).collect();
        text += &format!(
            "{:.4},{:.4},{},{:.4},{:.4}\n",
            v[0],
            v[1],
            i % 3,
            v[2],
            v[3]
        );
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn own_csv_data_trains_and_evaluates_with_its_own_sizes() {
    let s = Scratch::new("csv");
    let (train, test, model) = (s.path("train.csv"), s.path("test.csv"), s.path("m.zrnn"));
    blobs_csv(&train, 600, 1);
    blobs_csv(&test, 300, 2);
    let (tr, te, m) = (
        train.to_str().unwrap(),
        test.to_str().unwrap(),
        model.to_str().unwrap(),
    );
    let o = zeronn(
        &[
            "train",
            "--data",
            tr,
            "--test-data",
            te,
            "--hidden",
            "16",
            "--iters",
            "300",
            "--seed",
            "1",
            "--no-progress",
            "--save",
            m,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("4-16-3"),
        "4 features, 3 classes: {}",
        stderr(&o)
    );
    let (_, last) = *epochs(&stdout(&o)).last().unwrap();
    assert!(last > 0.85, "test accuracy {last}");
    let o = zeronn(&["eval", "--model", m, "--data", te], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let acc: f64 = stdout(&o)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (acc - last).abs() < 0.02,
        "eval {acc}, the run's last evaluation {last}"
    );
    // Errors name the file, row and column.
    let bad = s.path("bad.csv");
    std::fs::write(&bad, "f1,f2,label,f3,f4\n1,2,0,3,4\n1,x,1,3,4\n").unwrap();
    let b = bad.to_str().unwrap();
    assert_clean_failure(
        &zeronn(&["train", "--data", b], None),
        "bad.csv: row 3, column 2 (f2): 'x' is not a number",
    );
    std::fs::write(&bad, "f1,f2,label,f3,f4\n1,2,0,3,4\n1,2,1,3\n").unwrap();
    assert_clean_failure(
        &zeronn(&["eval", "--model", m, "--data", b], None),
        "row 3 has 4 columns, the header has 5",
    );
    std::fs::write(&bad, "f1,f2,label,f3,f4\n1,2,0,3,4\n1,2,5,3,4\n").unwrap();
    assert_clean_failure(
        &zeronn(&["eval", "--model", m, "--data", b], None),
        "row 3, column 3 (label): label 5 is out of range: the model scores 3 classes",
    );
    // A --label that names no column: the columns listed.
    std::fs::write(&bad, "1,2,3\n4,5,1\n").unwrap();
    assert_clean_failure(
        &zeronn(&["train", "--data", b, "--label", "z"], None),
        "--label z: no such column",
    );
}

#[test]
fn a_run_killed_at_a_random_moment_resumes_to_the_same_bits() {
    killed_and_resumed("1");
}

/// The same on the thread team, whose checkpoints are written at a meeting of its members.
#[test]
fn a_run_on_two_threads_killed_at_a_random_moment_resumes_to_the_same_bits() {
    killed_and_resumed("2");
}

/// Trains 784-100-10 with BatchNorm, Dropout and Adam on `threads` threads, checkpointing
/// every 50 iterations; kills the same run twice at a moment drawn from the clock after its
/// first checkpoint, resumes it, and requires the final parameters of the uninterrupted run.
fn killed_and_resumed(threads: &str) {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new(&format!("resume{threads}"));
    let base = [
        "train",
        "--seed",
        "3",
        "--iters",
        "2000",
        "--optimizer",
        "adam",
        "--hidden",
        "100",
        "--batch-norm",
        "--dropout",
        "0.1",
        "--no-progress",
        "--checkpoint-every",
        "50",
        "--threads",
        threads,
    ];
    let run = |name: &str, extra: &[&str]| {
        let mut args: Vec<String> = base.iter().map(|a| a.to_string()).collect();
        for (flag, file) in [("--save", "zrnn"), ("--checkpoint", "ck")] {
            args.push(flag.into());
            args.push(s.path(&format!("{name}.{file}")).to_str().unwrap().into());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut c = Command::new(env!("CARGO_BIN_EXE_zeronn"));
        c.args(&args).env("ZERONN_DATA", &dir);
        c
    };
    let o = run("whole", &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = std::fs::read(s.path("whole.zrnn")).unwrap();
    // Killed (SIGKILL) at a moment drawn from the clock, once it has written a checkpoint.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    for trial in 0..2u32 {
        let name = format!("killed{trial}");
        let ck = s.path(&format!("{name}.ck"));
        let mut child = run(&name, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !ck.exists() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let wait = (nanos / 1000).wrapping_mul(trial + 7) % 400;
        std::thread::sleep(std::time::Duration::from_millis(wait as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        let o = run(&name, &["--resume", ck.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let resumed = std::fs::read(s.path(&format!("{name}.zrnn"))).unwrap();
        eprintln!("trial {trial}: killed after {wait} ms, resumed");
        assert!(
            resumed == whole,
            "trial {trial}: resumed parameters differ from the whole run's"
        );
    }
    // A checkpoint of other settings is refused, saying so.
    let mut c = run(
        "other",
        &["--resume", s.path("killed0.ck").to_str().unwrap()],
    );
    c.args(["--lr", "0.01"]);
    let o = c.output().unwrap();
    assert_clean_failure(&o, "the checkpoint is of another run");
}

/// The `(correct/total)` of an accuracy line.
fn counted(line: &str) -> String {
    line[line.find('(').unwrap()..line.find(')').unwrap() + 1].to_string()
}

/// The correct count of `quantize`'s line that starts with `prefix`.
fn correct_of(out: &str, prefix: &str) -> usize {
    let line = out.lines().find(|l| l.starts_with(prefix)).unwrap();
    let paren = &line[line.find('(').unwrap() + 1..];
    paren[..paren.find('/').unwrap()].parse().unwrap()
}

/// How many images `quantize` found with the same class in int8 as in f32.
fn same_class(out: &str) -> usize {
    out.split("the same class as f32 on ")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .parse()
        .unwrap()
}

/// `zeronn quantize` on the chapter 5 net and on a chapter 6 net with BatchNorm and Dropout
/// (short runs): the int8 model loses at most 0.5 points of test accuracy (the bound)
/// and mostly agrees with the f32 one; its weights take about a quarter of the bytes.
#[test]
fn quantize_loses_at_most_half_a_point_of_accuracy() {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new("quantize");
    let nets: [&[&str]; 2] = [
        &["--iters", "2000"],
        &[
            "--iters",
            "1200",
            "--hidden",
            "100,100",
            "--batch-norm",
            "--dropout",
            "0.1",
            "--optimizer",
            "adam",
            "--weight-init-std",
            "he",
        ],
    ];
    for (k, net) in nets.iter().enumerate() {
        let m = s.path(&format!("m{k}.zrnn"));
        let mut args = vec!["train", "--seed", "1", "--no-progress", "--save"];
        args.push(m.to_str().unwrap());
        args.extend_from_slice(net);
        let o = zeronn(&args, Some(&dir));
        assert!(o.status.success(), "{}", stderr(&o));
        let q = s.path(&format!("m{k}-int8.zrnn"));
        let o = zeronn(
            &[
                "quantize",
                "--model",
                m.to_str().unwrap(),
                "--out",
                q.to_str().unwrap(),
            ],
            Some(&dir),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        // The file: about a quarter of the f32 model's bytes (under 30 %), and `zeronn eval` gives the
        // accuracy `quantize` reported.
        let (f32_len, int8_len) = (
            std::fs::metadata(&m).unwrap().len(),
            std::fs::metadata(&q).unwrap().len(),
        );
        assert!(int8_len * 10 < f32_len * 3, "{int8_len} against {f32_len}");
        let e = zeronn(&["eval", "--model", q.to_str().unwrap()], Some(&dir));
        assert!(e.status.success(), "{}", stderr(&e));
        let int8_line = out.lines().find(|l| l.starts_with("int8")).unwrap();
        assert_eq!(counted(&stdout(&e)), counted(int8_line), "{}", stdout(&e));
        // `eval --f32` prints quantize's two accuracy lines, and refuses another net's model.
        let e = zeronn(
            &[
                "eval",
                "--model",
                q.to_str().unwrap(),
                "--f32",
                m.to_str().unwrap(),
            ],
            Some(&dir),
        );
        assert!(e.status.success(), "{}", stderr(&e));
        let two = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("f32 test") || l.starts_with("int8 test"))
                .map(String::from)
                .collect()
        };
        assert_eq!(two(&stdout(&e)), two(&out));
        assert_eq!(two(&out).len(), 2, "{out}");
        if k == 1 {
            let other = s.path("m0.zrnn");
            let e = zeronn(
                &[
                    "eval",
                    "--model",
                    q.to_str().unwrap(),
                    "--f32",
                    other.to_str().unwrap(),
                ],
                Some(&dir),
            );
            assert!(!e.status.success());
            assert!(stderr(&e).contains("their layers differ"), "{}", stderr(&e));
        }
        if k == 0 {
            // The Cortex-M layout: the same int8 model, its weights in another order.
            let q2 = s.path("m0-int8-cortex-m.zrnn");
            let o2 = zeronn(
                &[
                    "quantize",
                    "--model",
                    m.to_str().unwrap(),
                    "--out",
                    q2.to_str().unwrap(),
                    "--layout",
                    "cortex-m",
                ],
                Some(&dir),
            );
            assert!(o2.status.success(), "{}", stderr(&o2));
            let line2 = stdout(&o2);
            let line2 = line2.lines().find(|l| l.starts_with("int8")).unwrap();
            assert_eq!(line2, int8_line);
            let e2 = zeronn(
                &[
                    "eval",
                    "--model",
                    q2.to_str().unwrap(),
                    "--time-passes",
                    "1",
                ],
                Some(&dir),
            );
            assert!(e2.status.success(), "{}", stderr(&e2));
            let out2 = stdout(&e2);
            let acc2 = out2
                .lines()
                .find(|l| l.starts_with("test accuracy"))
                .unwrap();
            assert_eq!(counted(acc2), counted(int8_line));
            // The timing line (a pass over the training and the test images), no threshold.
            assert!(
                stdout(&e2).contains("evaluation pass over 70000 images: "),
                "{}",
                stdout(&e2)
            );
            assert_ne!(std::fs::read(&q).unwrap(), std::fs::read(&q2).unwrap());
            // The f32 model's pass too.
            let e3 = zeronn(
                &["eval", "--model", m.to_str().unwrap(), "--time-passes", "1"],
                Some(&dir),
            );
            assert!(e3.status.success(), "{}", stderr(&e3));
            assert!(stdout(&e3).contains("evaluation pass over 70000 images: "));
        }
        let (f, q) = (
            correct_of(&out, "f32 test accuracy"),
            correct_of(&out, "int8 test accuracy"),
        );
        assert!(f > 9000, "{out}");
        assert!(q + 50 >= f, "int8 {q} against f32 {f} of 10000: {out}");
        assert!(same_class(&out) >= 9900, "{out}");
        assert!(out.contains("ranges from 300 training images"), "{out}");
    }
    // A net int8 does not take yet is an error naming the layer.
    let m = s.path("sigmoid.zrnn");
    let o = zeronn(
        &[
            "train",
            "--iters",
            "10",
            "--activation",
            "sigmoid",
            "--no-progress",
            "--save",
            m.to_str().unwrap(),
        ],
        Some(&dir),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = zeronn(&["quantize", "--model", m.to_str().unwrap()], Some(&dir));
    assert_clean_failure(
        &o,
        "layer 2 (Sigmoid): int8 takes nets of Affine, Convolution",
    );
}

/// `zeronn quantize` on the conv nets (short runs): SimpleConvNet loses at most 0.3 points of
/// test accuracy (the bound for conv nets) and its int8 file is about a quarter of
/// the f32 one; DeepConvNet (3×3 convolutions padded by 1) quantizes and evaluates the same
/// way, and `zeronn eval` counts what `quantize` reported for both.
#[test]
fn quantize_takes_conv_nets() {
    let Some(dir) = mnist_dir() else { return };
    let s = Scratch::new("quantize-conv");
    let nets: [(&str, &str, Option<&str>); 2] = [
        ("simple-convnet", "300", None),
        ("deep-convnet", "30", Some("1000")),
    ];
    for (preset, iters, limit) in nets {
        let m = s.path(&format!("{preset}.zrnn"));
        let o = zeronn(
            &[
                "train",
                "--preset",
                preset,
                "--iters",
                iters,
                "--seed",
                "1",
                "--no-progress",
                "--save",
                m.to_str().unwrap(),
            ],
            Some(&dir),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let q = s.path(&format!("{preset}-int8.zrnn"));
        let mut args = vec![
            "quantize",
            "--model",
            m.to_str().unwrap(),
            "--out",
            q.to_str().unwrap(),
        ];
        if let Some(n) = limit {
            args.extend(["--limit", n]);
        }
        let o = zeronn(&args, Some(&dir));
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let int8_line = out.lines().find(|l| l.starts_with("int8")).unwrap();
        let mut eval = vec!["eval", "--model", q.to_str().unwrap()];
        if let Some(n) = limit {
            eval.extend(["--limit", n]);
        }
        let e = zeronn(&eval, Some(&dir));
        assert!(e.status.success(), "{}", stderr(&e));
        assert_eq!(counted(&stdout(&e)), counted(int8_line), "{}", stdout(&e));
        let (f, i) = (
            correct_of(&out, "f32 test accuracy"),
            correct_of(&out, "int8 test accuracy"),
        );
        if preset == "simple-convnet" {
            assert!(f > 9300, "{out}");
            assert!(i + 30 >= f, "int8 {i} against f32 {f} of 10000: {out}");
            let (f32_len, int8_len) = (
                std::fs::metadata(&m).unwrap().len(),
                std::fs::metadata(&q).unwrap().len(),
            );
            assert!(int8_len * 10 < f32_len * 3, "{int8_len} against {f32_len}");
        } else {
            // 30 steps: not trained far, but int8 follows f32 on most images.
            assert!(same_class(&out) >= 950, "{out}");
            assert!(f > 300, "{out}");
        }
    }
}
