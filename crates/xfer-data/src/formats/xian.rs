//! The zero-shot benchmark format of Xian, Lampert, Schiele & Akata, "Zero-Shot Learning —
//! A Comprehensive Evaluation of the Good, the Bad and the Ugly" (TPAMI 2018): for each of
//! AWA2, CUB, SUN, aPY, FLO a `res101.mat` (`features`: `D × N` ResNet-101 features,
//! column-major so sample `i` is column `i`; `labels`: `N × 1`, 1-based class ids) and an
//! `att_splits.mat` (`att`: `A × C` class attributes, L2-normalised per class;
//! `trainval_loc`, `test_seen_loc`, `test_unseen_loc`: 1-based sample indices).
//!
//! Read with the `matfile` crate (MATLAB level-5 files, plain or compressed). `matfile` reads
//! numeric arrays only, so the cell arrays `allclasses_names` and `image_files` are skipped
//! and classes are named `"0"`, `"1"`, ... (0-based ids).

use crate::dataset::{ClassAttributes, TensorDataset};
use crate::error::{DataError, Result};
use matfile::{MatFile, NumericData};
use std::path::Path;

/// The benchmark's three splits and the class-attribute matrix.
#[derive(Debug, Clone)]
pub struct ZeroShotBenchmark {
    /// Training samples (seen classes), from `trainval_loc`.
    pub trainval: TensorDataset,
    /// Held-out samples of seen classes, from `test_seen_loc`.
    pub test_seen: TensorDataset,
    /// Samples of unseen classes, from `test_unseen_loc`.
    pub test_unseen: TensorDataset,
    /// `att` as a `(C, A)` matrix, each row L2-normalised.
    pub attributes: ClassAttributes,
    /// Classes present in `trainval`, sorted (0-based).
    pub seen_classes: Vec<u32>,
    /// Classes present in `test_unseen`, sorted (0-based).
    pub unseen_classes: Vec<u32>,
}

fn load_mat(path: &Path) -> Result<MatFile> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.len() < 128 {
        return Err(DataError::SizeMismatch {
            path: path.to_path_buf(),
            what: "MAT-file header".into(),
            expected: 128,
            actual: bytes.len() as u64,
        });
    }
    if bytes.starts_with(b"\x89HDF") || bytes.get(512..516) == Some(b"\x89HDF".as_slice()) {
        return Err(DataError::parse(
            path,
            "byte 0",
            "a MATLAB v7.3 (HDF5) file; only level-5 MAT files are supported (save with -v7)",
        ));
    }
    // `matfile` is a parser of untrusted input that may panic on malformed data; keep a
    // panic from crossing into the caller.
    let parsed = std::panic::catch_unwind(|| MatFile::parse(bytes.as_slice()));
    match parsed {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(DataError::parse(path, "MAT-file", e.to_string())),
        Err(_) => Err(DataError::parse(
            path,
            "MAT-file",
            "malformed MAT-file (the parser gave up)",
        )),
    }
}

/// `(values, dims)` of the numeric array `name`, as f64 (real part).
fn array(path: &Path, m: &MatFile, name: &str) -> Result<(Vec<f64>, Vec<usize>)> {
    let a = m.find_by_name(name).ok_or_else(|| {
        let have: Vec<&str> = m.arrays().iter().map(|a| a.name()).collect();
        DataError::parse(
            path,
            format!("array `{name}`"),
            format!("missing (numeric arrays present: {})", have.join(", ")),
        )
    })?;
    let v: Vec<f64> = match a.data() {
        NumericData::Double { real, .. } => real.clone(),
        NumericData::Single { real, .. } => real.iter().map(|&x| f64::from(x)).collect(),
        NumericData::Int8 { real, .. } => real.iter().map(|&x| f64::from(x)).collect(),
        NumericData::UInt8 { real, .. } => real.iter().map(|&x| f64::from(x)).collect(),
        NumericData::Int16 { real, .. } => real.iter().map(|&x| f64::from(x)).collect(),
        NumericData::UInt16 { real, .. } => real.iter().map(|&x| f64::from(x)).collect(),
        NumericData::Int32 { real, .. } => real.iter().map(|&x| f64::from(x)).collect(),
        NumericData::UInt32 { real, .. } => real.iter().map(|&x| f64::from(x)).collect(),
        NumericData::Int64 { real, .. } => real.iter().map(|&x| x as f64).collect(),
        NumericData::UInt64 { real, .. } => real.iter().map(|&x| x as f64).collect(),
    };
    Ok((v, a.size().clone()))
}

/// A vector array (`K × 1` or `1 × K`) of 1-based integers in `1..=max`, as 0-based.
fn one_based(path: &Path, m: &MatFile, name: &str, max: usize) -> Result<Vec<usize>> {
    let (v, dims) = array(path, m, name)?;
    if dims.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(DataError::parse(
            path,
            format!("array `{name}`"),
            format!("expected a vector, got dimensions {dims:?}"),
        ));
    }
    v.iter()
        .enumerate()
        .map(|(k, &x)| {
            if x.fract() == 0.0 && x >= 1.0 && x <= max as f64 {
                Ok(x as usize - 1)
            } else {
                Err(DataError::parse(
                    path,
                    format!("array `{name}`, element {}", k + 1),
                    format!("{x} is not a 1-based index in 1..={max}"),
                ))
            }
        })
        .collect()
}

/// Reads `res101.mat` and `att_splits.mat`.
pub fn read_xian(res101: &Path, att_splits: &Path) -> Result<ZeroShotBenchmark> {
    let feats = load_mat(res101)?;
    let splits = load_mat(att_splits)?;
    let (fv, fd) = array(res101, &feats, "features")?;
    let [d, n] = fd[..] else {
        return Err(DataError::parse(
            res101,
            "array `features`",
            format!("expected D × N, got dimensions {fd:?}"),
        ));
    };
    if n == 0 || d == 0 {
        return Err(DataError::Empty(res101.display().to_string()));
    }
    let (av, ad) = array(att_splits, &splits, "att")?;
    let [a, c] = ad[..] else {
        return Err(DataError::parse(
            att_splits,
            "array `att`",
            format!("expected A × C, got dimensions {ad:?}"),
        ));
    };
    // Column-major A × C: class k's attributes are the contiguous column k.
    let att = ClassAttributes::new(
        (0..a).map(|i| format!("att{i}")).collect(),
        av.iter().map(|&x| x as f32).collect(),
        c,
    )
    .map_err(|e| DataError::parse(att_splits, "array `att`", e.to_string()))?
    .l2_normalized();
    let labels = one_based(res101, &feats, "labels", c)?;
    if labels.len() != n {
        return Err(DataError::parse(
            res101,
            "array `labels`",
            format!("{} labels for {n} feature columns", labels.len()),
        ));
    }
    if let Some(i) = fv.iter().position(|x| !x.is_finite()) {
        return Err(DataError::parse(
            res101,
            format!("array `features`, sample {}", i / d + 1),
            "value is not finite",
        ));
    }
    let all = TensorDataset::new(
        res101.display().to_string(),
        fv.iter().map(|&x| x as f32).collect(),
        vec![d],
        labels.iter().map(|&l| l as u32).collect(),
    )?
    .with_num_classes(c)?
    .with_attributes(att.clone())?;
    let part = |name: &str| -> Result<TensorDataset> {
        let idx = one_based(att_splits, &splits, name, n)?;
        Ok(all
            .subset(&idx)?
            .with_name(format!("{} [{name}]", res101.display())))
    };
    let trainval = part("trainval_loc")?;
    let test_seen = part("test_seen_loc")?;
    let test_unseen = part("test_unseen_loc")?;
    let classes_of = |ds: &TensorDataset| {
        let mut v: Vec<u32> = ds.labels().to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    Ok(ZeroShotBenchmark {
        seen_classes: classes_of(&trainval),
        unseen_classes: classes_of(&test_unseen),
        trainval,
        test_seen,
        test_unseen,
        attributes: att,
    })
}
