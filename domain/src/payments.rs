//! Card deposits through the payment provider (Stripe-style payment
//! intents): the intent's lifecycle and the amounts in minor units the
//! provider speaks.

use rust_decimal::Decimal;

use crate::error::DomainError;
use crate::money::Currency;

string_enum! {
    /// Where a deposit's payment intent is.
    IntentStatus {
        /// Created; the app must confirm it with the client secret.
        RequiresAction => "REQUIRES_ACTION",
        /// Confirmed; the provider is settling it.
        Processing => "PROCESSING",
        /// Paid: the wallet was credited.
        Succeeded => "SUCCEEDED",
        /// The payment failed; nothing was credited.
        Failed => "FAILED",
        /// Canceled before it was paid.
        Canceled => "CANCELED",
    }
}

impl IntentStatus {
    /// Whether nothing can change it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            IntentStatus::Succeeded | IntentStatus::Failed | IntentStatus::Canceled
        )
    }

    /// The status a provider event type reports (`None`: not a lifecycle event).
    pub fn of_event(kind: &str) -> Option<Self> {
        Some(match kind {
            "payment_intent.requires_action" | "payment_intent.created" => {
                IntentStatus::RequiresAction
            }
            "payment_intent.processing" => IntentStatus::Processing,
            "payment_intent.succeeded" => IntentStatus::Succeeded,
            "payment_intent.payment_failed" => IntentStatus::Failed,
            "payment_intent.canceled" => IntentStatus::Canceled,
            _ => return None,
        })
    }
}

/// What an event does to an intent in `current`: `None` when it changes
/// nothing (a repeat, or anything after a final status, or a step back).
pub fn transition(current: IntentStatus, reported: IntentStatus) -> Option<IntentStatus> {
    if current.is_final() || current == reported {
        return None;
    }
    // Processing never goes back to waiting for the customer.
    if current == IntentStatus::Processing && reported == IntentStatus::RequiresAction {
        return None;
    }
    Some(reported)
}

/// Currencies the card rail takes.
pub const CARD_CURRENCIES: [Currency; 2] = [Currency::Usd, Currency::Eur];

/// `amount` in the currency's minor units (cents), for the provider.
pub fn to_minor_units(amount: Decimal, currency: Currency) -> Result<i64, DomainError> {
    if !CARD_CURRENCIES.contains(&currency) {
        return Err(DomainError::bad_input(format!(
            "card deposits take USD or EUR, not {currency}"
        )));
    }
    let minor = amount * Decimal::from(10i64.pow(currency.scale()));
    if !minor.fract().is_zero() || minor <= Decimal::ZERO {
        return Err(DomainError::bad_input("amount must be positive, in cents"));
    }
    i64::try_from(minor).map_err(|_| DomainError::bad_input("amount is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_stay_and_repeats_change_nothing() {
        use IntentStatus::*;
        assert_eq!(transition(RequiresAction, Processing), Some(Processing));
        assert_eq!(transition(Processing, Succeeded), Some(Succeeded));
        assert_eq!(transition(Succeeded, Processing), None, "late event");
        assert_eq!(transition(Succeeded, Failed), None);
        assert_eq!(transition(Processing, Processing), None);
        assert_eq!(transition(Processing, RequiresAction), None);
        assert_eq!(
            IntentStatus::of_event("payment_intent.succeeded"),
            Some(Succeeded)
        );
        assert_eq!(IntentStatus::of_event("charge.refunded"), None);
    }

    #[test]
    fn minor_units() {
        let d = |s: &str| crate::money::parse_exact(s).expect("decimal");
        assert_eq!(
            to_minor_units(d("12.34"), Currency::Usd).expect("cents"),
            1234
        );
        assert!(to_minor_units(d("1"), Currency::Btc).is_err());
        assert!(to_minor_units(d("0"), Currency::Eur).is_err());
    }
}
