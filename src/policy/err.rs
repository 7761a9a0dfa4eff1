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
