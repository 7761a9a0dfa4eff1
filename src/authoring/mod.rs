//! The policy author's tools, as pure functions the command line drives: load diagnostics
//! with their source line (`clientgate check`), deciding one registration offline
//! (`clientgate eval`), and policy test suites (`clientgate test`).

pub mod bench;
pub mod diagnostic;
pub mod offline;
pub mod suite;

#[cfg(test)]
mod tests;
