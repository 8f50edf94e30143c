//! Skipping blank pixels changes nothing but rounding: the compact step computes the same sums
//! as the dense `train_step` (the same terms; only the lane-parallel remainder columns group
//! them differently), and leaves the rows of `W1` for blank pixels exactly as they were.

use zeronn::gemm::Backend;
use zeronn::random::{self, Rng, seeded};
use zeronn::{Sgd, TwoLayerNet, TwoLayerShape};
use zeronn_tools::mnist::Split;
use zeronn_tools::sparse::{self, Compact};

/// `n` random 28×28 byte images whose outer `border` pixels are blank, like MNIST digits.
fn images(n: usize, border: usize) -> Split {
    let mut rng = seeded(3);
    let mut raw = vec![0u8; n * 784];
    for (k, p) in raw.iter_mut().enumerate() {
        let (r, c) = ((k % 784) / 28, k % 28);
        let inside = (border..28 - border).contains(&r) && (border..28 - border).contains(&c);
        if inside && rng.next_u32().is_multiple_of(3) {
            *p = (rng.next_u32() % 256) as u8;
        }
    }
    let t = (0..n).map(|_| random::index(&mut rng, 10) as u8).collect();
    Split {
        raw,
        floats: Vec::new(),
        t,
        pixels: 784,
    }
}

#[test]
fn compact_step_equals_the_dense_step() {
    let data = images(400, 4);
    let shape = TwoLayerShape::new(784, 50, 10);
    for backend in [Backend::Avx512, Backend::Avx2, Backend::Naive] {
        if !backend.is_available() {
            eprintln!("skipped: {backend} is not available here");
            continue;
        }
        let make = || {
            let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()])
                .unwrap()
                .with_backend(backend)
                .unwrap();
            net.init_params(&mut seeded(1), 0.05);
            net
        };
        let (mut dense, mut compact_net) = (make(), make());
        let sgd = Sgd::new(0.1f32);
        let mut ws = vec![0.0f32; shape.workspace_len(100)];
        let (mut x, mut t) = (vec![0.0f32; 100 * 784], vec![0u8; 100]);
        let mut cx = Vec::new();
        let mut compact = Compact::new();
        let mut rng = seeded(9);
        let mut idx = vec![0usize; 100];
        for step in 0..4 {
            random::choice(&mut rng, data.len(), &mut idx);
            data.gather(&idx, &mut x, &mut t);
            let a = dense.train_step(&x, &t, &sgd, &mut ws).unwrap();
            let b = sparse::train_step(
                &mut compact,
                &mut compact_net,
                &data,
                &idx,
                &mut cx,
                &mut t,
                &sgd,
                &mut ws,
            )
            .unwrap();
            assert!(
                compact.len() < 784 - 100,
                "the border is blank: {} active",
                compact.len()
            );
            assert!(
                (a - b).abs() <= 1e-6 * a.abs(),
                "{backend} step {step}: loss {a} vs {b}"
            );
            for (i, (p, q)) in dense.params().iter().zip(compact_net.params()).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-6 * (1.0 + p.abs()),
                    "{backend} step {step}: parameter {i}: {p} vs {q}"
                );
            }
        }
    }
}

#[test]
fn rows_of_blank_pixels_stay_exactly_as_they_were() {
    let data = images(100, 4);
    let shape = TwoLayerShape::new(784, 50, 10);
    let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(1), 0.05);
    let before = net.tensor("W1").unwrap().to_vec();
    let (mut cx, mut t) = (Vec::new(), vec![0u8; 100]);
    let mut ws = vec![0.0f32; shape.workspace_len(100)];
    let idx: Vec<usize> = (0..100).collect();
    let mut compact = Compact::new();
    sparse::train_step(
        &mut compact,
        &mut net,
        &data,
        &idx,
        &mut cx,
        &mut t,
        &Sgd::new(0.1),
        &mut ws,
    )
    .unwrap();
    let after = net.tensor("W1").unwrap();
    for f in 0..784 {
        let blank = idx.iter().all(|&r| data.image_raw(r)[f] == 0);
        let same = before[f * 50..(f + 1) * 50] == after[f * 50..(f + 1) * 50];
        assert_eq!(
            blank, same,
            "pixel {f}: blank {blank}, row unchanged {same}"
        );
    }
}

#[test]
fn a_blank_batch_is_a_valid_step() {
    let data = Split {
        raw: vec![0u8; 10 * 784],
        floats: Vec::new(),
        t: vec![3; 10],
        pixels: 784,
    };
    let shape = TwoLayerShape::new(784, 5, 10);
    let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(2), 0.1);
    let w1 = net.tensor("W1").unwrap().to_vec();
    let mut ws = vec![0.0f32; shape.workspace_len(10)];
    let (mut cx, mut t) = (Vec::new(), vec![0u8; 10]);
    let mut compact = Compact::new();
    let idx: Vec<usize> = (0..10).collect();
    let loss = sparse::train_step(
        &mut compact,
        &mut net,
        &data,
        &idx,
        &mut cx,
        &mut t,
        &Sgd::new(0.1),
        &mut ws,
    )
    .unwrap();
    assert!(loss.is_finite());
    assert_eq!(
        net.tensor("W1").unwrap(),
        &w1[..],
        "blank inputs leave W1 as it was"
    );
    assert_ne!(
        net.tensor("b2").unwrap(),
        &[0.0; 10][..],
        "the biases still learn"
    );
}

/// The active features of a range and the compacted rows, against a plain scalar reference,
/// on images with pixels on everywhere (also in the last, partial 64-pixel word, which is read
/// as the last 64 bytes of the image), for ranges that start and end inside words; the
/// row-at-a-time scan gives the same. MNIST's 784 pixels (a last word of 16) and 100 (36).
#[test]
fn compaction_matches_a_scalar_reference_on_every_range() {
    let mut rng = seeded(9);
    for pixels in [784, 100] {
        let n = 12;
        let raw: Vec<u8> = (0..n * pixels)
            .map(|_| {
                if rng.next_u32().is_multiple_of(4) {
                    (rng.next_u32() % 255 + 1) as u8
                } else {
                    0
                }
            })
            .collect();
        let data = Split {
            raw,
            floats: Vec::new(),
            t: vec![0; n],
            pixels,
        };
        let rows = [3usize, 0, 11, 7, 7];
        let mut compact = Compact::new();
        let ranges = [
            (0, 784),
            (0, 371),
            (371, 784),
            (64, 128),
            (700, 784),
            (770, 771),
            (0, 100),
            (70, 100),
            (99, 100),
        ];
        for (f0, f1) in ranges.into_iter().filter(|&(_, f1)| f1 <= pixels) {
            let expect: Vec<usize> = (f0..f1)
                .filter(|&f| rows.iter().any(|&r| data.image_raw(r)[f] != 0))
                .collect();
            compact.find_active_in(&data, rows.iter().copied(), f0, f1);
            assert_eq!(compact.active(), &expect[..], "{pixels}: range {f0}..{f1}");
            compact.begin_scan(&data);
            for &r in &rows {
                compact.scan_row(&data, r, f0, f1);
            }
            compact.end_scan(f0, f1);
            assert_eq!(
                compact.active(),
                &expect[..],
                "{pixels}: range {f0}..{f1}, row by row"
            );
            for &r in &rows {
                let img = data.image_raw(r);
                let mut out = vec![-1.0f32; expect.len()];
                compact.compact_row(&data, r, &mut out);
                let want: Vec<f32> = expect.iter().map(|&f| img[f] as f32 / 255.0).collect();
                assert_eq!(out, want, "{pixels}: row {r}, range {f0}..{f1}");
                let mut bytes = vec![9u8];
                compact.compact_row_bytes(&data, r, &mut bytes);
                let want: Vec<u8> = std::iter::once(9)
                    .chain(expect.iter().map(|&f| img[f]))
                    .collect();
                assert_eq!(bytes, want, "{pixels}: row {r} as bytes, range {f0}..{f1}");
            }
        }
    }
}

/// Rows `r0..=r1` and columns `c0..=c1` of a 28×28 image: `((r0, r1), (c0, c1))`.
type Box = ((usize, usize), (usize, usize));

/// 28×28 images each blank but for its rectangle, filled.
fn boxes(list: &[Box]) -> Split {
    let mut raw = vec![0u8; list.len() * 784];
    for (img, &((r0, r1), (c0, c1))) in raw.chunks_exact_mut(784).zip(list) {
        for r in r0..=r1 {
            for c in c0..=c1 {
                img[r * 28 + c] = 200;
            }
        }
    }
    Split {
        raw,
        floats: Vec::new(),
        t: vec![0; list.len()],
        pixels: 784,
    }
}

/// The evaluation order: by left column, top row, right column, bottom row; equal boxes in
/// file order; blank images last. Sizes that are not a square are one row of pixels.
#[test]
fn the_bounding_box_order_sorts_by_left_top_right_bottom() {
    let mut data = boxes(&[
        ((5, 9), (4, 20)),   // 0: left 4
        ((0, 27), (0, 27)),  // 1: left 0, top 0
        ((3, 3), (4, 4)),    // 2: left 4, top 3
        ((5, 9), (4, 20)),   // 3: as 0
        ((5, 9), (4, 27)),   // 4: as 0, wider
        ((5, 12), (4, 20)),  // 5: as 0, taller
        ((0, 0), (0, 0)),    // 6: left 0, top 0, one pixel
        ((27, 27), (2, 27)), // 7: left 2
    ]);
    // 8: blank, 9: the last pixel only.
    data.raw.extend(std::iter::repeat_n(0, 784 * 2));
    data.raw[9 * 784 + 783] = 1;
    data.t.extend([0, 0]);
    for threads in [1, 2, 3] {
        assert_eq!(
            sparse::bbox_order(&data, threads),
            [6, 1, 7, 2, 0, 3, 5, 4, 9, 8],
            "{threads} threads"
        );
    }
    // 10 pixels in one row: by first and last non-zero pixel.
    let row = |on: &[usize]| {
        (0..10)
            .map(|f| u8::from(on.contains(&f)))
            .collect::<Vec<_>>()
    };
    let data = Split {
        floats: Vec::new(),
        raw: [
            row(&[3, 4]),
            row(&[2, 9]),
            row(&[]),
            row(&[3]),
            row(&[2, 5]),
        ]
        .concat(),
        t: vec![0; 5],
        pixels: 10,
    };
    assert_eq!(sparse::bbox_order(&data, 1), [4, 1, 3, 0, 2]);
    // 150 pixels in one row (more than a 64-pixel word): extents that cross words.
    let row = |on: &[usize]| {
        (0..150)
            .map(|f| u8::from(on.contains(&f)))
            .collect::<Vec<_>>()
    };
    let data = Split {
        raw: [row(&[70, 149]), row(&[63, 64]), row(&[70, 128]), row(&[5])].concat(),
        floats: Vec::new(),
        t: vec![0; 4],
        pixels: 150,
    };
    assert_eq!(sparse::bbox_order(&data, 2), [3, 1, 2, 0]);
}

/// The evaluation set counts exactly the images the dense net gets right, whatever the
/// order it takes them in, on one thread or several: with every label set to the dense net's
/// answer all count, with every label off by one none does.
#[test]
fn an_evaluation_set_counts_what_the_dense_net_gets_right() {
    use zeronn_tools::sparse::{EvalScratch, EvalSet};
    let mut rng = seeded(5);
    let n = 150;
    // Digits of random extent, so that the order is far from the file's.
    let list: Vec<_> = (0..n)
        .map(|_| {
            let (r0, c0) = (random::index(&mut rng, 20), random::index(&mut rng, 20));
            let (r1, c1) = (
                r0 + random::index(&mut rng, 8),
                c0 + random::index(&mut rng, 8),
            );
            ((r0, r1), (c0, c1))
        })
        .collect();
    let mut data = boxes(&list);
    for (k, p) in data.raw.iter_mut().enumerate() {
        if *p != 0 {
            *p = (k * 37 % 255 + 1) as u8;
        }
    }
    let order = sparse::bbox_order(&data, 1);
    assert_ne!(order, (0..n).collect::<Vec<_>>());
    let shape = TwoLayerShape::new(784, 20, 10);
    let mut net = TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()]).unwrap();
    net.init_params(&mut seeded(6), 0.5);
    let x: Vec<f32> = data.raw.iter().map(|&p| p as f32 / 255.0).collect();
    let mut ws = vec![0.0f32; shape.workspace_len(n)];
    let scores = net.predict(&x, &mut ws).unwrap().to_vec();
    let answers: Vec<u8> = scores
        .chunks_exact(10)
        .map(|s| (0..10).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap() as u8)
        .collect();
    for (shift, expect) in [(0u8, n), (1, 0)] {
        data.t = answers.iter().map(|&a| (a + shift) % 10).collect();
        for (chunk, threads) in [(7, 1), (16, 3), (n, 2)] {
            let set = EvalSet::new_on(&data, chunk, threads);
            let mut ws = vec![0.0f32; shape.workspace_len(chunk)];
            let got = set
                .count_correct(
                    &net,
                    (0, set.chunks()),
                    &mut EvalScratch::default(),
                    &mut ws,
                )
                .unwrap();
            assert_eq!(
                got, expect,
                "labels +{shift}, chunks of {chunk}, {threads} threads"
            );
        }
    }
}
