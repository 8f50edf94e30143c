//! Model files on disk, with the `std` feature: read into an aligned buffer (only what the
//! header promises, and only from a regular file), validated by [`Model::from_bytes`], and
//! written atomically (a temporary file beside the target, synced, renamed over it, the
//! directory synced), so a failure never leaves half a model or harms the file already there.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let x = [0.0f32; 784];
//! let file = zeronn::ModelFile::read("model.zrnn")?;
//! let net = file.net()?; // whatever layers the file holds
//! let mut ws = vec![0.0; net.spec().workspace_len(1)];
//! let scores = net.predict(&x, &mut ws)?; // x: one image, 784 values in [0, 1]
//! println!("class {}", zeronn::functions::argmax(scores));
//! # Ok(())
//! # }
//! ```
//!
//! A model trained in PyTorch: its `Linear.weight` is `out × in`, the transpose of zeronn's
//! `W` (`in × out`, the book's); a `Conv2d.weight` is `filters × channels × kh × kw`, as
//! zeronn's. `zeronn import` (the tools) reads ONNX and safetensors and does this for you.

use std::borrow::ToOwned;
use std::boxed::Box;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::string::String;

use crate::error::Error;
use crate::model::{self, FIXED_HEADER_LEN, MAGIC, Model, ModelError};
use crate::net::{Layer, Net, NetSpec};
use crate::quant::QModel;

/// What went wrong with a model file; its message names the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileError {
    /// Reading or writing failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// Not a regular file (a directory, a device, a pipe).
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The bytes are not a valid model (or, for a save, the net does not fit the format).
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: ModelError,
    },
    /// The model is valid but its net could not be built (or the buffers do not fit it).
    Net {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: Error,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            FileError::NotAFile { path } => write!(f, "{}: not a regular file", path.display()),
            FileError::Model { path, error } => {
                write!(f, "{}: not a valid zeronn model: {error}", path.display())
            }
            FileError::Net { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { error, .. } => Some(error),
            FileError::Model { error, .. } => Some(error),
            FileError::Net { error, .. } => Some(error),
            FileError::NotAFile { .. } => None,
        }
    }
}

/// A model file's bytes, held 8-aligned (the format's in-place view needs f32 alignment).
pub struct ModelFile {
    words: Box<[u64]>,
    len: usize,
    path: PathBuf,
}

impl ModelFile {
    /// Reads the model file at `path`: its fixed header first, then exactly the header and
    /// payload lengths it states (a file of another length, or of bad magic or version, is
    /// refused before anything large is read or allocated). Validate with [`Self::model`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref().to_path_buf();
        let io = |error| FileError::Io {
            path: path.clone(),
            error,
        };
        let bad = |error| FileError::Model {
            path: path.clone(),
            error,
        };
        // Looked at before opening: opening a named pipe would wait for a writer.
        let meta = fs::metadata(&path).map_err(io)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile { path });
        }
        let mut f = fs::File::open(&path).map_err(io)?;
        let mut head = [0u8; FIXED_HEADER_LEN];
        let got = read_up_to(&mut f, &mut head).map_err(io)?;
        if got < FIXED_HEADER_LEN {
            // Too short for a header: let the validation say what is wrong.
            return Err(bad(Model::from_bytes(&head[..got])
                .err()
                .unwrap_or(ModelError::TooShort { len: got })));
        }
        if head[0..4] != MAGIC {
            return Err(bad(ModelError::BadMagic));
        }
        let version = u16::from_le_bytes([head[4], head[5]]);
        if !(1..=model::VERSION).contains(&version) {
            return Err(bad(ModelError::UnsupportedVersion { version }));
        }
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let total = word(8) as u64 + word(12) as u64;
        if meta.len() < total {
            return Err(bad(ModelError::Truncated {
                expected: usize::try_from(total).unwrap_or(usize::MAX),
                actual: usize::try_from(meta.len()).unwrap_or(usize::MAX),
            }));
        }
        if meta.len() > total {
            return Err(bad(ModelError::TrailingBytes {
                expected: usize::try_from(total).unwrap_or(usize::MAX),
                actual: usize::try_from(meta.len()).unwrap_or(usize::MAX),
            }));
        }
        let len = usize::try_from(total).map_err(|_| {
            io(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "larger than this machine's address space",
            ))
        })?;
        let mut words = std::vec![0u64; len.div_ceil(8)].into_boxed_slice();
        // SAFETY: the words hold `words.len() * 8 >= len` bytes, any bytes are valid u64
        // bits, u8 has alignment 1, and the slice borrows `words` mutably for this block only.
        let bytes =
            unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) };
        bytes[..FIXED_HEADER_LEN].copy_from_slice(&head);
        let got = read_up_to(&mut f, &mut bytes[FIXED_HEADER_LEN..]).map_err(io)?;
        if got != len - FIXED_HEADER_LEN {
            return Err(bad(ModelError::Truncated {
                expected: len,
                actual: FIXED_HEADER_LEN + got,
            }));
        }
        Ok(ModelFile { words, len, path })
    }

    /// A model already in memory (`bytes`, e.g. just written), copied into aligned storage so
    /// that it can run in place; `path` names it in errors. Validate with [`Self::model`] or
    /// [`Self::int8_model`].
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: &[u8]) -> Self {
        let mut words = std::vec![0u64; bytes.len().div_ceil(8)].into_boxed_slice();
        for (w, c) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            *w = u64::from_ne_bytes(b);
        }
        ModelFile {
            words,
            len: bytes.len(),
            path: path.into(),
        }
    }

    /// Whether the file holds an int8 model (element type 2; see [`crate::quant::model`]).
    pub fn is_int8(&self) -> bool {
        self.bytes().get(6) == Some(&crate::quant::model::ELEMENT_INT8)
    }

    /// The validated int8 model (see [`QModel::from_bytes`]), borrowing the bytes in place.
    pub fn int8_model(&self) -> Result<QModel<'_>, FileError> {
        QModel::from_bytes(self.bytes()).map_err(|error| FileError::Model {
            path: self.path.clone(),
            error,
        })
    }

    /// The file's bytes, 8-aligned.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds `words.len() * 8 >= len` initialised bytes, u8 has alignment
        // 1, and the slice borrows `self`.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The path it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated model (see [`Model::from_bytes`]), borrowing the bytes in place.
    pub fn model(&self) -> Result<Model<'_>, FileError> {
        Model::from_bytes(self.bytes()).map_err(|error| FileError::Model {
            path: self.path.clone(),
            error,
        })
    }

    /// The net of whatever layers the file holds, over its parameters and state in place.
    pub fn net(&self) -> Result<Net<f32, &[f32]>, FileError> {
        self.model()?.net().map_err(|error| FileError::Net {
            path: self.path.clone(),
            error,
        })
    }
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_up_to(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes a net's parameters and state to `path` in the model format, atomically (see
/// [`write_atomic`]).
pub fn save(
    path: impl AsRef<Path>,
    spec: &NetSpec,
    params: &[f32],
    state: &[f32],
) -> Result<(), FileError> {
    let path = path.as_ref();
    let mut bytes = std::vec![0u8; model::encoded_len(spec)];
    model::write(spec, params, state, &mut bytes).map_err(|error| FileError::Net {
        path: path.to_path_buf(),
        error,
    })?;
    write_atomic(path, &bytes).map_err(|error| FileError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// The temporary file [`write_atomic`] writes before renaming it to `path`: `path` + `.partial`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

/// Writes `bytes` to `path` so that the file appears only when complete: written beside it
/// ([`partial_path`]), synced, renamed over `path`, and the directory synced (so the rename
/// itself survives a crash). On failure the temporary file is removed and any file at `path`
/// is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = partial_path(path);
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Directories open read-only for fsync on Unix; elsewhere this is best effort.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A layer as a Rust expression (for code that declares a net as a `const`).
pub fn layer_rs(l: &Layer) -> String {
    match *l {
        Layer::Affine { input, output } => {
            std::format!("zeronn::Layer::Affine {{ input: {input}, output: {output} }}")
        }
        Layer::BatchNorm { features } => {
            std::format!("zeronn::Layer::BatchNorm {{ features: {features} }}")
        }
        Layer::Dropout { ratio } => std::format!(
            "zeronn::Layer::Dropout {{ ratio: f32::from_bits({:#010x}) }}",
            ratio.to_bits()
        ),
        Layer::Convolution(c) => std::format!(
            "zeronn::Layer::Convolution(zeronn::layers::Convolution::new(zeronn::layers::Dims::new({}, {}, {}), {}, {}).kernel({}, {}).stride({}).pad({}))",
            c.input.channels,
            c.input.height,
            c.input.width,
            c.filters,
            c.kernel_h,
            c.kernel_h,
            c.kernel_w,
            c.stride,
            c.pad
        ),
        Layer::Pooling { h, w, stride } => {
            std::format!("zeronn::Layer::Pooling {{ h: {h}, w: {w}, stride: {stride} }}")
        }
        other => std::format!("zeronn::Layer::{}", other.name()),
    }
}

/// A net's layer list as Rust source: `pub const NAME: &[zeronn::Layer] = &[…];`, with `doc`
/// as its doc comment. Firmware build scripts write it from a model file, so the net's buffers
/// are sized at compile time from the model itself.
pub fn layers_rs(name: &str, doc: &str, spec: &NetSpec) -> String {
    let items: String = spec
        .layers()
        .iter()
        .map(|l| std::format!("    {},\n", layer_rs(l)))
        .collect();
    std::format!("/// {doc}\npub const {name}: &[zeronn::Layer] = &[\n{items}];\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetSpec;
    use std::vec::Vec;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(std::format!(
            "zeronn-core-file-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn save_then_read_gives_the_net_back() {
        let d = scratch("round");
        let spec = NetSpec::new(&[
            Layer::Affine {
                input: 3,
                output: 4,
            },
            Layer::BatchNorm { features: 4 },
            Layer::Relu,
            Layer::Affine {
                input: 4,
                output: 2,
            },
            Layer::SoftmaxWithLoss,
        ]);
        let params: Vec<f32> = (0..spec.param_len()).map(|i| i as f32 / 8.0).collect();
        let state: Vec<f32> = (0..spec.state_len()).map(|i| 1.0 + i as f32).collect();
        let p = d.join("m.zrnn");
        save(&p, &spec, &params, &state).unwrap();
        assert!(!partial_path(&p).exists());
        let file = ModelFile::read(&p).unwrap();
        let net = file.net().unwrap();
        assert_eq!(*net.spec(), spec);
        assert_eq!((net.params(), net.state()), (&params[..], &state[..]));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_files_are_refused_before_they_are_read_whole() {
        let d = scratch("bad");
        // A large file of zeros: refused on its first 32 bytes (bad magic), without reading it.
        let zeros = d.join("zeros.zrnn");
        fs::File::create(&zeros).unwrap().set_len(1 << 30).unwrap();
        let e = ModelFile::read(&zeros).err().unwrap();
        assert!(
            matches!(
                e,
                FileError::Model {
                    error: ModelError::BadMagic,
                    ..
                }
            ),
            "{e}"
        );
        // A directory is not a model.
        let e = ModelFile::read(&d).err().unwrap();
        assert!(std::format!("{e}").contains("not a regular file"), "{e}");
        // A model with a byte cut off, or one added: named, with both lengths.
        let spec = NetSpec::new(&[Layer::Affine {
            input: 2,
            output: 2,
        }]);
        let p = d.join("m.zrnn");
        save(&p, &spec, &[0.5; 6], &[]).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        bytes.pop();
        fs::write(&p, &bytes).unwrap();
        let e = ModelFile::read(&p).err().unwrap();
        assert!(
            matches!(
                e,
                FileError::Model {
                    error: ModelError::Truncated { .. },
                    ..
                }
            ),
            "{e}"
        );
        bytes.extend([0, 0]);
        fs::write(&p, &bytes).unwrap();
        let e = ModelFile::read(&p).err().unwrap();
        assert!(
            matches!(
                e,
                FileError::Model {
                    error: ModelError::TrailingBytes { .. },
                    ..
                }
            ),
            "{e}"
        );
        // Missing: the system's error, with the path.
        let e = ModelFile::read(d.join("none.zrnn")).err().unwrap();
        assert!(std::format!("{e}").contains("none.zrnn"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }
}
