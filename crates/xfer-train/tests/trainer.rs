//! The training loop end to end on a tiny MLP: exact resume, non-finite stops, early stopping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use xfer_models::{Linear, Module, ParamStore};
use xfer_ops::SeededRng;
use xfer_train::{
    Adam, AdamConfig, CheckpointConfig, CheckpointFile, EarlyStopping, EvalCtx, Metrics, Optimizer,
    Schedule, Sgd, SgdConfig, StepCtx, StepOutput, TrainError, Trainer, TrainerConfig,
    latest_checkpoint,
};

const N: usize = 48;
const BATCH: usize = 8;
const SPE: usize = N / BATCH; // 6 steps per epoch

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfer-train-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Two Gaussian blobs in 2-D, labels 0/1 (seeded).
fn blobs() -> (Tensor, Tensor) {
    let mut rng = SeededRng::new(7);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..N {
        let c = (i % 2) as u32;
        let mu = if c == 0 { -1.0 } else { 1.0 };
        xs.push((mu + 0.7 * rng.normal01()) as f32);
        xs.push((0.5 * mu + 0.7 * rng.normal01()) as f32);
        ys.push(c);
    }
    (
        Tensor::from_vec(xs, (N, 2), &Device::Cpu).unwrap(),
        Tensor::from_vec(ys, N, &Device::Cpu).unwrap(),
    )
}

struct Mlp {
    store: ParamStore,
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    fn new(init_seed: u64) -> Self {
        let store = ParamStore::new();
        let mut rng = SeededRng::new(init_seed);
        let l1 = Linear::new(
            &store.scope("l1"),
            2,
            16,
            true,
            &mut rng,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let l2 = Linear::new(
            &store.scope("l2"),
            16,
            2,
            true,
            &mut rng,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        Self { store, l1, l2 }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.l2
            .forward(&self.l1.forward(x).unwrap().relu().unwrap())
            .unwrap()
    }

    fn bits(&self) -> Vec<(String, Vec<u32>)> {
        self.store
            .all()
            .iter()
            .map(|p| {
                let v = p
                    .var()
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                (
                    p.name().to_string(),
                    v.into_iter().map(f32::to_bits).collect(),
                )
            })
            .collect()
    }
}

fn cross_entropy(logits: &Tensor, y: &Tensor) -> Tensor {
    let lsm = xfer_ops::log_softmax(logits).unwrap();
    let picked = lsm.gather(&y.unsqueeze(1).unwrap(), 1).unwrap();
    picked.mean_all().unwrap().neg().unwrap()
}

/// The seeded shuffling loader: batch `ctx.step_in_epoch` of the permutation of epoch
/// `ctx.epoch`, a pure function of `(seed, epoch)`.
fn batch(x: &Tensor, y: &Tensor, ctx: &StepCtx) -> (Tensor, Tensor) {
    let perm = SeededRng::new(ctx.epoch_seed()).permutation(N);
    let idx: Vec<u32> = perm[ctx.step_in_epoch * BATCH..(ctx.step_in_epoch + 1) * BATCH]
        .iter()
        .map(|&i| i as u32)
        .collect();
    let idx = Tensor::new(idx.as_slice(), &Device::Cpu).unwrap();
    (
        x.index_select(&idx, 0).unwrap(),
        y.index_select(&idx, 0).unwrap(),
    )
}

fn accuracy(m: &Mlp, x: &Tensor, y: &Tensor) -> f64 {
    let pred = m.forward(x).argmax(1).unwrap();
    let ok = pred
        .eq(y)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .mean_all()
        .unwrap();
    ok.to_scalar::<f64>().unwrap()
}

fn config(ck_dir: &std::path::Path, restore_best: bool) -> TrainerConfig {
    let es = EarlyStopping {
        restore_best,
        ..EarlyStopping::max("acc", 100)
    };
    TrainerConfig::epochs(4, SPE, Schedule::cosine(0.2, 0.01).with_warmup(3, 0.1))
        .with_seed(11)
        .with_clip_grad_norm(5.0)
        .with_quiet(true)
        .with_checkpoint(CheckpointConfig::new(ck_dir, 5))
        .with_early_stopping(es)
}

fn make_opt(kind: &str, store: &ParamStore) -> Box<dyn FnOnce() -> Box<dyn Optimizer>> {
    let params = store.trainable();
    match kind {
        "sgd" => Box::new(move || {
            Box::new(
                Sgd::new(
                    params,
                    SgdConfig::momentum(0.9)
                        .with_weight_decay(1e-3)
                        .with_nesterov(true),
                )
                .unwrap(),
            )
        }),
        _ => Box::new(move || Box::new(Adam::new(params, AdamConfig::adamw()).unwrap())),
    }
}

/// Runs the full plan; with `crash_at`, the objective fails at that step and a fresh model
/// (different initialisation) resumes from the newest checkpoint.
fn run(
    kind: &str,
    restore_best: bool,
    crash_at: Option<usize>,
    tag: &str,
) -> (Vec<(String, Vec<u32>)>, xfer_train::TrainReport) {
    let (x, y) = blobs();
    let dir = tmpdir(tag);
    if let Some(crash) = crash_at {
        let m = Mlp::new(1);
        let mut t = Trainer::new(
            config(&dir, restore_best),
            &m.store,
            make_opt(kind, &m.store)(),
        )
        .unwrap();
        let mut obj = |ctx: &StepCtx| {
            if ctx.step == crash {
                return Err(TrainError::objective("simulated crash"));
            }
            let (xb, yb) = batch(&x, &y, ctx);
            Ok(StepOutput::new(cross_entropy(&m.forward(&xb), &yb))
                .with_metric("batch", ctx.step_in_epoch as f64))
        };
        let mut ev = |_: &EvalCtx| {
            Ok(vec![("acc".to_string(), accuracy(&m, &x, &y))]) as xfer_train::Result<Metrics>
        };
        let e = t.fit_with_eval(&mut obj, &mut ev).unwrap_err();
        assert!(matches!(e, TrainError::Objective(_)));
    }
    // A fresh model with another initialisation: everything must come from the checkpoint.
    let m = Mlp::new(if crash_at.is_some() { 999 } else { 1 });
    let mut t = Trainer::new(
        config(&dir, restore_best),
        &m.store,
        make_opt(kind, &m.store)(),
    )
    .unwrap();
    if let Some(crash) = crash_at {
        let p = t.resume_latest().unwrap().expect("a checkpoint");
        assert!(t.step() > 0 && t.step() <= crash, "resumed at {}", t.step());
        assert!(p.to_string_lossy().contains("step-"));
    }
    let mut obj = |ctx: &StepCtx| {
        let (xb, yb) = batch(&x, &y, ctx);
        Ok(StepOutput::new(cross_entropy(&m.forward(&xb), &yb))
            .with_metric("batch", ctx.step_in_epoch as f64))
    };
    let mut ev = |_: &EvalCtx| {
        Ok(vec![("acc".to_string(), accuracy(&m, &x, &y))]) as xfer_train::Result<Metrics>
    };
    let report = t.fit_with_eval(&mut obj, &mut ev).unwrap();
    let bits = m.bits();
    std::fs::remove_dir_all(&dir).unwrap();
    (bits, report)
}

#[test]
fn interrupted_then_resumed_sgd_run_ends_with_bit_identical_weights() {
    // No best-weight restore: the final weights are those of the last step.
    let (straight, rep) = run("sgd", false, None, "sgd-a");
    let (resumed, rep2) = run("sgd", false, Some(13), "sgd-b");
    assert_eq!(straight, resumed);
    assert_eq!(
        rep.history, rep2.history,
        "the history carries over exactly"
    );
    assert_eq!(rep.steps, 4 * SPE);
    assert_eq!(rep.history.evals.len(), 4);
    // it trained: the last epoch's loss is well below the first's, and accuracy is high
    let first = rep.history.epoch_loss(0).unwrap();
    assert!(
        rep.final_loss.unwrap() < 0.8 * first,
        "{first} → {:?}",
        rep.final_loss
    );
    assert!(rep.best.unwrap().value > 0.85);
}

#[test]
fn interrupted_then_resumed_adamw_run_ends_with_bit_identical_weights() {
    let (straight, rep) = run("adamw", false, None, "adam-a");
    let (resumed, rep2) = run("adamw", false, Some(17), "adam-b");
    assert_eq!(straight, resumed);
    assert_eq!(rep.history, rep2.history);
}

#[test]
fn resumed_run_restores_the_best_weights_kept_in_the_checkpoint() {
    // The best-weights snapshot travels through the checkpoint: the crash comes after the
    // best evaluation (epoch 0, the first) and the restored weights still match.
    let (straight, rep) = run("adamw", true, None, "best-a");
    let (resumed, rep2) = run("adamw", true, Some(20), "best-b");
    assert_eq!(straight, resumed);
    assert_eq!(rep.best, rep2.best);
}

#[test]
fn non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint_intact() {
    let (x, y) = blobs();
    let dir = tmpdir("nanloss");
    let m = Mlp::new(3);
    let cfg = TrainerConfig::epochs(3, SPE, Schedule::constant(0.1))
        .with_quiet(true)
        .with_checkpoint(CheckpointConfig::new(&dir, 2));
    let mut t = Trainer::new(
        cfg,
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::momentum(0.9)).unwrap(),
    )
    .unwrap();
    let mut obj = |ctx: &StepCtx| {
        let (xb, yb) = batch(&x, &y, ctx);
        let mut loss = cross_entropy(&m.forward(&xb), &yb);
        if ctx.step == 6 {
            loss = (loss * f64::NAN).unwrap();
        }
        Ok(StepOutput::new(loss))
    };
    let e = t.fit(&mut obj).unwrap_err();
    assert!(
        matches!(e, TrainError::NonFiniteLoss { step: 6, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("step 6"));
    assert_eq!(t.step(), 6);
    // Nothing was updated at step 6, and the newest checkpoint (after 6 steps) reads back
    // and holds exactly the weights in memory.
    let p = latest_checkpoint(&dir).unwrap().unwrap();
    let ck = CheckpointFile::read(&p).unwrap();
    assert_eq!(ck.step().unwrap(), 6);
    let fresh = Mlp::new(42);
    ck.restore_params(&fresh.store).unwrap();
    assert_eq!(fresh.bits(), m.bits());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_finite_gradient_names_the_parameter_and_updates_nothing() {
    let (x, y) = blobs();
    let dir = tmpdir("nangrad");
    let m = Mlp::new(3);
    let cfg = TrainerConfig::steps(10, SPE, Schedule::constant(0.1))
        .with_quiet(true)
        .with_checkpoint(CheckpointConfig::new(&dir, 1));
    let mut t = Trainer::new(
        cfg,
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    let w2 = m.store.get("l2.bias").unwrap();
    let mut obj = |ctx: &StepCtx| {
        let (xb, yb) = batch(&x, &y, ctx);
        let mut loss = cross_entropy(&m.forward(&xb), &yb);
        if ctx.step == 3 {
            // √(b − b) is 0 (a finite loss) but its gradient 1/(2√0) is infinite, for
            // l2.bias only.
            let b = w2.tensor();
            let z = (&b - b.detach())
                .unwrap()
                .sqrt()
                .unwrap()
                .sum_all()
                .unwrap();
            loss = (loss + z).unwrap();
        }
        Ok(StepOutput::new(loss))
    };
    let e = t.fit(&mut obj).unwrap_err();
    match &e {
        TrainError::NonFiniteGradient { step, param } => {
            assert_eq!(*step, 3);
            assert_eq!(param, "l2.bias");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(t.step(), 3);
    let ck = CheckpointFile::read(&latest_checkpoint(&dir).unwrap().unwrap()).unwrap();
    assert_eq!(ck.step().unwrap(), 3);
    let fresh = Mlp::new(42);
    ck.restore_params(&fresh.store).unwrap();
    assert_eq!(fresh.bits(), m.bits(), "the failed step changed nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn early_stopping_stops_after_patience_and_restores_the_best_weights() {
    let (x, y) = blobs();
    let m = Mlp::new(5);
    let cfg = TrainerConfig::epochs(10, SPE, Schedule::constant(0.1))
        .with_quiet(true)
        .with_early_stopping(EarlyStopping::max("val", 1));
    let mut t = Trainer::new(
        cfg,
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    let mut obj = |ctx: &StepCtx| {
        let (xb, yb) = batch(&x, &y, ctx);
        Ok(StepOutput::new(cross_entropy(&m.forward(&xb), &yb)))
    };
    // scripted validation scores: best at epoch 1, then two evaluations without improvement
    let scores = [0.5, 0.7, 0.6, 0.65, 0.9, 0.95];
    let mut at_best = None;
    let mut ev = |c: &EvalCtx| {
        if c.epoch == 1 {
            at_best = Some(m.bits());
        }
        Ok(vec![
            ("val".to_string(), scores[c.epoch]),
            ("other".to_string(), 0.0),
        ])
    };
    let rep = t.fit_with_eval(&mut obj, &mut ev).unwrap();
    assert!(rep.stopped_early);
    assert_eq!(
        rep.steps,
        4 * SPE,
        "stops after epoch 3 (second evaluation without improvement)"
    );
    let best = rep.best.unwrap();
    assert_eq!((best.epoch, best.value, best.step), (1, 0.7, 2 * SPE));
    assert_eq!(
        m.bits(),
        at_best.unwrap(),
        "the weights of epoch 1 are back"
    );
}

#[test]
fn early_stopping_on_a_metric_the_evaluation_does_not_return_is_an_error() {
    let (x, y) = blobs();
    let m = Mlp::new(5);
    let cfg = TrainerConfig::epochs(2, SPE, Schedule::constant(0.1))
        .with_quiet(true)
        .with_early_stopping(EarlyStopping::min("entropy", 1));
    let mut t = Trainer::new(
        cfg,
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    let mut obj = |ctx: &StepCtx| {
        let (xb, yb) = batch(&x, &y, ctx);
        Ok(StepOutput::new(cross_entropy(&m.forward(&xb), &yb)))
    };
    let mut ev = |_: &EvalCtx| Ok(vec![("acc".to_string(), 0.5)]);
    let e = t.fit_with_eval(&mut obj, &mut ev).unwrap_err();
    assert!(matches!(e, TrainError::MissingMetric { .. }), "{e}");
    assert!(
        t.fit(&mut obj).is_err(),
        "early stopping without an evaluation is refused"
    );
}

#[test]
fn objective_sees_scheduled_rate_progress_and_epoch_indices() {
    let m = Mlp::new(5);
    let sched = Schedule::dann();
    let cfg = TrainerConfig::steps(8, 3, sched.clone())
        .with_quiet(true)
        .with_seed(4);
    let mut t = Trainer::new(
        cfg,
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut obj = |ctx: &StepCtx| {
        seen.push(ctx.clone());
        let x = Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap();
        Ok(StepOutput::new(
            m.forward(&x).sqr().unwrap().mean_all().unwrap(),
        ))
    };
    let mut evals = Vec::new();
    let mut ev = |c: &EvalCtx| {
        evals.push((c.epoch, c.step));
        Ok(vec![])
    };
    let rep = t.fit_with_eval(&mut obj, &mut ev).unwrap();
    assert_eq!(seen.len(), 8);
    for (i, c) in seen.iter().enumerate() {
        assert_eq!(c.step, i);
        assert_eq!((c.epoch, c.step_in_epoch), (i / 3, i % 3));
        assert_eq!(c.progress, i as f64 / 8.0);
        assert_eq!(c.lr, sched.lr(i, 8));
        assert_eq!(c.total_steps, 8);
    }
    // epochs end after 3, 6 and (partial) 8 steps
    assert_eq!(evals, vec![(0, 3), (1, 6), (2, 8)]);
    assert_eq!(
        rep.history.steps.iter().map(|r| r.lr).collect::<Vec<_>>(),
        (0..8).map(|i| sched.lr(i, 8)).collect::<Vec<_>>()
    );
    // the per-step generator is a pure function of (seed, step, stream)
    assert_eq!(
        seen[2].rng(0).uniform01(),
        seen[2].clone().rng(0).uniform01()
    );
    assert_ne!(seen[2].rng(0).uniform01(), seen[3].rng(0).uniform01());
    assert_ne!(seen[2].rng(0).uniform01(), seen[2].rng(1).uniform01());
}

#[test]
fn resume_refuses_a_checkpoint_of_another_plan() {
    let (x, y) = blobs();
    let dir = tmpdir("plan");
    let m = Mlp::new(3);
    let cfg = TrainerConfig::steps(4, SPE, Schedule::constant(0.1))
        .with_quiet(true)
        .with_seed(1)
        .with_checkpoint(CheckpointConfig::new(&dir, 2));
    let mut t = Trainer::new(
        cfg.clone(),
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    let mut obj = |ctx: &StepCtx| {
        let (xb, yb) = batch(&x, &y, ctx);
        Ok(StepOutput::new(cross_entropy(&m.forward(&xb), &yb)))
    };
    t.fit(&mut obj).unwrap();
    let mut other = Trainer::new(
        cfg.clone().with_seed(2),
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    let e = other.resume_latest().unwrap_err().to_string();
    assert!(e.contains("seed"), "{e}");
    let mut adam = Trainer::new(
        cfg.clone(),
        &m.store,
        Adam::new(m.store.trainable(), AdamConfig::adamw()).unwrap(),
    )
    .unwrap();
    assert!(adam.resume_latest().is_err());
    // a finished run resumes to "finished": fit returns at once with the same report
    let mut same = Trainer::new(
        cfg,
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    same.resume_latest().unwrap();
    let rep = same
        .fit(&mut |_: &StepCtx| -> xfer_train::Result<StepOutput> {
            panic!("no step after the end")
        })
        .unwrap();
    assert_eq!(rep.steps, 4);
    assert_eq!(rep.history.steps.len(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same guarantee with xfer-data's shuffling `DataLoader` read through `StepBatches`.
fn run_with_loader(crash_at: Option<usize>, tag: &str) -> Vec<(String, Vec<u32>)> {
    use xfer_data::{DataLoader, TensorDataset};
    use xfer_train::StepBatches;
    let (x, y) = blobs();
    let ds = TensorDataset::new(
        "blobs",
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![2],
        y.to_vec1::<u32>().unwrap(),
    )
    .unwrap();
    let loader = DataLoader::builder(ds, BATCH).seed(21).build().unwrap();
    let dir = tmpdir(tag);
    let cfg = || {
        TrainerConfig::epochs(3, loader.batches_per_epoch(), Schedule::cosine(0.1, 0.0))
            .with_quiet(true)
            .with_seed(3)
            .with_checkpoint(CheckpointConfig::new(&dir, 4))
    };
    let opt = |s: &ParamStore| Sgd::new(s.trainable(), SgdConfig::momentum(0.9)).unwrap();
    let step =
        |m: &Mlp, batches: &mut StepBatches<'_, DataLoader<TensorDataset>>, ctx: &StepCtx| {
            let b = batches.next(ctx)?;
            Ok(StepOutput::new(cross_entropy(
                &m.forward(&b.x),
                b.labels()?,
            )))
        };
    if let Some(crash) = crash_at {
        let m = Mlp::new(1);
        let mut t = Trainer::new(cfg(), &m.store, opt(&m.store)).unwrap();
        let mut batches = StepBatches::new(&loader);
        let mut obj = |ctx: &StepCtx| {
            if ctx.step == crash {
                return Err(TrainError::objective("simulated crash"));
            }
            step(&m, &mut batches, ctx)
        };
        assert!(t.fit(&mut obj).is_err());
    }
    let m = Mlp::new(if crash_at.is_some() { 77 } else { 1 });
    let mut t = Trainer::new(cfg(), &m.store, opt(&m.store)).unwrap();
    if crash_at.is_some() {
        t.resume_latest().unwrap().expect("a checkpoint");
    }
    let mut batches = StepBatches::new(&loader);
    t.fit(&mut |ctx: &StepCtx| step(&m, &mut batches, ctx))
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    m.bits()
}

#[test]
fn resume_with_an_xfer_data_loader_through_step_batches_is_bit_identical() {
    assert_eq!(
        run_with_loader(None, "dl-a"),
        run_with_loader(Some(10), "dl-b")
    );
}

#[test]
fn clipping_bounds_the_update_and_the_history_keeps_the_norm_before_clipping() {
    let (x, y) = blobs();
    let m = Mlp::new(8);
    let cfg = TrainerConfig::steps(1, SPE, Schedule::constant(0.5))
        .with_quiet(true)
        .with_clip_grad_norm(0.01);
    let mut t = Trainer::new(
        cfg,
        &m.store,
        Sgd::new(m.store.trainable(), SgdConfig::default()).unwrap(),
    )
    .unwrap();
    let before: Vec<Vec<f32>> = m
        .store
        .all()
        .iter()
        .map(|p| {
            p.var()
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect();
    let rep = t
        .fit(&mut |ctx: &StepCtx| {
            let (xb, yb) = batch(&x, &y, ctx);
            Ok(StepOutput::new(cross_entropy(&m.forward(&xb), &yb)))
        })
        .unwrap();
    let norm = rep.history.steps[0].grad_norm.unwrap();
    assert!(
        norm > 0.01,
        "the test needs a gradient above the threshold: {norm}"
    );
    // plain SGD: Δw = −η·g·(c/‖g‖), so ‖Δw‖ = η·c = 0.005
    let moved: f64 = m
        .store
        .all()
        .iter()
        .zip(&before)
        .map(|(p, b)| {
            let a = p
                .var()
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt();
    assert!((moved - 0.005).abs() < 1e-5, "{moved}");
}
