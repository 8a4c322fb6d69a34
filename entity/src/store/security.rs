//! Identity security state: WebAuthn credentials, single-use authentication
//! flows and linked OAuth2 identities.
//!
//! Flows are looked up by a hash of the token the client holds. Taking a flow
//! deletes it, and only the caller whose delete removed the row gets it, so a
//! ceremony, an MFA token or an OAuth2 `state` works once even when two
//! requests race. Step-up tokens are consumed by recording what used them,
//! so a retry of the same idempotent request may present the token again.

use chrono::{DateTime, Utc};
use domain::events::SecurityNotice;
use domain::{DisplayName, DomainError, Email, ErrorCode, EventBody};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{auth_flows, oauth_identities, users, webauthn_credentials};
use crate::store::audit::{self, AuditRecord};
use crate::store::records::UserRecord;
use crate::store::{StoreError, StoreResult, events, now};

/// A registered credential.
pub type Credential = webauthn_credentials::Model;
/// A pending flow.
pub type Flow = auth_flows::Model;

/// Most credentials one user may register.
pub const MAX_CREDENTIALS: usize = 10;

/// The user's credentials, oldest first.
pub async fn credentials(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<Vec<Credential>> {
    Ok(webauthn_credentials::Entity::find()
        .filter(webauthn_credentials::Column::UserId.eq(user_id))
        .order_by_asc(webauthn_credentials::Column::CreatedAt)
        .order_by_asc(webauthn_credentials::Column::Id)
        .all(db)
        .await?)
}

/// Locks the user's row: credential changes of one user run one at a time.
async fn lock_user(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<()> {
    users::Entity::find_by_id(user_id)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    Ok(())
}

async fn set_two_factor(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<bool> {
    let enabled = !credentials(db, user_id).await?.is_empty();
    users::Entity::update_many()
        .col_expr(users::Column::TwoFactorEnabled, Expr::value(enabled))
        .col_expr(users::Column::UpdatedAt, Expr::value(now()))
        .filter(users::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(enabled)
}

/// Stores a newly registered credential and turns two-factor on.
pub async fn add_credential(
    db: &DatabaseConnection,
    user_id: Uuid,
    name: &str,
    credential_id: &str,
    passkey: String,
) -> StoreResult<Credential> {
    let txn = db.begin().await?;
    // Serialize registrations of one user so the limit holds under races.
    lock_user(&txn, user_id).await?;
    if credentials(&txn, user_id).await?.len() >= MAX_CREDENTIALS {
        return Err(DomainError::new(
            ErrorCode::LimitExceeded,
            format!("at most {MAX_CREDENTIALS} security keys per account"),
        )
        .into());
    }
    let row = Credential {
        id: Uuid::now_v7(),
        user_id,
        name: name.to_owned(),
        credential_id: credential_id.to_owned(),
        passkey,
        sign_count: 0,
        created_at: now(),
        last_used_at: None,
    };
    let insert = webauthn_credentials::Entity::insert(webauthn_credentials::ActiveModel {
        id: Set(row.id),
        user_id: Set(row.user_id),
        name: Set(row.name.clone()),
        credential_id: Set(row.credential_id.clone()),
        passkey: Set(row.passkey.clone()),
        sign_count: Set(0),
        created_at: Set(row.created_at),
        last_used_at: Set(None),
    })
    .exec_without_returning(&txn)
    .await;
    if let Err(err) = insert {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return Err(DomainError::bad_input("this security key is already registered").into());
        }
        return Err(err.into());
    }
    set_two_factor(&txn, user_id).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "mfa.credential_added",
            subject_type: "webauthn_credential",
            subject_id: Some(row.id),
            details: json!({ "name": name }),
        },
    )
    .await?;
    let notice = SecurityNotice::SecurityKeyAdded {
        name: row.name.clone(),
    };
    events::append(&txn, user_id, EventBody::SecurityNotice(notice)).await?;
    txn.commit().await?;
    Ok(row)
}

/// Removes one of the user's credentials; `NOT_FOUND` for anyone else's.
/// Returns whether two-factor is still on.
pub async fn remove_credential(
    db: &DatabaseConnection,
    user_id: Uuid,
    credential: Uuid,
) -> StoreResult<bool> {
    let txn = db.begin().await?;
    // Same lock as `add_credential`: the two-factor flag cannot be computed
    // from a list a racing registration is changing.
    lock_user(&txn, user_id).await?;
    let Some(key) = webauthn_credentials::Entity::find_by_id(credential)
        .filter(webauthn_credentials::Column::UserId.eq(user_id))
        .one(&txn)
        .await?
    else {
        return Err(DomainError::not_found("security key").into());
    };
    webauthn_credentials::Entity::delete_by_id(key.id)
        .exec(&txn)
        .await?;
    let enabled = set_two_factor(&txn, user_id).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "mfa.credential_removed",
            subject_type: "webauthn_credential",
            subject_id: Some(credential),
            details: json!({ "two_factor_enabled": enabled }),
        },
    )
    .await?;
    let notice = SecurityNotice::SecurityKeyRemoved { name: key.name };
    events::append(&txn, user_id, EventBody::SecurityNotice(notice)).await?;
    txn.commit().await?;
    Ok(enabled)
}

/// Records an assertion made with a credential: its signature counter must
/// exceed the highest one seen (unless the authenticator keeps no counter,
/// when both are 0). Returns false, changing nothing, on a counter that did
/// not increase: a cloned authenticator or a replayed assertion. Checked in
/// one conditional update, so two racing assertions cannot both pass.
pub async fn credential_used(
    db: &impl ConnectionTrait,
    id: Uuid,
    counter: u32,
    passkey: String,
) -> StoreResult<bool> {
    let counter = i64::from(counter);
    let fresh = if counter == 0 {
        webauthn_credentials::Column::SignCount.eq(0)
    } else {
        webauthn_credentials::Column::SignCount.lt(counter)
    };
    let updated = webauthn_credentials::Entity::update_many()
        .col_expr(webauthn_credentials::Column::LastUsedAt, Expr::value(now()))
        .col_expr(
            webauthn_credentials::Column::SignCount,
            Expr::value(counter),
        )
        .col_expr(webauthn_credentials::Column::Passkey, Expr::value(passkey))
        .filter(webauthn_credentials::Column::Id.eq(id))
        .filter(fresh)
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// A flow to store.
#[derive(Debug, Clone)]
pub struct NewFlow<'a> {
    /// What it is for.
    pub kind: &'a str,
    /// Hash of the client's token.
    pub lookup: String,
    /// The user, when known.
    pub user_id: Option<Uuid>,
    /// Server-side state.
    pub payload: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Stores a flow, replacing one with the same lookup key (one statement, so
/// two callers racing on the same key both succeed and the last one wins).
pub async fn put_flow(db: &DatabaseConnection, flow: NewFlow<'_>) -> StoreResult<Uuid> {
    let id = Uuid::now_v7();
    auth_flows::Entity::insert(auth_flows::ActiveModel {
        id: Set(id),
        kind: Set(flow.kind.to_owned()),
        lookup: Set(flow.lookup),
        user_id: Set(flow.user_id),
        payload: Set(flow.payload),
        consumed_ref: Set(None),
        created_at: Set(now()),
        expires_at: Set(flow.expires_at),
    })
    .on_conflict(
        OnConflict::column(auth_flows::Column::Lookup)
            .update_columns([
                auth_flows::Column::Id,
                auth_flows::Column::Kind,
                auth_flows::Column::UserId,
                auth_flows::Column::Payload,
                auth_flows::Column::ConsumedRef,
                auth_flows::Column::CreatedAt,
                auth_flows::Column::ExpiresAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(id)
}

/// Takes (deletes and returns) an unexpired flow of this kind. Of racing
/// callers exactly one gets it.
pub async fn take_flow(
    db: &impl ConnectionTrait,
    kind: &str,
    lookup: &str,
) -> StoreResult<Option<Flow>> {
    let Some(flow) = auth_flows::Entity::find()
        .filter(auth_flows::Column::Lookup.eq(lookup))
        .filter(auth_flows::Column::Kind.eq(kind))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let deleted = auth_flows::Entity::delete_many()
        .filter(auth_flows::Column::Id.eq(flow.id))
        .exec(db)
        .await?;
    if deleted.rows_affected != 1 || flow.expires_at <= now() {
        return Ok(None);
    }
    Ok(Some(flow))
}

/// Consumes a token flow for `reference` (for example an idempotency key):
/// true when the token is this user's, unexpired, and unused or already used
/// by the same reference.
pub async fn consume_token(
    db: &impl ConnectionTrait,
    kind: &str,
    lookup: &str,
    user_id: Uuid,
    reference: &str,
) -> StoreResult<bool> {
    let result = auth_flows::Entity::update_many()
        .col_expr(auth_flows::Column::ConsumedRef, Expr::value(reference))
        .filter(auth_flows::Column::Lookup.eq(lookup))
        .filter(auth_flows::Column::Kind.eq(kind))
        .filter(auth_flows::Column::UserId.eq(user_id))
        .filter(auth_flows::Column::ExpiresAt.gt(now()))
        .filter(
            Condition::any()
                .add(auth_flows::Column::ConsumedRef.is_null())
                .add(auth_flows::Column::ConsumedRef.eq(reference)),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Deletes expired flows, at most `limit`; returns how many.
pub async fn purge_expired_flows(db: &DatabaseConnection, limit: u64) -> StoreResult<u64> {
    let ids: Vec<Uuid> = auth_flows::Entity::find()
        .filter(auth_flows::Column::ExpiresAt.lte(now()))
        .order_by_asc(auth_flows::Column::ExpiresAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|f| f.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted = auth_flows::Entity::delete_many()
        .filter(auth_flows::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// What an OAuth2 login did with the provider's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OauthOutcome {
    /// The identity was already linked.
    Known,
    /// Linked to the existing account with the same verified e-mail.
    Linked,
    /// A new account was created for it.
    Created,
}

/// The identity a provider vouched for.
#[derive(Debug, Clone)]
pub struct ProviderIdentity<'a> {
    /// Provider name.
    pub provider: &'a str,
    /// The provider's subject id.
    pub subject: &'a str,
    /// The e-mail it gave, if any.
    pub email: Option<Email>,
    /// Whether the provider verified that e-mail.
    pub email_verified: bool,
    /// A display name for a new account.
    pub display_name: DisplayName,
}

/// Finds or creates the user behind a provider identity. An existing account
/// is linked only through an e-mail the provider has verified; an account is
/// created only for a verified e-mail.
pub async fn oauth_user(
    db: &DatabaseConnection,
    identity: ProviderIdentity<'_>,
) -> StoreResult<(UserRecord, OauthOutcome)> {
    let (provider, subject) = (identity.provider, identity.subject);
    match oauth_user_once(db, identity).await {
        Err(err) => {
            // Two first sign-ins of one identity racing: the loser hits a
            // unique index; the winner's link is now there to find.
            if let Some(user) = linked_user(db, provider, subject).await? {
                return Ok((user, OauthOutcome::Known));
            }
            Err(err)
        }
        found => found,
    }
}

/// The user already linked to the provider's subject.
async fn linked_user(
    db: &impl ConnectionTrait,
    provider: &str,
    subject: &str,
) -> StoreResult<Option<UserRecord>> {
    let linked = oauth_identities::Entity::find()
        .filter(oauth_identities::Column::Provider.eq(provider))
        .filter(oauth_identities::Column::Subject.eq(subject))
        .one(db)
        .await?;
    match linked {
        None => Ok(None),
        Some(linked) => super::users::load(db, linked.user_id)
            .await?
            .ok_or_else(|| super::inconsistent("linked user vanished"))
            .map(Some),
    }
}

async fn oauth_user_once(
    db: &DatabaseConnection,
    identity: ProviderIdentity<'_>,
) -> StoreResult<(UserRecord, OauthOutcome)> {
    let txn = db.begin().await?;
    if let Some(user) = linked_user(&txn, identity.provider, identity.subject).await? {
        txn.commit().await?;
        return Ok((user, OauthOutcome::Known));
    }
    let Some(email) = identity.email.filter(|_| identity.email_verified) else {
        return Err(DomainError::forbidden(
            "the provider did not give a verified e-mail address; verify it there, or sign in with your password",
        )
        .into());
    };
    let (user_id, outcome, reset) = match super::users::find_row_by_email(&txn, &email).await? {
        Some(row) => {
            // One identity per provider and account: a second subject with
            // the same address (an address the provider recycled to a new
            // owner, say) does not get into the account the first one has.
            // Under the user's lock, so two such subjects cannot both link.
            lock_user(&txn, row.id).await?;
            let already = oauth_identities::Entity::find()
                .filter(oauth_identities::Column::Provider.eq(identity.provider))
                .filter(oauth_identities::Column::UserId.eq(row.id))
                .one(&txn)
                .await?;
            if already.is_some() {
                return Err(DomainError::forbidden(
                    "this account is linked to another sign-in of this provider: use that one, or your password",
                )
                .into());
            }
            // Nobody proved this address when the account was made (sign-up
            // does not verify e-mail). Whoever set its password or keys may
            // not own it: the provider-verified owner takes the account over
            // and those credentials and sessions end, so an account
            // pre-registered with someone else's address cannot be kept.
            let reset = row.email_verified_at.is_none()
                && (row.password_hash.is_some() || row.two_factor_enabled);
            if reset {
                take_over(&txn, row.id).await?;
            }
            (row.id, OauthOutcome::Linked, reset)
        }
        None => {
            let user = super::users::create(&txn, &email, &identity.display_name, None).await?;
            (user.id, OauthOutcome::Created, false)
        }
    };
    users::Entity::update_many()
        .col_expr(users::Column::EmailVerifiedAt, Expr::value(Some(now())))
        .filter(users::Column::Id.eq(user_id))
        .filter(users::Column::EmailVerifiedAt.is_null())
        .exec(&txn)
        .await?;
    oauth_identities::Entity::insert(oauth_identities::ActiveModel {
        id: Set(Uuid::now_v7()),
        provider: Set(identity.provider.to_owned()),
        subject: Set(identity.subject.to_owned()),
        user_id: Set(user_id),
        email: Set(email.as_str().to_owned()),
        created_at: Set(now()),
    })
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "oauth.linked",
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({
                "provider": identity.provider,
                "email": email.masked(),
                "new_account": outcome == OauthOutcome::Created,
                "credentials_reset": reset,
            }),
        },
    )
    .await?;
    if outcome == OauthOutcome::Linked {
        let notice = SecurityNotice::ProviderLinked {
            provider: identity.provider.to_owned(),
            credentials_reset: reset,
        };
        events::append(&txn, user_id, EventBody::SecurityNotice(notice)).await?;
    }
    let user = super::users::load(&txn, user_id)
        .await?
        .ok_or_else(|| super::inconsistent("user vanished"))?;
    txn.commit().await?;
    Ok((user, outcome))
}

/// Ends every credential and session of an account whose e-mail was never
/// verified, before linking it to the verified owner.
async fn take_over(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<()> {
    lock_user(db, user_id).await?;
    users::Entity::update_many()
        .col_expr(
            users::Column::PasswordHash,
            Expr::value(Option::<String>::None),
        )
        .col_expr(users::Column::TwoFactorEnabled, Expr::value(false))
        .col_expr(users::Column::UpdatedAt, Expr::value(now()))
        .filter(users::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    webauthn_credentials::Entity::delete_many()
        .filter(webauthn_credentials::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    super::sessions::revoke_others(db, user_id, Uuid::nil()).await?;
    Ok(())
}
