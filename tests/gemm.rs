//! The blocked gemm held against the naive reference: exact on small-integer data for every
//! size 0..=20, edge tiles, transposes, α/β cases and NaN-filled C when β = 0.

mod common;

use common::{rng, small_ints, uniform, uniform_f32};
use zeronn::gemm::{self, Backend, KC, MatMut, MatRef, PACK_LEN};

/// One operand's layout: row-major, column-major (a transpose), or row-major with padding.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Row,
    Col,
    PaddedRow,
}

const LAYOUTS: [Layout; 3] = [Layout::Row, Layout::Col, Layout::PaddedRow];

/// (data length, rs, cs) for a rows × cols matrix.
fn strides(l: Layout, rows: usize, cols: usize) -> (usize, usize, usize) {
    match l {
        Layout::Row => (rows * cols, cols, 1),
        Layout::Col => (rows * cols, 1, rows),
        Layout::PaddedRow => ((rows * (cols + 3)).max(1), cols + 3, 1),
    }
}

/// Runs `backend` and the naive reference on the same problem and returns both C buffers.
#[allow(clippy::too_many_arguments)]
fn both<T: zeronn::Float>(
    backend: Backend,
    (m, k, n): (usize, usize, usize),
    (la, lb, lc): (Layout, Layout, Layout),
    alpha: T,
    beta: T,
    a: &[T],
    b: &[T],
    c0: &[T],
    pack: usize,
) -> (Vec<T>, Vec<T>) {
    let (_, rsa, csa) = strides(la, m, k);
    let (_, rsb, csb) = strides(lb, k, n);
    let (_, rsc, csc) = strides(lc, m, n);
    let am = MatRef::new(a, m, k, rsa, csa).unwrap();
    let bm = MatRef::new(b, k, n, rsb, csb).unwrap();
    let mut c_fast = c0.to_vec();
    let mut c_ref = c0.to_vec();
    let mut packbuf = vec![T::ZERO; pack];
    gemm::gemm(
        backend,
        alpha,
        am,
        bm,
        beta,
        MatMut::new(&mut c_fast, m, n, rsc, csc).unwrap(),
        &mut packbuf,
    )
    .unwrap();
    gemm::gemm(
        Backend::Naive,
        alpha,
        am,
        bm,
        beta,
        MatMut::new(&mut c_ref, m, n, rsc, csc).unwrap(),
        &mut [],
    )
    .unwrap();
    (c_fast, c_ref)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Equal as numbers (so -0 == +0: a different summation order may flip the sign of an
/// exact zero), with NaN equal to NaN (untouched padding).
fn same_values(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

fn check_exact_small_ints(backend: Backend, sizes: &[(usize, usize, usize)], pack: usize) {
    let mut r = rng(1);
    for &(m, k, n) in sizes {
        for la in LAYOUTS {
            for lb in LAYOUTS {
                let lc = LAYOUTS[(m + k + n) % 3];
                let a = small_ints(&mut r, strides(la, m, k).0);
                let b = small_ints(&mut r, strides(lb, k, n).0);
                for (alpha, beta) in [
                    (1.0f32, 0.0f32),
                    (1.0, 1.0),
                    (2.0, -1.0),
                    (-0.5, 0.0),
                    (0.0, 3.0),
                ] {
                    let c0 = if beta == 0.0 {
                        vec![f32::NAN; strides(lc, m, n).0]
                    } else {
                        small_ints(&mut r, strides(lc, m, n).0)
                    };
                    let (fast, reference) = both(
                        backend,
                        (m, k, n),
                        (la, lb, lc),
                        alpha,
                        beta,
                        &a,
                        &b,
                        &c0,
                        pack,
                    );
                    // Padding between rows of C must be left as it was.
                    assert!(
                        same_values(&fast, &reference),
                        "{backend} m={m} k={k} n={n} {la:?} {lb:?} {lc:?} alpha={alpha} beta={beta}"
                    );
                    if beta == 0.0 && m * n > 0 && matches!(lc, Layout::Row) {
                        assert!(fast.iter().all(|x| !x.is_nan()), "C was read when beta = 0");
                    }
                }
            }
        }
    }
}

fn every_size_to_20() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for m in 0..=20 {
        for k in 0..=20 {
            for n in 0..=20 {
                v.push((m, k, n));
            }
        }
    }
    v
}

/// Sizes around every tile and block edge, and the training shapes of the book's net.
fn edge_sizes() -> Vec<(usize, usize, usize)> {
    vec![
        (1, 1, 1),
        (4, 256, 8),
        (5, 257, 9),
        (63, 255, 7),
        (64, 256, 256),
        (65, 257, 257),
        (3, 600, 259),
        (130, 513, 17),
        (100, 784, 50),
        (784, 100, 50),
        (100, 50, 10),
        (50, 100, 10),
        (100, 10, 50),
        (1, 784, 50),
    ]
}

#[test]
fn portable_equals_naive_on_every_size_to_20() {
    check_exact_small_ints(Backend::Portable, &every_size_to_20(), PACK_LEN);
}

#[test]
fn portable_equals_naive_on_edge_tiles_and_training_shapes() {
    check_exact_small_ints(Backend::Portable, &edge_sizes(), PACK_LEN);
}

#[test]
fn unpacked_path_equals_naive_on_every_size_to_20() {
    check_exact_small_ints(Backend::Portable, &every_size_to_20(), 0);
}

#[test]
fn small_packing_space_still_gives_exact_results() {
    // Just enough for one sliver pair, and an odd amount in between.
    check_exact_small_ints(Backend::Portable, &edge_sizes(), (4 + 8) * KC);
    check_exact_small_ints(Backend::Portable, &edge_sizes(), 37 * KC + 5);
}

/// The SIMD backends present on this CPU (a note is printed for the others).
fn simd_backends() -> Vec<Backend> {
    [Backend::Avx2, Backend::Avx512]
        .into_iter()
        .filter(|b| {
            let ok = b.is_available();
            if !ok {
                eprintln!("skipped: {b} is not available on this CPU/build");
            }
            ok
        })
        .collect()
}

#[test]
fn simd_equals_naive_on_every_size_to_20() {
    for backend in simd_backends() {
        check_exact_small_ints(backend, &every_size_to_20(), PACK_LEN);
    }
}

#[test]
fn simd_equals_naive_on_edge_tiles_kc_blocks_and_training_shapes() {
    let mut sizes = edge_sizes();
    sizes.extend([
        (7, 127, 65),
        (15, 128, 64),
        (9, 129, 63),
        (13, 257, 130),
        (29, 384, 200),
        // B's panel spread wide enough to be packed, in one k block and in two.
        (40, 600, 450),
        (17, 1030, 260),
        // A single row over several k blocks (SimpleConvNet's first Affine at batch 1).
        (1, 4320, 100),
        (1, 1030, 37),
    ]);
    for backend in simd_backends() {
        check_exact_small_ints(backend, &sizes, PACK_LEN);
        // Without packing space a strided B falls back to the portable kernel: still exact.
        check_exact_small_ints(backend, &sizes[..6], 0);
    }
}

#[test]
fn auto_picks_the_best_available_backend() {
    let b = Backend::Auto.resolve().unwrap();
    if Backend::Avx512.is_available() {
        assert_eq!(b, Backend::Avx512);
    } else if Backend::Avx2.is_available() {
        assert_eq!(b, Backend::Avx2);
    } else {
        assert_eq!(b, Backend::Portable);
    }
}

#[test]
fn epilogue_adds_bias_and_relu_in_every_backend() {
    use zeronn::gemm::{Epilogue, gemm_ex};
    let mut r = rng(5);
    let mut backends = vec![Backend::Naive, Backend::Portable];
    backends.extend(simd_backends());
    for &(m, k, n) in &[
        (1, 1, 1),
        (100, 784, 50),
        (17, 300, 70),
        (6, 3, 16),
        (5, 200, 33),
        // A single row over two k blocks: the bias and the ReLU on the last one only.
        (1, 1500, 70),
    ] {
        let a = small_ints(&mut r, m * k);
        let b = small_ints(&mut r, k * n);
        let bias = small_ints(&mut r, n);
        let c0 = small_ints(&mut r, m * n);
        let am = MatRef::row_major(&a, m, k).unwrap();
        let bm = MatRef::row_major(&b, k, n).unwrap();
        // Reference: naive product, then the epilogue by hand.
        let mut expect = c0.clone();
        gemm::gemm(
            Backend::Naive,
            2.0,
            am,
            bm,
            -1.0,
            MatMut::row_major(&mut expect, m, n).unwrap(),
            &mut [],
        )
        .unwrap();
        for (i, x) in expect.iter_mut().enumerate() {
            *x += bias[i % n];
        }
        let relu: Vec<f32> = expect
            .iter()
            .map(|&x| if x <= 0.0 { 0.0 } else { x })
            .collect();
        for &backend in &backends {
            for (epi, want) in [
                (Epilogue::Bias(&bias[..]), &expect),
                (Epilogue::BiasRelu(&bias[..]), &relu),
            ] {
                let mut c = c0.clone();
                let mut pack = vec![0.0; PACK_LEN];
                gemm_ex(
                    backend,
                    2.0,
                    am,
                    bm,
                    -1.0,
                    MatMut::row_major(&mut c, m, n).unwrap(),
                    &mut pack,
                    epi,
                )
                .unwrap();
                assert!(same_values(&c, want), "{backend} {m}x{k}x{n} {epi:?}");
            }
        }
    }
}

/// The fused ReLU is the portable one exactly: NaN passes through (as `v <= 0` is false for
/// it), and everything at or below zero becomes +0.
#[test]
fn fused_relu_keeps_nan_and_stores_positive_zero() {
    use zeronn::gemm::{Epilogue, gemm_ex};
    let mut backends = vec![Backend::Naive, Backend::Portable];
    backends.extend(simd_backends());
    let (m, k, n) = (16, 4, 37);
    let a = vec![1.0f32; m * k];
    let b = vec![0.0f32; k * n];
    let specials = [
        f32::NAN,
        -0.0,
        -1.5,
        2.5,
        0.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
    ];
    let bias: Vec<f32> = (0..n).map(|j| specials[j % specials.len()]).collect();
    let want: Vec<u32> = (0..m * n)
        .map(|i| match bias[i % n] {
            v if v.is_nan() => f32::NAN.to_bits(),
            v if v <= 0.0 => 0.0f32.to_bits(),
            v => v.to_bits(),
        })
        .collect();
    for &backend in &backends {
        let mut c = vec![0.0f32; m * n];
        let mut pack = vec![0.0; PACK_LEN];
        // α = −1 makes the product −0, so the bias −0 gives a −0 to clamp.
        gemm_ex(
            backend,
            -1.0,
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            0.0,
            MatMut::row_major(&mut c, m, n).unwrap(),
            &mut pack,
            Epilogue::BiasRelu(&bias),
        )
        .unwrap();
        let got: Vec<u32> = c
            .iter()
            .map(|v| {
                if v.is_nan() {
                    f32::NAN.to_bits()
                } else {
                    v.to_bits()
                }
            })
            .collect();
        assert_eq!(got, want, "{backend}");
    }
}

#[test]
fn simd_is_close_to_naive_on_random_floats() {
    let mut r = rng(6);
    for backend in simd_backends() {
        for &(m, k, n) in &[
            (100, 784, 50),
            (784, 100, 50),
            (100, 50, 10),
            (1, 784, 50),
            (33, 1000, 129),
        ] {
            let a = uniform_f32(&mut r, m * k);
            let b = uniform_f32(&mut r, k * n);
            let c0 = uniform_f32(&mut r, m * n);
            let l = (Layout::Row, Layout::Row, Layout::Row);
            let (fast, reference) = both(backend, (m, k, n), l, 1.0f32, 0.5, &a, &b, &c0, PACK_LEN);
            for (x, y) in fast.iter().zip(&reference) {
                assert!(
                    (x - y).abs() <= 2e-5 * (k as f32).sqrt(),
                    "{backend} {m}x{k}x{n}: {x} vs {y}"
                );
            }
        }
    }
}

#[cfg(feature = "matrixmultiply")]
#[test]
fn matrixmultiply_equals_naive_on_small_ints() {
    check_exact_small_ints(Backend::MatrixMultiply, &edge_sizes(), 0);
    check_exact_small_ints(
        Backend::MatrixMultiply,
        &[(7, 5, 3), (0, 3, 2), (3, 0, 2)],
        0,
    );
}

/// On general floats the portable result does not depend on the packing space, and for
/// k ≤ KC it equals the naive loop bit for bit (the same summation order).
#[test]
fn portable_result_is_independent_of_packing_space_on_random_floats() {
    let mut r = rng(2);
    for &(m, k, n) in &[
        (100, 784, 50),
        (784, 100, 50),
        (13, 200, 21),
        (1, 784, 50),
        (70, 600, 300),
    ] {
        let a = uniform_f32(&mut r, m * k);
        let b = uniform_f32(&mut r, k * n);
        let c0 = uniform_f32(&mut r, m * n);
        let l = (Layout::Row, Layout::Row, Layout::Row);
        let full = both(
            Backend::Portable,
            (m, k, n),
            l,
            1.0f32,
            0.5,
            &a,
            &b,
            &c0,
            PACK_LEN,
        )
        .0;
        for pack in [0, 12 * KC, 100 * KC + 3] {
            let other = both(
                Backend::Portable,
                (m, k, n),
                l,
                1.0f32,
                0.5,
                &a,
                &b,
                &c0,
                pack,
            )
            .0;
            assert_eq!(bits(&full), bits(&other), "m={m} k={k} n={n} pack={pack}");
        }
        if k <= KC {
            let (fast, reference) = both(
                Backend::Portable,
                (m, k, n),
                l,
                1.0f32,
                0.5,
                &a,
                &b,
                &c0,
                PACK_LEN,
            );
            assert_eq!(bits(&fast), bits(&reference), "m={m} k={k} n={n}");
        }
    }
}

#[test]
fn f64_portable_matches_naive() {
    let mut r = rng(3);
    for &(m, k, n) in &[(9, 300, 11), (17, 5, 33), (1, 1, 1)] {
        let a = uniform(&mut r, m * k);
        let b = uniform(&mut r, k * n);
        let c0 = vec![f64::NAN; m * n];
        let l = (Layout::Row, Layout::Col, Layout::Row);
        let (fast, reference) = both(
            Backend::Portable,
            (m, k, n),
            l,
            1.0f64,
            0.0,
            &a,
            &b,
            &c0,
            PACK_LEN,
        );
        for (x, y) in fast.iter().zip(&reference) {
            assert!((x - y).abs() <= 1e-13 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}

#[test]
fn huge_zero_stride_views_give_a_shape_error_not_an_overflow() {
    let one = [0f32];
    let a = MatRef::new(&one, 1 << 33, 1, 0, 0).unwrap();
    let b = MatRef::new(&one, 1, 1 << 33, 0, 0).unwrap();
    let mut c = [0f32];
    let r = gemm::gemm(
        Backend::Portable,
        1.0,
        a,
        b,
        0.0,
        MatMut::new(&mut c, 1, 1, 1, 1).unwrap(),
        &mut [],
    );
    assert!(matches!(r, Err(zeronn::Error::ShapeMismatch { .. })));
}

#[test]
fn views_that_reach_outside_their_slice_are_rejected() {
    let a = [0f32; 10];
    assert!(MatRef::new(&a, 3, 4, 4, 1).is_err());
    assert!(MatRef::new(&a, 2, 5, 5, 1).is_ok());
    let mut c = [0f32; 10];
    assert!(MatMut::new(&mut c, 2, 5, 4, 1).is_err(), "overlapping rows");
}

/// Rows picked through an index (`gather_rows`) give what the same rows copied out give, in
/// every backend, for A, B and C (and for the transposes, where the index picks columns).
#[test]
fn gathered_rows_equal_copied_rows_in_every_backend() {
    let mut r = rng(9);
    let mut backends = vec![Backend::Naive, Backend::Portable];
    backends.extend(simd_backends());
    if Backend::MatrixMultiply.is_available() {
        backends.push(Backend::MatrixMultiply);
    }
    // 40 rows picked (at least the remainder kernels' least depth): B's last 2 of 50 columns
    // go through the remainder kernels, which pack them from the picked rows.
    let (rows, k, n) = (60usize, 37usize, 50usize);
    let big_b = small_ints(&mut r, rows * n); // a 60 × 50 matrix; pick some of its rows as B
    let pick: Vec<usize> = (0..rows).filter(|i| i % 3 != 1).collect(); // 40 rows, increasing
    let m = 9;
    let a = small_ints(&mut r, m * pick.len());
    let copied_b: Vec<f32> = pick
        .iter()
        .flat_map(|&i| big_b[i * n..(i + 1) * n].to_vec())
        .collect();
    // With packing space, and without (where the matrixmultiply backend copies the picked
    // rows to the heap instead).
    for (&backend, pack_len) in backends.iter().flat_map(|b| [(b, PACK_LEN), (b, 0)]) {
        for beta in [0.0f32, 1.0] {
            // B gathered.
            let c0 = small_ints(&mut r, m * n);
            let (mut c1, mut c2) = (c0.clone(), c0.clone());
            let am = MatRef::row_major(&a, m, pick.len()).unwrap();
            let bg = MatRef::gather_rows(&big_b, &pick, n, n).unwrap();
            let bc = MatRef::row_major(&copied_b, pick.len(), n).unwrap();
            let mut pack = vec![0.0; pack_len];
            gemm::gemm(
                backend,
                1.0,
                am,
                bg,
                beta,
                MatMut::row_major(&mut c1, m, n).unwrap(),
                &mut pack,
            )
            .unwrap();
            gemm::gemm(
                Backend::Naive,
                1.0,
                am,
                bc,
                beta,
                MatMut::row_major(&mut c2, m, n).unwrap(),
                &mut [],
            )
            .unwrap();
            assert!(
                same_values(&c1, &c2),
                "{backend}: B gathered, beta {beta}, pack {pack_len}"
            );

            // C gathered: update picked rows of a big C in place; the others stay as they were.
            let x = small_ints(&mut r, k * pick.len()); // k × 40, used transposed as A (40 × k)
            let d = small_ints(&mut r, k * n);
            let mut big_c = small_ints(&mut r, rows * n);
            let before = big_c.clone();
            let mut copied_c: Vec<f32> = pick
                .iter()
                .flat_map(|&i| big_c[i * n..(i + 1) * n].to_vec())
                .collect();
            let at = MatRef::row_major(&x, k, pick.len()).unwrap().t();
            let dm = MatRef::row_major(&d, k, n).unwrap();
            gemm::gemm(
                backend,
                -0.5,
                at,
                dm,
                beta,
                MatMut::gather_rows(&mut big_c, &pick, n, n).unwrap(),
                &mut pack,
            )
            .unwrap();
            gemm::gemm(
                Backend::Naive,
                -0.5,
                at,
                dm,
                beta,
                MatMut::row_major(&mut copied_c, pick.len(), n).unwrap(),
                &mut [],
            )
            .unwrap();
            for (q, &i) in pick.iter().enumerate() {
                assert!(
                    same_values(&big_c[i * n..(i + 1) * n], &copied_c[q * n..(q + 1) * n]),
                    "{backend}: C row {i}"
                );
            }
            for i in (0..rows).filter(|i| !pick.contains(i)) {
                assert_eq!(
                    &big_c[i * n..(i + 1) * n],
                    &before[i * n..(i + 1) * n],
                    "{backend}: row {i} not picked"
                );
            }
        }
    }
    // Indices must stay inside the data, and a mutable view's must increase.
    let mut d = vec![0f32; 10];
    assert!(MatRef::gather_rows(&d, &[0, 5], 2, 2).is_err());
    assert!(MatMut::gather_rows(&mut d, &[2, 1], 2, 2).is_err());
    assert!(MatMut::gather_rows(&mut d, &[1, 1], 2, 2).is_err());
    assert!(MatMut::gather_rows(&mut d, &[0, 4], 2, 2).is_ok());
    // An index so large that its extent overflows is refused, not wrapped around.
    assert!(MatRef::gather_rows(&d, &[usize::MAX], 2, 2).is_err());
    assert!(MatMut::gather_rows(&mut d, &[0, usize::MAX], 2, 2).is_err());
    // Mutable rows closer than a row's width would overlap.
    assert!(MatMut::gather_rows(&mut d, &[0, 1], 2, 1).is_err());
}
