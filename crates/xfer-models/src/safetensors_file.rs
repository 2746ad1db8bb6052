//! Reading and writing safetensors files with errors that name the file and the tensor.
//!
//! Safetensors is the only weight format xfer reads: a little-endian `u64` header length, a
//! JSON header (`name → {dtype, shape, data_offsets}` plus an optional string map
//! `__metadata__`), then the raw data. PyTorch's `torch.save` files (pickles, or zip
//! archives of pickles) are recognised by their magic bytes and refused — unpickling can run
//! arbitrary code.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::Dtype;

use crate::{ModelError, Result};

/// Largest header safetensors accepts (100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// What the refusal of a PyTorch checkpoint says.
pub const PICKLE_REFUSAL: &str =
    "PyTorch pickle checkpoints are not loaded, convert to safetensors";

#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A safetensors file read into memory and validated.
#[derive(Debug, Clone)]
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    entries: BTreeMap<String, Entry>,
    metadata: BTreeMap<String, String>,
}

/// Recognises files that are certainly not safetensors by their first bytes.
fn sniff(path: &Path, head: &[u8]) -> Result<()> {
    let not = |reason: String| ModelError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    if head.starts_with(b"PK\x03\x04") {
        return Err(not(format!(
            "it is a zip archive (torch.save's format); {PICKLE_REFUSAL}"
        )));
    }
    // A safetensors file whose 8-byte header length is 0x0280..=0x05FF (mod 65536) also
    // starts with 0x80 0x02..=0x05: it is only a pickle when no JSON header follows.
    let json_follows = head.len() > 8 && head[8] == b'{';
    if !json_follows && head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Err(not(format!("it is a Python pickle; {PICKLE_REFUSAL}")));
    }
    if head.starts_with(b"\x93NUMPY") {
        return Err(not("it is a NumPy .npy file".into()));
    }
    if head.starts_with(b"\x89HDF") {
        return Err(not("it is an HDF5 file".into()));
    }
    if head.len() < 8 {
        return Err(not(format!(
            "only {} bytes, less than the 8-byte header length",
            head.len()
        )));
    }
    if head.len() > 8 && head[8] != b'{' {
        return Err(not("no JSON header after the 8-byte length".into()));
    }
    Ok(())
}

fn header_len(head: &[u8]) -> u64 {
    let mut n = [0u8; 8];
    for (d, s) in n.iter_mut().zip(head) {
        *d = *s;
    }
    u64::from_le_bytes(n)
}

/// The byte length the header promises (8 + header + the largest data offset), parsed from
/// the header alone so a cut file is reported as truncated, not as "invalid".
fn promised_len(path: &Path, header: &[u8], n: u64) -> Result<u64> {
    let corrupt = |msg: String| ModelError::CorruptFile {
        path: path.to_path_buf(),
        msg,
    };
    let json: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| corrupt(format!("header is not valid JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| corrupt("header is not a JSON object".into()))?;
    let mut end = 0u64;
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let e = info
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt(format!("tensor {name:?} has no data_offsets")))?;
        end = end.max(e);
    }
    Ok(n.saturating_add(8).saturating_add(end))
}

fn to_candle(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::U8 => DType::U8,
        Dtype::U32 => DType::U32,
        Dtype::I16 => DType::I16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        _ => return None,
    })
}

fn from_candle(dtype: DType) -> Option<Dtype> {
    Some(match dtype {
        DType::U8 => Dtype::U8,
        DType::U32 => Dtype::U32,
        DType::I16 => Dtype::I16,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        _ => return None,
    })
}

impl SafetensorsFile {
    /// Reads and validates `path`. Refuses pickles and zip archives (PyTorch checkpoints),
    /// truncated files and malformed headers with an error naming the file.
    ///
    /// Also removes what interrupted saves of `path` left behind ([`remove_stale_temps`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        remove_stale_temps(path);
        let bytes = std::fs::read(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            msg: format!("cannot read: {e}"),
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Parses bytes already in memory; `path` only names them in errors.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        let path = path.as_ref();
        let head = bytes.get(..9).unwrap_or(&bytes);
        sniff(path, head)?;
        let n = header_len(head);
        let actual = bytes.len() as u64;
        if n > MAX_HEADER {
            return Err(ModelError::NotSafetensors {
                path: path.to_path_buf(),
                reason: format!("header length {n} is implausible"),
            });
        }
        let Some(header) = bytes.get(8..8 + n as usize) else {
            return Err(ModelError::Truncated {
                path: path.to_path_buf(),
                expected: 8 + n,
                actual,
            });
        };
        let expected = promised_len(path, header, n)?;
        if actual < expected {
            return Err(ModelError::Truncated {
                path: path.to_path_buf(),
                expected,
                actual,
            });
        }
        let (hn, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            ModelError::CorruptFile {
                path: path.to_path_buf(),
                msg: e.to_string(),
            }
        })?;
        let mut entries = BTreeMap::new();
        for (name, info) in meta.tensors() {
            entries.insert(
                name,
                Entry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: info.data_offsets.0,
                    end: info.data_offsets.1,
                },
            );
        }
        let metadata = meta
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            data_start: 8 + hn,
            entries,
            metadata,
        })
    }

    /// Reads only the header's `__metadata__` string map (cheap for large files).
    /// Like [`SafetensorsFile::open`], it removes leftovers of interrupted saves of `path`.
    pub fn read_metadata(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
        let path = path.as_ref();
        remove_stale_temps(path);
        let io = |e: std::io::Error| ModelError::File {
            path: path.to_path_buf(),
            msg: format!("cannot read: {e}"),
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let actual = f.metadata().map_err(io)?.len();
        let mut head = Vec::with_capacity(9);
        Read::by_ref(&mut f)
            .take(9)
            .read_to_end(&mut head)
            .map_err(io)?;
        sniff(path, &head)?;
        let n = header_len(&head);
        if n > MAX_HEADER {
            return Err(ModelError::NotSafetensors {
                path: path.to_path_buf(),
                reason: format!("header length {n} is implausible"),
            });
        }
        if actual < 8 + n {
            return Err(ModelError::Truncated {
                path: path.to_path_buf(),
                expected: 8 + n,
                actual,
            });
        }
        let mut header = head.get(8..).unwrap_or(&[]).to_vec();
        f.take(n.saturating_sub(header.len() as u64))
            .read_to_end(&mut header)
            .map_err(io)?;
        let expected = promised_len(path, &header, n)?;
        if actual < expected {
            return Err(ModelError::Truncated {
                path: path.to_path_buf(),
                expected,
                actual,
            });
        }
        let json: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| ModelError::CorruptFile {
                path: path.to_path_buf(),
                msg: format!("header: {e}"),
            })?;
        let mut out = BTreeMap::new();
        if let Some(serde_json::Value::Object(m)) = json.get("__metadata__") {
            for (k, v) in m {
                match v {
                    serde_json::Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err(ModelError::CorruptFile {
                            path: path.to_path_buf(),
                            msg: format!("__metadata__ value {k:?} is not a string"),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Whether the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The stored dtype of `name` as safetensors spells it (`F16`, `BF16`, `F32`, ...).
    pub fn dtype_name(&self, name: &str) -> Option<String> {
        self.entries.get(name).map(|e| format!("{:?}", e.dtype))
    }

    /// The `__metadata__` string map (empty if the file has none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensor `name` on `device`, in its stored dtype.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        let dtype = to_candle(e.dtype).ok_or_else(|| ModelError::UnsupportedDtype {
            source_name: self.path.display().to_string(),
            name: name.to_string(),
            dtype: format!("{:?}", e.dtype),
        })?;
        let data = self
            .bytes
            .get(self.data_start + e.start..self.data_start + e.end)
            .ok_or_else(|| ModelError::CorruptFile {
                path: self.path.clone(),
                msg: format!("data of tensor {name:?} lies outside the file"),
            })?;
        Ok(Tensor::from_raw_buffer(data, dtype, &e.shape, device)?)
    }

    /// Checks that `name` can be turned into a candle tensor (its dtype is supported).
    pub fn check_dtype(&self, name: &str) -> Result<()> {
        match self.entries.get(name) {
            Some(e) if to_candle(e.dtype).is_none() => Err(ModelError::UnsupportedDtype {
                source_name: self.path.display().to_string(),
                name: name.to_string(),
                dtype: format!("{:?}", e.dtype),
            }),
            _ => Ok(()),
        }
    }
}

/// A tensor's bytes in safetensors form.
struct OwnedView {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &OwnedView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn le_bytes<T: Copy, const N: usize>(v: Vec<T>, f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * N);
    for x in v {
        out.extend_from_slice(&f(x));
    }
    out
}

fn tensor_bytes(name: &str, t: &Tensor) -> Result<OwnedView> {
    let dtype = from_candle(t.dtype()).ok_or_else(|| ModelError::UnsupportedDtype {
        source_name: "model".into(),
        name: name.to_string(),
        dtype: format!("{:?}", t.dtype()),
    })?;
    let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
    let data = match t.dtype() {
        DType::U8 => flat.to_vec1::<u8>()?,
        DType::U32 => le_bytes(flat.to_vec1::<u32>()?, u32::to_le_bytes),
        DType::I16 => le_bytes(flat.to_vec1::<i16>()?, i16::to_le_bytes),
        DType::I32 => le_bytes(flat.to_vec1::<i32>()?, i32::to_le_bytes),
        DType::I64 => le_bytes(flat.to_vec1::<i64>()?, i64::to_le_bytes),
        DType::F16 => le_bytes(flat.to_vec1::<half::f16>()?, half::f16::to_le_bytes),
        DType::BF16 => le_bytes(flat.to_vec1::<half::bf16>()?, half::bf16::to_le_bytes),
        DType::F32 => le_bytes(flat.to_vec1::<f32>()?, f32::to_le_bytes),
        DType::F64 => le_bytes(flat.to_vec1::<f64>()?, f64::to_le_bytes),
        other => {
            return Err(ModelError::UnsupportedDtype {
                source_name: "model".into(),
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(OwnedView {
        dtype,
        shape: t.dims().to_vec(),
        data,
    })
}

/// Serialises named tensors and a `__metadata__` map into safetensors bytes.
pub fn serialize<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut views = Vec::new();
    for (name, t) in tensors {
        views.push((name.to_string(), tensor_bytes(name, t)?));
    }
    let info: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let info = if info.is_empty() { None } else { Some(info) };
    safetensors::serialize(views.iter().map(|(n, v)| (n.as_str(), v)), info)
        .map_err(|e| ModelError::Config(format!("cannot serialise tensors to safetensors: {e}")))
}

/// The one temporary file a save of `path` writes: `.NAME.tmp` next to it.
///
/// The name is a function of the target alone, so at most one temporary file per target ever
/// exists, and the next save (or load) of the target finds and removes a leftover of an
/// interrupted save.
pub fn temp_path(path: &Path) -> Result<PathBuf> {
    let file_name = path.file_name().ok_or_else(|| ModelError::File {
        path: path.to_path_buf(),
        msg: "not a file path".into(),
    })?;
    Ok(dir_of(path).join(format!(".{}.tmp", file_name.to_string_lossy())))
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `name` is a temporary file of a save of the target `target`: today's
/// `.TARGET.tmp`, or `.TARGET.tmp-PID-NANOS` of earlier versions (which named each save's
/// temporary file uniquely and could leave one behind per interrupted save).
fn is_temp_of(name: &str, target: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_prefix(target))
        .and_then(|n| n.strip_prefix(".tmp"))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('-')
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit() || c == '-'))
}

/// Removes what interrupted saves of `path` left behind (see [`temp_path`]); returns how many
/// files were removed. A temporary file that a live save holds locked is left alone, so a
/// load in one process never breaks a save in another. Best effort: a file that cannot be
/// removed (read-only directory) is logged and skipped.
pub fn remove_stale_temps(path: &Path) -> usize {
    let Some(target) = path.file_name().and_then(|n| n.to_str()) else {
        return 0;
    };
    let dir = dir_of(path);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| is_temp_of(n, target)) {
            continue;
        }
        let tmp = entry.path();
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(&tmp) else {
            continue;
        };
        // A save in progress holds the lock; a killed one released it with its process.
        if f.try_lock().is_err() {
            continue;
        }
        match std::fs::remove_file(&tmp) {
            Ok(()) => {
                removed += 1;
                tracing::info!(path = %tmp.display(), "removed the temporary file of an interrupted save");
            }
            Err(e) => {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot remove the temporary file of an interrupted save");
            }
        }
        drop(f);
    }
    removed
}

/// Writes `bytes` to `path` atomically: the one temporary file of the target ([`temp_path`],
/// `.NAME.tmp` in the same directory) is created or truncated under an exclusive lock,
/// written, flushed and synced, then renamed over `path`, and the directory synced. A crash
/// at any point leaves the previous file at `path` (or none) and at most that one temporary
/// file, which the next save or load of `path` removes ([`remove_stale_temps`]). On an error
/// the temporary file is removed. Concurrent saves of the same target (from threads or
/// processes) take turns on the lock.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Opens the target's temporary file and locks it exclusively. The lock is taken on the
/// file that the temporary name refers to *after* locking, so a save that waited for another
/// one (which then renamed that file over the target) never writes into the target.
fn open_locked_temp(tmp: &Path) -> std::io::Result<std::fs::File> {
    loop {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(tmp)?;
        f.lock()?;
        if same_file(&f, tmp)? {
            f.set_len(0)?;
            return Ok(f);
        }
    }
}

/// Whether the open file `f` is still the file named `path` (a removed or renamed file is not).
#[cfg(unix)]
fn same_file(f: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let ours = f.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(now.dev() == ours.dev() && now.ino() == ours.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Without inode numbers: the name still exists (renaming an open file is refused on Windows).
#[cfg(not(unix))]
fn same_file(_f: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    Ok(path.exists())
}

/// [`write_atomic`] with a writer callback (lets tests inject a failure mid-write).
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let err = |p: &Path, what: &str, e: std::io::Error| ModelError::File {
        path: p.to_path_buf(),
        msg: format!("{what}: {e}"),
    };
    let tmp = temp_path(path)?;
    let dir = dir_of(path);
    remove_stale_temps(path);
    let mut f = open_locked_temp(&tmp).map_err(|e| err(&tmp, "cannot create temporary file", e))?;
    let result = write(&mut f)
        .and_then(|()| f.flush())
        .and_then(|()| f.sync_all())
        .map_err(|e| err(&tmp, "cannot write", e))
        // Renamed while still locked: nobody can take the temporary name's file before it
        // has become the target.
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| err(path, "cannot replace", e)));
    if let Err(e) = result {
        // Best effort: the temporary file must not linger; its removal error would hide `e`.
        let _ = std::fs::remove_file(&tmp);
        drop(f);
        return Err(e);
    }
    drop(f);
    // Make the rename durable; not every platform can open a directory, so best effort.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xfer-st-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names_in(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn failure_mid_write_leaves_old_file_and_no_temporary() {
        let d = tmpdir("midwrite");
        let p = d.join("model.safetensors");
        std::fs::write(&p, b"old contents").unwrap();
        let r = write_atomic_with(&p, |f| {
            f.write_all(b"half of the new")?;
            Err(std::io::Error::other("simulated crash"))
        });
        let e = r.unwrap_err().to_string();
        assert!(e.contains("simulated crash"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old contents");
        assert_eq!(
            names_in(&d),
            vec!["model.safetensors"],
            "a temporary file was left behind"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temp_names_are_recognised_per_target() {
        let t = "step-000000003.safetensors";
        assert!(is_temp_of(".step-000000003.safetensors.tmp", t));
        assert!(is_temp_of(
            ".step-000000003.safetensors.tmp-4242-123456789",
            t
        ));
        assert!(!is_temp_of(".step-000000003.safetensors.tmp-", t));
        assert!(!is_temp_of(".step-000000003.safetensors.tmpx", t));
        assert!(!is_temp_of(".step-000000030.safetensors.tmp", t));
        assert!(!is_temp_of("step-000000003.safetensors", t));
        assert!(!is_temp_of(".step-000000003.safetensors.tmp-12-ab", t));
        assert_eq!(
            temp_path(Path::new("a/b.safetensors")).unwrap(),
            Path::new("a/.b.safetensors.tmp")
        );
    }

    #[test]
    fn a_save_removes_the_leftovers_of_interrupted_saves_of_its_target_only() {
        let d = tmpdir("leftovers");
        let p = d.join("model.safetensors");
        // what killed saves leave: the current name, and the unique names of older versions
        std::fs::write(d.join(".model.safetensors.tmp"), b"torn").unwrap();
        std::fs::write(d.join(".model.safetensors.tmp-17-123456"), b"torn").unwrap();
        std::fs::write(d.join(".model.safetensors.tmp-99-7"), b"torn").unwrap();
        std::fs::write(d.join(".other.safetensors.tmp"), b"not ours").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(
            names_in(&d),
            vec![".other.safetensors.tmp", "model.safetensors"]
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_load_removes_leftovers_but_not_the_temporary_file_of_a_live_save() {
        let d = tmpdir("loadclean");
        let p = d.join("w.safetensors");
        let t = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let bytes = serialize([("a", &t)], &BTreeMap::new()).unwrap();
        write_atomic(&p, &bytes).unwrap();
        let tmp = temp_path(&p).unwrap();
        std::fs::write(&tmp, b"torn").unwrap();
        std::fs::write(d.join(".w.safetensors.tmp-1-2"), b"torn").unwrap();
        // a save in progress (another process) holds its temporary file locked
        let live = std::fs::OpenOptions::new().write(true).open(&tmp).unwrap();
        live.lock().unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(names_in(&d), vec![".w.safetensors.tmp", "w.safetensors"]);
        drop(live);
        SafetensorsFile::read_metadata(&p).unwrap();
        assert_eq!(names_in(&d), vec!["w.safetensors"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn concurrent_saves_of_one_target_take_turns() {
        let d = tmpdir("concurrent");
        let p = d.join("c.bin");
        let a = vec![b'a'; 1 << 16];
        let b = vec![b'b'; 1 << 17];
        let (a, b, p) = (&a, &b, &p);
        std::thread::scope(|s| {
            for data in [a, b] {
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(p, data).unwrap();
                        let now = std::fs::read(p).unwrap();
                        assert!(now == *a || now == *b, "a torn file of {} bytes", now.len());
                    }
                });
            }
        });
        assert_eq!(names_in(&d), vec!["c.bin"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn header_length_starting_like_a_pickle_is_still_safetensors() {
        let p = Path::new("x.safetensors");
        // Header length 0x0380: the file starts 0x80 0x03, like a protocol-3 pickle.
        let mut head = vec![0x80u8, 0x03, 0, 0, 0, 0, 0, 0];
        head.extend_from_slice(b"{\"a\":1}");
        assert!(sniff(p, &head).is_ok());
        let pickle = [0x80u8, 0x03, b'c', b'o', b'l', b'l', b'e', b'c', b't'];
        assert!(sniff(p, &pickle).is_err());
    }
}
