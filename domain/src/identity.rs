//! Validated identity inputs: e-mail addresses, passwords, display names, roles.

use std::fmt;

use crate::error::DomainError;

/// A syntactically valid e-mail address, trimmed and lower-cased.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses and normalizes an address.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let s = input.trim().to_lowercase();
        let invalid = || DomainError::bad_input("email is not a valid address");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || !domain.contains('.')
            || domain.contains("..")
        {
            return Err(invalid());
        }
        Ok(Self(s))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A form safe for logs: first character of the local part and the domain.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_owned(),
        }
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// A password that meets the policy. Its `Debug` form hides it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Shortest accepted password, in characters.
    pub const MIN_CHARS: usize = 10;
    /// Longest accepted password, in bytes (bounds hashing cost).
    pub const MAX_BYTES: usize = 256;

    /// Checks a new password against the policy.
    pub fn parse_new(input: &str) -> Result<Self, DomainError> {
        if input.chars().count() < Self::MIN_CHARS {
            return Err(DomainError::bad_input(format!(
                "password must have at least {} characters",
                Self::MIN_CHARS
            )));
        }
        Self::parse_existing(input)
    }

    /// Accepts a password presented at login: only the size is checked.
    pub fn parse_existing(input: &str) -> Result<Self, DomainError> {
        if input.is_empty() || input.len() > Self::MAX_BYTES {
            return Err(DomainError::bad_input(format!(
                "password must have 1 to {} bytes",
                Self::MAX_BYTES
            )));
        }
        Ok(Self(input.to_owned()))
    }

    /// The secret, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A display name: trimmed, 1 to 80 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest accepted name, in characters.
    pub const MAX_CHARS: usize = 80;

    /// Parses a display name.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let s = input.trim();
        if s.is_empty() || s.chars().count() > Self::MAX_CHARS {
            return Err(DomainError::bad_input(format!(
                "displayName must have 1 to {} characters",
                Self::MAX_CHARS
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(DomainError::bad_input(
                "displayName must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a user may do beyond their own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Every registered user.
    User,
    /// Customer support: read access to users.
    Support,
    /// Compliance: KYC reviews, audit log.
    Compliance,
    /// Administrators: everything, including settling withdrawals.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::User, Role::Support, Role::Compliance, Role::Admin];

    /// The lower-case name used in storage, tokens and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Support => "support",
            Role::Compliance => "compliance",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name, case-insensitively.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let lower = input.trim().to_ascii_lowercase();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == lower)
            .ok_or_else(|| {
                DomainError::bad_input("role must be one of user, support, compliance, admin")
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_validated() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ")
                .expect("valid")
                .as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a b@c.de",
            "a@@b.de",
            "a@.b.de",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masked_email_hides_the_local_part() {
        let e = Email::parse("alice@example.com").expect("valid");
        assert_eq!(e.masked(), "a***@example.com");
        assert!(!format!("{e:?}").contains("alice"));
    }

    #[test]
    fn passwords_follow_the_policy_and_never_print() {
        assert!(Password::parse_new("short").is_err());
        assert!(Password::parse_new(&"x".repeat(300)).is_err());
        let p = Password::parse_new("correct horse battery").expect("valid");
        assert_eq!(format!("{p:?}"), "Password(***)");
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ann ").expect("ok").as_str(), "Ann");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"a".repeat(81)).is_err());
        assert!(DisplayName::parse("a\u{0007}b").is_err());
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).expect("known"), role);
        }
        assert!(Role::parse("root").is_err());
    }
}
