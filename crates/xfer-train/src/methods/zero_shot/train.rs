//! Training a zero-shot method on the seen classes with the one training loop.

use candle_core::{DType, Tensor};
use xfer_data::DataLoader;
use xfer_losses::{ZeroShotHinge, attribute_bce, cross_entropy};
use xfer_models::{Classifier, ClassifierConfig, EmbeddingHead, EmbeddingHeadConfig, ModuleT};
use xfer_ops::SeededRng;

use super::calibration::{CalibratedResult, calibrated_result};
use super::data::{description_matrix, ids_tensor};
use super::model::ZeroShotModel;
use super::{TAG_DATA, TAG_INIT, ZeroShotConfig, ZeroShotData, ZslMethod, ZslResult};
use crate::batches::StepBatches;
use crate::history::Metrics;
use crate::metrics;
use crate::run::RunCtx;
use crate::trainer::{EvalCtx, StepCtx, StepOutput, TrainReport, derive_seed};
use crate::{Result, TrainError};

/// Trains `cfg.method` on `data.train` (seen classes only) with the one training loop.
pub fn train(cfg: &ZeroShotConfig, data: &ZeroShotData, ctx: &RunCtx) -> Result<ZeroShotModel> {
    let method = cfg.method;
    let (seed, dev) = (ctx.seed, &ctx.device);
    cfg.validate()?;
    data.check()?;
    let descriptions = description_matrix(&data.attributes, cfg.scaling, dev)?;
    let a = data.attributes.num_attributes();
    let seen_desc = descriptions.index_select(&ids_tensor(&data.seen, dev)?, 0)?;
    if method == ZslMethod::Dap {
        let v = seen_desc.flatten_all()?.to_vec1::<f32>()?;
        if v.iter().any(|x| !(0.0..=1.0).contains(x)) {
            return Err(TrainError::Incompatible(
                "DAP needs attribute values in [0, 1]: use AttributeScaling::MinMax".into(),
            ));
        }
    }
    // Class id → index among the seen classes (the targets of every loss).
    let mut to_seen = vec![0u32; data.attributes.num_classes().max(data.train.num_classes())];
    for (i, &c) in data.seen.iter().enumerate() {
        if let Some(slot) = to_seen.get_mut(c as usize) {
            *slot = i as u32;
        }
    }
    let to_seen = Tensor::from_vec(to_seen.clone(), to_seen.len(), dev)?;

    let mut rng = SeededRng::new(derive_seed(seed, &[TAG_INIT]));
    let out_dim = match method {
        ZslMethod::Hinge => cfg.embed_dim,
        ZslMethod::Dap => a,
        ZslMethod::Conse => data.seen.len(),
    };
    let net = Classifier::with_rng(
        &ClassifierConfig::new(cfg.backbone.clone(), data.train.sample_shape(), out_dim),
        &mut rng,
        dev,
    )?;
    let store = net.store().clone();
    let g = match method {
        ZslMethod::Hinge => Some(EmbeddingHead::new(
            &store.scope("g"),
            &EmbeddingHeadConfig {
                in_dim: a,
                hidden: cfg.g_hidden.clone(),
                out_dim: cfg.embed_dim,
                activation: xfer_models::Activation::Relu,
                normalize: cfg.normalize,
            },
            &mut rng,
            DType::F32,
            dev,
        )?),
        _ => None,
    };
    let mut model = ZeroShotModel {
        method,
        store: store.clone(),
        net,
        g,
        descriptions,
        seen: data.seen.clone(),
        normalize: cfg.normalize,
        top_t: cfg.top_t,
        report: TrainReport {
            steps: 0,
            total_steps: cfg.stage.total_steps(0),
            stopped_early: false,
            best: None,
            last_eval: None,
            final_loss: None,
            history: Default::default(),
        },
    };

    let bs = cfg.stage.batch_size.min(data.train.len()).max(1);
    let loader = DataLoader::builder(data.train.clone(), bs)
        .drop_last(true)
        .seed(derive_seed(seed, &[TAG_DATA]))
        .device(dev.clone())
        .build()?;
    let hinge = ZeroShotHinge::new(cfg.margin)?;

    let report = {
        let m = &model;
        let mut batches = StepBatches::new(&loader);
        let mut objective = |ctx: &StepCtx| -> Result<StepOutput> {
            let b = batches.next(ctx)?;
            let y = to_seen.index_select(b.labels()?, 0)?;
            let loss = match method {
                ZslMethod::Hinge => {
                    let fx = m.embed(&b.x, true)?;
                    let gy =
                        m.g.as_ref()
                            .ok_or_else(|| TrainError::Config("hinge model without g".into()))?
                            .forward_t(&seen_desc, true)?;
                    let scores = fx.matmul(&gy.t()?)?;
                    hinge.forward(&scores, &y)?
                }
                ZslMethod::Dap => {
                    let z = m.net.logits(&b.x, true)?;
                    attribute_bce(&z, &seen_desc, &y)?
                }
                ZslMethod::Conse => {
                    let z = m.net.logits(&b.x, true)?;
                    cross_entropy(&z, &y)?
                }
            };
            Ok(StepOutput::new(loss))
        };
        // Logged only (no choice is made on it): accuracy among the seen classes on the
        // held-out seen samples.
        let (xv, _) = data.seen_test.to_tensors(dev)?;
        let yv: Vec<usize> = data
            .seen_test
            .labels()
            .iter()
            .map(|&c| c as usize)
            .collect();
        let mut evaluator = |_: &EvalCtx| -> Result<Metrics> {
            let pred: Vec<usize> = m
                .predict(&xv, &data.seen)?
                .into_iter()
                .map(|c| c as usize)
                .collect();
            Ok(vec![(
                "seen_val_acc".to_string(),
                metrics::mean_per_class_accuracy(&pred, &yv)?,
            )])
        };
        cfg.stage.fit(
            method.name(),
            &m.net,
            &[],
            &mut objective,
            loader.batches_per_epoch(),
            Some((&mut evaluator, None)),
            ctx,
        )?
    };
    model.report = report;
    Ok(model)
}

/// A trained zero-shot model with its evaluation.
#[derive(Debug)]
pub struct ZslOutcome {
    /// The model (its `net` is the trained [`Classifier`]).
    pub model: ZeroShotModel,
    /// Seen/unseen accuracies of [`ZeroShotModel::evaluate`] (`γ = 0`).
    pub result: ZslResult,
    /// The calibrated numbers, when [`ZeroShotConfig::calibration_folds`] asked for them.
    pub calibrated: Option<CalibratedResult>,
}

impl ZslOutcome {
    /// The numbers for reports: [`CalibratedResult::metrics`] when calibrated, else
    /// [`ZslResult::metrics`] with `h_uncalibrated` (= `h`) and `gamma` 0.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        match &self.calibrated {
            Some(c) => c.metrics(),
            None => {
                let mut m = self.result.metrics();
                m.push(("h_uncalibrated", self.result.h));
                m.push(("gamma", 0.0));
                m
            }
        }
    }
}

/// The family's one entry: trains `cfg.method` on `data` ([`train`]) and evaluates it; with
/// [`ZeroShotConfig::calibration_folds`] > 0, also chooses the calibrated stacking `γ`
/// label-free on pseudo-splits of the seen classes ([`super::calibration::calibrate`]) and
/// evaluates at it.
pub fn run(cfg: &ZeroShotConfig, data: &ZeroShotData, ctx: &RunCtx) -> Result<ZslOutcome> {
    let model = train(cfg, data, ctx)?;
    let result = model.evaluate(data)?;
    let calibrated = match cfg.calibration_folds {
        0 => None,
        folds => Some(calibrated_result(
            &model,
            result.clone(),
            cfg,
            data,
            folds,
            ctx,
        )?),
    };
    Ok(ZslOutcome {
        model,
        result,
        calibrated,
    })
}
