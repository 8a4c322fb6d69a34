//! Staff operations on money that already moved: the risk review queue and
//! its decisions (compliance role), reversals and refunds (admin role).

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::MoneyCommand;
use domain::{DomainError, HoldDecision, Role};
use entity::store::risk::{self, AlertRecord};

use super::scalars::Money;
use super::types::TransactionPayload;
use super::{parse_id, parts};
use crate::error::Result;

/// A risk rule (see the README for what each looks at).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::risk::RiskRule")]
pub enum RiskRule {
    /// Many movements, or a large total, within the velocity window.
    Velocity,
    /// A first transfer to this recipient at or above the large amount.
    NewRecipient,
    /// A withdrawal soon after money came into the wallet.
    WithdrawalAfterDeposit,
    /// Far above what the user usually moves in this currency.
    AboveHistory,
    /// A large movement from a session signed in on a new device.
    NewDevice,
}

/// What a risk score decided.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::risk::RiskDecision")]
pub enum RiskDecision {
    /// Went through (never in the alert log).
    Allow,
    /// Accepted with its funds frozen until compliance decides.
    Hold,
    /// Refused with `RISK_BLOCKED`.
    Block,
}

/// A risk rule that fired on a movement.
#[derive(SimpleObject, Debug, Clone)]
pub struct RiskRuleHit {
    /// The rule.
    pub rule: RiskRule,
    /// What it added to the score.
    pub weight: i32,
    /// What it saw.
    pub detail: String,
}

/// A movement whose risk score crossed the hold or block threshold.
#[derive(SimpleObject, Debug, Clone)]
pub struct RiskAlert {
    /// The alert's id.
    pub id: ID,
    /// Whose movement.
    pub user_id: ID,
    /// The held movement, for `releaseHold` / `rejectHold`; null when it was blocked.
    pub transaction_id: Option<ID>,
    /// `TRANSFER` or `WITHDRAWAL`.
    pub kind: super::types::TransactionKind,
    /// The amount.
    pub amount: Money,
    /// Its currency.
    pub currency: String,
    /// The score, 0 to 100.
    pub score: i32,
    /// `HOLD` or `BLOCK`.
    pub decision: RiskDecision,
    /// The rules that fired.
    pub rules: Vec<RiskRuleHit>,
    /// `RELEASED` or `REJECTED` once compliance decided.
    pub resolution: Option<String>,
    /// The officer who decided.
    pub resolved_by: Option<ID>,
    /// Their reason.
    pub reason: Option<String>,
    /// When they decided.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the movement was scored.
    pub created_at: DateTime<Utc>,
}

impl From<AlertRecord> for RiskAlert {
    fn from(a: AlertRecord) -> Self {
        Self {
            id: ID(a.id.to_string()),
            user_id: ID(a.user_id.to_string()),
            transaction_id: a.transaction_id.map(|t| ID(t.to_string())),
            kind: a.kind.into(),
            amount: Money::of(a.amount, a.currency),
            currency: a.currency.code().to_owned(),
            score: i32::try_from(a.score).unwrap_or(100),
            decision: a.decision.into(),
            rules: a
                .hits
                .into_iter()
                .map(|h| RiskRuleHit {
                    rule: h.rule.into(),
                    weight: i32::try_from(h.weight).unwrap_or(100),
                    detail: h.detail,
                })
                .collect(),
            resolution: a.resolution,
            resolved_by: a.resolved_by.map(|u| ID(u.to_string())),
            reason: a.reason,
            resolved_at: a.resolved_at,
            created_at: a.created_at,
        }
    }
}

/// A reason of 1 to 500 characters, trimmed.
fn reason(raw: &str) -> Result<String, DomainError> {
    let r = raw.trim();
    if r.is_empty() || r.chars().count() > 500 || r.chars().any(char::is_control) {
        return Err(DomainError::bad_input(
            "a reason of 1 to 500 characters is required",
        ));
    }
    Ok(r.to_owned())
}

/// Staff money queries.
#[derive(Default)]
pub struct StaffMoneyQuery;

#[Object]
impl StaffMoneyQuery {
    /// The risk alert log, newest first, at most 200 (compliance role):
    /// by default only holds waiting for a decision; `pending: false` for
    /// every alert, blocks and decided holds included.
    async fn risk_reviews(
        &self,
        ctx: &Context<'_>,
        pending: Option<bool>,
    ) -> Result<Vec<RiskAlert>> {
        let (state, viewer) = parts(ctx)?;
        viewer.require_role(Role::Compliance)?;
        let found = risk::alerts(&state.db, pending.unwrap_or(true), 200).await?;
        Ok(found.into_iter().map(RiskAlert::from).collect())
    }
}

/// Staff money mutations.
#[derive(Default)]
pub struct StaffMoneyMutation;

async fn decide(
    ctx: &Context<'_>,
    id: &ID,
    raw_reason: &str,
    decision: HoldDecision,
) -> Result<TransactionPayload> {
    let (state, viewer) = parts(ctx)?;
    let officer = viewer.require_role(Role::Compliance)?;
    let id = parse_id(id, "id")?;
    let reason = reason(raw_reason)?;
    let outcome =
        entity::store::holds::decide(&state.db, officer.id, id, decision, &reason).await?;
    tracing::info!(officer.id = %officer.id, tx.id = %id, ?decision, "risk hold decided");
    Ok(TransactionPayload::new(outcome, false))
}

#[Object]
impl StaffMoneyMutation {
    /// Lets a held movement go through (compliance role; never one's own):
    /// a transfer reaches its recipient, a withdrawal goes to the payout
    /// queue. `wallet` in the result is the sender's.
    async fn release_hold(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<TransactionPayload> {
        decide(ctx, &id, &reason, HoldDecision::Release).await
    }

    /// Refuses a held movement (compliance role; never one's own): it
    /// becomes `FAILED` and its funds are available to the sender again.
    async fn reject_hold(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<TransactionPayload> {
        decide(ctx, &id, &reason, HoldDecision::Reject).await
    }

    /// Reverses a completed transfer or deposit with a compensating posting
    /// (admin role; never one's own money): the original becomes `REVERSED`,
    /// the result's transaction is the `REVERSAL` and its wallet the one the
    /// money was taken from. When that wallet's available balance does not
    /// cover it, the answer is `INSUFFICIENT_FUNDS` (with the `shortfall`)
    /// unless `placeDebt` records the shortfall as the owner's debt, repaid
    /// first from money arriving in the wallet.
    async fn reverse_transaction(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
        idempotency_key: String,
        place_debt: Option<bool>,
    ) -> Result<TransactionPayload> {
        let (_, viewer) = parts(ctx)?;
        viewer.require_role(Role::Admin)?;
        let command = MoneyCommand::Reverse {
            transaction_id: parse_id(&id, "id")?,
            reason: self::reason(&reason)?,
            allow_debt: place_debt.unwrap_or(false),
        };
        let executed = super::wallets::execute_money(ctx, &idempotency_key, command, None).await?;
        Ok(TransactionPayload::new(executed.outcome, executed.replayed))
    }

    /// Refunds part of a card deposit to its card through the payment
    /// provider (admin role): the amount is held at once, and the `REFUND`
    /// stays `PENDING` until the provider's webhook completes it (the money
    /// leaves the wallet) or fails it (the hold is released).
    async fn refund_deposit(
        &self,
        ctx: &Context<'_>,
        id: ID,
        amount: Money,
        idempotency_key: String,
    ) -> Result<TransactionPayload> {
        let (_, viewer) = parts(ctx)?;
        viewer.require_role(Role::Admin)?;
        let command = MoneyCommand::Refund {
            transaction_id: parse_id(&id, "id")?,
            amount: amount.0,
        };
        let executed = super::wallets::execute_money(ctx, &idempotency_key, command, None).await?;
        Ok(TransactionPayload::new(executed.outcome, executed.replayed))
    }
}
