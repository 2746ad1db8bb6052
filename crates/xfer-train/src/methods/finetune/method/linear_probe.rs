//! The linear probe: a new head trained on the frozen source network (every block but the
//! last copied and frozen), the "linear classifier on frozen features" baseline.

use super::layer_transfer::{BlockEnd, CopiedBlocks, LayerTransfer};
use super::{Entry, FinetuneMethod, Method, Prepared, SetupCtx, no_settings};
use crate::Result;

/// A new head on the frozen source network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinearProbe;

/// `linear` (or `linear-probe`); not part of `all`.
pub const ENTRY: Entry = Entry {
    names: &["linear", "linear-probe"],
    syntax: "linear",
    parse: |rest| {
        no_settings(rest)?;
        Ok(Method::new(LinearProbe))
    },
    all: |_| Vec::new(),
};

impl FinetuneMethod for LinearProbe {
    fn name(&self) -> String {
        "linear_probe".into()
    }

    fn spec(&self) -> String {
        "linear".into()
    }

    fn prepare(&self, cx: &SetupCtx<'_>) -> Result<Prepared> {
        LayerTransfer {
            end: BlockEnd::First,
            k: cx.net.blocks().len().saturating_sub(1),
            copied: CopiedBlocks::Freeze,
        }
        .apply(cx)
    }
}
