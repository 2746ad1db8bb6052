//! Output closeness to the frozen source model (Hinton et al. 2015; LwF: Li & Hoiem 2016):
//! `CE + λ T² KL(softmax(z_src/T) ‖ softmax(z/T))` on the target training inputs.
//!
//! The source (teacher) model is frozen; its logits on the target training inputs are
//! computed once, in evaluation mode. The method compares class distributions, so it needs a
//! source head for the target's classes.

use xfer_losses::DistillationLoss;
use xfer_models::Selection;

use super::{Entry, FinetuneMethod, Method, Prepared, SetupCtx, bad_settings, numbers};
use crate::Result;
use crate::methods::finetune::objective::Regulariser;
use crate::methods::finetune::pretrain::Pretrained;

/// Fine-tuning with output closeness to the frozen source model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distill {
    /// `λ`.
    pub weight: f64,
    /// `T`.
    pub temperature: f64,
}

impl Default for Distill {
    /// `λ = 1`, `T = 2`.
    fn default() -> Self {
        Self {
            weight: 1.0,
            temperature: 2.0,
        }
    }
}

/// `distill[:LAMBDA[,T]]`.
pub const ENTRY: Entry = Entry {
    names: &["distill"],
    syntax: "distill[:LAMBDA[,T]]",
    parse: |rest| {
        let mut m = Distill::default();
        if let Some(r) = rest {
            let v = numbers(r, 2)?;
            m.weight = v.first().copied().unwrap_or(1.0);
            m.temperature = v.get(1).copied().unwrap_or(2.0);
            if m.temperature <= 0.0 {
                return Err(bad_settings("the temperature must be > 0"));
            }
        }
        Ok(Method::new(m))
    },
    all: |_| vec![Method::new(Distill::default())],
};

impl FinetuneMethod for Distill {
    fn name(&self) -> String {
        "distill".into()
    }

    fn spec(&self) -> String {
        format!("distill:{},{}", self.weight, self.temperature)
    }

    fn starts_as_source_model(&self) -> bool {
        true
    }

    fn unsupported(&self, pretrained: Option<&Pretrained>, num_classes: usize) -> Option<String> {
        let p = pretrained.filter(|p| p.needs_new_head(num_classes))?;
        let why = if p.has_head {
            format!("the source has {} classes", p.num_classes)
        } else {
            format!("the pretrained backbone {} has no source head", p.backbone)
        };
        Some(format!(
            "distillation compares class distributions: {why}, the target {num_classes}"
        ))
    }

    fn prepare(&self, cx: &SetupCtx<'_>) -> Result<Prepared> {
        let p = cx.source()?;
        // The frozen source model's logits on the target training inputs.
        let teacher = p.instantiate(cx.init_seed, cx.device())?;
        teacher.store().freeze(&Selection::All);
        let teacher_logits = cx.target_train_logits(&teacher)?;
        let transfer = cx.copy_all()?;
        Ok(Prepared {
            regulariser: Regulariser::Distill {
                teacher_logits,
                loss: DistillationLoss::kl(self.weight, self.temperature)?,
            },
            ..Prepared::copied(transfer)
        })
    }
}
