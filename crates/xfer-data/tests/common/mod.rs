//! Helpers the tests share: a self-cleaning temporary folder and writers for the small files
//! the tests read back (gzip, MATLAB level-5).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A folder under `std::env::temp_dir()` with a unique name, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "xfer-data-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.file(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A variable for [`mat_v5`].
pub enum MatVar<'a> {
    /// A real double matrix: name, dims, column-major values.
    Double(&'a str, &'a [usize], &'a [f64]),
    /// A char array (which `matfile` skips, as it skips the cell arrays of the real files).
    Char(&'a str, &'a str),
}

fn pad8(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(8) {
        v.push(0);
    }
}

fn sub(v: &mut Vec<u8>, ty: u32, data: &[u8]) {
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    pad8(v);
}

/// A minimal MATLAB level-5 MAT-file writer (little-endian), following "MAT-File Format"
/// (MathWorks): a 128-byte header, then one miMATRIX element per variable, optionally each
/// wrapped in a zlib-compressed miCOMPRESSED element as MATLAB's `save -v7` does.
pub fn mat_v5(vars: &[MatVar<'_>], compressed: bool) -> Vec<u8> {
    const MI_INT8: u32 = 1;
    const MI_UINT16: u32 = 4;
    const MI_INT32: u32 = 5;
    const MI_UINT32: u32 = 6;
    const MI_DOUBLE: u32 = 9;
    const MI_MATRIX: u32 = 14;
    const MI_COMPRESSED: u32 = 15;
    let mut out = Vec::new();
    let mut text = b"MATLAB 5.0 MAT-file, written by the xfer-data tests".to_vec();
    text.resize(116, b' ');
    out.extend_from_slice(&text);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for var in vars {
        let (name, class, dims, data_ty, data): (&str, u32, Vec<usize>, u32, Vec<u8>) = match var {
            MatVar::Double(n, d, v) => (
                n,
                6,
                d.to_vec(),
                MI_DOUBLE,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            MatVar::Char(n, s) => (
                n,
                4,
                vec![1, s.len()],
                MI_UINT16,
                s.bytes().flat_map(|b| u16::from(b).to_le_bytes()).collect(),
            ),
        };
        let mut body = Vec::new();
        let mut flags = Vec::new();
        flags.extend_from_slice(&class.to_le_bytes());
        flags.extend_from_slice(&0u32.to_le_bytes());
        sub(&mut body, MI_UINT32, &flags);
        let dim_bytes: Vec<u8> = dims
            .iter()
            .flat_map(|&d| (d as i32).to_le_bytes())
            .collect();
        sub(&mut body, MI_INT32, &dim_bytes);
        sub(&mut body, MI_INT8, name.as_bytes());
        sub(&mut body, data_ty, &data);
        let mut element = Vec::new();
        element.extend_from_slice(&MI_MATRIX.to_le_bytes());
        element.extend_from_slice(&(body.len() as u32).to_le_bytes());
        element.extend_from_slice(&body);
        if compressed {
            let z = zlib(&element);
            out.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
            out.extend_from_slice(&(z.len() as u32).to_le_bytes());
            out.extend_from_slice(&z);
        } else {
            out.extend_from_slice(&element);
        }
    }
    out
}
