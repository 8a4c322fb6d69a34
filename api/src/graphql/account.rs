//! Registration, login, sessions and `me`.

use async_graphql::{Context, InputObject, Object};
use domain::{DisplayName, DomainError, Email, Password};
use entity::store::records::UserRecord;
use entity::store::sessions::{self, Rotation};
use entity::store::users;
use uuid::Uuid;

use super::parts;
use super::types::{AuthPayload, LoginResult, MfaChallenge, User};
use crate::auth::webauthn::{self, kinds, lookup};
use crate::auth::{Viewer, audit, audit_refusal, passwords, tokens};
use crate::error::{ApiError, Result};
use crate::limits::ClientAddr;
use crate::state::AppState;
use serde_json::json;

/// Input of `register`.
#[derive(InputObject, Debug)]
pub struct RegisterInput {
    /// E-mail address; becomes the login.
    pub email: String,
    /// At least 10 characters.
    pub password: String,
    /// Name shown to others.
    pub display_name: String,
}

/// Input of `login`.
#[derive(InputObject, Debug)]
pub struct LoginInput {
    /// E-mail address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Queries about the signed-in user.
#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user; null when no token is sent.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let (state, viewer) = parts(ctx)?;
        if matches!(viewer, Viewer::Anonymous) {
            return Ok(None);
        }
        let auth = viewer.require_user()?;
        // Read with this request's session check, when it made one.
        if let Some(account) = ctx.data_opt::<crate::auth::SignedInAccount>()
            && account.0.id == auth.id
        {
            return Ok(Some(User::from(account.0.as_ref().clone())));
        }
        let user = users::load(&state.db, auth.id).await?;
        Ok(user.map(User::from))
    }
}

/// Account mutations.
#[derive(Default)]
pub struct AccountMutation;

/// The client's address (loopback when the transport gave none).
pub(crate) fn client_addr(ctx: &Context<'_>) -> std::net::IpAddr {
    ctx.data_opt::<ClientAddr>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.0)
}

/// The device signing in (none outside HTTP requests).
pub(crate) fn client_device<'a>(ctx: &'a Context<'_>) -> Option<&'a str> {
    ctx.data_opt::<crate::limits::ClientDevice>()
        .map(|d| d.0.as_str())
}

/// Signs a user in after the first factor: a session when two-factor is
/// off, else an `MfaChallenge` whose assertion `finishWebauthnLogin` checks.
pub(crate) async fn sign_in(
    state: &AppState,
    user: UserRecord,
    method: &str,
    device: Option<&str>,
) -> Result<LoginResult> {
    if user.closed_at.is_some() {
        return Err(DomainError::account_closed().into());
    }
    let mfa_token = tokens::random_token();
    // Decided by the credentials themselves, not by the cached flag.
    let challenge = webauthn::begin_assertion(
        state,
        user.id,
        kinds::MFA_LOGIN,
        lookup(kinds::MFA_LOGIN, &mfa_token),
    )
    .await?;
    if let Some(options) = challenge {
        audit(
            state,
            Some(user.id),
            "auth.first_factor",
            "user",
            Some(user.id),
            json!({ "method": method }),
        )
        .await?;
        return Ok(LoginResult::MfaChallenge(MfaChallenge {
            mfa_token,
            webauthn_options: async_graphql::Json(options),
        }));
    }
    audit(
        state,
        Some(user.id),
        "auth.login",
        "user",
        Some(user.id),
        json!({ "method": method }),
    )
    .await?;
    Ok(LoginResult::AuthPayload(
        issue_session(state, user, Some(method), device).await?,
    ))
}

/// Starts a new session (refresh token family) and issues its first tokens.
/// `sign_in` names how the user signed in (`password`, `oauth:<provider>`, `webauthn`):
/// the user is told of it by a security notice; `None` for a registration.
pub(crate) async fn issue_session(
    state: &AppState,
    user: UserRecord,
    sign_in: Option<&str>,
    device: Option<&str>,
) -> Result<AuthPayload> {
    // Also here: a second factor begun before the account closed.
    if user.closed_at.is_some() {
        return Err(DomainError::account_closed().into());
    }
    let refresh = tokens::random_token();
    let family = sessions::start(
        &state.db,
        user.id,
        tokens::hash_refresh_token(&refresh),
        entity::store::now() + state.keys.refresh_ttl,
        sign_in,
        device,
    )
    .await?;
    finish_session(state, user, family, refresh)
}

fn finish_session(
    state: &AppState,
    user: UserRecord,
    family: Uuid,
    refresh: String,
) -> Result<AuthPayload> {
    let (access_token, expires_at) = state.keys.issue_access(user.id, family, &user.roles)?;
    Ok(AuthPayload {
        access_token,
        refresh_token: refresh,
        expires_at,
        user: user.into(),
    })
}

#[Object]
impl AccountMutation {
    /// Creates an account and signs it in.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<AuthPayload> {
        let (state, _) = parts(ctx)?;
        let email = Email::parse(&input.email)?;
        let password = Password::parse_new(&input.password)?;
        let name = DisplayName::parse(&input.display_name)?;
        let hash = passwords::hash(&password).await?;
        let user = users::create(&state.db, &email, &name, Some(hash)).await?;
        tracing::info!(user.id = %user.id, "registered");
        issue_session(state, user, None, client_device(ctx)).await
    }

    /// Signs in with e-mail and password.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<LoginResult> {
        let (state, _) = parts(ctx)?;
        let refused = || {
            ApiError::from(DomainError::unauthenticated(
                "email or password is incorrect",
            ))
        };
        state
            .limiter
            .login(&state.settings, &input.email, client_addr(ctx))
            .await?;
        let password = Password::parse_existing(&input.password).map_err(|_| refused())?;
        let row = match Email::parse(&input.email) {
            Ok(email) => users::find_row_by_email(&state.db, &email).await?,
            Err(_) => None,
        };
        let stored = row.as_ref().and_then(|r| r.password_hash.clone());
        // Unknown accounts verify against a dummy hash: same work, same answer.
        let ok = passwords::verify(&password, stored).await?;
        let known = row.as_ref().map(|r| r.id);
        let Some(row) = row.filter(|_| ok) else {
            tracing::info!("login refused");
            let masked = Email::parse(&input.email)
                .map(|e| e.masked())
                .unwrap_or_default();
            audit_refusal(
                state,
                known,
                "auth.login_failed",
                json!({ "email": masked, "method": "password" }),
            )
            .await;
            return Err(refused());
        };
        let user = users::load(&state.db, row.id).await?.ok_or_else(refused)?;
        tracing::info!(user.id = %user.id, mfa = user.two_factor_enabled, "password accepted");
        sign_in(state, user, "password", client_device(ctx)).await
    }

    /// Exchanges a refresh token for a new pair. Each refresh token works
    /// once; presenting a used one revokes the whole session.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> Result<AuthPayload> {
        let (state, _) = parts(ctx)?;
        let next = tokens::random_token();
        let rotation = sessions::rotate(
            &state.db,
            &tokens::hash_refresh_token(&refresh_token),
            tokens::hash_refresh_token(&next),
            entity::store::now() + state.keys.refresh_ttl,
        )
        .await?;
        match rotation {
            Rotation::Rotated { user_id, family_id } => {
                let user = users::load(&state.db, user_id).await?.ok_or_else(|| {
                    ApiError::from(DomainError::unauthenticated("the account no longer exists"))
                })?;
                Ok(finish_session(state, user, family_id, next)?)
            }
            Rotation::Reused { user_id } => {
                // `sessions::rotate` already wrote the `auth.refresh_token_reused` record.
                tracing::warn!(user.id = %user_id, "refresh token reused; session revoked");
                Err(ApiError::from(DomainError::unauthenticated(
                    "this refresh token was already used; the session has been revoked, sign in again",
                )))
            }
            Rotation::Invalid => Err(ApiError::from(DomainError::unauthenticated(
                "the refresh token is invalid or expired",
            ))),
        }
    }

    /// Ends the current session: its refresh tokens stop working.
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool> {
        let (state, viewer) = parts(ctx)?;
        let auth = viewer.require_user()?;
        sessions::revoke(&state.db, auth.session_id).await?;
        Ok(true)
    }
}
