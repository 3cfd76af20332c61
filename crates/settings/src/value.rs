//! How each type a setting can have is read from a configuration source, written back as the
//! environment would hold it, and checked.

use std::{net::SocketAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::{
    AppEnv, LogFormat, MailTransport,
    duration::{self, Bare},
};

/// No unit: the value is read as it is written.
#[derive(Debug)]
pub enum Plain {}

/// A type a setting can have. `U` is the unit a bare number is read in, for durations.
pub trait Setting<U = Plain>: Sized {
    /// What serde reads from a configuration source.
    type Wire: DeserializeOwned;
    /// The setting from what was read.
    fn from_wire(wire: Self::Wire) -> Self;
}

/// The value as it would be written in the environment (README shows defaults this way).
pub trait EnvText {
    /// The text that reads back as this value.
    fn env_text(&self) -> String;
}

/// Types serde reads as they are written.
macro_rules! read_as_written {
    ($($ty:ty),*) => {$(
        impl Setting for $ty {
            type Wire = Self;
            fn from_wire(wire: Self) -> Self {
                wire
            }
        }
    )*};
}

/// Types whose `Display` is how the environment writes them.
macro_rules! written_as_displayed {
    ($($ty:ty),*) => {$(
        impl EnvText for $ty {
            fn env_text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

read_as_written!(
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    String,
    SocketAddr,
    AppEnv,
    LogFormat,
    MailTransport
);
written_as_displayed!(bool, u8, u16, u32, u64, usize, String, SocketAddr);

impl Setting for SecretString {
    type Wire = String;
    fn from_wire(wire: String) -> Self {
        wire.into()
    }
}

impl EnvText for SecretString {
    fn env_text(&self) -> String {
        self.expose_secret().to_owned()
    }
}

impl<U: Bare> Setting<U> for Duration {
    type Wire = duration::Text<U>;
    fn from_wire(wire: Self::Wire) -> Self {
        wire.0
    }
}

impl EnvText for Duration {
    fn env_text(&self) -> String {
        duration::render(*self)
    }
}

/// A value given means `Some`; an unset optional setting is `None`.
impl<U, T: Setting<U>> Setting<U> for Option<T> {
    type Wire = T::Wire;
    fn from_wire(wire: Self::Wire) -> Self {
        Some(T::from_wire(wire))
    }
}

impl<T: EnvText> EnvText for Option<T> {
    fn env_text(&self) -> String {
        self.as_ref().map_or_else(|| "(none)".into(), T::env_text)
    }
}

impl EnvText for AppEnv {
    fn env_text(&self) -> String {
        match self {
            AppEnv::Development => "development",
            AppEnv::Test => "test",
            AppEnv::Production => "production",
        }
        .into()
    }
}

impl EnvText for MailTransport {
    fn env_text(&self) -> String {
        match self {
            MailTransport::File => "file",
            MailTransport::Smtp => "smtp",
        }
        .into()
    }
}

impl EnvText for LogFormat {
    fn env_text(&self) -> String {
        match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
        .into()
    }
}

/// A condition one setting must meet on its own, with the words README and errors use for it.
pub struct Rule<T> {
    text: String,
    test: Box<dyn Fn(&T) -> bool>,
}

impl<T: 'static> Rule<T> {
    fn new(text: impl Into<String>, test: impl Fn(&T) -> bool + 'static) -> Self {
        Self {
            text: text.into(),
            test: Box::new(test),
        }
    }

    /// What a value must be, completing "must be …".
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `value` meets the rule.
    pub fn holds(&self, value: &T) -> bool {
        (self.test)(value)
    }
}

/// At least `min`.
pub fn at_least<T: PartialOrd + EnvText + 'static>(min: T) -> Rule<T> {
    Rule::new(format!("at least {}", min.env_text()), move |v| *v >= min)
}

/// From `low` to `high`, both included.
pub fn between<T: PartialOrd + EnvText + 'static>(low: T, high: T) -> Rule<T> {
    Rule::new(
        format!("{} to {}", low.env_text(), high.env_text()),
        move |v| low <= *v && *v <= high,
    )
}

/// A secret of at least `min` bytes.
pub fn bytes_at_least(min: usize) -> Rule<SecretString> {
    Rule::new(format!("at least {min} bytes"), move |v: &SecretString| {
        v.expose_secret().len() >= min
    })
}

/// A secret of `low` to `high` bytes.
pub fn bytes_between(low: usize, high: usize) -> Rule<SecretString> {
    Rule::new(format!("{low} to {high} bytes"), move |v: &SecretString| {
        (low..=high).contains(&v.expose_secret().len())
    })
}

/// An `http://` or `https://` URL.
pub fn http_url() -> Rule<String> {
    Rule::new("an http:// or https:// URL", |v: &String| {
        v.starts_with("http://") || v.starts_with("https://")
    })
}

/// A three-letter ISO 4217 currency code.
pub fn currency_code() -> Rule<String> {
    Rule::new("a three-letter ISO 4217 code such as USD", |v: &String| {
        v.len() == 3 && v.chars().all(|c| c.is_ascii_uppercase())
    })
}

/// `rule` when the setting is given; an unset one passes.
pub fn optional<T: 'static>(rule: Rule<T>) -> Rule<Option<T>> {
    let Rule { text, test } = rule;
    Rule::new(text, move |v: &Option<T>| v.as_ref().is_none_or(&test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_accept_their_bounds_and_refuse_beyond() {
        let cost = between(4_u32, 31);
        assert!(cost.holds(&4) && cost.holds(&31));
        assert!(!cost.holds(&3) && !cost.holds(&32));
        assert_eq!(cost.text(), "4 to 31");

        let timeout = at_least(Duration::from_millis(1));
        assert!(timeout.holds(&Duration::from_millis(1)));
        assert!(!timeout.holds(&Duration::ZERO));
        assert_eq!(timeout.text(), "at least 1ms");

        let secret = optional(bytes_at_least(32));
        assert!(secret.holds(&None));
        assert!(secret.holds(&Some("x".repeat(32).into())));
        assert!(!secret.holds(&Some("x".repeat(31).into())));

        let password = bytes_between(8, 72);
        assert!(!password.holds(&"x".repeat(73).into()));
        assert!(password.holds(&"x".repeat(72).into()));
        assert!(!password.holds(&"x".repeat(7).into()));

        assert!(http_url().holds(&"https://a".into()) && !http_url().holds(&"ftp://a".into()));
        assert!(currency_code().holds(&"EUR".into()));
        assert!(!currency_code().holds(&"eur".into()) && !currency_code().holds(&"EURO".into()));
    }
}
