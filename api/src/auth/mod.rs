//! Authentication: password hashing, JWT access tokens, rotating refresh
//! tokens, and the [`Viewer`] every request carries.

pub mod oauth;
pub mod passwords;
pub mod tokens;
pub mod webauthn;

use domain::{DomainError, Role};
use entity::store::audit::{self, AuditRecord};
use uuid::Uuid;

use crate::error::Result;
use crate::state::AppState;

/// Writes a security audit record; the request fails (masked, logged once)
/// when it cannot be written.
pub async fn audit(
    state: &AppState,
    actor_id: Option<Uuid>,
    action: &str,
    subject_type: &str,
    subject_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    audit::record(
        &state.db,
        AuditRecord {
            actor_id,
            action,
            subject_type,
            subject_id,
            details,
        },
    )
    .await?;
    Ok(())
}

/// Writes a security audit record for a refusal that stands whether or not
/// the record can be written; a failure is logged.
pub async fn audit_refusal(
    state: &AppState,
    actor_id: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
) {
    let record = AuditRecord {
        actor_id,
        action,
        subject_type: "user",
        subject_id: actor_id,
        details,
    };
    if let Err(err) = audit::record(&state.db, record).await {
        tracing::error!(action, error = %err, "writing a security audit record failed");
    }
}

/// Checks an access token and that its session is still live: a session
/// ended by logout, by reuse of a refresh token, by a password change or by
/// an OAuth2 takeover of the account stops its access tokens at once, not
/// only at their expiry. The same statement reads the account with its
/// roles, which `me` then answers from ([`SignedInAccount`]), and with
/// [`ReadAlong::Wallets`] its wallets too (a query operation's: the viewer's
/// balances are what most queries show), with [`ReadAlong::Home`] also the
/// first page of its history.
/// `Ok(None)`: invalid, expired or ended. `Err`: the session could not be
/// checked (database unreachable); callers answer with a retryable server
/// error rather than signing the client out or letting an unchecked token
/// through.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    along: ReadAlong,
) -> Result<Option<Authenticated>, ()> {
    let Some(user) = state.keys.verify_access(token) else {
        return Ok(None);
    };
    check_session(state, user, along).await
}

/// What a session check reads along with the account, for the operations
/// of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAlong {
    /// Only the account (a mutation, a subscription).
    Account,
    /// Its wallets too (a query).
    Wallets,
    /// Its wallets and the newest `n` transactions of all of them (a query
    /// asking for the first page of `transactions` without filters: the
    /// home screen).
    Home(u64),
}

impl ReadAlong {
    /// The history page size it reads along.
    pub fn history(self) -> Option<u64> {
        match self {
            ReadAlong::Home(limit) => Some(limit),
            ReadAlong::Account | ReadAlong::Wallets => None,
        }
    }
}

/// [`authenticate`] for claims already verified: the database half.
pub async fn check_session(
    state: &AppState,
    user: AuthUser,
    along: ReadAlong,
) -> Result<Option<Authenticated>, ()> {
    let read = match along {
        ReadAlong::Account => {
            entity::store::users::load_for_session(&state.db, user.id, user.session_id)
                .await
                .map(|found| found.map(|account| (account, None, None)))
        }
        ReadAlong::Wallets | ReadAlong::Home(_) => {
            entity::store::session_reads::load(&state.db, user.id, user.session_id, along.history())
                .await
                .map(|found| found.map(|r| (r.user, Some(r.wallets), r.history)))
        }
    };
    match read {
        Ok(found) => Ok(found.map(|(account, wallets, history)| Authenticated {
            user,
            account: SignedInAccount(std::sync::Arc::new(account)),
            wallets,
            history,
        })),
        Err(err) => {
            tracing::warn!(session.id = %user.session_id, error = %err, "checking a session failed");
            Err(())
        }
    }
}

/// A valid access token of a live session, and what was read with it.
#[derive(Debug)]
pub struct Authenticated {
    /// The token's claims.
    pub user: AuthUser,
    /// The account.
    pub account: SignedInAccount,
    /// The account's wallets, when asked for.
    pub wallets: Option<Vec<entity::store::records::WalletRecord>>,
    /// The first page of its history, when asked for.
    pub history: Option<entity::store::history::HistoryPage>,
}

/// The signed-in user's account as read with the session check of this
/// request (request data of HTTP operations).
#[derive(Debug, Clone)]
pub struct SignedInAccount(pub std::sync::Arc<entity::store::records::UserRecord>);

/// Whether a session is live (not ended, not unknown); `Err` (logged) when
/// the database cannot say.
pub async fn session_live(state: &AppState, session_id: Uuid) -> Result<bool, ()> {
    match entity::store::sessions::started_at(&state.db, session_id).await {
        Ok(started) => Ok(started.is_some()),
        Err(err) => {
            tracing::warn!(session.id = %session_id, error = %err, "checking a session failed");
            Err(())
        }
    }
}

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
