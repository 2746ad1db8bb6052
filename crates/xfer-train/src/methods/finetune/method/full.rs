//! Full fine-tuning: start from the source weights, train every parameter on the target.

use super::{Entry, FinetuneMethod, Method, Prepared, SetupCtx, no_settings};
use crate::Result;

/// Start from the source weights, train everything on the target with plain cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FullFinetune;

/// `finetune` (or `fine-tune`).
pub const ENTRY: Entry = Entry {
    names: &["finetune", "fine-tune"],
    syntax: "finetune",
    parse: |rest| {
        no_settings(rest)?;
        Ok(Method::new(FullFinetune))
    },
    all: |_| vec![Method::new(FullFinetune)],
};

impl FinetuneMethod for FullFinetune {
    fn name(&self) -> String {
        "finetune".into()
    }

    fn spec(&self) -> String {
        self.name()
    }

    fn starts_as_source_model(&self) -> bool {
        true
    }

    fn prepare(&self, cx: &SetupCtx<'_>) -> Result<Prepared> {
        Ok(Prepared::copied(cx.copy_all()?))
    }
}
