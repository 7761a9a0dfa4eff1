//! Errors of loading a policy directory, each placed at `file:line:column` when known.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    pub message: String,
}

impl LoadError {
    pub fn at(file: &Path, line: usize, column: usize, message: impl Into<String>) -> LoadError {
        LoadError {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    pub fn at_line(file: &Path, line: usize, message: impl Into<String>) -> LoadError {
        LoadError::at(file, line, 0, message)
    }

    pub fn plain(file: &Path, message: impl Into<String>) -> LoadError {
        LoadError::at(file, 0, 0, message)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading, so an operator fixes them in one pass.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// An annotation that loads but could never work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error(
        "policy `{policy}`: step-up challenge `{challenge}` is not one clientgate knows \
         ({known}); attested kinds are set by `step_up.attested_challenges`"
    )]
    UnknownChallenge {
        policy: String,
        challenge: String,
        known: String,
    },
    #[error(
        "policy `{policy}`: obligation `{obligation}` is not one your authorization server \
         honours ({known}); add it to `policy.obligations` once it does"
    )]
    UnknownObligation {
        policy: String,
        obligation: String,
        known: String,
    },
    #[error(
        "policy `{policy}`: `@error(\"{value}\")` is not an OAuth error code clientgate \
         returns (one of {known})"
    )]
    UnknownErrorCode {
        policy: String,
        value: String,
        known: String,
    },
    #[error(
        "policy `{policy}`: step-up challenge `{challenge}` must be a lowercase identifier \
         such as `admin_approval`"
    )]
    ChallengeNotAnIdentifier { policy: String, challenge: String },
    #[error(
        "policy `{policy}`: `@step_up` belongs on a forbid; a permit cannot hold a \
         registration back"
    )]
    StepUpOnPermit { policy: String },
    #[error("policy `{policy}`: `@error` belongs on a forbid; a permit never denies")]
    ErrorOnPermit { policy: String },
    #[error("policy `{policy}`: `@obligation` belongs on a permit; a forbid never approves")]
    ObligationOnForbid { policy: String },
}
