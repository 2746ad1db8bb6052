//! Scratch, the baseline: the target network trained on the target only, from a random start
//! (with the scratch stage, [`FinetuneConfig::scratch`]).

use super::{Entry, FinetuneMethod, Method, Prepared, SetupCtx, no_settings};
use crate::Result;
use crate::methods::finetune::FinetuneConfig;
use crate::run::Stage;

/// Train on the target only, from a random start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scratch;

/// `scratch`.
pub const ENTRY: Entry = Entry {
    names: &["scratch"],
    syntax: "scratch",
    parse: |rest| {
        no_settings(rest)?;
        Ok(Method::new(Scratch))
    },
    all: |_| vec![Method::new(Scratch)],
};

impl FinetuneMethod for Scratch {
    fn name(&self) -> String {
        "scratch".into()
    }

    fn spec(&self) -> String {
        self.name()
    }

    fn needs_source(&self) -> bool {
        false
    }

    fn stage<'a>(&self, cfg: &'a FinetuneConfig) -> &'a Stage {
        &cfg.scratch
    }

    fn prepare(&self, _cx: &SetupCtx<'_>) -> Result<Prepared> {
        Ok(Prepared::plain())
    }
}
