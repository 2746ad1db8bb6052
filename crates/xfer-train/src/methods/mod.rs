//! The lecture's methods, each an [`Objective`](crate::Objective) (plus its heads and
//! parameter groups) run by the one [`Trainer`](crate::Trainer).
//!
//! - [`finetune`]: scratch, full fine-tuning, L2-SP, output closeness (distillation), layer
//!   transfer (LECTURE.md §1).
//! - [`multitask`]: shared trunk with task heads, fixed or uncertainty weights, masked labels;
//!   progressive networks (LECTURE.md §2).
//! - [`dann`]: domain-adversarial training and its source-only baseline (LECTURE.md §3).
//! - [`zero_shot`]: attribute embedding with the lecture's hinge, DAP and ConSE (LECTURE.md §4).
//!   [`zero_shot::inputs`]: frozen image features and class-text embeddings for it;
//!   [`zero_shot::calibration`]: calibrated stacking with a label-free `γ` for generalised
//!   ZSL.
//! - [`self_taught`]: an auto-encoder on unlabelled source data, its encoder reused for the
//!   labelled target task (LECTURE.md §5).

pub mod dann;
pub mod finetune;
pub mod multitask;
pub mod self_taught;
pub mod zero_shot;
