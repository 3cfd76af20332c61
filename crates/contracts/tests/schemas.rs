//! The event types and the JSON Schemas checked in under `proto-docs/events/` say the same:
//! every variant, serialised, is valid against the schema of its name, and every schema but the
//! dead-letter entry's (flat fields, not an envelope) belongs to a variant.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use chrono::Utc;
use serde_json::Value;
use shop_contracts::RefundId;
use shop_contracts::events::{
    AttemptFailed, Envelope, Event, NoData, OrderStatusChanged, PaymentRequested, PaymentSettled,
    Producer, RefundRequested,
};
use uuid::Uuid;

fn schema(name: &str) -> Value {
    let path = format!(
        "{}/../../proto-docs/events/{name}.v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path}")))
        .unwrap()
}

fn every_event() -> Vec<Event> {
    let status = |status: &str, cause: Option<&str>| OrderStatusChanged {
        status: status.to_owned(),
        cause: cause.map(str::to_owned),
        total_cents: Some(2500),
        currency: Some("EUR".to_owned()),
        carrier: None,
        tracking_number: None,
        refunded_cents: None,
    };
    let settled = PaymentSettled {
        attempt_no: 2,
        amount_cents: 2500,
        currency: "EUR".to_owned(),
        refund_id: None,
    };
    vec![
        Event::PaymentRequested(PaymentRequested {
            amount_cents: 2500,
            currency: "EUR".to_owned(),
        }),
        Event::PaymentCancel(NoData {}),
        Event::PaymentRefund(RefundRequested {
            refund_id: RefundId::new(),
            amount_cents: 700,
            currency: "EUR".to_owned(),
        }),
        Event::OrderCreated(status("pending", None)),
        Event::OrderPaid(status("paid", None)),
        Event::OrderFailed(status("failed", Some("payment_failed"))),
        Event::OrderCancelled(status("cancelled", Some("cancelled_by_user"))),
        Event::OrderShipped(OrderStatusChanged {
            carrier: Some("La Poste".to_owned()),
            tracking_number: Some("6A12345678901".to_owned()),
            ..status("shipped", None)
        }),
        Event::OrderDelivered(status("delivered", None)),
        Event::OrderRefunded(OrderStatusChanged {
            refunded_cents: Some(2500),
            ..status("refunded", None)
        }),
        Event::PaymentAttemptFailed(AttemptFailed {
            attempt_no: 1,
            error: "card declined".to_owned(),
            next_retry_at: Some(Utc::now()),
        }),
        Event::PaymentSucceeded(settled.clone()),
        Event::PaymentFailed(settled.clone()),
        Event::PaymentRefunded(settled.clone()),
        Event::PaymentRefunded(PaymentSettled {
            amount_cents: 700,
            refund_id: Some(RefundId::new()),
            ..settled
        }),
    ]
}

fn envelope(event: Event) -> Envelope {
    let producer = if event.name().starts_with("order.")
        || event.name() == "payment.requested"
        || event.name() == "payment.cancel"
        || event.name() == "payment.refund"
    {
        Producer::Order
    } else {
        Producer::Payment
    };
    Envelope {
        v: 1,
        id: Uuid::now_v7(),
        event,
        producer,
        occurred_at: Utc::now(),
        user_id: shop_contracts::UserId::new(),
        order_id: shop_contracts::OrderId::new(),
        seq: 3,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
    }
}

#[test]
fn every_event_is_valid_against_its_schema_and_reads_back() {
    for event in every_event() {
        let name = event.name();
        let envelope = envelope(event);
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["type"], name);
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema(name))
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{json}");
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope, "{name} reads back as written");
    }
}

#[test]
fn every_schema_belongs_to_an_event() {
    let dir = format!("{}/../../proto-docs/events", env!("CARGO_MANIFEST_DIR"));
    let schemas: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter_map(|file| file.strip_suffix(".v1.json").map(str::to_owned))
        .filter(|name| name != "payments.dead")
        .collect();
    let events: BTreeSet<String> = every_event().iter().map(|e| e.name().to_owned()).collect();
    assert_eq!(schemas, events);
}

#[test]
fn an_unknown_type_or_foreign_data_does_not_read() {
    let mut json = serde_json::to_value(envelope(Event::PaymentCancel(NoData {}))).unwrap();
    json["type"] = "payment.teleported".into();
    assert!(serde_json::from_value::<Envelope>(json.clone()).is_err());
    json["type"] = "payment.cancel".into();
    json["data"] = serde_json::json!({"amountCents": 1});
    assert!(serde_json::from_value::<Envelope>(json).is_err());
}
