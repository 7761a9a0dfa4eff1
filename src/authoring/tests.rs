//! The policy author's tools as tables of cases: the suite format, the comparison of an
//! expectation with a decision, the stubs, and offline decisions with the starter pack.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::offline::{OfflineCase, OfflineRegistration, StubError, Stubs, decide_offline};
use super::suite::{Suite, SuiteError, junit_xml, offline_case, parse_suite, run_suite};
use crate::engine::{EngineSettings, test_settings};
use crate::policy::{PolicyBundle, load_policy_dir};
use crate::vocab::{Caller, Decision};

fn starter() -> PolicyBundle {
    load_policy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}

fn no_files(path: &Path) -> std::io::Result<Vec<u8>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no file `{}` in this test", path.display()),
    ))
}

fn now() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn suite(text: &str) -> Suite {
    parse_suite(text).unwrap_or_else(|error| panic!("{error}\n{text}"))
}

/// Runs the one case of `text` with the starter pack; its failure lines.
fn failures(text: &str) -> Vec<String> {
    let results = run_suite(
        "t.toml",
        &suite(text),
        &starter(),
        &test_settings(),
        &no_files,
        now(),
    );
    assert_eq!(results.len(), 1);
    results.into_iter().next().unwrap().failures
}

const WEB: &str = r#"dcr = { client_name = "Web", client_uri = "https://app.example.com", redirect_uris = ["https://app.example.com/cb"] }"#;
const CROSS: &str = r#"dcr = { client_name = "Borrowed", client_uri = "https://famous.example", redirect_uris = ["https://elsewhere.example.net/cb"] }"#;

#[test]
fn the_suite_format_refuses_what_would_pass_silently() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "a misspelt expectation",
            "[[case]]\nname = \"x\"\ndcr = {}\nexpect = { decison = \"deny\" }\n",
            "unknown field `decison`",
        ),
        (
            "a misspelt case key",
            "[[case]]\nname = \"x\"\ndcr = {}\nrate = {}\nexpect = { decision = \"deny\" }\n",
            "unknown field `rate`",
        ),
        (
            "a case without a name",
            "[[case]]\ndcr = {}\nexpect = { decision = \"deny\" }\n",
            "missing field `name`",
        ),
        (
            "an unknown decision",
            "[[case]]\nname = \"x\"\ndcr = {}\nexpect = { decision = \"maybe\" }\n",
            "unknown variant `maybe`",
        ),
        (
            "a bad IP address",
            "[[case]]\nname = \"x\"\nip = \"300.1.1.1\"\ndcr = {}\nexpect = { decision = \"deny\" }\n",
            "invalid IP address",
        ),
    ];
    for (name, text, says) in cases {
        let error = parse_suite(text).expect_err(name);
        assert!(matches!(error, SuiteError::Toml(_)), "{name}");
        assert!(error.to_string().contains(says), "{name}: {error}");
    }
    let parsed = suite("[[case]]\nname = \"x\"\ndcr = {}\nexpect = { decision = \"deny\" }\n");
    assert_eq!(parsed.cases[0].tenant, "default", "the tenant defaults");
    assert!(suite("").cases.is_empty());
}

#[test]
fn a_case_names_exactly_one_registration_and_one_document() {
    let header = "[[case]]\nname = \"x\"\nexpect = { decision = \"deny\" }\n";
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("dcr", "dcr = {}", None),
        ("dcr_json", "dcr_json = \"{\"", None),
        (
            "nothing",
            "",
            Some("exactly one of `dcr`, `dcr_json`, `cimd`"),
        ),
        (
            "dcr and cimd",
            "dcr = {}\ncimd = \"https://a.example/c.json\"",
            Some("exactly one of `dcr`, `dcr_json`, `cimd`"),
        ),
        (
            "cimd without a document",
            "cimd = \"https://a.example/c.json\"",
            Some("exactly one of `document`, `document_json`, `document_file`"),
        ),
        (
            "cimd with two documents",
            "cimd = \"https://a.example/c.json\"\ndocument = {}\ndocument_json = \"{}\"",
            Some("exactly one of `document`, `document_json`, `document_file`"),
        ),
        (
            "a document file that is not there",
            "cimd = \"https://a.example/c.json\"\ndocument_file = \"missing.json\"",
            Some("cannot read `missing.json`"),
        ),
    ];
    for (name, keys, problem) in cases {
        // Keys before `expect`: TOML puts what follows a table's last line in it.
        let text = header.replacen("expect", &format!("{keys}\nexpect"), 1);
        let parsed = suite(&text);
        match (offline_case(&parsed.cases[0], &no_files), problem) {
            (Ok(_), None) => {}
            (Err(error), Some(says)) => {
                assert!(error.to_string().contains(says), "{name}: {error}")
            }
            (Ok(_), Some(says)) => panic!("{name}: accepted, expected `{says}`"),
            (Err(error), None) => panic!("{name}: refused: {error}"),
        }
    }
}

#[test]
fn comparing_an_expectation_with_the_decision() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "the decision and its reasons match",
            r#"expect = { decision = "approve", reasons = ["approve_https_or_loopback_redirects", "approve_dcr_clients_with_consent"], obligations = ["require_consent"] }"#,
            &[],
        ),
        (
            "another decision says what was decided instead and why",
            r#"expect = { decision = "deny" }"#,
            &[
                "decision: expected deny, got approve (reasons: approve_https_or_loopback_redirects, approve_dcr_clients_with_consent)",
            ],
        ),
        (
            "reasons are compared as a set, exactly",
            r#"expect = { decision = "approve", reasons = ["approve_https_or_loopback_redirects", "other"] }"#,
            &[
                "reasons: expected [approve_https_or_loopback_redirects, other], got [approve_dcr_clients_with_consent, approve_https_or_loopback_redirects]",
            ],
        ),
        (
            "an expected error that is not there",
            r#"expect = { decision = "approve", error = "invalid_client_metadata" }"#,
            &["error: expected invalid_client_metadata, got none"],
        ),
        (
            "an expected finding that is not there",
            r#"expect = { decision = "approve", findings = ["redirect_uri_not_https"] }"#,
            &["findings: expected `redirect_uri_not_https` among [application_type_missing]"],
        ),
    ];
    for (name, expect, wanted) in cases {
        let got = failures(&format!("[[case]]\nname = \"x\"\n{WEB}\n{expect}\n"));
        assert_eq!(&got, wanted, "{name}");
    }
    let stepped = failures(&format!(
        "[[case]]\nname = \"x\"\n{CROSS}\nexpect = {{ decision = \"step_up\", challenges = [\"user_consent\"] }}\n"
    ));
    assert_eq!(
        stepped,
        ["challenges: expected [user_consent], got [admin_approval]"]
    );
}

#[test]
fn a_malformed_case_fails_with_its_problem_instead_of_passing() {
    let got = failures("[[case]]\nname = \"x\"\nexpect = { decision = \"deny\" }\n");
    assert_eq!(
        got,
        ["the case is malformed: give exactly one of `dcr`, `dcr_json`, `cimd`"]
    );
    let stubbed = failures(&format!(
        "[[case]]\nname = \"x\"\n{WEB}\nrates = {{ ip = {{ \"2h\" = 1 }} }}\nexpect = {{ decision = \"approve\" }}\n"
    ));
    assert_eq!(stubbed.len(), 1);
    assert!(
        stubbed[0].contains("unknown rate window `2h`"),
        "{stubbed:?}"
    );
}

#[test]
fn stubs_naming_what_the_configuration_lacks_are_refused() {
    let settings = test_settings();
    let stub = |dimension: &str, window: &str| Stubs {
        rates: [(dimension.to_owned(), [(window.to_owned(), 1)].into())].into(),
        ..Stubs::default()
    };
    assert_eq!(stub("ip", "1h").check(&settings), Ok(()));
    assert_eq!(
        stub("ipv4", "1h").check(&settings),
        Err(StubError::UnknownDimension("ipv4".to_owned()))
    );
    assert_eq!(
        stub("ip", "2h").check(&settings),
        Err(StubError::UnknownWindow {
            window: "2h".to_owned(),
            known: "1m, 1h, 24h".to_owned()
        })
    );
}

fn dcr_case(metadata_json: &str, stubs: Stubs) -> OfflineCase {
    OfflineCase {
        tenant: "default".to_owned(),
        caller: Caller {
            ip: Some("203.0.113.7".parse().unwrap()),
            ..Caller::default()
        },
        registration: OfflineRegistration::Dcr {
            metadata_json: metadata_json.to_owned(),
            initial_access_token: false,
        },
        stubs,
        explain: false,
    }
}

const WEB_JSON: &str = r#"{"client_name":"Web","client_uri":"https://app.example.com","redirect_uris":["https://app.example.com/cb"]}"#;
const CROSS_JSON: &str = r#"{"client_name":"Borrowed","client_uri":"https://famous.example","redirect_uris":["https://elsewhere.example.net/cb"]}"#;

fn decide(settings: &EngineSettings, metadata_json: &str, stubs: Stubs) -> Decision {
    decide_offline(&starter(), settings, &dcr_case(metadata_json, stubs), now())
        .unwrap()
        .decision
}

#[test]
fn offline_decisions_use_the_stubs_where_the_store_would_answer() {
    let settings = test_settings();
    let flood = Stubs {
        rates: [("ip".to_owned(), [("1h".to_owned(), 20)].into())].into(),
        ..Stubs::default()
    };
    let cases: &[(&str, &str, Stubs, Decision)] = &[
        (
            "nothing stubbed",
            WEB_JSON,
            Stubs::default(),
            Decision::Approve,
        ),
        (
            "twenty earlier registrations from the IP",
            WEB_JSON,
            flood,
            Decision::Deny,
        ),
        (
            "a cross-domain redirect",
            CROSS_JSON,
            Stubs::default(),
            Decision::StepUp,
        ),
        (
            "a cross-domain redirect an operator approved",
            CROSS_JSON,
            Stubs {
                completed_challenges: vec!["admin_approval".to_owned()],
                ..Stubs::default()
            },
            Decision::Approve,
        ),
        (
            "a cross-domain redirect with only an attested challenge",
            CROSS_JSON,
            Stubs {
                completed_challenges: vec!["user_consent".to_owned()],
                ..Stubs::default()
            },
            Decision::StepUp,
        ),
    ];
    for (name, metadata_json, stubs, decision) in cases {
        assert_eq!(
            decide(&settings, metadata_json, stubs.clone()),
            *decision,
            "{name}"
        );
    }
}

#[test]
fn an_operator_approval_stub_works_even_with_tickets_that_expire_at_once() {
    let settings = EngineSettings {
        step_up_ttl: Duration::ZERO,
        ..test_settings()
    };
    let approved = Stubs {
        completed_challenges: vec!["admin_approval".to_owned()],
        ..Stubs::default()
    };
    assert_eq!(decide(&settings, CROSS_JSON, approved), Decision::Approve);
}

#[test]
fn junit_xml_has_one_testsuite_per_file_and_escapes_names() {
    let results = run_suite(
        "a&b.toml",
        &suite(&format!(
            "[[case]]\nname = \"<web>\"\n{WEB}\nexpect = {{ decision = \"deny\" }}\n"
        )),
        &starter(),
        &test_settings(),
        &no_files,
        now(),
    );
    let xml = junit_xml(&results);
    assert!(xml.contains("tests=\"1\" failures=\"1\""), "{xml}");
    assert!(xml.contains("<testsuite name=\"a&amp;b.toml\""), "{xml}");
    assert!(xml.contains("<testcase name=\"&lt;web&gt;\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"decision: expected deny, got approve"),
        "{xml}"
    );
}
