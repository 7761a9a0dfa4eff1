//! How `clientgate admin` prints what the server said: tables and key-value lines for
//! people (every server text `printable`), JSON for scripts.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::proto::{self, StepUpState};

pub(super) fn show(s: &proto::StepUp) {
    say!("ticket          {}", s.ticket_id);
    say!("state           {}", state_name(s.state));
    say!("tenant          {}", s.tenant);
    say!("client          {}", or_dash(&s.client_name));
    say!("client_id       {}", or_dash(&s.client_id));
    say!("redirect hosts  {}", s.redirect_uri_hosts.join(", "));
    say!("challenges      {}", s.challenges.join(", "));
    say!("opened by       {}", s.decision_id);
    say!(
        "created         {}",
        s.created_at.as_ref().map(rfc3339).unwrap_or_default()
    );
    say!(
        "expires         {}",
        s.expires_at.as_ref().map(rfc3339).unwrap_or_default()
    );
    if !s.resolver.is_empty() {
        say!("resolved by     {} {}", s.resolver, s.note);
    }
    say!("why:");
    for reason in &s.reasons {
        say!("  {} ({})", reason.message, reason.policy_id);
    }
    for finding in &s.findings {
        say!("  {} {}", finding.code, finding.message);
    }
    say!("an approval registers:");
    match serde_json::from_str::<Value>(&s.client_metadata_json) {
        Ok(metadata) => say!(
            "{}",
            serde_json::to_string_pretty(&metadata).unwrap_or_default()
        ),
        Err(_) => say!("{}", s.client_metadata_json),
    }
}

pub(super) fn step_up_json(s: &proto::StepUp) -> Value {
    json!({
        "ticket_id": s.ticket_id,
        "tenant": s.tenant,
        "state": state_name(s.state),
        "challenges": s.challenges,
        "decision_id": s.decision_id,
        "created_at": s.created_at.as_ref().map(rfc3339),
        "expires_at": s.expires_at.as_ref().map(rfc3339),
        "resolved_at": s.resolved_at.as_ref().map(rfc3339),
        "resolver": s.resolver,
        "note": s.note,
        "fingerprint": s.fingerprint,
        "client_id": s.client_id,
        "client_name": s.client_name,
        "client_id_host": s.client_id_host,
        "redirect_uri_hosts": s.redirect_uri_hosts,
        "client_metadata": serde_json::from_str::<Value>(&s.client_metadata_json).unwrap_or(Value::Null),
        "document_sha256": s.document_sha256,
        "reasons": s.reasons.iter().map(|r| json!({"policy_id": r.policy_id, "message": r.message})).collect::<Vec<_>>(),
        "findings": s.findings.iter().map(|f| json!({"code": f.code, "field": f.field, "message": f.message})).collect::<Vec<_>>(),
    })
}

pub(super) fn decision_json(d: &proto::DecisionRecord) -> Value {
    json!({
        "decision_id": d.decision_id,
        "decided_at": d.decided_at.as_ref().map(rfc3339),
        "decision": decision_name(d.decision),
        "tenant": d.tenant,
        "registration_type": d.registration_type,
        "client_id": d.client_id,
        "client_name": d.client_name,
        "ip": d.ip,
        "fingerprint": d.fingerprint,
        "policy_version": d.policy_version,
        "latency_micros": d.latency_micros,
        "obligations": d.obligations,
        "step_up_ticket": d.step_up.as_ref().map(|s| s.ticket_id.clone()),
        "reasons": d.reasons.iter().map(|r| json!({"policy_id": r.policy_id, "message": r.message})).collect::<Vec<_>>(),
        "findings": d.findings.iter().map(|f| f.code.clone()).collect::<Vec<_>>(),
    })
}

pub(super) fn state_name(state: i32) -> &'static str {
    match StepUpState::try_from(state) {
        Ok(StepUpState::Pending) => "pending",
        Ok(StepUpState::Approved) => "approved",
        Ok(StepUpState::Denied) => "denied",
        Ok(StepUpState::Expired) => "expired",
        _ => "unknown",
    }
}

pub(super) fn decision_name(decision: i32) -> &'static str {
    match proto::Decision::try_from(decision) {
        Ok(proto::Decision::Approve) => "approve",
        Ok(proto::Decision::Deny) => "deny",
        Ok(proto::Decision::StepUp) => "step_up",
        _ => "unknown",
    }
}

pub(super) fn rfc3339(timestamp: &prost_types::Timestamp) -> String {
    let ms = u64::try_from(timestamp.seconds).unwrap_or(0) * 1000
        + u64::try_from(timestamp.nanos / 1_000_000).unwrap_or(0);
    crate::signals::rfc3339::format(crate::vocab::from_millis(ms))
}

pub(super) fn age(timestamp: &prost_types::Timestamp) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = (now - timestamp.seconds).max(0) as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

pub(super) fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

pub(super) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `text` safe to print on a terminal: control characters (an ESC sequence in a
/// registration's `client_name` could rewrite the screen, set the clipboard or hide a
/// redirect host) and bidirectional controls are shown escaped; newlines kept.
pub(super) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || !(c.is_control() || crate::registration::names::is_bidi_control(c)) {
            out.push(c);
        } else {
            out.push_str(&c.escape_unicode().to_string());
        }
    }
    out
}

/// Columns padded to their widest cell, every cell `printable`.
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| {
            row.iter()
                .map(|cell| printable(cell).replace('\n', " "))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registrations_escape_sequences_never_reach_the_terminal() {
        let shown = printable("Evil\u{1b}]52;c;cGF3bmVk\u{7}\u{1b}[2J\u{202e}name\nnext");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}') && !shown.contains('\u{202e}'),
            "{shown}"
        );
        assert!(shown.starts_with("Evil\\u{1b}]52;"), "{shown}");
        assert!(shown.ends_with("name\nnext"), "newlines stay: {shown}");
    }
}
