//! IDX files (LeCun's MNIST format, also used for USPS, EMNIST, Fashion-MNIST), raw or gzip.
//!
//! Layout: two zero bytes, a type code (`0x08` u8, `0x09` i8, `0x0B` i16, `0x0C` i32,
//! `0x0D` f32, `0x0E` f64), the number of dimensions, then each dimension as a big-endian
//! u32, then the values, big-endian, row-major. The data size the dimensions claim is checked
//! against the file (or, for gzip, against the bytes the stream actually yields) before
//! anything of that size is allocated.

use crate::dataset::{TensorDataset, UnlabeledDataset};
use crate::error::{DataError, Result};
use crate::formats::{GZIP_MAGIC, has_gz_extension, hex_prefix};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The element type of an IDX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxType {
    /// `0x08`
    U8,
    /// `0x09`
    I8,
    /// `0x0B`
    I16,
    /// `0x0C`
    I32,
    /// `0x0D`
    F32,
    /// `0x0E`
    F64,
}

impl IdxType {
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0x08 => Self::U8,
            0x09 => Self::I8,
            0x0B => Self::I16,
            0x0C => Self::I32,
            0x0D => Self::F32,
            0x0E => Self::F64,
            _ => return None,
        })
    }
    /// The type code.
    pub fn code(self) -> u8 {
        match self {
            Self::U8 => 0x08,
            Self::I8 => 0x09,
            Self::I16 => 0x0B,
            Self::I32 => 0x0C,
            Self::F32 => 0x0D,
            Self::F64 => 0x0E,
        }
    }
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }
    fn is_integer(self) -> bool {
        !matches!(self, Self::F32 | Self::F64)
    }
}

/// The contents of one IDX file: its dimensions and values (as f64, exact for every IDX type).
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Element type in the file.
    pub dtype: IdxType,
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f64>,
}

/// Encodes an array as IDX bytes (for tests and for writing small files).
pub fn encode_idx(dtype: IdxType, dims: &[u32], values: &[f64]) -> Vec<u8> {
    let mut out = vec![0, 0, dtype.code(), dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    for &v in values {
        match dtype {
            IdxType::U8 => out.push(v as u8),
            IdxType::I8 => out.push((v as i8) as u8),
            IdxType::I16 => out.extend_from_slice(&(v as i16).to_be_bytes()),
            IdxType::I32 => out.extend_from_slice(&(v as i32).to_be_bytes()),
            IdxType::F32 => out.extend_from_slice(&(v as f32).to_be_bytes()),
            IdxType::F64 => out.extend_from_slice(&v.to_be_bytes()),
        }
    }
    out
}

fn header_from(path: &Path, head: &[u8]) -> Result<(IdxType, usize)> {
    let magic_ok = head.len() >= 4 && head[0] == 0 && head[1] == 0 && head[3] > 0;
    let dtype = head.get(2).and_then(|&c| IdxType::from_code(c));
    match (magic_ok, dtype) {
        (true, Some(t)) => Ok((t, head[3] as usize)),
        _ => Err(DataError::BadMagic {
            path: path.to_path_buf(),
            format: "IDX",
            found: hex_prefix(head, 4),
        }),
    }
}

/// Reads exactly `buf.len()` bytes or reports how many were there.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Parses an IDX stream. `raw_len` is the total byte length when known (an uncompressed file):
/// then the payload size is checked before reading it.
fn parse_stream(path: &Path, mut r: impl Read, raw_len: Option<u64>) -> Result<IdxArray> {
    let io = |e| DataError::io(path, e);
    let mut head = [0u8; 4];
    let got = read_full(&mut r, &mut head).map_err(io)?;
    let (dtype, nd) = header_from(path, &head[..got])?;
    let mut dim_bytes = vec![0u8; 4 * nd];
    let got = read_full(&mut r, &mut dim_bytes).map_err(io)?;
    if got < dim_bytes.len() {
        return Err(DataError::SizeMismatch {
            path: path.to_path_buf(),
            what: format!("header ({nd} dimensions)"),
            expected: 4 + dim_bytes.len() as u64,
            actual: 4 + got as u64,
        });
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let header_len = 4 + 4 * nd as u64;
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = count.and_then(|n| n.checked_mul(dtype.size()));
    let Some(expected) = expected else {
        return Err(DataError::parse(
            path,
            "bytes 4..",
            format!("dimensions {dims:?} overflow"),
        ));
    };
    if expected == 0 {
        return Err(DataError::Empty(format!(
            "{} (dimensions {dims:?})",
            path.display()
        )));
    }
    let payload = match raw_len {
        Some(total) => {
            let actual = total.saturating_sub(header_len);
            if actual != expected as u64 {
                return Err(DataError::SizeMismatch {
                    path: path.to_path_buf(),
                    what: format!("data of dimensions {dims:?} at byte {header_len}"),
                    expected: expected as u64,
                    actual,
                });
            }
            let mut buf = vec![0u8; expected];
            let got = read_full(&mut r, &mut buf).map_err(io)?;
            if got != expected {
                return Err(DataError::SizeMismatch {
                    path: path.to_path_buf(),
                    what: "data (file changed while reading)".into(),
                    expected: expected as u64,
                    actual: got as u64,
                });
            }
            buf
        }
        None => {
            // Compressed: the header is untrusted and the size unknown, so let the buffer grow
            // only as real bytes arrive, and read at most one byte past the claim.
            let mut buf = Vec::new();
            r.take(expected as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| {
                    DataError::parse(path, "gzip stream", format!("decompression failed: {e}"))
                })?;
            if buf.len() != expected {
                return Err(DataError::SizeMismatch {
                    path: path.to_path_buf(),
                    what: format!("decompressed data of dimensions {dims:?} at byte {header_len}"),
                    expected: expected as u64,
                    actual: if buf.len() > expected {
                        // more than claimed: say "more" without reading it all
                        expected as u64 + 1
                    } else {
                        buf.len() as u64
                    },
                });
            }
            buf
        }
    };
    let values = decode(dtype, &payload);
    Ok(IdxArray {
        dtype,
        dims,
        values,
    })
}

fn decode(dtype: IdxType, b: &[u8]) -> Vec<f64> {
    match dtype {
        IdxType::U8 => b.iter().map(|&v| f64::from(v)).collect(),
        IdxType::I8 => b.iter().map(|&v| f64::from(v as i8)).collect(),
        IdxType::I16 => b
            .chunks_exact(2)
            .map(|c| f64::from(i16::from_be_bytes([c[0], c[1]])))
            .collect(),
        IdxType::I32 => b
            .chunks_exact(4)
            .map(|c| f64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        IdxType::F32 => b
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        IdxType::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    }
}

/// Reads an IDX file, raw or gzip (detected by the gzip magic; a `.gz` name without it is
/// refused).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let io = |e| DataError::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut magic = [0u8; 2];
    let got = read_full(&mut f, &mut magic).map_err(io)?;
    let f2 = std::fs::File::open(path).map_err(io)?;
    if got == 2 && magic == GZIP_MAGIC {
        parse_stream(path, flate2::read::MultiGzDecoder::new(f2), None)
    } else if has_gz_extension(path) {
        Err(DataError::BadMagic {
            path: path.to_path_buf(),
            format: "gzip",
            found: hex_prefix(&magic[..got], 2),
        })
    } else {
        parse_stream(path, std::io::BufReader::new(f2), Some(len))
    }
}

/// Parses IDX bytes held in memory (raw or gzip); `path` names them in errors.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.starts_with(&GZIP_MAGIC) {
        parse_stream(path, flate2::read::MultiGzDecoder::new(bytes), None)
    } else {
        parse_stream(path, bytes, Some(bytes.len() as u64))
    }
}

fn sample_shape(path: &Path, dims: &[usize]) -> Result<Vec<usize>> {
    match dims {
        [_, d] => Ok(vec![*d]),
        [_, h, w] => Ok(vec![1, *h, *w]),
        [_, rest @ ..] if !rest.is_empty() => Ok(rest.to_vec()),
        _ => Err(DataError::parse(
            path,
            "header",
            format!("images need at least 2 dimensions (N, ...), got {dims:?}"),
        )),
    }
}

/// Features `(N, ...)` from an IDX image file: `(N, D)` → samples `[D]`, `(N, H, W)` →
/// `[1, H, W]`, `(N, C, H, W)` → `[C, H, W]`. Values as stored (0..255 for MNIST), times `scale`.
fn read_features(path: &Path, scale: f32) -> Result<(Vec<f32>, Vec<usize>, usize)> {
    let a = read_idx(path)?;
    let shape = sample_shape(path, &a.dims)?;
    let n = a.dims[0];
    Ok((
        a.values.iter().map(|&v| v as f32 * scale).collect(),
        shape,
        n,
    ))
}

/// A labelled data set from an IDX image file and an IDX label file (1-D, integer type,
/// one label per image). Feature values are as stored times `scale`.
pub fn read_idx_dataset(images: &Path, labels: &Path, scale: f32) -> Result<TensorDataset> {
    let (x, shape, n) = read_features(images, scale)?;
    let l = read_idx(labels)?;
    if l.dims.len() != 1 || !l.dtype.is_integer() {
        return Err(DataError::parse(
            labels,
            "header",
            format!(
                "labels must be a 1-D integer array, got {:?} of dimensions {:?}",
                l.dtype, l.dims
            ),
        ));
    }
    if l.dims[0] != n {
        return Err(DataError::shape(
            format!("{} + {}", images.display(), labels.display()),
            format!("{n} images but {} labels", l.dims[0]),
        ));
    }
    let mut ys = Vec::with_capacity(n);
    for (i, &v) in l.values.iter().enumerate() {
        if v < 0.0 {
            return Err(DataError::parse(
                labels,
                format!("label {i}"),
                format!("value {v} is negative, not a class id"),
            ));
        }
        ys.push(v as u32);
    }
    TensorDataset::new(images.display().to_string(), x, shape, ys)
}

/// Unlabelled features from an IDX image file.
pub fn read_idx_unlabeled(images: &Path, scale: f32) -> Result<UnlabeledDataset> {
    let (x, shape, _) = read_features(images, scale)?;
    UnlabeledDataset::new(images.display().to_string(), x, shape)
}

/// The label file that goes with an MNIST-style image file name
/// (`train-images-idx3-ubyte[.gz]` → `train-labels-idx1-ubyte[.gz]`), if it exists.
pub fn sibling_labels(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let cand = name.replace("images", "labels").replace("idx3", "idx1");
    if cand == name {
        return None;
    }
    let p = images.with_file_name(cand);
    p.exists().then_some(p)
}
