//! The operator's Cedar policies: loading a policy directory, turning signals into Cedar
//! entities and context, and deciding by the outcome rules of DESIGN.md.
//!
//! Deciding is pure and synchronous; nothing here touches the network or the store.

mod decide;
mod entities;
mod err;
mod load;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::SystemTime;

use cedar_policy::{Effect, Entities, Entity, PolicySet, Schema};

pub use decide::PolicyOutcome;
pub use entities::EntityError;
pub use err::{AnnotationError, LoadError, LoadErrors};
pub use load::{load_policy_dir, load_policy_dir_with};

use crate::errors::OAuthErrorCode;
use crate::known_clients::Registry;
use crate::registration::capabilities::Capabilities;

/// What a policy's annotations say, read once at load time.
#[derive(Clone, Debug)]
pub struct PolicyInfo {
    /// From `@id`, or `file.cedar:line` when it has none.
    pub id: String,
    pub effect: Effect,
    /// `@reason`: the message people see.
    pub reason: Option<String>,
    /// `@error`: the OAuth error of a deny.
    pub error: Option<OAuthErrorCode>,
    /// `@obligation`: conditions of an approve (comma-separated in the annotation).
    pub obligations: Vec<String>,
    /// `@step_up`: challenges that turn this forbid into a step-up.
    pub step_up: Vec<String>,
    pub file: String,
    pub line: usize,
    /// Position in the policy set: files by name, then policies by line.
    pub order: usize,
}

/// A loaded, validated policy set with its schema and static entities. Immutable once
/// built; a new set replaces it whole.
pub struct PolicyBundle {
    pub version: String,
    pub loaded_at: SystemTime,
    permits: PolicySet,
    forbids: PolicySet,
    infos: HashMap<String, PolicyInfo>,
    schema: Schema,
    entities: Entities,
    /// The JSON of `Tenant::"default"` in `entities.json`.
    default_tenant: serde_json::Value,
    /// Each declared tenant's `known_client_names` (`default` for undeclared tenants): the
    /// names a registration must not imitate with look-alike characters.
    /// Each tenant's `known_client_names`, folded once for look-alike comparison.
    known_names: HashMap<String, Vec<crate::registration::names::Folded>>,
    /// The known-clients registry (`known-clients.toml`), whose entries are `KnownClient`
    /// entities in [`PolicyBundle::entities`].
    registry: Registry,
    /// Each declared tenant's `authorization_server`: what its AS supports.
    capabilities: HashMap<String, Capabilities>,
    /// Tenant entities built from the default tenant for names `entities.json` lacks.
    undeclared_tenants: RwLock<HashMap<String, Entity>>,
    /// What loaded but looks wrong: forbids without `@reason`, unknown annotations,
    /// policies Cedar's validator finds impossible.
    pub warnings: Vec<LoadError>,
}

/// The `@step_up` challenges and `@obligation` values policies may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    /// `admin_approval` and the kinds the AS attests (`step_up.attested_challenges`).
    pub challenges: Vec<String>,
    /// What the authorization server honours (`policy.obligations`).
    pub obligations: Vec<String>,
}

/// The obligations clientgate documents and the example authorization server honours.
pub const DEFAULT_OBLIGATIONS: &[&str] = &["require_consent"];

impl Default for Vocabulary {
    fn default() -> Vocabulary {
        Vocabulary {
            challenges: std::iter::once(crate::step_up::ADMIN_APPROVAL)
                .chain(crate::step_up::DEFAULT_ATTESTED_CHALLENGES.iter().copied())
                .map(str::to_owned)
                .collect(),
            obligations: DEFAULT_OBLIGATIONS.iter().map(|o| o.to_string()).collect(),
        }
    }
}

impl PolicyBundle {
    pub fn policy_count(&self) -> usize {
        self.infos.len()
    }

    pub fn info(&self, id: &str) -> Option<&PolicyInfo> {
        self.infos.get(id)
    }

    /// What `tenant`'s authorization server supports (the default tenant's for a tenant
    /// `entities.json` does not declare); `None` when it does not say.
    pub fn capabilities(&self, tenant: &str) -> Option<&Capabilities> {
        if self
            .entities
            .get(&entities::uid("Tenant", tenant))
            .is_some()
        {
            return self.capabilities.get(tenant);
        }
        self.capabilities.get("default")
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}
