//! A picture of a digit as MNIST's digits were made: grey, a white digit on black, fitted into
//! 20 × 20 by its bounding box (anti-aliased), then centred by its centre of mass in 28 × 28.
//!
//! A picture of any size, grey or colour, PNG or JPEG: transparent parts count as white paper;
//! a light background (the mean of the border above middle grey) is inverted; the background
//! level (the border's median) is subtracted and the darkest-to-brightest range stretched to
//! 0–255. A 28 × 28 picture with a dark border is taken as an MNIST digit already, as is.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, Luma};

/// Side of an MNIST image.
pub const SIDE: usize = 28;
/// Side of the box MNIST fits a digit into.
pub const BOX: u32 = 20;

/// Reads a PNG or JPEG file into MNIST's format (see the module docs).
pub fn load(path: &Path) -> Result<[u8; SIDE * SIDE], String> {
    let img = image::open(path).map_err(|e| match e {
        image::ImageError::IoError(e) => format!("{}: {e}", path.display()),
        e => format!(
            "{}: not a PNG or JPEG picture we can read ({e})",
            path.display()
        ),
    })?;
    to_mnist(&img).map_err(|e| format!("{}: {e}", path.display()))
}

/// Converts a picture into MNIST's format (see the module docs).
pub fn to_mnist(img: &DynamicImage) -> Result<[u8; SIDE * SIDE], String> {
    let la = img.to_luma_alpha32f();
    let (w, h) = la.dimensions();
    if w == 0 || h == 0 {
        return Err("an empty picture".into());
    }
    // Grey 0–255 on white paper where transparent.
    let mut v: Vec<f32> = la
        .pixels()
        .map(|p| 255.0 * (p[0] * p[1] + (1.0 - p[1])))
        .collect();
    let border: Vec<f32> = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
        .map(|(x, y)| v[(y * w + x) as usize])
        .collect();
    let light = border.iter().sum::<f32>() / border.len() as f32 > 127.5;
    if light {
        v.iter_mut().for_each(|x| *x = 255.0 - *x);
    }
    if (w, h) == (SIDE as u32, SIDE as u32) && !light {
        let mut out = [0u8; SIDE * SIDE];
        for (o, x) in out.iter_mut().zip(&v) {
            *o = x.round().clamp(0.0, 255.0) as u8;
        }
        return Ok(out);
    }
    let mut sorted = border
        .iter()
        .map(|&x| if light { 255.0 - x } else { x })
        .collect::<Vec<_>>();
    sorted.sort_by(f32::total_cmp);
    let background = sorted[sorted.len() / 2];
    v.iter_mut().for_each(|x| *x = (*x - background).max(0.0));
    let top = v.iter().copied().fold(0.0f32, f32::max);
    if top < 16.0 {
        return Err("no digit: the picture is blank (one level throughout)".into());
    }
    v.iter_mut().for_each(|x| *x *= 255.0 / top);
    // Bounding box of the ink (above a tenth of the full level).
    let ink = |x: u32, y: u32| v[(y * w + x) as usize] > 25.5;
    let cols: Vec<u32> = (0..w).filter(|&x| (0..h).any(|y| ink(x, y))).collect();
    let rows: Vec<u32> = (0..h).filter(|&y| (0..w).any(|x| ink(x, y))).collect();
    let (x0, x1, y0, y1) = (cols[0], cols[cols.len() - 1], rows[0], rows[rows.len() - 1]);
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = GrayImage::from_fn(bw, bh, |x, y| {
        Luma([v[((y + y0) * w + x + x0) as usize]
            .round()
            .clamp(0.0, 255.0) as u8])
    });
    // Fit the longer side to 20, keeping the aspect ratio.
    let scale = BOX as f32 / bw.max(bh) as f32;
    let (nw, nh) = (
        ((bw as f32 * scale).round() as u32).clamp(1, BOX),
        ((bh as f32 * scale).round() as u32).clamp(1, BOX),
    );
    let small = imageops::resize(&crop, nw, nh, FilterType::Triangle);
    // Centre of mass into the middle of 28 × 28, keeping the box inside.
    let (mut m, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in small.enumerate_pixels() {
        let q = p[0] as f64;
        m += q;
        mx += q * (x as f64 + 0.5);
        my += q * (y as f64 + 0.5);
    }
    let half = SIDE as f64 / 2.0;
    let place = |com: f64, size: u32| -> i64 {
        let at = (half - com).round() as i64;
        at.clamp(0, (SIDE as u32 - size) as i64)
    };
    let (ox, oy) = if m > 0.0 {
        (place(mx / m, nw), place(my / m, nh))
    } else {
        (
            ((SIDE as u32 - nw) / 2) as i64,
            ((SIDE as u32 - nh) / 2) as i64,
        )
    };
    let mut out = [0u8; SIDE * SIDE];
    for (x, y, p) in small.enumerate_pixels() {
        out[(y as i64 + oy) as usize * SIDE + (x as i64 + ox) as usize] = p[0];
    }
    Ok(out)
}

/// An MNIST-format image as a grey PNG-ready picture.
pub fn to_picture(pixels: &[u8; SIDE * SIDE]) -> GrayImage {
    GrayImage::from_fn(SIDE as u32, SIDE as u32, |x, y| {
        Luma([pixels[y as usize * SIDE + x as usize]])
    })
}

/// The `k` most probable classes of `probabilities`, most probable first.
pub fn top(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut c: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    c.truncate(k);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white picture with a dark bar (a "1") off centre.
    fn bar(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
            let on = (40..52).contains(&x) && (20..120).contains(&y);
            Luma([if on { 20 } else { 240 }])
        }))
    }

    #[test]
    fn a_dark_bar_on_white_becomes_a_centred_white_bar_twenty_high() {
        let m = to_mnist(&bar(200, 150)).unwrap();
        let rows: Vec<usize> = (0..SIDE)
            .filter(|&y| (0..SIDE).any(|x| m[y * SIDE + x] > 128))
            .collect();
        assert_eq!(rows.len(), 20, "the longer side fits 20: {rows:?}");
        assert_eq!((rows[0], rows[19]), (4, 23), "centred vertically");
        let (mut s, mut sx) = (0.0, 0.0);
        for y in 0..SIDE {
            for x in 0..SIDE {
                s += m[y * SIDE + x] as f64;
                sx += m[y * SIDE + x] as f64 * (x as f64 + 0.5);
            }
        }
        assert!((sx / s - 14.0).abs() <= 0.75, "centre of mass {}", sx / s);
        assert_eq!(m[0], 0, "the background is black");
    }

    #[test]
    fn an_mnist_sized_dark_picture_is_taken_as_is_and_a_blank_one_refused() {
        let img = GrayImage::from_fn(28, 28, |x, y| Luma([((x * 7 + y * 3) % 200) as u8]));
        let m = to_mnist(&DynamicImage::ImageLuma8(img.clone())).unwrap();
        assert_eq!(&m[..], img.as_raw().as_slice());
        let blank = DynamicImage::ImageLuma8(GrayImage::from_pixel(50, 40, Luma([200])));
        assert!(to_mnist(&blank).unwrap_err().contains("blank"));
    }

    #[test]
    fn top_orders_by_probability() {
        assert_eq!(top(&[0.1, 0.6, 0.3], 2), vec![(1, 0.6), (2, 0.3)]);
    }
}
