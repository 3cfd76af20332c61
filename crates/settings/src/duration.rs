//! Durations written as `500ms`, `30s`, `15m`, `2h`, `1d` or a bare number in a per-variable unit.

use std::{marker::PhantomData, time::Duration};

use serde::{Deserialize, Deserializer, de::Error as _};

/// The suffixes a duration may carry, largest first.
const UNITS: [(&str, Duration); 5] = [
    ("d", Duration::from_secs(86_400)),
    ("h", Duration::from_secs(3600)),
    ("m", Duration::from_secs(60)),
    ("s", Duration::from_secs(1)),
    ("ms", Duration::from_millis(1)),
];

/// Parses a duration; a bare number is read in `bare_unit`.
pub fn parse(text: &str, bare_unit: Duration) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 15m, 1d"))?;
    let unit = match suffix.trim() {
        "" => bare_unit,
        suffix => UNITS
            .iter()
            .find(|(name, _)| *name == suffix)
            .map(|(_, unit)| *unit)
            .ok_or_else(|| format!("unknown duration unit `{suffix}` (use ms, s, m, h or d)"))?,
    };
    unit.checked_mul(u32::try_from(value).map_err(|_| format!("`{text}` is too large"))?)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Writes a duration the way `parse` reads it back, in the largest unit that divides it.
pub fn render(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    let (name, unit) = UNITS
        .iter()
        .map(|(name, unit)| (*name, unit.as_millis()))
        .find(|(_, unit)| millis.is_multiple_of(*unit))
        .unwrap_or(("ms", 1));
    format!("{}{name}", millis / unit)
}

/// The unit a bare number is read in, as a type, so each setting can name its own.
pub trait Bare {
    /// One of the unit.
    const UNIT: Duration;
    /// Its suffix, as README shows it.
    const SUFFIX: &'static str;
}

/// A bare number means seconds.
#[derive(Debug)]
pub enum Secs {}

impl Bare for Secs {
    const UNIT: Duration = Duration::from_secs(1);
    const SUFFIX: &'static str = "s";
}

/// A bare number means milliseconds.
#[derive(Debug)]
pub enum Millis {}

impl Bare for Millis {
    const UNIT: Duration = Duration::from_millis(1);
    const SUFFIX: &'static str = "ms";
}

/// A duration as a configuration source writes it, a bare number read in `U`.
pub struct Text<U>(pub Duration, PhantomData<U>);

impl<'de, U: Bare> Deserialize<'de> for Text<U> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Environment values arrive as strings, file values may be numbers.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(text) => text,
        };
        parse(&text, U::UNIT)
            .map(|duration| Text(duration, PhantomData))
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        let s = Duration::from_secs(1);
        assert_eq!(parse("15m", s), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1d", s), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("2h", s), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("90", s), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms", s), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse("60000", Duration::from_millis(1)),
            Ok(Duration::from_secs(60))
        );
        assert!(parse("15 minutes", s).is_err());
        assert!(parse("", s).is_err());
        assert!(parse("-5s", s).is_err());
        assert!(parse("5w", s).is_err());
    }

    #[test]
    fn rendering_picks_the_largest_exact_unit_and_reads_back() {
        for (millis, text) in [
            (0, "0s"),
            (250, "250ms"),
            (1500, "1500ms"),
            (5000, "5s"),
            (90_000, "90s"),
            (900_000, "15m"),
            (86_400_000, "1d"),
            (36 * 3_600_000, "36h"),
        ] {
            let duration = Duration::from_millis(millis);
            assert_eq!(render(duration), text);
            assert_eq!(parse(text, Duration::from_secs(1)), Ok(duration));
        }
    }
}
