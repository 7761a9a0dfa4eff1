//! The console's pages as HTML, from what the store and the reloader say: pure functions,
//! every value escaped. No script; one stylesheet (`/console/style.css`).

use std::fmt::Write as _;

use crate::registration::Finding;
use crate::step_up::{StepUpTicket, TicketState};
use crate::store::{DecisionRecord, Disagreement};
use crate::vocab::{Decision, Reason};

pub const STYLE: &str = r#"
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header .who{margin-left:auto;opacity:.8}
header form{margin:0}main{padding:1em 1.4em;max-width:80em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e1e4e8;padding:.4em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}.foreign{background:#ffe1e1;color:#8a0000;font-weight:600;padding:0 .3em;border-radius:3px}
.approve{color:#116329}.deny{color:#a40e26}.step_up{color:#8a5a00}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em;background:#fff;padding:1em}
dl.meta dt{font-weight:600}dl.meta dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
.box{background:#fff;padding:1em;margin:1em 0;border:1px solid #e1e4e8}
.error{background:#ffe1e1;padding:.6em;border:1px solid #d88}code{font-family:ui-monospace,monospace}
button{padding:.35em .9em;font:inherit;cursor:pointer}textarea{width:100%;font:inherit}
form.filters{display:flex;flex-wrap:wrap;gap:.6em;margin-bottom:1em}form.filters label{display:flex;flex-direction:column;font-size:.85em}
"#;

/// `text` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The signed-in frame around `body`.
pub fn layout(title: &str, identity: &str, csrf: &str, body: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} · clientgate</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="stylesheet" href="/console/style.css"></head>
<body><header><strong>clientgate</strong><a href="/console/pending">Pending approvals</a><a href="/console/decisions">Decisions</a><a href="/console/policies">Policies</a>
<span class="who">signed in as <strong id="identity">{identity}</strong></span>
<form method="post" action="/console/sign-out"><input type="hidden" name="csrf" value="{csrf}"><button id="sign-out">Sign out</button></form></header>
<main><h1>{title}</h1>{body}</main></body></html>"#,
        title = esc(title),
        identity = esc(identity),
        csrf = esc(csrf),
    )
}

/// The sign-in page: a token field, and a certificate button when the connection
/// presented one.
pub fn sign_in(csrf: &str, problem: Option<&str>, certificate: bool) -> String {
    let problem = problem
        .map(|problem| format!(r#"<p class="error" id="problem">{}</p>"#, esc(problem)))
        .unwrap_or_default();
    let certificate = if certificate {
        format!(
            r#"<form method="post" action="/console/sign-in" class="box"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="certificate" value="1"><button id="certificate-sign-in">Sign in with your client certificate</button></form>"#,
            esc(csrf)
        )
    } else {
        String::new()
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in · clientgate</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="stylesheet" href="/console/style.css"></head>
<body><header><strong>clientgate</strong></header><main><h1>Sign in</h1>{problem}
<form method="post" action="/console/sign-in" class="box"><input type="hidden" name="csrf" value="{csrf}">
<label>Operator token<br><input type="password" name="token" id="token" size="60" autocomplete="off" autofocus></label>
<p><button id="sign-in">Sign in</button></p></form>{certificate}
<p>A token with the <code>operator</code> role (<code>clientgate token new --name NAME --role operator</code>), or a client certificate of an <code>[[auth.clients]]</code> subject with it.</p></main></body></html>"#,
        csrf = esc(csrf),
    )
}

/// A pending ticket as the list shows it.
pub struct PendingRow<'a> {
    pub ticket: &'a StepUpTicket,
    /// The registrable domain the client says it is from (client_id, else client_uri).
    pub client_domain: Option<String>,
    /// Decisions of the same fingerprint (capped, `+` when over).
    pub same_fingerprint: String,
    pub now_ms: u64,
}

pub fn pending(rows: &[PendingRow<'_>]) -> String {
    if rows.is_empty() {
        return r#"<p id="none-pending">Nothing is waiting for approval.</p>"#.to_owned();
    }
    let mut out = String::from(
        r#"<table id="pending"><tr><th>Client</th><th>How</th><th>client_id host</th><th>Redirect URI hosts</th><th>Why</th><th>Same fingerprint</th><th>Age</th><th>Expires in</th></tr>"#,
    );
    for row in rows {
        let ticket = row.ticket;
        let _ = write!(
            out,
            r#"<tr class="ticket"><td><a href="/console/tickets/{id}">{name}</a><br><small>{tenant}</small></td><td>{how}</td><td>{host}</td><td>{hosts}</td><td>{why}</td><td>{same}</td><td>{age}</td><td>{expires}</td></tr>"#,
            id = esc(&ticket.ticket_id),
            name = esc(ticket.client_name.as_deref().unwrap_or("(no client_name)")),
            tenant = esc(&ticket.tenant),
            how = if ticket.client_id.is_some() {
                "CIMD"
            } else {
                "DCR"
            },
            host = esc(&ticket.client_id_host().unwrap_or_default()),
            hosts = hosts(&ticket.redirect_uri_hosts(), row.client_domain.as_deref()),
            why = reasons_and_findings(&ticket.reasons, &ticket.findings),
            same = esc(&row.same_fingerprint),
            age = duration(row.now_ms.saturating_sub(ticket.created_at_ms)),
            expires = duration(ticket.expires_at_ms.saturating_sub(row.now_ms)),
        );
    }
    out.push_str("</table>");
    out
}

/// Redirect hosts, each one off the client's own domain marked `foreign`.
fn hosts(hosts: &[String], client_domain: Option<&str>) -> String {
    hosts
        .iter()
        .map(|host| {
            let own = client_domain.is_some_and(|domain| {
                crate::registration::uri::registrable_domain(host).as_deref() == Some(domain)
            });
            if own || client_domain.is_none() && hosts.len() == 1 {
                format!("<span class=\"host\">{}</span>", esc(host))
            } else {
                format!(
                    "<span class=\"host foreign\" title=\"not the client's own domain\">{}</span>",
                    esc(host)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn reasons_and_findings(reasons: &[Reason], findings: &[Finding]) -> String {
    let mut out = String::new();
    for reason in reasons {
        let _ = write!(
            out,
            "<div class=\"reason\">{} <small><code>{}</code></small></div>",
            esc(&reason.message),
            esc(&reason.policy_id)
        );
    }
    for finding in findings {
        let _ = write!(
            out,
            "<div class=\"finding\"><code>{}</code> {}</div>",
            esc(finding.code.as_str()),
            esc(&finding.message)
        );
    }
    out
}

/// `3h 12m`, `45s`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Milliseconds since the epoch as RFC 3339, UTC.
pub fn time(ms: u64) -> String {
    crate::signals::rfc3339::format(crate::vocab::from_millis(ms))
}

/// Normalized metadata as a readable list: each member, arrays one item per line.
pub fn metadata(json: &str) -> String {
    let Ok(serde_json::Value::Object(members)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return format!("<pre>{}</pre>", esc(json));
    };
    let mut out = String::from(r#"<dl class="meta" id="metadata">"#);
    for (key, value) in members {
        let shown = match &value {
            serde_json::Value::String(text) => esc(text),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    serde_json::Value::String(text) => esc(text),
                    other => esc(&other.to_string()),
                })
                .collect::<Vec<_>>()
                .join("<br>"),
            other => esc(&serde_json::to_string_pretty(other).unwrap_or_default()),
        };
        let _ = write!(out, "<dt>{}</dt><dd>{shown}</dd>", esc(&key));
    }
    out.push_str("</dl>");
    out
}

/// One ticket: what will be registered, why it waits, the decisions of its fingerprint,
/// and the forms that resolve it.
pub fn ticket(
    ticket: &StepUpTicket,
    client_domain: Option<&str>,
    opened_by: Option<&DecisionRecord>,
    earlier: &[DecisionRecord],
    csrf: &str,
    now_ms: u64,
) -> String {
    let mut out = String::new();
    let state = crate::step_up::effective_state(ticket, now_ms);
    let _ = write!(
        out,
        r#"<div class="box"><p>State: <strong id="state">{state}</strong> · tenant <code>{tenant}</code> · opened {created} · expires {expires}{resolved}</p>
<p>client_id host: <code>{host}</code> · redirect URI hosts: <span id="redirect-hosts">{hosts}</span></p>
<p>Challenges: {challenges} · approvals it gives: {uses}</p></div>"#,
        state = state.as_str(),
        tenant = esc(&ticket.tenant),
        created = esc(&time(ticket.created_at_ms)),
        expires = esc(&time(ticket.expires_at_ms)),
        resolved = match ticket.resolved_at_ms {
            Some(at) => format!(
                " · resolved {} by <strong>{}</strong>{}",
                esc(&time(at)),
                esc(&ticket.resolver),
                if ticket.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", esc(&ticket.note))
                }
            ),
            None => String::new(),
        },
        host = esc(&ticket
            .client_id_host()
            .unwrap_or_else(|| "(DCR)".to_owned())),
        hosts = hosts(&ticket.redirect_uri_hosts(), client_domain),
        challenges = esc(&ticket.challenges.join(", ")),
        uses = ticket.max_uses,
    );
    out.push_str("<h2>What an approval registers</h2>");
    match &ticket.binding {
        Some(binding) => {
            out.push_str(&metadata(&binding.client_metadata_json));
            if let Some(sha) = &binding.document_sha256 {
                let _ = write!(out, "<p>CIMD document SHA-256: <code>{}</code></p>", esc(sha));
            }
        }
        None => out.push_str(
            "<p class=\"error\">This ticket was stored before tickets were bound to a registration: approving it registers nothing.</p>",
        ),
    }
    out.push_str("<h2>Why it waits</h2>");
    out.push_str(&reasons_and_findings(&ticket.reasons, &ticket.findings));
    if state == TicketState::Pending {
        let _ = write!(
            out,
            r#"<h2>Resolve</h2><form method="post" action="/console/tickets/{id}/resolve" class="box" id="resolve">
<input type="hidden" name="csrf" value="{csrf}"><label>Note (recorded with the resolution)<br><textarea name="note" id="note" rows="2" maxlength="2000"></textarea></label>
<p><button name="action" value="approve" id="approve">Approve</button> <button name="action" value="deny" id="deny">Deny</button></p></form>"#,
            id = esc(&ticket.ticket_id),
            csrf = esc(csrf),
        );
    }
    out.push_str("<h2>The decision that opened it</h2>");
    match opened_by {
        Some(record) => out.push_str(&decision_summary(record)),
        None => out.push_str("<p>Not in the decision log (pruned).</p>"),
    }
    out.push_str("<h2>Decisions of the same fingerprint</h2>");
    out.push_str(&decision_table(earlier));
    out
}

fn decision_summary(record: &DecisionRecord) -> String {
    format!(
        r#"<p><a href="/console/decisions/{id}">{id}</a> · <span class="{class}">{decision}</span> · {at} · policy version <code>{version}</code></p>{why}"#,
        id = esc(&record.decision_id),
        class = record.decision.as_str(),
        decision = record.decision.as_str(),
        at = esc(&time(record.decided_at_ms)),
        version = esc(&record.policy_version),
        why = reasons_and_findings(&record.reasons, &record.findings),
    )
}

/// Decisions, newest first.
pub fn decision_table(records: &[DecisionRecord]) -> String {
    if records.is_empty() {
        return "<p>None.</p>".to_owned();
    }
    let mut out = String::from(
        r#"<table class="decisions"><tr><th>When</th><th>Decision</th><th>Tenant</th><th>Type</th><th>Client</th><th>IP</th><th>Policy version</th></tr>"#,
    );
    for record in records {
        let _ = write!(
            out,
            r#"<tr><td><a href="/console/decisions/{id}">{at}</a></td><td class="{class}">{decision}</td><td>{tenant}</td><td>{kind}</td><td>{client}</td><td>{ip}</td><td><code>{version}</code></td></tr>"#,
            id = esc(&record.decision_id),
            at = esc(&time(record.decided_at_ms)),
            class = record.decision.as_str(),
            decision = record.decision.as_str(),
            tenant = esc(&record.tenant),
            kind = record.registration_type.as_str(),
            client = esc(record
                .client_name
                .as_deref()
                .or(record.client_id.as_deref())
                .unwrap_or("")),
            ip = esc(record.ip.as_deref().unwrap_or("")),
            version = esc(&record.policy_version),
        );
    }
    out.push_str("</table>");
    out
}

/// The filters of the decisions page, as given.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub decision: String,
    pub tenant: String,
    pub kind: String,
    pub client: String,
    pub ip: String,
    pub since: String,
    pub until: String,
    /// Set by the link from a decision's page (decisions of the same registration).
    pub fingerprint: String,
}

pub fn decisions(filters: &Filters, records: &[DecisionRecord], next: Option<String>) -> String {
    let option = |value: &str, label: &str, current: &str| {
        format!(
            "<option value=\"{value}\"{}>{label}</option>",
            if current == value { " selected" } else { "" }
        )
    };
    let mut out = format!(
        r#"<form method="get" action="/console/decisions" class="filters">
<label>Decision<select name="decision">{any}{a}{d}{s}</select></label>
<label>Tenant<input name="tenant" value="{tenant}"></label>
<label>Type<select name="type">{anyt}{dcr}{cimd}</select></label>
<label>Client id<input name="client" value="{client}"></label>
<label>IP<input name="ip" value="{ip}"></label>
<label>Since (RFC 3339, or 1h, 7d)<input name="since" value="{since}"></label>
<label>Until (RFC 3339)<input name="until" value="{until}"></label>{fingerprint}
<button>Filter</button></form>"#,
        any = option("", "any", &filters.decision),
        a = option("approve", "approve", &filters.decision),
        d = option("deny", "deny", &filters.decision),
        s = option("step_up", "step up", &filters.decision),
        anyt = option("", "any", &filters.kind),
        dcr = option("dcr", "DCR", &filters.kind),
        cimd = option("cimd", "CIMD", &filters.kind),
        tenant = esc(&filters.tenant),
        client = esc(&filters.client),
        ip = esc(&filters.ip),
        since = esc(&filters.since),
        until = esc(&filters.until),
        fingerprint = if filters.fingerprint.is_empty() {
            String::new()
        } else {
            format!(
                "<label>Fingerprint<input name=\"fingerprint\" value=\"{}\"></label>",
                esc(&filters.fingerprint)
            )
        },
    );
    out.push_str(&decision_table(records));
    if let Some(next) = next {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("decision", &filters.decision)
            .append_pair("tenant", &filters.tenant)
            .append_pair("type", &filters.kind)
            .append_pair("client", &filters.client)
            .append_pair("ip", &filters.ip)
            .append_pair("since", &filters.since)
            .append_pair("until", &filters.until)
            .append_pair("fingerprint", &filters.fingerprint)
            .append_pair("page", &next)
            .finish();
        let _ = write!(
            out,
            r#"<p><a id="next-page" href="/console/decisions?{}">Older decisions →</a></p>"#,
            esc(&query)
        );
    }
    out
}

/// One decision in full.
pub fn decision(record: &DecisionRecord) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items
                .iter()
                .map(|item| esc(item))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut out = format!(
        r#"<div class="box"><p><span class="{class}" id="decision">{decision}</span> · {at} · tenant <code>{tenant}</code> · {kind} · latency {latency} µs · policy version <code>{version}</code></p>
<p>Client: {client} · client_id <code>{client_id}</code> · IP <code>{ip}</code> · user agent <code>{agent}</code></p>
<p>Obligations: {obligations} · fingerprint <a href="/console/decisions?fingerprint={fp}"><code>{fp}</code></a>{ticket}{redeemed}{error}</p></div>"#,
        class = record.decision.as_str(),
        decision = record.decision.as_str(),
        at = esc(&time(record.decided_at_ms)),
        tenant = esc(&record.tenant),
        kind = record.registration_type.as_str(),
        latency = record.latency_micros,
        version = esc(&record.policy_version),
        client = esc(record.client_name.as_deref().unwrap_or("(no client_name)")),
        client_id = esc(record.client_id.as_deref().unwrap_or("")),
        ip = esc(record.ip.as_deref().unwrap_or("")),
        agent = esc(&record.user_agent),
        obligations = list(&record.obligations),
        fp = esc(&record.fingerprint),
        ticket = record
            .step_up
            .as_ref()
            .map(|step_up| format!(
                " · ticket <a href=\"/console/tickets/{0}\">{0}</a>",
                esc(&step_up.ticket_id)
            ))
            .unwrap_or_default(),
        redeemed = record
            .redeemed_ticket
            .as_ref()
            .map(|ticket| format!(
                " · redeemed ticket <a href=\"/console/tickets/{0}\">{0}</a>",
                esc(ticket)
            ))
            .unwrap_or_default(),
        error = record
            .error_description
            .as_ref()
            .map(|description| format!(" · error: {}", esc(description)))
            .unwrap_or_default(),
    );
    out.push_str("<h2>Reasons and findings</h2>");
    out.push_str(&reasons_and_findings(&record.reasons, &record.findings));
    out.push_str("<h2>Registration (normalized)</h2>");
    out.push_str(&metadata(&record.client_metadata_json));
    out
}

/// What the policies page shows.
pub struct PolicyView<'a> {
    pub version: &'a str,
    pub policy_count: usize,
    pub loaded_at: Option<String>,
    pub shadow_version: Option<&'a str>,
    /// The last refused reload: when, and each problem with its file, line and the line.
    pub refused_at: Option<String>,
    pub problems: Vec<(String, usize, String, Option<String>)>,
    pub disagreements: &'a [Disagreement],
}

pub fn policies(view: &PolicyView<'_>) -> String {
    let mut out = format!(
        r#"<div class="box"><p>In force: <code id="policy-version">{}</code> ({} policies), loaded {}</p>{}</div>"#,
        esc(view.version),
        view.policy_count,
        esc(view.loaded_at.as_deref().unwrap_or("at start")),
        view.shadow_version
            .map(|shadow| format!("<p>Shadow candidate: <code>{}</code></p>", esc(shadow)))
            .unwrap_or_default()
    );
    out.push_str("<h2>Last refused reload</h2>");
    match &view.refused_at {
        None => out.push_str("<p id=\"no-refusal\">None since the set in force was loaded.</p>"),
        Some(at) => {
            let _ = write!(
                out,
                "<p>At {}; the set in force kept serving.</p><ul id=\"problems\">",
                esc(at)
            );
            for (file, line, message, text) in &view.problems {
                let _ = write!(
                    out,
                    "<li><code>{}:{line}</code> {}{}</li>",
                    esc(file),
                    esc(message),
                    text.as_ref()
                        .map(|text| format!("<pre>{}</pre>", esc(text)))
                        .unwrap_or_default()
                );
            }
            out.push_str("</ul>");
        }
    }
    out.push_str("<h2>Shadow disagreements</h2>");
    if view.disagreements.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str("<table><tr><th>When</th><th>Tenant</th><th>Client</th><th>Live</th><th>Candidate</th></tr>");
        for d in view.disagreements {
            let _ = write!(
                out,
                "<tr><td><a href=\"/console/decisions/{id}\">{at}</a></td><td>{tenant}</td><td>{client}</td><td class=\"{lc}\">{live} <small>{lp}</small></td><td class=\"{cc}\">{cand} <small>{cp}</small></td></tr>",
                id = esc(&d.decision_id),
                at = esc(&time(d.decided_at_ms)),
                tenant = esc(&d.tenant),
                client = esc(d
                    .client_name
                    .as_deref()
                    .or(d.client_id.as_deref())
                    .unwrap_or("")),
                lc = d.live.decision.as_str(),
                live = d.live.decision.as_str(),
                lp = esc(&d.live.policies.join(", ")),
                cc = d.candidate.decision.as_str(),
                cand = d.candidate.decision.as_str(),
                cp = esc(&d.candidate.policies.join(", ")),
            );
        }
        out.push_str("</table>");
    }
    out
}

/// A page that says what went wrong.
pub fn problem(message: &str) -> String {
    format!("<p class=\"error\" id=\"problem\">{}</p>", esc(message))
}

/// Parses the decisions page's `decision` filter.
pub fn decision_filter(text: &str) -> Option<Decision> {
    match text {
        "approve" => Some(Decision::Approve),
        "deny" => Some(Decision::Deny),
        "step_up" => Some(Decision::StepUp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_shown_not_run() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        let page = metadata(
            r#"{"client_name":"<img src=x onerror=alert(1)>","redirect_uris":["https://a.example/cb","https://b.example/<x>"]}"#,
        );
        assert!(!page.contains("<img"), "{page}");
        assert!(
            page.contains("https://a.example/cb<br>https://b.example/&lt;x&gt;"),
            "{page}"
        );
    }

    #[test]
    fn a_redirect_host_off_the_clients_domain_stands_out() {
        let shown = hosts(
            &["app.example.com".to_owned(), "evil.example.net".to_owned()],
            Some("example.com"),
        );
        assert!(
            shown.contains("<span class=\"host\">app.example.com</span>"),
            "{shown}"
        );
        assert!(shown.contains("<span class=\"host foreign\" title=\"not the client's own domain\">evil.example.net</span>"), "{shown}");
    }

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(3_725_000), "1h 2m");
        assert_eq!(duration(90_000_000), "1d 1h");
    }
}
