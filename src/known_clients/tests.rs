use super::*;

const SHIPPED: &str = include_str!("../../policies/known-clients.toml");

fn shipped() -> Registry {
    Registry::parse(SHIPPED).unwrap_or_else(|problems| panic!("{problems:#?}"))
}

fn dcr<'a>(name: &'a str, redirects: &'a [String], grants: &'a [String]) -> Presented<'a> {
    Presented {
        client_id: None,
        client_name: Some(name),
        redirect_uris: redirects,
        grant_types: grants,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

#[test]
fn chatgpts_per_callback_pattern_takes_one_constrained_segment() {
    let registry = shipped();
    let chatgpt = registry.get("chatgpt").unwrap();
    for good in [
        "https://chatgpt.com/oauth/client.json",
        "https://chatgpt.com/oauth/abc_DEF-123/client.json",
    ] {
        assert!(chatgpt.is_cimd_client_id(good), "{good}");
    }
    let long = format!("https://chatgpt.com/oauth/{}/client.json", "a".repeat(65));
    for bad in [
        "https://chatgpt.com/oauth/../client.json",
        "https://chatgpt.com/oauth//client.json",
        "https://chatgpt.com/oauth/a/b/client.json",
        "https://chatgpt.com/oauth/a%2Fb/client.json",
        "https://chatgpt.com/oauth/a.b/client.json",
        "https://chatgpt.com/oauth/abc/client.json?x=1",
        "https://chatgpt.com.evil.example/oauth/abc/client.json",
        long.as_str(),
    ] {
        assert!(!chatgpt.is_cimd_client_id(bad), "{bad}");
    }
}

#[test]
fn a_port_placeholder_takes_digits_only() {
    let registry = shipped();
    let claude_code = registry.get("claude-code").unwrap();
    let grants = strings(&["authorization_code", "refresh_token"]);
    assert!(claude_code.has_dcr_signature(&strings(&["http://localhost:53682/callback"]), &grants));
    for bad in [
        "http://localhost:80@evil.example/callback",
        "http://localhost:/callback",
        "http://localhost:123456/callback",
        "http://localhost:1234/callback/extra",
    ] {
        assert!(
            !claude_code.has_dcr_signature(&strings(&[bad]), &grants),
            "{bad}"
        );
    }
}

#[test]
fn a_dcr_client_is_known_by_its_signature_and_its_name_together() {
    let registry = shipped();
    let cursor = strings(&["cursor://anysphere.cursor-mcp/oauth/callback"]);
    let grants = strings(&["authorization_code", "refresh_token"]);
    assert_eq!(
        registry.recognize(&dcr("Cursor", &cursor, &grants)),
        Recognition {
            known_client: Some("cursor".to_owned()),
            impersonates: None
        }
    );
    // A loopback callback anyone can use, under another name: not Codex, and no claim.
    let loopback = strings(&["http://127.0.0.1:50000/callback"]);
    assert_eq!(
        registry.recognize(&dcr("My Tool", &loopback, &grants)),
        Recognition::default()
    );
    // Loopback callbacks shared by several entries: the name picks.
    assert_eq!(
        registry
            .recognize(&dcr("Codex", &loopback, &grants))
            .known_client
            .as_deref(),
        Some("codex")
    );
    assert_eq!(
        registry
            .recognize(&dcr("Zed", &loopback, &grants))
            .known_client
            .as_deref(),
        Some("zed")
    );
}

#[test]
fn borrowing_a_known_clients_name_is_an_impersonation() {
    let registry = shipped();
    let grants = strings(&["authorization_code"]);
    let elsewhere = strings(&["https://attacker.example/callback"]);
    for name in [
        "Claude",
        "claude",
        "CLAUDE ",
        "Clаude",
        "Claude (official)",
        "ｃｌａｕｄｅ",
    ] {
        let recognition = registry.recognize(&dcr(name, &elsewhere, &grants));
        assert_eq!(
            recognition.impersonates.as_deref(),
            Some("claude-ai"),
            "{name}"
        );
        assert_eq!(recognition.known_client, None, "{name}");
    }
    // Cursor's signature on another client's name.
    let cursor = strings(&["cursor://anysphere.cursor-mcp/oauth/callback"]);
    assert_eq!(
        registry
            .recognize(&dcr("ChatGPT", &cursor, &grants))
            .impersonates
            .as_deref(),
        Some("chatgpt")
    );
    // Claude's callback path on another host.
    let moved = strings(&["https://claude.ai.evil.example/api/mcp/auth_callback"]);
    assert_eq!(
        registry
            .recognize(&dcr("Claude", &moved, &grants))
            .impersonates
            .as_deref(),
        Some("claude-ai")
    );
    // A name that merely starts like one is no claim.
    assert_eq!(
        registry.recognize(&dcr("Claudette Notes", &elsewhere, &grants)),
        Recognition::default()
    );
}

#[test]
fn a_cimd_client_is_known_by_its_url_and_a_document_elsewhere_by_its_name_is_not() {
    let registry = shipped();
    let none: Vec<String> = Vec::new();
    let presented = |client_id, name| Presented {
        client_id: Some(client_id),
        client_name: Some(name),
        redirect_uris: &none,
        grant_types: &none,
    };
    assert_eq!(
        registry
            .recognize(&presented(
                "https://chatgpt.com/oauth/codex/client.json",
                "Codex"
            ))
            .known_client
            .as_deref(),
        Some("codex"),
        "the more specific entry comes first"
    );
    assert_eq!(
        registry.recognize(&presented(
            "https://tools.example/client.json",
            "Claude Code"
        )),
        Recognition {
            known_client: None,
            impersonates: Some("claude-code".to_owned())
        }
    );
}

#[test]
fn a_broken_registry_is_refused_naming_each_entry() {
    let problems = Registry::parse(
        r#"
[[client]]
id = "Bad Id"
name = "X"
publisher = "P"
publisher_domain = "p.example"
cimd = ["http://p.example/c.json", "https://p.example/{seg"]
segments = { unused = "^a$" }
source = ""
checked = ""

[[client]]
id = "nothing"
name = "N"
publisher = "P"
publisher_domain = "p.example"
source = "s"
checked = "2026-01-01"
"#,
    )
    .unwrap_err();
    let all = problems.join("\n");
    for expected in [
        "client `Bad Id`: an id is lower-case",
        "CIMD URL `http://p.example/c.json` is not https",
        "a `{` without its `}`",
        "the segment rule `unused` is used by no URL",
        "every entry says its `source`",
        "client `nothing`: says neither `cimd` nor `dcr_redirect_uris`",
    ] {
        assert!(all.contains(expected), "{expected} in:\n{all}");
    }
    let unknown = Registry::parse("[[client]]\nid = \"x\"\nnmae = \"typo\"\n").unwrap_err();
    assert!(unknown[0].contains("nmae"), "{unknown:?}");
}

#[test]
fn a_pin_names_one_of_the_clients_urls_and_one_document_or_hash() {
    let entry = |pins: &str| {
        format!(
            r#"
[[client]]
id = "p"
name = "P"
publisher = "P"
publisher_domain = "p.example"
cimd = ["https://p.example/c.json"]
source = "s"
checked = "2026-01-01"
{pins}
"#
        )
    };
    let good = Registry::parse(&entry(
        "[[client.pin]]\nclient_id = \"https://p.example/c.json\"\ndocument = '{}'\n",
    ))
    .unwrap();
    assert_eq!(
        good.pin("https://p.example/c.json"),
        Some(&Pin::Document(b"{}".to_vec()))
    );
    assert_eq!(good.pin("https://p.example/other.json"), None);
    let problems = Registry::parse(&entry(
        "[[client.pin]]\nclient_id = \"https://elsewhere.example/c.json\"\nsha256 = \"ABC\"\n\n[[client.pin]]\nclient_id = \"https://p.example/c.json\"\n",
    ))
    .unwrap_err()
    .join("\n");
    for expected in [
        "`ABC` is not a lower-case hex SHA-256",
        "pin `https://elsewhere.example/c.json` is none of the client's CIMD URLs",
        "give its `document` or its `sha256`, one of them",
    ] {
        assert!(problems.contains(expected), "{expected} in:\n{problems}");
    }
}
