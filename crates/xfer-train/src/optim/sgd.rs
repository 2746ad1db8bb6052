//! Stochastic gradient descent with momentum, Nesterov momentum and (coupled) weight decay,
//! exactly as `torch.optim.SGD` (Sutskever et al. 2013 for the Nesterov form used by PyTorch).
//!
//! For each parameter `w` with gradient `g`, group rate `η = lr · lr_mult` and decay `λ`:
//! ```text
//! g ← g + λ·w                                   (if λ ≠ 0)
//! b ← g                        at the first step with a gradient,
//! b ← μ·b + (1 − τ)·g          afterwards        (if μ ≠ 0; τ = dampening)
//! g ← g + μ·b  (Nesterov)   or   g ← b  (classical)
//! w ← w − η·g
//! ```

use candle_core::Tensor;
use candle_core::backprop::GradStore;
use serde_json::json;
use xfer_models::{Param, ParamGroup, ParamStore, partition_params};

use super::{
    GroupSpec, Groups, Optimizer, OptimizerState, check_lr, check_state_keys, fit_state_tensor,
    fused,
};
use crate::{Result, TrainError};

/// Hyper-parameters of [`Sgd`] (PyTorch's defaults: all zero, no Nesterov).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    /// Momentum factor `μ` (0 disables momentum).
    pub momentum: f64,
    /// Dampening `τ` of the momentum: `b ← μ·b + (1 − τ)·g`.
    pub dampening: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening == 0`, as in PyTorch).
    pub nesterov: bool,
    /// Weight decay `λ` for [`Sgd::new`]; groups given to [`Sgd::with_groups`] carry their own.
    pub weight_decay: f64,
}

impl SgdConfig {
    /// Classical momentum `μ` with no weight decay.
    pub fn momentum(momentum: f64) -> Self {
        Self {
            momentum,
            ..Self::default()
        }
    }

    /// The same configuration with weight decay `λ`.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// The same configuration with Nesterov momentum switched on or off.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| Err(TrainError::invalid(what, v, "finite and >= 0 (sgd)"));
        if !(self.momentum.is_finite() && self.momentum >= 0.0) {
            return bad("momentum", self.momentum);
        }
        if !(self.dampening.is_finite() && self.dampening >= 0.0) {
            return bad("dampening", self.dampening);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay);
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(TrainError::invalid(
                "nesterov",
                true,
                format!(
                    "false unless momentum > 0 and dampening = 0 (sgd: Nesterov momentum \
                     requires them; momentum {}, dampening {})",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }
}

/// SGD as `torch.optim.SGD` (see the module documentation for the update).
pub struct Sgd {
    cfg: SgdConfig,
    groups: Groups,
    /// Momentum buffer per parameter (`None` until its first gradient).
    bufs: Vec<Option<Tensor>>,
    /// Use the fused CPU kernels where they apply (tests switch them off to compare).
    fused: bool,
}

impl std::fmt::Debug for Sgd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sgd")
            .field("cfg", &self.cfg)
            .field("params", &self.groups.params.len())
            .field("groups", &self.groups.settings.len())
            .finish()
    }
}

impl Sgd {
    /// One group: every trainable parameter of `params` with rate multiplier 1 and
    /// `cfg.weight_decay`.
    pub fn new(params: Vec<Param>, cfg: SgdConfig) -> Result<Self> {
        let wd = cfg.weight_decay;
        Self::with_groups(vec![(params, 1.0, wd)], cfg)
    }

    /// Several groups `(params, lr_mult, weight_decay)`; `cfg.weight_decay` is ignored.
    pub fn with_groups(groups: Vec<GroupSpec>, cfg: SgdConfig) -> Result<Self> {
        cfg.validate()?;
        let groups = Groups::build(groups, "sgd")?;
        let bufs = vec![None; groups.params.len()];
        Ok(Self {
            cfg,
            groups,
            bufs,
            fused: true,
        })
    }

    /// Groups from xfer-models' [`ParamGroup`]s over the trainable parameters of `store`
    /// ([`partition_params`]: first matching group wins, the rest form a default group with
    /// rate multiplier 1); a group without its own weight decay takes `cfg.weight_decay`.
    pub fn with_param_groups(
        store: &ParamStore,
        groups: &[ParamGroup],
        cfg: SgdConfig,
    ) -> Result<Self> {
        let specs = partition_params(store, groups)?
            .into_iter()
            .map(|g| g.into_spec(cfg.weight_decay))
            .collect();
        Self::with_groups(specs, cfg)
    }

    /// The configuration.
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }
}

impl Optimizer for Sgd {
    fn kind(&self) -> &'static str {
        "sgd"
    }

    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr, "sgd")?;
        let SgdConfig {
            momentum,
            dampening,
            nesterov,
            ..
        } = self.cfg;
        for (i, p) in self.groups.params.iter().enumerate() {
            if !p.is_trainable() {
                continue;
            }
            let w = p.var().as_tensor();
            let Some(g) = grads.get(w) else { continue };
            let Some(set) = self.groups.settings_of(i) else {
                continue;
            };
            let eta = lr * set.lr_mult;
            if self.fused && fused::applies(&[w, g]) {
                let g = if g.is_contiguous() {
                    g.clone()
                } else {
                    g.contiguous()?
                };
                let step = fused::SgdStep {
                    lr: eta,
                    momentum,
                    weight_decay: set.weight_decay,
                    nesterov,
                };
                if momentum != 0.0 {
                    let (buf, first) = match self.bufs[i].take() {
                        Some(b) => (b, false),
                        None => (w.zeros_like()?, true),
                    };
                    let fill = fused::SgdBuffer {
                        momentum,
                        dampening,
                        weight_decay: set.weight_decay,
                        first,
                    };
                    buf.inplace_op3(w, &g, &fill)?;
                    w.inplace_op3(&buf, &g, &step)?;
                    self.bufs[i] = Some(buf);
                } else {
                    w.inplace_op2(&g, &step)?;
                }
                continue;
            }
            let mut d = if set.weight_decay != 0.0 {
                (g + w.affine(set.weight_decay, 0.0)?)?
            } else {
                g.clone()
            };
            if momentum != 0.0 {
                let buf = match self.bufs[i].take() {
                    // a copy: the buffer must never share storage with a gradient
                    None => d.copy()?,
                    Some(b) => {
                        let scaled = if dampening != 0.0 {
                            d.affine(1.0 - dampening, 0.0)?
                        } else {
                            d.clone()
                        };
                        (b.affine(momentum, 0.0)? + scaled)?
                    }
                };
                d = if nesterov {
                    (&d + buf.affine(momentum, 0.0)?)?
                } else {
                    buf.clone()
                };
                self.bufs[i] = Some(buf);
            }
            let new = (w - d.affine(eta, 0.0)?)?;
            p.var().set(&new)?;
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
        for (p, b) in self.groups.params.iter().zip(&self.bufs) {
            if let Some(b) = b {
                tensors.push((format!("{}/momentum_buffer", p.name()), b.copy()?));
            }
        }
        Ok(OptimizerState {
            kind: self.kind().to_string(),
            meta: json!({ "config": self.cfg }),
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
        check_state_keys(state, &self.groups, &["momentum_buffer"])?;
        let mut bufs = vec![None; self.groups.params.len()];
        for (i, p) in self.groups.params.iter().enumerate() {
            let key = format!("{}/momentum_buffer", p.name());
            if let Some(t) = state.tensor(&key) {
                bufs[i] = Some(fit_state_tensor(t, p, &key)?);
            }
        }
        self.bufs = bufs;
        Ok(())
    }
}

#[cfg(test)]
impl Sgd {
    /// Switches the fused CPU kernels off (to compare with the candle-op path).
    pub(crate) fn without_fused(mut self) -> Self {
        self.fused = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use xfer_models::{ParamStore, Selection};

    /// `f(w) = Σ a_i w_i²`, so `∇f = 2 a ⊙ w`; returns the gradients.
    fn quad_grads(p: &Param, a: &[f64]) -> GradStore {
        let a = Tensor::new(a, &Device::Cpu).unwrap();
        let loss = (p.tensor().sqr().unwrap() * a).unwrap().sum_all().unwrap();
        loss.backward().unwrap()
    }

    fn scalar_param(store: &ParamStore, name: &str, w0: f64) -> Param {
        store
            .add(name, Tensor::new(&[w0], &Device::Cpu).unwrap())
            .unwrap()
    }

    fn value(p: &Param) -> f64 {
        p.var().as_tensor().to_vec1::<f64>().unwrap()[0]
    }

    #[test]
    fn sgd_momentum_with_weight_decay_matches_torch_formula_step_by_step() {
        // w0 = 1, f = w² (g = 2w), lr 0.1, μ 0.9, λ 0.1.
        let store = ParamStore::new();
        let p = scalar_param(&store, "w", 1.0);
        let mut opt = Sgd::new(
            store.trainable(),
            SgdConfig::momentum(0.9).with_weight_decay(0.1),
        )
        .unwrap();
        // step 1: g = 2·1 + 0.1·1 = 2.1; b = 2.1; w = 1 − 0.1·2.1 = 0.79
        // step 2: g = 2·0.79 + 0.079 = 1.659; b = 0.9·2.1 + 1.659 = 3.549; w = 0.79 − 0.3549 = 0.4351
        // step 3: g = 0.8702 + 0.04351 = 0.91371; b = 0.9·3.549 + 0.91371 = 4.10781;
        //         w = 0.4351 − 0.410781 = 0.024319
        for expected in [0.79, 0.4351, 0.024319] {
            opt.step(&quad_grads(&p, &[1.0]), 0.1).unwrap();
            assert!(
                (value(&p) - expected).abs() < 1e-12,
                "{} vs {expected}",
                value(&p)
            );
        }
    }

    #[test]
    fn sgd_nesterov_matches_torch_formula_step_by_step() {
        let store = ParamStore::new();
        let p = scalar_param(&store, "w", 1.0);
        let mut opt = Sgd::new(
            store.trainable(),
            SgdConfig::momentum(0.9)
                .with_weight_decay(0.1)
                .with_nesterov(true),
        )
        .unwrap();
        // step 1: g = 2.1; b = 2.1; d = 2.1 + 0.9·2.1 = 3.99; w = 1 − 0.399 = 0.601
        // step 2: g = 1.202 + 0.0601 = 1.2621; b = 1.89 + 1.2621 = 3.1521;
        //         d = 1.2621 + 0.9·3.1521 = 4.09899; w = 0.601 − 0.409899 = 0.191101
        // step 3: g = 0.382202 + 0.0191101 = 0.4013121; b = 2.83689 + 0.4013121 = 3.2382021;
        //         d = 0.4013121 + 2.91438189 = 3.31569399; w = 0.191101 − 0.331569399
        for expected in [0.601, 0.191101, 0.191101 - 0.331569399] {
            opt.step(&quad_grads(&p, &[1.0]), 0.1).unwrap();
            assert!(
                (value(&p) - expected).abs() < 1e-12,
                "{} vs {expected}",
                value(&p)
            );
        }
    }

    #[test]
    fn sgd_dampening_scales_only_later_gradients_into_the_buffer() {
        let store = ParamStore::new();
        let p = scalar_param(&store, "w", 1.0);
        let cfg = SgdConfig {
            momentum: 0.5,
            dampening: 0.5,
            ..SgdConfig::default()
        };
        let mut opt = Sgd::new(store.trainable(), cfg).unwrap();
        // step 1: g = 2; b = 2 (no dampening on the first step); w = 1 − 0.1·2 = 0.8
        // step 2: g = 1.6; b = 0.5·2 + 0.5·1.6 = 1.8; w = 0.8 − 0.18 = 0.62
        for expected in [0.8, 0.62] {
            opt.step(&quad_grads(&p, &[1.0]), 0.1).unwrap();
            assert!((value(&p) - expected).abs() < 1e-12);
        }
    }

    #[test]
    fn sgd_groups_apply_their_own_rate_multiplier_and_decay() {
        let store = ParamStore::new();
        let back = scalar_param(&store, "backbone.w", 1.0);
        let head = scalar_param(&store, "head.w", 1.0);
        let groups = vec![
            (
                store.select(&Selection::parse("backbone").unwrap()),
                0.1,
                0.0,
            ),
            (store.select(&Selection::parse("head").unwrap()), 1.0, 0.5),
        ];
        let mut opt = Sgd::with_groups(groups, SgdConfig::default()).unwrap();
        let a = Tensor::new(&[1.0f64], &Device::Cpu).unwrap();
        let loss = ((back.tensor().sqr().unwrap() + head.tensor().sqr().unwrap()).unwrap() * a)
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        // backbone: w = 1 − 0.01·2 = 0.98; head: w = 1 − 0.1·(2 + 0.5) = 0.75
        assert!((value(&back) - 0.98).abs() < 1e-12);
        assert!((value(&head) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn sgd_takes_xfer_models_param_groups_with_default_decay_for_the_rest() {
        let store = ParamStore::new();
        let back = scalar_param(&store, "backbone.w", 1.0);
        let bias = scalar_param(&store, "head.bias", 1.0);
        let head = scalar_param(&store, "head.weight", 1.0);
        let groups = [
            ParamGroup::new("backbone", "backbone").with_lr_mult(0.1),
            ParamGroup::new("no_decay", "*.bias").with_weight_decay(0.0),
        ];
        let cfg = SgdConfig::default().with_weight_decay(0.5);
        let mut opt = Sgd::with_param_groups(&store, &groups, cfg).unwrap();
        let loss = ((back.tensor() + bias.tensor()).unwrap() + head.tensor())
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        // g = 1 for each. backbone: 0.01·(1 + 0.5); bias: 0.1·1; head (default): 0.1·(1 + 0.5)
        assert!((value(&back) - (1.0 - 0.015)).abs() < 1e-12);
        assert!((value(&bias) - 0.9).abs() < 1e-12);
        assert!((value(&head) - 0.85).abs() < 1e-12);
    }

    #[test]
    fn sgd_never_touches_frozen_parameters_or_params_without_gradient() {
        let store = ParamStore::new();
        let frozen = scalar_param(&store, "frozen", 1.0);
        let live = scalar_param(&store, "live", 1.0);
        let unused = scalar_param(&store, "unused", 1.0);
        store.freeze(&Selection::Exact("frozen".into()));
        let mut opt =
            Sgd::new(store.all(), SgdConfig::momentum(0.9).with_weight_decay(0.1)).unwrap();
        assert_eq!(opt.params().len(), 2, "the frozen parameter is not kept");
        let loss = (frozen.tensor() * live.tensor())
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        assert_eq!(value(&frozen), 1.0);
        assert_eq!(value(&unused), 1.0, "no gradient: no decay either");
        // live: g = frozen = 1, + 0.1 = 1.1; w = 1 − 0.11
        assert!((value(&live) - 0.89).abs() < 1e-12);
        let st = opt.state().unwrap();
        assert_eq!(
            st.tensors.len(),
            1,
            "only the stepped parameter has a buffer"
        );
    }

    #[test]
    fn sgd_refuses_duplicate_parameters_and_bad_hyper_parameters() {
        let store = ParamStore::new();
        scalar_param(&store, "w", 1.0);
        let all = store.trainable();
        assert!(matches!(
            Sgd::with_groups(
                vec![(all.clone(), 1.0, 0.0), (all.clone(), 1.0, 0.0)],
                SgdConfig::default()
            ),
            Err(TrainError::InvalidValue { .. })
        ));
        assert!(Sgd::new(all.clone(), SgdConfig::default().with_nesterov(true)).is_err());
        assert!(Sgd::new(all.clone(), SgdConfig::momentum(-1.0)).is_err());
        let p = store.get("w").unwrap();
        let g = quad_grads(&p, &[1.0]);
        let mut opt = Sgd::new(all, SgdConfig::default()).unwrap();
        assert!(opt.step(&g, f64::NAN).is_err());
        assert_eq!(value(&p), 1.0);
    }

    #[test]
    fn sgd_state_round_trip_continues_bit_identically() {
        let run = |split: Option<usize>| {
            let store = ParamStore::new();
            let p = store
                .add(
                    "w",
                    Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).unwrap(),
                )
                .unwrap();
            let cfg = SgdConfig::momentum(0.9)
                .with_weight_decay(1e-3)
                .with_nesterov(true);
            let mut opt = Sgd::new(store.trainable(), cfg).unwrap();
            let a = [1.0f32, 3.0, 0.25];
            for s in 0..6 {
                if split == Some(s) {
                    let st = opt.state().unwrap();
                    opt = Sgd::new(store.trainable(), cfg).unwrap();
                    opt.load_state(&st).unwrap();
                }
                let a = Tensor::new(&a, &Device::Cpu).unwrap();
                let loss = (p.tensor().sqr().unwrap() * a).unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap(), 0.05).unwrap();
            }
            p.var().as_tensor().to_vec1::<f32>().unwrap()
        };
        let straight = run(None);
        let resumed = run(Some(3));
        assert_eq!(
            straight.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            resumed.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let _ = DType::F32;
    }

    #[test]
    fn sgd_fused_cpu_kernels_are_bit_identical_to_the_candle_op_path() {
        for (dtype, cfg) in [
            (
                DType::F32,
                SgdConfig::momentum(0.9)
                    .with_weight_decay(1e-2)
                    .with_nesterov(true),
            ),
            (
                DType::F32,
                SgdConfig {
                    momentum: 0.8,
                    dampening: 0.3,
                    nesterov: false,
                    weight_decay: 0.05,
                },
            ),
            (DType::F64, SgdConfig::momentum(0.9).with_weight_decay(1e-3)),
            (DType::F32, SgdConfig::default().with_weight_decay(0.1)),
            (DType::F32, SgdConfig::default()),
        ] {
            let run = |fused: bool| {
                let store = ParamStore::new();
                let mut rng = xfer_ops::SeededRng::new(9);
                let p = store
                    .add(
                        "w",
                        rng.normal(&[4, 7], 0.0, 1.0, dtype, &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                let a = rng.normal(&[4, 7], 0.0, 1.0, dtype, &Device::Cpu).unwrap();
                let mut opt = Sgd::new(store.trainable(), cfg).unwrap();
                if !fused {
                    opt = opt.without_fused();
                }
                for _ in 0..5 {
                    // a transposed product makes the gradient of `w` non-trivial
                    let loss = (p.tensor().sqr().unwrap() * &a).unwrap().sum_all().unwrap();
                    opt.step(&loss.backward().unwrap(), 0.05).unwrap();
                }
                let st = opt.state().unwrap();
                let mut out = p
                    .var()
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                for (_, t) in st.tensors {
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
    fn sgd_load_state_refuses_wrong_kind_and_shape() {
        let store = ParamStore::new();
        scalar_param(&store, "w", 1.0);
        let mut opt = Sgd::new(store.trainable(), SgdConfig::momentum(0.9)).unwrap();
        let wrong_kind = OptimizerState {
            kind: "adamw".into(),
            meta: serde_json::Value::Null,
            tensors: vec![],
        };
        assert!(opt.load_state(&wrong_kind).is_err());
        let wrong_shape = OptimizerState {
            kind: "sgd".into(),
            meta: serde_json::Value::Null,
            tensors: vec![(
                "w/momentum_buffer".into(),
                Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
            )],
        };
        let e = opt.load_state(&wrong_shape).unwrap_err().to_string();
        assert!(e.contains("w/momentum_buffer"), "{e}");
        let unknown = OptimizerState {
            kind: "sgd".into(),
            meta: serde_json::Value::Null,
            tensors: vec![(
                "nope/momentum_buffer".into(),
                Tensor::zeros(1, DType::F64, &Device::Cpu).unwrap(),
            )],
        };
        assert!(opt.load_state(&unknown).is_err());
    }
}
