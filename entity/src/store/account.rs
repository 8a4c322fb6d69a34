//! The account lifecycle: the profile (phone and address sealed), closing,
//! the export of everything held about a user, and erasure by destroying the
//! user's data key (crypto-shredding) while the books stay.

use chrono::{DateTime, Utc};
use domain::kyc::Address;
use domain::{DisplayName, DomainError, TransactionStatus, WalletStatus};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::entities::{
    audit_log, notifications, oauth_identities, push_devices, transactions, user_keys, users,
    wallets, webauthn_credentials,
};
use crate::pii::{Field, Keyring, UserKey};
use crate::store::audit::{self, AuditRecord};
use crate::store::{StoreError, StoreResult, inconsistent, kyc, now};

/// The profile's personal fields, opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Phone number (E.164).
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<Address>,
    /// Preferred locale.
    pub locale: Option<String>,
}

/// A change of the profile: `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    /// New display name.
    pub display_name: Option<DisplayName>,
    /// New phone.
    pub phone: Option<Option<String>>,
    /// New address.
    pub address: Option<Option<Address>>,
    /// New locale.
    pub locale: Option<Option<String>>,
}

/// The user's row, locked, refusing closed accounts.
async fn open_row_for_update(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
) -> StoreResult<users::Model> {
    let row = users::Entity::find_by_id(user_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    if row.closed_at.is_some() {
        return Err(DomainError::account_closed().into());
    }
    Ok(row)
}

/// Opens the profile fields of a row (`None` where nothing is set, or the
/// data key is gone).
pub fn open_profile(
    keys: &Keyring,
    key: Option<&UserKey>,
    row: &users::Model,
) -> StoreResult<Profile> {
    let open = |column: &'static str, value: &Option<String>| -> StoreResult<Option<String>> {
        match (value, key) {
            (Some(sealed), Some(key)) => keys
                .open(key, Field::new("users", column, row.id), sealed)
                .map(Some)
                .map_err(|e| inconsistent(format!("users.{column}: {e}"))),
            _ => Ok(None),
        }
    };
    let address = open("address", &row.address)?
        .map(|a| serde_json::from_str(&a).map_err(|e| inconsistent(format!("address: {e}"))))
        .transpose()?;
    Ok(Profile {
        phone: open("phone", &row.phone)?,
        address,
        locale: row.locale.clone(),
    })
}

/// The user's profile, opened.
pub async fn profile(
    db: &impl ConnectionTrait,
    keys: &Keyring,
    user_id: Uuid,
) -> StoreResult<Profile> {
    let row = users::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    let key = kyc::existing_user_key(db, user_id).await?;
    open_profile(keys, key.as_ref(), &row)
}

/// Changes the profile, sealing phone and address, and audits which fields
/// changed (not their values).
pub async fn update_profile(
    db: &DatabaseConnection,
    keys: &Keyring,
    user_id: Uuid,
    update: ProfileUpdate,
) -> StoreResult<()> {
    let txn = db.begin().await?;
    open_row_for_update(&txn, user_id).await?;
    let key = kyc::user_key(&txn, user_id).await?;
    let mut changed = Vec::new();
    let mut q = users::Entity::update_many().col_expr(users::Column::UpdatedAt, Expr::value(now()));
    if let Some(name) = &update.display_name {
        q = q.col_expr(users::Column::DisplayName, Expr::value(name.as_str()));
        changed.push("displayName");
    }
    if let Some(phone) = &update.phone {
        let sealed = phone
            .as_deref()
            .map(|p| keys.seal(&key, Field::new("users", "phone", user_id), p));
        q = q.col_expr(users::Column::Phone, Expr::value(sealed));
        changed.push("phone");
    }
    if let Some(address) = &update.address {
        let sealed = match address {
            Some(a) => Some(keys.seal(
                &key,
                Field::new("users", "address", user_id),
                &serde_json::to_string(a).map_err(|e| inconsistent(format!("address: {e}")))?,
            )),
            None => None,
        };
        q = q.col_expr(users::Column::Address, Expr::value(sealed));
        changed.push("address");
    }
    if let Some(locale) = &update.locale {
        q = q.col_expr(users::Column::Locale, Expr::value(locale.clone()));
        changed.push("locale");
    }
    q.filter(users::Column::Id.eq(user_id)).exec(&txn).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "user.profile_updated",
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({ "fields": changed }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Closes the account: every wallet at zero with nothing pending, then the
/// wallets `CLOSED`, every session ended, the account closed and audited.
pub async fn close(db: &DatabaseConnection, user_id: Uuid) -> StoreResult<DateTime<Utc>> {
    let txn = db.begin().await?;
    open_row_for_update(&txn, user_id).await?;
    let owned = wallets::Entity::find()
        .filter(wallets::Column::UserId.eq(user_id))
        .lock_exclusive()
        .all(&txn)
        .await?;
    if let Some(w) = owned.iter().find(|w| !w.balance.0.is_zero()) {
        return Err(DomainError::bad_input(format!(
            "the {} wallet still holds money: withdraw or transfer it before closing the account",
            w.currency
        ))
        .into());
    }
    let ids: Vec<Uuid> = owned.iter().map(|w| w.id).collect();
    let pending = transactions::Entity::find()
        .filter(transactions::Column::Status.eq(TransactionStatus::Pending.as_str()))
        .filter(
            Condition::any()
                .add(transactions::Column::FromWalletId.is_in(ids.clone()))
                .add(transactions::Column::ToWalletId.is_in(ids.clone())),
        )
        .count(&txn)
        .await?;
    if pending > 0 {
        return Err(DomainError::bad_input(
            "a movement is still pending: wait until it is settled before closing the account",
        )
        .into());
    }
    let at = now();
    wallets::Entity::update_many()
        .col_expr(
            wallets::Column::Status,
            Expr::value(WalletStatus::Closed.as_str()),
        )
        .col_expr(wallets::Column::UpdatedAt, Expr::value(at))
        .filter(wallets::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    users::Entity::update_many()
        .col_expr(users::Column::ClosedAt, Expr::value(Some(at)))
        .col_expr(users::Column::UpdatedAt, Expr::value(at))
        .filter(users::Column::Id.eq(user_id))
        .exec(&txn)
        .await?;
    let ended = super::sessions::revoke_others(&txn, user_id, Uuid::nil()).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "user.closed",
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({ "wallets": ids.len(), "sessions_ended": ended }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(at)
}

/// Everything held about the user, as one JSON document: profile, KYC
/// status history and application, wallets, transactions, notifications,
/// preferences, push devices and the audit entries about them.
pub async fn export(db: &DatabaseConnection, keys: &Keyring, user_id: Uuid) -> StoreResult<Value> {
    let row = users::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    let key = kyc::existing_user_key(db, user_id).await?;
    let profile = open_profile(keys, key.as_ref(), &row)?;
    let history = kyc::history(db, user_id).await?;
    let application = kyc::application_data(db, keys, user_id).await?;
    let owned = super::wallets::list_for_user(db, user_id).await?;
    let ids: Vec<Uuid> = owned.iter().map(|w| w.id).collect();
    let txs = transactions::Entity::find()
        .filter(
            Condition::any()
                .add(transactions::Column::FromWalletId.is_in(ids.clone()))
                .add(transactions::Column::ToWalletId.is_in(ids.clone())),
        )
        .order_by_asc(transactions::Column::CreatedAt)
        .all(db)
        .await?;
    let notes = notifications::Entity::find()
        .filter(notifications::Column::UserId.eq(user_id))
        .order_by_asc(notifications::Column::CreatedAt)
        .all(db)
        .await?;
    let preferences = super::preferences::load(db, user_id).await?;
    let devices = super::preferences::devices(db, user_id).await?;
    let audit_rows = audit_log::Entity::find()
        .filter(
            Condition::any()
                .add(audit_log::Column::SubjectId.eq(user_id))
                .add(audit_log::Column::ActorId.eq(user_id)),
        )
        .order_by_asc(audit_log::Column::CreatedAt)
        .all(db)
        .await?;
    let money = |d: rust_decimal::Decimal| domain::money::to_canonical(d);
    Ok(json!({
        "exportedAt": now(),
        "account": {
            "id": row.id,
            "email": row.email,
            "displayName": row.display_name,
            "createdAt": row.created_at,
            "closedAt": row.closed_at,
            "kycStatus": row.kyc_status,
            "kycLevel": row.kyc_level,
        },
        "profile": {
            "phone": profile.phone,
            "address": profile.address,
            "locale": profile.locale,
        },
        "kyc": {
            "application": application,
            "history": history.iter().map(|h| json!({
                "fromStatus": h.from.as_str(),
                "toStatus": h.to.as_str(),
                "level": h.level,
                "reason": h.reason,
                "source": h.source.as_str(),
                "occurredAt": h.occurred_at,
            })).collect::<Vec<_>>(),
        },
        "wallets": owned.iter().map(|w| json!({
            "id": w.id,
            "currency": w.currency.code(),
            "available": money(w.available),
            "frozen": money(w.frozen),
            "status": w.status.as_str(),
        })).collect::<Vec<_>>(),
        "transactions": txs.iter().map(|t| json!({
            "id": t.id,
            "kind": t.kind,
            "status": t.status,
            "amount": money(t.amount.0),
            "currency": t.currency,
            "fromWalletId": t.from_wallet_id,
            "toWalletId": t.to_wallet_id,
            "memo": t.memo,
            "createdAt": t.created_at,
        })).collect::<Vec<_>>(),
        "notifications": notes.iter().map(|n| json!({
            "id": n.id,
            "kind": n.kind,
            "title": n.title,
            "body": n.body,
            "readAt": n.read_at,
            "createdAt": n.created_at,
        })).collect::<Vec<_>>(),
        "preferences": domain::notify::NotificationKind::ALL.iter().flat_map(|kind| {
            domain::notify::Channel::ALL.iter().map(|channel| json!({
                "kind": kind.as_str(),
                "channel": channel.as_str(),
                "enabled": preferences.allows(*kind, *channel),
            })).collect::<Vec<_>>()
        }).collect::<Vec<_>>(),
        "pushDevices": devices.iter().map(|d| json!({
            "id": d.id, "platform": d.platform.as_str(), "createdAt": d.created_at,
        })).collect::<Vec<_>>(),
        "auditTrail": audit_rows.iter().map(|a| json!({
            "action": a.action,
            "subjectType": a.subject_type,
            "byThisUser": a.actor_id == Some(user_id),
            "details": a.details,
            "at": a.created_at,
        })).collect::<Vec<_>>(),
    }))
}

/// What an erasure did.
#[derive(Debug, Clone)]
pub struct Erasure {
    /// When.
    pub erased_at: DateTime<Utc>,
    /// Until when the books are kept.
    pub books_kept_until: DateTime<Utc>,
}

/// Erases a closed account's personal data: destroys the user's data key
/// (every sealed value of theirs becomes unreadable, in backups too),
/// replaces the e-mail and name, removes credentials, devices and
/// notifications, and strips e-mail addresses from the audit details.
/// Transactions and ledger lines stay, now pointing at nobody identifiable,
/// until `retention_years` after closing.
pub async fn erase(
    db: &DatabaseConnection,
    actor_id: Option<Uuid>,
    user_id: Uuid,
    retention_years: u32,
) -> StoreResult<Erasure> {
    let txn = db.begin().await?;
    let row = users::Entity::find_by_id(user_id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    let Some(closed_at) = row.closed_at else {
        return Err(DomainError::bad_input("only a closed account can be erased").into());
    };
    if row.erased_at.is_some() {
        return Err(DomainError::bad_input("this account was already erased").into());
    }
    let at = now();
    user_keys::Entity::update_many()
        .col_expr(
            user_keys::Column::Secret,
            Expr::value(Option::<String>::None),
        )
        .col_expr(user_keys::Column::ShreddedAt, Expr::value(Some(at)))
        .filter(user_keys::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    users::Entity::update_many()
        .col_expr(
            users::Column::Email,
            Expr::value(format!("erased-{}@erased.invalid", user_id.simple())),
        )
        .col_expr(users::Column::DisplayName, Expr::value("Erased user"))
        .col_expr(
            users::Column::PasswordHash,
            Expr::value(Option::<String>::None),
        )
        .col_expr(users::Column::Phone, Expr::value(Option::<String>::None))
        .col_expr(users::Column::Address, Expr::value(Option::<String>::None))
        .col_expr(users::Column::Locale, Expr::value(Option::<String>::None))
        .col_expr(users::Column::ErasedAt, Expr::value(Some(at)))
        .col_expr(users::Column::UpdatedAt, Expr::value(at))
        .filter(users::Column::Id.eq(user_id))
        .exec(&txn)
        .await?;
    webauthn_credentials::Entity::delete_many()
        .filter(webauthn_credentials::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    oauth_identities::Entity::delete_many()
        .filter(oauth_identities::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    push_devices::Entity::delete_many()
        .filter(push_devices::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    crate::entities::deliveries::Entity::delete_many()
        .filter(crate::entities::deliveries::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    notifications::Entity::delete_many()
        .filter(notifications::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    // Audit entries stay (who did what), without the person's address.
    let entries = audit_log::Entity::find()
        .filter(
            Condition::any()
                .add(audit_log::Column::SubjectId.eq(user_id))
                .add(audit_log::Column::ActorId.eq(user_id)),
        )
        .all(&txn)
        .await?;
    for entry in entries {
        if let Value::Object(mut details) = entry.details
            && details.remove("email").is_some()
        {
            audit_log::Entity::update_many()
                .col_expr(
                    audit_log::Column::Details,
                    Expr::value(Value::Object(details)),
                )
                .filter(audit_log::Column::Id.eq(entry.id))
                .exec(&txn)
                .await?;
        }
    }
    let books_kept_until = closed_at
        .checked_add_months(chrono::Months::new(12 * retention_years))
        .ok_or_else(|| inconsistent("retention overflows"))?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id,
            action: "user.erased",
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({ "booksKeptUntil": books_kept_until }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(Erasure {
        erased_at: at,
        books_kept_until,
    })
}

/// Re-seals, in batches of `batch`, every personal value not under the
/// current master key; safe while servers run (each row is re-sealed under a
/// lock in its own transaction). Returns how many values were re-sealed.
pub async fn rotate_keys(db: &DatabaseConnection, keys: &Keyring, batch: u64) -> StoreResult<u64> {
    let current = format!("v1.{}.%", keys.current_id());
    let mut total = 0;
    // One pass over each table in id order: rows of erased users stay stale
    // (nothing can open them) without holding the pass up.
    let mut after = Uuid::nil();
    loop {
        let ids: Vec<Uuid> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::Id.gt(after))
            .filter(
                Condition::any()
                    .add(users::Column::Phone.not_like(&current))
                    .add(users::Column::Address.not_like(&current)),
            )
            .order_by_asc(users::Column::Id)
            .limit(batch)
            .into_tuple()
            .all(db)
            .await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        for id in ids {
            total += reseal_user(db, keys, id).await?;
        }
        after = last;
    }
    let mut after = Uuid::nil();
    loop {
        use crate::entities::kyc_applications::{Column as C, Entity};
        let ids: Vec<Uuid> = Entity::find()
            .select_only()
            .column(C::Id)
            .filter(C::Id.gt(after))
            .filter(stale_application(&current))
            .order_by_asc(C::Id)
            .limit(batch)
            .into_tuple()
            .all(db)
            .await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        for id in ids {
            total += reseal_application(db, keys, id).await?;
        }
        after = last;
    }
    Ok(total)
}

fn stale_application(current: &str) -> Condition {
    use crate::entities::kyc_applications::Column as C;
    [
        C::FirstName,
        C::LastName,
        C::DateOfBirth,
        C::Address,
        C::Country,
        C::DocumentNumber,
    ]
    .into_iter()
    .fold(Condition::any(), |c, col| c.add(col.not_like(current)))
}

async fn reseal_user(db: &DatabaseConnection, keys: &Keyring, id: Uuid) -> StoreResult<u64> {
    let txn = db.begin().await?;
    let Some(row) = users::Entity::find_by_id(id)
        .lock_exclusive()
        .one(&txn)
        .await?
    else {
        return Ok(0);
    };
    let Some(key) = kyc::existing_user_key(&txn, id).await? else {
        // Erased: nothing readable to re-seal; the values are cleared.
        return Ok(0);
    };
    let mut n = 0;
    let mut q = users::Entity::update_many();
    for (column, col, value) in [
        ("phone", users::Column::Phone, &row.phone),
        ("address", users::Column::Address, &row.address),
    ] {
        if let Some(sealed) = value
            && let Some(fresh) = keys
                .reseal(&key, Field::new("users", column, id), sealed)
                .map_err(|e| inconsistent(format!("users.{column}: {e}")))?
        {
            q = q.col_expr(col, Expr::value(fresh));
            n += 1;
        }
    }
    if n > 0 {
        q.filter(users::Column::Id.eq(id)).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(n)
}

async fn reseal_application(db: &DatabaseConnection, keys: &Keyring, id: Uuid) -> StoreResult<u64> {
    use crate::entities::kyc_applications::{Column as C, Entity};
    let txn = db.begin().await?;
    let Some(row) = Entity::find_by_id(id).lock_exclusive().one(&txn).await? else {
        return Ok(0);
    };
    let Some(key) = kyc::existing_user_key(&txn, row.user_id).await? else {
        return Ok(0);
    };
    let mut n = 0;
    let mut q = Entity::update_many();
    for (column, col, value) in [
        ("first_name", C::FirstName, &row.first_name),
        ("last_name", C::LastName, &row.last_name),
        ("date_of_birth", C::DateOfBirth, &row.date_of_birth),
        ("address", C::Address, &row.address),
        ("country", C::Country, &row.country),
        ("document_number", C::DocumentNumber, &row.document_number),
    ] {
        if let Some(sealed) = value
            && let Some(fresh) = keys
                .reseal(&key, Field::new("kyc_applications", column, id), sealed)
                .map_err(|e| inconsistent(format!("kyc_applications.{column}: {e}")))?
        {
            q = q.col_expr(col, Expr::value(fresh));
            n += 1;
        }
    }
    if n > 0 {
        q.filter(C::Id.eq(id)).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(n)
}
