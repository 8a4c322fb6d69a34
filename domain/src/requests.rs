//! Payment requests: one user asks another for an amount; the payer pays it
//! (a transfer under the same rules as any other) or declines it, and an
//! unanswered request expires.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainError;
use crate::money::Currency;

string_enum! {
    /// Where a payment request is in its life.
    RequestStatus {
        /// Waiting for the payer.
        Pending => "PENDING",
        /// Paid: `transactionId` names the transfer.
        Paid => "PAID",
        /// The payer declined it.
        Declined => "DECLINED",
        /// Nobody answered in time.
        Expired => "EXPIRED",
    }
}

/// How long a request waits when the requester names no expiry.
pub const DEFAULT_TTL: Duration = Duration::days(7);
/// The longest a request may wait.
pub const MAX_TTL: Duration = Duration::days(30);

/// A payment request, as events carry it and the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequestRecord {
    /// The request's id.
    pub id: Uuid,
    /// Who asks for the money (and receives it).
    pub requester_id: Uuid,
    /// Who is asked to pay.
    pub payer_id: Uuid,
    /// The amount asked for.
    pub amount: rust_decimal::Decimal,
    /// Its currency: the payer pays from their wallet in it.
    pub currency: Currency,
    /// The requester's note.
    pub memo: Option<String>,
    /// Where it is (an unanswered request past its expiry reads `EXPIRED`).
    pub status: RequestStatus,
    /// The transfer that paid it.
    pub transaction_id: Option<Uuid>,
    /// When it stops being payable.
    pub expires_at: DateTime<Utc>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

impl PaymentRequestRecord {
    /// The status as of `now`: a pending request past its expiry is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> RequestStatus {
        if self.status == RequestStatus::Pending && now >= self.expires_at {
            RequestStatus::Expired
        } else {
            self.status
        }
    }

    /// Checks that `user` may answer (pay or decline) the request now.
    pub fn ensure_answerable(&self, user: Uuid, now: DateTime<Utc>) -> Result<(), DomainError> {
        if user != self.payer_id {
            return Err(DomainError::not_found("payment request"));
        }
        match self.status_at(now) {
            RequestStatus::Pending => Ok(()),
            RequestStatus::Expired => Err(DomainError::bad_input("the payment request expired")),
            other => Err(DomainError::bad_input(format!(
                "the payment request is already {}",
                other.as_str()
            ))),
        }
    }
}

/// The expiry of a new request: `ttl` from now (the default when absent),
/// at least an hour and at most [`MAX_TTL`].
pub fn expiry(now: DateTime<Utc>, ttl: Option<Duration>) -> Result<DateTime<Utc>, DomainError> {
    let ttl = ttl.unwrap_or(DEFAULT_TTL);
    if ttl < Duration::hours(1) || ttl > MAX_TTL {
        return Err(DomainError::bad_input(
            "a request expires between 1 hour and 30 days from now",
        ));
    }
    Ok(now + ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: RequestStatus, expires_in: Duration) -> PaymentRequestRecord {
        let now = Utc::now();
        PaymentRequestRecord {
            id: Uuid::new_v4(),
            requester_id: Uuid::new_v4(),
            payer_id: Uuid::new_v4(),
            amount: rust_decimal::Decimal::from(5),
            currency: Currency::Eur,
            memo: None,
            status,
            transaction_id: None,
            expires_at: now + expires_in,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn only_the_payer_answers_a_live_request() {
        let now = Utc::now();
        let r = request(RequestStatus::Pending, Duration::hours(1));
        assert!(r.ensure_answerable(r.payer_id, now).is_ok());
        assert_eq!(
            r.ensure_answerable(r.requester_id, now)
                .expect_err("requester")
                .code,
            crate::ErrorCode::NotFound
        );
        let expired = request(RequestStatus::Pending, Duration::seconds(-1));
        assert_eq!(expired.status_at(now), RequestStatus::Expired);
        assert!(expired.ensure_answerable(expired.payer_id, now).is_err());
        let paid = request(RequestStatus::Paid, Duration::hours(1));
        assert!(paid.ensure_answerable(paid.payer_id, now).is_err());
        assert_eq!(paid.status_at(now + Duration::days(9)), RequestStatus::Paid);
    }

    #[test]
    fn expiry_is_bounded() {
        let now = Utc::now();
        assert_eq!(expiry(now, None).expect("default"), now + DEFAULT_TTL);
        assert!(expiry(now, Some(Duration::minutes(5))).is_err());
        assert!(expiry(now, Some(Duration::days(31))).is_err());
    }
}
