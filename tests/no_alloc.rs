//! A training step (gradient + update) and a prediction allocate nothing: a counting global
//! allocator watches them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use zeronn::gemm::Backend;
use zeronn::random::{self, seeded};
use zeronn::{Sgd, TwoLayerNet, TwoLayerShape};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn a_training_step_allocates_nothing() {
    const SHAPE: TwoLayerShape = TwoLayerShape::new(784, 50, 10);
    const BATCH: usize = 100;
    let mut rng = seeded(1);
    let x: Vec<f32> = (0..BATCH * 784)
        .map(|_| random::uniform01(&mut rng) as f32)
        .collect();
    let t: Vec<u8> = (0..BATCH)
        .map(|_| random::index(&mut rng, 10) as u8)
        .collect();
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
