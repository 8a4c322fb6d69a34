//! E-mail over SMTP with lettre: a pooled transport built from `SMTP_URL`
//! (`smtp://` with or without `?tls=required`, `smtps://`), a timeout on
//! every attempt, a multipart text and HTML message whose `Message-ID` is the
//! delivery's id (a repeat after a crash carries the same one).

use std::time::Duration;

use anyhow::Context;
use entity::store::deliveries::DeliveryRecord;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Channel, Delivered, SendError};
use crate::templates::Rendered;

/// How to reach the SMTP server. `Debug` hides the URL (it holds the password).
#[derive(Clone)]
pub struct SmtpSettings {
    /// `SMTP_URL`.
    pub url: String,
    /// `SMTP_FROM`: the sender, `Wallet <no-reply@example.com>`.
    pub from: String,
    /// `SMTP_TIMEOUT_SECS`: longest attempt.
    pub timeout: Duration,
    /// `SMTP_POOL_SIZE`: pooled connections at most.
    pub pool_size: u32,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Checks the settings as the server starts; errors name the variable
    /// and never echo the URL.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.builder()?;
        self.mailbox()?;
        if self.timeout.is_zero() {
            anyhow::bail!("SMTP_TIMEOUT_SECS must be positive");
        }
        Ok(())
    }

    fn builder(&self) -> anyhow::Result<lettre::transport::smtp::AsyncSmtpTransportBuilder> {
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.url).map_err(|_| {
            anyhow::anyhow!(
                "SMTP_URL is not a valid SMTP URL (smtp://user:pass@host:587?tls=required, smtps://user:pass@host, smtp://host:25)"
            )
        })
    }

    fn mailbox(&self) -> anyhow::Result<Mailbox> {
        self.from.parse().with_context(|| {
            format!(
                "SMTP_FROM={:?} is not a mailbox such as Wallet <no-reply@example.com>",
                self.from
            )
        })
    }
}

/// The e-mail channel.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    id_domain: String,
    timeout: Duration,
}

impl Email {
    /// Builds the pooled transport (no connection is opened yet).
    pub fn new(settings: &SmtpSettings) -> anyhow::Result<Self> {
        settings.validate()?;
        let transport = settings
            .builder()?
            .timeout(Some(settings.timeout))
            .pool_config(PoolConfig::new().max_size(settings.pool_size.max(1)))
            .build();
        let from = settings.mailbox()?;
        let id_domain = from.email.domain().to_owned();
        Ok(Self {
            transport,
            from,
            id_domain,
            timeout: settings.timeout,
        })
    }

    fn message(&self, delivery: &DeliveryRecord, message: &Rendered) -> Result<Message, SendError> {
        let to: Mailbox = delivery
            .target
            .parse()
            .map_err(|_| SendError::Permanent("the recipient address is not valid".into()))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.title.clone())
            .message_id(Some(format!("<{}@{}>", delivery.id, self.id_domain)))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(message.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(message.html.clone()),
                    ),
            )
            .map_err(|e| SendError::Permanent(format!("building the message: {e}")))
    }
}

#[async_trait::async_trait]
impl Channel for Email {
    fn kind(&self) -> domain::notify::Channel {
        domain::notify::Channel::Email
    }

    async fn deliver(
        &self,
        delivery: &DeliveryRecord,
        message: &Rendered,
    ) -> Result<Delivered, SendError> {
        let email = self.message(delivery, message)?;
        // lettre's timeout bounds each command; this bounds the whole attempt.
        let sent = tokio::time::timeout(self.timeout * 3, self.transport.send(email))
            .await
            .map_err(|_| SendError::retry("SMTP timed out"))?;
        let code = |err: &lettre::transport::smtp::Error| err.status().map(|c| c.to_string());
        match sent {
            Ok(_) => Ok(Delivered::Accepted),
            // A refused sign-in is our configuration, not this message:
            // keep it for when SMTP_URL is fixed instead of a dead letter.
            Err(err) if code(&err).is_some_and(|c| AUTH_CODES.contains(&c.as_str())) => {
                tracing::error!(code = %code(&err).unwrap_or_default(), "the SMTP server refused our sign-in: check SMTP_URL");
                Err(SendError::retry(
                    "SMTP refused the sign-in (check SMTP_URL)",
                ))
            }
            Err(err) if err.is_permanent() => Err(SendError::Permanent(format!(
                "SMTP refused the message: {}",
                err.status()
                    .map_or_else(|| "permanent error".to_owned(), |c| c.to_string())
            ))),
            Err(err) => Err(SendError::retry(smtp_reason(&err))),
        }
    }
}

/// Replies that refuse our authentication (RFC 4954): 530 required, 534
/// mechanism too weak, 535 credentials invalid, 538 encryption required.
const AUTH_CODES: [&str; 4] = ["530", "534", "535", "538"];

/// A failure's description without addresses (lettre's messages may quote
/// the server's reply, which can echo the recipient).
fn smtp_reason(err: &lettre::transport::smtp::Error) -> String {
    if err.is_timeout() {
        "SMTP timed out".into()
    } else if err.is_transient() {
        format!(
            "SMTP deferred the message ({})",
            err.status()
                .map_or_else(|| "4xx".to_owned(), |c| c.to_string())
        )
    } else if err.is_tls() {
        "SMTP TLS failed".into()
    } else {
        "SMTP connection failed".into()
    }
}
