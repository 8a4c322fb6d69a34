//! Currency exchange between a user's own wallets: rates, quotes and the
//! rounding that keeps each currency's books summing to zero exactly.
//!
//! A quote takes its fee from the source amount (rounded up to the source
//! currency's scale), converts the rest at the rate, and keeps the converted
//! amount at ledger precision (18 fraction digits) as the gross. The user
//! receives the gross rounded down to the target currency's scale; the
//! residue (gross - received, never negative) is booked to the target
//! currency's rounding account. So the exchange is two balanced postings:
//!
//! ```text
//! source currency: wallet -amount | house FX +net   | fees +fee
//! target currency: house FX -gross | wallet +received | rounding +residue
//! ```

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::error::{DomainError, ErrorCode};
use crate::money::{Currency, FRACTION_DIGITS};

/// Prices of each currency in a common unit (any: only ratios matter), and
/// when they were published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    prices: BTreeMap<Currency, Decimal>,
    /// When the source published them.
    pub as_of: chrono::DateTime<chrono::Utc>,
}

impl Rates {
    /// Rates from positive prices; every currency must have one.
    pub fn new(
        prices: BTreeMap<Currency, Decimal>,
        as_of: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self, DomainError> {
        for currency in Currency::ALL {
            match prices.get(&currency) {
                Some(p) if p.is_sign_positive() && !p.is_zero() => {}
                _ => {
                    return Err(DomainError::bad_input(format!(
                        "no positive rate for {currency}"
                    )));
                }
            }
        }
        Ok(Self { prices, as_of })
    }

    /// The fixed table of the embedded default (USD prices, never stale).
    pub fn fixed() -> Self {
        let price = |s: &str| crate::money::parse_exact(s).expect("fixed rate");
        let prices = BTreeMap::from([
            (Currency::Usd, price("1")),
            (Currency::Eur, price("1.08")),
            (Currency::Usdc, price("1")),
            (Currency::Btc, price("97000")),
            (Currency::Eth, price("3600")),
        ]);
        Self {
            prices,
            as_of: chrono::DateTime::<chrono::Utc>::MAX_UTC,
        }
    }

    /// Units of `to` per unit of `from`, to 18 fraction digits.
    pub fn rate(&self, from: Currency, to: Currency) -> Decimal {
        let (f, t) = (self.prices[&from], self.prices[&to]);
        (f / t).round_dp_with_strategy(FRACTION_DIGITS, RoundingStrategy::MidpointNearestEven)
    }

    /// Whether the rates are older than `max_age` at `now`.
    pub fn is_stale(&self, now: chrono::DateTime<chrono::Utc>, max_age: chrono::Duration) -> bool {
        self.as_of < now - max_age
    }
}

/// The figures of a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteFigures {
    /// What leaves the source wallet.
    pub amount: Decimal,
    /// The fee, in the source currency.
    pub fee: Decimal,
    /// Units of the target per unit of the source.
    pub rate: Decimal,
    /// `(amount - fee) * rate` at ledger precision.
    pub gross: Decimal,
    /// What the target wallet receives: `gross` rounded down to its scale.
    pub received: Decimal,
    /// `gross - received`, booked to the rounding account.
    pub residue: Decimal,
}

/// Prices an exchange of `amount` (already valid at `from`'s scale).
pub fn quote(
    rates: &Rates,
    from: Currency,
    to: Currency,
    amount: Decimal,
    fee_bps: u32,
) -> Result<QuoteFigures, DomainError> {
    if from == to {
        return Err(DomainError::new(
            ErrorCode::CurrencyMismatch,
            "an exchange needs two different currencies",
        ));
    }
    if !amount.is_sign_positive() || amount.is_zero() {
        return Err(DomainError::bad_input("amount must be positive"));
    }
    let fee = (amount * Decimal::from(fee_bps) / Decimal::from(10_000))
        .round_dp_with_strategy(from.scale(), RoundingStrategy::AwayFromZero);
    let net = amount - fee;
    let rate = rates.rate(from, to);
    let gross = net
        .checked_mul(rate)
        .ok_or_else(|| DomainError::bad_input("amount is too large to exchange"))?
        .round_dp_with_strategy(FRACTION_DIGITS, RoundingStrategy::ToZero);
    let received = gross.round_dp_with_strategy(to.scale(), RoundingStrategy::ToZero);
    if received.is_zero() || !net.is_sign_positive() {
        return Err(DomainError::bad_input(format!(
            "amount is too small: it would buy less than the smallest unit of {to}"
        )));
    }
    if received > crate::money::max_storable() {
        return Err(DomainError::bad_input("amount is too large to exchange"));
    }
    Ok(QuoteFigures {
        amount,
        fee,
        rate,
        gross,
        received,
        residue: gross - received,
    })
}

/// The house account on the other side of exchanges, per currency.
pub fn house_account(currency: Currency) -> &'static str {
    match currency {
        Currency::Usd => "house:fx:USD",
        Currency::Eur => "house:fx:EUR",
        Currency::Btc => "house:fx:BTC",
        Currency::Eth => "house:fx:ETH",
        Currency::Usdc => "house:fx:USDC",
    }
}

/// The account exchange fees are booked to, per currency.
pub fn fee_account(currency: Currency) -> &'static str {
    match currency {
        Currency::Usd => "house:fx_fees:USD",
        Currency::Eur => "house:fx_fees:EUR",
        Currency::Btc => "house:fx_fees:BTC",
        Currency::Eth => "house:fx_fees:ETH",
        Currency::Usdc => "house:fx_fees:USDC",
    }
}

/// The account rounding residues are booked to, per currency.
pub fn rounding_account(currency: Currency) -> &'static str {
    match currency {
        Currency::Usd => "house:fx_rounding:USD",
        Currency::Eur => "house:fx_rounding:EUR",
        Currency::Btc => "house:fx_rounding:BTC",
        Currency::Eth => "house:fx_rounding:ETH",
        Currency::Usdc => "house:fx_rounding:USDC",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::parse_exact;

    fn d(s: &str) -> Decimal {
        parse_exact(s).expect("decimal")
    }

    #[test]
    fn usd_to_btc_rounds_down_to_satoshis_and_books_the_residue() {
        let q = quote(&Rates::fixed(), Currency::Usd, Currency::Btc, d("100"), 50).expect("quote");
        assert_eq!(q.fee, d("0.5"));
        // The quoted rate (18 digits) is the one applied.
        assert_eq!(q.rate, d("0.000010309278350515"));
        assert_eq!(q.gross, d("0.001025773195876242"));
        assert_eq!(q.received, d("0.00102577"));
        assert_eq!(q.residue, d("0.000000003195876242"));
        assert_eq!(q.received + q.residue, q.gross);
        // The fee rounds up to the source's cents.
        let small = quote(&Rates::fixed(), Currency::Usd, Currency::Btc, d("1.01"), 50).expect("q");
        assert_eq!(small.fee, d("0.01"));
    }

    #[test]
    fn eth_to_usd_at_the_smallest_amounts() {
        let rates = Rates::fixed();
        // One wei buys nothing.
        assert!(
            quote(
                &rates,
                Currency::Eth,
                Currency::Usd,
                d("0.000000000000000001"),
                50
            )
            .is_err()
        );
        // The least that buys a cent.
        let q = quote(&rates, Currency::Eth, Currency::Usd, d("0.000003"), 0).expect("quote");
        assert_eq!(q.gross, d("0.0108"));
        assert_eq!((q.received, q.residue), (d("0.01"), d("0.0008")));
        // USD to ETH keeps all 18 digits: no residue is possible beyond them.
        let back = quote(&rates, Currency::Usd, Currency::Eth, d("0.01"), 0).expect("quote");
        assert_eq!(back.residue, Decimal::ZERO);
        assert_eq!(back.received, back.gross);
    }

    #[test]
    fn same_currency_zero_and_stale_rates_are_refused() {
        let rates = Rates::fixed();
        assert!(quote(&rates, Currency::Usd, Currency::Usd, d("1"), 0).is_err());
        assert!(quote(&rates, Currency::Usd, Currency::Eur, d("0"), 0).is_err());
        let old = Rates::new(
            rates.prices.clone(),
            chrono::Utc::now() - chrono::Duration::minutes(10),
        )
        .expect("rates");
        assert!(old.is_stale(chrono::Utc::now(), chrono::Duration::minutes(5)));
        assert!(!Rates::fixed().is_stale(chrono::Utc::now(), chrono::Duration::minutes(5)));
        let mut missing = rates.prices.clone();
        missing.remove(&Currency::Eth);
        assert!(Rates::new(missing, chrono::Utc::now()).is_err());
    }
}
