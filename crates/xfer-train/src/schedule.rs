//! Learning-rate schedules: pure functions of `(step, total_steps)`.
//!
//! `step` is the 0-based index of the optimiser step about to be taken and `total_steps` the
//! planned length of training; the training progress is `p = step / total_steps ∈ [0, 1]`
//! ([`progress`]). Nothing here holds state, so a resumed run gets the same rates.

use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Training progress `p = step / total_steps`, clamped to `[0, 1]` (1 when `total_steps` is 0).
pub fn progress(step: usize, total_steps: usize) -> f64 {
    if total_steps == 0 {
        1.0
    } else {
        (step as f64 / total_steps as f64).min(1.0)
    }
}

/// A learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// `η_t = lr`.
    Constant {
        /// The rate.
        lr: f64,
    },
    /// `η_t = lr · γ^⌊t / step_size⌋` (`torch.optim.lr_scheduler.StepLR`).
    Step {
        /// The initial rate.
        lr: f64,
        /// Steps between decays (> 0).
        step_size: usize,
        /// The decay factor.
        gamma: f64,
    },
    /// `η_t = lr · γ^{#{m ∈ milestones : m ≤ t}}` (`MultiStepLR`).
    MultiStep {
        /// The initial rate.
        lr: f64,
        /// Steps at which the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// The decay factor.
        gamma: f64,
    },
    /// Cosine annealing over the whole run (`CosineAnnealingLR` with `T_max = total_steps`):
    /// `η_t = η_min + (lr − η_min) · (1 + cos(π t / T)) / 2`.
    Cosine {
        /// The initial rate.
        lr: f64,
        /// The final rate `η_min`.
        min_lr: f64,
    },
    /// DANN's annealing (Ganin & Lempitsky 2015, §5.2): `μ_p = μ0 / (1 + α p)^β` with
    /// `p = t / T`; the paper uses `μ0 = 0.01, α = 10, β = 0.75` ([`Schedule::dann`]).
    Dann {
        /// `μ0`, the initial rate.
        mu0: f64,
        /// `α`.
        alpha: f64,
        /// `β`.
        beta: f64,
    },
    /// Linear warm-up in front of another schedule (`LinearLR` then the inner one). For
    /// `t < steps`: `η_t = inner(0, T − steps) · (f₀ + (1 − f₀) · t / steps)`; afterwards
    /// `η_t = inner(t − steps, T − steps)`, so the inner schedule runs its full shape over the
    /// steps that remain.
    Warmup {
        /// Length of the warm-up.
        steps: usize,
        /// `f₀ ∈ [0, 1]`, the factor at step 0.
        start_factor: f64,
        /// The schedule after the warm-up.
        then: Box<Schedule>,
    },
}

impl Schedule {
    /// A constant rate.
    pub fn constant(lr: f64) -> Self {
        Schedule::Constant { lr }
    }

    /// Step decay: multiply by `gamma` every `step_size` steps.
    pub fn step(lr: f64, step_size: usize, gamma: f64) -> Self {
        Schedule::Step {
            lr,
            step_size,
            gamma,
        }
    }

    /// Cosine annealing from `lr` to `min_lr` over the run.
    pub fn cosine(lr: f64, min_lr: f64) -> Self {
        Schedule::Cosine { lr, min_lr }
    }

    /// DANN's paper schedule `μ_p = 0.01 / (1 + 10 p)^0.75`.
    pub fn dann() -> Self {
        Schedule::Dann {
            mu0: 0.01,
            alpha: 10.0,
            beta: 0.75,
        }
    }

    /// This schedule behind a linear warm-up of `steps` steps starting at `start_factor`.
    pub fn with_warmup(self, steps: usize, start_factor: f64) -> Self {
        Schedule::Warmup {
            steps,
            start_factor,
            then: Box::new(self),
        }
    }

    /// The learning rate for 0-based step `step` of a run of `total_steps` steps.
    pub fn lr(&self, step: usize, total_steps: usize) -> f64 {
        match self {
            Schedule::Constant { lr } => *lr,
            Schedule::Step {
                lr,
                step_size,
                gamma,
            } => {
                let k = step.checked_div(*step_size).unwrap_or(0);
                lr * gamma.powi(k.min(i32::MAX as usize) as i32)
            }
            Schedule::MultiStep {
                lr,
                milestones,
                gamma,
            } => {
                let k = milestones.iter().filter(|&&m| m <= step).count();
                lr * gamma.powi(k.min(i32::MAX as usize) as i32)
            }
            Schedule::Cosine { lr, min_lr } => {
                let p = progress(step, total_steps);
                min_lr + (lr - min_lr) * (1.0 + (std::f64::consts::PI * p).cos()) / 2.0
            }
            Schedule::Dann { mu0, alpha, beta } => {
                let p = progress(step, total_steps);
                mu0 / (1.0 + alpha * p).powf(*beta)
            }
            Schedule::Warmup {
                steps,
                start_factor,
                then,
            } => {
                let rest = total_steps.saturating_sub(*steps);
                if step < *steps {
                    let f = start_factor + (1.0 - start_factor) * step as f64 / *steps as f64;
                    then.lr(0, rest) * f
                } else {
                    then.lr(step - steps, rest)
                }
            }
        }
    }

    /// Checks every value is in range (finite, non-negative rates, `step_size > 0`, ...).
    pub fn validate(&self) -> Result<()> {
        let rate = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(TrainError::invalid(what, v, "finite and >= 0 (schedule)"))
            }
        };
        match self {
            Schedule::Constant { lr } => rate("lr", *lr),
            Schedule::Step {
                lr,
                step_size,
                gamma,
            } => {
                if *step_size == 0 {
                    return Err(TrainError::invalid("step_size", 0, "> 0 (schedule)"));
                }
                rate("lr", *lr)?;
                rate("gamma", *gamma)
            }
            Schedule::MultiStep { lr, gamma, .. } => {
                rate("lr", *lr)?;
                rate("gamma", *gamma)
            }
            Schedule::Cosine { lr, min_lr } => {
                rate("lr", *lr)?;
                rate("min_lr", *min_lr)
            }
            Schedule::Dann { mu0, alpha, beta } => {
                rate("mu0", *mu0)?;
                rate("alpha", *alpha)?;
                rate("beta", *beta)
            }
            Schedule::Warmup {
                start_factor, then, ..
            } => {
                if !(0.0..=1.0).contains(start_factor) {
                    return Err(TrainError::invalid(
                        "start_factor",
                        start_factor,
                        "a value in [0, 1] (schedule: warm-up)",
                    ));
                }
                then.validate()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn constant_and_step_decay_give_known_rates() {
        assert_eq!(Schedule::constant(0.3).lr(999, 10), 0.3);
        let s = Schedule::step(0.1, 10, 0.5);
        assert!(close(s.lr(0, 100), 0.1));
        assert!(close(s.lr(9, 100), 0.1));
        assert!(close(s.lr(10, 100), 0.05));
        assert!(close(s.lr(25, 100), 0.025));
        let m = Schedule::MultiStep {
            lr: 1.0,
            milestones: vec![3, 5],
            gamma: 0.1,
        };
        assert!(close(m.lr(2, 10), 1.0));
        assert!(close(m.lr(3, 10), 0.1));
        assert!(close(m.lr(7, 10), 0.01));
    }

    #[test]
    fn cosine_goes_from_lr_through_midpoint_to_min() {
        let s = Schedule::cosine(0.1, 0.02);
        assert!(close(s.lr(0, 100), 0.1));
        assert!(close(s.lr(50, 100), 0.06));
        assert!(close(s.lr(100, 100), 0.02));
        // t = 25: 0.02 + 0.08·(1 + cos(π/4))/2 = 0.02 + 0.04·(1 + 1/√2)
        assert!(close(
            s.lr(25, 100),
            0.02 + 0.04 * (1.0 + std::f64::consts::FRAC_1_SQRT_2)
        ));
    }

    #[test]
    fn dann_schedule_is_paper_formula() {
        let s = Schedule::dann();
        assert!(close(s.lr(0, 1000), 0.01));
        // p = 1: 0.01 / 11^0.75 = 0.01 / 6.0409... ≈ 0.0016554
        assert!((s.lr(1000, 1000) - 0.0016554).abs() < 1e-6);
        // p = 0.5: 0.01 / 6^0.75
        assert!(close(s.lr(500, 1000), 0.01 / 6f64.powf(0.75)));
        // monotone decreasing
        let lrs: Vec<f64> = (0..=10).map(|t| s.lr(t, 10)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn warmup_ramps_linearly_then_hands_over_to_the_inner_schedule() {
        let s = Schedule::cosine(1.0, 0.0).with_warmup(4, 0.2);
        // warm-up: factors 0.2, 0.4, 0.6, 0.8 of inner(0) = 1
        for (t, f) in [(0, 0.2), (1, 0.4), (2, 0.6), (3, 0.8)] {
            assert!(close(s.lr(t, 14), f), "t={t}: {}", s.lr(t, 14));
        }
        // then the full cosine over the 10 remaining steps
        assert!(close(s.lr(4, 14), 1.0));
        assert!(close(s.lr(9, 14), 0.5));
        assert!(close(s.lr(14, 14), 0.0));
    }

    #[test]
    fn progress_is_clamped_and_handles_zero_total() {
        assert_eq!(progress(5, 10), 0.5);
        assert_eq!(progress(20, 10), 1.0);
        assert_eq!(progress(0, 0), 1.0);
    }

    #[test]
    fn validate_refuses_bad_values_and_serde_round_trips() {
        assert!(Schedule::step(0.1, 0, 0.5).validate().is_err());
        assert!(Schedule::constant(f64::NAN).validate().is_err());
        assert!(Schedule::dann().with_warmup(3, 1.5).validate().is_err());
        let s = Schedule::dann().with_warmup(3, 0.1);
        s.validate().unwrap();
        let j = serde_json::to_string(&s).unwrap();
        let back: Schedule = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
    }
}
