//! The rule a finding names can be looked up: `docs/registration-rules.md` ships the
//! numbered checklist, and every rule number of a finding code is one of its rows.

use clientgate::registration::Code;

const RULES: &str = include_str!("../docs/registration-rules.md");

/// The numbers of the checklist's rows (`| 49 | MUST | … |`).
fn rows() -> Vec<String> {
    RULES
        .lines()
        .filter_map(|line| {
            let number = line.strip_prefix("| ")?.split(" |").next()?;
            number
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| number.to_owned())
        })
        .filter(|number| !number.is_empty())
        .collect()
}

#[test]
fn every_rule_a_finding_names_is_a_row_of_the_shipped_checklist() {
    let rows = rows();
    assert!(
        rows.len() > 80,
        "the checklist has its rows: {}",
        rows.len()
    );
    let missing: Vec<String> = Code::ALL
        .iter()
        .filter(|code| !code.rule().is_empty())
        .filter(|code| !rows.iter().any(|row| row == code.rule()))
        .map(|code| format!("{} (rule {})", code.as_str(), code.rule()))
        .collect();
    assert!(
        missing.is_empty(),
        "rules not in docs/registration-rules.md: {missing:?}"
    );
}
