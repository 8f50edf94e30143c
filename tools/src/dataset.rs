//! Your own data for `train` and `eval`: a CSV file, a NumPy `.npz` archive (arrays `x` and
//! `t`, as `numpy.savez(path, x=x, t=t)` writes it), or a pair of `.npy` files given as
//! `x.npy,t.npy`. Any number of features and of classes (labels 0 to 255).
//!
//! - CSV: one sample per row, comma-separated; a first row that is not all numbers is a
//!   header. The label is the column `--label` names (by header name, or by number from 1),
//!   else a column called `label`, else the last one. Features are used as they are.
//! - NumPy: `x` of float32 or float64 is used as it is; `x` of uint8 is taken as image pixels
//!   and scaled to [0, 1] as MNIST's are (and the fast paths for images apply). `x` is
//!   `N × features`, `N × H × W` or `N × C × H × W` (then conv nets take it as images); `t` is
//!   `N` integers.
//!
//! Errors name the file, and the row and column (CSV) or the array and element (NumPy).

use std::io::Read;
use std::path::Path;

use zeronn::layers::Dims;

use crate::mnist::Split;

/// A data file read: the samples and their shape.
#[derive(Debug)]
pub struct Data {
    /// The samples and labels.
    pub split: Split,
    /// One sample's shape.
    pub dims: Dims,
    /// Where sample `i`'s label is, for messages: the CSV line and column, or the array.
    origin: Origin,
}

#[derive(Debug, Default)]
enum Origin {
    /// Line of each sample, and the label column (from 1) and its name.
    Csv(Vec<usize>, usize, String),
    #[default]
    Numpy,
}

impl Data {
    /// Fails naming the first sample whose label is not below `classes` (a model's scores).
    pub fn check_labels(&self, shown: &str, classes: usize) -> Result<(), String> {
        let Some(i) = self.split.t.iter().position(|&t| t as usize >= classes) else {
            return Ok(());
        };
        let t = self.split.t[i];
        let at = match &self.origin {
            Origin::Csv(lines, col, name) => format!("row {}, column {col} ({name})", lines[i]),
            Origin::Numpy => format!("t[{i}]"),
        };
        Err(format!(
            "{shown}: {at}: label {t} is out of range: the model scores {classes} classes (0 to {})",
            classes.saturating_sub(1)
        ))
    }
}

/// Most bytes read from one data file (a larger one is refused before it is read).
pub const MAX_FILE: u64 = 8 << 30;

/// Whether `--data` names your own data (a file, or an `x.npy,t.npy` pair) rather than the
/// MNIST directory.
pub fn is_own(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.contains(",") || path.is_file() || has_ext(path, "csv") || has_ext(path, "npz")
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Reads a data file (see the module docs); `label` is the CSV label column.
pub fn load(path: &Path, label: Option<&str>) -> Result<Data, String> {
    let s = path.to_string_lossy();
    if let Some((x, t)) = s.split_once(',') {
        let (xb, tb) = (read(Path::new(x))?, read(Path::new(t))?);
        return from_arrays(
            parse_npy(&xb).map_err(|e| format!("{x}: {e}"))?,
            parse_npy(&tb).map_err(|e| format!("{t}: {e}"))?,
            &|what| format!("{}: {what}", if what.starts_with('x') { x } else { t }),
        );
    }
    let bytes = read(path)?;
    let shown = path.display().to_string();
    if has_ext(path, "npz") || bytes.starts_with(b"PK\x03\x04") {
        let (x, t) = npz(&bytes).map_err(|e| format!("{shown}: {e}"))?;
        return from_arrays(x, t, &|what| format!("{shown}: {what}"));
    }
    if has_ext(path, "npy") {
        return Err(format!(
            "{shown}: a .npy file holds one array; give the features and labels as x.npy,t.npy, or one .npz"
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{shown}: not a CSV file (not text), nor a .npz archive"))?;
    csv(&text, label).map_err(|e| format!("{shown}: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{shown}: {} bytes, more than {MAX_FILE}",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{shown}: {e}"))
}

/// A CSV table (see the module docs).
pub fn csv(text: &str, label: Option<&str>) -> Result<Data, String> {
    let rows: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            (
                i + 1,
                l.split(',').map(|c| c.trim().trim_matches('"')).collect(),
            )
        })
        .collect();
    let Some((_, first)) = rows.first() else {
        return Err("no rows".into());
    };
    let header = first.iter().any(|c| c.parse::<f64>().is_err());
    let cols = first.len();
    if cols < 2 {
        return Err("one column: a CSV needs features and a label".into());
    }
    let names: Vec<String> = if header {
        first.iter().map(|c| c.to_string()).collect()
    } else {
        (1..=cols).map(|i| format!("column {i}")).collect()
    };
    let at = match label {
        Some(l) => match names.iter().position(|n| n == l) {
            Some(i) => i,
            None => match l.parse::<usize>() {
                Ok(n) if (1..=cols).contains(&n) => n - 1,
                _ => {
                    return Err(format!(
                        "--label {l}: no such column (the columns: {})",
                        names.join(", ")
                    ));
                }
            },
        },
        None => names
            .iter()
            .position(|n| n.eq_ignore_ascii_case("label"))
            .unwrap_or(cols - 1),
    };
    let body = &rows[usize::from(header)..];
    if body.is_empty() {
        return Err("a header and no rows".into());
    }
    let features = cols - 1;
    let mut floats = Vec::with_capacity(body.len() * features);
    let mut t = Vec::with_capacity(body.len());
    for (line, cells) in body {
        if cells.len() != cols {
            return Err(format!(
                "row {line} has {} columns, the {} has {cols}",
                cells.len(),
                if header { "header" } else { "first row" }
            ));
        }
        for (c, cell) in cells.iter().enumerate() {
            let where_ = || format!("row {line}, column {} ({})", c + 1, names[c]);
            if c == at {
                let v: u8 = cell.parse().map_err(|_| {
                    format!(
                        "{}: label '{cell}' is not a class number from 0 to 255",
                        where_()
                    )
                })?;
                t.push(v);
            } else {
                let v: f32 = cell
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| format!("{}: '{cell}' is not a number", where_()))?;
                floats.push(v);
            }
        }
    }
    Ok(Data {
        split: Split::from_floats(floats, t, features),
        dims: Dims::flat(features),
        origin: Origin::Csv(
            body.iter().map(|(l, _)| *l).collect(),
            at + 1,
            names[at].clone(),
        ),
    })
}

/// An array of a `.npy` file: its shape and values.
#[derive(Debug)]
pub enum Array {
    /// float32 or float64 values, as f32.
    Float(Vec<usize>, Vec<f32>),
    /// uint8 values.
    Bytes(Vec<usize>, Vec<u8>),
    /// Integer values (labels).
    Int(Vec<usize>, Vec<i64>),
}

impl Array {
    fn shape(&self) -> &[usize] {
        match self {
            Array::Float(s, _) | Array::Bytes(s, _) | Array::Int(s, _) => s,
        }
    }
}

/// Parses the bytes of a `.npy` file (format versions 1 to 3, C order; float32, float64,
/// (u)int8 to (u)int64, little-endian).
pub fn parse_npy(b: &[u8]) -> Result<Array, String> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err("not a .npy array (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    let header = b
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or("no descr in the .npy header")?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(
            "Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)".into(),
        );
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or("no shape in the .npy header")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape ({shape_text})")))
        .collect::<Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    let data = &b[start + len..];
    // The last character is the size (by characters: the header may hold any text).
    let cut = descr.char_indices().last().map_or(0, |(i, _)| i);
    if cut < 2 {
        return Err(format!("dtype {descr} is not supported"));
    }
    let (kind, size) = descr.split_at(cut);
    let little = descr.starts_with('<') || descr.starts_with('|') || descr.starts_with('=');
    let code = kind.trim_start_matches(['<', '|', '=', '>']);
    let width: usize = size.parse().unwrap_or(0);
    if !little && width > 1 {
        return Err(format!(
            "dtype {descr}: big-endian arrays are not supported"
        ));
    }
    let need = n.checked_mul(width.max(1)).ok_or("shape too large")?;
    if data.len() != need {
        return Err(format!(
            "{} bytes of data for shape {shape:?} of {descr} ({need} expected)",
            data.len()
        ));
    }
    let words = |w: usize| data.chunks_exact(w);
    Ok(match (code, width) {
        ("f", 4) => Array::Float(
            shape,
            words(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        ("f", 8) => Array::Float(
            shape,
            words(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                .collect(),
        ),
        ("u", 1) => Array::Bytes(shape, data.to_vec()),
        ("i", 1) => Array::Int(shape, data.iter().map(|&v| v as i8 as i64).collect()),
        ("i", 2) => Array::Int(
            shape,
            words(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
        ),
        ("u", 2) => Array::Int(
            shape,
            words(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
        ),
        ("i", 4) => Array::Int(
            shape,
            words(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect(),
        ),
        ("u", 4) => Array::Int(
            shape,
            words(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect(),
        ),
        ("i", 8) => Array::Int(
            shape,
            words(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        ("u", 8) => Array::Int(
            shape,
            words(8)
                .map(|c| {
                    u64::from_le_bytes(c.try_into().unwrap_or_default()).min(i64::MAX as u64) as i64
                })
                .collect(),
        ),
        _ => {
            return Err(format!(
                "dtype {descr} is not supported (float32, float64, uint8, or integers for labels)"
            ));
        }
    })
}

/// The arrays `x` and `t` of a `.npz` archive.
fn npz(bytes: &[u8]) -> Result<(Array, Array), String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a .npz archive ({e})"))?;
    let mut get = |name: &str| -> Result<Array, String> {
        let mut f = zip.by_name(&format!("{name}.npy")).map_err(|_| {
            format!("no array `{name}` (save with numpy.savez(path, x=features, t=labels))")
        })?;
        // What the entry may hold: deflate expands at most about 1032 times its compressed
        // bytes, which are at most the archive's (the header's sizes are only claims), so more
        // than that (or than MAX_FILE) is a damaged or hostile archive, refused as it is read.
        let bound = f
            .compressed_size()
            .min(bytes.len() as u64)
            .saturating_mul(1032)
            .saturating_add(1024)
            .min(MAX_FILE);
        if f.size() > bound {
            return Err(format!(
                "{name}.npy: it claims {} bytes, more than its {} compressed bytes can hold (or {MAX_FILE})",
                f.size(),
                f.compressed_size()
            ));
        }
        // Room for what the header claims, up to 64 MiB; beyond, the vector grows as data comes.
        let mut b = Vec::with_capacity(f.size().min(64 << 20) as usize);
        f.by_ref()
            .take(bound + 1)
            .read_to_end(&mut b)
            .map_err(|e| format!("{name}.npy: {e}"))?;
        if b.len() as u64 > bound {
            return Err(format!(
                "{name}.npy: decompresses to more than {bound} bytes (a damaged or hostile archive)"
            ));
        }
        parse_npy(&b).map_err(|e| format!("{name}.npy: {e}"))
    };
    Ok((get("x")?, get("t")?))
}

/// Features `x` and labels `t` as a split, checked.
fn from_arrays(x: Array, t: Array, at: &dyn Fn(&str) -> String) -> Result<Data, String> {
    let xs = x.shape().to_vec();
    let (n, dims) = match xs[..] {
        [n, f] => (n, Dims::flat(f)),
        [n, h, w] => (n, Dims::new(1, h, w)),
        [n, c, h, w] => (n, Dims::new(c, h, w)),
        _ => {
            return Err(at(&format!(
                "x has shape {xs:?}; it must be N × features, N × H × W or N × C × H × W"
            )));
        }
    };
    let (ts, labels) = match t {
        Array::Int(s, v) => (s, v),
        Array::Bytes(s, v) => (s, v.into_iter().map(i64::from).collect()),
        Array::Float(..) => return Err(at("t must hold integers (the class of each sample)")),
    };
    if !(ts.len() == 1 || (ts.len() == 2 && ts[1] == 1)) || ts[0] != n {
        return Err(at(&format!(
            "t has shape {ts:?}; x has {n} samples, so t must be ({n},)"
        )));
    }
    if n == 0 || dims.is_empty() {
        return Err(at("x holds no samples"));
    }
    let mut out = Vec::with_capacity(n);
    for (k, &v) in labels.iter().enumerate() {
        let v = u8::try_from(v)
            .map_err(|_| at(&format!("t[{k}] = {v} is not a class number from 0 to 255")))?;
        out.push(v);
    }
    let split = match x {
        Array::Float(_, v) => {
            if let Some(k) = v.iter().position(|v| !v.is_finite()) {
                return Err(at(&format!(
                    "x holds {} at sample {}, feature {}",
                    v[k],
                    k / dims.len(),
                    k % dims.len()
                )));
            }
            Split::from_floats(v, out, dims.len())
        }
        Array::Bytes(_, raw) => Split {
            raw,
            t: out,
            pixels: dims.len(),
            ..Default::default()
        },
        Array::Int(..) => {
            return Err(at(
                "x holds integers; give float32, float64 or uint8 (pixels)",
            ));
        }
    };
    Ok(Data {
        split,
        dims,
        origin: Origin::Numpy,
    })
}

/// Classes in the data: one more than the largest label.
pub fn classes(splits: &[&Split]) -> usize {
    splits
        .iter()
        .flat_map(|s| s.t.iter())
        .map(|&t| t as usize + 1)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_a_header_and_a_named_label_column() {
        let d = csv("a,label,b\n1.5,2,3\n-1,0,4e-3\n", None).unwrap();
        assert_eq!(d.split.floats, vec![1.5, 3.0, -1.0, 4e-3]);
        assert_eq!(d.split.t, vec![2, 0]);
        assert_eq!(d.dims, Dims::flat(2));
        // No header: the last column; --label by number.
        let d = csv("1,2,3\n4,5,6\n", None).unwrap();
        assert_eq!((d.split.t.clone(), d.split.floats.len()), (vec![3, 6], 4));
        let d = csv("1,2,3\n4,5,6\n", Some("1")).unwrap();
        assert_eq!(d.split.t, vec![1, 4]);
    }

    #[test]
    fn csv_errors_name_the_row_and_column() {
        let e = csv("x,y,label\n1,2,0\n3,oops,1\n", None).unwrap_err();
        assert!(
            e.contains("row 3, column 2 (y)") && e.contains("'oops'"),
            "{e}"
        );
        let e = csv("x,y,label\n1,2,0\n3,1\n", None).unwrap_err();
        assert!(e.contains("row 3 has 2 columns, the header has 3"), "{e}");
        let e = csv("x,label\n1,2.5\n", None).unwrap_err();
        assert!(
            e.contains("row 2, column 2 (label)") && e.contains("'2.5'"),
            "{e}"
        );
        let e = csv("x,label\n1,-1\n", None).unwrap_err();
        assert!(e.contains("not a class number"), "{e}");
        let e = csv("x,y\n1,2\n", Some("z")).unwrap_err();
        assert!(e.contains("--label z") && e.contains("x, y"), "{e}");
    }

    /// A `.npy` of int64 values.
    fn npy_i64(values: &[i64]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
            values.len()
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        values
            .iter()
            .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        b
    }

    #[test]
    fn npy_arrays_of_floats_and_labels() {
        let x = crate::format::npy_f32(&[0.5, 1.0, 2.0, 3.0, 4.0, 5.0], &[3, 2]);
        let Array::Float(s, v) = parse_npy(&x).unwrap() else {
            panic!("floats")
        };
        assert_eq!((s, v[5]), (vec![3, 2], 5.0));
        let arrays = |t: &[i64]| {
            from_arrays(
                parse_npy(&x).unwrap(),
                parse_npy(&npy_i64(t)).unwrap(),
                &|w| w.to_string(),
            )
        };
        let d = arrays(&[1, 0, 7]).unwrap();
        assert_eq!((d.split.t.clone(), d.split.pixels), (vec![1, 0, 7], 2));
        assert!(d.split.is_float());
        // Labels that do not fit, a wrong count, a truncated array.
        assert!(arrays(&[1, 300, 0]).unwrap_err().contains("t[1] = 300"));
        assert!(arrays(&[1, 0]).unwrap_err().contains("must be (3,)"));
        assert!(
            parse_npy(&x[..x.len() - 1])
                .unwrap_err()
                .contains("bytes of data")
        );
    }

    /// A .npz of `x` and `t` (stored, not compressed) whose zip headers claim `claim` bytes
    /// for `x.npy`: the sizes (uncompressed, and if `compressed` also the compressed one) of
    /// its local header and of its central directory entry.
    fn npz_claiming(claim: u32, compressed: bool) -> Vec<u8> {
        use std::io::Write;
        let x = crate::format::npy_f32(&[1.0, 2.0], &[1, 2]);
        let t = npy_i64(&[0]);
        let mut out = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, b) in [("x.npy", &x), ("t.npy", &t)] {
            z.start_file(name, opts).unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap();
        let mut b = out.into_inner();
        let at = |b: &[u8], sig: &[u8]| b.windows(4).position(|w| w == sig).unwrap();
        let (local, central) = (at(&b, b"PK\x03\x04"), at(&b, b"PK\x01\x02"));
        for (off, sizes) in [(local, (18, 22)), (central, (20, 24))] {
            b[off + sizes.1..off + sizes.1 + 4].copy_from_slice(&claim.to_le_bytes());
            if compressed {
                b[off + sizes.0..off + sizes.0 + 4].copy_from_slice(&claim.to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn an_npz_claiming_a_huge_array_is_refused_before_allocating_it() {
        // Found by the fuzzer: a 1.7 KB archive whose headers claimed 4 GB (first the size,
        // then the compressed size too) had 4 GB allocated for it.
        for compressed in [false, true] {
            let e = npz(&npz_claiming(0xff00_0000, compressed)).unwrap_err();
            assert!(e.contains("claims 4278190080 bytes"), "{e}");
        }
        // The same archive with honest sizes reads.
        let honest = npz_claiming(
            crate::format::npy_f32(&[1.0, 2.0], &[1, 2]).len() as u32,
            true,
        );
        assert!(npz(&honest).is_ok());
    }
}
