//! The book's net end to end: one training step at batch 100 (the fused `train_step`, and
//! `gradient` + `Sgd::update` side by side), an evaluation of 1000 images, and the forward pass
//! of one image, for every heap-free backend available:
//! `cargo bench --workspace --bench train`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use zeronn::gemm::Backend;
use zeronn::random::{self, seeded};
use zeronn::{Sgd, TwoLayerNet, TwoLayerShape};

const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);

fn backends() -> Vec<Backend> {
    [Backend::Avx512, Backend::Avx2, Backend::Portable]
        .into_iter()
        .filter(|b| b.is_available())
        .collect()
}

fn data(n: usize) -> (Vec<f32>, Vec<u8>) {
    let mut r = seeded(5);
    let x = (0..n * 784)
        .map(|_| random::uniform01(&mut r) as f32)
        .collect();
    let t = (0..n).map(|_| random::index(&mut r, 10) as u8).collect();
    (x, t)
}

fn net(backend: Backend) -> TwoLayerNet<f32, Vec<f32>> {
    let mut net = TwoLayerNet::new(SHAPE, vec![0f32; SHAPE.param_len()])
        .unwrap()
        .with_backend(backend)
        .unwrap();
    net.init_params(&mut seeded(1), 0.01);
    net
}

fn training_step(c: &mut Criterion) {
    let (x, t) = data(100);
    let mut g = c.benchmark_group("training step, batch 100");
    for backend in backends() {
        let mut ws = vec![0f32; SHAPE.workspace_len(100)];
        let sgd = Sgd::new(0.1f32);
        let mut n = net(backend);
        g.bench_function(
            BenchmarkId::new("train_step (fused)", backend.name()),
            |b| b.iter(|| n.train_step(black_box(&x), &t, &sgd, &mut ws).unwrap()),
        );
        let mut grads = vec![0f32; SHAPE.param_len()];
        g.bench_function(BenchmarkId::new("gradient + update", backend.name()), |b| {
            b.iter(|| {
                n.gradient(black_box(&x), &t, &mut grads, &mut ws).unwrap();
                sgd.update(n.params_mut(), &grads).unwrap();
            })
        });
    }
    g.finish();
}

fn evaluation(c: &mut Criterion) {
    let (x, t) = data(1000);
    let mut g = c.benchmark_group("evaluation of 1000 images");
    for backend in backends() {
        let n = net(backend);
        let mut ws = vec![0f32; SHAPE.workspace_len(250)];
        g.bench_function(backend.name(), |b| {
            b.iter(|| {
                let mut correct = 0;
                for (xc, tc) in x.chunks(250 * 784).zip(t.chunks(250)) {
                    correct += n.count_correct(black_box(xc), tc, &mut ws).unwrap();
                }
                correct
            })
        });
    }
    g.finish();
}

fn forward_one_image(c: &mut Criterion) {
    let (x, _) = data(1);
    let mut g = c.benchmark_group("forward of one image");
    for backend in backends() {
        let n = net(backend);
        let mut ws = vec![0f32; SHAPE.workspace_len(1)];
        g.bench_function(backend.name(), |b| {
            b.iter(|| n.predict(black_box(&x), &mut ws).unwrap()[0])
        });
    }
    g.finish();
}

criterion_group!(benches, training_step, evaluation, forward_one_image);
criterion_main!(benches);
