//! What people are told about an event: a title, a plain text and an HTML
//! body per event kind, the same for every channel (in-app shows the title
//! and the text, e-mail sends both bodies, push sends the title and the text).
//!
//! Amounts are shown at their currency's scale with the currency code
//! (`12.50 USD`); counterparties by their display name; times in UTC.
//! Everything a user typed (names, memos, reasons) is escaped in HTML.

use chrono::{DateTime, Utc};
use domain::events::{
    KycStatusChanged, PaymentRequestChanged, RequestChange, SecurityNotice, TransactionChange,
    TransactionMoved, TransactionUpdated, WithdrawalSettled,
};
use domain::{Currency, EventBody, KycStatus, TransactionKind, TransactionStatus};
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
    /// The counterparty's display name, for transfers and payment requests.
    pub counterparty: Option<String>,
    /// Who the event is for.
    pub recipient: Option<uuid::Uuid>,
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
        EventBody::TransactionUpdated(update) => Some(transaction_update(update, occurred_at)),
        EventBody::PaymentRequest(change) => payment_request(change, ctx, &someone()),
        EventBody::BalanceUpdated(_) | EventBody::NotificationCreated(_) => None,
    }
}

fn kind_name(kind: TransactionKind) -> &'static str {
    match kind {
        TransactionKind::Deposit => "deposit",
        TransactionKind::Withdrawal => "withdrawal",
        TransactionKind::Transfer => "transfer",
        TransactionKind::Exchange => "exchange",
        TransactionKind::Refund => "refund",
        TransactionKind::Reversal => "reversal",
    }
}

fn transaction_update(update: &TransactionUpdated, at: DateTime<Utc>) -> Rendered {
    let tx = &update.transaction;
    let amount = money(tx.amount, tx.currency);
    let what = kind_name(tx.kind);
    let reason = update
        .reason
        .as_deref()
        .map(|r| format!(" Reason: {r}"))
        .unwrap_or_default();
    let (title, sentence) = match update.change {
        TransactionChange::Held => (
            "Payment under review",
            format!(
                "Your {what} of {amount} is being reviewed. The money is set aside and will move once the review ends."
            ),
        ),
        TransactionChange::Released => (
            "Payment approved",
            format!("Your {what} of {amount} was approved after review and went ahead."),
        ),
        TransactionChange::Rejected => (
            "Payment declined",
            format!(
                "Your {what} of {amount} was declined after review; the money is available in your wallet again.{reason}"
            ),
        ),
        TransactionChange::Reversed => (
            "Transaction reversed",
            format!("A {what} of {amount} was reversed.{reason}"),
        ),
        TransactionChange::Refunded => {
            let refunded = update
                .compensation
                .as_ref()
                .map_or_else(|| amount.clone(), |r| money(r.amount, r.currency));
            (
                "Deposit refunded",
                format!("{refunded} of your {amount} deposit was refunded to your card."),
            )
        }
    };
    let text = format!("{sentence} ({})", when(at));
    let wallet = tx.from_wallet_id.or(tx.to_wallet_id);
    Rendered {
        kind: "transaction.updated",
        title: title.to_owned(),
        html: page(title, &format!("<p>{}</p>", escape(&text))),
        text,
        data: json!({
            "transactionId": tx.id,
            "walletId": wallet,
            "change": update.change.as_str(),
            "compensationId": update.compensation.as_ref().map(|c| c.id),
        }),
    }
}

/// The payer hears of a new request, the requester of its answer.
fn payment_request(change: &PaymentRequestChanged, ctx: &Context, other: &str) -> Option<Rendered> {
    let r = &change.request;
    let for_payer = ctx.recipient == Some(r.payer_id);
    let amount = money(r.amount, r.currency);
    let (title, sentence) = match (change.change, for_payer) {
        (RequestChange::Created, true) => (
            "Payment request",
            format!(
                "{other} asks you for {amount}. It expires on {}.",
                when(r.expires_at)
            ),
        ),
        (RequestChange::Paid, false) => (
            "Payment request paid",
            format!("{other} paid your request for {amount}."),
        ),
        (RequestChange::Declined, false) => (
            "Payment request declined",
            format!("{other} declined your request for {amount}."),
        ),
        _ => return None,
    };
    let memo_text = r
        .memo
        .as_deref()
        .map(|m| format!("\nNote: {m}"))
        .unwrap_or_default();
    let memo_html = r
        .memo
        .as_deref()
        .map(|m| format!("<p>Note: {}</p>", escape(m)))
        .unwrap_or_default();
    Some(Rendered {
        kind: "payment.request",
        title: title.to_owned(),
        html: page(title, &format!("<p>{}</p>{memo_html}", escape(&sentence))),
        text: format!("{sentence}{memo_text}"),
        data: json!({
            "requestId": r.id,
            "change": change.change.as_str(),
            "transactionId": r.transaction_id,
        }),
    })
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
            original_id: None,
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
            recipient: None,
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
            debt: Decimal::ZERO,
        };
        let body = EventBody::BalanceUpdated(domain::events::BalanceUpdated::of(
            &wallet,
            Decimal::ONE,
            Uuid::nil(),
        ));
        assert_eq!(render(&body, Utc::now(), &Context::default()), None);
    }

    #[test]
    fn the_payer_hears_of_a_request_and_the_requester_of_its_answer() {
        let at: DateTime<Utc> = "2026-11-30T10:05:00Z".parse().expect("time");
        let request = domain::requests::PaymentRequestRecord {
            id: Uuid::now_v7(),
            requester_id: Uuid::now_v7(),
            payer_id: Uuid::now_v7(),
            amount: Decimal::new(425, 1),
            currency: Currency::Eur,
            memo: Some("<dinner>".into()),
            status: domain::requests::RequestStatus::Pending,
            transaction_id: None,
            expires_at: at,
            created_at: at,
            updated_at: at,
        };
        let made = EventBody::PaymentRequest(PaymentRequestChanged {
            request: request.clone(),
            change: RequestChange::Created,
        });
        let as_payer = Context {
            counterparty: Some("Ann".into()),
            recipient: Some(request.payer_id),
        };
        let r = render(&made, at, &as_payer).expect("payer told");
        assert_eq!(r.title, "Payment request");
        assert!(
            r.text.starts_with("Ann asks you for 42.50 EUR"),
            "{}",
            r.text
        );
        assert!(r.html.contains("Note: &lt;dinner&gt;"), "{}", r.html);
        let as_requester = Context {
            counterparty: Some("Ben".into()),
            recipient: Some(request.requester_id),
        };
        assert_eq!(
            render(&made, at, &as_requester),
            None,
            "the requester knows"
        );
        let paid = EventBody::PaymentRequest(PaymentRequestChanged {
            request,
            change: RequestChange::Paid,
        });
        let r = render(&paid, at, &as_requester).expect("requester told");
        assert_eq!(
            r.text,
            "Ben paid your request for 42.50 EUR.\nNote: <dinner>"
        );
        assert_eq!(render(&paid, at, &as_payer), None, "the payer knows");
    }

    #[test]
    fn a_rejected_hold_gives_the_reason() {
        let body = EventBody::TransactionUpdated(TransactionUpdated {
            transaction: tx(None),
            change: TransactionChange::Rejected,
            compensation: None,
            reason: Some("unusual pattern".into()),
        });
        let r = render(&body, Utc::now(), &Context::default()).expect("rendered");
        assert_eq!(r.title, "Payment declined");
        assert!(
            r.text.contains("transfer of 4.50 USD was declined"),
            "{}",
            r.text
        );
        assert!(r.text.contains("Reason: unusual pattern"), "{}", r.text);
    }
}
