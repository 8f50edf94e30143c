//! A training step (gradient + update, the fused SGD step, any optimizer applied during
//! backward on a net with BatchNorm and Dropout) and a prediction allocate nothing: a counting
//! global allocator watches them, counting each thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use zeronn::gemm::Backend;
use zeronn::random::{self, seeded};
use zeronn::{Sgd, TwoLayerNet, TwoLayerShape};

struct Counting;

thread_local! {
    /// Allocations made by this thread (the tests run on threads of their own, in parallel).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // A `Cell<usize>` has no destructor: no allocation, and none late in a thread's life.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// A batch of `n` random images (784 values in [0, 1)) and labels.
fn batch(seed: u64, n: usize) -> (Vec<f32>, Vec<u8>) {
    let mut rng = seeded(seed);
    let x = (0..n * 784)
        .map(|_| random::uniform01(&mut rng) as f32)
        .collect();
    let t = (0..n).map(|_| random::index(&mut rng, 10) as u8).collect();
    (x, t)
}

#[test]
fn a_training_step_allocates_nothing() {
    const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);
    const BATCH: usize = 100;
    let (x, t) = batch(1, BATCH);
    let mut grads = vec![0.0f32; SHAPE.param_len()];
    let sgd = Sgd::new(0.1f32);
    for backend in [
        Backend::Auto,
        Backend::Portable,
        Backend::Avx2,
        Backend::Avx512,
    ]
    .into_iter()
    .filter(|b| b.is_available())
    {
        for ws_len in [SHAPE.workspace_len(BATCH), SHAPE.min_workspace_len(BATCH)] {
            let mut net = TwoLayerNet::new(SHAPE, vec![0.0f32; SHAPE.param_len()])
                .unwrap()
                .with_backend(backend)
                .unwrap();
            net.init_params(&mut seeded(2), 0.01);
            let mut ws = vec![0.0f32; ws_len];
            let mut losses = [0.0f32; 3];
            let n = allocations_during(|| {
                for loss in &mut losses {
                    *loss = net.gradient(&x, &t, &mut grads, &mut ws).unwrap();
                    sgd.update(net.params_mut(), &grads).unwrap();
                }
                let _ = net.predict(&x[..784], &mut ws).unwrap();
                net.train_step(&x, &t, &sgd, &mut ws).unwrap();
            });
            assert_eq!(n, 0, "{backend}, workspace {ws_len}: {n} allocations");
            assert!(losses[2] < losses[0], "the steps did something: {losses:?}");
        }
    }
}

#[test]
fn a_step_of_any_net_and_optimizer_allocates_nothing() {
    use zeronn::optimizer::{AnyOptimizer, Optimizer, OptimizerKind};
    use zeronn::{Activation, MlpOptions, Net, NetSpec, WeightInit};
    let options = MlpOptions {
        activation: Activation::Relu,
        batch_norm: true,
        dropout: Some(0.1),
    };
    let spec = NetSpec::mlp(784, &[64, 32], 10, options);
    const BATCH: usize = 32;
    let (x, t) = batch(3, BATCH);
    let active: Vec<usize> = (0..784).collect();
    for kind in OptimizerKind::ALL {
        let mut net = Net::with_state(
            spec,
            vec![0.0f32; spec.param_len()],
            vec![0.0f32; spec.state_len()],
        )
        .unwrap()
        .with_weight_decay(0.001)
        .unwrap();
        net.init(&mut seeded(4), WeightInit::He);
        let mut opt = AnyOptimizer::<f32>::new(kind, 0.01).unwrap();
        let mut state = vec![0.0f32; opt.state_len(spec.param_len())];
        let mut scratch = vec![0.0f32; spec.apply_scratch_len()];
        let mut ws = vec![0.0f32; spec.workspace_len(BATCH)];
        let n = allocations_during(|| {
            for _ in 0..2 {
                net.step_with(&x, None, &t, &mut opt, &mut state, &mut scratch, &mut ws)
                    .unwrap();
                net.step_with(
                    &x,
                    Some(&active),
                    &t,
                    &mut opt,
                    &mut state,
                    &mut scratch,
                    &mut ws,
                )
                .unwrap();
            }
            let _ = net.predict(&x[..784], &mut ws).unwrap();
        });
        assert_eq!(n, 0, "{}: {n} allocations", kind.name());
    }
}
