//! Load errors and warnings printed the way compilers print them: the position, the
//! message, the offending line and a caret under the column.

use crate::policy::LoadError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnosticLevel {
    Error,
    Warning,
}

/// `error: file:line:col: message`, then the line of `source` with a caret when the
/// position is known.
pub fn render(level: DiagnosticLevel, problem: &LoadError, source: Option<&str>) -> String {
    let label = match level {
        DiagnosticLevel::Error => "error",
        DiagnosticLevel::Warning => "warning",
    };
    let mut text = format!("{label}: {problem}\n");
    let line = source
        .filter(|_| problem.line > 0)
        .and_then(|source| source.lines().nth(problem.line - 1));
    if let Some(line) = line {
        let number = problem.line.to_string();
        let gutter = " ".repeat(number.len());
        text.push_str(&format!("{gutter} |\n{number} | {line}\n"));
        if problem.column > 0 {
            // Tabs stay tabs so that the caret lines up in a terminal.
            let pad: String = line
                .chars()
                .take(problem.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            text.push_str(&format!("{gutter} | {pad}^\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_caret_sits_under_the_column() {
        let problem = LoadError::at(Path::new("p/20-deny.cedar"), 2, 7, "unexpected token");
        let source = "permit (principal, action, resource)\nwhen { oops };\n";
        assert_eq!(
            render(DiagnosticLevel::Error, &problem, Some(source)),
            "error: p/20-deny.cedar:2:7: unexpected token\n  |\n2 | when { oops };\n  |       ^\n"
        );
    }

    #[test]
    fn a_problem_without_a_position_is_one_line() {
        let problem = LoadError::plain(
            Path::new("p/entities.json"),
            "must declare the default tenant",
        );
        assert_eq!(
            render(DiagnosticLevel::Warning, &problem, Some("[]")),
            "warning: p/entities.json: must declare the default tenant\n"
        );
    }
}
