//! What people are told about an event: a title, a plain text and an HTML
//! body per event kind, the same for every channel (in-app shows the title
//! and the text, e-mail sends both bodies, push sends the title and the text).
//!
//! Amounts are shown at their currency's scale with the currency code
//! (`12.50 USD`); counterparties by their display name; times in UTC.
//! Everything a user typed (names, memos, reasons) is escaped in HTML.

use chrono::{DateTime, Utc};
use domain::events::{KycStatusChanged, SecurityNotice, TransactionMoved, WithdrawalSettled};
use domain::{Currency, EventBody, KycStatus, TransactionStatus};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// What it is about, e.g. `transfer.received` (the notification's kind).
    pub kind: &'static str,
    /// Short title (the e-mail subject, the push title).
    pub title: String,
    /// Plain text.
    pub text: String,
    /// HTML.
    pub html: String,
    /// Ids the app can link to.
    pub data: Value,
}

/// What rendering needs beyond the event.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The counterparty's display name, for transfers.
    pub counterparty: Option<String>,
}

/// `12.50 USD`: the amount at the currency's scale and its code.
pub fn money(amount: Decimal, currency: Currency) -> String {
    let mut shown = amount.round_dp(currency.scale());
    shown.rescale(currency.scale());
    format!("{shown} {}", currency.code())
}

/// `30 Nov 2026, 10:00 UTC`.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%-d %b %Y, %H:%M UTC").to_string()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The message for an event, or `None` for events nobody is told about.
pub fn render(body: &EventBody, occurred_at: DateTime<Utc>, ctx: &Context) -> Option<Rendered> {
    let someone = || {
        ctx.counterparty
            .clone()
            .unwrap_or_else(|| "another user".to_owned())
    };
    match body {
        EventBody::TransactionReceived(moved) => {
            Some(transfer(moved, occurred_at, Direction::In, &someone()))
        }
        EventBody::TransactionSent(moved) => {
            Some(transfer(moved, occurred_at, Direction::Out, &someone()))
        }
        EventBody::WithdrawalSettled(settled) => Some(withdrawal(settled, occurred_at)),
        EventBody::KycStatusChanged(kyc) => Some(kyc_status(kyc, occurred_at)),
        EventBody::SecurityNotice(notice) => Some(security(notice, occurred_at)),
        EventBody::BalanceUpdated(_) | EventBody::NotificationCreated(_) => None,
    }
}

enum Direction {
    In,
    Out,
}

fn transfer(
    moved: &TransactionMoved,
    at: DateTime<Utc>,
    direction: Direction,
    counterparty: &str,
) -> Rendered {
    let tx = &moved.transaction;
    let amount = money(tx.amount, tx.currency);
    let (kind, title, sentence) = match direction {
        Direction::In => (
            "transfer.received",
            "Money received",
            format!("You received {amount} from {counterparty}"),
        ),
        Direction::Out => (
            "transfer.sent",
            "Money sent",
            format!("You sent {amount} to {counterparty}"),
        ),
    };
    let html_sentence = match direction {
        Direction::In => format!(
            "You received <strong>{}</strong> from {}",
            escape(&amount),
            escape(counterparty)
        ),
        Direction::Out => format!(
            "You sent <strong>{}</strong> to {}",
            escape(&amount),
            escape(counterparty)
        ),
    };
    let memo_text = tx
        .memo
        .as_deref()
        .map(|m| format!("\nNote: {m}"))
        .unwrap_or_default();
    let memo_html = tx
        .memo
        .as_deref()
        .map(|m| format!("<p>Note: {}</p>", escape(m)))
        .unwrap_or_default();
    let wallet = match direction {
        Direction::In => tx.to_wallet_id,
        Direction::Out => tx.from_wallet_id,
    };
    Rendered {
        kind,
        title: title.to_owned(),
        text: format!("{sentence} on {}.{memo_text}", when(at)),
        html: page(
            title,
            &format!(
                "<p>{html_sentence} on {}.</p>{memo_html}",
                escape(&when(at))
            ),
        ),
        data: json!({ "transactionId": tx.id, "walletId": wallet }),
    }
}

fn withdrawal(settled: &WithdrawalSettled, at: DateTime<Utc>) -> Rendered {
    let tx = &settled.transaction;
    let amount = money(tx.amount, tx.currency);
    let (title, verb) = if tx.status == TransactionStatus::Completed {
        ("Withdrawal completed", "was paid out")
    } else {
        ("Withdrawal failed", "failed; the amount is available again")
    };
    let text = format!("Your withdrawal of {amount} {verb} ({}).", when(at));
    Rendered {
        kind: "withdrawal.settled",
        title: title.to_owned(),
        html: page(title, &format!("<p>{}</p>", escape(&text))),
        text,
        data: json!({ "transactionId": tx.id, "walletId": tx.from_wallet_id }),
    }
}

fn kyc_status(kyc: &KycStatusChanged, at: DateTime<Utc>) -> Rendered {
    let (title, text) = match kyc.status {
        KycStatus::Approved => (
            "Identity verified",
            "Your identity has been verified.".to_owned(),
        ),
        KycStatus::Rejected => (
            "Identity verification refused",
            format!(
                "We could not verify your identity: {}",
                kyc.reason.as_deref().unwrap_or("see details in the app")
            ),
        ),
        KycStatus::InReview => (
            "Identity verification in review",
            "A compliance officer is reviewing your documents.".to_owned(),
        ),
        KycStatus::Pending => (
            "Identity verification submitted",
            "We received your documents and will tell you the outcome.".to_owned(),
        ),
        KycStatus::NotStarted => (
            "Identity verification reset",
            "Please submit your identity documents again.".to_owned(),
        ),
    };
    Rendered {
        kind: "kyc.status",
        title: title.to_owned(),
        html: page(
            title,
            &format!("<p>{}</p><p>{}</p>", escape(&text), escape(&when(at))),
        ),
        text,
        data: json!({ "status": kyc.status.as_str(), "level": kyc.level }),
    }
}

fn security(notice: &SecurityNotice, at: DateTime<Utc>) -> Rendered {
    const NOT_YOU: &str = "If this was not you, change your password now and remove any security key you do not know.";
    let when = when(at);
    let (title, text) = match notice {
        SecurityNotice::SignedIn { method } => {
            let how = match method.as_str() {
                "password" => "your password".to_owned(),
                "webauthn" => "your password and a security key".to_owned(),
                other => match other.strip_prefix("oauth:") {
                    Some(provider) => format!("your {provider} account"),
                    None => "a new session".to_owned(),
                },
            };
            (
                "New sign-in to your account",
                format!("Your account was signed in to with {how} on {when}. {NOT_YOU}"),
            )
        }
        SecurityNotice::ProviderLinked {
            provider,
            credentials_reset,
        } => (
            "Sign-in method added",
            if *credentials_reset {
                format!(
                    "Your {provider} account was linked to sign in to this account on {when}. \
                     Because this e-mail address had not been verified before, the password, \
                     security keys and sessions set up until then were ended: set a new password \
                     if you want one. {NOT_YOU}"
                )
            } else {
                format!(
                    "Your {provider} account was linked to sign in to this account on {when}. {NOT_YOU}"
                )
            },
        ),
        SecurityNotice::SecurityKeyAdded { name } => (
            "Security key added",
            format!(
                "A security key named \"{name}\" was added to your account on {when}. {NOT_YOU}"
            ),
        ),
        SecurityNotice::SecurityKeyRemoved { name } => (
            "Security key removed",
            format!(
                "The security key named \"{name}\" was removed from your account on {when}. {NOT_YOU}"
            ),
        ),
        SecurityNotice::PasswordChanged => (
            "Password changed",
            format!(
                "Your password was changed on {when} and your other sessions were signed out. {NOT_YOU}"
            ),
        ),
    };
    Rendered {
        kind: "security.notice",
        title: title.to_owned(),
        html: page(title, &format!("<p>{}</p>", escape(&text))),
        text,
        data: json!({}),
    }
}

fn page(title: &str, content: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family: sans-serif\"><h1 style=\"font-size: 1.25em\">{}</h1>{content}</body></html>",
        escape(title),
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{TransactionKind, TransactionRecord};
    use uuid::Uuid;

    fn tx(memo: Option<&str>) -> TransactionRecord {
        let at: DateTime<Utc> = "2026-11-30T10:05:00Z".parse().expect("time");
        TransactionRecord {
            id: Uuid::now_v7(),
            kind: TransactionKind::Transfer,
            status: TransactionStatus::Completed,
            amount: Decimal::new(45, 1),
            currency: Currency::Usd,
            from_wallet_id: Some(Uuid::now_v7()),
            to_wallet_id: Some(Uuid::now_v7()),
            memo: memo.map(str::to_owned),
            destination: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn amounts_show_at_the_currency_scale() {
        assert_eq!(money(Decimal::new(45, 1), Currency::Usd), "4.50 USD");
        assert_eq!(money(Decimal::ZERO, Currency::Btc), "0.00000000 BTC");
        assert_eq!(money(Decimal::new(1, 6), Currency::Usdc), "0.000001 USDC");
    }

    #[test]
    fn a_received_transfer_names_amount_sender_and_time_and_escapes_what_users_typed() {
        let body = EventBody::TransactionReceived(TransactionMoved {
            transaction: tx(Some("<b>rent</b>")),
            counterparty_id: None,
        });
        let at = "2026-11-30T10:05:07Z".parse().expect("time");
        let ctx = Context {
            counterparty: Some("Ann & <Co>".into()),
        };
        let r = render(&body, at, &ctx).expect("rendered");
        assert_eq!(r.kind, "transfer.received");
        assert_eq!(
            r.text,
            "You received 4.50 USD from Ann & <Co> on 30 Nov 2026, 10:05 UTC.\nNote: <b>rent</b>"
        );
        assert!(r.html.contains("from Ann &amp; &lt;Co&gt;"), "{}", r.html);
        assert!(
            r.html.contains("Note: &lt;b&gt;rent&lt;/b&gt;"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<b>rent"), "{}", r.html);
    }

    #[test]
    fn balance_updates_are_not_announced() {
        let wallet = domain::WalletRecord {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            currency: Currency::Eur,
            available: Decimal::ONE,
            frozen: Decimal::ZERO,
            status: domain::WalletStatus::Active,
            version: 1,
            updated_at: Utc::now(),
        };
        let body = EventBody::BalanceUpdated(domain::events::BalanceUpdated::of(
            &wallet,
            Decimal::ONE,
            Uuid::nil(),
        ));
        assert_eq!(render(&body, Utc::now(), &Context::default()), None);
    }
}
