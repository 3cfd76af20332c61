//! Conditional requests (RFC 9110 §13): the entity tags a client sends back.

use actix_web::{HttpRequest, http::header};

/// The entity tags of a conditional header (`If-Match`, `If-None-Match`), trimmed, in order;
/// `None` when the header is absent or empty.
pub fn entity_tags(req: &HttpRequest, name: header::HeaderName) -> Option<Vec<String>> {
    let values: Vec<String> = req
        .headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().to_owned())
        .filter(|tag| !tag.is_empty())
        .collect();
    (!values.is_empty()).then_some(values)
}

/// Whether `If-None-Match` names `current` (or `*`): the client's copy is fresh and the answer
/// is 304. Weak comparison, as RFC 9110 asks for this header.
pub fn not_modified(req: &HttpRequest, current: &str) -> bool {
    entity_tags(req, header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.iter()
            .any(|t| t == "*" || t.trim_start_matches("W/") == current)
    })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn tags_are_split_trimmed_and_compared_weakly() {
        let req = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, " \"a\" , W/\"b\",, "))
            .to_http_request();
        assert_eq!(
            entity_tags(&req, header::IF_NONE_MATCH),
            Some(vec!["\"a\"".to_owned(), "W/\"b\"".to_owned()])
        );
        assert!(not_modified(&req, "\"b\""));
        assert!(!not_modified(&req, "\"c\""));
        assert_eq!(entity_tags(&req, header::IF_MATCH), None);

        let any = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, "*"))
            .to_http_request();
        assert!(not_modified(&any, "\"c\""));
        assert!(!not_modified(
            &TestRequest::default().to_http_request(),
            "\"c\""
        ));
    }
}
