//! Exchanges between two of the caller's wallets at a quote.

use domain::{Amount, Posting, TransactionKind, TransactionStatus};
use sea_orm::ConnectionTrait;
use serde_json::json;
use uuid::Uuid;

use crate::store::audit::{self, AuditRecord};
use crate::store::records::MoneyOutcome;
use crate::store::{StoreResult, events, inconsistent, wallets};

use super::books::{NewTransaction, insert_transaction, lock_exact, store_credited, write_posting};

/// Exchanges at a quote: two balanced postings through the house FX
/// accounts, one per currency, the residue of rounding to the target's
/// scale booked to its rounding account.
pub(super) async fn exchange(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    quote_id: Uuid,
) -> StoreResult<MoneyOutcome> {
    let quote = crate::store::exchange::take(txn, user_id, quote_id).await?;
    let [a, b] = lock_exact::<2>(txn, [quote.from_wallet_id, quote.to_wallet_id]).await?;
    let (from, to) = if a.id == quote.from_wallet_id {
        (a, b)
    } else {
        (b, a)
    };
    if from.user_id != user_id || to.user_id != user_id {
        return Err(inconsistent("a quote names another user's wallet"));
    }
    let f = quote.figures;
    let amount = Amount::new(f.amount, from.currency)?;
    let received = Amount::new(f.received, to.currency)?;
    let out = Posting::exchange_out(from.id, amount, f.fee);
    let inn = Posting::exchange_in(to.id, received, f.gross);
    let from_next = from
        .balances()
        .apply(from.id, from.currency, from.status, &out)?;
    let to_next = to.balances().apply(to.id, to.currency, to.status, &inn)?;
    let tx = insert_transaction(
        txn,
        NewTransaction {
            kind: TransactionKind::Exchange,
            status: TransactionStatus::Completed,
            amount,
            from_wallet_id: Some(from.id),
            to_wallet_id: Some(to.id),
            memo: None,
            destination: None,
            initiated_by: user_id,
            original_id: None,
            risk: None,
        },
    )
    .await?;
    write_posting(txn, tx.id, &out).await?;
    write_posting(txn, tx.id, &inn).await?;
    let from = wallets::store_balances(txn, &from, from_next).await?;
    let to_before = to.balance();
    let to = store_credited(txn, tx.id, &to, to_next).await?;
    events::balance_updated(txn, &from, -amount.value(), tx.id).await?;
    events::balance_updated(txn, &to, to.balance() - to_before, tx.id).await?;
    crate::store::exchange::mark_used(txn, quote.id, tx.id).await?;
    audit::record(
        txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "wallet.exchange",
            subject_type: "transaction",
            subject_id: Some(tx.id),
            details: json!({
                "quoteId": quote.id,
                "amount": domain::money::to_canonical(f.amount),
                "fee": domain::money::to_canonical(f.fee),
                "from": from.currency.code(),
                "to": to.currency.code(),
                "rate": domain::money::to_canonical(f.rate),
                "received": domain::money::to_canonical(f.received),
                "residue": domain::money::to_canonical(f.residue),
            }),
        },
    )
    .await?;
    Ok(MoneyOutcome {
        transaction: tx,
        wallet: from,
        counterpart: Some(to),
    })
}
