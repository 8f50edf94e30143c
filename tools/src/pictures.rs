//! Pictures of a trained conv net, the book's chapter 7 and 8 figures:
//!
//! | experiment | the book's script | what |
//! | --- | --- | --- |
//! | `filters` | `ch07/visualize_filter.py` | the first Convolution's filters (channel 0) before training (random, std 0.01) and after (the model's), each scaled to its own range, dark = large |
//! | `misclassified` | `ch08/misclassified_mnist.py` | the test accuracy, then the first 20 misclassified test images with their label and the net's answer |
//!
//! A picture is a stack of sections, each a title over a grid of tiles; a tile is a small gray
//! image drawn with the book's `gray_r` colour map (`imshow` scales every tile to its own
//! minimum and maximum: the minimum white, the maximum black), blown up to square pixels.

use std::cmp::max;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use zeronn::{Layer, Net, NetSpec, WeightInit, random};

use crate::mnist::Mnist;
use crate::modelfile;

type Result<T> = std::result::Result<T, String>;

/// A gray image: `px[y * width + x]`, 0 black to 255 white.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Gray levels, row after row.
    pub px: Vec<u8>,
    /// Text under the tile (empty: none).
    pub caption: String,
}

impl Tile {
    /// `values` (`height × width`, row after row) in the `gray_r` colour map scaled to their own
    /// range: the smallest white, the largest black (all equal: white).
    pub fn gray_r(values: &[f32], height: usize, width: usize) -> Tile {
        assert_eq!(values.len(), height * width, "a tile of {height}×{width}");
        let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let span = hi - lo;
        let px = values
            .iter()
            .map(|&v| {
                let f = if span > 0.0 { (v - lo) / span } else { 0.0 };
                (255.0 - 255.0 * f).round().clamp(0.0, 255.0) as u8
            })
            .collect();
        Tile {
            width,
            height,
            px,
            caption: String::new(),
        }
    }

    /// With `caption` under it.
    pub fn captioned(mut self, caption: impl Into<String>) -> Tile {
        self.caption = caption.into();
        self
    }
}

/// A title over a grid of tiles, `cols` to a row, each pixel drawn `scale × scale`.
#[derive(Debug, Clone)]
pub struct Section {
    /// Over the grid.
    pub title: String,
    /// The tiles, row after row.
    pub tiles: Vec<Tile>,
    /// Tiles to a row.
    pub cols: usize,
    /// Screen pixels per tile pixel, in each direction.
    pub scale: usize,
}

const MARGIN: usize = 12;
const GAP: usize = 4;
const TITLE_H: usize = 28;
const CAPTION_H: usize = 20;

impl Section {
    fn cell(&self) -> (usize, usize) {
        let w = self.tiles.iter().map(|t| t.width).max().unwrap_or(0) * self.scale;
        let h = self.tiles.iter().map(|t| t.height).max().unwrap_or(0) * self.scale;
        let caption = if self.tiles.iter().any(|t| !t.caption.is_empty()) {
            CAPTION_H
        } else {
            0
        };
        (w + GAP, h + caption + GAP)
    }

    fn size(&self) -> (usize, usize) {
        let (cw, ch) = self.cell();
        let cols = self.cols.max(1).min(self.tiles.len().max(1));
        let rows = self.tiles.len().div_ceil(self.cols.max(1));
        // About 9 pixels a character of the 17-pixel title font.
        let title_w = self.title.chars().count() * 9;
        (max(cols * cw, title_w), TITLE_H + rows * ch)
    }
}

/// Draws `sections`, one under the other, into a PNG at `path`.
pub fn draw(path: &Path, sections: &[Section]) -> Result<()> {
    crate::plot::fonts();
    let width = sections
        .iter()
        .map(|s| s.size().0)
        .max()
        .unwrap_or(0)
        .max(360)
        + 2 * MARGIN;
    let height = sections.iter().map(|s| s.size().1).sum::<usize>() + 2 * MARGIN;
    let fail =
        |e: &dyn std::fmt::Display| format!("{}: cannot draw the picture: {e}", path.display());
    let root = BitMapBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut top = MARGIN;
    for s in sections {
        root.draw(&Text::new(
            s.title.clone(),
            (MARGIN as i32, (top + 4) as i32),
            ("sans-serif", 17).into_font().color(&BLACK),
        ))
        .map_err(|e| fail(&e))?;
        let (cw, ch) = s.cell();
        for (i, t) in s.tiles.iter().enumerate() {
            let (x0, y0) = (
                MARGIN + (i % s.cols.max(1)) * cw,
                top + TITLE_H + (i / s.cols.max(1)) * ch,
            );
            for y in 0..t.height * s.scale {
                for x in 0..t.width * s.scale {
                    let v = t.px[(y / s.scale) * t.width + x / s.scale];
                    root.draw_pixel(((x0 + x) as i32, (y0 + y) as i32), &RGBColor(v, v, v))
                        .map_err(|e| fail(&e))?;
                }
            }
            if !t.caption.is_empty() {
                root.draw(&Text::new(
                    t.caption.clone(),
                    (x0 as i32, (y0 + t.height * s.scale + 3) as i32),
                    ("sans-serif", 14).into_font().color(&BLACK),
                ))
                .map_err(|e| fail(&e))?;
            }
        }
        top += s.size().1;
    }
    root.present().map_err(|e| fail(&e))
}

/// The filters of a Convolution `(FN, C, FH, FW)`, channel 0 of each as a tile
/// (`visualize_filter.py` shows `filters[i, 0]`).
pub fn filter_tiles(w: &[f32], fh: usize, fw: usize, channels: usize) -> Vec<Tile> {
    w.chunks_exact(channels * fh * fw)
        .map(|f| Tile::gray_r(&f[..fh * fw], fh, fw))
        .collect()
}

/// A model read from `path`, as a net on its own parameter buffer.
fn load_net(path: &Path) -> Result<Net<f32, Vec<f32>>> {
    let bytes = modelfile::read(path)?;
    let model = modelfile::parse(&bytes)?;
    let net = model
        .net()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Net::with_state(*net.spec(), net.params().to_vec(), net.state().to_vec())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `experiment filters`: the first layer's filters before training (a fresh net of the model's
/// shape, std 0.01 from `seed`, as the book's SimpleConvNet starts) and after (the model's).
pub fn filters(model: &Path, out: &Path, seed: u64, log: &mut dyn Write) -> Result<Vec<PathBuf>> {
    let net = load_net(model)?;
    let spec: NetSpec = *net.spec();
    let Some(Layer::Convolution(c)) = spec.layers().first() else {
        return Err(format!(
            "{}: the first layer is not a Convolution; `experiment filters` shows a conv net's first filters",
            model.display()
        ));
    };
    let after = net.tensor("W1").ok_or("the model has no W1")?;
    let mut fresh = Net::with_state(
        spec,
        vec![0.0f32; spec.param_len()],
        vec![0.0; spec.state_len()],
    )
    .map_err(|e| e.to_string())?;
    fresh.init(&mut random::seeded(seed), WeightInit::Std(0.01));
    let before = fresh.tensor("W1").ok_or("the model has no W1")?;
    let (fh, fw, ch) = (c.kernel_h, c.kernel_w, c.input.channels);
    let channel = if ch > 1 { ", channel 0" } else { "" };
    let sections = [
        Section {
            title: format!(
                "W1 before training: {} random filters {fh}×{fw}{channel} (std 0.01, seed {seed})",
                c.filters
            ),
            tiles: filter_tiles(before, fh, fw, ch),
            cols: 8,
            scale: 10,
        },
        Section {
            title: format!("W1 after training ({})", file_name(model)),
            tiles: filter_tiles(after, fh, fw, ch),
            cols: 8,
            scale: 10,
        },
    ];
    std::fs::create_dir_all(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let png = out.join("filters.png");
    draw(&png, &sections)?;
    writeln!(
        log,
        "{} filters {fh}×{fw}{channel}: before (std 0.01) and after training",
        c.filters
    )
    .map_err(|e| e.to_string())?;
    Ok(vec![png])
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

/// Every test image's predicted digit, by chunks of 100 (the book's batch).
pub fn predictions<P: AsRef<[f32]>>(net: &Net<f32, P>, data: &Mnist) -> Result<Vec<u8>> {
    const CHUNK: usize = 100;
    let test = &data.test;
    let classes = net.spec().output_size();
    let mut ws = vec![0.0f32; net.spec().min_predict_workspace_len(CHUNK)];
    let mut x = vec![0.0f32; CHUNK * test.pixels];
    let mut y = Vec::with_capacity(test.len());
    for lo in (0..test.len()).step_by(CHUNK) {
        let hi = (lo + CHUNK).min(test.len());
        let x = &mut x[..(hi - lo) * test.pixels];
        test.images_f32(lo, hi, x);
        let scores = net.predict(x, &mut ws).map_err(|e| e.to_string())?;
        y.extend(scores.chunks_exact(classes).map(argmax));
    }
    Ok(y)
}

fn argmax(row: &[f32]) -> u8 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u8
}

/// `experiment misclassified`: the test accuracy as the book prints it, then the first 20
/// misclassified test images in a 4 × 5 grid, each captioned `label → answer`; also every
/// misclassified image in a CSV.
pub fn misclassified(
    model: &Path,
    data: &Mnist,
    out: &Path,
    log: &mut dyn Write,
) -> Result<Vec<PathBuf>> {
    const MAX_VIEW: usize = 20;
    let net = load_net(model)?;
    let d = net.spec().input_dims();
    if net.spec().input_size() != data.test.pixels || net.spec().output_size() != 10 {
        return Err(format!(
            "{}: the model is {}, the data needs {} inputs (pixels) and 10 outputs (digits)",
            model.display(),
            crate::describe::sizes(net.spec()),
            data.test.pixels
        ));
    }
    let (h, w) = if d.height * d.width == data.test.pixels {
        (d.height, d.width)
    } else {
        (28, data.test.pixels / 28)
    };
    let io = |e: std::io::Error| format!("writing the log: {e}");
    writeln!(log, "calculating test accuracy ... ").map_err(io)?;
    let y = predictions(&net, data)?;
    let wrong: Vec<usize> = (0..y.len()).filter(|&i| y[i] != data.test.t[i]).collect();
    let acc = (y.len() - wrong.len()) as f64 / y.len() as f64;
    writeln!(log, "test accuracy:{}", crate::format::py_repr(acc)).map_err(io)?;

    let mut csv = String::from("view,index,label,inference\n");
    let mut pairs = Vec::new();
    for (v, &i) in wrong.iter().enumerate() {
        let _ = writeln!(csv, "{},{i},{},{}", v + 1, data.test.t[i], y[i]);
        if v < MAX_VIEW {
            pairs.push(format!("{}: ({}, {})", v + 1, data.test.t[i], y[i]));
        }
    }
    writeln!(log, "======= misclassified result =======").map_err(io)?;
    writeln!(log, "{{view index: (label, inference), ...}}").map_err(io)?;
    writeln!(log, "{{{}}}", pairs.join(", ")).map_err(io)?;

    let mut pixels = vec![0.0f32; data.test.pixels];
    let tiles = wrong
        .iter()
        .take(MAX_VIEW)
        .enumerate()
        .map(|(v, &i)| {
            crate::pixels::to_unit_f32(data.test.image_raw(i), &mut pixels);
            Tile::gray_r(&pixels, h, w).captioned(format!(
                "{}: {} → {}",
                v + 1,
                data.test.t[i],
                y[i]
            ))
        })
        .collect();
    let section = Section {
        title: format!(
            "{} of {} test images misclassified (label → answer)",
            wrong.len(),
            y.len()
        ),
        tiles,
        cols: 5,
        scale: 3,
    };
    std::fs::create_dir_all(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let (png, csv_path) = (out.join("misclassified.png"), out.join("misclassified.csv"));
    draw(&png, &[section])?;
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    Ok(vec![csv_path, png])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_r_makes_the_smallest_white_and_the_largest_black() {
        let t = Tile::gray_r(&[-1.0, 0.0, 1.0, 0.5], 2, 2);
        assert_eq!(t.px, vec![255, 128, 0, 64]);
        assert_eq!(Tile::gray_r(&[3.0; 4], 2, 2).px, vec![255; 4]);
    }

    #[test]
    fn filter_tiles_take_channel_0_of_each_filter() {
        // 2 filters, 2 channels, 1×2: filter f channel c holds [f, c, ...].
        let w = [0.0, 1.0, 9.0, -9.0, 1.0, 0.0, -9.0, 9.0];
        let t = filter_tiles(&w, 1, 2, 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].px, vec![255, 0]);
        assert_eq!(t[1].px, vec![0, 255]);
    }

    #[test]
    fn a_picture_has_the_size_of_its_grid() {
        let dir = std::env::temp_dir().join(format!("zeronn-pictures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("p.png");
        let tiles = (0..7)
            .map(|i| Tile::gray_r(&[i as f32, 0.0, 1.0, 2.0], 2, 2))
            .collect();
        let s = Section {
            title: "t".into(),
            tiles,
            cols: 3,
            scale: 10,
        };
        draw(&png, &[s]).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
        // 3 columns of 20 + 4 (at least 360 wide); 3 rows of 24 under a title of 28.
        assert_eq!(
            (be(16), be(20)),
            (360 + 2 * MARGIN, 28 + 3 * 24 + 2 * MARGIN)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
