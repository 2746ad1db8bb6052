//! xfer-data: see the crate description. Built out by its own issue.
