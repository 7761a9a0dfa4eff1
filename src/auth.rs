//! Who is calling, and may they: bearer tokens configured by their SHA-256 (the
//! configuration never needs a token in the clear), the roles each caller holds, and the
//! role each RPC needs. Pure: the gRPC edge extracts the presented token and maps an
//! [`AuthError`] to a status (in `errors.rs`).
//!
//! Roles: `evaluate` (the authorization server's `Evaluate` calls), `operator` (reading the
//! decision log, policy status and step-up tickets, and resolving tickets) and `admin`
//! (reloading policies, and everything an operator may do).

use sha2::{Digest, Sha256};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Evaluate,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Evaluate, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Evaluate => "evaluate",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// How a refusal names the role: "the `operator` role".
    fn phrase(self) -> &'static str {
        match self {
            Role::Evaluate => "the `evaluate` role",
            Role::Operator => "the `operator` role",
            Role::Admin => "the `admin` role",
        }
    }

    /// Whether holding `self` grants `needed`: `admin` grants every operator call.
    fn grants(self, needed: Role) -> bool {
        self == needed || (self == Role::Admin && needed == Role::Operator)
    }
}

/// A configured bearer token: its name (who it is), the SHA-256 of the token, its roles.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub sha256: [u8; 32],
    pub roles: Vec<Role>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A configured client certificate identity: a DNS name its certificate must be valid
/// for, and the roles it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEntry {
    pub subject: String,
    pub roles: Vec<Role>,
}

/// Who may call. `Open` when no `[auth]` is configured: every caller may do everything,
/// which the server allows only on loopback (see `app::exposure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    Open,
    Known {
        tokens: Vec<TokenEntry>,
        clients: Vec<ClientEntry>,
    },
}

/// The client certificate a caller presented (already verified against the client CA by
/// the TLS handshake): whether it is valid for a DNS name.
pub trait PresentedCertificate {
    fn is_for(&self, subject: &str) -> bool;
}

/// What a call presented: its `authorization` metadata and its client certificate.
#[derive(Clone, Copy, Default)]
pub struct Presented<'a> {
    pub authorization: Option<&'a str>,
    pub certificate: Option<&'a dyn PresentedCertificate>,
}

/// The caller of one RPC, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No `[auth]` is configured; nobody is told apart.
    Unauthenticated,
    /// The holder of the named token.
    Token { name: String, roles: Vec<Role> },
    /// The holder of a client certificate valid for `subject`.
    Certificate { subject: String, roles: Vec<Role> },
}

impl Identity {
    /// The name an audit record and a resolved ticket carry; `None` when unauthenticated.
    pub fn name(&self) -> Option<&str> {
        match self {
            Identity::Unauthenticated => None,
            Identity::Token { name, .. } => Some(name),
            Identity::Certificate { subject, .. } => Some(subject),
        }
    }
}

/// Why a call is refused. Never carries the presented token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this call needs credentials: send `authorization: Bearer <token>` (a token with {needed})"
    )]
    Missing { needed: &'static str },
    #[error("the `authorization` metadata is not `Bearer <token>`")]
    Malformed,
    #[error("the bearer token is not one this clientgate knows")]
    UnknownToken,
    #[error("the client certificate is for none of the `[[auth.clients]]` subjects")]
    UnknownCertificate,
    #[error("`{caller}` lacks the `{needed}` role this call needs (it has: {held})")]
    Forbidden {
        caller: String,
        needed: &'static str,
        held: String,
    },
}

/// The SHA-256 of `token`, as `[[auth.tokens]] sha256` holds it in hex.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality of two digests in time independent of where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}

impl Credentials {
    /// Who presented `presented`: a bearer token first (every configured token compared,
    /// in constant time), else the client certificate.
    pub fn authenticate(&self, presented: Presented<'_>) -> Result<Identity, AuthError> {
        self.identify(presented, "any role")
    }

    fn identify(
        &self,
        presented: Presented<'_>,
        needed: &'static str,
    ) -> Result<Identity, AuthError> {
        let Credentials::Known { tokens, clients } = self else {
            return Ok(Identity::Unauthenticated);
        };
        if let Some(value) = presented.authorization {
            return token_identity(tokens, value);
        }
        if let Some(certificate) = presented.certificate {
            let client = clients
                .iter()
                .find(|client| certificate.is_for(&client.subject))
                .ok_or(AuthError::UnknownCertificate)?;
            return Ok(Identity::Certificate {
                subject: client.subject.clone(),
                roles: client.roles.clone(),
            });
        }
        Err(AuthError::Missing { needed })
    }

    /// Authenticates the caller and checks that it holds `needed`.
    pub fn authorize(&self, presented: Presented<'_>, needed: Role) -> Result<Identity, AuthError> {
        let identity = self.identify(presented, needed.phrase())?;
        require(&identity, needed)?;
        Ok(identity)
    }
}

fn token_identity(tokens: &[TokenEntry], value: &str) -> Result<Identity, AuthError> {
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::Malformed)?;
    let digest = token_digest(token);
    let mut found = None;
    for entry in tokens {
        if same_digest(&entry.sha256, &digest) && found.is_none() {
            found = Some(entry);
        }
    }
    let entry = found.ok_or(AuthError::UnknownToken)?;
    Ok(Identity::Token {
        name: entry.name.clone(),
        roles: entry.roles.clone(),
    })
}

/// Checks that `identity` holds `needed`.
pub fn require(identity: &Identity, needed: Role) -> Result<(), AuthError> {
    match identity {
        Identity::Unauthenticated => Ok(()),
        Identity::Token { roles, .. } | Identity::Certificate { roles, .. }
            if roles.iter().any(|role| role.grants(needed)) =>
        {
            Ok(())
        }
        Identity::Token { name, roles }
        | Identity::Certificate {
            subject: name,
            roles,
        } => Err(AuthError::Forbidden {
            caller: name.clone(),
            needed: needed.as_str(),
            held: if roles.is_empty() {
                "no role".to_owned()
            } else {
                roles
                    .iter()
                    .map(|role| role.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        let entry = |name: &str, token: &str, roles: &[Role]| TokenEntry {
            name: name.to_owned(),
            sha256: token_digest(token),
            roles: roles.to_vec(),
        };
        Credentials::Known {
            tokens: vec![
                entry("as", "as-secret", &[Role::Evaluate]),
                entry("ops", "ops-secret", &[Role::Operator]),
                entry("root", "root-secret", &[Role::Admin]),
            ],
            clients: vec![ClientEntry {
                subject: "as.example.com".to_owned(),
                roles: vec![Role::Evaluate],
            }],
        }
    }

    #[test]
    fn each_role_grants_its_calls_and_admin_grants_the_operators() {
        use Role::*;
        let cases: &[(&str, Role, bool)] = &[
            ("as-secret", Evaluate, true),
            ("as-secret", Operator, false),
            ("as-secret", Admin, false),
            ("ops-secret", Evaluate, false),
            ("ops-secret", Operator, true),
            ("ops-secret", Admin, false),
            ("root-secret", Evaluate, false),
            ("root-secret", Operator, true),
            ("root-secret", Admin, true),
        ];
        for (token, needed, allowed) in cases {
            let value = format!("Bearer {token}");
            let presented = Presented {
                authorization: Some(&value),
                certificate: None,
            };
            let result = credentials().authorize(presented, *needed);
            assert_eq!(result.is_ok(), *allowed, "{token} → {needed:?}: {result:?}");
        }
    }

    #[test]
    fn refusals_say_what_is_missing_and_never_echo_the_token() {
        let credentials = credentials();
        let cases: &[(Option<&str>, AuthError)] = &[
            (
                None,
                AuthError::Missing {
                    needed: "the `operator` role",
                },
            ),
            (Some("Basic b3BzOnNlY3JldA=="), AuthError::Malformed),
            (Some("Bearer "), AuthError::Malformed),
            (Some("Bearer guessed-secret"), AuthError::UnknownToken),
            (
                Some("Bearer as-secret"),
                AuthError::Forbidden {
                    caller: "as".to_owned(),
                    needed: "operator",
                    held: "evaluate".to_owned(),
                },
            ),
        ];
        for (presented, expected) in cases {
            let error = credentials
                .authorize(
                    Presented {
                        authorization: *presented,
                        certificate: None,
                    },
                    Role::Operator,
                )
                .expect_err("refused");
            assert_eq!(&error, expected);
            for secret in ["as-secret", "guessed-secret", "b3BzOnNlY3JldA=="] {
                assert!(!error.to_string().contains(secret), "{error}");
            }
        }
    }

    #[test]
    fn with_no_auth_configured_every_caller_is_unauthenticated_and_allowed() {
        let identity = Credentials::Open
            .authorize(Presented::default(), Role::Admin)
            .unwrap();
        assert_eq!(identity, Identity::Unauthenticated);
        assert_eq!(identity.name(), None);
    }

    #[test]
    fn digests_compare_equal_only_when_every_byte_is() {
        let digest = token_digest("a");
        assert!(same_digest(&digest, &token_digest("a")));
        let mut last = digest;
        last[31] ^= 1;
        assert!(!same_digest(&digest, &last));
        let mut first = digest;
        first[0] ^= 0x80;
        assert!(!same_digest(&digest, &first));
    }

    struct For(&'static str);

    impl PresentedCertificate for For {
        fn is_for(&self, subject: &str) -> bool {
            self.0 == subject
        }
    }

    #[test]
    fn a_client_certificate_is_known_by_its_subject_and_a_token_comes_first() {
        let credentials = credentials();
        let as_certificate = For("as.example.com");
        let by_certificate = Presented {
            authorization: None,
            certificate: Some(&as_certificate),
        };
        assert_eq!(
            credentials.authorize(by_certificate, Role::Evaluate),
            Ok(Identity::Certificate {
                subject: "as.example.com".to_owned(),
                roles: vec![Role::Evaluate],
            })
        );
        assert!(matches!(
            credentials.authorize(by_certificate, Role::Operator),
            Err(AuthError::Forbidden { .. })
        ));
        let stranger = For("stranger.example");
        let unknown = Presented {
            authorization: None,
            certificate: Some(&stranger),
        };
        assert_eq!(
            credentials.authorize(unknown, Role::Evaluate),
            Err(AuthError::UnknownCertificate)
        );
        let both = Presented {
            authorization: Some("Bearer ops-secret"),
            certificate: Some(&as_certificate),
        };
        assert_eq!(
            credentials.authorize(both, Role::Operator).unwrap().name(),
            Some("ops"),
            "a token, when sent, is who calls"
        );
    }
}
