//! Step-up: which movements need a second factor confirmed for them.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::error::{DomainError, ErrorCode};
use crate::money::{Amount, Currency};

/// Per currency, the amount from which a transfer needs a step-up token. A
/// currency without a threshold always needs one.
#[derive(Debug, Clone, Default)]
pub struct TransferThresholds(BTreeMap<Currency, Decimal>);

impl TransferThresholds {
    /// The thresholds, per currency.
    pub fn new(thresholds: BTreeMap<Currency, Decimal>) -> Self {
        Self(thresholds)
    }

    /// Whether transferring `amount` of `currency` needs a step-up.
    pub fn needs_step_up(&self, currency: Currency, amount: Decimal) -> bool {
        self.0
            .get(&currency)
            .is_none_or(|threshold| amount >= *threshold)
    }

    /// Refuses a transfer of `amount` that needs a step-up none was
    /// confirmed for.
    pub fn check(&self, amount: Amount) -> Result<(), DomainError> {
        if self.needs_step_up(amount.currency(), amount.value()) {
            Err(required())
        } else {
            Ok(())
        }
    }
}

/// `STEP_UP_REQUIRED`, telling the app how to get a step-up token.
pub fn required() -> DomainError {
    DomainError::new(
        ErrorCode::StepUpRequired,
        "confirm with your security key first: call beginStepUp and finishStepUp, then pass the stepUpToken",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_at_or_above_the_threshold_or_in_a_currency_without_one_need_a_step_up() {
        let thresholds =
            TransferThresholds::new(BTreeMap::from([(Currency::Usd, Decimal::from(1000))]));
        let usd = |v: i64| Amount::new(Decimal::from(v), Currency::Usd).expect("amount");
        assert!(thresholds.check(usd(999)).is_ok());
        let refused = thresholds.check(usd(1000)).expect_err("at the threshold");
        assert_eq!(refused.code, ErrorCode::StepUpRequired);
        let eur = Amount::new(Decimal::ONE, Currency::Eur).expect("amount");
        assert!(thresholds.check(eur).is_err(), "no EUR threshold: always");
    }
}
