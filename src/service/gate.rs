//! The door every RPC passes: the caller's `authorization: Bearer <token>` metadata, or
//! its client certificate, checked against the configured credentials for the role the
//! call needs.

use std::sync::Arc;

use tonic::Request;

use super::listener::TlsPeer;
use crate::auth::{AuthError, Credentials, Identity, Presented, PresentedCertificate, Role};
use crate::errors::ServiceError;

#[derive(Clone)]
pub struct Gate {
    credentials: Arc<Credentials>,
}

/// A verified client certificate, matched by DNS name.
struct Certificate<'a>(webpki::EndEntityCert<'a>);

impl PresentedCertificate for Certificate<'_> {
    fn is_for(&self, subject: &str) -> bool {
        rustls::pki_types::ServerName::try_from(subject)
            .is_ok_and(|name| self.0.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

impl Gate {
    pub fn new(credentials: Arc<Credentials>) -> Gate {
        Gate { credentials }
    }

    /// The caller of `request`, if it holds `needed`.
    pub fn admit<T>(&self, request: &Request<T>, needed: Role) -> Result<Identity, ServiceError> {
        self.with_presented(request, |presented| {
            self.credentials.authorize(presented, needed)
        })
    }

    /// Any known caller of `request`, whatever its roles.
    pub fn identify<T>(&self, request: &Request<T>) -> Result<Identity, ServiceError> {
        self.with_presented(request, |presented| {
            self.credentials.authenticate(presented)
        })
    }

    fn with_presented<T>(
        &self,
        request: &Request<T>,
        check: impl FnOnce(Presented<'_>) -> Result<Identity, AuthError>,
    ) -> Result<Identity, ServiceError> {
        let authorization = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| AuthError::Malformed)?),
        };
        Ok(check_presented(authorization, request.extensions(), check)?)
    }

    /// The caller of an HTTP request on the admin listener (`/metrics`, the console's
    /// sign-in), if it holds `needed`: its `authorization` header (or `token`, a bearer
    /// token from a form), else its client certificate.
    pub fn admit_http(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
        token: Option<&str>,
        needed: Role,
    ) -> Result<Identity, AuthError> {
        let header = match headers.get(http::header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| AuthError::Malformed)?.to_owned()),
        };
        let authorization = token.map(|token| format!("Bearer {token}")).or(header);
        check_presented(authorization.as_deref(), extensions, |presented| {
            self.credentials.authorize(presented, needed)
        })
    }

    /// Whether callers are told apart at all (`[auth]` configured).
    pub fn is_open(&self) -> bool {
        *self.credentials == crate::auth::Credentials::Open
    }
}

fn check_presented(
    authorization: Option<&str>,
    extensions: &http::Extensions,
    check: impl FnOnce(Presented<'_>) -> Result<Identity, AuthError>,
) -> Result<Identity, AuthError> {
    {
        // A token, when sent, is who calls: the certificate is parsed only without one.
        let der = extensions
            .get::<TlsPeer>()
            .and_then(|peer| peer.certificate.as_ref())
            .filter(|_| authorization.is_none());
        let parsed = der.and_then(|der| webpki::EndEntityCert::try_from(der).ok().map(Certificate));
        let presented = Presented {
            authorization,
            certificate: parsed
                .as_ref()
                .map(|certificate| certificate as &dyn PresentedCertificate),
        };
        check(presented)
    }
}

/// The caller's address as the connection shows it, for the audit trail.
pub fn peer<T>(request: &Request<T>) -> Option<String> {
    request
        .remote_addr()
        .map(|addr| addr.to_string())
        .or_else(|| peer_of(request.extensions()))
}

/// The caller's address from a request's extensions (what the listener put there).
pub fn peer_of(extensions: &http::Extensions) -> Option<String> {
    peer_addr_of(extensions).map(|addr| addr.to_string())
}

/// The caller's TCP address (none on a Unix socket).
pub fn peer_addr_of(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsPeer>()
                .and_then(|peer| peer.tcp.remote_addr())
        })
}
