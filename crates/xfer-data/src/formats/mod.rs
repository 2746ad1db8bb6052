//! Readers for the files users bring: IDX (MNIST/USPS), CSV, image folders, safetensors
//! feature files, and the zero-shot benchmark of Xian et al. (`res101.mat`, `att_splits.mat`).
//!
//! Every reader checks sizes claimed by a header against the bytes present before it
//! allocates, and refuses bad input with a typed [`crate::DataError`] that names the file and
//! the position.

pub mod csv;
pub mod folder;
pub mod idx;
pub mod safetensors_file;
pub mod xian;

use crate::error::{DataError, Result};
use std::io::Read;
use std::path::Path;

/// The two magic bytes of gzip.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `path` names a gzip file by its extension.
pub(crate) fn has_gz_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Reads a whole file, decompressing it when it starts with the gzip magic. A `.gz` file
/// without the magic is refused.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::parse(
                    path,
                    format!("gzip stream, after {} decompressed bytes", out.len()),
                    e.to_string(),
                )
            })?;
        Ok(out)
    } else if has_gz_extension(path) {
        Err(DataError::BadMagic {
            path: path.to_path_buf(),
            format: "gzip",
            found: hex_prefix(&raw, 2),
        })
    } else {
        Ok(raw)
    }
}

/// The first `n` bytes in hex, for messages.
pub(crate) fn hex_prefix(bytes: &[u8], n: usize) -> String {
    let shown: Vec<String> = bytes.iter().take(n).map(|b| format!("{b:02x}")).collect();
    if shown.is_empty() {
        "(empty file)".to_string()
    } else {
        shown.join(" ")
    }
}
