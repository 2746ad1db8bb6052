//! Data sets that ship with the crate: generated (seeded) or embedded with `include_bytes!`.
//! Nothing is downloaded, ever.
//!
//! - [`moons()`] / [`moons_pair`]: the DANN paper's two-moons toy.
//! - [`optdigits()`]: 1,797 real handwritten 8×8 digits (UCI, CC BY 4.0).
//! - [`synth_digits()`]: generated stroke digits reduced to 8×8 like optdigits.
//! - [`shifted`]: rotated, inverted, noisy and MNIST-M-style coloured versions of any digits.
//! - [`shapes()`]: 24 classes of coloured shapes with a class-attribute matrix.
//! - [`digit_attributes()`]: seven-segment strokes and loops per digit.

pub mod digit_attributes;
pub mod moons;
pub mod optdigits;
pub mod shapes;
pub mod shifted;
pub mod synth_digits;

pub use digit_attributes::digit_attributes;
pub use moons::{moons, moons_pair};
pub use optdigits::optdigits;
pub use shapes::{shape_attributes, shapes};
pub use synth_digits::synth_digits;
