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

#[cfg(test)]
mod tests {
    use super::py_repr;

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
}
