//! Operations for staff roles.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{Role, WalletStatus, WithdrawalOutcome};
use entity::store::{audit, payments, users, wallets};

use super::kyc::KycStatus;
use super::types::{RoleGql, TransactionPayload, User, Wallet};
use super::{PageRequest, parse_id, parts};
use crate::error::{ApiError, Result};

/// One audit record.
#[derive(SimpleObject, Debug, Clone)]
pub struct AuditEntry {
    /// Id.
    pub id: ID,
    /// Who acted; null for the system.
    pub actor_id: Option<ID>,
    /// Dotted action name, such as `auth.login` or `wallet.transfer`.
    pub action: String,
    /// Kind of object acted on.
    pub subject_type: String,
    /// The object acted on.
    pub subject_id: Option<ID>,
    /// Non-sensitive details.
    pub details: Json<serde_json::Value>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Staff queries.
#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// The audit trail, newest first (compliance or admin role).
    #[graphql(complexity = "super::page_complexity(first, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        actor_id: Option<ID>,
        action: Option<String>,
    ) -> Result<Connection<String, AuditEntry, EmptyFields, EmptyFields>> {
        let (state, viewer) = parts(ctx)?;
        let staff = viewer.require_user()?;
        if !staff.has_role(Role::Compliance) {
            return Err(ApiError::from(domain::DomainError::forbidden(
                "this needs the compliance or admin role",
            )));
        }
        let page = PageRequest::parse(first, after.as_deref())?;
        let actor = actor_id
            .as_ref()
            .map(|id| parse_id(id, "actorId"))
            .transpose()?;
        let (rows, has_next) =
            audit::list(&state.db, actor, action.as_deref(), page.after, page.limit).await?;
        Ok(page.connection(
            rows,
            has_next,
            |r| (r.created_at, r.id),
            |r| AuditEntry {
                id: ID(r.id.to_string()),
                actor_id: r.actor_id.map(|a| ID(a.to_string())),
                action: r.action,
                subject_type: r.subject_type,
                subject_id: r.subject_id.map(|s| ID(s.to_string())),
                details: Json(r.details),
                created_at: r.created_at,
            },
        ))
    }

    /// Any user (support, compliance or admin role).
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let (state, viewer) = parts(ctx)?;
        let staff = viewer.require_user()?;
        if !(staff.has_role(Role::Support) || staff.has_role(Role::Compliance)) {
            return Err(ApiError::from(domain::DomainError::forbidden(
                "this needs the support, compliance or admin role",
            )));
        }
        let id = parse_id(&id, "id")?;
        let user = users::load(&state.db, id).await?;
        Ok(user.map(User::from))
    }

    /// Users whose KYC case has this status (default IN_REVIEW), oldest
    /// first, at most 100 (compliance role).
    async fn kyc_reviews(&self, ctx: &Context<'_>, status: Option<KycStatus>) -> Result<Vec<User>> {
        let (state, viewer) = parts(ctx)?;
        viewer.require_role(Role::Compliance)?;
        let status = status.unwrap_or(KycStatus::InReview);
        let found = users::with_kyc_status(&state.db, status.into()).await?;
        Ok(found.into_iter().map(User::from).collect())
    }
}

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
    /// Completes or fails a pending withdrawal (admin role; never one's
    /// own). `wallet` in the result is the owner's wallet.
    async fn settle_withdrawal(
        &self,
        ctx: &Context<'_>,
        id: ID,
        outcome: WithdrawalOutcomeGql,
    ) -> Result<TransactionPayload> {
        let (state, viewer) = parts(ctx)?;
        let admin = viewer.require_role(Role::Admin)?;
        let id = parse_id(&id, "id")?;
        let outcome = match outcome {
            WithdrawalOutcomeGql::Completed => WithdrawalOutcome::Completed,
            WithdrawalOutcomeGql::Failed => WithdrawalOutcome::Failed,
        };
        let result = payments::settle_withdrawal(&state.db, Some(admin.id), id, outcome).await?;
        tracing::info!(user.id = %admin.id, tx.id = %result.transaction.id, "withdrawal settled");
        Ok(TransactionPayload::new(result, false))
    }

    /// Grants a role (admin role, with a step-up token).
    async fn grant_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: RoleGql,
        step_up_token: Option<String>,
    ) -> Result<User> {
        change_role(ctx, &user_id, role, step_up_token, RoleChange::Grant).await
    }

    /// Withdraws a role (admin role, with a step-up token). Takes effect
    /// when the user's access token is next refreshed.
    async fn revoke_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: RoleGql,
        step_up_token: Option<String>,
    ) -> Result<User> {
        change_role(ctx, &user_id, role, step_up_token, RoleChange::Revoke).await
    }

    /// Erases a closed account's personal data (admin role, with a step-up
    /// token): its data key is destroyed, so every encrypted value of it is
    /// unreadable for good; e-mail and name are replaced; credentials,
    /// devices and notifications removed. Transactions and ledger lines stay
    /// for the legal retention period (`LEGAL_RETENTION_YEARS`), pointing at
    /// nobody identifiable. Audited.
    async fn erase_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        step_up_token: Option<String>,
    ) -> Result<bool> {
        let (state, viewer) = parts(ctx)?;
        let admin = viewer.require_role(Role::Admin)?;
        let user_id = parse_id(&id, "id")?;
        if users::load(&state.db, user_id).await?.is_none() {
            return Err(ApiError::from(domain::DomainError::not_found("user")));
        }
        crate::auth::webauthn::require_step_up(
            state,
            admin.id,
            step_up_token.as_deref(),
            &format!("erase-user:{user_id}"),
        )
        .await?;
        let erased = entity::store::account::erase(
            &state.db,
            Some(admin.id),
            user_id,
            state.settings.kyc.retention_years,
        )
        .await?;
        tracing::info!(user.id = %user_id, admin.id = %admin.id, books_kept_until = %erased.books_kept_until, "account erased");
        Ok(true)
    }

    /// Freezes a wallet: it refuses money movements (compliance or admin
    /// role; never one's own wallet).
    async fn freeze_wallet(&self, ctx: &Context<'_>, id: ID, reason: String) -> Result<Wallet> {
        set_wallet_status(ctx, &id, WalletStatus::Frozen, Some(reason)).await
    }

    /// Unfreezes a wallet (compliance or admin role; never one's own wallet).
    async fn unfreeze_wallet(&self, ctx: &Context<'_>, id: ID) -> Result<Wallet> {
        set_wallet_status(ctx, &id, WalletStatus::Active, None).await
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
        let officer = viewer.require_role(Role::Compliance)?;
        let user_id = parse_id(&user_id, "userId")?;
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
        .await?;
        tracing::info!(user.id = %user.id, officer.id = %officer.id, kyc.status = user.kyc_status.as_str(), "KYC reviewed");
        Ok(user.into())
    }
}

async fn set_wallet_status(
    ctx: &Context<'_>,
    id: &ID,
    status: WalletStatus,
    reason: Option<String>,
) -> Result<Wallet> {
    let (state, viewer) = parts(ctx)?;
    let officer = viewer.require_role(Role::Compliance)?;
    let id = parse_id(id, "id")?;
    let reason = reason.map(|r| r.trim().to_owned());
    if status == WalletStatus::Frozen
        && reason
            .as_deref()
            .is_none_or(|r| r.is_empty() || r.chars().count() > 500)
    {
        return Err(ApiError::from(domain::DomainError::bad_input(
            "a reason of 1 to 500 characters is required",
        )));
    }
    let wallet = wallets::set_status(&state.db, officer.id, id, status, reason.as_deref()).await?;
    tracing::info!(wallet.id = %id, officer.id = %officer.id, status = status.as_str(), "wallet status changed");
    Ok(wallet.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleChange {
    Grant,
    Revoke,
}

async fn change_role(
    ctx: &Context<'_>,
    user_id: &ID,
    role: RoleGql,
    step_up_token: Option<String>,
    change: RoleChange,
) -> Result<User> {
    let (state, viewer) = parts(ctx)?;
    let admin = viewer.require_role(Role::Admin)?;
    let user_id = parse_id(user_id, "userId")?;
    // An unknown user should not spend the step-up token.
    if users::load(&state.db, user_id).await?.is_none() {
        return Err(ApiError::from(domain::DomainError::not_found("user")));
    }
    crate::auth::webauthn::require_step_up(
        state,
        admin.id,
        step_up_token.as_deref(),
        &format!("role-change:{}", uuid::Uuid::new_v4()),
    )
    .await?;
    let user = match change {
        RoleChange::Grant => {
            users::grant_role_to(&state.db, Some(admin.id), user_id, role.into()).await
        }
        RoleChange::Revoke => {
            users::revoke_role(&state.db, Some(admin.id), user_id, role.into()).await
        }
    }?;
    tracing::info!(user.id = %user.id, admin.id = %admin.id, role = ?role, change = ?change, "role changed");
    Ok(user.into())
}
