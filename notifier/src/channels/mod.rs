//! The delivery channels behind one trait: in-app ([`in_app`]), e-mail over
//! SMTP ([`email`]) and push through FCM HTTP v1 ([`push`]).

pub mod email;
pub mod in_app;
pub mod push;

use std::time::Duration;

use entity::store::deliveries::DeliveryRecord;

use crate::templates::Rendered;

/// What became of a delivery the channel took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The channel accepted it; the worker records that.
    Accepted,
    /// The channel recorded it itself, with the delivery's mark, in one
    /// database transaction (in-app).
    Recorded,
    /// The claim was lost (its lease ran out and another worker took it):
    /// nothing was done.
    ClaimLost,
}

/// Why a channel did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (a connection failure, a timeout, a 4xx
    /// SMTP reply, HTTP 429 or 5xx), not before `after` when the other side
    /// said so.
    #[error("{reason}")]
    Retry {
        /// What went wrong, without personal data.
        reason: String,
        /// The least delay the other side asked for.
        after: Option<Duration>,
    },
    /// Trying again cannot help (the address is refused for good).
    #[error("{0}")]
    Permanent(String),
    /// The target no longer exists (a removed or unregistered device):
    /// the delivery ends without being a dead letter.
    #[error("{0}")]
    TargetGone(String),
}

impl SendError {
    /// A retryable failure with no delay asked for.
    pub fn retry(reason: impl Into<String>) -> Self {
        SendError::Retry {
            reason: reason.into(),
            after: None,
        }
    }
}

/// A database failure inside a channel: logged here, retried without its
/// details (users see `lastError`).
pub(crate) fn database(e: &entity::StoreError) -> SendError {
    tracing::warn!(error = %e, "delivery: database error");
    SendError::retry("database unavailable")
}

/// One delivery of a batch: its message (`None`: nothing to tell) and the
/// trace it is delivered in.
pub struct Batched<'a> {
    /// The claimed delivery.
    pub delivery: &'a DeliveryRecord,
    /// What to deliver.
    pub message: Option<Rendered>,
    /// The `traceparent` of its delivery span.
    pub trace_parent: Option<String>,
}

/// One way of reaching people.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    /// Which channel this is.
    fn kind(&self) -> domain::notify::Channel;

    /// Delivers one message of a claimed delivery to its target.
    async fn deliver(
        &self,
        delivery: &DeliveryRecord,
        message: &Rendered,
    ) -> Result<Delivered, SendError>;

    /// Whether the workers hand this channel whole batches
    /// ([`Channel::deliver_batch`]) instead of one delivery at a time with
    /// its claim renewed before each send: for a channel that only writes
    /// to the database (in-app).
    fn batched(&self) -> bool {
        false
    }

    /// Delivers a batch; each delivery's outcome, in order. By default one
    /// after another.
    async fn deliver_batch(&self, batch: Vec<Batched<'_>>) -> Vec<Result<Delivered, SendError>> {
        let mut out = Vec::with_capacity(batch.len());
        for item in batch {
            out.push(match &item.message {
                Some(message) => self.deliver(item.delivery, message).await,
                None => Ok(Delivered::Accepted),
            });
        }
        out
    }
}
