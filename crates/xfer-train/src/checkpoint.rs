//! Trainer checkpoints: one safetensors file per checkpoint, written atomically, restored
//! all or nothing.
//!
//! A checkpoint holds every entry of the model's [`ParamStore`] (parameters **and** buffers)
//! as `param/<name>`, the optimiser state as `optim/<param>/<slot>`, the early-stopping best
//! weights as `best/<name>` when kept, and string metadata: `format` ([`FORMAT`]), `trainer`
//! (the loop state, a [`TrainerMeta`] as JSON), `optimizer` (the optimiser's scalars, JSON)
//! and `history` (every step and evaluation). Nothing random is saved: the randomness of a
//! step is a function of `(seed, step)` (see the trainer's module documentation).
//!
//! **Writing** goes through xfer-models' safetensors writer: the target's one temporary file
//! (`.NAME.tmp`) is written, synced (`fsync`) and renamed over the target, so a crash leaves
//! the old file or the new one, never a torn one, and at most one temporary file, which the
//! next save or load of that target removes. File names are `step-<9 digits>.safetensors`,
//! so the newest is found by name ([`latest_checkpoint`]).
//!
//! **Restoring** ([`Trainer::resume`](crate::Trainer::resume)) first reads and validates
//! everything — the file, the metadata (every field present: a missing one is an error
//! naming the file), the plan, every parameter, buffer and best-weights tensor (names and
//! shapes), converted to the model's dtype and device — and only then commits: the optimiser
//! state (whose `load_state` validates before it changes anything; it is put back should a
//! later step fail), the weights, and the loop state. A refused checkpoint changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use xfer_models::safetensors_file;
use xfer_models::{Param, ParamStore, SafetensorsFile};

use crate::history::{self, History};
use crate::optim::{Optimizer, OptimizerState};
use crate::{Result, TrainError};

/// The value of the `format` metadata key of every trainer checkpoint.
pub const FORMAT: &str = "xfer-train-checkpoint/1";

/// Key prefix of model parameters and buffers.
pub(crate) const PARAM: &str = "param/";
/// Key prefix of optimiser state tensors.
pub(crate) const OPTIM: &str = "optim/";
/// Key prefix of the best weights kept by early stopping.
pub(crate) const BEST: &str = "best/";

/// Where and how often to checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointConfig {
    /// The directory for `step-<n>.safetensors` files.
    pub dir: PathBuf,
    /// Checkpoint after every `every` steps (and at the end).
    pub every: usize,
    /// Keep only the newest `keep_last` checkpoints (0 keeps all).
    pub keep_last: usize,
}

impl CheckpointConfig {
    /// Every `every` steps into `dir`, keeping the newest 2.
    pub fn new(dir: impl Into<PathBuf>, every: usize) -> Self {
        Self {
            dir: dir.into(),
            every,
            keep_last: 2,
        }
    }
}

/// The file name of the checkpoint taken after `step` steps.
pub fn checkpoint_file_name(step: usize) -> String {
    format!("step-{step:09}.safetensors")
}

fn step_of_file_name(name: &str) -> Option<usize> {
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// The checkpoints in `dir` as `(step, path)`, oldest first (an absent directory has none).
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::checkpoint(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| TrainError::checkpoint(dir, e))?;
        if let Some(step) = entry.file_name().to_str().and_then(step_of_file_name) {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint in `dir`, if any.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(dir)?.pop().map(|(_, p)| p))
}

/// Writes `tensors` and `metadata` as safetensors to `path` atomically (temporary file in the
/// same directory, `fsync`, rename), through xfer-models' safetensors writer.
pub fn write_safetensors_atomic(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        fs::create_dir_all(dir).map_err(|e| TrainError::checkpoint(dir, e))?;
    }
    let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
    let bytes =
        safetensors_file::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), &metadata)?;
    safetensors_file::write_atomic(path, &bytes)?;
    Ok(())
}

/// A checkpoint read back from disk (tensors on the CPU).
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Every tensor, by key (`param/…`, `optim/…`, `best/…`).
    pub tensors: Vec<(String, Tensor)>,
    /// The string metadata.
    pub metadata: HashMap<String, String>,
}

impl CheckpointFile {
    /// Reads a safetensors file (any safetensors file; [`CheckpointFile::check_format`]
    /// tells whether it is a trainer checkpoint) with xfer-models' reader: pickles, torn and
    /// malformed files are refused with an error naming the file, and leftovers of
    /// interrupted saves of `path` are removed.
    pub fn read(path: &Path) -> Result<Self> {
        let file = SafetensorsFile::open(path)?;
        let mut tensors = Vec::with_capacity(file.len());
        for name in file.names() {
            let t = file.tensor(&name, &Device::Cpu)?;
            tensors.push((name, t));
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata: file.metadata().clone().into_iter().collect(),
        })
    }

    /// Errors unless the file is a trainer checkpoint of this format version.
    pub fn check_format(&self) -> Result<()> {
        match self.metadata.get("format").map(String::as_str) {
            Some(FORMAT) => Ok(()),
            other => Err(TrainError::checkpoint(
                &self.path,
                format!("not an xfer trainer checkpoint (format {other:?}, expected {FORMAT:?})"),
            )),
        }
    }

    /// The tensor stored under `key`.
    pub fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.tensors
            .binary_search_by(|(n, _)| n.as_str().cmp(key))
            .ok()
            .map(|i| &self.tensors[i].1)
    }

    /// The tensors whose key starts with `prefix`, with the prefix removed.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Tensor)> {
        self.tensors
            .iter()
            .filter_map(move |(n, t)| n.strip_prefix(prefix).map(|k| (k, t)))
    }

    /// Writes the model weights of this checkpoint into `store`. Strict: every entry of the
    /// store (parameters and buffers) must be in the file and every model tensor of the file
    /// must be in the store, with the same shape; values are converted to the store's dtype
    /// and device. Nothing is written unless everything fits.
    pub fn restore_params(&self, store: &ParamStore) -> Result<()> {
        restore_prefixed(self, store, PARAM)
    }

    /// The step count the checkpoint was taken at.
    pub fn step(&self) -> Result<usize> {
        Ok(self.trainer_meta()?.step)
    }

    /// The loop state in the `trainer` metadata; a missing or malformed field is an error
    /// naming the file and the field.
    pub fn trainer_meta(&self) -> Result<TrainerMeta> {
        let text = self.meta_text("trainer")?;
        serde_json::from_str(text)
            .map_err(|e| TrainError::checkpoint(&self.path, format!("trainer metadata: {e}")))
    }

    fn meta_text(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| TrainError::checkpoint(&self.path, format!("no {key:?} metadata")))
    }

    /// Checks the `prefix`-keyed tensors against `store` (strict: every entry of the store
    /// present with its shape, nothing else) and converts them to the store's dtypes and
    /// devices; changes nothing.
    fn prepare_prefixed(&self, store: &ParamStore, prefix: &str) -> Result<Vec<(Param, Tensor)>> {
        let entries = store.all();
        let mut plan = Vec::with_capacity(entries.len());
        for p in entries {
            let key = format!("{prefix}{}", p.name());
            let t = self.tensor(&key).ok_or_else(|| {
                TrainError::checkpoint(&self.path, format!("{key}: missing from the checkpoint"))
            })?;
            let v = fit_to(&self.path, &key, t, &p)?;
            plan.push((p, v));
        }
        for (name, _) in self.with_prefix(prefix) {
            if !store.contains(name) {
                return Err(TrainError::checkpoint(
                    &self.path,
                    format!("{prefix}{name}: not a parameter or buffer of the model"),
                ));
            }
        }
        Ok(plan)
    }
}

/// `t` checked against `p`'s shape and converted to its dtype and device.
fn fit_to(path: &Path, key: &str, t: &Tensor, p: &Param) -> Result<Tensor> {
    let var = p.var();
    if t.dims() != var.dims() {
        return Err(TrainError::checkpoint(
            path,
            format!(
                "{key}: shape {:?} in the checkpoint, {:?} in the model",
                t.dims(),
                var.dims()
            ),
        ));
    }
    if !var.as_tensor().is_contiguous() {
        return Err(TrainError::checkpoint(
            path,
            format!("{key}: the model's tensor is not contiguous and cannot be overwritten"),
        ));
    }
    let v = t.to_dtype(var.dtype())?.to_device(var.device())?;
    Ok(v)
}

/// Restores the `prefix`-keyed tensors of `ck` into `store` (strict, all or nothing).
pub(crate) fn restore_prefixed(
    ck: &CheckpointFile,
    store: &ParamStore,
    prefix: &str,
) -> Result<()> {
    for (p, t) in ck.prepare_prefixed(store, prefix)? {
        p.set(&t)?;
    }
    Ok(())
}

/// Early-stopping counters in [`TrainerMeta`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyMeta {
    /// The watched metric (null without early stopping).
    #[serde(deserialize_with = "required")]
    pub metric: Option<String>,
    /// The best value so far as exact decimal text (`format!("{:?}", f64)`), null if none.
    #[serde(deserialize_with = "required")]
    pub best: Option<String>,
    /// The epoch of the best value.
    pub best_epoch: usize,
    /// The step count of the best value.
    pub best_step: usize,
    /// Evaluations since the best one.
    pub bad_evals: usize,
}

/// The loop state of a checkpoint (its `trainer` metadata, JSON). Every field is required:
/// a checkpoint that lacks one is refused, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerMeta {
    /// The run's name.
    pub name: String,
    /// Steps taken.
    pub step: usize,
    /// The planned number of steps.
    pub total_steps: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// The run's seed.
    pub seed: u64,
    /// Whether the run had finished.
    pub finished: bool,
    /// Whether early stopping had ended it.
    pub stopped_early: bool,
    /// The optimiser's kind (`"sgd"`, `"adamw"`, ...).
    pub optimizer: String,
    /// Early-stopping counters.
    pub early: EarlyMeta,
}

/// An `Option` field that must be present (as a value or `null`): serde would otherwise
/// read a missing `Option` field as `None`.
fn required<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// The trainer's state between steps (what a checkpoint saves besides weights and optimiser).
#[derive(Debug, Clone, Default)]
pub(crate) struct LoopState {
    pub step: usize,
    pub history: History,
    pub early: EarlyState,
    pub finished: bool,
    pub stopped_early: bool,
}

/// Early stopping's state.
#[derive(Debug, Clone, Default)]
pub(crate) struct EarlyState {
    pub best: Option<f64>,
    pub best_epoch: usize,
    pub best_step: usize,
    pub bad_evals: usize,
    pub snapshot: Option<Vec<(String, Tensor)>>,
}

/// What the trainer's plan is, for a checkpoint to be checked against.
pub(crate) struct Plan<'a> {
    pub name: &'a str,
    pub seed: u64,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    pub early_metric: Option<&'a str>,
}

/// Writes a checkpoint of `store`, `opt` and the loop state `st` to `path` (atomically).
pub(crate) fn save(
    path: &Path,
    plan: &Plan<'_>,
    store: &ParamStore,
    opt: &dyn Optimizer,
    st: &LoopState,
) -> Result<()> {
    let mut tensors = Vec::new();
    for p in store.all() {
        tensors.push((format!("{PARAM}{}", p.name()), p.var().as_tensor().clone()));
    }
    let os = opt.state()?;
    for (k, t) in &os.tensors {
        tensors.push((format!("{OPTIM}{k}"), t.clone()));
    }
    if let Some(snap) = &st.early.snapshot {
        for (k, t) in snap {
            tensors.push((format!("{BEST}{k}"), t.clone()));
        }
    }
    let e = &st.early;
    let meta = TrainerMeta {
        name: plan.name.to_string(),
        step: st.step,
        total_steps: plan.total_steps,
        steps_per_epoch: plan.steps_per_epoch,
        seed: plan.seed,
        finished: st.finished,
        stopped_early: st.stopped_early,
        optimizer: os.kind.clone(),
        early: EarlyMeta {
            metric: plan.early_metric.map(str::to_string),
            best: e.best.map(|b| format!("{b:?}")),
            best_epoch: e.best_epoch,
            best_step: e.best_step,
            bad_evals: e.bad_evals,
        },
    };
    let trainer = serde_json::to_string(&meta).map_err(|e| TrainError::checkpoint(path, e))?;
    let hist = history::wire::to_json(&st.history).map_err(|m| TrainError::checkpoint(path, m))?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("trainer".to_string(), trainer),
        ("optimizer".to_string(), os.meta.to_string()),
        ("history".to_string(), hist),
    ]);
    write_safetensors_atomic(path, &tensors, metadata)?;
    tracing::debug!(target: "xfer_train", path = %path.display(), step = st.step, "checkpoint");
    Ok(())
}

/// A checkpoint read and validated against a trainer, ready to [`Restore::commit`].
pub(crate) struct Restore {
    path: PathBuf,
    params: Vec<(Param, Tensor)>,
    optim: OptimizerState,
    state: LoopState,
}

/// Reads `path` and checks every part of it against the trainer (`plan`, `store`, `opt`'s
/// kind); changes nothing.
pub(crate) fn prepare(
    path: &Path,
    plan: &Plan<'_>,
    store: &ParamStore,
    opt: &dyn Optimizer,
) -> Result<Restore> {
    let ck = CheckpointFile::read(path)?;
    ck.check_format()?;
    let bad = |m: String| TrainError::checkpoint(path, m);
    let meta = ck.trainer_meta()?;
    for (k, theirs, ours) in [
        ("seed", meta.seed, plan.seed),
        (
            "total_steps",
            meta.total_steps as u64,
            plan.total_steps as u64,
        ),
        (
            "steps_per_epoch",
            meta.steps_per_epoch as u64,
            plan.steps_per_epoch as u64,
        ),
    ] {
        if theirs != ours {
            return Err(bad(format!(
                "{k} is {theirs} in the checkpoint but {ours} in this trainer: an exact resume needs the same plan"
            )));
        }
    }
    if meta.step > meta.total_steps {
        return Err(bad(format!(
            "step {} is past the plan's {} steps",
            meta.step, meta.total_steps
        )));
    }
    if meta.optimizer != opt.kind() {
        return Err(bad(format!(
            "optimiser {:?} in the checkpoint, {:?} in this trainer",
            meta.optimizer,
            opt.kind()
        )));
    }
    let best = match &meta.early.best {
        Some(s) => Some(
            s.parse::<f64>()
                .map_err(|_| bad(format!("early-stopping best {s:?} is not a number")))?,
        ),
        None => None,
    };
    let history = history::wire::from_json(ck.meta_text("history")?).map_err(bad)?;
    let mut snapshot = Vec::new();
    for (k, t) in ck.with_prefix(BEST) {
        let p = store
            .get(k)
            .map_err(|_| bad(format!("{BEST}{k}: not in the model")))?;
        snapshot.push((k.to_string(), fit_to(path, &format!("{BEST}{k}"), t, &p)?));
    }
    let optim_meta: serde_json::Value = serde_json::from_str(ck.meta_text("optimizer")?)
        .map_err(|e| bad(format!("optimizer metadata: {e}")))?;
    let optim = OptimizerState {
        kind: meta.optimizer.clone(),
        meta: optim_meta,
        tensors: ck
            .with_prefix(OPTIM)
            .map(|(k, t)| (k.to_string(), t.clone()))
            .collect(),
    };
    let params = ck.prepare_prefixed(store, PARAM)?;
    Ok(Restore {
        path: path.to_path_buf(),
        params,
        optim,
        state: LoopState {
            step: meta.step,
            history,
            early: EarlyState {
                best,
                best_epoch: meta.early.best_epoch,
                best_step: meta.early.best_step,
                bad_evals: meta.early.bad_evals,
                snapshot: (!snapshot.is_empty()).then_some(snapshot),
            },
            finished: meta.finished,
            stopped_early: meta.stopped_early,
        },
    })
}

impl Restore {
    /// Commits the validated checkpoint: the optimiser state (refused states change nothing:
    /// the previous state is put back should the optimiser not guarantee it), then the
    /// weights (already checked and converted, so setting them cannot fail on the
    /// checkpoint's content; should it fail anyway, the optimiser state is put back), and
    /// returns the loop state for the trainer to take.
    pub(crate) fn commit(self, opt: &mut dyn Optimizer) -> Result<LoopState> {
        let previous = opt.state()?;
        let rollback = |opt: &mut dyn Optimizer, e: TrainError| {
            if let Err(r) = opt.load_state(&previous) {
                tracing::error!(target: "xfer_train", path = %self.path.display(), error = %r, "cannot put the optimiser state back");
            }
            e
        };
        if let Err(e) = opt.load_state(&self.optim) {
            return Err(rollback(
                opt,
                TrainError::checkpoint(&self.path, format!("optimiser state: {e}")),
            ));
        }
        for (p, t) in &self.params {
            if let Err(e) = p.set(t) {
                return Err(rollback(opt, e.into()));
            }
        }
        Ok(self.state)
    }
}

/// Deletes all but the newest `keep` checkpoints in `dir` (`keep == 0` keeps all).
pub(crate) fn prune(dir: &Path, keep: usize) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let all = list_checkpoints(dir)?;
    let n = all.len().saturating_sub(keep);
    for (_, p) in all.into_iter().take(n) {
        fs::remove_file(&p).map_err(|e| TrainError::checkpoint(&p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xfer-train-ck-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn safetensors_round_trip_keeps_dtype_shape_values_and_metadata() {
        let dir = tmpdir("rt");
        let path = dir.join(checkpoint_file_name(7));
        let a = Tensor::new(&[[1.5f32, -2.0], [0.25, 3.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1.0f64 / 3.0], &Device::Cpu).unwrap();
        let c = Tensor::new(&[1u32, 2, 3], &Device::Cpu).unwrap();
        let meta = HashMap::from([("format".to_string(), FORMAT.to_string())]);
        write_safetensors_atomic(
            &path,
            &[
                ("param/a".into(), a.clone()),
                ("param/b".into(), b.clone()),
                ("x/c".into(), c),
            ],
            meta,
        )
        .unwrap();
        let ck = CheckpointFile::read(&path).unwrap();
        ck.check_format().unwrap();
        assert_eq!(
            ck.tensor("param/a").unwrap().to_vec2::<f32>().unwrap(),
            a.to_vec2::<f32>().unwrap()
        );
        assert_eq!(
            ck.tensor("param/b").unwrap().to_vec1::<f64>().unwrap()[0].to_bits(),
            (1.0f64 / 3.0).to_bits()
        );
        assert_eq!(ck.tensor("x/c").unwrap().dtype(), DType::U32);
        assert_eq!(ck.with_prefix(PARAM).count(), 2);
        // nothing but the checkpoint is left in the directory (the temporary file was renamed)
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(latest_checkpoint(&dir).unwrap(), Some(path));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn restore_params_is_strict_and_all_or_nothing() {
        let dir = tmpdir("strict");
        let path = dir.join("x.safetensors");
        let store = ParamStore::new();
        let w = store
            .add("w", Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap())
            .unwrap();
        let v = store
            .add("v", Tensor::new(&[5.0f32], &Device::Cpu).unwrap())
            .unwrap();
        // `v` has the wrong shape in the file: nothing may be written, not even `w`.
        write_safetensors_atomic(
            &path,
            &[
                (
                    "param/w".into(),
                    Tensor::new(&[9.0f32, 9.0], &Device::Cpu).unwrap(),
                ),
                (
                    "param/v".into(),
                    Tensor::new(&[9.0f32, 9.0], &Device::Cpu).unwrap(),
                ),
            ],
            HashMap::new(),
        )
        .unwrap();
        let e = CheckpointFile::read(&path)
            .unwrap()
            .restore_params(&store)
            .unwrap_err();
        assert!(e.to_string().contains("param/v"), "{e}");
        assert_eq!(
            w.var().as_tensor().to_vec1::<f32>().unwrap(),
            vec![1.0, 2.0]
        );
        // an extra tensor in the file is refused too
        write_safetensors_atomic(
            &path,
            &[
                (
                    "param/w".into(),
                    Tensor::new(&[9.0f32, 9.0], &Device::Cpu).unwrap(),
                ),
                (
                    "param/v".into(),
                    Tensor::new(&[9.0f32], &Device::Cpu).unwrap(),
                ),
                (
                    "param/extra".into(),
                    Tensor::new(&[9.0f32], &Device::Cpu).unwrap(),
                ),
            ],
            HashMap::new(),
        )
        .unwrap();
        assert!(
            CheckpointFile::read(&path)
                .unwrap()
                .restore_params(&store)
                .is_err()
        );
        assert!(CheckpointFile::read(&path).unwrap().check_format().is_err());
        let _ = v;
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_header_length_reads_back_including_pickle_like_first_bytes() {
        // Header lengths 0x280..=0x5ff start with bytes (0x80, 2..=5), a pickle's magic.
        let dir = tmpdir("hdr");
        let path = dir.join("h.safetensors");
        let t = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut pickle_like = 0;
        for pad in (0..1200).step_by(41) {
            let meta = HashMap::from([("pad".to_string(), "x".repeat(pad))]);
            write_safetensors_atomic(&path, &[("a".into(), t.clone())], meta).unwrap();
            let head = fs::read(&path).unwrap();
            if head[0] == 0x80 && (2..=5).contains(&head[1]) {
                pickle_like += 1;
            }
            let ck = CheckpointFile::read(&path).unwrap();
            assert_eq!(ck.metadata["pad"].len(), pad);
        }
        assert!(
            pickle_like > 0,
            "the sweep must reach the pickle-like lengths"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prune_keeps_the_newest_checkpoints() {
        let dir = tmpdir("prune");
        for s in [3, 12, 6, 9] {
            write_safetensors_atomic(&dir.join(checkpoint_file_name(s)), &[], HashMap::new())
                .unwrap();
        }
        prune(&dir, 2).unwrap();
        let steps: Vec<usize> = list_checkpoints(&dir)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(steps, vec![9, 12]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reading_garbage_names_the_file() {
        let dir = tmpdir("garbage");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.safetensors");
        fs::write(&path, b"not a safetensors file").unwrap();
        let e = CheckpointFile::read(&path).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
