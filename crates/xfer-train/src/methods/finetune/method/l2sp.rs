//! L2-SP (Li, Grandvalet & Davoine, ICML 2018): fine-tuning with a pull toward the source
//! weights, `CE + α/2 Σ_pre ‖w − w⁰‖² + β/2 Σ_new ‖w‖²`.
//!
//! `w⁰` is a frozen deep copy of the source weights of the layers the target keeps
//! ([`xfer_ops::ParamSnapshot`]); a new head (a target with other classes) is a new layer and
//! gets the `β` term. Weights only, no biases, as in the paper.

use xfer_losses::L2Sp;
use xfer_ops::ParamSnapshot;

use super::{Entry, FinetuneMethod, Method, Prepared, SetupCtx, numbers};
use crate::Result;
use crate::methods::finetune::objective::Regulariser;
use crate::methods::finetune::{L2SP_ALPHA, L2SP_BETA};

/// Fine-tuning with the L2-SP penalty toward the source weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct L2SpFinetune {
    /// `α`, pretrained weights.
    pub alpha: f64,
    /// `β`, new layers.
    pub beta: f64,
}

impl Default for L2SpFinetune {
    /// The paper's `α = 0.1`, `β = 0.01`.
    fn default() -> Self {
        Self {
            alpha: L2SP_ALPHA,
            beta: L2SP_BETA,
        }
    }
}

/// `l2sp[:ALPHA[,BETA]]` (or `l2-sp`).
pub const ENTRY: Entry = Entry {
    names: &["l2sp", "l2-sp"],
    syntax: "l2sp[:ALPHA[,BETA]]",
    parse: |rest| {
        let mut m = L2SpFinetune::default();
        if let Some(r) = rest {
            let v = numbers(r, 2)?;
            m.alpha = v.first().copied().unwrap_or(L2SP_ALPHA);
            m.beta = v.get(1).copied().unwrap_or(L2SP_BETA);
        }
        Ok(Method::new(m))
    },
    all: |_| vec![Method::new(L2SpFinetune::default())],
};

impl FinetuneMethod for L2SpFinetune {
    fn name(&self) -> String {
        "l2sp".into()
    }

    fn spec(&self) -> String {
        format!("l2sp:{},{}", self.alpha, self.beta)
    }

    fn starts_as_source_model(&self) -> bool {
        true
    }

    fn prepare(&self, cx: &SetupCtx<'_>) -> Result<Prepared> {
        let p = cx.source()?;
        let transfer = cx.copy_all()?;
        // w⁰: the source weights of the layers the target kept (a new head is "new").
        let head = cx.head_selection()?;
        let store = cx.net.store();
        let anchor = ParamSnapshot::capture(
            p.weights
                .iter()
                .filter(|(n, _)| store.contains(n) && !(cx.new_head && head.matches(n)))
                .map(|(n, t)| (n.as_str(), t)),
        )?;
        Ok(Prepared {
            regulariser: Regulariser::L2Sp(L2Sp::new(anchor, self.alpha, self.beta)?),
            ..Prepared::copied(transfer)
        })
    }
}
