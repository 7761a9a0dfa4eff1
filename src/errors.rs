//! The one place that maps clientgate's outcomes and failures to the outside: OAuth error
//! codes (RFC 7591 §3.2.2 for DCR, RFC 6749 for CIMD at the authorization endpoint) and
//! gRPC statuses.

use crate::auth::AuthError;
use crate::registration::{Code, Finding};
use crate::store::{ResolveError, StoreError};
use crate::vocab::RegistrationType;

/// An OAuth error code clientgate puts on a DENY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
    InvalidClient,
    InvalidRequest,
}

impl OAuthErrorCode {
    pub const ALL: &'static [OAuthErrorCode] = &[
        OAuthErrorCode::InvalidRedirectUri,
        OAuthErrorCode::InvalidClientMetadata,
        OAuthErrorCode::InvalidSoftwareStatement,
        OAuthErrorCode::UnapprovedSoftwareStatement,
        OAuthErrorCode::InvalidClient,
        OAuthErrorCode::InvalidRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            OAuthErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            OAuthErrorCode::InvalidSoftwareStatement => "invalid_software_statement",
            OAuthErrorCode::UnapprovedSoftwareStatement => "unapproved_software_statement",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidRequest => "invalid_request",
        }
    }

    pub fn parse(text: &str) -> Option<OAuthErrorCode> {
        OAuthErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }
}

/// The OAuth error of a registration denied for its spec findings (outcome rule 1).
///
/// DCR: a bad software statement wins, then anything wrong with a redirect URI
/// (`invalid_redirect_uri`), else `invalid_client_metadata`. CIMD: `invalid_request` when
/// the authorization request's redirect_uri does not match (D1–D14), else `invalid_client`,
/// with the precise reason in the description (registration rules Q17).
pub fn error_for_findings(findings: &[Finding], registration: RegistrationType) -> OAuthErrorCode {
    let errors = || findings.iter().filter(|finding| finding.is_error());
    match registration {
        RegistrationType::Cimd => {
            if errors().any(|f| {
                matches!(
                    f.code,
                    Code::RedirectUriMismatch | Code::RedirectUriRequired
                )
            }) {
                OAuthErrorCode::InvalidRequest
            } else {
                OAuthErrorCode::InvalidClient
            }
        }
        RegistrationType::Dcr => {
            if errors().any(|f| f.code == Code::SoftwareStatementUnapproved) {
                OAuthErrorCode::UnapprovedSoftwareStatement
            } else if errors().any(|f| {
                matches!(
                    f.code,
                    Code::SoftwareStatementMalformed | Code::SoftwareStatementInvalid
                )
            }) {
                OAuthErrorCode::InvalidSoftwareStatement
            } else if errors().any(|f| f.field.starts_with("redirect_uris")) {
                OAuthErrorCode::InvalidRedirectUri
            } else {
                OAuthErrorCode::InvalidClientMetadata
            }
        }
    }
}

/// The OAuth error of a policy deny whose forbid named no `@error`.
pub fn error_for_policy_deny(registration: RegistrationType) -> OAuthErrorCode {
    match registration {
        RegistrationType::Dcr => OAuthErrorCode::InvalidClientMetadata,
        RegistrationType::Cimd => OAuthErrorCode::InvalidClient,
    }
}

/// A call clientgate could not serve. A registration that breaks rules is not one of these:
/// it is a normal DENY.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The call itself is malformed; `field` names the request field.
    #[error("invalid `{field}`: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// The call is well-formed but the state forbids it (e.g. resolving an expired ticket).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The decision could not be recorded, so it is not given.
    #[error("the decision store is unavailable: {0}")]
    Store(#[from] StoreError),
    /// The caller is unknown, or lacks the role the call needs.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

impl From<ResolveError> for ServiceError {
    fn from(error: ResolveError) -> ServiceError {
        match error {
            ResolveError::NotFound(_) => ServiceError::NotFound(error.to_string()),
            ResolveError::Refused(_) => ServiceError::FailedPrecondition(error.to_string()),
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> tonic::Status {
        let message = error.to_string();
        match error {
            ServiceError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            ServiceError::NotFound(_) => tonic::Status::not_found(message),
            ServiceError::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            ServiceError::Store(_) => tonic::Status::unavailable(message),
            ServiceError::Auth(AuthError::Forbidden { .. }) => {
                tonic::Status::permission_denied(message)
            }
            ServiceError::Auth(_) => tonic::Status::unauthenticated(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::Severity;

    fn error(code: Code, field: &str) -> Finding {
        Finding {
            code,
            severity: Severity::Error,
            field: field.to_owned(),
            message: String::new(),
        }
    }

    #[test]
    fn redirect_findings_map_to_invalid_redirect_uri() {
        let findings = [error(Code::RedirectUriFragment, "redirect_uris[0]")];
        assert_eq!(
            error_for_findings(&findings, RegistrationType::Dcr),
            OAuthErrorCode::InvalidRedirectUri
        );
    }

    #[test]
    fn other_findings_map_to_invalid_client_metadata() {
        let findings = [error(Code::JwksAndJwksUri, "jwks")];
        assert_eq!(
            error_for_findings(&findings, RegistrationType::Dcr),
            OAuthErrorCode::InvalidClientMetadata
        );
    }

    #[test]
    fn a_malformed_software_statement_outranks_other_findings() {
        let findings = [
            error(Code::RedirectUriFragment, "redirect_uris[0]"),
            error(Code::SoftwareStatementMalformed, "software_statement"),
        ];
        assert_eq!(
            error_for_findings(&findings, RegistrationType::Dcr),
            OAuthErrorCode::InvalidSoftwareStatement
        );
    }

    #[test]
    fn every_code_round_trips_through_its_wire_form() {
        for code in OAuthErrorCode::ALL {
            assert_eq!(OAuthErrorCode::parse(code.as_str()), Some(*code));
        }
        assert_eq!(OAuthErrorCode::parse("access_denied"), None);
    }

    #[test]
    fn every_rejected_dcr_vector_gets_its_rfc7591_error() {
        use crate::registration::tests::{CASES, Expect};
        let mut checked = 0;
        for (name, profile, metadata, expect) in CASES {
            let Expect::Reject(oauth, _) = expect else {
                continue;
            };
            let validation = crate::registration::validate_dcr(metadata, *profile);
            let got = error_for_findings(&validation.findings, RegistrationType::Dcr);
            assert_eq!(got.as_str(), *oauth, "{name} ({})", profile.as_str());
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} rejected vectors");
    }
}
