//! Risk checks against the books: the facts the rules need, read inside the
//! money transaction after the wallet is locked; the alert log; and the
//! review of held movements by compliance.

use chrono::{DateTime, Utc};
use domain::risk::{Assessment, RiskDecision, RiskFacts, RiskRule, RiskRules, RuleHit};
use domain::{Currency, DomainError, TransactionKind, TransactionStatus, WalletRecord};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::entities::{risk_alerts, transactions};
use crate::money::Money;
use crate::store::writes::shift_placeholders;
use crate::store::{StoreResult, inconsistent, now, sessions};

/// How many earlier movements the rules look at.
const HISTORY: u64 = 50;

/// Statuses of movements out that count as history (rejected and failed
/// ones did not happen).
const MOVED: [TransactionStatus; 4] = [
    TransactionStatus::Pending,
    TransactionStatus::Held,
    TransactionStatus::Completed,
    TransactionStatus::Reversed,
];

/// What the rules are checked with: the rules and the session asking.
#[derive(Debug, Clone, Copy)]
pub struct RiskContext<'a> {
    /// The configured rules.
    pub rules: &'a RiskRules,
    /// The session making the request, for the new-device rule.
    pub session_id: Option<Uuid>,
}

/// The wallet's latest movements out (amount, when), newest first: what
/// the velocity and history rules look at.
pub(crate) type History = Vec<(Decimal, DateTime<Utc>)>;

impl RiskContext<'_> {
    /// Whether [`assess`] needs the wallet's [`History`].
    pub(crate) fn needs_history(&self) -> bool {
        self.rules.uses(RiskRule::Velocity) || self.rules.uses(RiskRule::AboveHistory)
    }
}

/// The query of the [`History`] of `wallet_id`: rows of
/// `(amount, created_at)`, newest first.
fn history_query(wallet_id: Uuid) -> sea_orm::Select<transactions::Entity> {
    transactions::Entity::find()
        .select_only()
        .column(transactions::Column::Amount)
        .column(transactions::Column::CreatedAt)
        .filter(transactions::Column::FromWalletId.eq(wallet_id))
        .filter(transactions::Column::Kind.is_in([
            TransactionKind::Transfer.as_str(),
            TransactionKind::Withdrawal.as_str(),
        ]))
        .filter(transactions::Column::Status.is_in(MOVED.map(TransactionStatus::as_str)))
        .order_by_desc(transactions::Column::CreatedAt)
        .limit(HISTORY)
}

/// [`history_query`] as PostgreSQL text to embed in a statement whose
/// `values` come before its own (they are appended).
pub(crate) fn history_sql(wallet_id: Uuid, values: &mut Vec<sea_orm::Value>) -> String {
    let statement = history_query(wallet_id).build(sea_orm::DatabaseBackend::Postgres);
    let sql = shift_placeholders(&statement.sql, values.len());
    values.extend(statement.values.map(|v| v.0).unwrap_or_default());
    sql
}

/// Scores a movement of `amount` out of `wallet` (locked by the caller);
/// `recipient` is the receiving wallet of a transfer. `history` is the
/// wallet's [`History`] when the caller read it already (with the limits'
/// usage, in one statement); otherwise it is read here when the rules need it.
pub(crate) async fn assess(
    txn: &impl ConnectionTrait,
    ctx: RiskContext<'_>,
    wallet: &WalletRecord,
    kind: TransactionKind,
    amount: Decimal,
    recipient: Option<Uuid>,
    history: Option<History>,
) -> StoreResult<Assessment> {
    let at = now();
    let large = amount >= ctx.rules.large(wallet.currency);
    // Only the velocity and history rules look at earlier movements.
    let recent: History = match history {
        _ if !ctx.needs_history() => History::new(),
        Some(history) => history,
        None => {
            let rows: Vec<(Money, DateTime<Utc>)> =
                history_query(wallet.id).into_tuple().all(txn).await?;
            rows.into_iter().map(|(a, t)| (a.0, t)).collect()
        }
    };
    // Only asked when its rule could fire: a large first transfer.
    let paid_recipient_before = match recipient {
        Some(to) if large && ctx.rules.uses(RiskRule::NewRecipient) => Some(
            transactions::Entity::find()
                .select_only()
                .column(transactions::Column::Id)
                .filter(transactions::Column::FromWalletId.eq(wallet.id))
                .filter(transactions::Column::ToWalletId.eq(to))
                .filter(transactions::Column::Kind.eq(TransactionKind::Transfer.as_str()))
                .filter(transactions::Column::Status.eq(TransactionStatus::Completed.as_str()))
                .into_tuple::<Uuid>()
                .one(txn)
                .await?
                .is_some(),
        ),
        Some(_) => Some(true),
        None => None,
    };
    let last_deposit_at = if kind == TransactionKind::Withdrawal
        && ctx.rules.uses(RiskRule::WithdrawalAfterDeposit)
    {
        transactions::Entity::find()
            .select_only()
            .column(transactions::Column::CreatedAt)
            .filter(transactions::Column::ToWalletId.eq(wallet.id))
            .filter(transactions::Column::Kind.is_in([
                TransactionKind::Deposit.as_str(),
                TransactionKind::Transfer.as_str(),
            ]))
            .filter(transactions::Column::Status.eq(TransactionStatus::Completed.as_str()))
            .order_by_desc(transactions::Column::CreatedAt)
            .into_tuple::<DateTime<Utc>>()
            .one(txn)
            .await?
    } else {
        None
    };
    let new_device_since = match ctx.session_id {
        Some(session) if large && ctx.rules.uses(RiskRule::NewDevice) => {
            sessions::new_device_since(txn, session).await?
        }
        _ => None,
    };
    let facts = RiskFacts {
        kind,
        amount,
        currency: wallet.currency,
        at,
        recent,
        paid_recipient_before,
        last_deposit_at,
        new_device_since,
    };
    Ok(ctx.rules.assess(&facts))
}

/// The comma-separated rules that fired, as stored on the transaction.
pub(crate) fn rule_names(assessment: &Assessment) -> Option<String> {
    (!assessment.hits.is_empty()).then(|| {
        assessment
            .hits
            .iter()
            .map(|h| h.rule.as_str())
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// A movement whose score crossed a threshold.
#[derive(Debug, Clone)]
pub(crate) struct NewAlert {
    pub user_id: Uuid,
    pub transaction_id: Option<Uuid>,
    pub kind: TransactionKind,
    pub amount: Decimal,
    pub currency: Currency,
    pub assessment: Assessment,
}

/// Writes an alert to the log.
pub(crate) async fn record_alert(db: &impl ConnectionTrait, alert: &NewAlert) -> StoreResult<()> {
    let hits = serde_json::to_string(&alert.assessment.hits)
        .map_err(|e| inconsistent(format!("risk hits: {e}")))?;
    risk_alerts::Entity::insert(risk_alerts::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(alert.user_id),
        transaction_id: Set(alert.transaction_id),
        kind: Set(alert.kind.as_str().to_owned()),
        amount: Set(Money(alert.amount)),
        currency: Set(alert.currency.code().to_owned()),
        score: Set(i32::try_from(alert.assessment.score).unwrap_or(100)),
        decision: Set(alert.assessment.decision.as_str().to_owned()),
        hits: Set(hits),
        resolution: Set(None),
        resolved_by: Set(None),
        reason: Set(None),
        resolved_at: Set(None),
        created_at: Set(now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// An alert as compliance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    /// Its id.
    pub id: Uuid,
    /// Whose movement.
    pub user_id: Uuid,
    /// The held movement (none for a blocked one).
    pub transaction_id: Option<Uuid>,
    /// Transfer or withdrawal.
    pub kind: TransactionKind,
    /// The amount.
    pub amount: Decimal,
    /// Its currency.
    pub currency: Currency,
    /// The score.
    pub score: u32,
    /// Hold or block.
    pub decision: RiskDecision,
    /// The rules that fired.
    pub hits: Vec<RuleHit>,
    /// `RELEASED` or `REJECTED`, once decided.
    pub resolution: Option<String>,
    /// Who decided.
    pub resolved_by: Option<Uuid>,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the movement was scored.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<risk_alerts::Model> for AlertRecord {
    type Error = crate::store::StoreError;

    fn try_from(row: risk_alerts::Model) -> Result<Self, Self::Error> {
        let bad = |what: &str| inconsistent(format!("risk alert {} {what}", row.id));
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            transaction_id: row.transaction_id,
            kind: TransactionKind::parse(&row.kind).map_err(|_| bad("kind"))?,
            amount: row.amount.0.normalize(),
            currency: Currency::parse(&row.currency).map_err(|_| bad("currency"))?,
            score: u32::try_from(row.score).map_err(|_| bad("score"))?,
            decision: RiskDecision::parse(&row.decision).map_err(|_| bad("decision"))?,
            hits: serde_json::from_str(&row.hits).map_err(|_| bad("hits"))?,
            resolution: row.resolution,
            resolved_by: row.resolved_by,
            reason: row.reason,
            resolved_at: row.resolved_at,
            created_at: row.created_at,
        })
    }
}

/// The alert log, newest first: only holds waiting for a decision when
/// `pending`, else every alert. At most `limit`.
pub async fn alerts(
    db: &DatabaseConnection,
    pending: bool,
    limit: u64,
) -> StoreResult<Vec<AlertRecord>> {
    let mut query = risk_alerts::Entity::find();
    if pending {
        query = query
            .filter(risk_alerts::Column::Decision.eq(RiskDecision::Hold.as_str()))
            .filter(risk_alerts::Column::Resolution.is_null());
    }
    query
        .order_by_desc(risk_alerts::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(AlertRecord::try_from)
        .collect()
}

/// Marks the hold alert of a transaction decided.
pub(crate) async fn resolve(
    txn: &impl ConnectionTrait,
    transaction_id: Uuid,
    officer: Uuid,
    resolution: &str,
    reason: &str,
) -> StoreResult<()> {
    let updated = risk_alerts::Entity::update_many()
        .col_expr(risk_alerts::Column::Resolution, Expr::value(resolution))
        .col_expr(risk_alerts::Column::ResolvedBy, Expr::value(officer))
        .col_expr(risk_alerts::Column::Reason, Expr::value(reason))
        .col_expr(risk_alerts::Column::ResolvedAt, Expr::value(now()))
        .filter(risk_alerts::Column::TransactionId.eq(transaction_id))
        .filter(risk_alerts::Column::Resolution.is_null())
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DomainError::bad_input("this movement has no open risk hold").into());
    }
    Ok(())
}
