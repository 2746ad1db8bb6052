//! The fine-tuning methods and their parsing.

use std::fmt;

use super::{L2SP_ALPHA, L2SP_BETA};
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

/// A fine-tuning method (see the module documentation for the objectives).
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Train on the target only, from a random start (the baseline).
    Scratch,
    /// Start from the source weights, train everything on the target.
    Finetune,
    /// Fine-tuning with the L2-SP penalty toward the source weights.
    L2Sp {
        /// `α`, pretrained weights.
        alpha: f64,
        /// `β`, new layers.
        beta: f64,
    },
    /// Fine-tuning with output closeness to the frozen source model.
    Distill {
        /// `λ`.
        weight: f64,
        /// `T`.
        temperature: f64,
    },
    /// Copy some blocks, freeze them or train them slowly, re-initialise the rest.
    LayerTransfer(LayerTransfer),
    /// A new head trained on the frozen source network (every block but the last copied and
    /// frozen): the "linear classifier on frozen features" baseline.
    LinearProbe,
}

impl Method {
    /// Whether the method starts from a pretrained source model.
    pub fn needs_source(&self) -> bool {
        !matches!(self, Method::Scratch)
    }

    /// The run name used in reports and `--json` output: `scratch`, `finetune`, `l2sp`,
    /// `distill`, `layer_transfer` (first `K`, frozen, as `layer-transfer:K` asks), or
    /// `layer_transfer_first_K` / `layer_transfer_last_K` (with `_lrX` when the copied
    /// blocks train at a multiplied rate).
    pub fn name(&self) -> String {
        match self {
            Method::Scratch => "scratch".into(),
            Method::Finetune => "finetune".into(),
            Method::L2Sp { .. } => "l2sp".into(),
            Method::Distill { .. } => "distill".into(),
            Method::LinearProbe => "linear_probe".into(),
            Method::LayerTransfer(lt) => {
                let end = match lt.end {
                    BlockEnd::First => "first",
                    BlockEnd::Last => "last",
                };
                match lt.copied {
                    CopiedBlocks::Freeze => format!("layer_transfer_{end}_{}", lt.k),
                    CopiedBlocks::LrMult(m) => format!("layer_transfer_{end}_{}_lr{m}", lt.k),
                }
            }
        }
    }

    /// Parses one method: `scratch`, `finetune`, `l2sp[:ALPHA[,BETA]]`,
    /// `distill[:LAMBDA[,T]]`, `layer-transfer:[first:|last:]K[:lr=X]` (first `K` and frozen
    /// by default).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            TrainError::invalid(
                "method",
                format!("{s:?}"),
                format!(
                    "scratch, finetune, l2sp[:ALPHA[,BETA]], distill[:LAMBDA[,T]], linear or \
                     layer-transfer:[first:|last:]K[:lr=X] (here: {why})"
                ),
            )
        };
        let nums = |rest: &str, n: usize| -> Result<Vec<f64>> {
            let v: Option<Vec<f64>> = rest
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                })
                .collect();
            match v {
                Some(v) if !v.is_empty() && v.len() <= n => Ok(v),
                _ => Err(bad("bad numbers")),
            }
        };
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        match (head.replace('_', "-").as_str(), rest) {
            ("scratch", None) => Ok(Method::Scratch),
            ("linear" | "linear-probe", None) => Ok(Method::LinearProbe),
            ("finetune" | "fine-tune", None) => Ok(Method::Finetune),
            ("l2sp" | "l2-sp", None) => Ok(Method::L2Sp {
                alpha: L2SP_ALPHA,
                beta: L2SP_BETA,
            }),
            ("l2sp" | "l2-sp", Some(r)) => {
                let v = nums(r, 2)?;
                Ok(Method::L2Sp {
                    alpha: v.first().copied().unwrap_or(L2SP_ALPHA),
                    beta: v.get(1).copied().unwrap_or(L2SP_BETA),
                })
            }
            ("distill", None) => Ok(Method::Distill {
                weight: 1.0,
                temperature: 2.0,
            }),
            ("distill", Some(r)) => {
                let v = nums(r, 2)?;
                let temperature = v.get(1).copied().unwrap_or(2.0);
                if temperature <= 0.0 {
                    return Err(bad("the temperature must be > 0"));
                }
                Ok(Method::Distill {
                    weight: v.first().copied().unwrap_or(1.0),
                    temperature,
                })
            }
            ("layer-transfer", Some(r)) => {
                let mut end = BlockEnd::First;
                let mut k = None;
                let mut copied = CopiedBlocks::Freeze;
                for part in r.split(':') {
                    match part {
                        "first" => end = BlockEnd::First,
                        "last" => end = BlockEnd::Last,
                        "freeze" => copied = CopiedBlocks::Freeze,
                        p if p.starts_with("lr=") => {
                            let m = p
                                .get(3..)
                                .and_then(|m| m.parse::<f64>().ok())
                                .filter(|m| m.is_finite() && *m >= 0.0)
                                .ok_or_else(|| bad("lr= needs a number ≥ 0"))?;
                            copied = CopiedBlocks::LrMult(m);
                        }
                        p => k = Some(p.parse::<usize>().map_err(|_| bad("K must be a number"))?),
                    }
                }
                let k = k.ok_or_else(|| bad("layer-transfer needs K"))?;
                Ok(Method::LayerTransfer(LayerTransfer { end, k, copied }))
            }
            _ => Err(bad("unknown method")),
        }
    }

    /// Parses a comma-separated list (or `all`: scratch, finetune, l2sp, distill, and layer
    /// transfer of the first and of the last `K` blocks, frozen, for `K = 1 .. num_blocks−1`).
    /// Commas inside `l2sp:A,B` / `distill:L,T` belong to the method.
    pub fn parse_list(s: &str, num_blocks: usize) -> Result<Vec<Method>> {
        if s.trim() == "all" {
            let mut v = vec![
                Method::Scratch,
                Method::Finetune,
                Method::L2Sp {
                    alpha: L2SP_ALPHA,
                    beta: L2SP_BETA,
                },
                Method::Distill {
                    weight: 1.0,
                    temperature: 2.0,
                },
            ];
            for end in [BlockEnd::First, BlockEnd::Last] {
                for k in 1..num_blocks {
                    v.push(Method::LayerTransfer(LayerTransfer {
                        end,
                        k,
                        copied: CopiedBlocks::Freeze,
                    }));
                }
            }
            return Ok(v);
        }
        // Split on commas that start a new method (the next token begins with a letter).
        let mut items: Vec<String> = Vec::new();
        for tok in s.split(',') {
            let t = tok.trim();
            let starts_method = t.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            match items.last_mut() {
                Some(last) if !starts_method => {
                    last.push(',');
                    last.push_str(t);
                }
                _ => items.push(t.to_string()),
            }
        }
        let methods: Vec<Method> = items
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| Method::parse(t))
            .collect::<Result<_>>()?;
        if methods.is_empty() {
            return Err(TrainError::invalid(
                "methods",
                format!("{s:?}"),
                "at least one method (no method given)",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &methods {
            if !seen.insert(m.name()) {
                return Err(TrainError::invalid(
                    "methods",
                    format!("{s:?}"),
                    format!("each method at most once (method {} given twice)", m.name()),
                ));
            }
        }
        Ok(methods)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = TrainError;

    /// [`Method::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Method::parse(s)
    }
}
