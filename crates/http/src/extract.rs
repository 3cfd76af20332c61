//! Extractor configuration: malformed input becomes a clear 4xx problem, never a 5xx.

use std::{future::Future, ops::Deref, pin::Pin};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError,
    dev::Payload,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    mime, web,
};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::{ApiError, ErrorCode, FieldError};

/// The largest body [`Json`] reads, as [`common_config`] sets it.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

/// Used when an app registered no limit.
const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Registers JSON, path and query extractor settings on an app.
pub fn common_config(max_body_bytes: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(
            web::JsonConfig::default()
                .limit(max_body_bytes)
                .error_handler(|error, _req| json_error(error).into()),
        )
        .app_data(web::PayloadConfig::default().limit(max_body_bytes))
        .app_data(BodyLimit(max_body_bytes))
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

/// A JSON request body, judged whole: a body that is not JSON is 400 `malformed-json` whatever
/// its readable start says, and a JSON document of the wrong shape is 422 `validation-failed`
/// naming the field by its path (`items[0].quantity`). Not JSON by its content type: 415;
/// over the limit, declared or streamed: 413.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The decoded body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// 413 `payload-too-large`.
pub fn too_large() -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
}

/// Reads a request body whole, up to `limit` bytes (API bodies are small JSON documents): past
/// it, 413 `payload-too-large`; a body that breaks off, 400. `expected` (a declared length
/// within the limit) sizes the buffer.
pub async fn read_body<S>(
    mut payload: S,
    limit: usize,
    expected: Option<usize>,
) -> Result<web::Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut body = web::BytesMut::with_capacity(expected.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::new(
                ErrorCode::MalformedJson,
                format!("the body could not be read: {error}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn declares_json(req: &HttpRequest) -> bool {
    matches!(
        req.mime_type(),
        Ok(Some(mime)) if mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON)
    )
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        let json = declares_json(req);
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "send the body as application/json",
                ));
            }
            if declared.is_some_and(|len| len > limit) {
                return Err(too_large());
            }
            let body = read_body(&mut payload, limit, declared).await?;
            decode(&body).map(Json)
        })
    }
}

/// A JSON body that may be left out: a request with neither a body nor a `Content-Type` is
/// `None`; anything sent is read as [`Json`] reads it (415, 413, 400 and 422 alike).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let sent_nothing = req.headers().get("content-type").is_none()
            && req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == "0");
        if sent_nothing {
            return Box::pin(std::future::ready(Ok(OptionalJson(None))));
        }
        let json = Json::<T>::from_request(req, payload);
        Box::pin(async move { Ok(OptionalJson(Some(json.await?.0))) })
    }
}

/// Parses `body` as JSON first (syntax errors: 400), then fits it to `T` (shape errors, and
/// anything but an object: 422).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {error}"))
    })?;
    // Every request body of this API is an object (serde would read a struct from an array).
    if !value.is_object() {
        return Err(ApiError::validation(vec![FieldError::new(
            "body",
            "expected a JSON object",
        )]));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let message = error.inner().to_string();
        let field = field_of(&error.path().to_string(), &message);
        ApiError::validation(vec![FieldError::new(field, message)])
    })
}

/// The field an error is about: its path, or for a missing field (reported at the object
/// that lacks it) that object's path and the field's name.
fn field_of(path: &str, message: &str) -> String {
    let named = named_field(message).filter(|_| message.starts_with("missing field"));
    let parent = (path != ".").then_some(path);
    match (parent, named) {
        (Some(parent), Some(name)) => format!("{parent}.{name}"),
        (None, Some(name)) => name,
        (Some(parent), None) => parent.to_owned(),
        (None, None) => "body".to_owned(),
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

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        quantity: i32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Status {
        Paid,
        Shipped,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Line>,
        status: Option<Status>,
    }

    fn judged(body: &str) -> (u16, String, Vec<String>) {
        match decode::<Order>(body.as_bytes()) {
            Ok(_) => (200, String::new(), Vec::new()),
            Err(error) => {
                let fields = error
                    .field_errors()
                    .iter()
                    .map(|e| e.field.clone())
                    .collect();
                (
                    error.error_response().status().as_u16(),
                    error.code().as_str().to_owned(),
                    fields,
                )
            }
        }
    }

    #[test]
    fn json_is_judged_whole_and_fields_are_named_by_path() {
        assert_eq!(judged(r#"{"items": [{"quantity": 2}]}"#).0, 200);
        // Not JSON, whatever its readable start says.
        for body in [r#"{"bogus": 1,"#, r#"{"items": "x", "#, "", "nope"] {
            assert_eq!(judged(body).1, "malformed-json", "{body}");
        }
        // JSON of the wrong shape: 422 with the field's path.
        let cases = [
            (r#"{"items": [{"quantity": "2"}]}"#, "items[0].quantity"),
            (r#"{"items": [{"quantity": 2}], "status": 12345}"#, "status"),
            (
                r#"{"items": [{"quantity": 2}], "status": "lost"}"#,
                "status",
            ),
            (r#"{"items": [{}]}"#, "items[0].quantity"),
            (
                r#"{"items": [{"quantity": 1, "colour": "red"}]}"#,
                "items[0].colour",
            ),
            (r#"{"bogus": 1}"#, "bogus"),
            (r#"{}"#, "items"),
            (r#"[1, 2]"#, "body"),
        ];
        for (body, field) in cases {
            let (status, code, fields) = judged(body);
            assert_eq!(
                (status, code.as_str()),
                (422, "validation-failed"),
                "{body}"
            );
            assert_eq!(fields, vec![field.to_owned()], "{body}");
        }
    }
}
