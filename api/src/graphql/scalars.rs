//! Custom scalars. `Decimal` is ours, not async-graphql's: that one parses
//! with `Decimal::from_str`, which silently rounds past 28 digits.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use rust_decimal::Decimal;

/// An exact decimal number carried as a string, e.g. `"12.50"`. Outputs
/// are built with [`Money::of`], at their currency's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub Decimal);

impl Money {
    /// An amount of `currency`, shown at the currency's scale: USD
    /// `"100.50"` and `"0.00"`, BTC `"0.00000000"`. Stored amounts are never
    /// finer than the scale, so nothing is rounded away.
    pub fn of(value: Decimal, currency: domain::Currency) -> Self {
        let mut shown = value.round_dp(currency.scale());
        shown.rescale(currency.scale());
        Money(shown)
    }
}

/// An exact decimal carried as a string such as "12.50"; never a float. At
/// most 10 digits before and 18 after the point. Outputs have exactly the
/// currency's number of fraction digits (USD, EUR 2; BTC 8; ETH 18; USDC 6).
#[Scalar(name = "Decimal")]
impl ScalarType for Money {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => domain::money::parse_exact(&s)
                .map(Money)
                .map_err(|e| InputValueError::custom(e.message)),
            Value::Number(_) => Err(InputValueError::custom(
                "amounts must be strings such as \"12.50\", never numbers",
            )),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        // `Decimal`'s own scale: [`Money::of`] set it to the currency's.
        Value::String(self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Currency;

    fn shown(value: &str, currency: Currency) -> String {
        let v = domain::money::parse_exact(value).expect("decimal");
        match Money::of(v, currency).to_value() {
            Value::String(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outputs_have_the_currencys_scale() {
        assert_eq!(shown("100.5", Currency::Usd), "100.50");
        assert_eq!(shown("0", Currency::Usd), "0.00");
        assert_eq!(shown("-12.5", Currency::Eur), "-12.50");
        assert_eq!(shown("0", Currency::Btc), "0.00000000");
        assert_eq!(shown("1.5", Currency::Usdc), "1.500000");
        assert_eq!(
            shown("9999999999.999999999999999999", Currency::Eth),
            "9999999999.999999999999999999"
        );
        assert_eq!(
            shown("0.000000000000000001", Currency::Eth),
            "0.000000000000000001"
        );
    }
}
