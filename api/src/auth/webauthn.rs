//! WebAuthn ceremonies (webauthn-rs): registering security keys, the second
//! factor of a login, and step-up assertions for sensitive operations.
//!
//! Ceremony state never travels to the client: it is kept in `auth_flows`
//! with an expiry and taken (deleted) by the request that finishes it, so an
//! assertion cannot be replayed against the same challenge. The signature
//! counter is checked against the stored credential at finish time, in one
//! conditional update, so an assertion older than one already accepted (a
//! cloned authenticator, or a held-back assertion) is refused.

use std::time::Duration as StdDuration;

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use domain::{DomainError, ErrorCode};
use entity::store::security::{self, Credential, Flow, NewFlow};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::auth::AuthUser;
use crate::config::Settings;
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// Flow kinds kept in `auth_flows`.
pub mod kinds {
    /// A registration ceremony in progress.
    pub const REGISTER: &str = "webauthn_register";
    /// A password (or OAuth2) login waiting for its assertion.
    pub const MFA_LOGIN: &str = "mfa_login";
    /// A step-up ceremony in progress.
    pub const STEP_UP: &str = "step_up";
    /// An issued step-up token.
    pub const STEP_UP_TOKEN: &str = "step_up_token";
    /// An OAuth2 authorization in progress.
    pub const OAUTH: &str = "oauth";
}

/// The lookup key of a client-held token: kind plus SHA-256, never the token.
pub fn lookup(kind: &str, token: &str) -> String {
    format!("{kind}:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// The relying party: who we are to authenticators.
pub struct RelyingParty {
    webauthn: Webauthn,
    /// How long a ceremony may take.
    pub ceremony_ttl: Duration,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty").finish_non_exhaustive()
    }
}

impl RelyingParty {
    /// From `WEBAUTHN_*` settings.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let origin = Url::parse(&settings.webauthn_rp_origin)
            .with_context(|| format!("WEBAUTHN_RP_ORIGIN={:?}", settings.webauthn_rp_origin))?;
        let mut builder = WebauthnBuilder::new(&settings.webauthn_rp_id, &origin)
            .context("WEBAUTHN_RP_ORIGIN must be on WEBAUTHN_RP_ID or a subdomain of it")?
            .rp_name(&settings.webauthn_rp_name)
            .timeout(StdDuration::from_secs(settings.webauthn_ceremony_ttl_secs));
        for extra in &settings.webauthn_extra_origins {
            let url = Url::parse(extra)
                .with_context(|| format!("WEBAUTHN_EXTRA_ORIGINS entry {extra:?}"))?;
            builder = builder.append_allowed_origin(&url);
        }
        let webauthn = builder
            .build()
            .context("building the WebAuthn relying party")?;
        Ok(Self {
            webauthn,
            ceremony_ttl: Duration::seconds(
                i64::try_from(settings.webauthn_ceremony_ttl_secs).unwrap_or(300),
            ),
        })
    }
}

fn internal(what: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError::internal(anyhow::anyhow!("{what}: {err}"))
}

fn refused(code: ErrorCode, message: &str) -> ApiError {
    ApiError::from(DomainError::new(code, message))
}

fn parse_passkey(cred: &Credential) -> Result<Passkey> {
    serde_json::from_str(&cred.passkey).map_err(|e| internal("stored passkey", e))
}

/// Starts registering a new security key for the user; returns the
/// `PublicKeyCredentialCreationOptions` for `navigator.credentials.create`.
pub async fn begin_registration(
    state: &AppState,
    auth: &AuthUser,
    email: &str,
    display_name: &str,
) -> Result<Value> {
    let user_id = auth.id;
    let existing = security::credentials(&state.db, user_id).await?;
    let exclude = existing
        .iter()
        .map(|c| parse_passkey(c).map(|p| p.cred_id().clone()))
        .collect::<Result<Vec<_>>>()?;
    let (options, registration) = state
        .rp
        .webauthn
        .start_passkey_registration(user_id, email, display_name, Some(exclude))
        .map_err(|e| internal("starting registration", e))?;
    let payload =
        serde_json::to_string(&registration).map_err(|e| internal("registration state", e))?;
    security::put_flow(
        &state.db,
        NewFlow {
            kind: kinds::REGISTER,
            // One registration in progress per session; a new one replaces
            // it (and no other session can).
            lookup: lookup(kinds::REGISTER, &auth.session_id.to_string()),
            user_id: Some(user_id),
            payload,
            expires_at: entity::store::now() + state.rp.ceremony_ttl,
        },
    )
    .await?;
    serde_json::to_value(options).map_err(|e| internal("creation options", e))
}

/// Finishes a registration begun by [`begin_registration`].
pub async fn finish_registration(
    state: &AppState,
    auth: &AuthUser,
    credential: Value,
    name: &str,
) -> Result<Credential> {
    let user_id = auth.id;
    let credential: RegisterPublicKeyCredential =
        serde_json::from_value(credential).map_err(|_| {
            DomainError::bad_input(
                "credential is not a PublicKeyCredential from navigator.credentials.create",
            )
        })?;
    let flow = security::take_flow(
        &state.db,
        kinds::REGISTER,
        &lookup(kinds::REGISTER, &auth.session_id.to_string()),
    )
    .await?
    .filter(|f| f.user_id == Some(user_id))
    .ok_or_else(|| {
        DomainError::bad_input(
            "no registration in progress, or it expired: call beginWebauthnRegistration again",
        )
    })?;
    let registration: PasskeyRegistration =
        serde_json::from_str(&flow.payload).map_err(|e| internal("registration state", e))?;
    let passkey = state
        .rp
        .webauthn
        .finish_passkey_registration(&credential, &registration)
        .map_err(|e| {
            tracing::info!(user.id = %user_id, error = %e, "WebAuthn registration refused");
            DomainError::bad_input("the security key's response did not verify")
        })?;
    let stored = serde_json::to_string(&passkey).map_err(|e| internal("passkey", e))?;
    let credential_id = URL_SAFE_NO_PAD.encode(passkey.cred_id());
    Ok(security::add_credential(&state.db, user_id, name, &credential_id, stored).await?)
}

/// Starts an assertion by any of the user's keys and keeps the ceremony
/// under `flow_lookup`. `None` when the user has no key.
pub async fn begin_assertion(
    state: &AppState,
    user_id: Uuid,
    kind: &str,
    flow_lookup: String,
) -> Result<Option<Value>> {
    let credentials = security::credentials(&state.db, user_id).await?;
    if credentials.is_empty() {
        return Ok(None);
    }
    let passkeys = credentials
        .iter()
        .map(parse_passkey)
        .collect::<Result<Vec<_>>>()?;
    let (options, authentication) = state
        .rp
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|e| internal("starting authentication", e))?;
    let payload =
        serde_json::to_string(&authentication).map_err(|e| internal("authentication state", e))?;
    security::put_flow(
        &state.db,
        NewFlow {
            kind,
            lookup: flow_lookup,
            user_id: Some(user_id),
            payload,
            expires_at: entity::store::now() + state.rp.ceremony_ttl,
        },
    )
    .await?;
    Ok(Some(
        serde_json::to_value(options).map_err(|e| internal("request options", e))?,
    ))
}

/// Verifies an assertion against a flow already taken from the store, and
/// records the credential's new counter. Returns the user. Refusals carry
/// `code` (`UNAUTHENTICATED` for logins, `STEP_UP_REQUIRED` for step-ups, so
/// that a failed confirmation does not sign the app out).
pub async fn finish_assertion(
    state: &AppState,
    flow: Flow,
    assertion: Value,
    code: ErrorCode,
) -> Result<Uuid> {
    let user_id = flow
        .user_id
        .ok_or_else(|| internal("assertion flow", "no user"))?;
    let ceremony = if code == ErrorCode::StepUpRequired {
        Ceremony::StepUp
    } else {
        Ceremony::Login
    };
    let assertion: PublicKeyCredential = match serde_json::from_value(assertion) {
        Ok(a) => a,
        Err(_) => {
            // The ceremony is spent all the same: on the record.
            audit_failure(state, user_id, ceremony, "malformed").await;
            return Err(DomainError::bad_input(
                "assertion is not a PublicKeyCredential from navigator.credentials.get",
            )
            .into());
        }
    };
    let authentication: PasskeyAuthentication =
        serde_json::from_str(&flow.payload).map_err(|e| internal("authentication state", e))?;
    let result = match state
        .rp
        .webauthn
        .finish_passkey_authentication(&assertion, &authentication)
    {
        Ok(result) => result,
        Err(err) => {
            let compromised = matches!(err, WebauthnError::CredentialPossibleCompromise);
            tracing::warn!(user.id = %user_id, error = %err, "WebAuthn assertion refused");
            audit_failure(
                state,
                user_id,
                ceremony,
                if compromised {
                    "counter_regression"
                } else {
                    "invalid"
                },
            )
            .await;
            return Err(refused(code, "the security key's assertion did not verify"));
        }
    };
    let credential_id = URL_SAFE_NO_PAD.encode(result.cred_id());
    let Some(stored) = security::credentials(&state.db, user_id)
        .await?
        .into_iter()
        .find(|c| c.credential_id == credential_id)
    else {
        audit_failure(state, user_id, ceremony, "unknown_credential").await;
        return Err(refused(code, "this security key is no longer registered"));
    };
    let mut passkey = parse_passkey(&stored)?;
    passkey.update_credential(&result);
    let passkey = serde_json::to_string(&passkey).map_err(|e| internal("passkey", e))?;
    if !security::credential_used(&state.db, stored.id, result.counter(), passkey).await? {
        tracing::warn!(user.id = %user_id, credential.id = %stored.id, "WebAuthn counter did not increase");
        audit_failure(state, user_id, ceremony, "counter_regression").await;
        return Err(refused(
            code,
            "the security key's signature counter went backwards: the assertion is stale or the key was cloned",
        ));
    }
    Ok(user_id)
}

/// What an assertion was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ceremony {
    /// The second factor of a sign-in.
    Login,
    /// A step-up for a sensitive operation.
    StepUp,
}

/// Records a refused assertion; one that failed a sign-in is also a
/// failed login.
async fn audit_failure(state: &AppState, user_id: Uuid, ceremony: Ceremony, reason: &str) {
    let ceremony_name = match ceremony {
        Ceremony::Login => "login",
        Ceremony::StepUp => "step_up",
    };
    crate::auth::audit_refusal(
        state,
        Some(user_id),
        "mfa.assertion_failed",
        json!({ "reason": reason, "ceremony": ceremony_name }),
    )
    .await;
    if ceremony == Ceremony::Login {
        crate::auth::audit_refusal(
            state,
            Some(user_id),
            "auth.login_failed",
            json!({ "method": "webauthn", "reason": reason }),
        )
        .await;
    }
}

/// Issues a step-up token after a verified assertion: short-lived, single
/// use, bound to the user.
pub async fn issue_step_up_token(
    state: &AppState,
    user_id: Uuid,
) -> Result<(String, chrono::DateTime<chrono::Utc>)> {
    let token = crate::auth::tokens::random_token();
    let expires_at = entity::store::now() + state.step_up.token_ttl;
    security::put_flow(
        &state.db,
        NewFlow {
            kind: kinds::STEP_UP_TOKEN,
            lookup: lookup(kinds::STEP_UP_TOKEN, &token),
            user_id: Some(user_id),
            payload: "{}".to_owned(),
            expires_at,
        },
    )
    .await?;
    Ok((token, expires_at))
}

/// Spends a step-up token on `reference` (what it authorises); refuses with
/// `STEP_UP_REQUIRED` when absent, expired, another user's or already spent
/// on something else.
pub async fn require_step_up(
    state: &AppState,
    user_id: Uuid,
    token: Option<&str>,
    reference: &str,
) -> Result<()> {
    let required = || ApiError::from(domain::step_up::required());
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 128) else {
        return Err(required());
    };
    // Stored as a digest: a transfer's reference holds its idempotency key
    // (up to 255 characters) and would not fit the column otherwise.
    let ok = security::consume_token(
        &state.db,
        kinds::STEP_UP_TOKEN,
        &lookup(kinds::STEP_UP_TOKEN, token),
        user_id,
        &lookup("ref", reference),
    )
    .await?;
    if ok {
        return Ok(());
    }
    // A token was presented and refused: spent, expired, another user's or
    // made up. Worth a record, as a replay attempt would be.
    let operation = reference.split(':').next().unwrap_or_default();
    crate::auth::audit_refusal(
        state,
        Some(user_id),
        "mfa.step_up_refused",
        json!({ "operation": operation }),
    )
    .await;
    Err(required())
}
