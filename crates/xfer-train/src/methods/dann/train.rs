//! The objective of every method and the label-free evaluation, on the one training loop.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use xfer_data::{PairedLoader, TensorDataset, UnlabeledDataset};
use xfer_losses::{
    ConditionalDomainAdversarialLoss, ConditioningMap, DomainAdversarialLoss, MultiKernelMmd,
    coral, cross_entropy, minimum_class_confusion, pseudo_label_loss,
};
use xfer_models::{
    Classifier, ClassifierConfig, DomainDiscriminator, DomainDiscriminatorConfig, ModuleT,
    ParamGroup, Selection,
};
use xfer_ops::SeededRng;

use super::augment::{Augmenter, Strength};
use super::model::{DannModel, DannResult, balanced_domain_accuracy, discriminator_input};
use super::{Adversary, DannConfig, DannMethod, ORACLE_METRIC};
use crate::batches::StepBatches;
use crate::batches::chunked;
use crate::history::Metrics;
use crate::metrics;
use crate::model_selection::{DensityRatio, ScoreInputs, score_all};
use crate::optim::{Sgd, SgdConfig};
use crate::trainer::{
    EarlyStopping, EvalCtx, StepCtx, StepOutput, Trainer, TrainerConfig, derive_seed,
};
use crate::{Result, TrainError};

/// Sub-seed tags (see [`derive_seed`]).
const TAG_INIT: u64 = 0x494E_4954; // "INIT"
const TAG_DATA: u64 = 0x4441_5441; // "DATA"
const TAG_MAP: u64 = 0x4D41_5000; // "MAP"
const TAG_AUG: u64 = 0x4155_4700; // "AUG"
/// Rows per forward pass of AdaBN's statistics.
const EVAL_CHUNK: usize = 512;

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Trains `method` on labelled `source` and unlabelled `target` data (the same sample shape)
/// with the one training loop, starting from weights drawn from `seed`.
///
/// Every `cfg.eval_every` steps the evaluation logs, on `source_val` (labelled source data
/// held out; the training source when `None`) and the target inputs, every label-free score
/// of [`crate::model_selection::score_all`] and the domain accuracy; `cfg.selection` picks the
/// kept weights by one of them. `oracle`, labelled target test data, is only *recorded* as
/// `oracle_target_acc` at each evaluation, never used for a choice.
#[allow(clippy::too_many_arguments)]
pub fn train(
    method: DannMethod,
    cfg: &DannConfig,
    source: &TensorDataset,
    target: &UnlabeledDataset,
    source_val: Option<&TensorDataset>,
    oracle: Option<&TensorDataset>,
    seed: u64,
    dev: &Device,
) -> Result<DannModel> {
    use xfer_data::Dataset;
    cfg.validate()?;
    if source.sample_shape() != target.sample_shape() {
        return Err(TrainError::Config(format!(
            "source `{}` has samples of shape {:?} but target `{}` has {:?}; bring both to \
             one shape (add `flatten` to both specs, resize images, or select the same columns)",
            source.name(),
            source.sample_shape(),
            target.name(),
            target.sample_shape()
        )));
    }
    let classes = source.num_classes();
    if classes < 2 {
        return Err(TrainError::Config(format!(
            "source `{}` has {classes} class(es); classification needs at least 2",
            source.name()
        )));
    }
    let net = Classifier::new(
        &ClassifierConfig::new(cfg.backbone.clone(), source.sample_shape(), classes)
            .with_bottleneck(cfg.bottleneck),
        derive_seed(seed, &[TAG_INIT]),
        dev,
    )?;
    let store = net.store().clone();
    let mut rng = SeededRng::new(derive_seed(seed, &[TAG_INIT, 1]));
    if method == DannMethod::Adabn && !net.has_batch_norm() {
        return Err(TrainError::Config(
            "adabn re-estimates batch-norm statistics, but the network has none: give it a \
             bottleneck (DannConfig::bottleneck, --bottleneck N)"
                .into(),
        ));
    }
    let adversary = method.adversary();
    let conditioning = match adversary {
        Adversary::Cdan { .. } => Some(ConditioningMap::auto(
            net.feature_dim(),
            classes,
            cfg.cdan_max_full_dim,
            cfg.cdan_random_dim,
            &mut SeededRng::new(derive_seed(seed, &[TAG_MAP])),
            DType::F32,
            dev,
        )?),
        _ => None,
    };
    let disc_in = conditioning.as_ref().map_or(net.feature_dim(), |m| {
        m.output_dim(net.feature_dim(), classes)
    });
    let d = &cfg.discriminator;
    let disc_cfg = DomainDiscriminatorConfig {
        dropout: d.dropout,
        batch_norm: d.batch_norm,
        ..DomainDiscriminatorConfig::new(disc_in, d.hidden, d.depth)
    };
    let discriminator = Arc::new(DomainDiscriminator::new(
        &store.scope("discriminator"),
        &disc_cfg,
        &mut rng,
        DType::F32,
        dev,
    )?);
    let g_d = Arc::clone(&discriminator);
    let dann_loss = DomainAdversarialLoss::new(move |f: &Tensor| g_d.forward_t(f, true));
    let cdan_loss = match (&conditioning, adversary) {
        (Some(map), Adversary::Cdan { entropy }) => {
            let g_d = Arc::clone(&discriminator);
            Some(ConditionalDomainAdversarialLoss::new(
                move |h: &Tensor| g_d.forward_t(h, true),
                map.clone(),
                entropy,
            ))
        }
        _ => None,
    };
    let mmd = MultiKernelMmd::default();

    let pairs = PairedLoader::from_datasets(
        source.clone(),
        target.clone(),
        cfg.batch_size,
        derive_seed(seed, &[TAG_DATA]),
        dev,
    )?;
    // The classifier's groups (a pretrained backbone at a tenth of the rate by default, as
    // in fine-tuning) plus the discriminator's.
    let mut groups = net.param_groups(
        cfg.backbone_lr_mult
            .unwrap_or_else(|| net.default_backbone_lr_mult()),
    )?;
    groups.push(
        ParamGroup::new("discriminator", Selection::Prefix("discriminator".into()))
            .with_lr_mult(cfg.disc_lr_mult),
    );
    let opt = Sgd::with_param_groups(
        &store,
        &groups,
        SgdConfig {
            weight_decay: cfg.weight_decay,
            ..SgdConfig::momentum(cfg.momentum)
        },
    )?;
    let mut tcfg = TrainerConfig::steps(cfg.steps, cfg.eval_every, cfg.schedule())
        .with_name(method.name())
        .with_seed(seed)
        .with_quiet(cfg.quiet);
    // Selection, never stopping: patience covers the whole run.
    if let Some(s) = cfg.selection {
        tcfg = tcfg.with_early_stopping(EarlyStopping {
            mode: s.mode(),
            ..EarlyStopping::max(s.metric(), usize::MAX)
        });
    }
    let mut trainer = Trainer::new(tcfg, &store, opt)?;

    let tgt_inputs = target.to_tensor(dev)?;
    let augmenter = match method {
        DannMethod::Fixmatch => Some(Augmenter::new(target.sample_shape(), &tgt_inputs)?),
        _ => None,
    };
    let mut batches = StepBatches::new(&pairs);
    let mut objective = |ctx: &StepCtx| -> Result<StepOutput> {
        let (s, t) = batches.next(ctx)?;
        let ns = s.len();
        let lambda = cfg.lambda(method, ctx.progress);
        if matches!(method, DannMethod::SourceOnly | DannMethod::Adabn) {
            // Source batch only through the network in training mode (its batch norm sees
            // no target); the probe G_d learns on detached features.
            let fs = net.features(&s.x, true)?;
            let class_loss = cross_entropy(&net.head_forward(&fs, true)?, s.labels()?)?;
            if !cfg.probe_discriminator {
                return Ok(StepOutput::new(class_loss.clone())
                    .with_metric("class_loss", scalar(&class_loss)?)
                    .with_metric("lambda", lambda));
            }
            let ft = net.features(&t.x, false)?.detach();
            let probe = dann_loss.forward(&fs.detach(), &ft, 0.0)?;
            let loss = (&class_loss + &probe.loss)?;
            return Ok(StepOutput::new(loss)
                .with_metric("class_loss", scalar(&class_loss)?)
                .with_metric("domain_loss", scalar(&probe.loss)?)
                .with_metric("domain_acc", probe.domain_accuracy)
                .with_metric("lambda", lambda));
        }
        let mut rng = ctx.rng(TAG_AUG);
        let xt = match &augmenter {
            Some(a) => a.view(&t.x, Strength::Weak, &mut rng)?,
            None => t.x.clone(),
        };
        let x = Tensor::cat(&[&s.x, &xt], 0)?;
        let f = net.features(&x, true)?;
        let logits = net.head_forward(&f, true)?;
        let nt = f.dim(0)? - ns;
        let fs = f.narrow(0, 0, ns)?;
        let ft = f.narrow(0, ns, nt)?;
        let ls = logits.narrow(0, 0, ns)?;
        let lt = logits.narrow(0, ns, nt)?;
        let class_loss = cross_entropy(&ls, s.labels()?)?;
        let adv = match (adversary, &cdan_loss) {
            (Adversary::Dann, _) => dann_loss.forward(&fs, &ft, lambda)?,
            (Adversary::Cdan { .. }, Some(c)) => c.forward(&fs, &ls, &ft, &lt, lambda)?,
            _ if cfg.probe_discriminator => dann_loss.forward(&fs.detach(), &ft.detach(), 0.0)?,
            _ => xfer_losses::DomainAdversarialOutput {
                loss: class_loss.zeros_like()?,
                domain_accuracy: f64::NAN,
                source_accuracy: f64::NAN,
                target_accuracy: f64::NAN,
            },
        };
        let mut loss = (&class_loss + &adv.loss)?;
        let mut out_metrics: Metrics = vec![
            ("class_loss".into(), scalar(&class_loss)?),
            ("lambda".into(), lambda),
        ];
        if adv.domain_accuracy.is_finite() {
            out_metrics.push(("domain_loss".into(), scalar(&adv.loss)?));
            out_metrics.push(("domain_acc".into(), adv.domain_accuracy));
        }
        if method.uses_mcc() {
            let mcc = minimum_class_confusion(&lt, cfg.mcc_temperature)?;
            out_metrics.push(("mcc".into(), scalar(&mcc)?));
            loss = (loss + (mcc * cfg.mcc_weight)?)?;
        }
        match method {
            DannMethod::SelfTrain => {
                let pl = pseudo_label_loss(&lt, &lt, cfg.threshold, cfg.class_balance)?;
                out_metrics.push(("pseudo_label_loss".into(), scalar(&pl.loss)?));
                out_metrics.push(("mask_rate".into(), pl.mask_rate));
                loss = (loss + (pl.loss * (lambda * cfg.self_train_weight))?)?;
            }
            DannMethod::Fixmatch => {
                let strong = match &augmenter {
                    Some(a) => a.view(&t.x, Strength::Strong, &mut rng)?,
                    None => t.x.clone(),
                };
                let ls_strong = net.logits(&strong, true)?;
                let pl = pseudo_label_loss(&lt, &ls_strong, cfg.threshold, cfg.class_balance)?;
                out_metrics.push(("pseudo_label_loss".into(), scalar(&pl.loss)?));
                out_metrics.push(("mask_rate".into(), pl.mask_rate));
                loss = (loss + (pl.loss * (lambda * cfg.self_train_weight))?)?;
            }
            DannMethod::Dan => {
                let m = mmd.forward(&fs, &ft)?;
                out_metrics.push(("mmd".into(), scalar(&m)?));
                loss = (loss + (m * (lambda * cfg.mmd_weight))?)?;
            }
            DannMethod::Coral => {
                let c = coral(&fs, &ft)?;
                out_metrics.push(("coral".into(), scalar(&c)?));
                loss = (loss + (c * (lambda * cfg.coral_weight))?)?;
            }
            _ => {}
        }
        Ok(StepOutput {
            loss,
            metrics: out_metrics,
        })
    };

    // Evaluations see source validation labels and target inputs only (the oracle's target
    // accuracy is recorded, never read by a choice).
    let (val_x, val_y) = match source_val {
        Some(v) => v.to_tensors(dev)?,
        None => source.to_tensors(dev)?,
    };
    let input_weights = DensityRatio::fit(&val_x, &tgt_inputs)?.weights(&val_x)?;
    let oracle_t = match oracle {
        Some(o) => Some(o.to_tensors(dev)?),
        None => None,
    };
    let mut evaluator = |_: &EvalCtx| -> Result<Metrics> {
        let fs = chunked(&val_x, |b| Ok(net.features(b, false)?))?;
        let ls = chunked(&fs, |b| Ok(net.head_forward(b, false)?))?;
        if method == DannMethod::Adabn {
            net.adapt_batch_norm(&tgt_inputs, EVAL_CHUNK)?;
        }
        let ft = chunked(&tgt_inputs, |b| Ok(net.features(b, false)?))?;
        let lt = chunked(&ft, |b| Ok(net.head_forward(b, false)?))?;
        let mut m = score_all(&ScoreInputs {
            source_logits: &ls,
            source_labels: &val_y,
            source_features: &fs,
            target_logits: &lt,
            target_features: &ft,
            input_weights: Some(&input_weights),
        })?;
        let h = discriminator_input(
            conditioning.as_ref(),
            &Tensor::cat(&[&fs, &ft], 0)?,
            &Tensor::cat(&[&ls, &lt], 0)?,
        )?;
        let dl = chunked(&h, |b| Ok(discriminator.forward_t(b, false)?))?;
        m.push((
            "domain_acc".into(),
            balanced_domain_accuracy(&dl, fs.dim(0)?)?,
        ));
        if let Some((xo, yo)) = &oracle_t {
            let lo = chunked(xo, |b| Ok(net.logits(b, false)?))?;
            m.push((
                ORACLE_METRIC.into(),
                metrics::accuracy_from_logits(&lo, yo)?,
            ));
        }
        Ok(m)
    };
    let report = trainer.fit_with_eval(&mut objective, &mut evaluator)?;
    tracing::info!(
        target: "xfer_train",
        method = method.name(),
        steps = report.steps,
        final_loss = report.final_loss,
        "domain adaptation run finished"
    );
    Ok(DannModel {
        method,
        store,
        net,
        discriminator,
        report,
        seed,
        selection: cfg.selection,
        conditioning,
    })
}

/// Trains `method` and evaluates it: [`train`] (with `source_test` as source validation data
/// and `target_test` recorded as the oracle curve) then [`DannModel::evaluate`].
#[allow(clippy::too_many_arguments)]
pub fn run(
    method: DannMethod,
    cfg: &DannConfig,
    source: &TensorDataset,
    target: &UnlabeledDataset,
    source_test: &TensorDataset,
    target_test: &TensorDataset,
    seed: u64,
    dev: &Device,
) -> Result<(DannModel, DannResult)> {
    let model = train(
        method,
        cfg,
        source,
        target,
        Some(source_test),
        Some(target_test),
        seed,
        dev,
    )?;
    let result = model.evaluate(source_test, target_test)?;
    Ok((model, result))
}
