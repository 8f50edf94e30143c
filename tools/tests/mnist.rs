//! The MNIST loader on the real files, and on malformed ones: each a clear error naming the
//! file and the problem.

mod common;

use std::io::Write;
use std::path::Path;

use common::{Scratch, mnist_dir};
use zeronn_tools::mnist::{self, Problem};

#[test]
fn real_files_load_with_the_known_facts() {
    let Some(dir) = mnist_dir() else { return };
    let data = mnist::load(&dir).unwrap();
    assert_eq!(data.train.len(), 60_000);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!(data.train.pixels, 784);
    assert_eq!(&data.train.t[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&data.test.t[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let x = data.train.x_f32();
    let mean: f64 = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    assert!(
        (mean * 255.0 - 33.318).abs() < 0.001,
        "mean pixel {}",
        mean * 255.0
    );
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(x.iter().cloned().fold(0.0f32, f32::max), 1.0);
    let raw_mean =
        data.train.raw.iter().map(|&p| p as f64).sum::<f64>() / data.train.raw.len() as f64;
    assert!(
        (raw_mean - 33.3184).abs() < 1e-4,
        "mean raw pixel {raw_mean}"
    );
}

/// An IDX file: magic, dims, data.
fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn images(n: u32) -> Vec<u8> {
    idx(0x803, &[n, 2, 2], &vec![255; 4 * n as usize])
}

fn labels(n: u32) -> Vec<u8> {
    idx(0x801, &[n], &vec![3; n as usize])
}

#[test]
fn small_valid_files_load_raw_and_gzipped() {
    let s = Scratch::new("valid");
    write(&s.path("i"), &images(3));
    write(&s.path("l.gz"), &gz(&labels(3)));
    let split = mnist::load_split(&s.path("i"), &s.path("l.gz"), Some(4)).unwrap();
    assert_eq!(split.len(), 3);
    assert_eq!(split.t, vec![3, 3, 3]);
    assert!(split.x_f32().iter().all(|&v| v == 1.0));
}

/// The message of loading `bytes` as images (or labels), checked to name the file.
fn image_error(bytes: &[u8], name: &str) -> (Problem, String) {
    let s = Scratch::new("bad");
    let p = s.path(name);
    write(&p, bytes);
    let e = mnist::load_images(&p).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(name), "message names the file: {msg}");
    (e.problem, msg)
}

#[test]
fn truncated_file_is_an_error() {
    let mut b = images(3);
    b.truncate(b.len() - 1);
    let (p, msg) = image_error(&b, "trunc-idx3-ubyte");
    assert!(
        matches!(
            p,
            Problem::Truncated {
                expected: 12,
                actual: 11
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("truncated"));
    let (p, _) = image_error(&gz(&b), "trunc-idx3-ubyte.gz");
    assert!(matches!(p, Problem::Truncated { .. }));
    let (p, _) = image_error(&images(3)[..9], "header-idx3-ubyte");
    assert!(matches!(
        p,
        Problem::ShortHeader {
            needed: 16,
            actual: 9
        }
    ));
}

#[test]
fn oversized_file_is_an_error() {
    let mut b = images(3);
    b.push(0);
    let (p, msg) = image_error(&b, "big-idx3-ubyte");
    assert!(matches!(p, Problem::Oversized { expected: 12 }), "{msg}");
}

#[test]
fn wrong_magic_is_an_error() {
    let (p, msg) = image_error(&labels(3), "swapped-idx3-ubyte");
    assert!(
        matches!(
            p,
            Problem::BadMagic {
                found: 0x801,
                expected: 0x803
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("magic"));
}

#[test]
fn empty_file_is_an_error() {
    let (p, msg) = image_error(&[], "empty-idx3-ubyte");
    assert!(matches!(p, Problem::Empty), "{msg}");
    assert!(msg.contains("empty"));
}

#[test]
fn garbage_gzip_is_an_error() {
    let mut b = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    b.extend_from_slice(b"this is not deflate data at all, not even close");
    let (p, msg) = image_error(&b, "garbage.gz");
    assert!(matches!(p, Problem::BadGzip(_)), "{msg}");
    assert!(msg.contains("gzip"));
    // A valid gzip stream cut short.
    let full = gz(&images(50));
    let (p, msg) = image_error(&full[..full.len() / 2], "cut.gz");
    assert!(
        matches!(p, Problem::BadGzip(_) | Problem::Truncated { .. }),
        "{msg}"
    );
}

#[test]
fn zero_image_dimensions_are_an_error() {
    let (p, _) = image_error(&idx(0x803, &[1, 0, 28], &[]), "flat-idx3-ubyte");
    assert!(matches!(p, Problem::BadDimensions { rows: 0, cols: 28 }));
    // Reported as such even with data following the header.
    let (p, _) = image_error(&idx(0x803, &[1, 0, 28], &[1, 2, 3]), "flat2-idx3-ubyte");
    assert!(matches!(p, Problem::BadDimensions { rows: 0, cols: 28 }));
}

#[test]
fn dimensions_whose_product_overflows_are_an_error() {
    let m = u32::MAX;
    let (p, msg) = image_error(&idx(0x803, &[m, m, m], &[0; 8]), "huge-idx3-ubyte");
    assert!(matches!(p, Problem::BadDimensions { .. }), "{msg}");
}

/// A header promising more than the loader reads is refused before any data is read: a
/// gzip stream of zeros would otherwise inflate until memory runs out.
#[test]
fn a_header_promising_too_much_data_is_refused_before_reading_it() {
    // 10 million 28×28 images: 7.84 GB.
    let header = idx(0x803, &[10_000_000, 28, 28], &[]);
    let mut stream = header.clone();
    stream.extend(std::iter::repeat_n(0u8, 1 << 20));
    for (bytes, name) in [
        (header, "big-idx3-ubyte"),
        (gz(&stream), "big-idx3-ubyte.gz"),
    ] {
        let (p, msg) = image_error(&bytes, name);
        assert!(
            matches!(
                p,
                Problem::TooLarge {
                    declared: 7_840_000_000
                }
            ),
            "{msg}"
        );
        assert!(msg.contains(name) && msg.contains("7840000000"), "{msg}");
    }
    // Just under the limit, a truncated file is reported as truncated.
    let (p, msg) = image_error(&idx(0x803, &[2_000_000, 28, 28], &[0; 16]), "ok-idx3-ubyte");
    assert!(matches!(p, Problem::Truncated { .. }), "{msg}");
}

#[test]
fn a_split_without_images_is_an_error() {
    let s = Scratch::new("noimages");
    write(&s.path("i"), &images(0));
    write(&s.path("l"), &labels(0));
    let e = mnist::load_split(&s.path("i"), &s.path("l"), None).unwrap_err();
    assert!(matches!(e.problem, Problem::NoImages));
    assert!(e.to_string().contains("holds no images"), "{e}");
}

#[test]
fn count_mismatch_is_an_error_naming_both_files() {
    let s = Scratch::new("count");
    write(&s.path("imgs"), &images(3));
    write(&s.path("labs"), &labels(4));
    let e = mnist::load_split(&s.path("imgs"), &s.path("labs"), None).unwrap_err();
    assert!(matches!(
        e.problem,
        Problem::CountMismatch {
            images: 3,
            labels: 4,
            ..
        }
    ));
    let msg = e.to_string();
    assert!(msg.contains("imgs") && msg.contains("labs"), "{msg}");
}

#[test]
fn labels_above_nine_are_an_error() {
    let s = Scratch::new("label");
    write(&s.path("labs"), &idx(0x801, &[3], &[1, 10, 2]));
    let e = mnist::load_labels(&s.path("labs")).unwrap_err();
    assert!(matches!(
        e.problem,
        Problem::BadLabel {
            index: 1,
            label: 10
        }
    ));
}

#[test]
fn wrong_image_size_is_an_error() {
    let s = Scratch::new("size");
    write(&s.path("i"), &images(3));
    write(&s.path("l"), &labels(3));
    let e = mnist::load_split(&s.path("i"), &s.path("l"), Some(784)).unwrap_err();
    assert!(matches!(
        e.problem,
        Problem::WrongImageSize {
            found: 4,
            expected: 784
        }
    ));
}

#[test]
fn missing_files_say_where_they_were_looked_for() {
    let s = Scratch::new("missing");
    let e = mnist::load(&s.0).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains(&s.0.display().to_string()),
        "{e}"
    );
}
