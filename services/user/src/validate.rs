//! Input rules for accounts.

use shop_http::FieldError;

use crate::passwords::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};

/// Longest name accepted.
pub const MAX_NAME_CHARS: usize = 100;

/// Trims and lower-cases an email.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks a normalised email: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn email(email: &str, errors: &mut Vec<FieldError>) {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if !valid {
        errors.push(FieldError::new("email", "must be an email address"));
    }
}

/// Checks a new password's length in bytes (bcrypt reads at most 72).
pub fn password(field: &str, password: &str, errors: &mut Vec<FieldError>) {
    if password.len() < MIN_PASSWORD_BYTES {
        errors.push(FieldError::new(
            field,
            format!("must be at least {MIN_PASSWORD_BYTES} bytes"),
        ));
    } else if password.len() > MAX_PASSWORD_BYTES {
        errors.push(FieldError::new(
            field,
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
}

/// Trims a display name; empty means none.
pub fn name(name: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    let name = name.map(str::trim).filter(|n| !n.is_empty())?;
    if name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must not contain control characters",
        ));
    } else if name.chars().count() > MAX_NAME_CHARS {
        errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email_ok(value: &str) -> bool {
        let mut errors = Vec::new();
        email(&normalise_email(value), &mut errors);
        errors.is_empty()
    }

    #[test]
    fn emails() {
        assert!(email_ok("Ann@Example.com"));
        assert!(email_ok("  a.b+c@sub.example.org "));
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@.example.com",
            "ann@example..com",
        ] {
            assert!(!email_ok(bad), "{bad} accepted");
        }
        assert_eq!(normalise_email("  Ann@Example.COM "), "ann@example.com");
    }

    #[test]
    fn names_refuse_control_characters() {
        let mut errors = Vec::new();
        assert_eq!(name(Some("  Ann  "), &mut errors), Some("Ann".into()));
        assert!(errors.is_empty());
        name(Some("A\u{0}nn"), &mut errors);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn password_lengths_are_bytes() {
        let check = |p: &str| {
            let mut errors = Vec::new();
            password("password", p, &mut errors);
            errors.is_empty()
        };
        assert!(!check("short"));
        assert!(check("eight888"));
        assert!(check(&"x".repeat(72)));
        assert!(!check(&"x".repeat(73)));
        // 25 three-byte characters are 75 bytes.
        assert!(!check(&"€".repeat(25)));
    }
}
