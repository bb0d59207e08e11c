//! Exact conversion of QuickBooks decimal amounts to integer cents.
//!
//! QuickBooks sends amounts as JSON numbers (`314.28`). Going through `f64`
//! gets some of them wrong (`314.28 * 100 == 31427.999999999996`), so the
//! decimal text itself is converted.

use thiserror::Error;

/// Why an amount could not be turned into cents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    #[error("`{0}` does not fit in 64-bit cents")]
    OutOfRange(String),
}

/// Converts decimal text (`-15`, `314.28`, `1.005`, `2.5e1`) to cents,
/// rounding half away from zero past the second decimal.
pub fn decimal_to_cents(text: &str) -> Result<i64, MoneyError> {
    let not_a_number = || MoneyError::NotANumber(text.to_owned());
    let out_of_range = || MoneyError::OutOfRange(text.to_owned());

    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exponent: i32 = unsigned[at + 1..].parse().map_err(|_| not_a_number())?;
            (&unsigned[..at], exponent)
        }
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(not_a_number());
    }
    if !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(not_a_number());
    }

    // All digits as one integer, with the decimal point `point` digits from the left.
    let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).map(|b| b - b'0').collect();
    // Position of the cents boundary: two places right of the decimal point.
    let boundary = whole.len() as i64 + i64::from(exponent) + 2;

    let mut cents: i64 = 0;
    for index in 0..boundary.max(0) {
        let digit = usize::try_from(index).ok().and_then(|i| digits.get(i)).copied().unwrap_or(0);
        cents = cents.checked_mul(10).and_then(|c| c.checked_add(i64::from(digit))).ok_or_else(out_of_range)?;
    }
    let first_dropped = usize::try_from(boundary).ok().and_then(|i| digits.get(i)).copied().unwrap_or(0);
    if boundary >= 0 && first_dropped >= 5 {
        cents = cents.checked_add(1).ok_or_else(out_of_range)?;
    }
    Ok(if negative { -cents } else { cents })
}

#[cfg(test)]
mod tests {
    use super::decimal_to_cents;

    #[test]
    fn amounts_that_floats_get_wrong_are_exact() {
        assert_eq!(decimal_to_cents("314.28"), Ok(31428));
        assert_eq!(decimal_to_cents("78.6"), Ok(7860));
        assert_eq!(decimal_to_cents("1.15"), Ok(115));
        assert_eq!(decimal_to_cents("4.35"), Ok(435));
    }

    #[test]
    fn integers_and_signs() {
        assert_eq!(decimal_to_cents("0"), Ok(0));
        assert_eq!(decimal_to_cents("-15"), Ok(-1500));
        assert_eq!(decimal_to_cents("+7"), Ok(700));
        assert_eq!(decimal_to_cents("-0.5"), Ok(-50));
    }

    #[test]
    fn more_than_two_decimals_round_half_away_from_zero() {
        assert_eq!(decimal_to_cents("1.005"), Ok(101));
        assert_eq!(decimal_to_cents("1.004"), Ok(100));
        assert_eq!(decimal_to_cents("-1.005"), Ok(-101));
        assert_eq!(decimal_to_cents("-12.345"), Ok(-1235));
        assert_eq!(decimal_to_cents("1234567.891"), Ok(123456789));
        assert_eq!(decimal_to_cents("0.004999"), Ok(0));
        assert_eq!(decimal_to_cents("0.005"), Ok(1));
    }

    #[test]
    fn exponents() {
        assert_eq!(decimal_to_cents("2.5e1"), Ok(2500));
        assert_eq!(decimal_to_cents("1E-2"), Ok(1));
        assert_eq!(decimal_to_cents("5e-3"), Ok(1));
        assert_eq!(decimal_to_cents("4e-3"), Ok(0));
        assert_eq!(decimal_to_cents("1e-9"), Ok(0));
    }

    #[test]
    fn garbage_and_overflow_are_named_errors() {
        assert!(decimal_to_cents("").is_err());
        assert!(decimal_to_cents("abc").is_err());
        assert!(decimal_to_cents("1.2.3").is_err());
        assert!(decimal_to_cents(".").is_err());
        assert!(decimal_to_cents("1e").is_err());
        assert!(decimal_to_cents("99999999999999999999").is_err());
        assert!(decimal_to_cents("1e400").is_err());
    }
}
