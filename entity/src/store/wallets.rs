//! Wallets: opening, reading, locking, and writing new balances with a
//! version check.

use domain::{Balances, Currency, DomainError};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, SqlErr, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::wallets;
use crate::money::Money;
use crate::store::audit::{self, AuditRecord};
use crate::store::records::WalletRecord;
use crate::store::writes::{self, Write, Writes};
use crate::store::{StoreError, StoreResult, inconsistent, now};

/// Opens the user's wallet in a currency, or returns the one already open.
pub async fn open(
    db: &DatabaseConnection,
    user_id: Uuid,
    currency: Currency,
) -> StoreResult<WalletRecord> {
    if let Some(existing) = find_by_currency(db, user_id, currency).await? {
        return Ok(existing);
    }
    let closed = crate::entities::users::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .is_some_and(|u| u.closed_at.is_some());
    if closed {
        return Err(DomainError::account_closed().into());
    }
    let txn = db.begin().await?;
    let at = now();
    let id = Uuid::now_v7();
    let insert = wallets::Entity::insert(wallets::ActiveModel {
        id: Set(id),
        user_id: Set(user_id),
        currency: Set(currency.code().to_owned()),
        balance: Set(Money(Decimal::ZERO)),
        available: Set(Money(Decimal::ZERO)),
        frozen: Set(Money(Decimal::ZERO)),
        debt: Set(Money(Decimal::ZERO)),
        status: Set(domain::WalletStatus::Active.as_str().to_owned()),
        version: Set(0),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(&txn)
    .await;
    match insert {
        Ok(_) => {}
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            // A concurrent request opened it first.
            txn.rollback().await?;
            return find_by_currency(db, user_id, currency)
                .await?
                .ok_or_else(|| inconsistent("wallet vanished after unique violation"));
        }
        Err(err) => return Err(err.into()),
    }
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "wallet.open",
            subject_type: "wallet",
            subject_id: Some(id),
            details: json!({ "currency": currency }),
        },
    )
    .await?;
    let wallet = get(&txn, id)
        .await?
        .ok_or_else(|| inconsistent("wallet vanished"))?;
    txn.commit().await?;
    Ok(wallet)
}

/// Any wallet by id.
pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<Option<WalletRecord>> {
    wallets::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(WalletRecord::try_from)
        .transpose()
}

/// The wallet if it belongs to the user; `NOT_FOUND` otherwise, so that other
/// users' wallet ids reveal nothing.
pub async fn get_owned(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> StoreResult<WalletRecord> {
    match get(db, id).await? {
        Some(w) if w.user_id == user_id => Ok(w),
        _ => Err(DomainError::not_found("wallet").into()),
    }
}

/// The user's wallet in a currency.
pub async fn find_by_currency(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    currency: Currency,
) -> StoreResult<Option<WalletRecord>> {
    wallets::Entity::find()
        .filter(wallets::Column::UserId.eq(user_id))
        .filter(wallets::Column::Currency.eq(currency.code()))
        .one(db)
        .await?
        .map(WalletRecord::try_from)
        .transpose()
}

/// The user's wallets, oldest first.
pub async fn list_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> StoreResult<Vec<WalletRecord>> {
    wallets::Entity::find()
        .filter(wallets::Column::UserId.eq(user_id))
        .order_by_asc(wallets::Column::CreatedAt)
        .order_by_asc(wallets::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(WalletRecord::try_from)
        .collect()
}

/// Locks wallets for update in ascending id order, whatever order they are
/// asked in, so that two transfers between the same wallets cannot deadlock.
/// Returns them in the order asked. (On SQLite the single connection
/// serializes transactions instead.)
pub async fn lock_in_order(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> StoreResult<Vec<WalletRecord>> {
    // One statement: the lock is taken row by row in the sort's order.
    let locked: Vec<WalletRecord> = wallets::Entity::find()
        .filter(wallets::Column::Id.is_in(ids.to_vec()))
        .order_by_asc(wallets::Column::Id)
        .lock_exclusive()
        .all(db)
        .await?
        .into_iter()
        .map(WalletRecord::try_from)
        .collect::<StoreResult<_>>()?;
    ids.iter()
        .map(|id| {
            locked
                .iter()
                .find(|w| w.id == *id)
                .cloned()
                .ok_or_else(|| StoreError::from(DomainError::not_found("wallet")))
        })
        .collect()
}

/// Writes new balances if the wallet is still at the version read; bumps the
/// version. Returns the wallet as written.
pub async fn store_balances(
    db: &impl ConnectionTrait,
    wallet: &WalletRecord,
    next: Balances,
) -> StoreResult<WalletRecord> {
    store(db, wallet, next, wallet.debt).await
}

/// [`store_balances`], also setting what the owner owes.
pub async fn store(
    db: &impl ConnectionTrait,
    wallet: &WalletRecord,
    next: Balances,
    debt: Decimal,
) -> StoreResult<WalletRecord> {
    writes::at_once(db, |w| stage(w, wallet, next, debt)).await
}

/// Stages [`store`] with the other writes of its transaction; returns the
/// wallet as it will be written.
pub(crate) fn stage(
    writes: &mut Writes,
    wallet: &WalletRecord,
    next: Balances,
    debt: Decimal,
) -> WalletRecord {
    let at = now();
    let update = wallets::Entity::update_many()
        .col_expr(wallets::Column::Debt, Expr::value(Money(debt)))
        .col_expr(
            wallets::Column::Available,
            Expr::value(Money(next.available)),
        )
        .col_expr(wallets::Column::Frozen, Expr::value(Money(next.frozen)))
        .col_expr(wallets::Column::Balance, Expr::value(Money(next.total())))
        .col_expr(wallets::Column::Version, Expr::value(wallet.version + 1))
        .col_expr(wallets::Column::UpdatedAt, Expr::value(at))
        .filter(wallets::Column::Id.eq(wallet.id))
        .filter(wallets::Column::Version.eq(wallet.version));
    let (id, version) = (wallet.id, wallet.version);
    writes.push(
        Write::new(update.build(writes.backend())).expecting(1, move |_| {
            inconsistent(format!(
                "wallet {id} changed under its lock (version {version})"
            ))
        }),
    );
    WalletRecord {
        available: next.available.normalize(),
        frozen: next.frozen.normalize(),
        debt: debt.normalize(),
        version: wallet.version + 1,
        updated_at: at,
        ..wallet.clone()
    }
}

/// Freezes or unfreezes a wallet (staff), with an audit record. A frozen
/// wallet refuses money movements with `WALLET_FROZEN`; pending withdrawals
/// can still be settled.
pub async fn set_status(
    db: &DatabaseConnection,
    actor_id: Uuid,
    id: Uuid,
    status: domain::WalletStatus,
    reason: Option<&str>,
) -> StoreResult<WalletRecord> {
    let txn = db.begin().await?;
    let wallet = lock_in_order(&txn, &[id])
        .await?
        .pop()
        .ok_or_else(|| inconsistent("locked wallet missing"))?;
    if wallet.user_id == actor_id {
        // Separation of duties: another officer must act on staff's own wallets.
        return Err(
            DomainError::forbidden("nobody may freeze or unfreeze their own wallet").into(),
        );
    }
    if wallet.status == domain::WalletStatus::Closed {
        return Err(DomainError::new(
            domain::ErrorCode::AccountClosed,
            "the wallet belongs to a closed account",
        )
        .into());
    }
    let at = now();
    wallets::Entity::update_many()
        .col_expr(wallets::Column::Status, Expr::value(status.as_str()))
        .col_expr(wallets::Column::Version, Expr::value(wallet.version + 1))
        .col_expr(wallets::Column::UpdatedAt, Expr::value(at))
        .filter(wallets::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(actor_id),
            action: if status == domain::WalletStatus::Frozen {
                "wallet.frozen"
            } else {
                "wallet.unfrozen"
            },
            subject_type: "wallet",
            subject_id: Some(id),
            details: json!({ "reason": reason, "previous": wallet.status.as_str() }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(WalletRecord {
        status,
        version: wallet.version + 1,
        updated_at: at,
        ..wallet
    })
}
