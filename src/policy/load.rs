//! Loading a policy directory: the schema, every `*.cedar` file and `entities.json`,
//! validated in full before anything is used.
//!
//! Policies are renamed after their `@id` annotation (Cedar itself ignores it); the
//! outcome annotations are read once here so that deciding never parses text.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use cedar_policy::{
    Effect, Entities, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

use super::err::{AnnotationError, LoadError, LoadErrors};
use super::{PolicyBundle, PolicyInfo, Vocabulary};
use crate::errors::OAuthErrorCode;
use crate::known_clients::{self, Registry};
use crate::registration::capabilities::Capabilities;

const SCHEMA_FILE: &str = "schema.cedarschema";
const ENTITIES_FILE: &str = "entities.json";

/// One source file, kept for error positions.
struct Source {
    path: PathBuf,
    text: String,
}

/// The annotations clientgate reads; any other is probably a typo.
const ANNOTATIONS: [&str; 5] = ["id", "reason", "error", "obligation", "step_up"];

/// Loads and validates the policy directory `dir` with the default vocabulary.
pub fn load_policy_dir(dir: &Path) -> Result<PolicyBundle, LoadErrors> {
    load_policy_dir_with(dir, &Vocabulary::default())
}

/// Loads and validates the policy directory `dir`: `@step_up` challenges and `@obligation`
/// values must be in `vocabulary`. What is suspicious but works is a warning, kept in
/// [`PolicyBundle::warnings`].
pub fn load_policy_dir_with(
    dir: &Path,
    vocabulary: &Vocabulary,
) -> Result<PolicyBundle, LoadErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let schema_source = read_source(&dir.join(SCHEMA_FILE)).map_err(single)?;
    let schema = match Schema::from_cedarschema_str(&schema_source.text) {
        Ok((schema, _warnings)) => schema,
        Err(error) => return Err(LoadErrors(diagnostic_errors(&schema_source, &error))),
    };

    let policy_sources = list_policy_files(dir)
        .map_err(single)?
        .into_iter()
        .map(|path| read_source(&path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(single)?;
    let mut infos: HashMap<String, PolicyInfo> = HashMap::new();
    let mut all = PolicySet::new();
    let mut permits = PolicySet::new();
    let mut forbids = PolicySet::new();
    let mut source_of: HashMap<String, usize> = HashMap::new();
    for (source_index, source) in policy_sources.iter().enumerate() {
        let parsed = match PolicySet::from_str(&source.text) {
            Ok(parsed) => parsed,
            Err(error) => {
                errors.extend(diagnostic_errors(source, &error));
                continue;
            }
        };
        for (policy, line) in in_file_order(&parsed, &source.text) {
            let file_name = file_name(&source.path);
            let id = policy
                .annotation("id")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{file_name}:{line}"));
            if let Some(existing) = infos.get(&id) {
                errors.push(LoadError::at_line(
                    &source.path,
                    line,
                    format!(
                        "policy id `{id}` is already used at {}:{}",
                        existing.file, existing.line
                    ),
                ));
                continue;
            }
            match read_annotations(&policy, &id, &file_name, line, infos.len())
                .and_then(|info| check_vocabulary(info, vocabulary))
            {
                Ok(info) => {
                    warnings.extend(annotation_warnings(&policy, &info, &source.path));
                    let renamed = policy.new_id(PolicyId::new(&id));
                    let target = match policy.effect() {
                        Effect::Permit => &mut permits,
                        Effect::Forbid => &mut forbids,
                    };
                    // Ids are unique (checked above), so adding cannot fail.
                    for set in [target, &mut all] {
                        if let Err(error) = set.add(renamed.clone()) {
                            errors.push(LoadError::at_line(&source.path, line, error.to_string()));
                        }
                    }
                    source_of.insert(id.clone(), source_index);
                    infos.insert(id, info);
                }
                Err(error) => {
                    errors.push(LoadError::at_line(&source.path, line, error.to_string()))
                }
            }
        }
    }

    let validation = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
    for error in validation.validation_errors() {
        let Some(&index) = source_of.get(AsRef::<str>::as_ref(error.policy_id())) else {
            errors.push(LoadError::plain(dir, error.to_string()));
            continue;
        };
        errors.extend(diagnostic_errors(&policy_sources[index], error));
    }
    for warning in validation.validation_warnings() {
        let Some(&index) = source_of.get(AsRef::<str>::as_ref(warning.policy_id())) else {
            warnings.push(LoadError::plain(dir, warning.to_string()));
            continue;
        };
        warnings.extend(diagnostic_errors(&policy_sources[index], warning));
    }

    let entities_path = dir.join(ENTITIES_FILE);
    let entities_source = read_source(&entities_path);
    let (entities, default_tenant) = match &entities_source {
        Ok(source) => match load_entities(source, &schema) {
            Ok(loaded) => loaded,
            Err(error) => {
                errors.push(error);
                (Entities::empty(), serde_json::Value::Null)
            }
        },
        Err(error) => {
            errors.push(error.clone());
            (Entities::empty(), serde_json::Value::Null)
        }
    };

    // The known-clients registry is optional: without the file no client is known.
    let registry_path = dir.join(known_clients::FILE);
    let registry_source = registry_path.exists().then(|| read_source(&registry_path));
    let mut registry = Registry::default();
    match &registry_source {
        None => {}
        Some(Err(error)) => errors.push(error.clone()),
        Some(Ok(source)) => match Registry::parse(&source.text) {
            Ok(parsed) => registry = parsed,
            Err(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|problem| LoadError::plain(&registry_path, problem)),
            ),
        },
    }
    let entities = match super::entities::with_known_clients(entities, &registry, &schema) {
        Ok(entities) => entities,
        Err(message) => {
            errors.push(LoadError::plain(&registry_path, message));
            Entities::empty()
        }
    };

    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    let mut hashed: Vec<&Source> = policy_sources.iter().collect();
    hashed.push(&schema_source);
    if let Some(Ok(source)) = &registry_source {
        hashed.push(source);
    }
    if let Ok(source) = &entities_source {
        hashed.push(source);
    }
    let tenants = entities_source
        .as_ref()
        .map(|source| declared_tenants(&source.text))
        .unwrap_or_default();
    Ok(PolicyBundle {
        version: version_of(&hashed),
        loaded_at: SystemTime::now(),
        permits,
        forbids,
        infos,
        schema,
        entities,
        known_names: known_client_names(&tenants),
        registry,
        capabilities: tenant_capabilities(&tenants),
        default_tenant,
        undeclared_tenants: Default::default(),
        warnings,
    })
}

/// Each tenant `entities.json` declares, with its attributes as written (validated against
/// the schema by `load_entities`).
fn declared_tenants(entities_json: &str) -> Vec<(String, serde_json::Value)> {
    let json: serde_json::Value = serde_json::from_str(entities_json).unwrap_or_default();
    json.as_array()
        .into_iter()
        .flatten()
        .filter(|entity| entity.pointer("/uid/type").and_then(|t| t.as_str()) == Some("Tenant"))
        .filter_map(|entity| {
            let tenant = entity.pointer("/uid/id")?.as_str()?.to_owned();
            Some((tenant, entity.get("attrs").cloned().unwrap_or_default()))
        })
        .collect()
}

/// Each declared tenant's `authorization_server` attribute: what its AS supports.
fn tenant_capabilities(tenants: &[(String, serde_json::Value)]) -> HashMap<String, Capabilities> {
    tenants
        .iter()
        .filter_map(|(tenant, attrs)| {
            let server = attrs.get("authorization_server")?;
            Some((tenant.clone(), Capabilities::from_json(server)))
        })
        .collect()
}

/// Each declared tenant's `known_client_names` attribute (empty when it has none).
fn known_client_names(
    tenants: &[(String, serde_json::Value)],
) -> HashMap<String, Vec<crate::registration::names::Folded>> {
    tenants
        .iter()
        .map(|(tenant, attrs)| {
            let names = attrs
                .get("known_client_names")
                .and_then(|names| names.as_array())
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|name| {
                            name.as_str().map(crate::registration::names::Folded::of)
                        })
                        .collect()
                })
                .unwrap_or_default();
            (tenant.clone(), names)
        })
        .collect()
}

/// Refuses `@step_up` challenges and `@obligation` values that nothing would act on: a
/// misspelt obligation would be silently ignored by the authorization server.
fn check_vocabulary(
    info: PolicyInfo,
    vocabulary: &Vocabulary,
) -> Result<PolicyInfo, AnnotationError> {
    if let Some(unknown) = info
        .step_up
        .iter()
        .find(|challenge| !vocabulary.challenges.contains(challenge))
    {
        return Err(AnnotationError::UnknownChallenge {
            policy: info.id.clone(),
            challenge: unknown.clone(),
            known: vocabulary.challenges.join(", "),
        });
    }
    if let Some(unknown) = info
        .obligations
        .iter()
        .find(|obligation| !vocabulary.obligations.contains(obligation))
    {
        return Err(AnnotationError::UnknownObligation {
            policy: info.id.clone(),
            obligation: unknown.clone(),
            known: vocabulary.obligations.join(", "),
        });
    }
    Ok(info)
}

/// A forbid without `@reason` (its deny would say only its id) and annotations clientgate
/// does not read (probably misspelt).
fn annotation_warnings(policy: &Policy, info: &PolicyInfo, file: &Path) -> Vec<LoadError> {
    let mut warnings = Vec::new();
    if info.effect == Effect::Forbid && info.reason.is_none() {
        warnings.push(LoadError::at_line(
            file,
            info.line,
            format!(
                "policy `{}` is a forbid without `@reason`: its denials will only name the policy",
                info.id
            ),
        ));
    }
    for (key, _) in policy.annotations() {
        if !ANNOTATIONS.contains(&key) {
            warnings.push(LoadError::at_line(
                file,
                info.line,
                format!(
                    "policy `{}`: clientgate ignores `@{key}` (it reads {})",
                    info.id,
                    ANNOTATIONS.map(|name| format!("@{name}")).join(", ")
                ),
            ));
        }
    }
    warnings
}

fn single(error: LoadError) -> LoadErrors {
    LoadErrors(vec![error])
}

fn read_source(path: &Path) -> Result<Source, LoadError> {
    fs::read_to_string(path)
        .map(|text| Source {
            path: path.to_owned(),
            text,
        })
        .map_err(|error| LoadError::plain(path, format!("cannot read: {error}")))
}

/// The `*.cedar` files directly in `dir`, sorted by name.
fn list_policy_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = fs::read_dir(dir).map_err(|error| {
        LoadError::plain(dir, format!("cannot read the policy directory: {error}"))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "cedar"))
        .collect();
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The policies of one file in the order they appear, each with its 1-based line.
fn in_file_order(parsed: &PolicySet, text: &str) -> Vec<(Policy, usize)> {
    let mut policies: Vec<&Policy> = parsed.policies().collect();
    // Cedar names the policies of one text `policy0`, `policy1`, … in source order.
    policies.sort_by_key(|policy| {
        AsRef::<str>::as_ref(policy.id())
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    let mut search_from = 0;
    policies
        .into_iter()
        .map(|policy| {
            let policy_text = policy.to_string();
            let offset = text[search_from..]
                .find(policy_text.trim())
                .map_or(search_from, |found| search_from + found);
            search_from = offset + 1;
            (policy.clone(), line_of(text, offset))
        })
        .collect()
}

/// Reads `@reason`, `@error`, `@obligation` and `@step_up`, refusing values that could
/// never work: an unknown OAuth error, an obligation on a forbid, a step-up on a permit.
fn read_annotations(
    policy: &Policy,
    id: &str,
    file: &str,
    line: usize,
    order: usize,
) -> Result<PolicyInfo, AnnotationError> {
    let effect = policy.effect();
    let list = |key: &str| -> Vec<String> {
        policy
            .annotation(key)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let error = match policy.annotation("error") {
        None => None,
        Some(value) => Some(OAuthErrorCode::parse(value).ok_or_else(|| {
            AnnotationError::UnknownErrorCode {
                policy: id.to_owned(),
                value: value.to_owned(),
                known: OAuthErrorCode::ALL
                    .iter()
                    .map(|code| code.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?),
    };
    let obligations = list("obligation");
    let step_up = list("step_up");
    if let Some(bad) = step_up.iter().find(|challenge| !is_identifier(challenge)) {
        return Err(AnnotationError::ChallengeNotAnIdentifier {
            policy: id.to_owned(),
            challenge: bad.clone(),
        });
    }
    match effect {
        Effect::Permit if !step_up.is_empty() => {
            return Err(AnnotationError::StepUpOnPermit {
                policy: id.to_owned(),
            });
        }
        Effect::Permit if error.is_some() => {
            return Err(AnnotationError::ErrorOnPermit {
                policy: id.to_owned(),
            });
        }
        Effect::Forbid if !obligations.is_empty() => {
            return Err(AnnotationError::ObligationOnForbid {
                policy: id.to_owned(),
            });
        }
        _ => {}
    }
    Ok(PolicyInfo {
        id: id.to_owned(),
        effect,
        reason: policy.annotation("reason").map(str::to_owned),
        error,
        obligations,
        step_up,
        file: file.to_owned(),
        line,
        order,
    })
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses `entities.json` against the schema and returns the entities with the JSON of
/// `Tenant::"default"`, which undeclared tenants take their attributes from.
fn load_entities(
    source: &Source,
    schema: &Schema,
) -> Result<(Entities, serde_json::Value), LoadError> {
    let json: serde_json::Value = serde_json::from_str(&source.text).map_err(|error| {
        LoadError::at(
            &source.path,
            error.line(),
            error.column(),
            format!("not valid JSON: {error}"),
        )
    })?;
    let default_tenant = json
        .as_array()
        .and_then(|entities| {
            entities.iter().find(|entity| {
                entity.pointer("/uid/type").and_then(|t| t.as_str()) == Some("Tenant")
                    && entity.pointer("/uid/id").and_then(|t| t.as_str()) == Some("default")
            })
        })
        .cloned()
        .ok_or_else(|| {
            LoadError::plain(
                &source.path,
                "must declare `Tenant::\"default\"`: tenants not listed take its attributes",
            )
        })?;
    let entities = Entities::from_json_value(json, Some(schema))
        .map_err(|error| LoadError::plain(&source.path, error_chain(&error)))?;
    Ok((entities, default_tenant))
}

/// A diagnostic and its related diagnostics, each placed at its first labelled span.
fn diagnostic_errors(source: &Source, diagnostic: &dyn Diagnostic) -> Vec<LoadError> {
    let related: Vec<&dyn Diagnostic> = diagnostic
        .related()
        .map(|related| related.collect())
        .unwrap_or_default();
    let mut errors = vec![diagnostic_error(source, diagnostic)];
    errors.extend(
        related
            .into_iter()
            .map(|related| diagnostic_error(source, related)),
    );
    errors.dedup_by(|a, b| a.to_string() == b.to_string());
    errors
}

fn diagnostic_error(source: &Source, diagnostic: &dyn Diagnostic) -> LoadError {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    match offset {
        Some(offset) if offset <= source.text.len() => {
            let line = line_of(&source.text, offset);
            let line_start = source.text[..offset].rfind('\n').map_or(0, |at| at + 1);
            let column = source.text[line_start..offset].chars().count() + 1;
            LoadError::at(&source.path, line, column, message)
        }
        _ => LoadError::plain(&source.path, message),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    message
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A short hash of every file that makes the policy set, in a fixed order.
fn version_of(sources: &[&Source]) -> String {
    let mut by_name: BTreeMap<String, &str> = BTreeMap::new();
    for source in sources {
        by_name.insert(file_name(&source.path), &source.text);
    }
    let mut hasher = Sha256::new();
    for (name, text) in by_name {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}
