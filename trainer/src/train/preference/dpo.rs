//! DPO's losses, as TRL's `DPOTrainer` (1.16) defines them, on each pair's summed completion
//! log-probabilities under the policy (`lc`, `lr`: chosen, rejected) and the reference
//! (`rc`, `rr`). With `Δ = (lc − rc) − (lr − rr)`, β = `dpo.beta`, ε = `dpo.label_smoothing`:
//!
//! ```text
//! sigmoid  −(1 − ε) log σ(βΔ) − ε log σ(−βΔ)           (ε = 0: TRL's sigmoid; ε > 0: cDPO)
//! robust   (−(1 − ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε)
//! hinge    max(0, 1 − βΔ)
//! ipo      ((lc − rc) / nc − (lr − rr) / nr − 1 / 2β)²   (n: completion tokens)
//! ```
//! Rewards are `β (lc − rc)` and `β (lr − rr)`.

use super::names;
use crate::recipe::{DpoLoss, DpoSection};
use tch::Tensor;

/// Each pair's loss `[P]`, and its metrics (TRL's names, one value per pair). `policy`,
/// `reference` and `counts` are `[P, 2]` (chosen, rejected); the loss is differentiable in
/// `policy`.
pub fn loss(
    cfg: &DpoSection,
    policy: &Tensor,
    reference: &Tensor,
    counts: &Tensor,
) -> (Tensor, Vec<(&'static str, Tensor)>) {
    let beta = cfg.beta;
    let eps = cfg.label_smoothing;
    let log_ratios = policy - reference;
    let (chosen, rejected) = (log_ratios.select(1, 0), log_ratios.select(1, 1));
    let delta = &chosen - &rejected;
    let per_pair = match cfg.loss {
        DpoLoss::Sigmoid => {
            -(&delta * beta).log_sigmoid() * (1.0 - eps) - (&delta * -beta).log_sigmoid() * eps
        }
        DpoLoss::Robust => {
            (-(&delta * beta).log_sigmoid() * (1.0 - eps) + (&delta * -beta).log_sigmoid() * eps)
                / (1.0 - 2.0 * eps)
        }
        DpoLoss::Hinge => (-(&delta * beta) + 1.0).relu(),
        DpoLoss::Ipo => {
            let per_token = &log_ratios / counts.clamp_min(1.0);
            (per_token.select(1, 0) - per_token.select(1, 1) - 1.0 / (2.0 * beta)).square()
        }
    };
    let (chosen_reward, rejected_reward) = ((&chosen * beta).detach(), (&rejected * beta).detach());
    let metrics = vec![
        (names::REWARDS_CHOSEN, chosen_reward.shallow_clone()),
        (names::REWARDS_REJECTED, rejected_reward.shallow_clone()),
        (
            names::REWARDS_ACCURACIES,
            chosen_reward
                .gt_tensor(&rejected_reward)
                .to_kind(tch::Kind::Double),
        ),
        (names::REWARDS_MARGINS, &chosen_reward - &rejected_reward),
        (names::LOGPS_CHOSEN, policy.select(1, 0).detach()),
        (names::LOGPS_REJECTED, policy.select(1, 1).detach()),
    ];
    (per_pair, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn pairs(v: &[f64]) -> Tensor {
        Tensor::from_slice(v).view([-1, 2])
    }

    /// The formulas above, value by value, for one pair (f64 references computed by hand).
    #[test]
    fn losses_follow_trls_formulas() {
        let (policy, reference, counts) = (
            pairs(&[-3.0, -5.0]),
            pairs(&[-4.0, -4.5]),
            pairs(&[2.0, 4.0]),
        );
        let delta: f64 = (-3.0 + 4.0) - (-5.0 + 4.5); // 1.5
        let ls = |x: f64| -(1.0 + (-x).exp()).ln();
        let beta = 0.1;
        for (loss, eps, want) in [
            (DpoLoss::Sigmoid, 0.0, -ls(beta * delta)),
            (
                DpoLoss::Sigmoid,
                0.2,
                -0.8 * ls(beta * delta) - 0.2 * ls(-beta * delta),
            ),
            (
                DpoLoss::Robust,
                0.2,
                (-0.8 * ls(beta * delta) + 0.2 * ls(-beta * delta)) / 0.6,
            ),
            (DpoLoss::Hinge, 0.0, 1.0 - beta * delta),
            (
                DpoLoss::Ipo,
                0.0,
                (1.0 / 2.0 - (-0.5) / 4.0 - 5.0f64).powi(2),
            ),
        ] {
            let cfg = DpoSection {
                beta,
                loss,
                label_smoothing: eps,
                precompute_reference: false,
            };
            let (got, metrics) = super::loss(&cfg, &policy, &reference, &counts);
            let got = got.double_value(&[0]);
            assert!(
                (got - want).abs() < 1e-12,
                "{loss:?} ε {eps}: {got} vs {want}"
            );
            let m: std::collections::HashMap<_, _> = metrics
                .iter()
                .map(|(k, v)| (*k, v.to_kind(Kind::Double).double_value(&[0])))
                .collect();
            assert!((m[names::REWARDS_CHOSEN] - 0.1).abs() < 1e-12);
            assert!((m[names::REWARDS_REJECTED] + 0.05).abs() < 1e-12);
            assert!((m[names::REWARDS_MARGINS] - 0.15).abs() < 1e-12);
            assert_eq!(m[names::REWARDS_ACCURACIES], 1.0);
            assert_eq!(
                (m[names::LOGPS_CHOSEN], m[names::LOGPS_REJECTED]),
                (-3.0, -5.0)
            );
        }
    }
}
