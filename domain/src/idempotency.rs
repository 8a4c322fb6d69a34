//! Idempotency keys (Stripe / IETF `Idempotency-Key` semantics) and the
//! fingerprint of the request a key was first used with.

use sha2::{Digest, Sha256};

use crate::error::DomainError;

/// A client-chosen key: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 255;

    /// Validates a key.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        if input.is_empty() || input.len() > Self::MAX_LEN {
            return Err(DomainError::bad_input(format!(
                "idempotencyKey must have 1 to {} characters",
                Self::MAX_LEN
            )));
        }
        if !input.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(DomainError::bad_input(
                "idempotencyKey must contain printable ASCII characters only",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 over the operation name and its canonical input, hex encoded.
/// Two requests with the same key must have the same fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Fingerprints an operation and its normalized input. The input must be
    /// built from validated values (canonical amounts, parsed ids), so that
    /// `"12.5"` and `"12.50"` are the same request.
    pub fn of(operation: &str, canonical_input: &serde_json::Value) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update([0u8]);
        write_canonical(canonical_input, &mut hasher);
        Self(hex::encode(hasher.finalize()))
    }

    /// Rebuilds a stored fingerprint.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Feeds a JSON value with object keys in sorted order, whatever map type
/// serde_json was built with.
fn write_canonical(value: &serde_json::Value, hasher: &mut Sha256) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(
                    serde_json::Value::String(key.clone())
                        .to_string()
                        .as_bytes(),
                );
                hasher.update(b":");
                if let Some(v) = map.get(key) {
                    write_canonical(v, hasher);
                }
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        serde_json::Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                write_canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_printable_ascii_up_to_255() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("é").is_err());
    }

    #[test]
    fn fingerprints_depend_on_operation_and_input() {
        let a = Fingerprint::of("transfer", &json!({"amount": "1", "to": "x"}));
        let b = Fingerprint::of("transfer", &json!({"to": "x", "amount": "1"}));
        let c = Fingerprint::of("deposit", &json!({"amount": "1", "to": "x"}));
        let d = Fingerprint::of("transfer", &json!({"amount": "2", "to": "x"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
