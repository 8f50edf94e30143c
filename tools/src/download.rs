//! `zeronn download`: fetches the four files of MNIST (or Fashion-MNIST) from the usual
//! mirrors into a folder, checked by SHA-256.
//!
//! - **Where.** By default the platform's cache folder ([`default_dir`]:
//!   `$XDG_CACHE_HOME/zeronn/mnist` or `~/.cache/zeronn/mnist` on Linux,
//!   `~/Library/Caches/zeronn/mnist` on macOS, `%LOCALAPPDATA%\zeronn\mnist` on Windows;
//!   `fashion-mnist` instead of `mnist` for Fashion-MNIST), where every command that reads
//!   MNIST looks when given no `--data` and no `ZERONN_DATA` (see [`crate::mnist::data_dir`]).
//! - **From where.** The mirrors of [`Dataset::mirrors`], in order, the next one tried when a
//!   download fails; `ZERONN_MIRROR` replaces them with one base URL (a local server in the
//!   tests, or a mirror of your own).
//! - **Byte for byte.** The requests say `Accept-Encoding: identity`, and the HTTP client is
//!   built without any content decoding: the `.gz` files are stored exactly as served.
//! - **Checked.** Each file must have the SHA-256 of the official `.gz` file; a file that does
//!   not (a copy compressed anew, as some mirrors and packages hold) is accepted if its
//!   decompressed content has the SHA-256 of the official IDX file. Anything else is an
//!   error that names the file and the expected and actual hashes, and the download is
//!   deleted. A file already in place that passes the check is not downloaded again.
//! - **Resumed.** A file arrives as `NAME.partial`; a download cut short leaves it there, and
//!   the next run asks for the rest (`Range: bytes=N-`): a `206 Partial Content` answer is
//!   appended, a `200 OK` one (a server that ignores ranges) starts the file over. A complete
//!   file is synced to disk and renamed into place, so `NAME` is always whole.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::digest::{Context, SHA256};

/// The environment variable that replaces the mirrors with one base URL.
pub const MIRROR_ENV: &str = "ZERONN_MIRROR";

/// One file of a dataset and the SHA-256 hashes that identify it.
#[derive(Debug, Clone, Copy)]
pub struct RemoteFile {
    /// The file name, as on the mirrors (`train-images-idx3-ubyte.gz`).
    pub name: &'static str,
    /// SHA-256 of the official `.gz` file, in lowercase hex.
    pub gz_sha256: &'static str,
    /// SHA-256 of its decompressed content (the IDX file), in lowercase hex.
    pub sha256: &'static str,
    /// Bytes of the decompressed content.
    pub size: u64,
}

/// The official MNIST files. The `.gz` hashes are those of the files on the mirrors (and of
/// LeCun's originals); the content hashes are those of the decompressed IDX files.
pub const MNIST_FILES: [RemoteFile; 4] = [
    RemoteFile {
        name: "train-images-idx3-ubyte.gz",
        gz_sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        size: 47_040_016,
    },
    RemoteFile {
        name: "train-labels-idx1-ubyte.gz",
        gz_sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        size: 60_008,
    },
    RemoteFile {
        name: "t10k-images-idx3-ubyte.gz",
        gz_sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        size: 7_840_016,
    },
    RemoteFile {
        name: "t10k-labels-idx1-ubyte.gz",
        gz_sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        size: 10_008,
    },
];

/// The official Fashion-MNIST files (Zalando Research's, whose MD5 sums its README lists).
pub const FASHION_FILES: [RemoteFile; 4] = [
    RemoteFile {
        name: "train-images-idx3-ubyte.gz",
        gz_sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        size: 47_040_016,
    },
    RemoteFile {
        name: "train-labels-idx1-ubyte.gz",
        gz_sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        size: 60_008,
    },
    RemoteFile {
        name: "t10k-images-idx3-ubyte.gz",
        gz_sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        size: 7_840_016,
    },
    RemoteFile {
        name: "t10k-labels-idx1-ubyte.gz",
        gz_sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        size: 10_008,
    },
];

/// A dataset `zeronn download` fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// The MNIST database of handwritten digits (LeCun, Cortes, Burges).
    Mnist,
    /// Fashion-MNIST (Xiao, Rasul, Vollgraf): clothing in MNIST's format.
    Fashion,
}

impl Dataset {
    /// Its four files.
    pub fn files(self) -> &'static [RemoteFile; 4] {
        match self {
            Dataset::Mnist => &MNIST_FILES,
            Dataset::Fashion => &FASHION_FILES,
        }
    }

    /// The base URLs of its mirrors, in the order they are tried.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            Dataset::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            Dataset::Fashion => &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        }
    }

    /// The name of its folder under the cache folder.
    pub fn folder(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::Fashion => "fashion-mnist",
        }
    }

    /// Its name, for people.
    pub fn title(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST",
            Dataset::Fashion => "Fashion-MNIST",
        }
    }
}

/// zeronn's folder in the platform's cache folder: `$XDG_CACHE_HOME/zeronn` (an absolute
/// `XDG_CACHE_HOME` only, as the XDG spec says) or `~/.cache/zeronn` on Linux and other
/// Unix systems, `~/Library/Caches/zeronn` on macOS, `%LOCALAPPDATA%\zeronn` on Windows.
/// `None` if the variables it is made of are unset.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library").join("Caches"))
    } else {
        var("XDG_CACHE_HOME")
            .filter(|p| p.is_absolute())
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("zeronn"))
}

/// Where `zeronn download` puts `dataset` by default: [`cache_dir`]`/mnist` or
/// `/fashion-mnist`.
pub fn default_dir(dataset: Dataset) -> Option<PathBuf> {
    cache_dir().map(|d| d.join(dataset.folder()))
}

/// What `zeronn download` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The dataset.
    pub dataset: Dataset,
    /// The folder to put it in (created if need be).
    pub out: PathBuf,
    /// Base URLs to try in order, each ending in `/`.
    pub mirrors: Vec<String>,
    /// Progress bars on a terminal.
    pub progress: bool,
}

impl Options {
    /// The options for `dataset` into `out`: the mirrors from `ZERONN_MIRROR` if it is set,
    /// else the dataset's own.
    pub fn new(dataset: Dataset, out: PathBuf, progress: bool) -> Options {
        let mirrors = match std::env::var(MIRROR_ENV) {
            Ok(m) if !m.trim().is_empty() => vec![m.trim().to_string()],
            _ => dataset.mirrors().iter().map(|m| m.to_string()).collect(),
        };
        Options {
            dataset,
            out,
            mirrors: mirrors
                .into_iter()
                .map(|m| if m.ends_with('/') { m } else { m + "/" })
                .collect(),
            progress,
        }
    }
}

/// How a file passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// It is the official `.gz` file.
    Official,
    /// It is compressed differently, and its decompressed content is the official one.
    Content,
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was already in place, and passed the check.
    Present(Match),
    /// It was downloaded and passed the check.
    Downloaded {
        /// From this URL.
        url: String,
        /// Bytes of the file.
        bytes: u64,
        /// Bytes a `.partial` file already held, which were kept (0: downloaded whole).
        resumed_at: u64,
        /// How it passed.
        matched: Match,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = |m: &Match| match m {
            Match::Official => "SHA-256 checked",
            Match::Content => "compressed anew; the SHA-256 of its content checked",
        };
        match self {
            Outcome::Present(m) => write!(f, "already there ({})", how(m)),
            Outcome::Downloaded {
                url,
                bytes,
                resumed_at,
                matched,
            } => {
                write!(f, "{bytes} bytes from {url}")?;
                if *resumed_at > 0 {
                    write!(f, " (resumed after {resumed_at} bytes)")?;
                }
                write!(f, " ({})", how(matched))
            }
        }
    }
}

/// Downloads the files of `opts.dataset` into `opts.out`, one after the other, calling
/// `report` with each file's name and outcome. Stops at the first file no mirror could give.
pub fn download(opts: &Options, mut report: impl FnMut(&str, &Outcome)) -> Result<(), String> {
    fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let agent = agent();
    for file in opts.dataset.files() {
        let outcome = fetch_file(&agent, file, opts)?;
        report(file.name, &outcome);
    }
    Ok(())
}

/// The HTTP client: no decoding of the body, statuses handled here, generous timeouts that
/// still end a stalled transfer.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .accept_encoding("identity")
        .user_agent(concat!("zeronn/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `NAME.partial` beside `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Brings one file into place: kept if it is there and sound, else from the first mirror that
/// gives a sound copy.
fn fetch_file(agent: &ureq::Agent, file: &RemoteFile, opts: &Options) -> Result<Outcome, String> {
    let path = opts.out.join(file.name);
    let partial = partial_path(&path);
    let shown = |p: &Path, e: &dyn fmt::Display| format!("{}: {e}", p.display());
    if path.is_file() {
        match check(&path, file).map_err(|e| shown(&path, &e))? {
            Ok(m) => return Ok(Outcome::Present(m)),
            Err(bad) => eprintln!("{}: {bad}; downloading it again", path.display()),
        }
    }
    let mut failures = Vec::new();
    for base in &opts.mirrors {
        let url = format!("{base}{}", file.name);
        // A resumed download whose whole fails the check is tried once more from the start
        // (the earlier part may have come from a mirror with other bytes).
        for attempt in 0..2 {
            let resumed_at = match get(agent, &url, &partial, file.name, opts.progress) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{url}: {e}"));
                    break;
                }
            };
            let result = check(&partial, file).map_err(|e| shown(&partial, &e))?;
            match result {
                Ok(matched) => {
                    let bytes = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
                    fs::rename(&partial, &path).map_err(|e| shown(&path, &e))?;
                    sync_dir(&opts.out);
                    return Ok(Outcome::Downloaded {
                        url,
                        bytes,
                        resumed_at,
                        matched,
                    });
                }
                Err(bad) => {
                    let _ = fs::remove_file(&partial);
                    if resumed_at > 0 && attempt == 0 {
                        eprintln!(
                            "{}: {bad} after resuming at byte {resumed_at}; downloading it whole",
                            file.name
                        );
                        continue;
                    }
                    failures.push(format!("{url}: {bad}; the download was deleted"));
                    break;
                }
            }
        }
    }
    Err(format!("{}: {}", file.name, failures.join("; ")))
}

/// Syncs a directory after a rename into it (Unix; best effort elsewhere).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Downloads `url` into `partial`, resuming what it holds; returns the bytes kept from before
/// (0 if the file was started over). Whatever arrived before a failure stays in `partial`.
fn get(
    agent: &ureq::Agent,
    url: &str,
    partial: &Path,
    name: &str,
    progress: bool,
) -> Result<u64, String> {
    let have = match fs::metadata(partial) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Err(format!("{} is not a regular file", partial.display())),
        Err(_) => 0,
    };
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let start = match status {
        206 if have > 0 => {
            let range = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if range_start(range) != Some(have) {
                // Not the part asked for: the next try starts over.
                let _ = fs::remove_file(partial);
                return Err(format!(
                    "asked for bytes {have}-, the server sent Content-Range {range:?}"
                ));
            }
            have
        }
        200 => 0,
        // The range starts at or past the end: the partial file may be complete already.
        416 if have > 0 => return Ok(have),
        _ => return Err(format!("HTTP {status}")),
    };
    let total = response.body().content_length().map(|n| start + n);
    let mut out = if start > 0 {
        OpenOptions::new().append(true).open(partial)
    } else {
        File::create(partial)
    }
    .map_err(|e| format!("{}: {e}", partial.display()))?;
    let bar = crate::progress::bytes(name, total, start, progress);
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = 0u64;
    let copied = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.sync_all();
                break Err(format!(
                    "the transfer broke off after {written} bytes ({e}); {} keeps {} bytes, \
                     which the next run resumes from",
                    partial.display(),
                    start + written
                ));
            }
        };
        if let Err(e) = out.write_all(&buf[..n]) {
            break Err(format!("{}: {e}", partial.display()));
        }
        written += n as u64;
        bar.inc(n as u64);
    };
    bar.finish_and_clear();
    copied?;
    out.sync_all()
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    Ok(start)
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/TOTAL` header.
fn range_start(header: &str) -> Option<u64> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// A file that failed the check: the hashes it should have had and the one it has.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// The file's name.
    pub name: &'static str,
    /// The official `.gz` file's SHA-256.
    pub expected: &'static str,
    /// The file's SHA-256.
    pub got: String,
    /// What its decompressed content is instead of the official one (a different hash, or not
    /// gzip at all).
    pub content: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SHA-256 mismatch: expected {}, got {} (nor is its content the official one: {})",
            self.expected, self.got, self.content
        )
    }
}

/// Checks the file at `path` against `file`'s hashes: `Ok(Ok(_))` if it passes,
/// `Ok(Err(_))` if it does not, `Err` if it cannot be read.
pub fn check(path: &Path, file: &RemoteFile) -> io::Result<Result<Match, Mismatch>> {
    let got = sha256(File::open(path)?)?;
    if got == file.gz_sha256 {
        return Ok(Ok(Match::Official));
    }
    // Another compression of the same content? Read no more than the official size and one
    // byte, so that a gzip bomb costs nothing.
    let decoder = flate2::read::MultiGzDecoder::new(io::BufReader::new(File::open(path)?));
    let content = match sha256(decoder.take(file.size + 1)) {
        Ok(h) if h == file.sha256 => return Ok(Ok(Match::Content)),
        Ok(h) => format!("decompressed, its SHA-256 is {h}, not {}", file.sha256),
        Err(e) => format!("it does not decompress: {e}"),
    };
    Ok(Err(Mismatch {
        name: file.name,
        expected: file.gz_sha256,
        got,
        content,
    }))
}

/// SHA-256 of everything `r` yields, in lowercase hex.
fn sha256(mut r: impl Read) -> io::Result<String> {
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => ctx.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
