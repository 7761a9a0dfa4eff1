//! Registration validation: raw registration metadata in, normalized metadata and typed
//! findings out.
//!
//! Everything here is pure: no network, no store, no clock. A registration that breaks a
//! rule is a normal result (findings), never an `Err`.

pub mod capabilities;
pub mod dcr;
pub mod findings;
pub mod json;
pub mod metadata;
pub mod names;
pub mod oidc;
pub mod profile;
pub mod software_statement;
pub mod uri;

#[cfg(test)]
pub(crate) mod tests;

pub use dcr::{Validation, validate_dcr};
pub use findings::{Code, Finding, Severity};
pub use metadata::ClientMetadata;
pub use profile::Profile;
