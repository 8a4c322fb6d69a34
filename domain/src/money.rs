//! Currencies and exact amounts.
//!
//! Amounts are [`rust_decimal::Decimal`] values that fit the storage columns:
//! at most [`INTEGER_DIGITS`] digits before the point and [`FRACTION_DIGITS`]
//! after it (SQL `NUMERIC(28,18)`). Input that does not fit is refused, never
//! rounded: `Decimal::from_str` silently rounds past 28 significant digits, so
//! only [`parse_exact`] is used on untrusted text.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::DomainError;

/// Digits allowed before the decimal point in a stored amount or balance.
pub const INTEGER_DIGITS: u32 = 10;
/// Digits allowed after the decimal point in a stored amount or balance.
pub const FRACTION_DIGITS: u32 = 18;

/// The largest amount or balance the ledger can hold: 9999999999.999999999999999999.
pub fn max_storable() -> Decimal {
    // 28 nines with 18 of them after the point; fits Decimal's 96-bit mantissa.
    Decimal::from_i128_with_scale(9_999_999_999_999_999_999_999_999_999, FRACTION_DIGITS)
}

/// Parses a plain decimal numeral (`-?digits[.digits]`) exactly.
///
/// Refuses exponents, signs other than a leading `-`, white space, more than
/// [`INTEGER_DIGITS`] integer digits (ignoring leading zeros) and more than
/// [`FRACTION_DIGITS`] fraction digits (ignoring trailing zeros). The result is
/// normalized (no trailing zeros).
pub fn parse_exact(text: &str) -> Result<Decimal, DomainError> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !digits_only(int_part)
        || !digits_only(frac_part)
        || (unsigned.contains('.') && frac_part.is_empty())
    {
        return Err(DomainError::bad_input(format!(
            "`{}` is not a decimal number such as \"12.50\"",
            truncate_for_message(text)
        )));
    }
    let significant_int = int_part.trim_start_matches('0').len();
    let significant_frac = frac_part.trim_end_matches('0').len();
    if significant_int > INTEGER_DIGITS as usize {
        return Err(DomainError::bad_input(format!(
            "amounts have at most {INTEGER_DIGITS} digits before the decimal point"
        )));
    }
    if significant_frac > FRACTION_DIGITS as usize {
        return Err(DomainError::bad_input(format!(
            "amounts have at most {FRACTION_DIGITS} digits after the decimal point"
        )));
    }
    // Rebuild without redundant zeros so the exact parser sees at most 28 digits.
    let int_digits = match int_part.trim_start_matches('0') {
        "" => "0",
        s => s,
    };
    let frac_digits = &frac_part[..significant_frac];
    let sign = if text.starts_with('-') { "-" } else { "" };
    let canonical = if frac_digits.is_empty() {
        format!("{sign}{int_digits}")
    } else {
        format!("{sign}{int_digits}.{frac_digits}")
    };
    Decimal::from_str_exact(&canonical)
        .map(|d| d.normalize())
        .map_err(|_| DomainError::bad_input("amount does not fit the ledger's precision"))
}

/// Canonical text of a decimal: normalized, plain notation (`"12.5"`, `"0"`).
pub fn to_canonical(value: Decimal) -> String {
    let n = value.normalize();
    if n.is_zero() {
        "0".to_owned()
    } else {
        n.to_string()
    }
}

fn truncate_for_message(text: &str) -> String {
    text.chars().take(40).collect()
}

/// A currency the wallet supports, with its number of fraction digits.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Currency {
    /// US dollar, 2 fraction digits.
    Usd,
    /// Euro, 2 fraction digits.
    Eur,
    /// Bitcoin, 8 fraction digits.
    Btc,
    /// Ether, 18 fraction digits.
    Eth,
    /// USD Coin, 6 fraction digits.
    Usdc,
}

impl Currency {
    /// Every supported currency.
    pub const ALL: [Currency; 5] = [
        Currency::Usd,
        Currency::Eur,
        Currency::Btc,
        Currency::Eth,
        Currency::Usdc,
    ];

    /// The ISO 4217 style code, e.g. `"USD"`.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Btc => "BTC",
            Currency::Eth => "ETH",
            Currency::Usdc => "USDC",
        }
    }

    /// How many digits after the decimal point an amount may have.
    pub fn scale(self) -> u32 {
        match self {
            Currency::Usd | Currency::Eur => 2,
            Currency::Btc => 8,
            Currency::Eth => 18,
            Currency::Usdc => 6,
        }
    }

    /// Parses a currency code; case-insensitive, surrounding spaces ignored.
    pub fn parse(code: &str) -> Result<Self, DomainError> {
        let upper = code.trim().to_ascii_uppercase();
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == upper)
            .ok_or_else(|| {
                let known: Vec<&str> = Currency::ALL.iter().map(|c| c.code()).collect();
                DomainError::bad_input(format!(
                    "unsupported currency; supported: {}",
                    known.join(", ")
                ))
            })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

/// A strictly positive amount of one currency, no finer than its scale and
/// small enough to be stored. Only [`Amount::parse`] and [`Amount::new`] build one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    value: Decimal,
    currency: Currency,
}

impl Amount {
    /// Parses user input such as `"12.50"` for the given currency.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, DomainError> {
        Self::new(parse_exact(text)?, currency)
    }

    /// Validates an already exact decimal for the given currency.
    pub fn new(value: Decimal, currency: Currency) -> Result<Self, DomainError> {
        let value = value.normalize();
        if value <= Decimal::ZERO {
            return Err(DomainError::bad_input("amount must be greater than zero"));
        }
        if value.scale() > currency.scale() {
            return Err(DomainError::bad_input(format!(
                "{} amounts have at most {} digits after the decimal point",
                currency,
                currency.scale()
            )));
        }
        if value > max_storable() {
            return Err(DomainError::bad_input("amount is too large"));
        }
        Ok(Self { value, currency })
    }

    /// The exact value, normalized.
    pub fn value(self) -> Decimal {
        self.value
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", to_canonical(self.value), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).expect("valid test decimal")
    }

    #[test]
    fn smallest_and_largest_storable_amounts_parse_exactly() {
        let tiny = parse_exact("0.000000000000000001").expect("tiny");
        assert_eq!(tiny, dec("0.000000000000000001"));
        assert_eq!(to_canonical(tiny), "0.000000000000000001");
        let big = parse_exact("9999999999.999999999999999999").expect("big");
        assert_eq!(big, max_storable());
        assert_eq!(to_canonical(big), "9999999999.999999999999999999");
    }

    #[test]
    fn redundant_zeros_do_not_count_against_precision() {
        assert_eq!(
            parse_exact("0000000000012.5000000000000000000000").expect("zeros"),
            dec("12.5")
        );
    }

    #[test]
    fn input_finer_or_larger_than_storage_is_refused_not_rounded() {
        for bad in [
            "0.0000000000000000001",
            "10000000000",
            "12345678901.5",
            "1e5",
            " 1",
            "1.",
            ".5",
            "+1",
            "1,5",
            "",
            "-",
            "0x10",
            "99999999999999999999999999999",
        ] {
            let err = parse_exact(bad).expect_err(bad);
            assert_eq!(err.code, crate::ErrorCode::BadUserInput, "{bad}");
        }
    }

    #[test]
    fn amounts_respect_currency_scale_and_sign() {
        assert!(Amount::parse("12.50", Currency::Usd).is_ok());
        assert!(Amount::parse("12.505", Currency::Usd).is_err());
        assert!(Amount::parse("0.00000001", Currency::Btc).is_ok());
        assert!(Amount::parse("0.000000001", Currency::Btc).is_err());
        assert!(Amount::parse("0.000000000000000001", Currency::Eth).is_ok());
        assert!(Amount::parse("0", Currency::Usd).is_err());
        assert!(Amount::parse("-5", Currency::Usd).is_err());
        assert!(Amount::parse("0.000001", Currency::Usdc).is_ok());
    }

    #[test]
    fn currency_codes_parse_case_insensitively() {
        assert_eq!(Currency::parse("usd").expect("usd"), Currency::Usd);
        assert_eq!(Currency::parse("USDC").expect("usdc"), Currency::Usdc);
        assert!(Currency::parse("XYZ").is_err());
    }
}
