//! Second factor and step-up (WebAuthn), OAuth2 login and password change.

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{DomainError, ErrorCode, Password};
use entity::store::security::{self, Credential};
use entity::store::users;
use serde_json::{Value, json};

use super::account::{client_addr, client_device, issue_session, sign_in};
use super::types::{AuthPayload, LoginResult};
use super::{parse_id, parts};
use crate::auth::webauthn::{self, kinds, lookup};
use crate::auth::{audit, passwords};
use crate::error::{ApiError, Result};

/// A registered WebAuthn credential (security key or passkey).
#[derive(SimpleObject, Debug, Clone)]
pub struct WebauthnCredential {
    /// Id, for `removeWebauthnCredential`.
    pub id: ID,
    /// The name the user gave it.
    pub name: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last confirmed a sign-in or step-up.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<Credential> for WebauthnCredential {
    fn from(c: Credential) -> Self {
        Self {
            id: ID(c.id.to_string()),
            name: c.name,
            created_at: c.created_at,
            last_used_at: c.last_used_at,
        }
    }
}

/// Proof of a fresh WebAuthn assertion, for one sensitive operation.
#[derive(SimpleObject, Debug, Clone)]
pub struct StepUpToken {
    /// Pass as `stepUpToken`; works once.
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Where to send the user to sign in with a provider.
#[derive(SimpleObject, Debug, Clone)]
pub struct OAuthStart {
    /// Open this URL (browser or in-app browser tab).
    pub authorization_url: String,
    /// Comes back on the redirect URI; pass it to `completeOAuthLogin`.
    pub state: String,
}

/// Input of `changePassword`.
#[derive(InputObject, Debug)]
pub struct ChangePasswordInput {
    /// The current password (accounts created through OAuth2 have none).
    pub current_password: Option<String>,
    /// At least 10 characters.
    pub new_password: String,
    /// Needed when two-factor is on.
    pub step_up_token: Option<String>,
}

/// Second-factor queries.
#[derive(Default)]
pub struct SecurityQuery;

#[Object]
impl SecurityQuery {
    /// The caller's security keys, oldest first.
    async fn webauthn_credentials(&self, ctx: &Context<'_>) -> Result<Vec<WebauthnCredential>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let creds = security::credentials(&state.db, user.id).await?;
        Ok(creds.into_iter().map(Into::into).collect())
    }
}

/// Second factor, step-up, OAuth2 and password mutations.
#[derive(Default)]
pub struct SecurityMutation;

fn credential_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(DomainError::bad_input(
            "name must have 1 to 64 characters and no control characters",
        ));
    }
    Ok(name.to_owned())
}

async fn step_up_options(ctx: &Context<'_>) -> Result<Value> {
    let (state, viewer) = parts(ctx).map_err(|e| ApiError::internal(anyhow::anyhow!(e.message)))?;
    let user = viewer.require_user()?;
    webauthn::begin_assertion(
        state,
        user.id,
        kinds::STEP_UP,
        lookup(kinds::STEP_UP, &user.session_id.to_string()),
    )
    .await?
    .ok_or_else(|| {
        DomainError::new(
            ErrorCode::StepUpRequired,
            "register a security key first: step-up needs one",
        )
        .into()
    })
}

#[Object]
impl SecurityMutation {
    /// Starts registering a security key; pass the result to
    /// `navigator.credentials.create`, then the credential to
    /// `finishWebauthnRegistration`.
    async fn begin_webauthn_registration(&self, ctx: &Context<'_>) -> Result<Json<Value>> {
        let (state, viewer) = parts(ctx)?;
        let auth = viewer.require_user()?;
        let user = users::load(&state.db, auth.id).await?.ok_or_else(|| {
            ApiError::from(DomainError::unauthenticated("the account no longer exists"))
        })?;
        let options =
            webauthn::begin_registration(state, auth, &user.email, &user.display_name).await?;
        Ok(Json(options))
    }

    /// Finishes registering a security key and turns two-factor on. Needs
    /// the current password (accounts without one: a sign-in in the last
    /// 10 minutes) and, when the account already has keys, a step-up token.
    async fn finish_webauthn_registration(
        &self,
        ctx: &Context<'_>,
        credential: Json<Value>,
        name: String,
        current_password: Option<String>,
        step_up_token: Option<String>,
    ) -> Result<WebauthnCredential> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let name = credential_name(&name)?;
        let row = users::find_row(&state.db, user.id).await?.ok_or_else(|| {
            ApiError::from(DomainError::unauthenticated("the account no longer exists"))
        })?;
        // A stolen access token alone must not add the thief's key.
        reauthenticate(
            state,
            user,
            &row,
            current_password.as_deref(),
            step_up_token.as_deref(),
            "add-credential",
        )
        .await?;
        let stored = webauthn::finish_registration(state, user, credential.0, &name).await?;
        tracing::info!(user.id = %user.id, credential.id = %stored.id, "security key registered");
        Ok(stored.into())
    }

    /// Removes one of the caller's security keys; needs a step-up token.
    async fn remove_webauthn_credential(
        &self,
        ctx: &Context<'_>,
        id: ID,
        step_up_token: Option<String>,
    ) -> Result<bool> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let id = parse_id(&id, "id")?;
        // A wrong id should not spend the step-up token.
        let known = security::credentials(&state.db, user.id)
            .await?
            .iter()
            .any(|c| c.id == id);
        if !known {
            return Err(ApiError::from(DomainError::not_found("security key")));
        }
        webauthn::require_step_up(
            state,
            user.id,
            step_up_token.as_deref(),
            &format!("remove-credential:{}", uuid::Uuid::new_v4()),
        )
        .await?;
        let still_on = security::remove_credential(&state.db, user.id, id).await?;
        tracing::info!(user.id = %user.id, credential.id = %id, two_factor = still_on, "security key removed");
        Ok(true)
    }

    /// Completes a login that answered `MfaChallenge`, with the assertion
    /// from `navigator.credentials.get`. The challenge works once.
    async fn finish_webauthn_login(
        &self,
        ctx: &Context<'_>,
        mfa_token: String,
        assertion: Json<Value>,
    ) -> Result<AuthPayload> {
        let (state, _) = parts(ctx)?;
        let addr = client_addr(ctx);
        state
            .limiter
            .hit(
                crate::limits::Bucket::LoginAddress(addr),
                state.settings.rate_login_per_address,
            )
            .await?;
        let flow = security::take_flow(
            &state.db,
            kinds::MFA_LOGIN,
            &lookup(kinds::MFA_LOGIN, &mfa_token),
        )
        .await?;
        let Some(flow) = flow else {
            // A replayed, expired or made-up mfaToken: no user to name.
            crate::auth::audit_refusal(
                state,
                None,
                "auth.login_failed",
                json!({ "method": "webauthn", "reason": "unknown_challenge" }),
            )
            .await;
            return Err(ApiError::from(DomainError::unauthenticated(
                "this sign-in is unknown, used or expired: sign in again",
            )));
        };
        let user_id =
            webauthn::finish_assertion(state, flow, assertion.0, ErrorCode::Unauthenticated)
                .await?;
        let user = users::load(&state.db, user_id).await?.ok_or_else(|| {
            ApiError::from(DomainError::unauthenticated("the account no longer exists"))
        })?;
        audit(
            state,
            Some(user.id),
            "auth.login",
            "user",
            Some(user.id),
            json!({ "factor": "webauthn" }),
        )
        .await?;
        tracing::info!(user.id = %user.id, "logged in with a second factor");
        issue_session(state, user, Some("webauthn"), client_device(ctx)).await
    }

    /// Starts a step-up: pass the result to `navigator.credentials.get`,
    /// then the assertion to `finishStepUp`.
    async fn begin_step_up(&self, ctx: &Context<'_>) -> Result<Json<Value>> {
        Ok(Json(step_up_options(ctx).await?))
    }

    /// Finishes a step-up and issues a short-lived, single-use token for
    /// one sensitive operation.
    async fn finish_step_up(
        &self,
        ctx: &Context<'_>,
        assertion: Json<Value>,
    ) -> Result<StepUpToken> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let flow = security::take_flow(
            &state.db,
            kinds::STEP_UP,
            &lookup(kinds::STEP_UP, &user.session_id.to_string()),
        )
        .await?
        .filter(|f| f.user_id == Some(user.id))
        .ok_or_else(|| {
            ApiError::from(DomainError::new(
                ErrorCode::StepUpRequired,
                "no step-up in progress, or it expired: call beginStepUp again",
            ))
        })?;
        webauthn::finish_assertion(state, flow, assertion.0, ErrorCode::StepUpRequired).await?;
        // Recorded before the token exists: no token is ever issued that
        // the audit trail does not show.
        audit(
            state,
            Some(user.id),
            "mfa.step_up",
            "user",
            Some(user.id),
            json!({}),
        )
        .await?;
        let (token, expires_at) = webauthn::issue_step_up_token(state, user.id).await?;
        Ok(StepUpToken { token, expires_at })
    }

    /// Changes the password. Needs the current one (accounts without one: a
    /// sign-in in the last 10 minutes) and, with security keys, a step-up
    /// token. Every other session is
    /// signed out (its refresh token stops working).
    async fn change_password(&self, ctx: &Context<'_>, input: ChangePasswordInput) -> Result<bool> {
        let (state, viewer) = parts(ctx)?;
        let auth = viewer.require_user()?;
        let new_password = Password::parse_new(&input.new_password)?;
        let row = users::find_row(&state.db, auth.id).await?;
        change_password(ctx, auth, row, input, new_password).await?;
        Ok(true)
    }

    /// Starts signing in with an OAuth2 / OpenID Connect provider.
    async fn start_o_auth_login(
        &self,
        ctx: &Context<'_>,
        provider: String,
        redirect_uri: String,
    ) -> Result<OAuthStart> {
        let (state, _) = parts(ctx)?;
        // Each start stores a pending flow: it counts as a sign-in attempt.
        state
            .limiter
            .hit(
                crate::limits::Bucket::LoginAddress(client_addr(ctx)),
                state.settings.rate_login_per_address,
            )
            .await?;
        let started = state.oauth.start(state, &provider, &redirect_uri).await?;
        Ok(OAuthStart {
            authorization_url: started.authorization_url,
            state: started.state,
        })
    }

    /// Completes an OAuth2 sign-in with the `code` and `state` the provider
    /// sent to the redirect URI. The first sign-in creates the account or
    /// links the one with the same verified e-mail.
    async fn complete_o_auth_login(
        &self,
        ctx: &Context<'_>,
        provider: String,
        code: String,
        state: String,
    ) -> Result<LoginResult> {
        let (app, _) = parts(ctx)?;
        let addr = client_addr(ctx);
        app.limiter
            .hit(
                crate::limits::Bucket::LoginAddress(addr),
                app.settings.rate_login_per_address,
            )
            .await?;
        let (user, outcome) = match app.oauth.complete(app, &provider, &code, &state).await {
            Ok(found) => found,
            Err(err) => {
                if let ApiError::Refused(refusal) = &err {
                    crate::auth::audit_refusal(
                        app,
                        None,
                        "auth.login_failed",
                        json!({ "method": "oauth", "provider": known_provider(app, &provider), "code": refusal.code.as_str() }),
                    )
                    .await;
                }
                return Err(err);
            }
        };
        tracing::info!(user.id = %user.id, ?outcome, "OAuth2 sign-in");
        sign_in(app, user, &format!("oauth:{provider}"), client_device(ctx)).await
    }
}

/// The provider name for the audit trail: a configured one, never free
/// text from an anonymous caller.
fn known_provider(state: &crate::state::AppState, name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if state
        .settings
        .oauth_providers
        .iter()
        .any(|p| p.name == name)
    {
        name
    } else {
        "unknown".to_owned()
    }
}

/// How recent a sign-in stands in for the password of an account that has
/// none (created through OAuth2) and no security key.
pub const FRESH_SIGN_IN_MINUTES: i64 = 10;

/// Proof, beyond the access token, that the account holder is present, for
/// changing credentials: the current password when the account has one, a
/// step-up token when it has security keys, and when it has neither a
/// sign-in within [`FRESH_SIGN_IN_MINUTES`]. Attempts count against the
/// account's sign-in limit, so this is no password oracle.
async fn reauthenticate(
    state: &crate::state::AppState,
    auth: &crate::auth::AuthUser,
    row: &entity::entities::users::Model,
    current_password: Option<&str>,
    step_up_token: Option<&str>,
    purpose: &str,
) -> Result<()> {
    state
        .limiter
        .hit(
            crate::limits::Bucket::LoginAccount(&row.email),
            state.settings.rate_login_per_account,
        )
        .await?;
    let has_password = row.password_hash.is_some();
    if has_password {
        let wrong = || DomainError::bad_input("the current password is incorrect");
        let current = current_password
            .ok_or_else(wrong)
            .and_then(|p| Password::parse_existing(p).map_err(|_| wrong()))?;
        if !passwords::verify(&current, row.password_hash.clone()).await? {
            crate::auth::audit_refusal(
                state,
                Some(auth.id),
                "auth.reauthentication_failed",
                json!({ "purpose": purpose }),
            )
            .await;
            return Err(wrong().into());
        }
    }
    let has_keys = !security::credentials(&state.db, auth.id).await?.is_empty();
    if has_keys {
        webauthn::require_step_up(
            state,
            auth.id,
            step_up_token,
            &format!("{purpose}:{}", uuid::Uuid::new_v4()),
        )
        .await?;
    } else if !has_password {
        let started = entity::store::sessions::started_at(&state.db, auth.session_id).await?;
        let fresh = started.is_some_and(|at| {
            entity::store::now() - at <= chrono::Duration::minutes(FRESH_SIGN_IN_MINUTES)
        });
        if !fresh {
            return Err(DomainError::unauthenticated(format!(
                "sign in again (within {FRESH_SIGN_IN_MINUTES} minutes) to change how this account signs in"
            ))
            .into());
        }
    }
    Ok(())
}

async fn change_password(
    ctx: &Context<'_>,
    auth: &crate::auth::AuthUser,
    row: Option<entity::entities::users::Model>,
    input: ChangePasswordInput,
    new_password: Password,
) -> Result<()> {
    let (state, _) = parts(ctx).map_err(|e| ApiError::internal(anyhow::anyhow!(e.message)))?;
    let user_id = auth.id;
    let row = row.ok_or_else(|| DomainError::unauthenticated("the account no longer exists"))?;
    reauthenticate(
        state,
        auth,
        &row,
        input.current_password.as_deref(),
        input.step_up_token.as_deref(),
        "change-password",
    )
    .await?;
    let hash = passwords::hash(&new_password).await?;
    users::set_password(&state.db, user_id, hash, auth.session_id).await?;
    tracing::info!(user.id = %user_id, "password changed");
    Ok(())
}
