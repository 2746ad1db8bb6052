//! Trainer checkpoints: one safetensors file per checkpoint, written atomically.
//!
//! A checkpoint holds every entry of the model's [`ParamStore`] (parameters **and** buffers)
//! as `param/<name>`, the optimiser state as `optim/<param>/<slot>`, the early-stopping best
//! weights as `best/<name>` when kept, and JSON metadata: the format tag, the loop state
//! (step, seed, plan, early-stopping counters), the optimiser's scalars and the history.
//!
//! Writing goes (through xfer-models' safetensors writer) to a temporary file in the same
//! directory, which is flushed to disk (`fsync`) and then renamed over the target, so a crash leaves either the old file or the
//! new one, never a torn one. File names are `step-<9 digits>.safetensors`, so the newest is
//! found by name ([`latest_checkpoint`]).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, SafeTensors};
use xfer_models::ParamStore;
use xfer_models::safetensors_file;

use crate::{Result, TrainError};

/// The value of the `format` metadata key of every trainer checkpoint.
pub const FORMAT: &str = "xfer-train-checkpoint/1";

/// Key prefix of model parameters and buffers.
pub(crate) const PARAM: &str = "param/";
/// Key prefix of optimiser state tensors.
pub(crate) const OPTIM: &str = "optim/";
/// Key prefix of the best weights kept by early stopping.
pub(crate) const BEST: &str = "best/";

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

fn candle_dtype(d: StDtype) -> Option<DType> {
    Some(match d {
        StDtype::U8 => DType::U8,
        StDtype::U32 => DType::U32,
        StDtype::I16 => DType::I16,
        StDtype::I32 => DType::I32,
        StDtype::I64 => DType::I64,
        StDtype::BF16 => DType::BF16,
        StDtype::F16 => DType::F16,
        StDtype::F32 => DType::F32,
        StDtype::F64 => DType::F64,
        _ => return None,
    })
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
    /// tells whether it is a trainer checkpoint).
    pub fn read(path: &Path) -> Result<Self> {
        // Parsed with the safetensors crate directly: xfer-models' `SafetensorsFile` sniffs
        // for pickles by the first two bytes, which also matches a valid safetensors header
        // length of 0x0280..=0x05ff (mod 65536), so it would refuse some of our checkpoints.
        let data = fs::read(path).map_err(|e| TrainError::checkpoint(path, e))?;
        let st = SafeTensors::deserialize(&data).map_err(|e| TrainError::checkpoint(path, e))?;
        let (_, meta) =
            SafeTensors::read_metadata(&data).map_err(|e| TrainError::checkpoint(path, e))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let mut tensors = Vec::with_capacity(st.len());
        for (name, view) in st.iter() {
            let dtype = candle_dtype(view.dtype()).ok_or_else(|| {
                TrainError::checkpoint(
                    path,
                    format!("{name}: unsupported dtype {:?}", view.dtype()),
                )
            })?;
            let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
                .map_err(|e| TrainError::checkpoint(path, format!("{name}: {e}")))?;
            tensors.push((name.to_string(), t));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
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
        let meta: serde_json::Value = serde_json::from_str(
            self.metadata
                .get("trainer")
                .ok_or_else(|| TrainError::checkpoint(&self.path, "no trainer metadata"))?,
        )
        .map_err(|e| TrainError::checkpoint(&self.path, e))?;
        meta.get("step")
            .and_then(|s| s.as_u64())
            .map(|s| s as usize)
            .ok_or_else(|| TrainError::checkpoint(&self.path, "trainer metadata has no step"))
    }
}

/// Restores the `prefix`-keyed tensors of `ck` into `store` (strict, all or nothing).
pub(crate) fn restore_prefixed(
    ck: &CheckpointFile,
    store: &ParamStore,
    prefix: &str,
) -> Result<()> {
    let entries = store.all();
    let mut plan = Vec::with_capacity(entries.len());
    for p in &entries {
        let key = format!("{prefix}{}", p.name());
        let t = ck.tensor(&key).ok_or_else(|| {
            TrainError::checkpoint(&ck.path, format!("{key}: missing from the checkpoint"))
        })?;
        if t.dims() != p.var().dims() {
            return Err(TrainError::checkpoint(
                &ck.path,
                format!(
                    "{key}: shape {:?} in the checkpoint, {:?} in the model",
                    t.dims(),
                    p.var().dims()
                ),
            ));
        }
        plan.push((p, t));
    }
    for (name, _) in ck.with_prefix(prefix) {
        if !store.contains(name) {
            return Err(TrainError::checkpoint(
                &ck.path,
                format!("{prefix}{name}: not a parameter or buffer of the model"),
            ));
        }
    }
    for (p, t) in plan {
        p.set(t)?;
    }
    Ok(())
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
