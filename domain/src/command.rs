//! Money mutations as the API validated them, one command per mutation:
//! what the idempotency key is claimed for (its operation name and the
//! fingerprint of its normalized input) and what the store carries out.

use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use crate::idempotency::Fingerprint;
use crate::identity::Email;

/// Who receives a transfer.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// A wallet by id.
    Wallet(Uuid),
    /// The recipient's wallet in the sender's currency, found by e-mail.
    Email(Email),
}

/// A money mutation as the API validated it. Amounts are exact decimals;
/// their scale is checked against the wallet's currency once it is loaded.
#[derive(Debug, Clone)]
pub enum MoneyCommand {
    /// Funding through the sandbox payment rail.
    Deposit {
        /// The caller's wallet.
        wallet_id: Uuid,
        /// Positive amount.
        amount: Decimal,
    },
    /// A pay-out, held until the rail settles it.
    Withdraw {
        /// The caller's wallet.
        wallet_id: Uuid,
        /// Positive amount.
        amount: Decimal,
        /// Where the rail pays to (account reference).
        destination: String,
    },
    /// Between two wallets of the same currency.
    Transfer {
        /// The caller's wallet.
        from_wallet_id: Uuid,
        /// The receiver.
        to: Recipient,
        /// Positive amount.
        amount: Decimal,
        /// Note for the receiver.
        memo: Option<String>,
    },
    /// Between two of the caller's wallets, at a quote's rate.
    Exchange {
        /// The caller's quote.
        quote_id: Uuid,
    },
    /// Pays a payment request made to the caller: a transfer from the
    /// caller's wallet in its currency to the requester's.
    PayRequest {
        /// The request.
        request_id: Uuid,
    },
    /// Staff: reverses a completed transfer or deposit.
    Reverse {
        /// The original movement.
        transaction_id: Uuid,
        /// Why, shown to the parties.
        reason: String,
        /// Whether a shortfall may be placed as the receiver's debt.
        allow_debt: bool,
    },
    /// Staff: refunds part of a card deposit through the provider.
    Refund {
        /// The deposit.
        transaction_id: Uuid,
        /// Positive amount, at most what is left to refund.
        amount: Decimal,
    },
}

impl MoneyCommand {
    /// The operation name stored with the idempotency key.
    pub fn operation(&self) -> &'static str {
        match self {
            MoneyCommand::Deposit { .. } => "deposit",
            MoneyCommand::Withdraw { .. } => "withdraw",
            MoneyCommand::Transfer { .. } => "transfer",
            MoneyCommand::Exchange { .. } => "exchange",
            MoneyCommand::PayRequest { .. } => "pay_request",
            MoneyCommand::Reverse { .. } => "reverse",
            MoneyCommand::Refund { .. } => "refund",
        }
    }

    /// The fingerprint of the normalized input.
    pub fn fingerprint(&self) -> Fingerprint {
        let canonical = |d: &Decimal| crate::money::to_canonical(*d);
        let input = match self {
            MoneyCommand::Deposit { wallet_id, amount } => {
                json!({ "walletId": wallet_id, "amount": canonical(amount) })
            }
            MoneyCommand::Withdraw {
                wallet_id,
                amount,
                destination,
            } => json!({
                "walletId": wallet_id,
                "amount": canonical(amount),
                "destination": destination,
            }),
            MoneyCommand::Transfer {
                from_wallet_id,
                to,
                amount,
                memo,
            } => json!({
                "fromWalletId": from_wallet_id,
                "toWalletId": match to { Recipient::Wallet(id) => Some(id), Recipient::Email(_) => None },
                "toEmail": match to { Recipient::Email(e) => Some(e.as_str()), Recipient::Wallet(_) => None },
                "amount": canonical(amount),
                "memo": memo,
            }),
            MoneyCommand::Exchange { quote_id } => json!({ "quoteId": quote_id }),
            MoneyCommand::PayRequest { request_id } => json!({ "requestId": request_id }),
            MoneyCommand::Reverse {
                transaction_id,
                reason,
                allow_debt,
            } => json!({ "id": transaction_id, "reason": reason, "allowDebt": allow_debt }),
            MoneyCommand::Refund {
                transaction_id,
                amount,
            } => json!({ "id": transaction_id, "amount": canonical(amount) }),
        };
        Fingerprint::of(self.operation(), &input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(amount: &str, to: Recipient, memo: Option<&str>) -> MoneyCommand {
        MoneyCommand::Transfer {
            from_wallet_id: Uuid::from_u128(1),
            to,
            amount: amount.parse().expect("decimal"),
            memo: memo.map(str::to_owned),
        }
    }

    #[test]
    fn the_same_request_has_one_fingerprint_however_its_amount_is_written() {
        let to = || Recipient::Wallet(Uuid::from_u128(2));
        assert_eq!(
            transfer("12.5", to(), None).fingerprint(),
            transfer("12.50", to(), None).fingerprint()
        );
        assert_eq!(
            transfer("0.00", to(), None).fingerprint(),
            transfer("0", to(), None).fingerprint()
        );
    }

    #[test]
    fn any_other_input_is_another_fingerprint() {
        let wallet = || Recipient::Wallet(Uuid::from_u128(2));
        let base = transfer("12.50", wallet(), None).fingerprint();
        for other in [
            transfer("12.51", wallet(), None),
            transfer("12.50", wallet(), Some("rent")),
            transfer("12.50", Recipient::Wallet(Uuid::from_u128(3)), None),
            transfer(
                "12.50",
                Recipient::Email(Email::parse("a@example.com").expect("email")),
                None,
            ),
        ] {
            assert_ne!(other.fingerprint(), base, "{other:?}");
        }
        // The operation is part of it: a deposit of the same wallet and
        // amount is not a withdrawal's replay.
        let deposit = MoneyCommand::Deposit {
            wallet_id: Uuid::from_u128(1),
            amount: "5".parse().expect("decimal"),
        };
        let withdraw = MoneyCommand::Withdraw {
            wallet_id: Uuid::from_u128(1),
            amount: "5".parse().expect("decimal"),
            destination: String::new(),
        };
        assert_ne!(deposit.fingerprint(), withdraw.fingerprint());
        assert_eq!(deposit.operation(), "deposit");
    }
}
