//! ORPO's odds-ratio term, as TRL's `ORPOTrainer` defines it, on each pair's *mean*
//! completion log-probabilities `mc`, `mr` (chosen, rejected):
//!
//! ```text
//! log odds  = (mc − mr) − (log(1 − e^mc) − log(1 − e^mr))
//! term      = −λ log σ(log odds)                        λ = orpo.beta
//! ```
//! The step's loss adds it, averaged over pairs, to the chosen sequences' NLL (`super`).
//! Rewards are `λ mc` and `λ mr`.

use super::names;
use tch::{Kind, Tensor};

/// Each pair's odds-ratio term `[P]` and its metrics (one value per pair), from `[P, 2]`
/// mean log-probabilities.
pub fn odds_ratio(beta: f64, mean_logps: &Tensor) -> (Tensor, Vec<(&'static str, Tensor)>) {
    let (chosen, rejected) = (mean_logps.select(1, 0), mean_logps.select(1, 1));
    let log_odds = (&chosen - &rejected) - (log1mexp(&chosen) - log1mexp(&rejected));
    let ratio = log_odds.log_sigmoid();
    let term = -(&ratio * beta);
    let (chosen_reward, rejected_reward) = ((&chosen * beta).detach(), (&rejected * beta).detach());
    let metrics = vec![
        (names::REWARDS_CHOSEN, chosen_reward.shallow_clone()),
        (names::REWARDS_REJECTED, rejected_reward.shallow_clone()),
        (
            names::REWARDS_ACCURACIES,
            chosen_reward
                .gt_tensor(&rejected_reward)
                .to_kind(Kind::Double),
        ),
        (names::REWARDS_MARGINS, &chosen_reward - &rejected_reward),
        (names::LOGPS_CHOSEN, chosen.detach()),
        (names::LOGPS_REJECTED, rejected.detach()),
        (names::LOG_ODDS_RATIO, ratio.detach()),
        (names::LOG_ODDS_CHOSEN, log_odds.detach()),
    ];
    (term, metrics)
}

/// `log(1 − e^x)` for x < 0, without cancellation: `log1p(−e^x)` below −ln 2, else
/// `log(−expm1(x))`.
fn log1mexp(x: &Tensor) -> Tensor {
    let below = x.lt(-std::f64::consts::LN_2);
    (-x.exp()).log1p().where_self(&below, &(-x.expm1()).log())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odds_ratio_follows_the_paper() {
        let (mc, mr) = (-0.3f64, -2.5f64);
        let odds = |p: f64| p.exp() / (1.0 - p.exp());
        let log_odds = (odds(mc) / odds(mr)).ln();
        let want = (1.0 + (-log_odds).exp()).ln() * 0.25; // −λ log σ(log odds)
        let (term, metrics) = odds_ratio(0.25, &Tensor::from_slice(&[mc, mr]).view([1, 2]));
        assert!((term.double_value(&[0]) - want).abs() < 1e-12);
        let m: std::collections::HashMap<_, _> = metrics
            .iter()
            .map(|(k, v)| (*k, v.double_value(&[0])))
            .collect();
        assert!((m[names::LOG_ODDS_CHOSEN] - log_odds).abs() < 1e-12);
        assert!((m[names::REWARDS_MARGINS] - 0.25 * (mc - mr)).abs() < 1e-12);
        // Both branches of log(1 − e^x) agree with the plain formula.
        for x in [-5.0f64, -0.7, -0.69, -1e-3] {
            let got = log1mexp(&Tensor::from_slice(&[x])).double_value(&[0]);
            assert!((got - (1.0 - x.exp()).ln()).abs() < 1e-12, "{x}");
        }
    }
}
