//! The training plot (`loss.png` and `loss.svg` at the end of a run; the model card embeds
//! the SVG): the train loss per step, raw and smoothed, the held-out loss at each eval, the
//! learning rate on its own axis; and when the evals measured them, a second panel with the
//! held-out chrF++ and bits per byte. Drawn with `plotters`, its text in DejaVu Sans
//! compiled into the binary (the `dejavu` crate), so a machine without fonts draws it too.

use super::held_out::HeldOutScores;
use anyhow::{Context, Result};
use plotters::chart::DualCoordChartContext;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const WIDTH: u32 = 1000;
const LOSS_HEIGHT: u32 = 520;
const EVAL_HEIGHT: u32 = 360;
/// Weight of the past in the smoothed loss (an exponential moving average, debiased as
/// TensorBoard does, so the first points are not pulled towards 0).
const SMOOTHING: f64 = 0.9;

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const EVAL: RGBColor = RGBColor(214, 39, 40);
const LR: RGBColor = RGBColor(127, 127, 127);
const CHRF: RGBColor = RGBColor(44, 160, 44);
const BPB: RGBColor = RGBColor(148, 103, 189);

/// One step of `metrics.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    pub step: f64,
    pub loss: f64,
    pub lr: f64,
}

/// One held-out eval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalPoint {
    pub step: f64,
    pub loss: f64,
    pub bits_per_byte: Option<f64>,
    pub chrf: Option<f64>,
}

impl EvalPoint {
    /// The held-out eval before the first step, drawn at step 0.
    pub fn before_training(scores: &HeldOutScores) -> EvalPoint {
        EvalPoint {
            step: 0.0,
            loss: scores.loss,
            bits_per_byte: Some(scores.bits_per_byte),
            chrf: scores.chrf,
        }
    }
}

/// What the plot shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curves {
    pub steps: Vec<StepPoint>,
    pub evals: Vec<EvalPoint>,
}

impl Curves {
    /// From the lines of `metrics.jsonl` (`step`, `loss`, `lr`, and `eval_*` on eval steps).
    pub fn from_metrics(lines: &[serde_json::Value]) -> Curves {
        let mut curves = Curves::default();
        for m in lines {
            let Some(step) = m["step"].as_f64() else {
                continue;
            };
            if let (Some(loss), Some(lr)) = (m["loss"].as_f64(), m["lr"].as_f64()) {
                curves.steps.push(StepPoint { step, loss, lr });
            }
            if let Some(loss) = m["eval_loss"].as_f64() {
                curves.evals.push(EvalPoint {
                    step,
                    loss,
                    bits_per_byte: m["eval_bits_per_byte"].as_f64(),
                    chrf: m["eval_chrf"].as_f64(),
                });
            }
        }
        curves
    }

    pub fn from_metrics_file(path: &Path) -> Result<Curves> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(Curves::from_metrics(&lines))
    }

    /// A run's curves: its `metrics.jsonl`, and the held-out eval before training at step 0.
    pub fn of_run(out_dir: &Path, before: Option<&HeldOutScores>) -> Result<Curves> {
        let mut curves = Curves::from_metrics_file(&out_dir.join("metrics.jsonl"))?;
        if let Some(b) = before {
            curves.evals.insert(0, EvalPoint::before_training(b));
        }
        Ok(curves)
    }

    fn has_eval_panel(&self) -> bool {
        self.evals
            .iter()
            .any(|e| e.chrf.is_some() || e.bits_per_byte.is_some_and(f64::is_finite))
    }

    fn height(&self) -> u32 {
        LOSS_HEIGHT
            + if self.has_eval_panel() {
                EVAL_HEIGHT
            } else {
                0
            }
    }
}

/// Writes `loss.png` and `loss.svg` into `dir`, each through a temporary name.
pub fn write_training_plot(dir: &Path, curves: &Curves) -> Result<()> {
    write_atomically(&dir.join("loss.png"), &png(curves)?)?;
    write_atomically(&dir.join("loss.svg"), svg(curves)?.as_bytes())
}

/// The plot as a PNG file's bytes.
pub fn png(curves: &Curves) -> Result<Vec<u8>> {
    register_font();
    let (w, h) = (WIDTH, curves.height());
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, curves).map_err(|e| anyhow::anyhow!("cannot draw the training plot: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("cannot draw the training plot: {e}"))?;
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&rgb)?;
    Ok(out)
}

/// The plot as an SVG document.
pub fn svg(curves: &Curves) -> Result<String> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, curves.height())).into_drawing_area();
        draw(&root, curves).map_err(|e| anyhow::anyhow!("cannot draw the training plot: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("cannot draw the training plot: {e}"))?;
    }
    Ok(out)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// plotters looks fonts up by family name; "sans-serif" is DejaVu Sans, from the binary.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &Curves) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    if curves.has_eval_panel() {
        let (top, bottom) = root.split_vertically(LOSS_HEIGHT);
        draw_loss(&top, curves)?;
        draw_eval(&bottom, curves)
    } else {
        draw_loss(root, curves)
    }
}

/// The x axis: steps from 0 (the eval before training) to the last.
fn step_range(curves: &Curves) -> std::ops::Range<f64> {
    let last = curves
        .steps
        .iter()
        .map(|p| p.step)
        .chain(curves.evals.iter().map(|e| e.step))
        .fold(1.0, f64::max);
    0.0..last
}

/// A padded range around finite values (`floor` when the values are all ≥ it: 0 for scores).
fn value_range(values: impl Iterator<Item = f64>, floor: Option<f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-6);
    let lo = match floor {
        Some(f) if lo - pad < f => f,
        _ => lo - pad,
    };
    lo..hi + pad
}

/// Exponential moving average with TensorBoard's debiasing.
fn smoothed(values: &[f64]) -> Vec<f64> {
    let mut ema = 0.0;
    let mut weight = 0.0;
    values
        .iter()
        .map(|&v| {
            ema = SMOOTHING * ema + (1.0 - SMOOTHING) * v;
            weight = SMOOTHING * weight + (1.0 - SMOOTHING);
            ema / weight
        })
        .collect()
}

type Axis = RangedCoordf64;
type Chart<'a, DB> =
    DualCoordChartContext<'a, DB, Cartesian2d<Axis, Axis>, Cartesian2d<Axis, Axis>>;

/// A titled panel over the steps, its left axis named `left_name`, a right axis beside it.
fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    curves: &Curves,
    title: &str,
    (left_name, left): (&str, std::ops::Range<f64>),
    right: std::ops::Range<f64>,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(72)
        .right_y_label_area_size(84)
        .build_cartesian_2d(step_range(curves), left)?
        .set_secondary_coord(step_range(curves), right);
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc(left_name)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    Ok(chart)
}

/// Names the right axis; `format` writes its tick labels.
fn right_axis<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    name: &str,
    format: &dyn Fn(&f64) -> String,
) -> DrawResult<DB> {
    chart
        .configure_secondary_axes()
        .y_desc(name)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .y_label_formatter(format)
        .draw()
}

fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
}

/// Points joined by a thin line, named in the legend.
fn draw_points<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    points: &[(f64, f64)],
    color: RGBColor,
    name: &str,
    on_right_axis: bool,
) -> DrawResult<DB> {
    let line = LineSeries::new(points.to_vec(), color.stroke_width(2));
    let dots = points.iter().map(|&p| Circle::new(p, 5, color.filled()));
    let series = if on_right_axis {
        chart.draw_secondary_series(line)?;
        chart.draw_secondary_series(dots)?
    } else {
        chart.draw_series(line)?;
        chart.draw_series(dots)?
    };
    series
        .label(name)
        .legend(move |(x, y)| Circle::new((x + 12, y), 5, color.filled()));
    Ok(())
}

fn draw_loss<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, curves: &Curves) -> DrawResult<DB> {
    let steps: Vec<&StepPoint> = curves.steps.iter().filter(|p| p.loss.is_finite()).collect();
    let losses = steps
        .iter()
        .map(|p| p.loss)
        .chain(curves.evals.iter().map(|e| e.loss));
    let lr_max = steps.iter().map(|p| p.lr).fold(0.0, f64::max);
    let mut chart = panel(
        area,
        curves,
        "Training loss",
        (
            "loss (nats per trained token)",
            value_range(losses, Some(0.0)),
        ),
        0.0..(lr_max * 1.08).max(1e-12),
    )?;
    right_axis(&mut chart, "learning rate", &|v| format!("{v:.1e}"))?;
    let raw: Vec<(f64, f64)> = steps.iter().map(|p| (p.step, p.loss)).collect();
    chart
        .draw_series(LineSeries::new(
            raw.clone(),
            TRAIN.mix(0.35).stroke_width(1),
        ))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], TRAIN.mix(0.35).stroke_width(2)));
    let ema = smoothed(&raw.iter().map(|p| p.1).collect::<Vec<_>>());
    let smooth: Vec<(f64, f64)> = raw.iter().zip(ema).map(|(p, s)| (p.0, s)).collect();
    chart
        .draw_series(LineSeries::new(smooth, TRAIN.stroke_width(3)))?
        .label(format!("train loss, smoothed (EMA {SMOOTHING})"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], TRAIN.stroke_width(3)));
    let evals: Vec<(f64, f64)> = curves
        .evals
        .iter()
        .filter(|e| e.loss.is_finite())
        .map(|e| (e.step, e.loss))
        .collect();
    if !evals.is_empty() {
        draw_points(&mut chart, &evals, EVAL, "held-out loss", false)?;
    }
    chart
        .draw_secondary_series(LineSeries::new(
            steps.iter().map(|p| (p.step, p.lr)),
            LR.stroke_width(2),
        ))?
        .label("learning rate (right axis)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], LR.stroke_width(2)));
    legend(&mut chart)
}

fn draw_eval<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, curves: &Curves) -> DrawResult<DB> {
    let chrf: Vec<(f64, f64)> = curves
        .evals
        .iter()
        .filter_map(|e| Some((e.step, e.chrf?)))
        .collect();
    let bpb: Vec<(f64, f64)> = curves
        .evals
        .iter()
        .filter_map(|e| Some((e.step, e.bits_per_byte.filter(|v| v.is_finite())?)))
        .collect();
    // chrF++ on the left axis when the evals generated, bits per byte on the right; bits
    // per byte alone otherwise.
    let (left, left_name, left_color, right) = if chrf.is_empty() {
        (bpb, "held-out bits per byte", BPB, Vec::new())
    } else {
        (chrf, "held-out chrF++ (0-100)", CHRF, bpb)
    };
    let mut chart = panel(
        area,
        curves,
        "Held-out evals",
        (left_name, value_range(left.iter().map(|p| p.1), Some(0.0))),
        value_range(right.iter().map(|p| p.1), Some(0.0)),
    )?;
    draw_points(&mut chart, &left, left_color, left_name, false)?;
    if !right.is_empty() {
        right_axis(&mut chart, "held-out bits per byte", &|v| format!("{v:.2}"))?;
        draw_points(
            &mut chart,
            &right,
            BPB,
            "held-out bits per byte (right axis)",
            true,
        )?;
    }
    legend(&mut chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves(with_chrf: bool) -> Curves {
        let steps = (1..=60)
            .map(|i| StepPoint {
                step: i as f64,
                loss: 4.0 - (i as f64).sqrt() * 0.3 + 0.2 * ((i * 7) % 5) as f64 / 5.0,
                lr: 2e-4 * (i as f64 / 60.0 * std::f64::consts::PI).cos().max(0.0),
            })
            .collect();
        let evals = [
            (0.0, 3.9, 1.6, 21.0),
            (30.0, 2.8, 1.2, 35.5),
            (60.0, 2.3, 1.0, 41.2),
        ]
        .iter()
        .map(|&(step, loss, bpb, chrf)| EvalPoint {
            step,
            loss,
            bits_per_byte: Some(bpb),
            chrf: with_chrf.then_some(chrf),
        })
        .collect();
        Curves { steps, evals }
    }

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    #[test]
    fn the_png_has_both_panels_with_every_series_and_text() {
        let c = curves(true);
        let (w, h, px) = decode(&png(&c).unwrap());
        assert_eq!((w, h), (WIDTH, LOSS_HEIGHT + EVAL_HEIGHT));
        let has = |c: RGBColor| px.chunks(3).any(|p| p == [c.0, c.1, c.2]);
        for (name, color) in [
            ("train", TRAIN),
            ("eval", EVAL),
            ("lr", LR),
            ("chrF", CHRF),
            ("bpb", BPB),
        ] {
            assert!(has(color), "no {name} pixels");
        }
        // Text was drawn from the embedded font: many dark grey-to-black antialiased pixels
        // in the title band above the plot.
        let dark_in_title = (0..30u32)
            .flat_map(|y| (0..w).map(move |x| ((y * w + x) * 3) as usize))
            .filter(|&i| px[i] < 100 && px[i + 1] < 100 && px[i + 2] < 100)
            .count();
        assert!(
            dark_in_title > 100,
            "no caption text: {dark_in_title} dark pixels"
        );
    }

    #[test]
    fn the_svg_names_its_axes_and_series() {
        let svg = svg(&curves(true)).unwrap();
        for text in [
            "Training loss",
            "optimizer step",
            "loss (nats per trained token)",
            "learning rate",
            "held-out loss",
            "held-out chrF++",
            "held-out bits per byte",
        ] {
            assert!(svg.contains(text), "the SVG lacks {text:?}");
        }
        let only_loss = Curves {
            evals: Vec::new(),
            ..curves(false)
        };
        let (_, h, _) = decode(&png(&only_loss).unwrap());
        assert_eq!(h, LOSS_HEIGHT, "no eval panel without eval scores");
    }

    #[test]
    fn curves_come_from_metrics_lines() {
        let lines: Vec<serde_json::Value> = [
            r#"{"step":1,"loss":3.5,"lr":0.0,"grad_norm":1.0}"#,
            r#"{"step":2,"loss":3.0,"lr":1e-4,"eval_loss":2.9,"eval_bits_per_byte":1.2,"eval_chrf":30.0}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let c = Curves::from_metrics(&lines);
        assert_eq!(c.steps.len(), 2);
        assert_eq!(
            c.evals,
            [EvalPoint {
                step: 2.0,
                loss: 2.9,
                bits_per_byte: Some(1.2),
                chrf: Some(30.0)
            }]
        );
        assert_eq!(smoothed(&[2.0, 2.0, 2.0]), [2.0, 2.0, 2.0]);
    }
}
