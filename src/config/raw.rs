//! Raw settings before they are typed: a TOML value keeps its type, the environment and
//! flags give text. Each reader says what it expected and what it found.

use super::ConfigError;

/// A raw setting before it is parsed.
pub(super) enum Raw {
    Toml(toml::Value),
    Text(String),
}

/// Why a raw setting is not a value of its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected {expected}, found {found}")]
    Expected {
        expected: &'static str,
        found: String,
    },
    #[error("{value} is outside {low}..={high}")]
    OutOfRange { value: u64, low: u64, high: u64 },
    /// The value has the right type but means nothing for this key.
    #[error("{0}")]
    Invalid(String),
}

fn expected(expected: &'static str, found: impl std::fmt::Display) -> ValueError {
    ValueError::Expected {
        expected,
        found: found.to_string(),
    }
}

impl Raw {
    pub(super) fn string(&self) -> Result<String, ValueError> {
        match self {
            Raw::Toml(toml::Value::String(text)) | Raw::Text(text) => Ok(text.clone()),
            Raw::Toml(other) => Err(expected("a string", other.type_str())),
        }
    }

    pub(super) fn integer(&self) -> Result<u64, ValueError> {
        match self {
            Raw::Toml(toml::Value::Integer(number)) if *number >= 0 => Ok(*number as u64),
            Raw::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| expected("a non-negative integer", format!("`{text}`"))),
            Raw::Toml(other) => Err(expected("a non-negative integer", other)),
        }
    }

    /// An integer within `range`, or an error naming the range.
    pub(super) fn integer_in(
        &self,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ValueError> {
        let value = self.integer()?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ValueError::OutOfRange {
                value,
                low: *range.start(),
                high: *range.end(),
            })
        }
    }

    pub(super) fn integers(&self) -> Result<Vec<u64>, ValueError> {
        match self {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item.as_integer() {
                    Some(number) if number >= 0 => Ok(number as u64),
                    _ => Err(expected("non-negative integers", item)),
                })
                .collect(),
            Raw::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.parse()
                        .map_err(|_| expected("non-negative integers", format!("`{item}`")))
                })
                .collect(),
            Raw::Toml(other) => Err(expected("an array of integers", other.type_str())),
        }
    }

    pub(super) fn boolean(&self) -> Result<bool, ValueError> {
        match self {
            Raw::Toml(toml::Value::Boolean(value)) => Ok(*value),
            Raw::Text(text) => match text.trim() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                other => Err(expected("true or false", format!("`{other}`"))),
            },
            Raw::Toml(other) => Err(expected("true or false", other)),
        }
    }

    /// A table of strings; from the environment, `key=value,key=value`.
    pub(super) fn string_table(&self) -> Result<Vec<(String, String)>, ValueError> {
        match self {
            Raw::Toml(toml::Value::Table(table)) => table
                .iter()
                .map(|(key, value)| {
                    value
                        .as_str()
                        .map(|value| (key.clone(), value.to_owned()))
                        .ok_or_else(|| expected("string values", format!("`{key}` = {value}")))
                })
                .collect(),
            Raw::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                        .ok_or_else(|| expected("key=value pairs", format!("`{pair}`")))
                })
                .collect(),
            Raw::Toml(other) => Err(expected("a table", other.type_str())),
        }
    }

    /// An array of tables (`[[section.key]]`); only a file can give one.
    pub(super) fn tables(&self) -> Result<Vec<toml::Table>, ValueError> {
        match self {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_table()
                        .cloned()
                        .ok_or_else(|| expected("tables", item))
                })
                .collect(),
            Raw::Text(_) => Err(ValueError::Invalid(
                "a list of tables can only be set in the configuration file".to_owned(),
            )),
            Raw::Toml(other) => Err(expected("an array of tables", other.type_str())),
        }
    }

    pub(super) fn strings(&self) -> Result<Vec<String>, ValueError> {
        match self {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| expected("strings", item))
                })
                .collect(),
            Raw::Text(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
            Raw::Toml(other) => Err(expected("an array of strings", other.type_str())),
        }
    }
}

/// The settings of a TOML file: `[section] key = value` to `section.key`; anything not a
/// table of values is an error.
pub(super) fn flatten(
    table: &toml::Table,
    source: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, toml::Value)> {
    let mut flat = Vec::new();
    for (section, value) in table {
        match value {
            toml::Value::Table(keys) => {
                for (key, value) in keys {
                    flat.push((format!("{section}.{key}"), value.clone()));
                }
            }
            _ => errors.push(ConfigError {
                source: source.to_owned(),
                key: section.clone(),
                message: "expected a [section] table".to_owned(),
            }),
        }
    }
    flat
}
