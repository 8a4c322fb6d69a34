//! Wallet balances and the balanced double-entry postings that change them.
//!
//! Every wallet has two ledger accounts (buckets): `AVAILABLE` money the user
//! can spend and `HELD` money reserved for a pending withdrawal. Money that
//! enters or leaves the system goes through an external account
//! (`external:payment_rail`). A [`Posting`] is a set of signed lines whose sum
//! is zero, so the total of all accounts never changes: that is the
//! conservation law the tests check.

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::{DomainError, ErrorCode};
use crate::money::{Amount, Currency, max_storable};
use crate::transaction::WalletStatus;

/// The external account on the other side of deposits and withdrawals.
pub const PAYMENT_RAIL_ACCOUNT: &str = "external:payment_rail";

/// What users owe after a reversal their balance could not cover: the house
/// advanced the shortfall (a debit here) and money arriving in the wallet
/// repays it (a credit). Its balance is minus the sum of wallets' debts.
pub const DEBT_ACCOUNT: &str = "external:debts";

/// One of a wallet's two ledger accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Spendable money.
    Available,
    /// Money on hold for a pending withdrawal.
    Held,
}

impl Bucket {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Available => "AVAILABLE",
            Bucket::Held => "HELD",
        }
    }
}

/// The account a ledger line books to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAccount {
    /// A bucket of a user's wallet.
    Wallet {
        /// The wallet.
        wallet_id: Uuid,
        /// Which of its accounts.
        bucket: Bucket,
    },
    /// An account outside the wallets, such as the payment rail.
    External(&'static str),
}

/// One signed line of a posting: positive credits the account, negative debits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingLine {
    /// The account booked to.
    pub account: EntryAccount,
    /// The signed amount.
    pub amount: Decimal,
}

/// A balanced set of ledger lines in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    currency: Currency,
    lines: Vec<PostingLine>,
}

impl Posting {
    fn balanced(currency: Currency, lines: Vec<PostingLine>) -> Self {
        debug_assert!(lines.iter().map(|l| l.amount).sum::<Decimal>().is_zero());
        Self { currency, lines }
    }

    fn wallet(wallet_id: Uuid, bucket: Bucket, amount: Decimal) -> PostingLine {
        PostingLine {
            account: EntryAccount::Wallet { wallet_id, bucket },
            amount,
        }
    }

    fn external(account: &'static str, amount: Decimal) -> PostingLine {
        PostingLine {
            account: EntryAccount::External(account),
            amount,
        }
    }

    /// Funding from the payment rail into a wallet's available balance.
    pub fn deposit(wallet_id: Uuid, amount: Amount) -> Self {
        let a = amount.value();
        Self::balanced(
            amount.currency(),
            vec![
                Self::external(PAYMENT_RAIL_ACCOUNT, -a),
                Self::wallet(wallet_id, Bucket::Available, a),
            ],
        )
    }

    /// Puts a withdrawal's amount on hold.
    pub fn hold(wallet_id: Uuid, amount: Amount) -> Self {
        let a = amount.value();
        Self::balanced(
            amount.currency(),
            vec![
                Self::wallet(wallet_id, Bucket::Available, -a),
                Self::wallet(wallet_id, Bucket::Held, a),
            ],
        )
    }

    /// Pays a held amount out to the payment rail.
    pub fn settle_hold(wallet_id: Uuid, amount: Amount) -> Self {
        let a = amount.value();
        Self::balanced(
            amount.currency(),
            vec![
                Self::wallet(wallet_id, Bucket::Held, -a),
                Self::external(PAYMENT_RAIL_ACCOUNT, a),
            ],
        )
    }

    /// Returns a held amount to the available balance.
    pub fn release_hold(wallet_id: Uuid, amount: Amount) -> Self {
        let a = amount.value();
        Self::balanced(
            amount.currency(),
            vec![
                Self::wallet(wallet_id, Bucket::Held, -a),
                Self::wallet(wallet_id, Bucket::Available, a),
            ],
        )
    }

    /// Moves an amount between the available balances of two wallets.
    pub fn transfer(from: Uuid, to: Uuid, amount: Amount) -> Self {
        let a = amount.value();
        Self::balanced(
            amount.currency(),
            vec![
                Self::wallet(from, Bucket::Available, -a),
                Self::wallet(to, Bucket::Available, a),
            ],
        )
    }

    /// Moves a held transfer on to its recipient: the sender's hold leaves,
    /// the recipient's available balance receives it.
    pub fn release_held_transfer(from: Uuid, to: Uuid, amount: Amount) -> Self {
        let a = amount.value();
        Self::balanced(
            amount.currency(),
            vec![
                Self::wallet(from, Bucket::Held, -a),
                Self::wallet(to, Bucket::Available, a),
            ],
        )
    }

    /// Takes `amount` back from `payer` (the original receiver) to `payee`
    /// (the original sender's wallet, or the payment rail for a deposit).
    /// The part the payer's available balance does not cover, `shortfall`,
    /// is advanced from the debt account, so the payee always gets it all.
    pub fn claw_back(payer: Uuid, payee: Option<Uuid>, amount: Amount, shortfall: Decimal) -> Self {
        let a = amount.value();
        let mut lines = vec![Self::wallet(payer, Bucket::Available, -(a - shortfall))];
        if !shortfall.is_zero() {
            lines.push(Self::external(DEBT_ACCOUNT, -shortfall));
        }
        lines.push(match payee {
            Some(wallet) => Self::wallet(wallet, Bucket::Available, a),
            None => Self::external(PAYMENT_RAIL_ACCOUNT, a),
        });
        Self::balanced(amount.currency(), lines)
    }

    /// Repays part of a wallet's debt from its available balance.
    pub fn repay_debt(wallet_id: Uuid, currency: Currency, amount: Decimal) -> Self {
        Self::balanced(
            currency,
            vec![
                Self::wallet(wallet_id, Bucket::Available, -amount),
                Self::external(DEBT_ACCOUNT, amount),
            ],
        )
    }

    /// The source side of an exchange: `amount` leaves the wallet, the fee
    /// goes to the fee account and the rest to the house FX account.
    pub fn exchange_out(wallet_id: Uuid, amount: Amount, fee: Decimal) -> Self {
        let currency = amount.currency();
        let a = amount.value();
        let mut lines = vec![
            Self::wallet(wallet_id, Bucket::Available, -a),
            Self::external(crate::fx::house_account(currency), a - fee),
        ];
        if !fee.is_zero() {
            lines.push(Self::external(crate::fx::fee_account(currency), fee));
        }
        Self::balanced(currency, lines)
    }

    /// The target side of an exchange: the house FX account gives `gross`,
    /// the wallet receives `received` (at its scale) and the rounding account
    /// the residue.
    pub fn exchange_in(wallet_id: Uuid, received: Amount, gross: Decimal) -> Self {
        let currency = received.currency();
        let r = received.value();
        let mut lines = vec![
            Self::external(crate::fx::house_account(currency), -gross),
            Self::wallet(wallet_id, Bucket::Available, r),
        ];
        if gross != r {
            lines.push(Self::external(
                crate::fx::rounding_account(currency),
                gross - r,
            ));
        }
        Self::balanced(currency, lines)
    }

    /// The currency of every line.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The lines, in booking order.
    pub fn lines(&self) -> &[PostingLine] {
        &self.lines
    }

    /// The net change of one wallet bucket.
    pub fn delta(&self, wallet_id: Uuid, bucket: Bucket) -> Decimal {
        self.lines
            .iter()
            .filter(|l| l.account == EntryAccount::Wallet { wallet_id, bucket })
            .map(|l| l.amount)
            .sum()
    }
}

/// A wallet's balances as the rules see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balances {
    /// Spendable.
    pub available: Decimal,
    /// On hold.
    pub frozen: Decimal,
}

impl Balances {
    /// The total: available plus frozen.
    pub fn total(self) -> Decimal {
        self.available + self.frozen
    }

    /// The balances after a posting, or the refusal: a frozen wallet moves
    /// nothing, the available balance never goes negative, and no balance
    /// exceeds what the ledger can store.
    pub fn apply(
        self,
        wallet_id: Uuid,
        wallet_currency: Currency,
        status: WalletStatus,
        posting: &Posting,
    ) -> Result<Balances, DomainError> {
        if posting.currency() != wallet_currency {
            return Err(DomainError::new(
                ErrorCode::CurrencyMismatch,
                format!(
                    "wallet holds {wallet_currency}, the amount is in {}",
                    posting.currency()
                ),
            ));
        }
        if status == WalletStatus::Closed {
            return Err(DomainError::new(
                ErrorCode::AccountClosed,
                "the wallet belongs to a closed account",
            ));
        }
        if status == WalletStatus::Frozen {
            return Err(DomainError::new(
                ErrorCode::WalletFrozen,
                "the wallet is frozen",
            ));
        }
        let next = Balances {
            available: self.available + posting.delta(wallet_id, Bucket::Available),
            frozen: self.frozen + posting.delta(wallet_id, Bucket::Held),
        };
        if next.available < Decimal::ZERO {
            return Err(DomainError::new(
                ErrorCode::InsufficientFunds,
                "the available balance does not cover the amount",
            ));
        }
        if next.frozen < Decimal::ZERO {
            return Err(DomainError::new(
                ErrorCode::InternalServerError,
                "a hold larger than the held balance was released",
            ));
        }
        if next.total() > max_storable() {
            return Err(DomainError::new(
                ErrorCode::LimitExceeded,
                "the balance would exceed the largest amount a wallet can hold",
            ));
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Amount {
        Amount::parse(s, Currency::Usd).expect("valid amount")
    }

    fn zero() -> Balances {
        Balances {
            available: Decimal::ZERO,
            frozen: Decimal::ZERO,
        }
    }

    #[test]
    fn every_posting_sums_to_zero() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for p in [
            Posting::deposit(a, usd("5")),
            Posting::hold(a, usd("5")),
            Posting::settle_hold(a, usd("5")),
            Posting::release_hold(a, usd("5")),
            Posting::transfer(a, b, usd("5")),
            Posting::release_held_transfer(a, b, usd("5")),
            Posting::claw_back(a, Some(b), usd("5"), Decimal::from(2)),
            Posting::claw_back(a, None, usd("5"), Decimal::ZERO),
            Posting::repay_debt(a, Currency::Usd, Decimal::from(3)),
        ] {
            assert!(
                p.lines()
                    .iter()
                    .map(|l| l.amount)
                    .sum::<Decimal>()
                    .is_zero()
            );
        }
    }

    #[test]
    fn withdrawal_moves_money_from_available_to_frozen_and_out() {
        let w = Uuid::new_v4();
        let b = zero()
            .apply(
                w,
                Currency::Usd,
                WalletStatus::Active,
                &Posting::deposit(w, usd("10")),
            )
            .expect("deposit");
        let held = b
            .apply(
                w,
                Currency::Usd,
                WalletStatus::Active,
                &Posting::hold(w, usd("4")),
            )
            .expect("hold");
        assert_eq!(held.available, Decimal::from(6));
        assert_eq!(held.frozen, Decimal::from(4));
        assert_eq!(held.total(), Decimal::from(10));
        let settled = held
            .apply(
                w,
                Currency::Usd,
                WalletStatus::Active,
                &Posting::settle_hold(w, usd("4")),
            )
            .expect("settle");
        assert_eq!(settled.total(), Decimal::from(6));
        let released = held
            .apply(
                w,
                Currency::Usd,
                WalletStatus::Active,
                &Posting::release_hold(w, usd("4")),
            )
            .expect("release");
        assert_eq!(released, b);
    }

    #[test]
    fn overdraft_frozen_wallet_and_wrong_currency_are_refused() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t = Posting::transfer(a, b, usd("1"));
        let err = zero()
            .apply(a, Currency::Usd, WalletStatus::Active, &t)
            .expect_err("overdraft");
        assert_eq!(err.code, ErrorCode::InsufficientFunds);
        let rich = Balances {
            available: Decimal::from(5),
            frozen: Decimal::ZERO,
        };
        let err = rich
            .apply(a, Currency::Usd, WalletStatus::Frozen, &t)
            .expect_err("frozen");
        assert_eq!(err.code, ErrorCode::WalletFrozen);
        let err = rich
            .apply(a, Currency::Eur, WalletStatus::Active, &t)
            .expect_err("currency");
        assert_eq!(err.code, ErrorCode::CurrencyMismatch);
    }

    #[test]
    fn balances_never_exceed_storage() {
        let w = Uuid::new_v4();
        let eth_max = Amount::new(max_storable(), Currency::Eth).expect("max");
        let full = zero()
            .apply(
                w,
                Currency::Eth,
                WalletStatus::Active,
                &Posting::deposit(w, eth_max),
            )
            .expect("fits");
        let one = Amount::parse("0.000000000000000001", Currency::Eth).expect("tiny");
        let err = full
            .apply(
                w,
                Currency::Eth,
                WalletStatus::Active,
                &Posting::deposit(w, one),
            )
            .expect_err("overflow");
        assert_eq!(err.code, ErrorCode::LimitExceeded);
    }
}
