//! Llama 3.1 rope scaling ↔ llama.cpp's `rope_freqs.weight`, both ways.
//!
//! llama.cpp stores Llama 3.1 scaling as one divisor per rotary frequency, not as the
//! `rope_scaling` parameters. Export computes the divisors from the parameters ([`factors`]);
//! import recovers parameters that give the same divisors ([`solve`]).
//!
//! The divisor of a frequency with wavelength λ is 1 below `H = old / high_freq_factor`,
//! `factor` above `L = old / low_freq_factor`, and on a ramp between, where its inverse is
//! affine in 1/λ. Only `factor`, `H` and `L` are identifiable, so `old`
//! (`original_max_position_embeddings`) is chosen by the caller; and the divisors are known
//! only at the head's frequencies, so when fewer than two fall on the ramp, `H` and `L` are
//! placed in the gaps. Every solution is checked by recomputing the divisors.

use crate::model::config::RopeScaling;
use anyhow::{bail, Result};
use std::f64::consts::PI;

/// Divisors within this relative distance count as equal (they are stored as f32, and
/// llama.cpp's converter computes them in f32).
const TOLERANCE: f64 = 1e-5;
/// Rounded parameters must reproduce the divisors this closely (a few f32 ulps) to be
/// preferred over the exact solution.
const ROUNDED_TOLERANCE: f64 = 1e-6;

/// Wavelength `2π θ^(2i/d)` of each rotary frequency of a head of `head_dim`.
fn wavelengths(rope_theta: f64, head_dim: usize) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| 2.0 * PI * rope_theta.powf(2.0 * i as f64 / head_dim as f64))
        .collect()
}

/// Llama 3.1's divisor of each rotary frequency (`rope_freqs.weight`), as llama.cpp's
/// converter and transformers compute it.
pub fn factors(
    rope_theta: f64,
    head_dim: usize,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    old: f64,
) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
    wavelengths(rope_theta, head_dim)
        .into_iter()
        .map(|wavelen| {
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth =
                    (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// Llama 3.1 parameters with `original_max_position_embeddings = old` whose divisors are
/// `divisors` (within f32 rounding); `RopeScaling::None` when every divisor is 1. The error
/// says why the divisors are not Llama 3.1's.
pub fn solve(divisors: &[f32], rope_theta: f64, head_dim: usize, old: f64) -> Result<RopeScaling> {
    if divisors.len() != head_dim / 2 {
        bail!(
            "it has {} values, but heads of {head_dim} dimensions have {} rotary frequencies",
            divisors.len(),
            head_dim / 2
        );
    }
    let f: Vec<f64> = divisors.iter().map(|&x| f64::from(x)).collect();
    if f.iter().any(|x| !x.is_finite() || *x < 1.0 - TOLERANCE) {
        bail!("Llama 3.1 divisors are finite and at least 1");
    }
    if f.windows(2).any(|w| w[1] < w[0] * (1.0 - TOLERANCE)) {
        bail!("Llama 3.1 divisors never decrease from high to low frequencies");
    }
    let top = f.iter().copied().fold(1.0, f64::max);
    if top <= 1.0 + TOLERANCE {
        return Ok(RopeScaling::None);
    }
    let near = |a: f64, b: f64| (a - b).abs() <= TOLERANCE * b;
    // Divisors never decrease, so: ones, then the ramp, then the plateau at `top`.
    let ones = f.iter().take_while(|&&x| near(x, 1.0)).count();
    let plateau_start = f.iter().position(|&x| near(x, top)).unwrap_or(f.len());
    let ramp = ones..plateau_start;
    // In (x = 1/λ, y = 1/divisor): the ramp is the segment from (1/H, 1) to (1/L, 1/top).
    let lambda = wavelengths(rope_theta, head_dim);
    let (x, y) = (|i: usize| 1.0 / lambda[i], |i: usize| 1.0 / f[i]);
    let (x_high, x_low) = match ramp.len() {
        0 => {
            // A step: H and L anywhere between the last 1 and the first `top`.
            let before = if ones > 0 { lambda[ones - 1] } else { 0.0 };
            let gap = lambda[plateau_start] - before;
            (1.0 / (before + gap / 3.0), 1.0 / (before + 2.0 * gap / 3.0))
        }
        1 => {
            // One point on the ramp: a slope steep enough to reach 1 and 1/top in the gaps.
            let m = ramp.start;
            let room_high = if ones > 0 {
                (x(ones - 1) - x(m)) / 2.0
            } else {
                f64::INFINITY
            };
            let room_low = (x(m) - x(plateau_start)) * (1.0 - y(m)) / (2.0 * (y(m) - 1.0 / top));
            let run = room_high.min(room_low);
            let slope = (1.0 - y(m)) / run;
            (x(m) + run, x(m) - (y(m) - 1.0 / top) / slope)
        }
        _ => {
            // The line through the ramp's end points (the recomputation checks the others).
            let (a, b) = (ramp.start, ramp.end - 1);
            let slope = (y(b) - y(a)) / (x(b) - x(a));
            if slope.is_nan() || slope <= 0.0 {
                bail!("its ramp between 1 and {top} is not Llama 3.1's");
            }
            (
                x(a) + (1.0 - y(a)) / slope,
                x(a) + (1.0 / top - y(a)) / slope,
            )
        }
    };
    let exact = RopeScaling::Llama3 {
        factor: top,
        low_freq_factor: old * x_low,
        high_freq_factor: old * x_high,
        original_max_position_embeddings: old,
    };
    // Prefer the short decimals a config.json holds (1.0, 4.0, 8.0) when they fit as well.
    for (candidate, tolerance) in [
        (round_params(&exact), ROUNDED_TOLERANCE),
        (exact, TOLERANCE),
    ] {
        if reproduces(&candidate, divisors, rope_theta, head_dim, tolerance) {
            return Ok(candidate);
        }
    }
    bail!("no Llama 3.1 rope scaling reproduces its values")
}

fn reproduces(
    scaling: &RopeScaling,
    divisors: &[f32],
    rope_theta: f64,
    head_dim: usize,
    tolerance: f64,
) -> bool {
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    } = *scaling
    else {
        return false;
    };
    let ok = low_freq_factor > 0.0 && low_freq_factor < high_freq_factor;
    let again = factors(
        rope_theta,
        head_dim,
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    );
    ok && again
        .iter()
        .zip(divisors)
        .all(|(&a, &b)| (f64::from(a) - f64::from(b)).abs() <= tolerance * f64::from(b))
}

fn round_params(scaling: &RopeScaling) -> RopeScaling {
    let round = |v: f64| {
        let scale = 10f64.powi(5 - v.abs().log10().floor() as i32);
        (v * scale).round() / scale
    };
    match *scaling {
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => RopeScaling::Llama3 {
            factor: round(factor),
            low_freq_factor: round(low_freq_factor),
            high_freq_factor: round(high_freq_factor),
            original_max_position_embeddings,
        },
        ref other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &RopeScaling) -> (f64, f64, f64, f64) {
        match *s {
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => (
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            ),
            _ => panic!("not llama3: {s:?}"),
        }
    }

    #[test]
    fn llama_3_1_parameters_come_back_exactly() {
        // Llama 3.1 8B: theta 5e5, head_dim 128, factor 8, low 1, high 4, old 8192.
        let d = factors(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        let ramp = d.iter().filter(|&&x| x > 1.0 && x < 8.0).count();
        assert!(ramp >= 2, "{ramp} ramp points");
        let s = solve(&d, 500_000.0, 128, 8192.0).unwrap();
        assert_eq!(params(&s), (8.0, 1.0, 4.0, 8192.0));
    }

    #[test]
    fn another_original_length_gives_the_same_divisors() {
        let d = factors(500_000.0, 128, 32.0, 1.0, 4.0, 8192.0);
        let s = solve(&d, 500_000.0, 128, 4096.0).unwrap();
        let (factor, low, high, old) = params(&s);
        assert_eq!((factor, old), (32.0, 4096.0));
        assert!(
            (low - 0.5).abs() < 1e-6 && (high - 2.0).abs() < 1e-6,
            "{s:?}"
        );
    }

    #[test]
    fn zero_or_one_ramp_points_still_reproduce_the_divisors() {
        // loam's llama-gqa fixture: theta 1e4, head_dim 16, old 256 → one ramp point.
        for (theta, dim, factor, low, high, old) in [
            (10_000.0, 16, 8.0, 1.0, 4.0, 256.0),
            (10_000.0, 16, 4.0, 1.0, 1.5, 256.0),
            (10_000.0, 8, 2.0, 1.0, 4.0, 100.0),
        ] {
            let d = factors(theta, dim, factor, low, high, old);
            for guess in [8192.0, 256.0, 1.0] {
                let s = solve(&d, theta, dim, guess).unwrap();
                let (f2, l2, h2, o2) = params(&s);
                for (a, b) in factors(theta, dim, f2, l2, h2, o2).iter().zip(&d) {
                    assert!((a - b).abs() <= 1e-6 * b, "{a} vs {b}: {s:?}");
                }
            }
        }
    }

    #[test]
    fn all_ones_is_no_scaling_and_nonsense_is_an_error() {
        assert_eq!(
            solve(&[1.0; 8], 10_000.0, 16, 8192.0).unwrap(),
            RopeScaling::None
        );
        let err = solve(&[1.0, 3.0, 2.0, 4.0], 10_000.0, 8, 8192.0).unwrap_err();
        assert!(err.to_string().contains("never decrease"), "{err}");
        let err = solve(&[1.0; 4], 10_000.0, 16, 8192.0).unwrap_err();
        assert!(err.to_string().contains("8 rotary frequencies"), "{err}");
        // A ramp that is not affine in 1/wavelength.
        let mut d = factors(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        let mid = d.iter().position(|&x| x > 1.0).unwrap() + 1;
        d[mid] *= 1.01;
        assert!(solve(&d, 500_000.0, 128, 8192.0).is_err());
    }
}
