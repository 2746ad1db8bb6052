//! A per-digit attribute table for zero-shot learning on digits: the seven segments of a
//! seven-segment display and the number of closed loops.
//!
//! ```text
//!  aaa
//! f   b
//!  ggg
//! e   c
//!  ddd
//! ```
//! Segments are 0/1; `loops` counts closed regions as usually handwritten (0, 6, 9: one;
//! 8: two; 4: zero — the open form). The ten rows are distinct, so every digit is
//! identifiable from its attributes alone.

use crate::dataset::ClassAttributes;

/// Attribute names: `seg_a` … `seg_g`, `loops`.
pub const DIGIT_ATTRIBUTE_NAMES: [&str; 8] = [
    "seg_a", "seg_b", "seg_c", "seg_d", "seg_e", "seg_f", "seg_g", "loops",
];

/// The table, row `d` for digit `d`.
pub const DIGIT_ATTRIBUTE_TABLE: [[f32; 8]; 10] = [
    // a  b  c  d  e  f  g  loops
    [1., 1., 1., 1., 1., 1., 0., 1.], // 0
    [0., 1., 1., 0., 0., 0., 0., 0.], // 1
    [1., 1., 0., 1., 1., 0., 1., 0.], // 2
    [1., 1., 1., 1., 0., 0., 1., 0.], // 3
    [0., 1., 1., 0., 0., 1., 1., 0.], // 4
    [1., 0., 1., 1., 0., 1., 1., 0.], // 5
    [1., 0., 1., 1., 1., 1., 1., 1.], // 6
    [1., 1., 1., 0., 0., 0., 0., 0.], // 7
    [1., 1., 1., 1., 1., 1., 1., 2.], // 8
    [1., 1., 1., 1., 0., 1., 1., 1.], // 9
];

/// The digit attribute matrix `(10, 8)`.
pub fn digit_attributes() -> ClassAttributes {
    let names = DIGIT_ATTRIBUTE_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let values = DIGIT_ATTRIBUTE_TABLE.iter().flatten().copied().collect();
    // A constant 10 × 8 table of finite values: valid by construction.
    ClassAttributes::from_trusted(names, values, 10)
}
