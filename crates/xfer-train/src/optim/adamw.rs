//! Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), exactly as
//! `torch.optim.Adam` / `torch.optim.AdamW` (non-AMSGrad).
//!
//! For each parameter `w` with gradient `g`, step count `t` (per parameter, starting at 1),
//! group rate `η = lr · lr_mult`, decay `λ`:
//! ```text
//! Adam  (coupled):    g ← g + λ·w
//! AdamW (decoupled):  w ← w·(1 − η·λ)
//! m ← β₁·m + (1 − β₁)·g            v ← β₂·v + (1 − β₂)·g²       (m, v start at 0)
//! w ← w − (η / (1 − β₁ᵗ)) · m / ( √v / √(1 − β₂ᵗ) + ε )
//! ```
//! Note where `ε` sits: it is added after the bias correction of `√v`, as in PyTorch.

use candle_core::Tensor;
use candle_core::backprop::GradStore;
use serde_json::json;
use xfer_models::{Param, ParamGroup, ParamStore, partition_params};

use super::{
    GroupSpec, Groups, Optimizer, OptimizerState, check_lr, check_state_keys, fit_state_tensor,
    fused,
};
use crate::{Result, TrainError};

/// Hyper-parameters of [`Adam`]. [`Default`] is PyTorch's `AdamW`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// `β₁`, the decay of the first moment.
    pub beta1: f64,
    /// `β₂`, the decay of the second moment.
    pub beta2: f64,
    /// `ε`, added to the bias-corrected `√v`.
    pub eps: f64,
    /// Weight decay `λ` for [`Adam::new`]; groups given to [`Adam::with_groups`] carry their own.
    pub weight_decay: f64,
    /// `true`: AdamW's decoupled decay `w ← w(1 − ηλ)`; `false`: Adam's `g ← g + λw`.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self::adamw()
    }
}

impl AdamConfig {
    /// `torch.optim.Adam` defaults: β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub fn adam() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// `torch.optim.AdamW` defaults: β = (0.9, 0.999), ε = 1e-8, decoupled decay 0.01.
    pub fn adamw() -> Self {
        Self {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::adam()
        }
    }

    /// The same configuration with weight decay `λ`.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    fn validate(&self) -> Result<()> {
        for (what, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(TrainError::invalid(what, v, "a value in [0, 1) (adam)"));
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(TrainError::invalid(
                "eps",
                self.eps,
                "finite and >= 0 (adam)",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::invalid(
                "weight_decay",
                self.weight_decay,
                "finite and >= 0 (adam)",
            ));
        }
        Ok(())
    }
}

/// Adam / AdamW (see the module documentation for the update).
pub struct Adam {
    cfg: AdamConfig,
    groups: Groups,
    /// First moment per parameter.
    m: Vec<Option<Tensor>>,
    /// Second moment per parameter.
    v: Vec<Option<Tensor>>,
    /// Steps taken per parameter (PyTorch keeps the count per parameter too).
    t: Vec<u64>,
    /// Use the fused CPU kernels where they apply (tests switch them off to compare).
    fused: bool,
}

impl std::fmt::Debug for Adam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adam")
            .field("cfg", &self.cfg)
            .field("params", &self.groups.params.len())
            .field("groups", &self.groups.settings.len())
            .finish()
    }
}

impl Adam {
    /// One group: every trainable parameter of `params` with rate multiplier 1 and
    /// `cfg.weight_decay`.
    pub fn new(params: Vec<Param>, cfg: AdamConfig) -> Result<Self> {
        let wd = cfg.weight_decay;
        Self::with_groups(vec![(params, 1.0, wd)], cfg)
    }

    /// Several groups `(params, lr_mult, weight_decay)`; `cfg.weight_decay` is ignored.
    pub fn with_groups(groups: Vec<GroupSpec>, cfg: AdamConfig) -> Result<Self> {
        cfg.validate()?;
        let groups = Groups::build(groups, if cfg.decoupled { "adamw" } else { "adam" })?;
        let n = groups.params.len();
        Ok(Self {
            cfg,
            groups,
            m: vec![None; n],
            v: vec![None; n],
            t: vec![0; n],
            fused: true,
        })
    }

    /// Groups from xfer-models' [`ParamGroup`]s over the trainable parameters of `store`
    /// ([`partition_params`]: first matching group wins, the rest form a default group with
    /// rate multiplier 1); a group without its own weight decay takes `cfg.weight_decay`.
    pub fn with_param_groups(
        store: &ParamStore,
        groups: &[ParamGroup],
        cfg: AdamConfig,
    ) -> Result<Self> {
        let specs = partition_params(store, groups)?
            .into_iter()
            .map(|g| g.into_spec(cfg.weight_decay))
            .collect();
        Self::with_groups(specs, cfg)
    }

    /// The configuration.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }
}

impl Optimizer for Adam {
    fn kind(&self) -> &'static str {
        if self.cfg.decoupled { "adamw" } else { "adam" }
    }

    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr, self.kind())?;
        let AdamConfig {
            beta1,
            beta2,
            eps,
            decoupled,
            ..
        } = self.cfg;
        for (i, p) in self.groups.params.iter().enumerate() {
            if !p.is_trainable() {
                continue;
            }
            let w0 = p.var().as_tensor();
            let Some(g) = grads.get(w0) else { continue };
            let Some(set) = self.groups.settings_of(i) else {
                continue;
            };
            let eta = lr * set.lr_mult;
            let lambda = set.weight_decay;
            self.t[i] += 1;
            let t = self.t[i] as f64;
            if self.fused && fused::applies(&[w0, g]) {
                let g = if g.is_contiguous() {
                    g.clone()
                } else {
                    g.contiguous()?
                };
                let m = match self.m[i].take() {
                    Some(m) => m,
                    None => w0.zeros_like()?,
                };
                let v = match self.v[i].take() {
                    Some(v) => v,
                    None => w0.zeros_like()?,
                };
                let coupled = if decoupled { 0.0 } else { lambda };
                m.inplace_op3(
                    w0,
                    &g,
                    &fused::AdamMoment {
                        beta: beta1,
                        coupled_decay: coupled,
                        second: false,
                    },
                )?;
                v.inplace_op3(
                    w0,
                    &g,
                    &fused::AdamMoment {
                        beta: beta2,
                        coupled_decay: coupled,
                        second: true,
                    },
                )?;
                let step = fused::AdamStep {
                    decay_factor: (decoupled && lambda != 0.0).then_some(1.0 - eta * lambda),
                    step_size: eta / (1.0 - beta1.powf(t)),
                    inv_bc2_sqrt: 1.0 / (1.0 - beta2.powf(t)).sqrt(),
                    eps,
                };
                w0.inplace_op3(&m, &v, &step)?;
                self.m[i] = Some(m);
                self.v[i] = Some(v);
                continue;
            }
            let (w, g) = if lambda != 0.0 {
                if decoupled {
                    (w0.affine(1.0 - eta * lambda, 0.0)?, g.clone())
                } else {
                    (w0.clone(), (g + w0.affine(lambda, 0.0)?)?)
                }
            } else {
                (w0.clone(), g.clone())
            };
            let m = match self.m[i].take() {
                None => g.affine(1.0 - beta1, 0.0)?,
                Some(m) => (m.affine(beta1, 0.0)? + g.affine(1.0 - beta1, 0.0)?)?,
            };
            let g2 = g.sqr()?;
            let v = match self.v[i].take() {
                None => g2.affine(1.0 - beta2, 0.0)?,
                Some(v) => (v.affine(beta2, 0.0)? + g2.affine(1.0 - beta2, 0.0)?)?,
            };
            let bc1 = 1.0 - beta1.powf(t);
            let bc2_sqrt = (1.0 - beta2.powf(t)).sqrt();
            let step_size = eta / bc1;
            let denom = v.sqrt()?.affine(1.0 / bc2_sqrt, eps)?;
            let new = (w - (&m / denom)?.affine(step_size, 0.0)?)?;
            p.var().set(&new)?;
            self.m[i] = Some(m);
            self.v[i] = Some(v);
        }
        Ok(())
    }

    fn params(&self) -> &[Param] {
        &self.groups.params
    }

    fn group_of(&self, i: usize) -> Option<(f64, f64)> {
        self.groups
            .settings_of(i)
            .map(|s| (s.lr_mult, s.weight_decay))
    }

    fn state(&self) -> Result<OptimizerState> {
        let mut tensors = Vec::new();
        let mut steps = serde_json::Map::new();
        for (i, p) in self.groups.params.iter().enumerate() {
            if self.t[i] > 0 {
                steps.insert(p.name().to_string(), json!(self.t[i]));
            }
            if let Some(m) = &self.m[i] {
                tensors.push((format!("{}/exp_avg", p.name()), m.copy()?));
            }
            if let Some(v) = &self.v[i] {
                tensors.push((format!("{}/exp_avg_sq", p.name()), v.copy()?));
            }
        }
        Ok(OptimizerState {
            kind: self.kind().to_string(),
            meta: json!({ "config": self.cfg, "step": steps }),
            tensors,
        })
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        if state.kind != self.kind() {
            return Err(TrainError::OptimizerState(format!(
                "state of a {:?} optimiser cannot be loaded into {:?}",
                state.kind,
                self.kind()
            )));
        }
        check_state_keys(state, &self.groups, &["exp_avg", "exp_avg_sq"])?;
        let steps = state.meta.get("step").and_then(|s| s.as_object());
        if let Some(steps) = steps {
            for name in steps.keys() {
                if self.groups.index_of(name).is_none() {
                    return Err(TrainError::OptimizerState(format!(
                        "step count for {name:?}: no such parameter in this optimiser"
                    )));
                }
            }
        }
        let n = self.groups.params.len();
        let (mut m, mut v, mut t) = (vec![None; n], vec![None; n], vec![0u64; n]);
        for (i, p) in self.groups.params.iter().enumerate() {
            let count = steps
                .and_then(|s| s.get(p.name()))
                .map(|c| {
                    c.as_u64().ok_or_else(|| {
                        TrainError::OptimizerState(format!(
                            "step count for {:?} is not a non-negative integer: {c}",
                            p.name()
                        ))
                    })
                })
                .transpose()?
                .unwrap_or(0);
            let km = format!("{}/exp_avg", p.name());
            let kv = format!("{}/exp_avg_sq", p.name());
            match (state.tensor(&km), state.tensor(&kv), count) {
                (None, None, 0) => {}
                (Some(tm), Some(tv), c) if c > 0 => {
                    m[i] = Some(fit_state_tensor(tm, p, &km)?);
                    v[i] = Some(fit_state_tensor(tv, p, &kv)?);
                    t[i] = c;
                }
                _ => {
                    return Err(TrainError::OptimizerState(format!(
                        "{:?}: moments and step count are inconsistent (exp_avg {}, exp_avg_sq {}, step {count})",
                        p.name(),
                        if state.tensor(&km).is_some() {
                            "present"
                        } else {
                            "missing"
                        },
                        if state.tensor(&kv).is_some() {
                            "present"
                        } else {
                            "missing"
                        },
                    )));
                }
            }
        }
        self.m = m;
        self.v = v;
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
impl Adam {
    /// Switches the fused CPU kernels off (to compare with the candle-op path).
    pub(crate) fn without_fused(mut self) -> Self {
        self.fused = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use xfer_models::{ParamStore, Selection};

    fn value(p: &Param) -> f64 {
        p.var().as_tensor().to_vec1::<f64>().unwrap()[0]
    }

    /// Gradient of `f(w) = w²` at the parameter's current value.
    fn grads(p: &Param) -> GradStore {
        p.tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    /// Steps Adam by hand (PyTorch's formula written out), returning the expected weights.
    fn by_hand(w0: f64, lr: f64, wd: f64, decoupled: bool, steps: usize) -> Vec<f64> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let (mut w, mut m, mut v) = (w0, 0.0f64, 0.0f64);
        let mut out = Vec::new();
        for t in 1..=steps {
            let mut g = 2.0 * w; // ∇ w²
            if decoupled {
                w *= 1.0 - lr * wd;
            } else {
                g += wd * w;
            }
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let bc1 = 1.0 - b1.powi(t as i32);
            let bc2 = 1.0 - b2.powi(t as i32);
            w -= (lr / bc1) * m / (v.sqrt() / bc2.sqrt() + eps);
            out.push(w);
        }
        out
    }

    #[test]
    fn adam_first_step_moves_by_lr_times_sign_of_gradient() {
        // At t = 1: m̂ = g, v̂ = g², so the step is lr·g/(|g| + ε) ≈ lr·sign(g).
        let store = ParamStore::new();
        let p = store
            .add("w", Tensor::new(&[1.0f64], &Device::Cpu).unwrap())
            .unwrap();
        let mut opt = Adam::new(store.trainable(), AdamConfig::adam()).unwrap();
        opt.step(&grads(&p), 0.1).unwrap();
        // g = 2: m = 0.2, v = 0.004, bc1 = 0.1, bc2 = 0.001 →
        // w = 1 − (0.1/0.1)·0.2/(√0.004/√0.001 + 1e-8) = 1 − 0.2/(2 + 1e-8)
        let expected = 1.0 - 0.2 / (2.0 + 1e-8);
        assert!((value(&p) - expected).abs() < 1e-15);
        assert!((value(&p) - 0.9).abs() < 1e-8);
    }

    #[test]
    fn adam_coupled_weight_decay_matches_torch_formula_over_five_steps() {
        let store = ParamStore::new();
        let p = store
            .add("w", Tensor::new(&[1.5f64], &Device::Cpu).unwrap())
            .unwrap();
        let mut opt =
            Adam::new(store.trainable(), AdamConfig::adam().with_weight_decay(0.1)).unwrap();
        for (s, expected) in by_hand(1.5, 0.05, 0.1, false, 5).into_iter().enumerate() {
            opt.step(&grads(&p), 0.05).unwrap();
            assert!(
                (value(&p) - expected).abs() < 1e-12,
                "step {s}: {} vs {expected}",
                value(&p)
            );
        }
    }

    #[test]
    fn adamw_decoupled_weight_decay_matches_torch_formula_over_five_steps() {
        let store = ParamStore::new();
        let p = store
            .add("w", Tensor::new(&[1.5f64], &Device::Cpu).unwrap())
            .unwrap();
        let mut opt = Adam::new(
            store.trainable(),
            AdamConfig::adamw().with_weight_decay(0.1),
        )
        .unwrap();
        assert_eq!(opt.kind(), "adamw");
        let hand = by_hand(1.5, 0.05, 0.1, true, 5);
        // The decoupled and coupled trajectories differ: the decay is not in the moments.
        let coupled = by_hand(1.5, 0.05, 0.1, false, 5);
        assert!((hand[4] - coupled[4]).abs() > 1e-6);
        for (s, expected) in hand.into_iter().enumerate() {
            opt.step(&grads(&p), 0.05).unwrap();
            assert!(
                (value(&p) - expected).abs() < 1e-12,
                "step {s}: {} vs {expected}",
                value(&p)
            );
        }
    }

    #[test]
    fn adam_second_step_written_out_by_hand() {
        // w0 = 1, lr 0.1, no decay. Step 1 as above: w1 = 1 − 0.2/(2 + 1e-8).
        // Step 2: g = 2·w1; m = 0.9·0.2 + 0.1·g; v = 0.999·0.004 + 0.001·g²;
        //         w2 = w1 − (0.1/(1 − 0.81))·m/(√v/√(1 − 0.998001) + 1e-8)
        let store = ParamStore::new();
        let p = store
            .add("w", Tensor::new(&[1.0f64], &Device::Cpu).unwrap())
            .unwrap();
        let mut opt = Adam::new(store.trainable(), AdamConfig::adam()).unwrap();
        opt.step(&grads(&p), 0.1).unwrap();
        opt.step(&grads(&p), 0.1).unwrap();
        let w1: f64 = 1.0 - 0.2 / (2.0 + 1e-8);
        let g = 2.0 * w1;
        let m = 0.9 * 0.2 + 0.1 * g;
        let v = 0.999 * 0.004 + 0.001 * g * g;
        let w2 = w1 - (0.1 / (1.0 - 0.81)) * m / (v.sqrt() / (1.0f64 - 0.998001).sqrt() + 1e-8);
        assert!((value(&p) - w2).abs() < 1e-14, "{} vs {w2}", value(&p));
    }

    #[test]
    fn adam_groups_scale_the_rate_and_frozen_params_stay() {
        let store = ParamStore::new();
        let back = store
            .add("backbone.w", Tensor::new(&[1.0f64], &Device::Cpu).unwrap())
            .unwrap();
        let head = store
            .add("head.w", Tensor::new(&[1.0f64], &Device::Cpu).unwrap())
            .unwrap();
        let frozen = store
            .add("frozen.w", Tensor::new(&[1.0f64], &Device::Cpu).unwrap())
            .unwrap();
        store.freeze(&Selection::parse("frozen").unwrap());
        let groups = vec![
            (
                store.select(&Selection::parse("backbone").unwrap()),
                0.1,
                0.0,
            ),
            (
                store.select(&Selection::parse("head,frozen").unwrap()),
                1.0,
                0.0,
            ),
        ];
        let mut opt = Adam::with_groups(groups, AdamConfig::adam()).unwrap();
        assert_eq!(opt.params().len(), 2);
        let loss = ((back.tensor().sqr().unwrap() + head.tensor().sqr().unwrap()).unwrap()
            + frozen.tensor())
        .unwrap()
        .sum_all()
        .unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        assert!((value(&back) - (1.0 - 0.01 * 2.0 / (2.0 + 1e-8))).abs() < 1e-15);
        assert!((value(&head) - (1.0 - 0.1 * 2.0 / (2.0 + 1e-8))).abs() < 1e-15);
        assert_eq!(value(&frozen), 1.0);
    }

    #[test]
    fn adam_state_round_trip_continues_bit_identically() {
        let run = |split: Option<usize>| {
            let store = ParamStore::new();
            let p = store
                .add(
                    "w",
                    Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).unwrap(),
                )
                .unwrap();
            let q = store
                .add("late", Tensor::new(&[0.3f32], &Device::Cpu).unwrap())
                .unwrap();
            let cfg = AdamConfig::adamw();
            let mut opt = Adam::new(store.trainable(), cfg).unwrap();
            for s in 0..7 {
                if split == Some(s) {
                    let st = opt.state().unwrap();
                    opt = Adam::new(store.trainable(), cfg).unwrap();
                    opt.load_state(&st).unwrap();
                }
                let a = Tensor::new(&[1.0f32, 3.0, 0.25], &Device::Cpu).unwrap();
                let mut loss = (p.tensor().sqr().unwrap() * a).unwrap().sum_all().unwrap();
                if s >= 2 {
                    // `late` gets gradients only from step 2: its own step count differs.
                    loss = (loss + q.tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
                }
                opt.step(&loss.backward().unwrap(), 0.05).unwrap();
            }
            let mut out = p.var().as_tensor().to_vec1::<f32>().unwrap();
            out.extend(q.var().as_tensor().to_vec1::<f32>().unwrap());
            out.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        };
        assert_eq!(run(None), run(Some(4)));
        assert_eq!(run(None), run(Some(1)));
    }

    #[test]
    fn adam_fused_cpu_kernels_are_bit_identical_to_the_candle_op_path() {
        use candle_core::DType;
        for (dtype, cfg) in [
            (DType::F32, AdamConfig::adamw().with_weight_decay(0.1)),
            (DType::F32, AdamConfig::adam().with_weight_decay(0.1)),
            (DType::F64, AdamConfig::adamw()),
            (DType::F32, AdamConfig::adam()),
        ] {
            let run = |fused: bool| {
                let store = ParamStore::new();
                let mut rng = xfer_ops::SeededRng::new(4);
                let p = store
                    .add(
                        "w",
                        rng.normal(&[5, 3], 0.0, 1.0, dtype, &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                let a = rng.normal(&[5, 3], 0.0, 1.0, dtype, &Device::Cpu).unwrap();
                let mut opt = Adam::new(store.trainable(), cfg).unwrap();
                if !fused {
                    opt = opt.without_fused();
                }
                for _ in 0..6 {
                    let loss = (p.tensor().sqr().unwrap() * &a).unwrap().sum_all().unwrap();
                    opt.step(&loss.backward().unwrap(), 0.01).unwrap();
                }
                let mut out = p
                    .var()
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                for (_, t) in opt.state().unwrap().tensors {
                    out.extend(
                        t.flatten_all()
                            .unwrap()
                            .to_dtype(DType::F64)
                            .unwrap()
                            .to_vec1::<f64>()
                            .unwrap(),
                    );
                }
                out.into_iter().map(f64::to_bits).collect::<Vec<_>>()
            };
            assert_eq!(run(true), run(false), "{dtype:?} {cfg:?}");
        }
    }

    #[test]
    fn adam_load_state_refuses_inconsistent_moments() {
        let store = ParamStore::new();
        store
            .add("w", Tensor::new(&[1.0f64], &Device::Cpu).unwrap())
            .unwrap();
        let mut opt = Adam::new(store.trainable(), AdamConfig::adam()).unwrap();
        let st = OptimizerState {
            kind: "adam".into(),
            meta: json!({"step": {"w": 3}}),
            tensors: vec![(
                "w/exp_avg".into(),
                Tensor::new(&[0.1f64], &Device::Cpu).unwrap(),
            )],
        };
        let e = opt.load_state(&st).unwrap_err().to_string();
        assert!(e.contains("exp_avg_sq missing"), "{e}");
        let st = OptimizerState {
            kind: "adamw".into(),
            meta: json!({}),
            tensors: vec![],
        };
        assert!(opt.load_state(&st).is_err(), "adam vs adamw kinds differ");
    }
}
