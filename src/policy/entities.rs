//! Signals to Cedar: the `Client` principal, the `Tenant` resource and the request context,
//! built with typed constructors (no JSON on the hot path).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};

use super::PolicyBundle;
use crate::known_clients::{KnownClient, Registry};
use crate::registration::Code;
use crate::signals::{Signals, rfc3339};
use crate::vocab::RegistrationType;

/// Undeclared tenants whose entities are kept; beyond this they are rebuilt per request.
const UNDECLARED_TENANT_CACHE: usize = 10_000;

/// The Cedar inputs of one decision.
pub struct CedarInputs {
    pub request: Request,
    pub entities: Entities,
    pub principal: Entity,
    pub context: Context,
    pub resource: EntityUid,
}

/// Why signals could not be expressed in Cedar; a decision fails closed on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    #[error("cannot build the client entity: {0}")]
    Client(String),
    #[error("cannot build the context: {0}")]
    Context(String),
    #[error("cannot build tenant `{tenant}`: {message}")]
    Tenant { tenant: String, message: String },
    #[error("cannot add the request entities: {0}")]
    Entities(String),
    #[error("cannot build the Cedar request: {0}")]
    Request(String),
    /// The context does not have the type the schema gives the actions' context.
    #[error("{0}")]
    Shape(String),
}

impl PolicyBundle {
    /// Builds the request and entities a decision evaluates. An `Err` means the signals
    /// could not be expressed in Cedar; callers fail closed.
    pub fn cedar_inputs(
        &self,
        signals: &Signals,
        principal_id: &str,
    ) -> Result<CedarInputs, EntityError> {
        self.cedar_inputs_imitating(signals, principal_id, self.imitated_name(signals))
    }

    /// [`PolicyBundle::cedar_inputs`] with the known name the registration imitates, when
    /// the caller has looked it up already (deciding looks once).
    pub(super) fn cedar_inputs_imitating(
        &self,
        signals: &Signals,
        principal_id: &str,
        imitated: Option<&str>,
    ) -> Result<CedarInputs, EntityError> {
        let known = signals
            .known_client
            .as_deref()
            .and_then(|id| self.registry.get(id));
        let principal = client_entity(signals, principal_id, known)?;
        let context = context_of(signals, imitated)?;
        let resource = uid("Tenant", &signals.tenant);
        let action = uid(
            "Action",
            match signals.registration_type {
                RegistrationType::Dcr => "register_dcr",
                RegistrationType::Cimd => "register_cimd",
            },
        );
        let mut extra = vec![principal.clone()];
        if self.entities.get(&resource).is_none() {
            extra.push(self.undeclared_tenant(&signals.tenant)?);
        }
        let entities = self
            .entities
            .clone()
            .add_entities(extra, None)
            .map_err(|error| EntityError::Entities(error.to_string()))?;
        let request = Request::new(
            principal.uid(),
            action,
            resource.clone(),
            context.clone(),
            None,
        )
        .map_err(|error| EntityError::Request(error.to_string()))?;
        Ok(CedarInputs {
            request,
            entities,
            principal,
            context,
            resource,
        })
    }

    /// Checks that the context built from `signals` has the type the schema gives the
    /// actions' context. Deciding does not check it (for speed), so a context that does not
    /// fit (rate windows the schema does not name) would fail every decision closed.
    pub fn check_context_shape(&self, signals: &Signals) -> Result<(), EntityError> {
        let inputs = self.cedar_inputs(signals, "probe")?;
        for action in ["register_dcr", "register_cimd"] {
            Request::new(
                inputs.principal.uid(),
                uid("Action", action),
                inputs.resource.clone(),
                inputs.context.clone(),
                Some(&self.schema),
            )
            .map_err(|error| {
                let mut message = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(inner) = cause {
                    message.push_str(&format!(": {inner}"));
                    cause = inner.source();
                }
                EntityError::Shape(message)
            })?;
        }
        Ok(())
    }

    /// The known client name of the tenant that the registration's `client_name` imitates
    /// with look-alike characters, if any (F-11).
    pub fn imitated_name(&self, signals: &Signals) -> Option<&str> {
        let name = signals.client_name.as_deref()?;
        let known = self
            .known_names
            .get(&signals.tenant)
            .or_else(|| self.known_names.get("default"))?;
        let folded = crate::registration::names::Folded::of(name);
        known
            .iter()
            .find(|known| folded.imitates(known))
            .map(|known| known.name.as_str())
    }

    /// A tenant that `entities.json` does not declare takes the attributes and parents of
    /// `Tenant::"default"`.
    fn undeclared_tenant(&self, tenant: &str) -> Result<Entity, EntityError> {
        if let Some(entity) = self
            .undeclared_tenants
            .read()
            .ok()
            .and_then(|cache| cache.get(tenant).cloned())
        {
            return Ok(entity);
        }
        let mut json = self.default_tenant.clone();
        json["uid"]["id"] = serde_json::Value::String(tenant.to_owned());
        let entity = Entity::from_json_value(json, Some(&self.schema)).map_err(|error| {
            EntityError::Tenant {
                tenant: tenant.to_owned(),
                message: error.to_string(),
            }
        })?;
        if let Ok(mut cache) = self.undeclared_tenants.write()
            && cache.len() < UNDECLARED_TENANT_CACHE
        {
            cache.insert(tenant.to_owned(), entity.clone());
        }
        Ok(entity)
    }
}

pub fn uid(type_name: &str, id: &str) -> EntityUid {
    // Parsing a name runs Cedar's parser (a few µs each): the three every decision names
    // are parsed once.
    static PARSED: LazyLock<[(&str, EntityTypeName); 3]> =
        LazyLock::new(|| ["Client", "Tenant", "Action"].map(|name| (name, parse_type_name(name))));
    let type_name = PARSED
        .iter()
        .find(|(name, _)| *name == type_name)
        .map_or_else(|| parse_type_name(type_name), |(_, parsed)| parsed.clone());
    EntityUid::from_type_name_and_id(type_name, EntityId::new(id))
}

fn parse_type_name(name: &str) -> EntityTypeName {
    EntityTypeName::from_str(name).expect("clientgate's entity type names are valid")
}

/// `datetime("…")` and `ip("…")` context values. Cedar builds each by parsing the name of
/// its extension function, which costs more than the rest of the context; so each thread
/// keeps the last one it built of each kind, and decisions in the same millisecond, or from
/// the same caller, share it.
fn extension_value(kind: Extension, argument: String) -> RestrictedExpression {
    thread_local! {
        static LAST: RefCell<[Option<(String, RestrictedExpression)>; 2]> =
            const { RefCell::new([None, None]) };
    }
    LAST.with_borrow_mut(|last| {
        let slot = &mut last[kind as usize];
        if let Some((cached, value)) = slot
            && *cached == argument
        {
            return value.clone();
        }
        let value = match kind {
            Extension::Datetime => RestrictedExpression::new_datetime(&argument),
            Extension::Ip => RestrictedExpression::new_ip(&argument),
        };
        *slot = Some((argument, value.clone()));
        value
    })
}

#[derive(Clone, Copy)]
enum Extension {
    Datetime = 0,
    Ip = 1,
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    let unique: HashSet<&str> = values.into_iter().collect();
    RestrictedExpression::new_set(unique.into_iter().map(string))
}

fn long(value: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(value).unwrap_or(i64::MAX))
}

/// The registry's clients as `KnownClient` entities beside the tenants.
pub(super) fn with_known_clients(
    entities: Entities,
    registry: &Registry,
    schema: &cedar_policy::Schema,
) -> Result<Entities, String> {
    let known = registry
        .clients
        .iter()
        .map(|client| {
            let mut attrs: HashMap<String, RestrictedExpression> =
                known_client_fields(client).into_iter().collect();
            attrs.insert("registers".to_owned(), strings(client.registers()));
            Entity::new(uid("KnownClient", &client.id), attrs, HashSet::new())
                .map_err(|error| format!("client `{}`: {error}", client.id))
        })
        .collect::<Result<Vec<_>, _>>()?;
    entities
        .add_entities(known, Some(schema))
        .map_err(|error| error.to_string())
}

/// What the `KnownClient` entity and a recognized principal's `known_client` both say.
fn known_client_fields(client: &KnownClient) -> Vec<(String, RestrictedExpression)> {
    vec![
        ("name".to_owned(), string(&client.name)),
        ("publisher".to_owned(), string(&client.publisher)),
        (
            "publisher_domain".to_owned(),
            string(&client.publisher_domain),
        ),
        (
            "native".to_owned(),
            RestrictedExpression::new_bool(client.native),
        ),
    ]
}

/// The `known_client` attribute of a recognized principal.
fn known_client_facts(client: &KnownClient) -> Result<RestrictedExpression, EntityError> {
    let mut fields = vec![("id".to_owned(), string(&client.id))];
    fields.extend(known_client_fields(client));
    RestrictedExpression::new_record(fields).map_err(|error| EntityError::Client(error.to_string()))
}

fn client_entity(
    signals: &Signals,
    principal_id: &str,
    known: Option<&KnownClient>,
) -> Result<Entity, EntityError> {
    let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
    let mut put = |name: &str, value: RestrictedExpression| {
        attrs.insert(name.to_owned(), value);
    };
    put(
        "registration_type",
        string(signals.registration_type.as_str()),
    );
    if let Some(client_id) = &signals.client_id {
        put("client_id", string(&client_id.uri));
        put("client_id_host", string(&client_id.host));
        if let Some(domain) = &client_id.registrable_domain {
            put("client_id_domain", string(domain));
        }
    }
    if let Some(name) = &signals.client_name {
        put("client_name", string(name));
    }
    if let Some(client_uri) = &signals.client_uri {
        put("client_uri", string(&client_uri.uri));
        put("client_uri_host", string(&client_uri.host));
        if let Some(domain) = &client_uri.registrable_domain {
            put("client_uri_domain", string(domain));
        }
    }
    let mut redirect_records = Vec::new();
    for redirect in &signals.redirects {
        let mut fields = vec![
            ("uri".to_owned(), string(&redirect.uri)),
            ("scheme".to_owned(), string(&redirect.scheme)),
            ("host".to_owned(), string(&redirect.host)),
            ("kind".to_owned(), string(redirect.kind.as_str())),
        ];
        if let Some(domain) = &redirect.registrable_domain {
            fields.push(("registrable_domain".to_owned(), string(domain)));
        }
        redirect_records.push(
            RestrictedExpression::new_record(fields)
                .map_err(|error| EntityError::Client(error.to_string()))?,
        );
    }
    put(
        "redirect_uris",
        RestrictedExpression::new_set(redirect_records),
    );
    put(
        "loopback_only",
        RestrictedExpression::new_bool(signals.loopback_only()),
    );
    put(
        "redirects_on_client_id_domain",
        RestrictedExpression::new_bool(signals.redirects_on_client_id_domain()),
    );
    put(
        "redirect_hosts",
        strings(
            signals
                .redirects
                .iter()
                .map(|r| r.host.as_str())
                .filter(|host| !host.is_empty()),
        ),
    );
    put(
        "redirect_domains",
        strings(
            signals
                .redirects
                .iter()
                .filter_map(|r| r.registrable_domain.as_deref()),
        ),
    );
    put(
        "foreign_redirect_domains",
        strings(signals.foreign_redirect_domains()),
    );
    put(
        "redirect_kinds",
        strings(signals.redirects.iter().map(|r| r.kind.as_str())),
    );
    put(
        "grant_types",
        strings(signals.grant_types.iter().map(String::as_str)),
    );
    put(
        "response_types",
        strings(signals.response_types.iter().map(String::as_str)),
    );
    put(
        "token_endpoint_auth_method",
        string(&signals.token_endpoint_auth_method),
    );
    put("scopes", strings(signals.scopes.iter().map(String::as_str)));
    for (name, value) in [
        ("application_type", &signals.application_type),
        ("software_id", &signals.software_id),
        ("software_version", &signals.software_version),
        (
            "software_statement_issuer",
            &signals.software_statement_issuer,
        ),
    ] {
        if let Some(value) = value {
            put(name, string(value));
        }
    }
    put(
        "contacts",
        strings(signals.contacts.iter().map(String::as_str)),
    );
    let mut parents = HashSet::new();
    if let Some(known) = known {
        attrs.insert("known_client".to_owned(), known_client_facts(known)?);
        parents.insert(uid("KnownClient", &known.id));
    }
    Entity::new(uid("Client", principal_id), attrs, parents)
        .map_err(|error| EntityError::Client(error.to_string()))
}

fn context_of(signals: &Signals, imitated: Option<&str>) -> Result<Context, EntityError> {
    let confusable = imitated.map(|_| Code::ClientNameConfusable.as_str());
    let mut pairs = vec![
        ("tenant".to_owned(), string(&signals.tenant)),
        ("user_agent".to_owned(), string(&signals.user_agent)),
        (
            "now".to_owned(),
            extension_value(Extension::Datetime, rfc3339::format(signals.now)),
        ),
        (
            "warnings".to_owned(),
            strings(
                signals
                    .warnings
                    .iter()
                    .map(String::as_str)
                    .chain(confusable),
            ),
        ),
        (
            "initial_access_token".to_owned(),
            RestrictedExpression::new_bool(signals.initial_access_token),
        ),
        (
            "user_authenticated".to_owned(),
            RestrictedExpression::new_bool(signals.user_authenticated),
        ),
        (
            "completed_challenges".to_owned(),
            strings(signals.completed_challenges.iter().map(String::as_str)),
        ),
    ];
    let mut rates = Vec::new();
    for (dimension, windows) in &signals.rates {
        let counts = windows
            .iter()
            .map(|(window, count)| (window.clone(), long(*count)));
        let record = RestrictedExpression::new_record(counts)
            .map_err(|error| EntityError::Context(error.to_string()))?;
        rates.push((dimension.clone(), record));
    }
    pairs.push((
        "rates".to_owned(),
        RestrictedExpression::new_record(rates)
            .map_err(|error| EntityError::Context(error.to_string()))?,
    ));
    pairs.push(("duplicates".to_owned(), long(signals.duplicates)));
    if let Some(first_seen) = signals.duplicate_first_seen {
        pairs.push((
            "duplicate_first_seen".to_owned(),
            extension_value(Extension::Datetime, rfc3339::format(first_seen)),
        ));
    }
    if let Some(known) = imitated {
        pairs.push(("client_name_imitates".to_owned(), string(known)));
    }
    if let Some(known) = &signals.impersonates_known_client {
        pairs.push(("impersonates_known_client".to_owned(), string(known)));
    }
    if let Some(cache) = &signals.cimd_cache {
        pairs.push(("cimd_cache".to_owned(), string(cache)));
    }
    if let Some(ip) = signals.caller_ip {
        pairs.push((
            "ip".to_owned(),
            extension_value(Extension::Ip, ip.to_canonical().to_string()),
        ));
    }
    Context::from_pairs(pairs).map_err(|error| EntityError::Context(error.to_string()))
}
