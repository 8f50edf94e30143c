//! Matrix multiply in GFLOP/s (criterion's "elem/s" is FLOP/s here: 2·m·k·n per product), on a
//! ladder of square sizes and on the exact shapes of the book's training step, for every backend
//! available: `cargo bench --workspace --bench gemm` (the workspace build turns on runtime CPU
//! detection and the matrixmultiply backend). `zeronn bench` prints the same as a table with
//! the fraction of the measured FMA peak.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zeronn::gemm::{self, Backend, MatMut, MatRef, PACK_LEN};
use zeronn::random::{self, seeded};

fn backends() -> Vec<Backend> {
    [
        Backend::Avx512,
        Backend::Avx2,
        Backend::Portable,
        Backend::MatrixMultiply,
    ]
    .into_iter()
    .filter(|b| b.is_available())
    .collect()
}

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut r = seeded(seed);
    (0..n).map(|_| random::uniform01(&mut r) as f32).collect()
}

/// C(m×n) = A·B with A stored transposed when `a_t`, B when `b_t`.
fn bench_shape(
    c: &mut Criterion,
    group: &str,
    label: &str,
    (m, k, n): (usize, usize, usize),
    a_t: bool,
    b_t: bool,
) {
    let a = uniform(m * k, 1);
    let b = uniform(k * n, 2);
    let mut out = vec![0f32; m * n];
    let mut pack = vec![0f32; PACK_LEN];
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
    for backend in backends() {
        g.bench_with_input(
            BenchmarkId::new(backend.name(), label),
            &(m, k, n),
            |bench, _| {
                let am = if a_t {
                    MatRef::row_major(&a, k, m).unwrap().t()
                } else {
                    MatRef::row_major(&a, m, k).unwrap()
                };
                let bm = if b_t {
                    MatRef::row_major(&b, n, k).unwrap().t()
                } else {
                    MatRef::row_major(&b, k, n).unwrap()
                };
                bench.iter(|| {
                    let cm = MatMut::row_major(&mut out, m, n).unwrap();
                    gemm::gemm(
                        backend,
                        1.0,
                        black_box(am),
                        black_box(bm),
                        0.0,
                        cm,
                        &mut pack,
                    )
                    .unwrap();
                });
            },
        );
    }
    g.finish();
}

fn ladder(c: &mut Criterion) {
    for s in [32, 64, 128, 256, 512] {
        bench_shape(c, "gemm square", &s.to_string(), (s, s, s), false, false);
    }
}

fn training_shapes(c: &mut Criterion) {
    bench_shape(
        c,
        "gemm X·W1 (forward)",
        "100x784x50",
        (100, 784, 50),
        false,
        false,
    );
    bench_shape(
        c,
        "gemm Xt·dA1 (dW1)",
        "784x100x50",
        (784, 100, 50),
        true,
        false,
    );
    bench_shape(
        c,
        "gemm dY·W2t (dZ1)",
        "100x10x50",
        (100, 10, 50),
        false,
        true,
    );
    bench_shape(
        c,
        "gemm X·W1 (evaluation)",
        "1000x784x50",
        (1000, 784, 50),
        false,
        false,
    );
    bench_shape(
        c,
        "gemm x·W1 (one image)",
        "1x784x50",
        (1, 784, 50),
        false,
        false,
    );
}

criterion_group!(benches, training_shapes, ladder);
criterion_main!(benches);
