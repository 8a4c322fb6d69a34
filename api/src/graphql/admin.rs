//! Operations for staff roles.

use async_graphql::{Context, Enum, ID, Object, Result};
use domain::{Role, WithdrawalOutcome};
use entity::store::payments;

use super::types::TransactionPayload;
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
}
