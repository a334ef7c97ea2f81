//! API tokens and their roles.
//!
//! A token's secret is shown once, when it is created, and never stored: the store keeps its
//! SHA-256 hash. Secrets are 256 random bits, so a plain hash is enough (no salt or slow hash
//! is needed against guessing), and a lookup by hash reveals nothing about other tokens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{MetaError, Result};

/// What a token may do. Each role may do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: events, models, records, executions, logs.
    Viewer,
    /// Writes state: events, models and versions, metadata, starting and stopping executions,
    /// submitting workflows whose jobs run no commands or user code.
    Operator,
    /// Everything: workflows whose jobs run commands or user code, managing tokens.
    Admin,
}

impl Role {
    /// All roles, least privileged first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The name used in the API, the CLI and the store.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = MetaError;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| MetaError::Invalid {
                field: "role",
                message: format!("unknown role '{s}' (known: viewer, operator, admin)"),
            })
    }
}

/// A stored token (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    /// Unique name (who or what holds it).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Milliseconds since the epoch.
    pub create_time: i64,
}

/// Prefix of every secret this crate makes (so a leaked one is easy to recognise in logs).
const SECRET_PREFIX: &str = "fft_";

/// A new random secret: `fft_` and 64 hex digits (256 bits from the operating system).
pub fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        MetaError::Unavailable(format!("the operating system's random source failed: {e}"))
    })?;
    let mut s = String::with_capacity(SECRET_PREFIX.len() + 64);
    s.push_str(SECRET_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

/// The hash a secret is stored and looked up by (hex SHA-256).
pub fn secret_hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is `expected`, in time that does not depend on where they differ
/// (both are hashed first, so the lengths leak nothing either).
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    hashes_match(&secret_hash(presented), &secret_hash(expected)) && !expected.is_empty()
}

/// Whether two [`secret_hash`]es are equal, in constant time.
pub fn hashes_match(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Refuse secrets that are empty, padded or too short to resist guessing.
pub fn check_secret(secret: &str) -> Result<()> {
    let invalid = |message: &str| {
        Err(MetaError::Invalid {
            field: "token",
            message: message.into(),
        })
    };
    if secret.is_empty() {
        return invalid("a token must not be empty");
    }
    if secret.trim() != secret || secret.chars().any(|c| c.is_control() || c == ' ') {
        return invalid("a token must not contain spaces or control characters");
    }
    if secret.len() < 16 {
        return invalid("a token must be at least 16 characters long");
    }
    Ok(())
}

/// Check a token name: 1-64 characters of letters, digits, `-`, `_`, `.`, `@`.
pub(crate) fn check_token_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(MetaError::Invalid {
            field: "name",
            message: format!("token name '{name}': 1 to 64 letters, digits, '-', '_', '.' or '@'"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_checked() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 68);
        check_secret(&a).unwrap();
        assert!(check_secret("").is_err());
        assert!(check_secret("short").is_err());
        assert!(check_secret(" padded-token-value ").is_err());
        assert!(secrets_match(&a, &a));
        assert!(!secrets_match(&a, &b));
        assert!(
            !secrets_match("", ""),
            "an empty expected secret matches nothing"
        );
        assert_eq!(secret_hash("x").len(), 64);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("OPERATOR".parse::<Role>().unwrap(), Role::Operator);
        assert!("root".parse::<Role>().is_err());
        assert!(check_token_name("ci-bot@team").is_ok());
        assert!(check_token_name("a/b").is_err());
    }
}
