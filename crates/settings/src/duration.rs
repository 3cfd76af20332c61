//! Durations written as `500ms`, `30s`, `15m`, `2h`, `1d` or a bare number in a per-variable unit.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error as _};

/// Parses a duration; a bare number is read in `bare_unit`.
pub fn parse(text: &str, bare_unit: Duration) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 15m, 1d"))?;
    let unit = match unit.trim() {
        "" => bare_unit,
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m, h or d)"
            ));
        }
    };
    unit.checked_mul(u32::try_from(value).map_err(|_| format!("`{text}` is too large"))?)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn deserialize_with_unit<'de, D: Deserializer<'de>>(
    deserializer: D,
    bare_unit: Duration,
) -> Result<Duration, D::Error> {
    // Environment values arrive as strings, file values may be numbers.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => parse(&n.to_string(), bare_unit).map_err(D::Error::custom),
        Raw::Text(text) => parse(&text, bare_unit).map_err(D::Error::custom),
    }
}

/// Serde adapter: a bare number means seconds.
pub fn secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserialize_with_unit(deserializer, Duration::from_secs(1))
}

/// Serde adapter: an optional duration, a bare number meaning seconds.
pub fn secs_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    secs(deserializer).map(Some)
}

/// Serde adapter: a bare number means milliseconds.
pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserialize_with_unit(deserializer, Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        let s = Duration::from_secs(1);
        assert_eq!(parse("15m", s), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1d", s), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("90", s), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms", s), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse("60000", Duration::from_millis(1)),
            Ok(Duration::from_secs(60))
        );
        assert!(parse("15 minutes", s).is_err());
        assert!(parse("", s).is_err());
        assert!(parse("-5s", s).is_err());
    }
}
