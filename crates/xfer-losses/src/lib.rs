//! xfer-losses: see the crate description. Built out by its own issue.
