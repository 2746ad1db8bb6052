//! The one run of a method: `L_y` plus the method's terms, on the one training loop through
//! [`Stage::fit`](crate::run::Stage::fit), with the label-free evaluation.

use candle_core::Tensor;
use xfer_data::{PairedLoader, TensorDataset, UnlabeledDataset};
use xfer_losses::cross_entropy;
use xfer_models::{Classifier, ClassifierConfig, ParamGroup};
use xfer_ops::SeededRng;

use super::model::Outcome;
use super::terms::{DomainClassifier, StepView, TermEnv, scalar};
use super::{Config, ORACLE_METRIC};
use crate::batches::{StepBatches, chunked};
use crate::history::Metrics;
use crate::metrics;
use crate::model_selection::{DensityRatio, ScoreInputs, Scorer, score_all};
use crate::run::RunCtx;
use crate::trainer::{EarlyStopping, EvalCtx, StepCtx, StepOutput, derive_seed};
use crate::{Result, TrainError};

/// Sub-seed tags (see [`derive_seed`]).
const TAG_INIT: u64 = 0x494E_4954; // "INIT"
const TAG_DATA: u64 = 0x4441_5441; // "DATA"
const TAG_AUG: u64 = 0x4155_4700; // "AUG"

/// The data of a run: labelled source, unlabelled target, and the optional labelled sets
/// the evaluations read.
#[derive(Debug, Clone)]
pub struct Data {
    /// Labelled source training data.
    pub source: TensorDataset,
    /// Target inputs; their labels are never seen.
    pub target: UnlabeledDataset,
    /// Held-out labelled source data for the evaluations' source scores (the training source
    /// when `None`).
    pub source_val: Option<TensorDataset>,
    /// Labelled target test data: only *recorded* at each evaluation (`oracle_target_acc`)
    /// and measured once after training ([`Outcome::evaluation`]); nothing chooses by it.
    pub target_test: Option<TensorDataset>,
}

impl Data {
    /// `source` and `target`, no held-out sets.
    pub fn new(source: TensorDataset, target: UnlabeledDataset) -> Self {
        Self {
            source,
            target,
            source_val: None,
            target_test: None,
        }
    }

    /// With held-out source data.
    pub fn with_source_val(mut self, ds: TensorDataset) -> Self {
        self.source_val = Some(ds);
        self
    }

    /// With labelled target test data.
    pub fn with_target_test(mut self, ds: TensorDataset) -> Self {
        self.target_test = Some(ds);
        self
    }

    /// The labelled source data the evaluations score: the held-out set, or the training
    /// source.
    pub fn source_eval(&self) -> &TensorDataset {
        self.source_val.as_ref().unwrap_or(&self.source)
    }
}

/// The parameter groups a run of `cfg` optimises on `net`: `G_d` at
/// `cfg.discriminator.lr_mult`, the groups of the method's terms, then the classifier's
/// ([`crate::run::Stage::groups`]: a pretrained backbone at a tenth of the rate unless
/// `cfg.stage.backbone_lr_mult` says otherwise).
pub fn param_groups(cfg: &Config, net: &Classifier) -> Result<Vec<ParamGroup>> {
    cfg.stage.groups(net, &extra_groups(cfg))
}

fn extra_groups(cfg: &Config) -> Vec<ParamGroup> {
    let mut groups = vec![DomainClassifier::param_group(cfg.discriminator.lr_mult)];
    for t in cfg.method.terms(&cfg.terms) {
        groups.extend(t.param_groups());
    }
    groups
}

/// Which evaluation's weights a run keeps: the best by `selection` (patience = the whole
/// run, restore-best), or, for `None`, the last (the watcher restores nothing).
fn keep_rule(selection: Option<Scorer>) -> EarlyStopping {
    match selection {
        Some(s) => EarlyStopping {
            mode: s.mode(),
            ..EarlyStopping::max(s.metric(), usize::MAX)
        },
        None => EarlyStopping {
            restore_best: false,
            ..EarlyStopping::max(Scorer::SourceAcc.metric(), usize::MAX)
        },
    }
}

/// Trains `cfg.method` on `data` (see the module documentation): a network drawn from
/// `ctx.seed`, `L_y` plus the method's terms, an evaluation every `cfg.stage.eval_every`
/// steps logging every label-free score, the weights kept by `cfg.selection`; with
/// `ctx.checkpoints`, checkpoints under `DIR/<method>/` (and resuming from them). With
/// `data.target_test`, the kept weights are then measured ([`Outcome::evaluation`]).
pub fn run(cfg: &Config, data: &Data, ctx: &RunCtx) -> Result<Outcome> {
    use xfer_data::Dataset;
    cfg.validate()?;
    let (source, target) = (&data.source, &data.target);
    if source.sample_shape() != target.sample_shape() {
        return Err(TrainError::BadData(format!(
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
        return Err(TrainError::BadData(format!(
            "source `{}` has {classes} class(es); classification needs at least 2",
            source.name()
        )));
    }
    let (dev, seed) = (&ctx.device, ctx.seed);
    let net = Classifier::new(
        &ClassifierConfig::new(cfg.backbone.clone(), source.sample_shape(), classes)
            .with_bottleneck(cfg.bottleneck),
        derive_seed(seed, &[TAG_INIT]),
        dev,
    )?;
    let tgt_inputs = target.to_tensor(dev)?;
    let mut terms = cfg.method.terms(&cfg.terms);
    let env = TermEnv {
        net: &net,
        seed,
        target: &tgt_inputs,
    };
    for t in &mut terms {
        t.prepare(&env)?;
    }
    if terms.iter().filter(|t| t.is_adversary()).count() > 1 {
        return Err(TrainError::Incompatible(format!(
            "{}: at most one adversarial term per method (they would share one G_d)",
            cfg.method
        )));
    }
    let conditioning = terms.iter().find_map(|t| t.conditioning()).cloned();
    let disc_in = conditioning.as_ref().map_or(net.feature_dim(), |m| {
        m.output_dim(net.feature_dim(), classes)
    });
    let domain = DomainClassifier::new(
        net.store(),
        &cfg.discriminator,
        disc_in,
        conditioning,
        &mut SeededRng::new(derive_seed(seed, &[TAG_INIT, 1])),
        dev,
    )?;
    let pairs = PairedLoader::from_datasets(
        source.clone(),
        target.clone(),
        cfg.stage.batch_size,
        derive_seed(seed, &[TAG_DATA]),
        dev,
    )?;
    let mut extra = vec![DomainClassifier::param_group(cfg.discriminator.lr_mult)];
    for t in &terms {
        extra.extend(t.param_groups());
    }
    let on_target = terms.iter().any(|t| t.trains_on_target());
    let ramped = terms.iter().any(|t| t.ramped());
    let adversary = terms.iter().any(|t| t.is_adversary());

    let mut batches = StepBatches::new(&pairs);
    let mut objective = |step: &StepCtx| -> Result<StepOutput> {
        let (s, t) = batches.next(step)?;
        let lambda = if ramped {
            cfg.ramp.lambda(step.progress)
        } else {
            0.0
        };
        if !on_target {
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
            let probe = domain.probe(&fs, &ft)?;
            let loss = (&class_loss + &probe.loss)?;
            return Ok(StepOutput::new(loss)
                .with_metric("class_loss", scalar(&class_loss)?)
                .with_metric("domain_loss", scalar(&probe.loss)?)
                .with_metric("domain_acc", probe.domain_accuracy)
                .with_metric("lambda", lambda));
        }
        let mut rng = step.rng(TAG_AUG);
        let mut xt = t.x.clone();
        for term in &terms {
            if let Some(v) = term.target_view(&t.x, &mut rng)? {
                xt = v;
            }
        }
        let x = Tensor::cat(&[&s.x, &xt], 0)?;
        let f = net.features(&x, true)?;
        let logits = net.head_forward(&f, true)?;
        let ns = s.len();
        let nt = f.dim(0)? - ns;
        let fs = f.narrow(0, 0, ns)?;
        let ft = f.narrow(0, ns, nt)?;
        let ls = logits.narrow(0, 0, ns)?;
        let lt = logits.narrow(0, ns, nt)?;
        let class_loss = cross_entropy(&ls, s.labels()?)?;
        let mut out_metrics: Metrics = vec![
            ("class_loss".into(), scalar(&class_loss)?),
            ("lambda".into(), lambda),
        ];
        let mut loss = if adversary {
            class_loss.clone()
        } else if cfg.probe_discriminator {
            let probe = domain.probe(&fs, &ft)?;
            if probe.domain_accuracy.is_finite() {
                out_metrics.push(("domain_loss".into(), scalar(&probe.loss)?));
                out_metrics.push(("domain_acc".into(), probe.domain_accuracy));
            }
            (&class_loss + &probe.loss)?
        } else {
            (&class_loss + class_loss.zeros_like()?)?
        };
        let view = StepView {
            net: &net,
            source_features: &fs,
            target_features: &ft,
            source_logits: &ls,
            target_logits: &lt,
            target_batch: &t.x,
            lambda,
            domain: &domain,
        };
        for term in &terms {
            if let Some(out) = term.loss(&view, &mut rng)? {
                loss = (&loss + &out.loss)?;
                out_metrics.extend(out.metrics);
            }
        }
        Ok(StepOutput {
            loss,
            metrics: out_metrics,
        })
    };

    // Evaluations see source validation labels and target inputs only (the oracle's target
    // accuracy is recorded, never read by a choice).
    let (val_x, val_y) = data.source_eval().to_tensors(dev)?;
    let input_weights = DensityRatio::fit(&val_x, &tgt_inputs)?.weights(&val_x)?;
    let oracle_t = match &data.target_test {
        Some(o) => Some(o.to_tensors(dev)?),
        None => None,
    };
    let mut evaluator = |_: &EvalCtx| -> Result<Metrics> {
        let fs = chunked(&val_x, |b| Ok(net.features(b, false)?))?;
        let ls = chunked(&fs, |b| Ok(net.head_forward(b, false)?))?;
        for term in &terms {
            term.before_target_eval(&net, &tgt_inputs)?;
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
        m.push(("domain_acc".into(), domain.accuracy(&fs, &ft, &ls, &lt)?));
        if let Some((xo, yo)) = &oracle_t {
            let lo = chunked(xo, |b| Ok(net.logits(b, false)?))?;
            m.push((
                ORACLE_METRIC.into(),
                metrics::accuracy_from_logits(&lo, yo)?,
            ));
        }
        Ok(m)
    };
    let mut report = cfg.stage.fit(
        cfg.method.name(),
        &net,
        &extra,
        &mut objective,
        pairs.steps_per_epoch(),
        Some((&mut evaluator, Some(keep_rule(cfg.selection)))),
        ctx,
    )?;
    if cfg.selection.is_none() {
        // The last weights were kept; the watcher's best is no choice.
        report.best = None;
    }
    tracing::info!(
        target: "xfer_train",
        method = cfg.method.name(),
        steps = report.steps,
        final_loss = report.final_loss,
        "domain adaptation run finished"
    );
    let mut outcome = Outcome {
        method: cfg.method,
        net,
        discriminator: domain,
        report,
        seed,
        selection: cfg.selection,
        evaluation: None,
        target_examples: target.len(),
    };
    if let Some(test) = &data.target_test {
        outcome.evaluation = Some(outcome.evaluate(data.source_eval(), test)?);
    }
    Ok(outcome)
}
