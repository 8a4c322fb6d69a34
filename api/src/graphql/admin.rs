//! Operations for staff roles.

use async_graphql::{Context, Enum, ID, Object, Result};
use domain::{Role, WithdrawalOutcome};
use entity::store::payments;

use super::types::{TransactionPayload, User};
use super::{parse_id, parts};
use crate::error::ApiError;

/// How a pending withdrawal ends.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "WithdrawalOutcome")]
pub enum WithdrawalOutcomeGql {
    /// Paid out: the held amount leaves the wallet.
    Completed,
    /// Not paid out: the held amount returns to the available balance.
    Failed,
}

/// A compliance decision on a user's KYC case.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum KycDecision {
    /// Take the case into manual review (IN_REVIEW).
    StartReview,
    /// Verify the user (APPROVED, level at least 1).
    Approve,
    /// Refuse (REJECTED, level 0); needs a reason.
    Reject,
}

/// Admin mutations.
#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Completes or fails a pending withdrawal (admin role). `wallet` in the
    /// result is the owner's wallet.
    async fn settle_withdrawal(
        &self,
        ctx: &Context<'_>,
        id: ID,
        outcome: WithdrawalOutcomeGql,
    ) -> Result<TransactionPayload> {
        let (state, viewer) = parts(ctx)?;
        let admin = viewer.require_role(Role::Admin).map_err(ApiError::from)?;
        let id = parse_id(&id, "id").map_err(ApiError::from)?;
        let outcome = match outcome {
            WithdrawalOutcomeGql::Completed => WithdrawalOutcome::Completed,
            WithdrawalOutcomeGql::Failed => WithdrawalOutcome::Failed,
        };
        let result = payments::settle_withdrawal(&state.db, Some(admin.id), id, outcome)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(user.id = %admin.id, tx.id = %result.transaction.id, "withdrawal settled");
        Ok(TransactionPayload::new(result, false))
    }

    /// Decides a user's KYC case (compliance role). The user's `kycStatus`
    /// subscription receives the change.
    async fn review_kyc(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        decision: KycDecision,
        reason: Option<String>,
    ) -> Result<User> {
        let (state, viewer) = parts(ctx)?;
        let officer = viewer
            .require_role(Role::Compliance)
            .map_err(ApiError::from)?;
        let user_id = parse_id(&user_id, "userId").map_err(ApiError::from)?;
        let decision = match decision {
            KycDecision::StartReview => domain::KycDecision::StartReview,
            KycDecision::Approve => domain::KycDecision::Approve,
            KycDecision::Reject => domain::KycDecision::Reject,
        };
        let user = entity::store::users::review_kyc(
            &state.db,
            officer.id,
            user_id,
            decision,
            reason.as_deref(),
        )
        .await
        .map_err(ApiError::from)?;
        tracing::info!(user.id = %user.id, officer.id = %officer.id, kyc.status = %user.kyc_status, "KYC reviewed");
        Ok(user.into())
    }
}
