//! Authentication: password hashing, JWT access tokens, rotating refresh
//! tokens, and the [`Viewer`] every request carries.

pub mod passwords;
pub mod tokens;

use domain::{DomainError, Role};
use uuid::Uuid;

/// Who is asking, as established from the `Authorization` header.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// No token was presented.
    Anonymous,
    /// A token was presented but is invalid or expired.
    InvalidToken,
    /// A valid access token.
    User(AuthUser),
}

/// The claims of a valid access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user.
    pub id: Uuid,
    /// The login session (refresh token family).
    pub session_id: Uuid,
    /// Roles at the time the token was issued.
    pub roles: Vec<Role>,
    /// When the access token expires.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl AuthUser {
    /// Whether the user holds the role (admins hold every role).
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }
}

impl Viewer {
    /// The authenticated user, or `UNAUTHENTICATED`.
    pub fn require_user(&self) -> Result<&AuthUser, DomainError> {
        match self {
            Viewer::User(user) => Ok(user),
            Viewer::Anonymous => Err(DomainError::unauthenticated("sign in to do this")),
            Viewer::InvalidToken => Err(DomainError::unauthenticated(
                "the access token is invalid or expired",
            )),
        }
    }

    /// The authenticated user holding `role`, or `UNAUTHENTICATED` / `FORBIDDEN`.
    pub fn require_role(&self, role: Role) -> Result<&AuthUser, DomainError> {
        let user = self.require_user()?;
        if user.has_role(role) {
            Ok(user)
        } else {
            Err(DomainError::forbidden(format!(
                "this needs the {role} role"
            )))
        }
    }
}
