//! Shared helpers: where MNIST is, and scratch directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The MNIST directory from `ZERONN_DATA`, or `None` (test skipped, with a note) when unset.
/// With `ZERONN_REQUIRE_DATA=1` (as CI sets it) a missing dataset fails the test instead.
///
/// Cargo runs these tests in `tools/`, not where `cargo test` was typed: a relative path that
/// is not a directory from here is taken from the workspace root (README's command gives
/// `../shared/data/mnist` from there).
pub fn mnist_dir() -> Option<PathBuf> {
    match std::env::var_os("ZERONN_DATA") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            Some(if d.is_relative() && !d.is_dir() {
                root.join(d)
            } else {
                d
            })
        }
        _ => {
            assert!(
                std::env::var("ZERONN_REQUIRE_DATA").as_deref() != Ok("1"),
                "ZERONN_REQUIRE_DATA=1 but ZERONN_DATA is not set: point it at the MNIST directory"
            );
            eprintln!(
                "skipped: ZERONN_DATA is not set (set it to the MNIST directory to run this test)"
            );
            None
        }
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "zeronn-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
