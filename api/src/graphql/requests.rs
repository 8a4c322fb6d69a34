//! Payment requests: ask another user for money, pay or decline what others ask.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::MoneyCommand;
use domain::requests::{PaymentRequestRecord, RequestStatus};
use domain::{Currency, Email};
use entity::store::requests::{self, NewRequest};

use super::scalars::Money;
use super::types::TransactionPayload;
use super::{parse_id, parts};
use crate::error::{ApiError, Result};

/// Where a payment request is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::requests::RequestStatus")]
pub enum PaymentRequestStatus {
    /// Waiting for the payer.
    Pending,
    /// Paid: `transactionId` names the transfer (which may be `HELD` for review).
    Paid,
    /// The payer declined it.
    Declined,
    /// Nobody answered before `expiresAt`.
    Expired,
}

/// Whether the caller asked or is asked.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum RequestDirection {
    /// Someone asks the caller for money.
    Incoming,
    /// The caller asks someone for money.
    Outgoing,
}

/// One user asking another for money.
#[derive(SimpleObject, Debug, Clone)]
pub struct PaymentRequest {
    /// The request's id (for `payRequest` and `declineRequest`).
    pub id: ID,
    /// Whether the caller is the payer (incoming) or the requester (outgoing).
    pub direction: RequestDirection,
    /// The display name of the other party.
    pub counterparty_name: String,
    /// The amount asked for.
    pub amount: Money,
    /// Its currency code; the payer pays from their wallet in it.
    pub currency: String,
    /// The requester's note.
    pub memo: Option<String>,
    /// Where it is, as of now.
    pub status: PaymentRequestStatus,
    /// The transfer that paid it.
    pub transaction_id: Option<ID>,
    /// When it stops being payable.
    pub expires_at: DateTime<Utc>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

impl PaymentRequest {
    /// The request as `viewer` sees it, naming the other party.
    pub(crate) fn of(
        r: PaymentRequestRecord,
        viewer: uuid::Uuid,
        counterparty_name: String,
    ) -> Self {
        let status = r.status_at(entity::store::now());
        Self {
            id: ID(r.id.to_string()),
            direction: if r.payer_id == viewer {
                RequestDirection::Incoming
            } else {
                RequestDirection::Outgoing
            },
            counterparty_name,
            amount: Money::of(r.amount, r.currency),
            currency: r.currency.code().to_owned(),
            memo: r.memo,
            status: status.into(),
            transaction_id: r.transaction_id.map(|t| ID(t.to_string())),
            expires_at: r.expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The requests as `viewer` sees them, with the other parties' display
/// names read in one query.
pub(crate) async fn shown(
    db: &sea_orm::DatabaseConnection,
    requests: Vec<PaymentRequestRecord>,
    viewer: uuid::Uuid,
) -> Result<Vec<PaymentRequest>> {
    let other = |r: &PaymentRequestRecord| {
        if r.payer_id == viewer {
            r.requester_id
        } else {
            r.payer_id
        }
    };
    let ids: Vec<uuid::Uuid> = requests.iter().map(other).collect();
    let names = entity::store::users::display_names(db, &ids).await?;
    Ok(requests
        .into_iter()
        .map(|r| {
            let name = names
                .get(&other(&r))
                .cloned()
                .unwrap_or_else(|| "a former user".to_owned());
            PaymentRequest::of(r, viewer, name)
        })
        .collect())
}

/// One request as `viewer` sees it.
async fn shown_one(
    db: &sea_orm::DatabaseConnection,
    request: PaymentRequestRecord,
    viewer: uuid::Uuid,
) -> Result<PaymentRequest> {
    let mut one = shown(db, vec![request], viewer).await?;
    one.pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a shown request vanished")))
}

/// Input of `requestPayment`.
#[derive(InputObject, Debug)]
pub struct RequestPaymentInput {
    /// The e-mail of the user asked to pay.
    pub from_email: String,
    /// Positive amount, no finer than the currency allows.
    pub amount: Money,
    /// Currency code; the caller receives into their wallet in it.
    pub currency: String,
    /// A note for the payer (up to 280 characters).
    pub memo: Option<String>,
    /// Hours until it expires: 1 to 720, 168 (a week) when absent.
    pub expires_in_hours: Option<i32>,
}

/// Payment request queries.
#[derive(Default)]
pub struct RequestQuery;

#[Object]
impl RequestQuery {
    /// Requests made to and by the caller, newest first, at most 100;
    /// `status` filters as of now (`EXPIRED`: pending ones past their expiry).
    async fn payment_requests(
        &self,
        ctx: &Context<'_>,
        status: Option<PaymentRequestStatus>,
    ) -> Result<Vec<PaymentRequest>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let found =
            requests::list(&state.db, user.id, status.map(RequestStatus::from), 100).await?;
        shown(&state.db, found, user.id).await
    }
}

/// Payment request mutations.
#[derive(Default)]
pub struct RequestMutation;

#[Object]
impl RequestMutation {
    /// Asks another user for money. They see it in `paymentRequests`, get a
    /// notification and a `paymentRequestUpdated` event, and pay it with
    /// `payRequest` or decline it.
    async fn request_payment(
        &self,
        ctx: &Context<'_>,
        input: RequestPaymentInput,
    ) -> Result<PaymentRequest> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        state
            .limiter
            .hit(
                crate::limits::Bucket::Money(user.id),
                state.settings.rate_money_per_user,
            )
            .await?;
        let payer = Email::parse(&input.from_email)?;
        let currency = Currency::parse(&input.currency)?;
        let memo = input
            .memo
            .as_deref()
            .map(|m| super::wallets::bounded_text(m, "memo", 280))
            .transpose()?
            .filter(|m| !m.is_empty());
        let ttl = input
            .expires_in_hours
            .map(|h| chrono::Duration::hours(i64::from(h)));
        let request = requests::create(
            &state.db,
            user.id,
            NewRequest {
                payer,
                amount: input.amount.0,
                currency,
                memo,
                ttl,
            },
        )
        .await?;
        tracing::info!(user.id = %user.id, request.id = %request.id, "payment requested");
        shown_one(&state.db, request, user.id).await
    }

    /// Pays a request made to the caller: a transfer from the caller's
    /// wallet in its currency, under the rules of any transfer (tier
    /// limits, risk checks, a step-up token at or above the threshold).
    async fn pay_request(
        &self,
        ctx: &Context<'_>,
        id: ID,
        idempotency_key: String,
        step_up_token: Option<String>,
    ) -> Result<TransactionPayload> {
        let request_id = parse_id(&id, "id")?;
        let executed = super::wallets::execute_money(
            ctx,
            &idempotency_key,
            MoneyCommand::PayRequest { request_id },
            step_up_token.as_deref(),
        )
        .await?;
        Ok(TransactionPayload::new(executed.outcome, executed.replayed))
    }

    /// Declines a request made to the caller; the requester is told.
    async fn decline_request(&self, ctx: &Context<'_>, id: ID) -> Result<PaymentRequest> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let id = parse_id(&id, "id")?;
        let declined = requests::decline(&state.db, user.id, id).await?;
        shown_one(&state.db, declined, user.id).await
    }
}
