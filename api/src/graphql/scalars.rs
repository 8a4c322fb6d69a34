//! Custom scalars. `Decimal` is ours, not async-graphql's: that one parses
//! with `Decimal::from_str`, which silently rounds past 28 digits.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use rust_decimal::Decimal;

/// An exact decimal number carried as a string, e.g. `"12.50"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub Decimal);

/// An exact decimal carried as a string such as "12.50"; never a float. At
/// most 10 digits before and 18 after the point.
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
        Value::String(domain::money::to_canonical(self.0))
    }
}
