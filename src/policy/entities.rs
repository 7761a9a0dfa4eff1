//! Signals to Cedar: the `Client` principal, the `Tenant` resource and the request context.
//!
//! The decision path builds them as Cedar values directly, with cedar-policy-core's types
//! (pinned to the same version as cedar-policy, whose conversions take them): going through
//! `RestrictedExpression`s would build an expression tree per attribute and run Cedar's
//! evaluator over it, and adding the principal through the public API would recompute the
//! transitive closure of every entity; together they cost more than the policies do. Loading
//! (the `KnownClient` entities) goes through the public API and the schema.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, Request};
use cedar_policy_core::ast::{self, PartialValue, Value};
use cedar_policy_core::entities::{
    Dereference, Entities as CoreEntities, NoEntitiesSchema, TCComputation,
};
use cedar_policy_core::evaluator::RestrictedEvaluator;
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;

use super::PolicyBundle;
use crate::known_clients::{KnownClient, Registry};
use crate::registration::Code;
use crate::signals::{Signals, rfc3339};
use crate::vocab::RegistrationType;

/// Undeclared tenants whose entities are kept; beyond this they are rebuilt per request.
const UNDECLARED_TENANT_CACHE: usize = 10_000;

/// The Cedar inputs of one decision.
pub struct CedarInputs {
    /// Holds the context (`request.context()`).
    pub request: Request,
    /// Holds the principal (`entities.get(&principal)`).
    pub entities: Entities,
    pub principal: EntityUid,
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
        let core: &CoreEntities = self.entities.as_ref();
        let principal = Arc::new(client_entity(signals, principal_id, known, core)?);
        let context = context_of(signals, imitated)?;
        let resource = uid("Tenant", &signals.tenant);
        let action = uid(
            "Action",
            match signals.registration_type {
                RegistrationType::Dcr => "register_dcr",
                RegistrationType::Cimd => "register_cimd",
            },
        );
        let principal_uid = principal.uid().clone();
        let entities = match self.entities.get(&resource) {
            // Nothing descends from the new principal and it carries all its ancestors, so
            // the closure holds without recomputing it.
            Some(_) => core.clone().add_entities(
                [principal],
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            ),
            None => {
                let tenant = self.undeclared_tenant(&signals.tenant)?;
                core.clone().add_entities(
                    [principal, Arc::new(tenant.as_ref().clone())],
                    None::<&NoEntitiesSchema>,
                    TCComputation::ComputeNow,
                    Extensions::all_available(),
                )
            }
        }
        .map_err(|error| EntityError::Entities(error.to_string()))?;
        let known_uid = |uid: &EntityUid| ast::EntityUIDEntry::known(uid.as_ref().clone(), None);
        let request = ast::Request::new_unchecked(
            ast::EntityUIDEntry::known(principal_uid.clone(), None),
            known_uid(&action),
            known_uid(&resource),
            Some(context),
        );
        Ok(CedarInputs {
            request: Request::from(request),
            entities: Entities::from(entities),
            principal: EntityUid::from(principal_uid),
            resource,
        })
    }

    /// Checks that the context built from `signals` has the type the schema gives the
    /// actions' context. Deciding does not check it (for speed), so a context that does not
    /// fit (rate windows the schema does not name) would fail every decision closed.
    pub fn check_context_shape(&self, signals: &Signals) -> Result<(), EntityError> {
        let inputs = self.cedar_inputs(signals, "probe")?;
        let context = inputs
            .request
            .context()
            .cloned()
            .ok_or_else(|| EntityError::Request("the request has no context".to_owned()))?;
        for action in ["register_dcr", "register_cimd"] {
            Request::new(
                inputs.principal.clone(),
                uid("Action", action),
                inputs.resource.clone(),
                context.clone(),
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
    // Parsing a name runs Cedar's parser (a few µs each): the four a decision names are
    // parsed once.
    static PARSED: LazyLock<[(&str, EntityTypeName); 4]> = LazyLock::new(|| {
        ["Client", "Tenant", "Action", "KnownClient"].map(|name| (name, parse_type_name(name)))
    });
    let type_name = PARSED
        .iter()
        .find(|(name, _)| *name == type_name)
        .map_or_else(|| parse_type_name(type_name), |(_, parsed)| parsed.clone());
    EntityUid::from_type_name_and_id(type_name, EntityId::new(id))
}

fn parse_type_name(name: &str) -> EntityTypeName {
    EntityTypeName::from_str(name).expect("clientgate's entity type names are valid")
}

/// `datetime("…")` and `ip("…")` context values, evaluated by Cedar's extension (~10 µs
/// each). Each thread keeps the last one it built for each context member, and decisions in
/// the same second, of the same fingerprint, or from the same caller, share it.
fn extension_value(kind: Extension, argument: String) -> Result<Value, EntityError> {
    static NAMES: LazyLock<[ast::Name; 2]> = LazyLock::new(|| {
        ["datetime", "ip"].map(|name| {
            ast::Name::parse_unqualified_name(name).expect("Cedar's extension names parse")
        })
    });
    thread_local! {
        static LAST: RefCell<[Option<(String, Value)>; 3]> =
            const { RefCell::new([None, None, None]) };
    }
    LAST.with_borrow_mut(|last| {
        let slot = &mut last[kind as usize];
        if let Some((cached, value)) = slot
            && *cached == argument
        {
            return Ok(value.clone());
        }
        let call = ast::RestrictedExpr::call_extension_fn(
            NAMES[kind.constructor()].clone(),
            [ast::RestrictedExpr::val(argument.as_str())],
        );
        let value = RestrictedEvaluator::new(Extensions::all_available())
            .interpret(call.as_borrowed())
            .map_err(|error| EntityError::Context(format!("`{argument}`: {error}")))?;
        *slot = Some((argument, value.clone()));
        Ok(value)
    })
}

/// The context members built by an extension constructor; each has its own cached value.
#[derive(Clone, Copy)]
enum Extension {
    Now = 0,
    FirstSeen = 1,
    Ip = 2,
}

impl Extension {
    /// The index of its constructor's name: `datetime` or `ip`.
    fn constructor(self) -> usize {
        match self {
            Extension::Now | Extension::FirstSeen => 0,
            Extension::Ip => 1,
        }
    }
}

fn string(value: &str) -> Value {
    Value::from(value)
}

/// A Cedar set (duplicates fold).
fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> Value {
    Value::set(values.into_iter().map(string), None)
}

fn long(value: u64) -> Value {
    Value::from(i64::try_from(value).unwrap_or(i64::MAX))
}

fn record(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::record(
        fields
            .into_iter()
            .map(|(name, value)| (SmolStr::new_static(name), value)),
        None,
    )
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
            let mut attrs = known_client_fields(client);
            attrs.push(("registers", strings(client.registers())));
            Entity::from(ast::Entity::new_with_attr_partial_value(
                uid("KnownClient", &client.id).as_ref().clone(),
                attrs
                    .into_iter()
                    .map(|(name, value)| (SmolStr::new_static(name), PartialValue::from(value))),
                HashSet::new(),
                HashSet::new(),
                [],
            ))
        })
        .collect::<Vec<_>>();
    entities
        .add_entities(known, Some(schema))
        .map_err(|error| error.to_string())
}

/// What the `KnownClient` entity and a recognized principal's `known_client` both say.
fn known_client_fields(client: &KnownClient) -> Vec<(&'static str, Value)> {
    vec![
        ("name", string(&client.name)),
        ("publisher", string(&client.publisher)),
        ("publisher_domain", string(&client.publisher_domain)),
        ("native", Value::from(client.native)),
    ]
}

/// The `known_client` attribute of a recognized principal.
fn known_client_facts(client: &KnownClient) -> Value {
    let mut fields = vec![("id", string(&client.id))];
    fields.extend(known_client_fields(client));
    record(fields)
}

fn client_entity(
    signals: &Signals,
    principal_id: &str,
    known: Option<&KnownClient>,
    entities: &CoreEntities,
) -> Result<ast::Entity, EntityError> {
    let mut attrs: Vec<(&'static str, Value)> = Vec::with_capacity(32);
    let mut put = |name: &'static str, value: Value| attrs.push((name, value));
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
    let redirect_records = signals.redirects.iter().map(|redirect| {
        let mut fields = vec![
            ("uri", string(&redirect.uri)),
            ("scheme", string(&redirect.scheme)),
            ("host", string(&redirect.host)),
            ("kind", string(redirect.kind.as_str())),
        ];
        if let Some(domain) = &redirect.registrable_domain {
            fields.push(("registrable_domain", string(domain)));
        }
        record(fields)
    });
    put("redirect_uris", Value::set(redirect_records, None));
    put("loopback_only", Value::from(signals.loopback_only()));
    put(
        "redirects_on_client_id_domain",
        Value::from(signals.redirects_on_client_id_domain()),
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
    let mut ancestors = HashSet::new();
    if let Some(known) = known {
        put("known_client", known_client_facts(known));
        let parent = uid("KnownClient", &known.id).as_ref().clone();
        // The known client's own ancestors (none in the registry, but an operator's
        // entities could give it some), so that the principal carries its whole closure.
        if let Dereference::Data(entity) = entities.entity(&parent) {
            ancestors.extend(entity.ancestors().cloned());
        }
        parents.insert(parent);
    }
    ancestors.retain(|ancestor| !parents.contains(ancestor));
    Ok(ast::Entity::new_with_attr_partial_value(
        uid("Client", principal_id).as_ref().clone(),
        attrs
            .into_iter()
            .map(|(name, value)| (SmolStr::new_static(name), PartialValue::from(value))),
        ancestors,
        parents,
        [],
    ))
}

fn context_of(signals: &Signals, imitated: Option<&str>) -> Result<ast::Context, EntityError> {
    let confusable = imitated.map(|_| Code::ClientNameConfusable.as_str());
    let mut pairs = vec![
        ("tenant", string(&signals.tenant)),
        ("user_agent", string(&signals.user_agent)),
        (
            "now",
            extension_value(Extension::Now, rfc3339::format_seconds(signals.now))?,
        ),
        (
            "warnings",
            strings(
                signals
                    .warnings
                    .iter()
                    .map(String::as_str)
                    .chain(confusable),
            ),
        ),
        (
            "initial_access_token",
            Value::from(signals.initial_access_token),
        ),
        (
            "user_authenticated",
            Value::from(signals.user_authenticated),
        ),
        (
            "completed_challenges",
            strings(signals.completed_challenges.iter().map(String::as_str)),
        ),
    ];
    let rates = signals.rates.iter().map(|(dimension, windows)| {
        let counts = windows
            .iter()
            .map(|(window, count)| (SmolStr::from(window.as_str()), long(*count)));
        (
            SmolStr::from(dimension.as_str()),
            Value::record(counts, None),
        )
    });
    pairs.push(("rates", Value::record(rates, None)));
    pairs.push(("duplicates", long(signals.duplicates)));
    if let Some(first_seen) = signals.duplicate_first_seen {
        pairs.push((
            "duplicate_first_seen",
            extension_value(Extension::FirstSeen, rfc3339::format(first_seen))?,
        ));
    }
    if let Some(known) = imitated {
        pairs.push(("client_name_imitates", string(known)));
    }
    if let Some(known) = &signals.impersonates_known_client {
        pairs.push(("impersonates_known_client", string(known)));
    }
    if let Some(cache) = &signals.cimd_cache {
        pairs.push(("cimd_cache", string(cache)));
    }
    if let Some(ip) = signals.caller_ip {
        pairs.push((
            "ip",
            extension_value(Extension::Ip, ip.to_canonical().to_string())?,
        ));
    }
    let fields: BTreeMap<SmolStr, Value> = pairs
        .into_iter()
        .map(|(name, value)| (SmolStr::new_static(name), value))
        .collect();
    Ok(ast::Context::Value(Arc::new(fields)))
}
