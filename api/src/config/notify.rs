//! Settings of the notifier: the SMTP server, the delivery workers, retries.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SMTP_URL` | unset: e-mail off | `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host` (TLS), `smtp://host:25` (no TLS) |
//! | `SMTP_FROM` | required with `SMTP_URL` | sender mailbox, `Wallet <no-reply@example.com>` |
//! | `SMTP_TIMEOUT_SECS` | `10` | longest SMTP command; an attempt takes at most three times it |
//! | `SMTP_POOL_SIZE` | `8` | pooled SMTP connections per instance |
//! | `FCM_SERVICE_ACCOUNT_FILE` | unset: push off | Google service-account JSON key of the Firebase project |
//! | `FCM_PROJECT_ID` | the key's `project_id` | Firebase project |
//! | `FCM_BASE_URL` | `https://fcm.googleapis.com` | FCM HTTP v1 endpoint |
//! | `FCM_TOKEN_URL` | the key's `token_uri` | OAuth2 token endpoint |
//! | `FCM_TIMEOUT_SECS` | `10` | longest FCM request |
//! | `PUSH_MAX_DEVICES` | `10` | push devices per user |
//! | `NOTIFY_WORKERS` | `8` | delivery workers per channel (e-mail, push; in-app gets a quarter) per instance; `0` runs none here |
//! | `NOTIFY_BATCH` | `4` | e-mail and push deliveries a worker takes at once (in-app workers take up to 512, or `NOTIFY_BATCH` if more, claimed or handed over by the relay, and write them in one statement per user on PostgreSQL, one transaction elsewhere) |
//! | `NOTIFY_LEASE_SECS` | `60` | how long a taken delivery belongs to its worker; after a crash it is sent again once this ran out |
//! | `NOTIFY_POLL_INTERVAL_MS` | `1000` | how often idle workers look for due deliveries (the local relay also wakes them) |
//! | `NOTIFY_MAX_ATTEMPTS` | `8` | attempts per delivery, the first included; then a dead letter |
//! | `NOTIFY_RETRY_BASE_MS` | `1000` | ceiling of the first retry's delay (doubling per attempt, full jitter) |
//! | `NOTIFY_RETRY_MAX_SECS` | `600` | largest retry delay |

use std::time::Duration;

use anyhow::bail;
use domain::notify::RetryPolicy;
use notifier::channels::email::SmtpSettings;
use notifier::channels::push::FcmSettings;

use super::Env;

/// Every setting of the notifier.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The SMTP server; `None` turns e-mail off.
    pub smtp: Option<SmtpSettings>,
    /// Firebase Cloud Messaging; `None` turns push off.
    pub fcm: Option<FcmSettings>,
    /// Push devices per user.
    pub max_push_devices: u64,
    /// Delivery workers in this process.
    pub workers: usize,
    /// Deliveries a worker takes at once.
    pub batch: u64,
    /// How long a taken delivery belongs to its worker.
    pub lease: Duration,
    /// Idle workers' polling interval.
    pub poll_interval: Duration,
    /// Attempts, backoff and its cap.
    pub retry: RetryPolicy,
}

impl NotifySettings {
    pub(super) fn read(env: &Env<'_>, production: bool) -> anyhow::Result<Self> {
        let smtp = match env.var("SMTP_URL") {
            None => {
                if env.var("SMTP_FROM").is_some() {
                    bail!("SMTP_FROM is set but SMTP_URL is not");
                }
                None
            }
            Some(url) => {
                let Some(from) = env.var("SMTP_FROM") else {
                    bail!("SMTP_FROM is required when SMTP_URL is set");
                };
                let smtp = SmtpSettings {
                    url: url.trim().to_owned(),
                    from: from.trim().to_owned(),
                    timeout: Duration::from_secs(env.parsed("SMTP_TIMEOUT_SECS", 10u64)?),
                    pool_size: env.parsed("SMTP_POOL_SIZE", 8u32)?,
                };
                smtp.validate()?;
                Some(smtp)
            }
        };
        let fcm = match env.var("FCM_SERVICE_ACCOUNT_FILE") {
            None => None,
            Some(file) => {
                let fcm = FcmSettings {
                    service_account_file: file.trim().into(),
                    project_id: env.var("FCM_PROJECT_ID").map(|p| p.trim().to_owned()),
                    base_url: env.var("FCM_BASE_URL").map_or_else(
                        || "https://fcm.googleapis.com".to_owned(),
                        |u| u.trim().to_owned(),
                    ),
                    token_url: env.var("FCM_TOKEN_URL").map(|u| u.trim().to_owned()),
                    timeout: Duration::from_secs(env.parsed("FCM_TIMEOUT_SECS", 10u64)?.max(1)),
                };
                fcm.validate()?;
                if production {
                    for (var, url) in [
                        ("FCM_BASE_URL", Some(&fcm.base_url)),
                        ("FCM_TOKEN_URL", fcm.token_url.as_ref()),
                    ] {
                        if let Some(url) = url
                            && !url.starts_with("https://")
                        {
                            bail!("{var} must be an https:// URL in production");
                        }
                    }
                }
                Some(fcm)
            }
        };
        let max_push_devices: u64 = env.parsed("PUSH_MAX_DEVICES", 10u64)?;
        if max_push_devices == 0 {
            bail!("PUSH_MAX_DEVICES must be at least 1");
        }
        let max_attempts: u32 = env.parsed("NOTIFY_MAX_ATTEMPTS", 8u32)?;
        if max_attempts == 0 {
            bail!("NOTIFY_MAX_ATTEMPTS must be at least 1");
        }
        let lease_secs: u64 = env.parsed("NOTIFY_LEASE_SECS", 60u64)?;
        let batch: u64 = env.parsed("NOTIFY_BATCH", 4u64)?;
        if lease_secs == 0 || batch == 0 {
            bail!("NOTIFY_LEASE_SECS and NOTIFY_BATCH must be above 0");
        }
        // A lease shorter than one attempt would let a second worker send a
        // message the first is still sending.
        let longest_attempt = [
            smtp.as_ref().map(|s| s.timeout.as_secs() * 3),
            fcm.as_ref().map(|f| f.timeout.as_secs() * 3),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        if lease_secs <= longest_attempt {
            bail!(
                "NOTIFY_LEASE_SECS={lease_secs} must exceed the longest attempt ({longest_attempt} s: three times SMTP_TIMEOUT_SECS or FCM_TIMEOUT_SECS)"
            );
        }
        Ok(Self {
            smtp,
            fcm,
            max_push_devices,
            workers: env.parsed("NOTIFY_WORKERS", 8usize)?,
            batch,
            lease: Duration::from_secs(lease_secs),
            poll_interval: Duration::from_millis(
                env.parsed("NOTIFY_POLL_INTERVAL_MS", 1_000u64)?.max(10),
            ),
            retry: RetryPolicy {
                max_attempts,
                base: Duration::from_millis(env.parsed("NOTIFY_RETRY_BASE_MS", 1_000u64)?),
                max: Duration::from_secs(env.parsed("NOTIFY_RETRY_MAX_SECS", 600u64)?),
            },
        })
    }
}
