//! # xfer — transfer learning on candle
//!
//! A thin facade over the focused crates; each can be used on its own.
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`ops`] | `xfer-ops` | fast conv2d, gradient reversal, norms with correct gradients, seeded RNG |
//! | [`losses`] | `xfer-losses` | L2-SP, distillation, domain-adversarial, MMD, CORAL, zero-shot hinge |
//! | [`models`] | `xfer-models` | named parameters, layers, layer transfer, ResNet, BERT, heads |
//! | [`data`] | `xfer-data` | datasets, loaders, splits, embedded data sets, file formats |
//! | [`train`] | `xfer-train` | optimisers, schedules, the training loop, the methods, metrics |

pub use candle_core as candle;
pub use xfer_data as data;
pub use xfer_losses as losses;
pub use xfer_models as models;
pub use xfer_ops as ops;
pub use xfer_train as train;

/// The names most programs need.
pub mod prelude {
    pub use candle_core::{DType, Device, Tensor, Var};
    pub use xfer_models::{
        BackboneSpec, BottleneckSpec, Classifier, ClassifierConfig, Param, ParamStore, Selection,
    };
    pub use xfer_ops::{ParamSnapshot, SeededRng, grad_reverse};
}
