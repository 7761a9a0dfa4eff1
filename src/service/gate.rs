//! The door every RPC passes: the caller's `authorization: Bearer <token>` metadata
//! checked against the configured credentials for the role the call needs.

use std::sync::Arc;

use tonic::Request;

use crate::auth::{AuthError, Credentials, Identity, Role};
use crate::errors::ServiceError;

#[derive(Clone)]
pub struct Gate {
    credentials: Arc<Credentials>,
}

impl Gate {
    pub fn new(credentials: Arc<Credentials>) -> Gate {
        Gate { credentials }
    }

    /// The caller of `request`, if it holds `needed`.
    pub fn admit<T>(&self, request: &Request<T>, needed: Role) -> Result<Identity, ServiceError> {
        let authorization = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| AuthError::Malformed)?),
        };
        Ok(self.credentials.authorize(authorization, needed)?)
    }

    /// Any known caller of `request`, whatever its roles.
    pub fn identify<T>(&self, request: &Request<T>) -> Result<Identity, ServiceError> {
        let authorization = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| AuthError::Malformed)?),
        };
        Ok(self.credentials.authenticate(authorization)?)
    }
}

/// The caller's address as the connection shows it, for the audit trail.
pub fn peer<T>(request: &Request<T>) -> Option<String> {
    request.remote_addr().map(|addr| addr.to_string())
}
