//! The words of each message, as plain text and as HTML. Links open the storefront's pages
//! (`#/verify-email`, `#/reset-password`, `#/orders/{id}`).

use std::fmt::Write;

use shop_contracts::OrderSummary;

use super::Mail;

/// What a message is written with besides its own fields.
#[derive(Debug)]
pub struct Context<'a> {
    /// The recipient's display name, if any.
    pub name: Option<&'a str>,
    pub public_url: &'a str,
    /// The order, for order messages.
    pub order: Option<&'a OrderSummary>,
}

/// A written message.
#[derive(Debug)]
pub struct Written {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Writes `mail`.
pub fn write(mail: &Mail, context: &Context<'_>) -> Written {
    let greeting = match context.name {
        Some(name) => format!("Hello {name},"),
        None => "Hello,".to_owned(),
    };
    let base = context.public_url;
    let (subject, paragraphs, link): (&str, Vec<String>, Option<(String, &str)>) = match mail {
        Mail::VerifyEmail { token } => (
            "Verify your email address",
            vec!["Please confirm that this address is yours. The link works once, for 24 hours.".into()],
            Some((format!("{base}/#/verify-email?token={token}"), "Verify my email")),
        ),
        Mail::PasswordReset { token } => (
            "Reset your password",
            vec![
                "Someone (we hope you) asked to reset the password of your account. The link works once, for 30 minutes.".into(),
                "If it was not you, ignore this message: your password stays as it is.".into(),
            ],
            Some((format!("{base}/#/reset-password?token={token}"), "Choose a new password")),
        ),
        Mail::PasswordChanged => (
            "Your password was changed",
            vec![
                "The password of your account was just changed, and every session signed in with the old one has ended.".into(),
                "If it was not you, reset your password at once.".into(),
            ],
            Some((format!("{base}/#/forgot-password"), "Reset my password")),
        ),
        Mail::OrderPaid { order_id } => (
            "Your order is paid",
            order_paragraphs(
                "Thank you: your payment was received and your order is confirmed.",
                context.order,
            ),
            Some((format!("{base}/#/orders/{order_id}"), "See my order")),
        ),
        Mail::OrderFailed { order_id, cause } => (
            "Your order could not be completed",
            {
                let why = match cause.as_deref() {
                    Some("payment_failed") => "the payment was declined",
                    Some("payment_timeout") => "the payment did not complete in time",
                    Some("insufficient_stock") => "an item ran out of stock",
                    Some("reservation_abandoned") => "the items could not be reserved",
                    _ => "it could not be completed",
                };
                let mut paragraphs = order_paragraphs(
                    &format!("We are sorry: your order failed because {why}. No money was taken, and the items were put back on sale."),
                    context.order,
                );
                paragraphs.push("You can place the order again at any time.".into());
                paragraphs
            },
            Some((format!("{base}/#/orders/{order_id}"), "See my order")),
        ),
        Mail::Refunded {
            order_id,
            amount_cents,
            currency,
        } => (
            "A refund is on its way",
            order_paragraphs(
                &format!(
                    "We have refunded {} to the card you paid with. It usually shows on your statement within a few days.",
                    money(*amount_cents, currency)
                ),
                context.order,
            ),
            Some((format!("{base}/#/orders/{order_id}"), "See my order")),
        ),
    };

    let mut text = format!("{greeting}\n\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>{}</p>",
        escape(&greeting)
    );
    for paragraph in &paragraphs {
        let _ = write!(text, "{paragraph}\n\n");
        let _ = write!(
            html,
            "<p style=\"white-space:pre-line\">{}</p>",
            escape(paragraph)
        );
    }
    if let Some((href, label)) = &link {
        let _ = write!(text, "{label}: {href}\n\n");
        let _ = write!(
            html,
            "<p><a href=\"{}\">{}</a></p>",
            escape(href),
            escape(label)
        );
    }
    text.push_str("-- \nShop\n");
    html.push_str("<p>Shop</p></body></html>");
    Written {
        subject: subject.to_owned(),
        text,
        html,
    }
}

/// The lead sentence, then the order's lines and total.
fn order_paragraphs(lead: &str, order: Option<&OrderSummary>) -> Vec<String> {
    let mut paragraphs = vec![lead.to_owned()];
    if let Some(order) = order {
        let mut lines = format!("Order {}\n", order.id);
        for line in &order.items {
            let _ = writeln!(
                lines,
                "{} × {} at {}",
                line.quantity,
                line.name,
                money(line.unit_price_cents, &order.currency)
            );
        }
        if let Some(total) = order.total_cents {
            let _ = write!(lines, "Total: {}", money(total, &order.currency));
        }
        paragraphs.push(lines.trim_end().to_owned());
        if let Some(address) = &order.shipping_address {
            paragraphs.push(format!("Shipping to:\n{}", address_lines(address)));
        }
    }
    paragraphs
}

/// An address as it is written on a parcel.
fn address_lines(address: &shop_contracts::ShippingAddress) -> String {
    let locality = match &address.region {
        Some(region) => format!("{} {}, {region}", address.postal_code, address.city),
        None => format!("{} {}", address.postal_code, address.city),
    };
    [
        Some(address.name.as_str()),
        Some(address.line1.as_str()),
        address.line2.as_deref(),
        Some(locality.as_str()),
        Some(address.country.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n")
}

/// Minor units as `12.34 USD`.
fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", cents / 100, cents % 100)
}

/// Text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use shop_contracts::OrderSummaryLine;

    use super::*;

    fn order() -> OrderSummary {
        OrderSummary {
            id: shop_contracts::OrderId::new(),
            total_cents: Some(2598),
            currency: "USD".into(),
            items: vec![OrderSummaryLine {
                name: "<Mug> & co".into(),
                unit_price_cents: 1299,
                quantity: 2,
            }],
            shipping_address: None,
        }
    }

    #[test]
    fn an_order_mail_lists_its_lines_and_total_and_escapes_names_in_html() {
        let order = order();
        let written = write(
            &Mail::OrderPaid { order_id: order.id },
            &Context {
                name: Some("Ann <script>"),
                public_url: "https://shop.example.com",
                order: Some(&order),
            },
        );
        assert_eq!(written.subject, "Your order is paid");
        assert!(
            written.text.contains("2 × <Mug> & co at 12.99 USD"),
            "{}",
            written.text
        );
        assert!(written.text.contains("Total: 25.98 USD"));
        assert!(
            written
                .text
                .contains(&format!("https://shop.example.com/#/orders/{}", order.id))
        );
        assert!(
            written.html.contains("&lt;Mug&gt; &amp; co"),
            "{}",
            written.html
        );
        assert!(written.html.contains("Hello Ann &lt;script&gt;,"));
        assert!(!written.html.contains("<script>"));
    }

    #[test]
    fn a_failed_order_says_why_and_that_no_money_was_taken() {
        let order = order();
        let written = write(
            &Mail::OrderFailed {
                order_id: order.id,
                cause: Some("payment_failed".into()),
            },
            &Context {
                name: None,
                public_url: "http://localhost:8080",
                order: Some(&order),
            },
        );
        assert!(written.text.starts_with("Hello,\n"));
        assert!(written.text.contains("the payment was declined"));
        assert!(written.text.contains("No money was taken"));
    }

    #[test]
    fn token_links_open_the_storefront_pages() {
        let context = Context {
            name: None,
            public_url: "http://localhost:8080",
            order: None,
        };
        let reset = write(
            &Mail::PasswordReset {
                token: "abc".into(),
            },
            &context,
        );
        assert!(
            reset
                .text
                .contains("http://localhost:8080/#/reset-password?token=abc")
        );
        let verify = write(
            &Mail::VerifyEmail {
                token: "xyz".into(),
            },
            &context,
        );
        assert!(
            verify
                .html
                .contains("href=\"http://localhost:8080/#/verify-email?token=xyz\"")
        );
    }

    #[test]
    fn a_refund_says_how_much_and_a_paid_order_where_it_goes() {
        let mut order = order();
        order.shipping_address = Some(shop_contracts::ShippingAddress {
            name: "Ann Smith".into(),
            line1: "1 Main Street".into(),
            line2: Some("Flat 2".into()),
            city: "Springfield".into(),
            region: Some("IL".into()),
            postal_code: "62701".into(),
            country: "US".into(),
            phone: None,
        });
        let context = Context {
            name: None,
            public_url: "http://localhost:8080",
            order: Some(&order),
        };
        let refund = write(
            &Mail::Refunded {
                order_id: order.id,
                amount_cents: 1050,
                currency: "USD".into(),
            },
            &context,
        );
        assert_eq!(refund.subject, "A refund is on its way");
        assert!(
            refund.text.contains("refunded 10.50 USD"),
            "{}",
            refund.text
        );
        let paid = write(&Mail::OrderPaid { order_id: order.id }, &context);
        assert!(
            paid.text.contains(
                "Shipping to:\nAnn Smith\n1 Main Street\nFlat 2\n62701 Springfield, IL\nUS"
            ),
            "{}",
            paid.text
        );
    }

    #[test]
    fn money_is_written_in_major_units() {
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(-150, "USD"), "-1.50 USD");
    }
}
