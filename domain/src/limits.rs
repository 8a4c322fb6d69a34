//! Tier limits: how much a user may move per transaction and per rolling
//! 24 hours, by KYC level, kind of movement and currency.
//!
//! Level 0 is an unverified user; a refusal there is `KYC_REQUIRED` (verify
//! to go further), above it `LIMIT_EXCEEDED`. Both carry the limits and what
//! remains of them in `extensions`, so an app can say "you can still send 120
//! today" without a second request. A user's level uses the highest tier
//! configured at or below it.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::error::{DomainError, ErrorCode};
use crate::money::{Currency, parse_exact, to_canonical};
use crate::transaction::{TransactionKind, TransactionStatus};

/// Length of the rolling window, in hours.
pub const WINDOW_HOURS: i64 = 24;

/// The limit on one kind of movement in one currency at one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Largest single movement.
    pub per_transaction: Decimal,
    /// Largest total over the rolling 24 hours.
    pub daily: Decimal,
}

/// What a user may still do: the limit and the unused part of the day's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// The currency.
    pub currency: Currency,
    /// The kind of movement.
    pub kind: TransactionKind,
    /// The limit that applies at the user's level.
    pub limit: Limit,
    /// What the rolling 24 hours still allow (never negative).
    pub daily_remaining: Decimal,
}

impl Allowance {
    /// The largest amount one movement may have right now.
    pub fn largest_now(&self) -> Decimal {
        self.limit.per_transaction.min(self.daily_remaining)
    }
}

/// The configured limits, by (tier, kind, currency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLimits {
    table: BTreeMap<(i32, TransactionKind, Currency), Limit>,
}

/// The movements limits apply to: a deposit counts for the wallet
/// credited, a withdrawal or a transfer for the wallet debited.
pub const KINDS: [TransactionKind; 3] = [
    TransactionKind::Deposit,
    TransactionKind::Withdrawal,
    TransactionKind::Transfer,
];

/// The statuses in which a movement counts against a limit: it went
/// through or still holds money, risk holds included (failed and reversed
/// ones gave it back).
pub const COUNTED: [TransactionStatus; 3] = [
    TransactionStatus::Pending,
    TransactionStatus::Held,
    TransactionStatus::Completed,
];

impl Default for TierLimits {
    /// Conservative defaults: unverified users may fund a little and send a
    /// little but not withdraw; level 1 (basic verification) covers everyday
    /// use; level 2 (full verification) more.
    fn default() -> Self {
        use Currency::*;
        use TransactionKind::*;
        // (currency, tier, [deposit, withdrawal, transfer] as (per tx, daily))
        type Row = (Currency, i32, [(&'static str, &'static str); 3]);
        let rows: [Row; 15] = [
            (Usd, 0, [("500", "1000"), ("0", "0"), ("200", "500")]),
            (
                Usd,
                1,
                [("10000", "20000"), ("5000", "10000"), ("5000", "10000")],
            ),
            (
                Usd,
                2,
                [
                    ("100000", "250000"),
                    ("50000", "100000"),
                    ("50000", "100000"),
                ],
            ),
            (Eur, 0, [("500", "1000"), ("0", "0"), ("200", "500")]),
            (
                Eur,
                1,
                [("10000", "20000"), ("5000", "10000"), ("5000", "10000")],
            ),
            (
                Eur,
                2,
                [
                    ("100000", "250000"),
                    ("50000", "100000"),
                    ("50000", "100000"),
                ],
            ),
            (Usdc, 0, [("500", "1000"), ("0", "0"), ("200", "500")]),
            (
                Usdc,
                1,
                [("10000", "20000"), ("5000", "10000"), ("5000", "10000")],
            ),
            (
                Usdc,
                2,
                [
                    ("100000", "250000"),
                    ("50000", "100000"),
                    ("50000", "100000"),
                ],
            ),
            (Btc, 0, [("0.01", "0.02"), ("0", "0"), ("0.005", "0.01")]),
            (Btc, 1, [("0.5", "1"), ("0.25", "0.5"), ("0.25", "0.5")]),
            (Btc, 2, [("5", "10"), ("2.5", "5"), ("2.5", "5")]),
            (Eth, 0, [("0.2", "0.5"), ("0", "0"), ("0.1", "0.2")]),
            (Eth, 1, [("5", "10"), ("2.5", "5"), ("2.5", "5")]),
            (Eth, 2, [("50", "100"), ("25", "50"), ("25", "50")]),
        ];
        let mut table = BTreeMap::new();
        for (currency, tier, limits) in rows {
            for (kind, (per_tx, daily)) in [Deposit, Withdrawal, Transfer].into_iter().zip(limits) {
                let limit = Limit {
                    per_transaction: parse_exact(per_tx).expect("default limit"),
                    daily: parse_exact(daily).expect("default limit"),
                };
                table.insert((tier, kind, currency), limit);
            }
        }
        Self { table }
    }
}

impl TierLimits {
    /// The same limit for every tier, kind and currency (for tests and tools).
    pub fn uniform(limit: Limit) -> Self {
        let mut table = BTreeMap::new();
        for currency in Currency::ALL {
            for kind in KINDS {
                table.insert((0, kind, currency), limit);
            }
        }
        Self { table }
    }

    /// The defaults with overrides applied: comma-separated entries
    /// `TIER:KIND:CURRENCY=PER_TRANSACTION/DAILY`, where `KIND` may be `*`
    /// for all three kinds and `CURRENCY` may be `*` for every currency, e.g.
    /// `0:WITHDRAWAL:USD=50/100,2:*:BTC=10/20`.
    pub fn with_overrides(mut self, raw: &str) -> Result<Self, DomainError> {
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |why: &str| {
                DomainError::bad_input(format!(
                    "{entry:?}: {why} (expected TIER:KIND:CURRENCY=PER_TRANSACTION/DAILY)"
                ))
            };
            let (key, value) = entry.split_once('=').ok_or_else(|| bad("no `=`"))?;
            let mut parts = key.split(':').map(str::trim);
            let (Some(tier), Some(kind), Some(currency), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("the key needs three parts"));
            };
            let tier: i32 = tier
                .parse()
                .ok()
                .filter(|t| (0..=9).contains(t))
                .ok_or_else(|| bad("the tier must be 0 to 9"))?;
            let kinds: Vec<TransactionKind> = if kind == "*" {
                KINDS.to_vec()
            } else {
                vec![
                    TransactionKind::parse(kind)
                        .ok()
                        .filter(|k| KINDS.contains(k))
                        .ok_or_else(|| bad("the kind must be DEPOSIT, WITHDRAWAL or TRANSFER"))?,
                ]
            };
            let currencies: Vec<Currency> = if currency == "*" {
                Currency::ALL.to_vec()
            } else {
                vec![Currency::parse(currency).map_err(|_| bad("unknown currency"))?]
            };
            let (per_tx, daily) = value.split_once('/').ok_or_else(|| bad("no `/`"))?;
            let amount = |text: &str| {
                parse_exact(text.trim())
                    .ok()
                    .filter(|d| !d.is_sign_negative())
                    .ok_or_else(|| bad("amounts must be exact, non-negative decimals"))
            };
            let limit = Limit {
                per_transaction: amount(per_tx)?,
                daily: amount(daily)?,
            };
            if limit.per_transaction > limit.daily {
                return Err(bad("the per-transaction limit exceeds the daily one"));
            }
            for kind in &kinds {
                for currency in &currencies {
                    self.table.insert((tier, *kind, *currency), limit);
                }
            }
        }
        Ok(self)
    }

    /// The limit at `level`: the highest tier configured at or below it
    /// (nothing configured means nothing is allowed).
    pub fn limit(&self, level: i32, kind: TransactionKind, currency: Currency) -> Limit {
        (0..=level.max(0))
            .rev()
            .find_map(|tier| self.table.get(&(tier, kind, currency)).copied())
            .unwrap_or(Limit {
                per_transaction: Decimal::ZERO,
                daily: Decimal::ZERO,
            })
    }

    /// What remains after `used` of the rolling window.
    pub fn allowance(
        &self,
        level: i32,
        kind: TransactionKind,
        currency: Currency,
        used: Decimal,
    ) -> Allowance {
        let limit = self.limit(level, kind, currency);
        Allowance {
            currency,
            kind,
            limit,
            daily_remaining: (limit.daily - used).max(Decimal::ZERO),
        }
    }

    /// Checks one movement of `amount` after `used` in the rolling window.
    /// Level 0 is refused with `KYC_REQUIRED`, higher levels with
    /// `LIMIT_EXCEEDED`; both carry the allowance in their details.
    pub fn check(
        &self,
        level: i32,
        kind: TransactionKind,
        currency: Currency,
        amount: Decimal,
        used: Decimal,
    ) -> Result<Allowance, DomainError> {
        let allowance = self.allowance(level, kind, currency, used);
        let over_single = amount > allowance.limit.per_transaction;
        let over_daily = amount > allowance.daily_remaining;
        if !over_single && !over_daily {
            return Ok(allowance);
        }
        let what = kind.as_str().to_lowercase();
        let message = if level <= 0 {
            format!(
                "verify your identity to make this {what}: without verification at most {} {currency} per {what} and {} a day",
                to_canonical(allowance.limit.per_transaction),
                to_canonical(allowance.limit.daily),
            )
        } else if over_single {
            format!(
                "a {what} may be at most {} {currency} at your verification level",
                to_canonical(allowance.limit.per_transaction),
            )
        } else {
            format!(
                "this {what} exceeds your daily limit: {} {currency} remain of {} in the last 24 hours",
                to_canonical(allowance.daily_remaining),
                to_canonical(allowance.limit.daily),
            )
        };
        let code = if level <= 0 {
            ErrorCode::KycRequired
        } else {
            ErrorCode::LimitExceeded
        };
        Err(DomainError::new(code, message)
            .with_detail("currency", currency.code())
            .with_detail("kind", kind.as_str())
            .with_detail(
                "perTransaction",
                to_canonical(allowance.limit.per_transaction),
            )
            .with_detail("dailyLimit", to_canonical(allowance.limit.daily))
            .with_detail("dailyRemaining", to_canonical(allowance.daily_remaining)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        parse_exact(s).expect("decimal")
    }

    #[test]
    fn the_boundary_is_allowed_and_one_cent_more_is_not() {
        let limits = TierLimits::default();
        let usd = Currency::Usd;
        let kind = TransactionKind::Transfer;
        assert!(limits.check(1, kind, usd, d("5000"), d("5000")).is_ok());
        let err = limits
            .check(1, kind, usd, d("0.01"), d("10000"))
            .expect_err("daily limit reached");
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert!(err.details.contains(&("dailyRemaining", "0".to_owned())));
        let err = limits
            .check(1, kind, usd, d("5000.01"), d("0"))
            .expect_err("per transaction");
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert!(err.details.contains(&("perTransaction", "5000".to_owned())));
    }

    #[test]
    fn unverified_users_are_told_to_verify() {
        let limits = TierLimits::default();
        let err = limits
            .check(
                0,
                TransactionKind::Withdrawal,
                Currency::Eur,
                d("1"),
                d("0"),
            )
            .expect_err("no withdrawals unverified");
        assert_eq!(err.code, ErrorCode::KycRequired);
        assert!(
            limits
                .check(
                    0,
                    TransactionKind::Deposit,
                    Currency::Eur,
                    d("500"),
                    d("500")
                )
                .is_ok()
        );
    }

    #[test]
    fn higher_levels_fall_back_to_the_highest_configured_tier() {
        let limits = TierLimits::default();
        assert_eq!(
            limits.limit(7, TransactionKind::Deposit, Currency::Btc),
            limits.limit(2, TransactionKind::Deposit, Currency::Btc)
        );
    }

    #[test]
    fn overrides_are_checked_and_applied() {
        let limits = TierLimits::default()
            .with_overrides("0:WITHDRAWAL:USD=50/100, 3:*:*=1000000/2000000")
            .expect("parses");
        assert_eq!(
            limits
                .limit(0, TransactionKind::Withdrawal, Currency::Usd)
                .daily,
            d("100")
        );
        assert_eq!(
            limits
                .limit(4, TransactionKind::Transfer, Currency::Eth)
                .daily,
            d("2000000")
        );
        for bad in [
            "0:WITHDRAWAL:USD=50",
            "0:WITHDRAWAL=50/100",
            "x:*:USD=1/2",
            "0:REFUND:USD=1/2",
            "0:*:XYZ=1/2",
            "0:*:USD=-1/2",
            "0:*:USD=3/2",
            "0:*:USD=1e3/2e3",
        ] {
            assert!(TierLimits::default().with_overrides(bad).is_err(), "{bad}");
        }
    }
}
