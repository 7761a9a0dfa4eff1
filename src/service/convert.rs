//! Proto ⇄ domain mapping. Checks the shape of calls (a malformed call is a gRPC error,
//! named by its field) and nothing about registrations (those are decided, not refused).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

use crate::engine::{EvaluateInput, Evaluated, Registration};
use crate::errors::ServiceError;
use crate::proto;
use crate::registration::{Finding, Severity};
use crate::step_up::{StepUpRef, StepUpTicket, TicketState};
use crate::store::{AdminAction, DecisionQuery, DecisionRecord, TicketQuery};
use crate::vocab::Caller;
use crate::vocab::{Decision, Reason};

const DEFAULT_TENANT: &str = "default";
const MAX_TENANT_LEN: usize = 64;
const MAX_CHALLENGES: usize = 16;
const MAX_USER_AGENT_LEN: usize = 1024;

/// Refuses `text` longer than `max` characters, naming `field`.
pub fn bounded_text(field: &'static str, text: &str, max: usize) -> Result<(), ServiceError> {
    let chars = text.chars().count();
    if chars > max {
        return Err(ServiceError::invalid(
            field,
            format!("is {chars} characters long; at most {max} are kept"),
        ));
    }
    Ok(())
}

/// Checks an Evaluate call and turns it into the pipeline's input.
pub fn evaluate_input(
    request: proto::EvaluateRequest,
    max_metadata_bytes: usize,
) -> Result<EvaluateInput, ServiceError> {
    let tenant =
        tenant_name(&request.tenant, "tenant")?.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    let registration = match request.registration {
        None => {
            return Err(ServiceError::invalid(
                "registration",
                "set one of `dcr` or `cimd`",
            ));
        }
        Some(proto::evaluate_request::Registration::Dcr(dcr)) => {
            if dcr.metadata_json.len() > max_metadata_bytes {
                return Err(ServiceError::invalid(
                    "dcr.metadata_json",
                    format!(
                        "{} bytes is over the {max_metadata_bytes}-byte limit (server.max_metadata_bytes)",
                        dcr.metadata_json.len()
                    ),
                ));
            }
            Registration::Dcr {
                metadata_json: dcr.metadata_json,
                initial_access_token: dcr.initial_access_token,
            }
        }
        Some(proto::evaluate_request::Registration::Cimd(cimd)) => {
            if cimd.client_id.is_empty() {
                return Err(ServiceError::invalid("cimd.client_id", "must not be empty"));
            }
            Registration::Cimd {
                client_id: cimd.client_id,
                redirect_uri: cimd.redirect_uri,
            }
        }
    };
    let caller = request.caller.unwrap_or_default();
    let ip = match caller.ip.trim() {
        "" => None,
        // An IPv4-mapped address (`::ffff:203.0.113.7`, from a dual-stack socket) is the
        // IPv4 caller (F-12): recorded, counted and shown to policies as `203.0.113.7`.
        text => Some(
            text.parse::<IpAddr>()
                .map_err(|_| {
                    ServiceError::invalid(
                        "caller.ip",
                        format!("`{text}` is not an IPv4 or IPv6 address"),
                    )
                })?
                .to_canonical(),
        ),
    };
    if caller.user_agent.len() > MAX_USER_AGENT_LEN {
        return Err(ServiceError::invalid(
            "caller.user_agent",
            format!("longer than {MAX_USER_AGENT_LEN} bytes"),
        ));
    }
    let step_up = request.step_up.unwrap_or_default();
    if step_up.completed_challenges.len() > MAX_CHALLENGES {
        return Err(ServiceError::invalid(
            "step_up.completed_challenges",
            format!("more than {MAX_CHALLENGES} challenges"),
        ));
    }
    Ok(EvaluateInput {
        tenant,
        registration,
        caller: Caller {
            ip,
            user_agent: caller.user_agent,
            user_authenticated: caller.user_authenticated,
        },
        step_up_ticket: step_up.ticket_id,
        completed_challenges: step_up.completed_challenges,
        dry_run: request.dry_run,
        explain: request.explain,
    })
}

/// A tenant name: 1–64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
/// Empty gives `None`.
fn tenant_name(text: &str, field: &'static str) -> Result<Option<String>, ServiceError> {
    if text.is_empty() {
        return Ok(None);
    }
    let valid = text.len() <= MAX_TENANT_LEN
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(Some(text.to_owned()))
    } else {
        Err(ServiceError::invalid(
            field,
            format!(
                "`{}` is not a tenant name: 1–{MAX_TENANT_LEN} of A-Z a-z 0-9 . _ -, starting with a letter or digit",
                text.escape_default()
            ),
        ))
    }
}

pub fn evaluate_response(evaluated: Evaluated) -> proto::EvaluateResponse {
    proto::EvaluateResponse {
        decision_id: evaluated.decision_id.unwrap_or_default(),
        decision: decision(evaluated.decision) as i32,
        reasons: evaluated.reasons.into_iter().map(reason).collect(),
        findings: evaluated.findings.into_iter().map(finding).collect(),
        error: evaluated
            .error
            .map(|(code, description)| proto::OAuthError {
                error: code.as_str().to_owned(),
                error_description: description,
            }),
        step_up: evaluated.step_up.map(step_up),
        obligations: evaluated.obligations,
        client_metadata_json: evaluated.client_metadata_json,
        policy_version: evaluated.policy_version,
        cimd: evaluated.cimd.map(|info| proto::CimdInfo {
            cache: info.cache.as_str().to_owned(),
            fetched_at: Some(timestamp_ms(info.fetched_at_ms)),
            expires_at: Some(timestamp_ms(info.expires_at_ms)),
            document_sha256: info.document_sha256,
            changed_members: info.changed_members,
        }),
        explain_json: evaluated.explain_json.unwrap_or_default(),
        duplicate_of: evaluated.duplicate_of.unwrap_or_default(),
        fingerprint: evaluated.fingerprint,
    }
}

pub fn decision(decision: Decision) -> proto::Decision {
    match decision {
        Decision::Approve => proto::Decision::Approve,
        Decision::Deny => proto::Decision::Deny,
        Decision::StepUp => proto::Decision::StepUp,
    }
}

fn reason(reason: Reason) -> proto::Reason {
    proto::Reason {
        policy_id: reason.policy_id,
        message: reason.message,
    }
}

fn finding(finding: Finding) -> proto::Finding {
    proto::Finding {
        code: finding.code.as_str().to_owned(),
        severity: match finding.severity {
            Severity::Error => proto::Severity::Error,
            Severity::Warning => proto::Severity::Warning,
        } as i32,
        field: finding.field,
        rule: finding.code.rule().to_owned(),
        message: finding.message,
    }
}

fn step_up(step_up: StepUpRef) -> proto::StepUpChallenge {
    proto::StepUpChallenge {
        ticket_id: step_up.ticket_id,
        challenges: step_up.challenges,
        expires_at: Some(timestamp_ms(step_up.expires_at_ms)),
    }
}

pub fn timestamp_ms(ms: u64) -> Timestamp {
    Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub fn timestamp(time: SystemTime) -> Timestamp {
    timestamp_ms(crate::vocab::millis(time))
}

fn millis_of(timestamp: &Timestamp, field: &'static str) -> Result<u64, ServiceError> {
    if timestamp.seconds < 0 || !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(ServiceError::invalid(field, "must be a time after 1970"));
    }
    let time = UNIX_EPOCH + Duration::new(timestamp.seconds as u64, timestamp.nanos as u32);
    Ok(crate::vocab::millis(time))
}

/// A page token of a list ordered by ULID: empty for the first page, else one that `list`
/// returned.
pub fn page_token(token: &str, list: &str) -> Result<Option<ulid::Ulid>, ServiceError> {
    match token {
        "" => Ok(None),
        token => ulid::Ulid::from_string(token).map(Some).map_err(|_| {
            ServiceError::invalid("page_token", format!("not a token from a {list} response"))
        }),
    }
}

pub fn decision_query(request: proto::ListDecisionsRequest) -> Result<DecisionQuery, ServiceError> {
    let decision = match proto::Decision::try_from(request.decision) {
        Ok(proto::Decision::Unspecified) => None,
        Ok(proto::Decision::Approve) => Some(Decision::Approve),
        Ok(proto::Decision::Deny) => Some(Decision::Deny),
        Ok(proto::Decision::StepUp) => Some(Decision::StepUp),
        Err(_) => {
            return Err(ServiceError::invalid(
                "decision",
                format!("{} is not a Decision value", request.decision),
            ));
        }
    };
    let ip = match request.ip.trim() {
        "" => None,
        text => Some(
            text.parse::<IpAddr>()
                .map_err(|_| ServiceError::invalid("ip", format!("`{text}` is not an IP address")))?
                .to_string(),
        ),
    };
    let page_token = page_token(&request.page_token, "ListDecisions")?;
    let non_empty = |text: String| (!text.is_empty()).then_some(text);
    Ok(DecisionQuery {
        tenant: tenant_name(&request.tenant, "tenant")?,
        client_id: non_empty(request.client_id),
        ip,
        fingerprint: non_empty(request.fingerprint),
        decision,
        registration_type: None,
        since_ms: request
            .since
            .as_ref()
            .map(|t| millis_of(t, "since"))
            .transpose()?,
        until_ms: request
            .until
            .as_ref()
            .map(|t| millis_of(t, "until"))
            .transpose()?,
        page_size: request.page_size as usize,
        page_token,
    })
}

pub fn decision_record(record: DecisionRecord) -> proto::DecisionRecord {
    proto::DecisionRecord {
        decision_id: record.decision_id,
        decided_at: Some(timestamp_ms(record.decided_at_ms)),
        tenant: record.tenant,
        registration_type: record.registration_type.as_str().to_owned(),
        client_id: record.client_id.unwrap_or_default(),
        client_name: record.client_name.unwrap_or_default(),
        fingerprint: record.fingerprint,
        ip: record.ip.unwrap_or_default(),
        user_agent: record.user_agent,
        decision: decision(record.decision) as i32,
        reasons: record.reasons.into_iter().map(reason).collect(),
        findings: record.findings.into_iter().map(finding).collect(),
        error: record.error.map(|code| proto::OAuthError {
            error: code.as_str().to_owned(),
            error_description: record.error_description.unwrap_or_default(),
        }),
        obligations: record.obligations,
        step_up: record.step_up.map(step_up),
        policy_version: record.policy_version,
        latency_micros: record.latency_micros,
        client_metadata_json: record.client_metadata_json,
        software_id: record.software_id.unwrap_or_default(),
        redeemed_ticket: record.redeemed_ticket.unwrap_or_default(),
    }
}

pub fn step_up_ticket(ticket: StepUpTicket) -> proto::StepUp {
    let client_id_host = ticket.client_id_host().unwrap_or_default();
    let redirect_uri_hosts = ticket.redirect_uri_hosts();
    proto::StepUp {
        ticket_id: ticket.ticket_id,
        tenant: ticket.tenant,
        state: match ticket.state {
            TicketState::Pending => proto::StepUpState::Pending,
            TicketState::Approved => proto::StepUpState::Approved,
            TicketState::Denied => proto::StepUpState::Denied,
            TicketState::Expired => proto::StepUpState::Expired,
        } as i32,
        challenges: ticket.challenges,
        decision_id: ticket.decision_id,
        created_at: Some(timestamp_ms(ticket.created_at_ms)),
        expires_at: Some(timestamp_ms(ticket.expires_at_ms)),
        resolved_at: ticket.resolved_at_ms.map(timestamp_ms),
        resolver: ticket.resolver,
        note: ticket.note,
        fingerprint: ticket.fingerprint,
        client_id_host,
        client_id: ticket.client_id.unwrap_or_default(),
        client_name: ticket.client_name.unwrap_or_default(),
        redirect_uri_hosts,
        document_sha256: ticket
            .binding
            .as_ref()
            .and_then(|binding| binding.document_sha256.clone())
            .unwrap_or_default(),
        client_metadata_json: ticket
            .binding
            .map(|binding| binding.client_metadata_json)
            .unwrap_or_default(),
        reasons: ticket.reasons.into_iter().map(reason).collect(),
        findings: ticket.findings.into_iter().map(finding).collect(),
        max_uses: ticket.max_uses,
        redemptions: ticket
            .redemptions
            .into_iter()
            .map(|redemption| proto::TicketRedemption {
                decision_id: redemption.decision_id,
                redeemed_at: Some(timestamp_ms(redemption.at_ms)),
            })
            .collect(),
    }
}

pub fn ticket_query(request: proto::ListStepUpsRequest) -> Result<TicketQuery, ServiceError> {
    let state = match proto::StepUpState::try_from(request.state) {
        Ok(proto::StepUpState::Unspecified) => None,
        Ok(proto::StepUpState::Pending) => Some(TicketState::Pending),
        Ok(proto::StepUpState::Approved) => Some(TicketState::Approved),
        Ok(proto::StepUpState::Denied) => Some(TicketState::Denied),
        Ok(proto::StepUpState::Expired) => Some(TicketState::Expired),
        Err(_) => {
            return Err(ServiceError::invalid(
                "state",
                format!("{} is not a StepUpState value", request.state),
            ));
        }
    };
    Ok(TicketQuery {
        tenant: tenant_name(&request.tenant, "tenant")?,
        state,
        page_size: request.page_size as usize,
        page_token: (!request.page_token.is_empty()).then_some(request.page_token),
    })
}

pub fn policy_problem(problem: &crate::policy::LoadError) -> proto::PolicyProblem {
    proto::PolicyProblem {
        file: problem.file.display().to_string(),
        line: problem.line as u32,
        column: problem.column as u32,
        message: problem.message.clone(),
    }
}

pub fn disagreement(disagreement: crate::store::Disagreement) -> proto::ShadowDisagreement {
    let live = disagreement.live;
    let candidate = disagreement.candidate;
    proto::ShadowDisagreement {
        decision_id: disagreement.decision_id,
        decided_at: Some(timestamp_ms(disagreement.decided_at_ms)),
        tenant: disagreement.tenant,
        client_id: disagreement.client_id.unwrap_or_default(),
        client_name: disagreement.client_name.unwrap_or_default(),
        live_decision: decision(live.decision) as i32,
        candidate_decision: decision(candidate.decision) as i32,
        live_policies: live.policies,
        candidate_policies: candidate.policies,
        live_obligations: live.obligations,
        candidate_obligations: candidate.obligations,
        live_challenges: live.challenges,
        candidate_challenges: candidate.challenges,
        live_version: live.version,
        candidate_version: candidate.version,
    }
}

pub fn admin_action(action: AdminAction) -> proto::AdminAction {
    proto::AdminAction {
        action_id: action.action_id,
        at: Some(timestamp_ms(action.at_ms)),
        actor: action.actor,
        action: action.action,
        target: action.target,
        outcome: action.outcome,
        peer: action.peer.unwrap_or_default(),
    }
}
