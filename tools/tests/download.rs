//! `zeronn download` against a local HTTP server (a thread of this test on 127.0.0.1) that
//! serves the MNIST `.gz` files of the data folder: the four files arrive byte for byte, a
//! `.partial` file is resumed with a `Range` request, a server that ignores ranges starts
//! the file over, corrupt bytes are an error that leaves no file, a connection dropped
//! halfway is resumed by the next run, and commands without `--data` read the folder the
//! download filled by default.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::Scratch;

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// SHA-256 of the official `train-images-idx3-ubyte.gz` (what the corrupt test expects to be
/// named in the error).
const TRAIN_IMAGES_GZ_SHA256: &str =
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609";

/// The folder of the MNIST `.gz` files: `ZERONN_DATA`, else `../shared/data/mnist` from the
/// workspace root; `None` (the test is skipped, with a note) if the four `.gz` files are not
/// there, unless `ZERONN_REQUIRE_DATA=1`.
fn source_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = match std::env::var_os("ZERONN_DATA") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_relative() && !d.is_dir() {
                root.join(d)
            } else {
                d
            }
        }
        _ => root.join("../shared/data/mnist"),
    };
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        return Some(dir);
    }
    assert!(
        std::env::var("ZERONN_REQUIRE_DATA").as_deref() != Ok("1"),
        "ZERONN_REQUIRE_DATA=1 but {} lacks the four MNIST .gz files",
        dir.display()
    );
    eprintln!(
        "skipped: no MNIST .gz files in {} (set ZERONN_DATA to their folder)",
        dir.display()
    );
    None
}

/// How the test server misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Serves the files, and ranges of them with 206.
    Normal,
    /// Answers every request with the whole file and 200, ignoring `Range`.
    IgnoreRange,
    /// Serves the files with some bytes changed.
    Corrupt,
    /// The first request for `train-images-idx3-ubyte.gz` announces the whole file but sends
    /// half of it and closes the connection; later ones are served normally.
    DropHalfOnce,
}

/// One request the server received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    /// The lowercase header names and their values.
    headers: HashMap<String, String>,
    status: u16,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 (one request per connection), in a thread.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(dir: &Path, mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (dir, seen2, stop2) = (dir.to_path_buf(), seen.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (dir, seen, dropped) = (dir.clone(), seen2.clone(), dropped.clone());
                thread::spawn(move || serve(conn, &dir, mode, &seen, &dropped));
            }
        });
        Server { addr, seen, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers one request on `conn`.
fn serve(
    mut conn: TcpStream,
    dir: &Path,
    mode: Mode,
    seen: &Mutex<Vec<Seen>>,
    dropped: &AtomicBool,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let record = |status: u16| {
        seen.lock().unwrap().push(Seen {
            path: path.clone(),
            headers: headers.clone(),
            status,
        })
    };
    let body = match FILES.contains(&path.as_str()) {
        true => std::fs::read(dir.join(&path)).unwrap(),
        false => {
            record(404);
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    };
    let mut body = body;
    if mode == Mode::Corrupt {
        let mid = body.len() / 2;
        for b in &mut body[mid..mid + 64] {
            *b ^= 0x55;
        }
    }
    let len = body.len();
    let start = headers
        .get("range")
        .filter(|_| mode != Mode::IgnoreRange)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    // Content-Encoding: gzip as some object stores label .gz files: a client that decoded
    // it would not store the file byte for byte.
    let common = "Content-Type: application/gzip\r\nContent-Encoding: gzip\r\nConnection: close";
    let (head, part) = match start {
        Some(s) if s >= len => {
            record(416);
            (
                format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                     Content-Length: 0\r\n{common}\r\n\r\n"
                ),
                &body[..0],
            )
        }
        Some(s) => {
            record(206);
            (
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\n\
                     Content-Length: {}\r\n{common}\r\n\r\n",
                    len - 1,
                    len - s
                ),
                &body[s..],
            )
        }
        None => {
            record(200);
            (
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{common}\r\n\r\n"),
                &body[..],
            )
        }
    };
    let _ = conn.write_all(head.as_bytes());
    if mode == Mode::DropHalfOnce
        && path == FILES[0]
        && start.is_none()
        && !dropped.swap(true, Ordering::SeqCst)
    {
        let _ = conn.write_all(&part[..part.len() / 2]);
        let _ = conn.flush();
        let _ = conn.shutdown(Shutdown::Both);
        return;
    }
    let _ = conn.write_all(part);
    let _ = conn.flush();
}

/// Runs `zeronn` with `args`, the mirror `server`, no `ZERONN_DATA`, and the cache folder
/// (and home) under `home`.
fn zeronn(args: &[&str], server: &Server, home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zeronn"))
        .args(args)
        .env_remove("ZERONN_DATA")
        .env("ZERONN_MIRROR", server.url())
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("LOCALAPPDATA", home.join("cache"))
        .output()
        .unwrap()
}

/// A server of `src`'s files in `mode`, a scratch home named `tag`, and its `out` folder.
fn start(src: &Path, mode: Mode, tag: &str) -> (Server, Scratch, PathBuf) {
    let home = Scratch::new(tag);
    let out = home.path("out");
    (Server::start(src, mode), home, out)
}

/// `zeronn download --out out` from `server`.
fn download_into(out: &Path, server: &Server, home: &Scratch) -> Output {
    zeronn(
        &["download", "--out", out.to_str().unwrap()],
        server,
        &home.0,
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Fails unless `out` holds exactly the four files of `src`, byte for byte, and no
/// `.partial` file.
fn assert_same_files(src: &Path, out: &Path) {
    for f in FILES {
        let (a, b) = (
            std::fs::read(src.join(f)).unwrap(),
            std::fs::read(out.join(f)),
        );
        assert!(
            b.as_ref().is_ok_and(|b| *b == a),
            "{f} differs or is missing"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn downloads_the_four_files_byte_for_byte_and_skips_them_the_next_time() {
    let Some(src) = source_dir() else { return };
    let (server, home, out) = start(&src, Mode::Normal, "dl-plain");
    let o = download_into(&out, &server, &home);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_files(&src, &out);
    let said = stdout(&o);
    assert!(said.contains(out.to_str().unwrap()), "{said}");
    assert!(said.contains("zeronn train --data"), "{said}");
    let seen = server.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for s in &seen {
        assert_eq!(s.status, 200);
        assert!(!s.headers.contains_key("range"), "{s:?}");
        // Nothing but the file as it is may come back.
        let enc = s.headers.get("accept-encoding").map(String::as_str);
        assert!(matches!(enc, None | Some("identity")), "{s:?}");
    }
    // Again: the files are there and sound, nothing is fetched.
    let o = download_into(&out, &server, &home);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(server.seen().len(), 4);
    assert_eq!(
        stderr(&o).matches("already there").count(),
        4,
        "{}",
        stderr(&o)
    );
    assert_same_files(&src, &out);
}

#[test]
fn a_partial_file_is_resumed_with_a_range_request() {
    let Some(src) = source_dir() else { return };
    let (server, home, out) = start(&src, Mode::Normal, "dl-resume");
    std::fs::create_dir_all(&out).unwrap();
    let whole = std::fs::read(src.join(FILES[0])).unwrap();
    let half = whole.len() / 2;
    let partial = out.join(format!("{}.partial", FILES[0]));
    std::fs::write(&partial, &whole[..half]).unwrap();
    let o = download_into(&out, &server, &home);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_files(&src, &out);
    let seen = server.seen();
    let first = seen.iter().find(|s| s.path == FILES[0]).unwrap();
    assert_eq!(first.headers.get("range"), Some(&format!("bytes={half}-")));
    assert_eq!(first.status, 206);
    assert!(
        stderr(&o).contains(&format!("resumed after {half} bytes")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_server_that_ignores_the_range_gives_the_file_whole() {
    let Some(src) = source_dir() else { return };
    let (server, home, out) = start(&src, Mode::IgnoreRange, "dl-norange");
    std::fs::create_dir_all(&out).unwrap();
    let whole = std::fs::read(src.join(FILES[1])).unwrap();
    let partial = out.join(format!("{}.partial", FILES[1]));
    std::fs::write(&partial, &whole[..1000]).unwrap();
    let o = download_into(&out, &server, &home);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_files(&src, &out);
    let seen = server.seen();
    let s = seen.iter().find(|s| s.path == FILES[1]).unwrap();
    assert_eq!(
        s.headers.get("range").map(String::as_str),
        Some("bytes=1000-")
    );
    assert_eq!(s.status, 200);
}

#[test]
fn corrupt_bytes_are_an_error_naming_the_hashes_and_leave_no_file() {
    let Some(src) = source_dir() else { return };
    let (server, home, out) = start(&src, Mode::Corrupt, "dl-corrupt");
    let o = download_into(&out, &server, &home);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(FILES[0]), "{err}");
    assert!(err.contains("SHA-256 mismatch"), "{err}");
    assert!(
        err.contains(&format!("expected {TRAIN_IMAGES_GZ_SHA256}")),
        "{err}"
    );
    assert!(err.contains("got "), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_connection_dropped_halfway_is_resumed_by_the_next_run() {
    let Some(src) = source_dir() else { return };
    let (server, home, out) = start(&src, Mode::DropHalfOnce, "dl-drop");
    let o = download_into(&out, &server, &home);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(FILES[0]), "{}", stderr(&o));
    assert!(!out.join(FILES[0]).exists());
    let partial = out.join(format!("{}.partial", FILES[0]));
    let kept = std::fs::metadata(&partial).unwrap().len();
    let whole = std::fs::metadata(src.join(FILES[0])).unwrap().len();
    assert!(kept > 0 && kept < whole, "kept {kept} of {whole}");
    let o = download_into(&out, &server, &home);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_files(&src, &out);
    let seen = server.seen();
    let resumed = seen
        .iter()
        .find(|s| s.path == FILES[0] && s.headers.contains_key("range"))
        .expect("a Range request");
    assert_eq!(resumed.headers["range"], format!("bytes={kept}-"));
    assert_eq!(resumed.status, 206);
}

#[test]
fn commands_without_data_read_the_default_download_folder() {
    let Some(src) = source_dir() else { return };
    let server = Server::start(&src, Mode::Normal);
    let home = Scratch::new("dl-default");
    let o = zeronn(&["gradcheck", "--samples", "1"], &server, &home.0);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for needle in ["zeronn download", "--data", "ZERONN_DATA"] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    let o = zeronn(&["download"], &server, &home.0);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    assert!(said.contains("train with: zeronn train\n"), "{said}");
    let dir = said
        .lines()
        .find_map(|l| l.strip_prefix("MNIST is in "))
        .expect("where the files are");
    assert!(Path::new(dir).starts_with(&home.0), "{dir}");
    assert!(dir.ends_with("mnist"), "{dir}");
    assert_same_files(&src, Path::new(dir));
    let o = zeronn(&["gradcheck", "--samples", "1"], &server, &home.0);
    assert!(o.status.success(), "{}", stderr(&o));
}
