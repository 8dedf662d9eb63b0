//! `loss.png`: the training loss curve (and eval points) at the end of a run.
//! Drawn by hand into an RGB buffer so it needs no system fonts or libraries: axes, the
//! curve, and the axis extremes in a 5×7 pixel font.

use anyhow::{Context, Result};
use std::path::Path;

const W: usize = 720;
const H: usize = 400;
const LEFT: usize = 70;
const RIGHT: usize = 20;
const TOP: usize = 20;
const BOTTOM: usize = 40;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const AXIS: Rgb = [60, 60, 60];
const TRAIN: Rgb = [31, 119, 180];
const EVAL: Rgb = [214, 39, 40];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Bresenham, 2 px thick.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            self.set(x, y + 1, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn dot(&mut self, (x, y): (i64, i64), c: Rgb) {
        for dy in -3..=3 {
            for dx in -3..=3 {
                if dx * dx + dy * dy <= 9 {
                    self.set(x + dx, y + dy, c);
                }
            }
        }
    }

    /// Text in the 5×7 font at 2× scale; only the characters numbers need.
    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (n, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0b10000 >> col) != 0 {
                        for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + n as i64 * 12 + col * 2 + ox, y + row as i64 * 2 + oy, c);
                        }
                    }
                }
            }
        }
    }
}

fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        'e' => [0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        _ => [0; 7],
    }
}

/// Writes `path`: train loss per step, eval losses as dots at their steps.
pub fn loss_curve(path: &Path, train: &[f64], eval: &[(u64, f64)]) -> Result<()> {
    let mut canvas = Canvas {
        px: WHITE.repeat(W * H),
    };
    let finite = train
        .iter()
        .chain(eval.iter().map(|(_, l)| l))
        .copied()
        .filter(|l| l.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| {
        (lo.min(l), hi.max(l))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo, if hi > lo { hi } else { lo + 1.0 })
    } else {
        (0.0, 1.0)
    };
    let steps = train
        .len()
        .max(eval.iter().map(|(s, _)| *s as usize).max().unwrap_or(0))
        .max(2) as f64;
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let at = |step: f64, loss: f64| -> (i64, i64) {
        let x = LEFT as f64 + (step - 1.0) / (steps - 1.0) * pw;
        let y = TOP as f64 + (hi - loss) / (hi - lo) * ph;
        (x.round() as i64, y.round() as i64)
    };
    let (x0, y0, x1, y1) = (
        LEFT as i64,
        TOP as i64,
        (W - RIGHT) as i64,
        (H - BOTTOM) as i64,
    );
    canvas.line((x0, y1), (x1, y1), AXIS);
    canvas.line((x0, y0), (x0, y1), AXIS);
    let points: Vec<(i64, i64)> = train
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| at(i as f64 + 1.0, l))
        .collect();
    for pair in points.windows(2) {
        canvas.line(pair[0], pair[1], TRAIN);
    }
    for &(step, loss) in eval {
        canvas.dot(at(step as f64, loss), EVAL);
    }
    canvas.text(4, y0, &format!("{hi:.3}"), AXIS);
    canvas.text(4, y1 - 14, &format!("{lo:.3}"), AXIS);
    canvas.text(x0, y1 + 10, "1", AXIS);
    let last = format!("{}", steps as u64);
    canvas.text(x1 - 12 * last.len() as i64, y1 + 10, &last, AXIS);

    let tmp = path.with_extension("png.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&canvas.px)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_the_curve_in_it() {
        let path = std::env::temp_dir().join(format!("loam-plot-{}.png", std::process::id()));
        let train: Vec<f64> = (0..50).map(|i| 4.0 - (i as f64).sqrt() * 0.3).collect();
        loss_curve(&path, &train, &[(25, 2.8), (50, 2.2)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let has = |c: Rgb| buf.chunks(3).any(|p| p == c);
        assert!(has(TRAIN) && has(EVAL) && has(AXIS));
        std::fs::remove_file(&path).unwrap();
    }
}
