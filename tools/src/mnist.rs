//! MNIST in its original IDX format, raw or gzip-compressed, validated field by field.
//!
//! IDX: a big-endian header (magic `0x00000803` for images with 3 dimensions, `0x00000801` for
//! labels with 1), the dimensions as big-endian u32s, then one byte per pixel or label.
//! Every problem (unreadable file, bad gzip, wrong magic, wrong size, count mismatch) is an
//! [`LoadError`] that names the file and the problem.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The environment variable naming the data directory.
pub const DATA_ENV: &str = "ZERONN_DATA";

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// What is wrong with a file.
#[derive(Debug)]
pub enum Problem {
    /// It could not be opened or read.
    Io(io::Error),
    /// It starts like gzip but does not decompress.
    BadGzip(io::Error),
    /// It is empty.
    Empty,
    /// The header is shorter than its fixed size.
    ShortHeader {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The magic number is not the one for this kind of file.
    BadMagic {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// An image dimension is zero, or the size overflows.
    BadDimensions {
        /// Rows per image.
        rows: u32,
        /// Columns per image.
        cols: u32,
    },
    /// Fewer bytes than the header promises.
    Truncated {
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// More bytes than the header promises.
    Oversized {
        /// Bytes the header promises.
        expected: u64,
    },
    /// A label is not a digit 0–9.
    BadLabel {
        /// Position.
        index: usize,
        /// Value.
        label: u8,
    },
    /// The images and labels files hold different counts.
    CountMismatch {
        /// Images in the images file.
        images: usize,
        /// Labels in this (the labels) file.
        labels: usize,
        /// The images file.
        images_path: PathBuf,
    },
    /// The header promises more data than this tool loads ([`MAX_IDX_DATA`]).
    TooLarge {
        /// Bytes the header promises.
        declared: u64,
    },
    /// The file holds no images (or labels): nothing to train or test on.
    NoImages,
    /// Image size does not match what the net expects.
    WrongImageSize {
        /// Pixels per image in the file.
        found: usize,
        /// Pixels per image expected.
        expected: usize,
    },
}

/// A file that could not be loaded, and why.
#[derive(Debug)]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// The problem.
    pub problem: Problem,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.problem {
            Problem::Io(e) => write!(f, "{p}: cannot read: {e}"),
            Problem::BadGzip(e) => write!(f, "{p}: invalid gzip data: {e}"),
            Problem::Empty => write!(f, "{p}: file is empty"),
            Problem::ShortHeader { needed, actual } => {
                write!(
                    f,
                    "{p}: truncated IDX header: {actual} bytes, need {needed}"
                )
            }
            Problem::BadMagic { found, expected } => write!(
                f,
                "{p}: wrong magic number 0x{found:08x} (expected 0x{expected:08x}): not an IDX {} file",
                if *expected == IMAGES_MAGIC {
                    "images"
                } else {
                    "labels"
                }
            ),
            Problem::BadDimensions { rows, cols } => {
                write!(f, "{p}: bad image dimensions {rows}x{cols}")
            }
            Problem::Truncated { expected, actual } => write!(
                f,
                "{p}: truncated: the header promises {expected} bytes of data, the file has {actual}"
            ),
            Problem::Oversized { expected } => write!(
                f,
                "{p}: oversized: more than the {expected} bytes of data the header promises"
            ),
            Problem::TooLarge { declared } => write!(
                f,
                "{p}: the header promises {declared} bytes of data, more than the {MAX_IDX_DATA} \
                 this tool loads"
            ),
            Problem::NoImages => write!(f, "{p}: holds no images"),
            Problem::BadLabel { index, label } => {
                write!(f, "{p}: label {label} at index {index} is not a digit 0-9")
            }
            Problem::CountMismatch {
                images,
                labels,
                images_path,
            } => write!(
                f,
                "{p}: holds {labels} labels but {} holds {images} images",
                images_path.display()
            ),
            Problem::WrongImageSize { found, expected } => write!(
                f,
                "{p}: images have {found} pixels, the net expects {expected}"
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Io(e) | Problem::BadGzip(e) => Some(e),
            _ => None,
        }
    }
}

fn err(path: &Path, problem: Problem) -> LoadError {
    LoadError {
        path: path.to_path_buf(),
        problem,
    }
}

/// Raw images as stored: `count × rows × cols` bytes.
#[derive(Debug, Clone)]
pub struct Images {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Pixels, 0–255, image after image, row-major.
    pub pixels: Vec<u8>,
}

/// Opens `path` and returns a reader over its content, decompressing gzip (detected by its
/// magic bytes, whatever the file is called), and whether it was gzip.
fn open(path: &Path) -> Result<(Box<dyn Read>, bool), LoadError> {
    // Looked at before opening: a directory opens on Unix, and a named pipe would block.
    let meta = std::fs::metadata(path).map_err(|e| err(path, Problem::Io(e)))?;
    if !meta.is_file() {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        return Err(err(path, Problem::Io(e)));
    }
    let file = File::open(path).map_err(|e| err(path, Problem::Io(e)))?;
    gunzip_if_gzip(Box::new(file)).map_err(|e| err(path, Problem::Io(e)))
}

/// Wraps `r` in a gzip decoder if its first bytes are gzip's magic; returns whether it did.
fn gunzip_if_gzip(mut r: Box<dyn Read>) -> io::Result<(Box<dyn Read>, bool)> {
    let mut head = [0u8; 2];
    let n = read_full(&mut r, &mut head)?;
    let r = io::Cursor::new(head[..n].to_vec()).chain(r);
    if n == 2 && head == [0x1f, 0x8b] {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(r)), true))
    } else {
        Ok((Box::new(r), false))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Maps a read error to the right problem: data errors inside gzip are `BadGzip`.
fn read_problem(gz: bool, e: io::Error) -> Problem {
    if gz
        && matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        )
    {
        Problem::BadGzip(e)
    } else {
        Problem::Io(e)
    }
}

/// Reads an IDX file: checks the magic, reads `ndims` dimensions, then exactly the data the
/// dimensions promise (no more: an oversized file is an error, and a huge decompressed
/// stream is never read past the promised size).
fn read_idx(path: &Path, magic: u32, ndims: usize) -> Result<(Vec<u32>, Vec<u8>), LoadError> {
    let (r, gz) = open(path)?;
    read_idx_from(path, r, gz, magic, ndims)
}

/// [`read_idx`] on an open reader; `path` only names the input in errors.
fn read_idx_from(
    path: &Path,
    mut r: Box<dyn Read>,
    gz: bool,
    magic: u32,
    ndims: usize,
) -> Result<(Vec<u32>, Vec<u8>), LoadError> {
    let header_len = 4 + 4 * ndims;
    let mut header = vec![0u8; header_len];
    let n = read_full(&mut r, &mut header).map_err(|e| err(path, read_problem(gz, e)))?;
    if n == 0 {
        return Err(err(path, Problem::Empty));
    }
    if n < 4 {
        return Err(err(
            path,
            Problem::ShortHeader {
                needed: header_len,
                actual: n,
            },
        ));
    }
    let found = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if found != magic {
        return Err(err(
            path,
            Problem::BadMagic {
                found,
                expected: magic,
            },
        ));
    }
    if n < header_len {
        return Err(err(
            path,
            Problem::ShortHeader {
                needed: header_len,
                actual: n,
            },
        ));
    }
    let dims: Vec<u32> = header[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Images: rows and columns must be positive, checked before reading any data.
    if ndims == 3 && (dims[1] == 0 || dims[2] == 0) {
        return Err(err(
            path,
            Problem::BadDimensions {
                rows: dims[1],
                cols: dims[2],
            },
        ));
    }
    let Some(expected) = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
    else {
        // Only a 3-dimensional (images) header can overflow u64.
        let dim = |i: usize| dims.get(i).copied().unwrap_or(0);
        return Err(err(
            path,
            Problem::BadDimensions {
                rows: dim(1),
                cols: dim(2),
            },
        ));
    };
    // Checked before reading: a small gzip file could otherwise inflate without end.
    if expected > MAX_IDX_DATA {
        return Err(err(path, Problem::TooLarge { declared: expected }));
    }
    // Never allocate more than the data actually present: read in chunks.
    let mut data = Vec::with_capacity(expected.min(1 << 24) as usize);
    let got = r
        .by_ref()
        .take(expected)
        .read_to_end(&mut data)
        .map_err(|e| err(path, read_problem(gz, e)))? as u64;
    if got < expected {
        return Err(err(
            path,
            Problem::Truncated {
                expected,
                actual: got,
            },
        ));
    }
    let mut extra = [0u8; 1];
    if read_full(&mut r, &mut extra).map_err(|e| err(path, read_problem(gz, e)))? > 0 {
        return Err(err(path, Problem::Oversized { expected }));
    }
    Ok((dims, data))
}

/// Most bytes of data an IDX file may declare: 2 GiB, over three times EMNIST's largest
/// split of 28×28 images.
pub const MAX_IDX_DATA: u64 = 1 << 31;

/// Loads an IDX images file (`0x00000803`, count × rows × cols).
pub fn load_images(path: &Path) -> Result<Images, LoadError> {
    read_idx(path, IMAGES_MAGIC, 3).map(images_of)
}

/// Parses IDX file content held in memory, raw or gzip, as [`load_images`] and
/// [`load_labels`] would read it from a file (`name` names it in errors): the images, or the
/// labels. Used by the fuzz target, which so needs no file per input.
pub fn parse_idx(
    name: &Path,
    bytes: &[u8],
) -> (Result<Images, LoadError>, Result<Vec<u8>, LoadError>) {
    let reader =
        |b: &[u8]| gunzip_if_gzip(Box::new(io::Cursor::new(b.to_vec()))).expect("in memory");
    let (r, gz) = reader(bytes);
    let images = read_idx_from(name, r, gz, IMAGES_MAGIC, 3).map(images_of);
    let (r, gz) = reader(bytes);
    let labels =
        read_idx_from(name, r, gz, LABELS_MAGIC, 1).and_then(|(_, l)| check_labels(name, l));
    (images, labels)
}

fn images_of((dims, pixels): (Vec<u32>, Vec<u8>)) -> Images {
    Images {
        count: dims[0] as usize,
        rows: dims[1] as usize,
        cols: dims[2] as usize,
        pixels,
    }
}

/// Loads an IDX labels file (`0x00000801`), checking every label is a digit.
pub fn load_labels(path: &Path) -> Result<Vec<u8>, LoadError> {
    let (_, labels) = read_idx(path, LABELS_MAGIC, 1)?;
    check_labels(path, labels)
}

fn check_labels(path: &Path, labels: Vec<u8>) -> Result<Vec<u8>, LoadError> {
    if let Some(index) = labels.iter().position(|&l| l > 9) {
        return Err(err(
            path,
            Problem::BadLabel {
                index,
                label: labels[index],
            },
        ));
    }
    Ok(labels)
}

/// One split of the data: the images as stored (bytes) and their labels. Images are turned
/// into `f32` in [0, 1] (the book's `normalize=True`) as they are used, exactly
/// (see [`crate::pixels`]). Data of other kinds (a CSV of measurements, a NumPy array of
/// floats) is held as `f32` features instead, used as they are; the fast paths made for
/// images (skipping blank pixels) then stand aside.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// `len × pixels` bytes 0–255, image after image (empty for float data).
    pub raw: Vec<u8>,
    /// `len × pixels` features, sample after sample, for float data (empty for images).
    pub floats: Vec<f32>,
    /// Labels (class indices).
    pub t: Vec<u8>,
    /// Pixels (features) per image (sample).
    pub pixels: usize,
}

impl Split {
    /// Float data: `features` values per sample, `t` the labels.
    pub fn from_floats(floats: Vec<f32>, t: Vec<u8>, features: usize) -> Split {
        Split {
            raw: Vec::new(),
            floats,
            t,
            pixels: features,
        }
    }
    /// Whether the samples are float features (not image bytes).
    pub fn is_float(&self) -> bool {
        self.raw.is_empty() && !self.floats.is_empty()
    }
    /// Sample `i` of float data.
    pub fn sample_f32(&self, i: usize) -> &[f32] {
        &self.floats[i * self.pixels..(i + 1) * self.pixels]
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.t.len()
    }
    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }
    /// Image `i`, as stored (image data only).
    pub fn image_raw(&self, i: usize) -> &[u8] {
        &self.raw[i * self.pixels..(i + 1) * self.pixels]
    }
    /// Images `lo..hi` as f32 in [0, 1], into `out` (`(hi - lo) × pixels` values).
    pub fn images_f32(&self, lo: usize, hi: usize, out: &mut [f32]) {
        let (a, b) = (lo * self.pixels, hi * self.pixels);
        if self.is_float() {
            out[..b - a].copy_from_slice(&self.floats[a..b]);
        } else {
            crate::pixels::to_unit_f32(&self.raw[a..b], out);
        }
    }
    /// All images as f32 in [0, 1] (float data as it is).
    pub fn x_f32(&self) -> Vec<f32> {
        let mut x = vec![0.0; self.len() * self.pixels];
        self.images_f32(0, self.len(), &mut x);
        x
    }
    /// The images at `idx` (as f32) into `x` and their labels into `t`: a mini-batch.
    pub fn gather(&self, idx: &[usize], x: &mut [f32], t: &mut [u8]) {
        for ((&i, row), label) in idx
            .iter()
            .zip(x.chunks_exact_mut(self.pixels))
            .zip(t.iter_mut())
        {
            if self.is_float() {
                row.copy_from_slice(self.sample_f32(i));
            } else {
                crate::pixels::to_unit_f32(self.image_raw(i), row);
            }
            *label = self.t[i];
        }
    }
    /// Asks the CPU to bring the images at `idx` into the cache (L2), without waiting: a
    /// gather of them later finds them there instead of stalling on memory for each row.
    pub fn prefetch(&self, idx: &[usize]) {
        for &i in idx {
            self.prefetch_part(i, 0, self.pixels);
        }
    }

    /// [`Split::prefetch`] for pixels `lo..hi` of image `i`: every cache line they touch.
    pub fn prefetch_part(&self, i: usize, lo: usize, hi: usize) {
        self.prefetch_lines::<false>(i, lo, hi);
    }

    /// [`Split::prefetch_part`] into the first-level cache too, for a row about to be read:
    /// lines prefetched a whole step ahead are partly evicted from L1 and L2 by the time they
    /// are read.
    pub fn prefetch_part_near(&self, i: usize, lo: usize, hi: usize) {
        self.prefetch_lines::<true>(i, lo, hi);
    }

    fn prefetch_lines<const NEAR: bool>(&self, i: usize, lo: usize, hi: usize) {
        #[cfg(target_arch = "x86_64")]
        if !self.is_float() {
            let part = &self.image_raw(i)[lo..hi];
            let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
            let mut line = start & !63;
            while line < end {
                // SAFETY: SSE is part of x86-64; a prefetch is a hint that never faults and
                // changes nothing the program can observe (the address need not be valid).
                unsafe {
                    use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
                    if NEAR {
                        _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                    } else {
                        _mm_prefetch::<_MM_HINT_T1>(line as *const i8);
                    }
                }
                line += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (i, lo, hi);
    }

    /// The images `idx` (indices below `len()`), in that order.
    pub fn select(&self, idx: &[usize]) -> Split {
        let (mut raw, mut floats) = (Vec::new(), Vec::new());
        for &i in idx {
            if self.is_float() {
                floats.extend_from_slice(self.sample_f32(i));
            } else {
                raw.extend_from_slice(self.image_raw(i));
            }
        }
        Split {
            raw,
            floats,
            t: idx.iter().map(|&i| self.t[i]).collect(),
            pixels: self.pixels,
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        let m = n * self.pixels;
        Split {
            raw: self.raw[..m.min(self.raw.len())].to_vec(),
            floats: self.floats[..m.min(self.floats.len())].to_vec(),
            t: self.t[..n].to_vec(),
            pixels: self.pixels,
        }
    }
}

/// The training and test splits.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// 60 000 training images.
    pub train: Split,
    /// 10 000 test images.
    pub test: Split,
}

/// The file names tried for one file, in order.
fn candidates(stem: &str) -> [String; 4] {
    let dotted = stem.replacen("-idx", ".idx", 1);
    [
        format!("{stem}.gz"),
        stem.to_string(),
        format!("{dotted}.gz"),
        dotted,
    ]
}

/// Finds `stem` (e.g. `train-images-idx3-ubyte`) in `dir`, raw or `.gz`.
pub fn find(dir: &Path, stem: &str) -> Result<PathBuf, String> {
    for name in candidates(stem) {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
        if p.exists() {
            return Err(format!("{}: not a regular file", p.display()));
        }
    }
    Err(format!(
        "MNIST file not found: looked for {} in {}",
        candidates(stem).join(", "),
        dir.display()
    ))
}

/// The four files of MNIST, by the stems [`find`] takes.
pub const STEMS: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Where the data is: `--data DIR` if given, else `$ZERONN_DATA`, else the folder `zeronn
/// download` fills by default ([`crate::download::default_dir`]) if it holds the four files;
/// a message that says how to get them otherwise.
pub fn data_dir(arg: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = arg {
        return check_dir(d.to_path_buf(), "--data");
    }
    if let Some(d) = std::env::var_os(DATA_ENV).filter(|d| !d.is_empty()) {
        return check_dir(PathBuf::from(d), DATA_ENV);
    }
    let default = crate::download::default_dir(crate::download::Dataset::Mnist);
    let why = match &default {
        None => "there is no cache folder: HOME is not set".to_string(),
        Some(d) if !d.is_dir() => format!("{} does not exist yet", d.display()),
        Some(d) => match STEMS.iter().find_map(|s| find(d, s).err()) {
            None => return Ok(d.clone()),
            Some(e) => e,
        },
    };
    Err(format!(
        "no MNIST data: run `zeronn download` to fetch it into the folder every command looks \
         in by default ({why}); or pass --data DIR or set {DATA_ENV}=DIR, where DIR holds the \
         four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, \
         t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz) from the MNIST \
         database"
    ))
}

fn check_dir(d: PathBuf, from: &str) -> Result<PathBuf, String> {
    if d.is_dir() {
        Ok(d)
    } else {
        Err(format!(
            "MNIST data directory {} (from {from}) does not exist or is not a directory",
            d.display()
        ))
    }
}

/// Loads one split: images and labels, checked to agree in count and to have `pixels` pixels
/// per image (when `pixels` is given).
pub fn load_split(images: &Path, labels: &Path, pixels: Option<usize>) -> Result<Split, LoadError> {
    let img = load_images(images)?;
    let t = load_labels(labels)?;
    if img.count != t.len() {
        return Err(err(
            labels,
            Problem::CountMismatch {
                images: img.count,
                labels: t.len(),
                images_path: images.to_path_buf(),
            },
        ));
    }
    if img.count == 0 {
        return Err(err(images, Problem::NoImages));
    }
    let per = img.rows * img.cols;
    if let Some(expected) = pixels
        && per != expected
    {
        return Err(err(
            images,
            Problem::WrongImageSize {
                found: per,
                expected,
            },
        ));
    }
    Ok(Split {
        raw: img.pixels,
        floats: Vec::new(),
        t,
        pixels: per,
    })
}

/// Any failure of [`load`]: a missing file (with where it looked) or a bad one.
#[derive(Debug)]
pub enum MnistError {
    /// A file was not found; the message says where it looked.
    NotFound(String),
    /// A file is malformed.
    Load(LoadError),
}

impl fmt::Display for MnistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MnistError::NotFound(m) => f.write_str(m),
            MnistError::Load(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for MnistError {}

impl From<LoadError> for MnistError {
    fn from(e: LoadError) -> Self {
        MnistError::Load(e)
    }
}

/// Loads both splits from `dir`, each image checked to be 28×28 = 784 pixels.
pub fn load(dir: &Path) -> Result<Mnist, MnistError> {
    let f = |stem: &str| find(dir, stem).map_err(MnistError::NotFound);
    let train = load_split(
        &f("train-images-idx3-ubyte")?,
        &f("train-labels-idx1-ubyte")?,
        Some(784),
    )?;
    let test = load_split(
        &f("t10k-images-idx3-ubyte")?,
        &f("t10k-labels-idx1-ubyte")?,
        Some(784),
    )?;
    Ok(Mnist { train, test })
}
