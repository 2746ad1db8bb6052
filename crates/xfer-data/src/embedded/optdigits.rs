//! The UCI "Optical Recognition of Handwritten Digits" test set, embedded.
//!
//! E. Alpaydin, C. Kaynak (1998), UCI Machine Learning Repository, licence CC BY 4.0.
//! 1,797 digits by 13 writers; each an 8×8 image whose values 0..16 count the set pixels
//! in each 4×4 block of a 32×32 bitmap, row-major, and its label 0..9.

use crate::dataset::TensorDataset;
use crate::embedded::digit_attributes::digit_attributes;
use crate::error::Result;
use crate::formats::csv::{CsvOptions, Header, LabelColumn, parse_csv};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// The gzip-compressed CSV as shipped in the crate (`data/optdigits-test.csv.gz`).
pub const OPTDIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/optdigits-test.csv.gz");

/// Number of digits in the embedded set.
pub const OPTDIGITS_LEN: usize = 1797;

/// The 1,797 optdigits as images `[1, 8, 8]` with values 0..16, classes `"0"`..`"9"` and the
/// [digit attributes](crate::embedded::digit_attributes()) attached.
pub fn optdigits() -> Result<TensorDataset> {
    let name = Path::new("optdigits (embedded)");
    let mut text = Vec::new();
    GzDecoder::new(OPTDIGITS_CSV_GZ)
        .read_to_end(&mut text)
        .map_err(|e| crate::DataError::io(name, e))?;
    let opts = CsvOptions {
        label: LabelColumn::Last,
        header: Header::No,
        num_classes: Some(10),
        ..CsvOptions::default()
    };
    parse_csv(name, &text, &opts)?
        .with_name("optdigits")
        .reshape(vec![1, 8, 8])?
        .with_attributes(digit_attributes())
}
