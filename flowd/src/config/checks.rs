//! What a single setting must be, and the duration type the file and flags read.

use std::{str::FromStr, time::Duration};

use super::ConfigError;

/// A value a setting cannot take: what was given and what is accepted.
#[derive(Debug)]
pub struct Rejected {
    value: String,
    expected: String,
}

impl Rejected {
    pub fn new(value: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            expected: expected.into(),
        }
    }

    /// The rejection as the error of one setting, named by its file key.
    pub fn of(self, field: &str) -> ConfigError {
        ConfigError::Invalid {
            key: super::table::file_key(field),
            value: self.value,
            expected: self.expected,
        }
    }
}

/// A duration written for people (`5s`, `1m30s`, `24h`), in the file and on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text).map(Self)
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        humantime_serde::deserialize(deserializer).map(Self)
    }
}

pub fn positive(value: &Duration) -> Result<(), Rejected> {
    if value.is_zero() {
        return Err(Rejected::new("0s", "a positive duration such as 5s"));
    }
    Ok(())
}

pub fn at_least_one<N: PartialEq + Default>(value: &N) -> Result<(), Rejected> {
    if *value == N::default() {
        return Err(Rejected::new("0", "at least 1"));
    }
    Ok(())
}

pub fn ring_buffer_size(value: &u32) -> Result<(), Rejected> {
    let page = crate::host::page_size();
    if !value.is_power_of_two() || *value < page {
        return Err(Rejected::new(
            value.to_string(),
            format!("a power of two of at least the page size ({page}), e.g. 1048576"),
        ));
    }
    Ok(())
}

/// Linux interface names are 1 to 15 bytes (IFNAMSIZ less the terminating zero).
pub fn interface_names(names: &Vec<String>) -> Result<(), Rejected> {
    if names.iter().any(|name| name.is_empty() || name.len() > 15) {
        return Err(Rejected::new(
            format!("{names:?}"),
            "interface names of 1 to 15 characters",
        ));
    }
    Ok(())
}
