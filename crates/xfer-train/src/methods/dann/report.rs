//! What the example reports besides the numbers: pictures of a comparison's runs and the
//! cost of a training step.

use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use xfer_data::{Dataset, TensorDataset, UnlabeledDataset};
use xfer_ops::SeededRng;

use super::{Config, Data, Method, Outcome, Task, run};
use crate::Result;
use crate::plot::{EmbeddingPanel, plot_embedding, plot_history};
use crate::run::RunCtx;

/// The training curves drawn by [`pictures`].
const CURVES: [&str; 7] = [
    "class_loss",
    "domain_acc",
    "source_val_acc",
    "target_entropy",
    "dev_risk",
    "snd",
    "lambda",
];

/// At most `n` rows of `ds` (seeded).
fn sample_rows(ds: &TensorDataset, n: usize, seed: u64) -> Result<TensorDataset> {
    if ds.len() <= n {
        return Ok(ds.clone());
    }
    let mut idx = SeededRng::new(seed).permutation(ds.len());
    idx.truncate(n);
    idx.sort_unstable();
    Ok(ds.subset(&idx)?)
}

impl Outcome {
    /// A PCA panel of the kept network's features of `source` and `target`, coloured by
    /// domain and class.
    pub fn pca_panel(
        &self,
        title: &str,
        source: &TensorDataset,
        target: &TensorDataset,
    ) -> Result<EmbeddingPanel> {
        let dev = self.device();
        let fs = self.features(&source.to_tensors(&dev)?.0)?;
        let ft = self.features(&target.to_tensors(&dev)?.0)?;
        let f = Tensor::cat(&[&fs, &ft], 0)?;
        let (domains, classes) = crate::plot::two_set_labels(source, target);
        EmbeddingPanel::pca(title, &f, &domains, &classes)
    }

    /// [`Outcome::pca_panel`] with an unlabelled `target`: its points are coloured by the
    /// class the kept network predicts (there are no labels to show).
    pub fn pca_panel_predicted(
        &self,
        title: &str,
        source: &TensorDataset,
        target: &UnlabeledDataset,
    ) -> Result<EmbeddingPanel> {
        let dev = self.device();
        let fs = self.features(&source.to_tensors(&dev)?.0)?;
        let ft = self.features(&target.to_tensor(&dev)?)?;
        let predicted: Vec<u32> = chunked_argmax(&self.logits(&target.to_tensor(&dev)?)?)?;
        let f = Tensor::cat(&[&fs, &ft], 0)?;
        let domains: Vec<usize> = std::iter::repeat_n(0, source.len())
            .chain(std::iter::repeat_n(1, target.len()))
            .collect();
        let classes: Vec<usize> = source
            .labels()
            .iter()
            .chain(&predicted)
            .map(|&c| c as usize)
            .collect();
        EmbeddingPanel::pca(title, &f, &domains, &classes)
    }
}

fn chunked_argmax(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(1)?.to_vec1::<u32>()?)
}

/// At most `n` rows of unlabelled `ds` (seeded).
fn sample_unlabeled(ds: &UnlabeledDataset, n: usize, seed: u64) -> Result<UnlabeledDataset> {
    if ds.len() <= n {
        return Ok(ds.clone());
    }
    let mut idx = SeededRng::new(seed).permutation(ds.len());
    idx.truncate(n);
    idx.sort_unstable();
    Ok(ds.subset(&idx)?)
}

/// Pictures of the runs of `task` in `out`: `dann-<metric>.png`, every run's training curve
/// of each logged metric, and `dann-features-pca.png`, the features of up to 400 (seeded)
/// examples of the task's source and target test sets of every run (without a target test
/// set: of the unlabelled target, coloured by predicted class). Nothing for no runs.
pub fn pictures(out: &Path, task: &Task, outcomes: &[Outcome], seed: u64) -> Result<()> {
    let title = &task.name;
    if outcomes.is_empty() {
        return Ok(());
    }
    let runs: Vec<(&str, &crate::History)> = outcomes
        .iter()
        .map(|o| (o.method.name(), &o.report.history))
        .collect();
    for metric in CURVES {
        plot_history(
            &out.join(format!("dann-{metric}.png")),
            &format!("{title} — {metric}"),
            &runs,
            metric,
        )?;
    }
    let s = sample_rows(&task.source_test, 400, seed)?;
    let (panels, what) = match &task.target_test {
        Some(test) => {
            let t = sample_rows(test, 400, seed)?;
            let panels = outcomes
                .iter()
                .map(|o| o.pca_panel(&format!("{} features", o.method.name()), &s, &t))
                .collect::<Result<Vec<_>>>()?;
            (panels, "features by domain and class")
        }
        None => {
            let t = sample_unlabeled(&task.target, 400, seed)?;
            let panels = outcomes
                .iter()
                .map(|o| o.pca_panel_predicted(&format!("{} features", o.method.name()), &s, &t))
                .collect::<Result<Vec<_>>>()?;
            (
                panels,
                "features by domain and class (target: predicted class)",
            )
        }
    };
    plot_embedding(
        &out.join("dann-features-pca.png"),
        &format!("{title}: {what}"),
        &panels,
        &["source", "target"],
    )
}

/// The cost of a training step: milliseconds per step of plain source-only steps (no probe
/// discriminator; `source_only_plain`, first) and of each of `methods`, on `data`'s source
/// and target (no evaluation but one at the end). Each is timed over `n` and `2n` steps and
/// the difference divided by `n`, so the fixed costs (building the network, the evaluation)
/// cancel.
pub fn step_cost(
    cfg: &Config,
    data: &Data,
    methods: &[Method],
    n: usize,
    ctx: &RunCtx,
) -> Result<Vec<(String, f64)>> {
    if n == 0 {
        return Err(crate::TrainError::invalid("step_cost steps", 0, "> 0"));
    }
    let data = Data::new(data.source.clone(), data.target.clone());
    let ctx = RunCtx {
        checkpoints: None,
        ..ctx.clone()
    };
    let time = |method: Method, probe: bool, steps: usize| -> Result<f64> {
        let cfg = Config {
            method,
            stage: cfg.stage.clone().with_steps(steps).with_eval_every(steps),
            selection: None,
            probe_discriminator: probe,
            ..cfg.clone()
        };
        let t0 = Instant::now();
        run(&cfg, &data, &ctx)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let per_step = |method: Method, probe: bool| -> Result<f64> {
        let short = time(method, probe, n)?;
        let long = time(method, probe, 2 * n)?;
        Ok((long - short).max(0.0) * 1000.0 / n as f64)
    };
    // Warm-up.
    time(Method::SourceOnly, false, n.min(20))?;
    let mut rows = vec![(
        "source_only_plain".to_string(),
        per_step(Method::SourceOnly, false)?,
    )];
    for &m in methods {
        rows.push((m.name().to_string(), per_step(m, true)?));
    }
    Ok(rows)
}
