//! Money as people write it: `1.19`, `0.5`, `12`, `-0.20`, read into integer
//! cents. The command line and catalog files share this one reader, so an
//! amount means the same wherever it is typed.

/// Why a text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an amount like 1.19")]
pub struct ParseMoneyError {
    input: String,
}

/// Parse `12.34`, `12.3`, `12` or `-0.20` into cents: digits, at most two after
/// a decimal point, an optional leading minus. No thousands separators, no
/// currency sign, no comma for the point: those are refused, never guessed.
pub fn parse_money(s: &str) -> Result<i64, ParseMoneyError> {
    let err = || ParseMoneyError {
        input: s.chars().take(40).collect(),
    };
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(err());
    }
    let whole: i64 = whole.parse().map_err(|_| err())?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().map_err(|_| err())?
    };
    let cents = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(err)?;
    Ok(if neg { -cents } else { cents })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_into_cents() {
        for (s, c) in [
            ("1.19", 119),
            ("0.5", 50),
            ("12", 1200),
            ("-0.20", -20),
            ("0.05", 5),
        ] {
            assert_eq!(parse_money(s), Ok(c), "{s}");
        }
        for bad in [
            "",
            "1.234",
            "abc",
            "1,19",
            ".5",
            "1.-2",
            "€1",
            "99999999999999999999",
        ] {
            assert!(parse_money(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_money("1,19").expect_err("a comma").to_string(),
            "\"1,19\" is not an amount like 1.19"
        );
    }
}
