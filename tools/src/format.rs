//! Number formatting as the book's Python prints it.

/// Formats like Python's `repr(float)`: the shortest string that reads back to the same
/// value, in scientific notation with a two-digit exponent below 1e-4 or from 1e16
/// (`2.0366530027062157e-06`), otherwise positional with at least one decimal (`0.0975`, `1.0`).
pub fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..16).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let s = format!("{x}");
        if s.contains('.') { s } else { format!("{s}.0") }
    }
}

/// A NumPy `.npy` file (format 1.0) holding `values` as a little-endian float32 array of
/// `shape` (row-major), as `numpy.load` reads it.
pub fn npy_f32(values: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6), version (2) and length (2), then the header padded to 64 bytes with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{npy_f32, py_repr};

    #[test]
    fn matches_python_repr() {
        assert_eq!(py_repr(2.0366530027062157e-06), "2.0366530027062157e-06");
        assert_eq!(py_repr(1.3961877864121507e-07), "1.3961877864121507e-07");
        assert_eq!(py_repr(0.09673333333333334), "0.09673333333333334");
        assert_eq!(py_repr(0.0975), "0.0975");
        assert_eq!(py_repr(1.0), "1.0");
        assert_eq!(py_repr(0.0001), "0.0001");
        assert_eq!(py_repr(0.00001), "1e-05");
        assert_eq!(py_repr(1e16), "1e+16");
        assert_eq!(py_repr(123.5), "123.5");
        assert_eq!(py_repr(0.0), "0.0");
    }

    #[test]
    fn npy_header_is_padded_to_64_bytes_and_describes_the_array() {
        let b = npy_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let header_len = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + header_len]).unwrap();
        assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (2, 3)"));
        assert!(header.ends_with('\n'));
        assert_eq!(b.len(), 10 + header_len + 24);
        assert_eq!(b[10 + header_len + 20..], 6.0f32.to_le_bytes());
    }
}
