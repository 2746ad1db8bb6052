//! Layer transfer (LECTURE.md §1b): copy the first (or last) `K` blocks from the source
//! model, freeze them (or train them at a smaller rate), re-initialise the others.

use xfer_models::{ParamGroup, Transfer, first_blocks, last_blocks};

use super::{Entry, FinetuneMethod, Method, Prepared, SetupCtx, bad_settings};
use crate::{Result, TrainError};

/// Which end of the network layer transfer copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEnd {
    /// The first `K` blocks (input side): generic features — the usual choice for images.
    First,
    /// The last `K` blocks (output side) — the usual choice for speech.
    Last,
}

/// What happens to the copied blocks while the rest trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CopiedBlocks {
    /// Frozen: not updated (and no gradient is computed for them).
    Freeze,
    /// Trained with the learning rate multiplied by this factor (e.g. 0.1).
    LrMult(f64),
}

/// Layer transfer: copy `k` blocks from the source model, re-initialise the others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerTransfer {
    /// Which end.
    pub end: BlockEnd,
    /// How many blocks.
    pub k: usize,
    /// Frozen or trained slowly.
    pub copied: CopiedBlocks,
}

/// `layer-transfer:[first:|last:]K[:lr=X]` (the first `K` blocks, frozen, by default); `all`
/// runs the first and the last `K` blocks, frozen, for `K = 1 .. num_blocks−1`.
pub const ENTRY: Entry = Entry {
    names: &["layer-transfer"],
    syntax: "layer-transfer:[first:|last:]K[:lr=X]",
    parse: |rest| parse(rest.ok_or_else(|| bad_settings("layer-transfer needs K"))?),
    all: |num_blocks| {
        let mut v = Vec::new();
        for end in [BlockEnd::First, BlockEnd::Last] {
            for k in 1..num_blocks {
                v.push(Method::new(LayerTransfer {
                    end,
                    k,
                    copied: CopiedBlocks::Freeze,
                }));
            }
        }
        v
    },
};

/// The settings after `layer-transfer:`.
fn parse(rest: &str) -> Result<Method> {
    let mut end = BlockEnd::First;
    let mut k = None;
    let mut copied = CopiedBlocks::Freeze;
    for part in rest.split(':') {
        match part {
            "first" => end = BlockEnd::First,
            "last" => end = BlockEnd::Last,
            "freeze" => copied = CopiedBlocks::Freeze,
            p if p.starts_with("lr=") => {
                let m = p
                    .get(3..)
                    .and_then(|m| m.parse::<f64>().ok())
                    .filter(|m| m.is_finite() && *m >= 0.0)
                    .ok_or_else(|| bad_settings("lr= needs a number ≥ 0"))?;
                copied = CopiedBlocks::LrMult(m);
            }
            p => {
                k = Some(
                    p.parse::<usize>()
                        .map_err(|_| bad_settings("K must be a number"))?,
                )
            }
        }
    }
    let k = k.ok_or_else(|| bad_settings("layer-transfer needs K"))?;
    Ok(Method::new(LayerTransfer { end, k, copied }))
}

impl LayerTransfer {
    /// Copies the blocks from the source into `cx.net` and freezes them (or puts them in a
    /// group at the multiplied rate).
    pub(super) fn apply(&self, cx: &SetupCtx<'_>) -> Result<Prepared> {
        let p = cx.source()?;
        let blocks = cx.net.blocks();
        if self.k == 0 || self.k >= blocks.len() {
            return Err(TrainError::invalid(
                "layer-transfer K",
                self.k,
                format!(
                    "a value in 1..={} (layer transfer: the network has {} blocks: {})",
                    blocks.len().saturating_sub(1),
                    blocks.len(),
                    blocks.join(", "),
                ),
            ));
        }
        let copied_blocks = match self.end {
            BlockEnd::First => blocks.get(..self.k),
            BlockEnd::Last => blocks.get(blocks.len() - self.k..),
        }
        .unwrap_or(&[])
        .to_vec();
        let sel = match self.end {
            BlockEnd::First => first_blocks(&blocks, self.k)?,
            BlockEnd::Last => last_blocks(&blocks, self.k)?,
        };
        let report = Transfer::new()
            .select(sel.clone())
            .run(&p.weights, cx.net.store())?;
        if !report.is_clean() {
            return Err(TrainError::Incompatible(format!(
                "layer transfer could not copy the selected blocks: {report}"
            )));
        }
        let mut groups = Vec::new();
        match self.copied {
            CopiedBlocks::Freeze => {
                cx.net.store().freeze(&sel);
            }
            CopiedBlocks::LrMult(m) => {
                groups.push(ParamGroup::new("copied", sel).with_lr_mult(m));
            }
        }
        Ok(Prepared {
            groups,
            copied_blocks,
            ..Prepared::copied(report)
        })
    }
}

impl FinetuneMethod for LayerTransfer {
    /// `layer_transfer_first_K` / `layer_transfer_last_K` (with `_lrX` when the copied
    /// blocks train at a multiplied rate).
    fn name(&self) -> String {
        let end = match self.end {
            BlockEnd::First => "first",
            BlockEnd::Last => "last",
        };
        match self.copied {
            CopiedBlocks::Freeze => format!("layer_transfer_{end}_{}", self.k),
            CopiedBlocks::LrMult(m) => format!("layer_transfer_{end}_{}_lr{m}", self.k),
        }
    }

    fn spec(&self) -> String {
        let end = match self.end {
            BlockEnd::First => "first",
            BlockEnd::Last => "last",
        };
        match self.copied {
            CopiedBlocks::Freeze => format!("layer-transfer:{end}:{}", self.k),
            CopiedBlocks::LrMult(m) => format!("layer-transfer:{end}:{}:lr={m}", self.k),
        }
    }

    fn prepare(&self, cx: &SetupCtx<'_>) -> Result<Prepared> {
        self.apply(cx)
    }
}
