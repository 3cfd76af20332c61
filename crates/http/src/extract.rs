//! Extractor configuration: malformed input becomes a clear 4xx problem, never a 5xx.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    web,
};

use crate::{ApiError, ErrorCode, FieldError};

/// Registers JSON, path and query extractor settings on an app.
pub fn common_config(max_body_bytes: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(
            web::JsonConfig::default()
                .limit(max_body_bytes)
                .error_handler(|error, _req| json_error(error).into()),
        )
        .app_data(web::PayloadConfig::default().limit(max_body_bytes))
        .app_data(web::PathConfig::default().error_handler(|error, _req| path_error(&error).into()))
        .app_data(
            web::QueryConfig::default().error_handler(|error, _req| query_error(&error).into()),
        );
    }
}

/// The fallback for routes that do not exist.
pub async fn not_found(_req: HttpRequest) -> HttpResponse {
    ApiError::not_found().error_response()
}

/// The field a serde message names (`unknown field `x``, `missing field `y``).
fn named_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

fn json_error(error: JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json",
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
        }
        JsonPayloadError::Deserialize(error) if error.is_data() => {
            let message = error.to_string();
            // serde_json appends " at line L column C"; the field name is what helps.
            let short = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            let field = named_field(&short)
                .filter(|_| {
                    short.starts_with("unknown field") || short.starts_with("missing field")
                })
                .unwrap_or_else(|| "body".into());
            ApiError::validation(vec![FieldError::new(field, short)])
        }
        JsonPayloadError::Deserialize(error) => {
            ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {error}"))
        }
        other => ApiError::new(ErrorCode::MalformedJson, other.to_string()),
    }
}

fn path_error(error: &PathError) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidId,
        format!("malformed path parameter: {error}"),
    )
}

fn query_error(error: &QueryPayloadError) -> ApiError {
    let message = error.to_string();
    let field = named_field(&message).unwrap_or_else(|| "query".into());
    ApiError::validation(vec![FieldError::new(field, message)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            named_field("unknown field `role`, expected `email`"),
            Some("role".into())
        );
        assert_eq!(named_field("no field here"), None);
    }
}
