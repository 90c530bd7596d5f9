//! The one error type of the service and its mapping to HTTP.
//!
//! Every failure a request can meet is an [`ApiError`] variant. Each variant
//! has a status, a stable machine-readable `code` for the JSON body, and a
//! public message that names the problem and the fix. Internal detail (a
//! decoder's own message, an I/O error) goes to the log through
//! [`ApiError::detail`] and is never sent to the client, except where it
//! describes the client's own input.

use std::fmt;

/// A failed request, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// A query parameter is malformed, unknown or out of range.
    InvalidParameter { name: String, message: String },
    /// The multipart body cannot be parsed.
    MalformedMultipart(String),
    /// The multipart body has no usable `image` part.
    MissingImage(String),
    /// The `x-api-key` header is missing or does not match a key.
    Unauthorized,
    /// No route for this path.
    NotFound,
    /// The path exists but not for this method.
    MethodNotAllowed { allow: &'static str },
    /// The request body is over the limit, in bytes.
    BodyTooLarge { limit: u64 },
    /// The request is not `multipart/form-data` with a boundary.
    UnsupportedMediaType(String),
    /// The image bytes are of a format ImgFlux does not decode.
    UnsupportedImageFormat { detected: Option<&'static str> },
    /// The image is of a supported format but cannot be decoded.
    UndecodableImage(String),
    /// The image declares more pixels or frames than the limits allow.
    ImageTooLarge(String),
    /// The requested output cannot be produced within the output limits.
    OutputTooLarge(String),
    /// The client stopped sending, or the whole request took too long.
    RequestTimeout,
    /// The work queue is full; retry after the given number of seconds.
    Overloaded { retry_after_secs: u32 },
    /// The service is shutting down and takes no new work.
    ShuttingDown,
    /// A bug: a panic or an encoder failure. The detail is logged only.
    Internal(String),
}

impl ApiError {
    /// Returns the HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidParameter { .. }
            | ApiError::MalformedMultipart(_)
            | ApiError::MissingImage(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::RequestTimeout => 408,
            ApiError::BodyTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedImageFormat { .. } => 415,
            ApiError::UndecodableImage(_)
            | ApiError::ImageTooLarge(_)
            | ApiError::OutputTooLarge(_) => 422,
            ApiError::Internal(_) => 500,
            ApiError::Overloaded { .. } | ApiError::ShuttingDown => 503,
        }
    }

    /// Returns the stable, machine-readable error code sent in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::MalformedMultipart(_) => "malformed_multipart",
            ApiError::MissingImage(_) => "missing_image",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::UnsupportedImageFormat { .. } => "unsupported_image_format",
            ApiError::UndecodableImage(_) => "undecodable_image",
            ApiError::ImageTooLarge(_) => "image_too_large",
            ApiError::OutputTooLarge(_) => "output_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// Returns the public message: what failed and what to do about it.
    pub fn message(&self) -> String {
        match self {
            ApiError::InvalidParameter { name, message } => {
                format!("invalid query parameter '{name}': {message}")
            }
            ApiError::MalformedMultipart(why) => format!(
                "malformed multipart/form-data body: {why}; send the file as a form field named 'image'"
            ),
            ApiError::MissingImage(why) => {
                format!("{why}; send the file as a form field named 'image' (curl -F \"image=@photo.jpg\")")
            }
            ApiError::Unauthorized => {
                "missing or invalid API key; send a valid key in the 'x-api-key' header".to_string()
            }
            ApiError::NotFound => {
                "no such endpoint; images are processed by POST /process".to_string()
            }
            ApiError::MethodNotAllowed { allow } => {
                format!("method not allowed on this path; allowed: {allow}")
            }
            ApiError::BodyTooLarge { limit } => {
                format!("request body is larger than the limit of {limit} bytes; send a smaller image")
            }
            ApiError::UnsupportedMediaType(why) => format!(
                "{why}; send a multipart/form-data body with the file in a field named 'image'"
            ),
            ApiError::UnsupportedImageFormat { detected } => {
                let what = match detected {
                    Some(name) => format!("{name} images are not supported"),
                    None => "the uploaded file is not an image in a supported format".to_string(),
                };
                format!("{what}; supported formats: {SUPPORTED_INPUT_FORMATS}")
            }
            ApiError::UndecodableImage(why) => {
                format!("the image cannot be decoded: {why}; it is probably truncated or corrupt")
            }
            ApiError::ImageTooLarge(why) => format!("the image is too large to process: {why}"),
            ApiError::OutputTooLarge(why) => format!("the requested output is too large: {why}"),
            ApiError::RequestTimeout => {
                "the request was not received in time; send the body without pauses".to_string()
            }
            ApiError::Overloaded { retry_after_secs } => format!(
                "the service is at capacity; retry after {retry_after_secs} second(s)"
            ),
            ApiError::ShuttingDown => {
                "the service is shutting down; retry on another instance".to_string()
            }
            ApiError::Internal(_) => {
                "internal error; the request id identifies it in the service log".to_string()
            }
        }
    }

    /// Returns the detail for the log, which may hold internal information.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ApiError::Internal(detail) => Some(detail),
            _ => None,
        }
    }

    /// Renders the JSON body: `{"error": {"status", "code", "message", "request_id"}}`.
    pub fn to_json(&self, request_id: &str) -> Vec<u8> {
        let body = serde_json::json!({
            "error": {
                "status": self.status(),
                "code": self.code(),
                "message": self.message(),
                "request_id": request_id,
            }
        });
        serde_json::to_vec(&body).expect("a JSON value always serializes")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())?;
        if let Some(detail) = self.detail() {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The input formats named in 415 messages and the README.
pub const SUPPORTED_INPUT_FORMATS: &str = "JPEG, PNG, GIF, WebP, BMP, TIFF";

#[cfg(test)]
mod tests {
    use super::*;

    fn all_variants() -> Vec<ApiError> {
        vec![
            ApiError::InvalidParameter {
                name: "w".into(),
                message: "must be a positive integer".into(),
            },
            ApiError::MalformedMultipart("no closing boundary".into()),
            ApiError::MissingImage("no 'image' field".into()),
            ApiError::Unauthorized,
            ApiError::NotFound,
            ApiError::MethodNotAllowed { allow: "POST" },
            ApiError::BodyTooLarge { limit: 10 },
            ApiError::UnsupportedMediaType("not multipart".into()),
            ApiError::UnsupportedImageFormat {
                detected: Some("AVIF"),
            },
            ApiError::UndecodableImage("truncated".into()),
            ApiError::ImageTooLarge("too many pixels".into()),
            ApiError::OutputTooLarge("too wide".into()),
            ApiError::RequestTimeout,
            ApiError::Overloaded {
                retry_after_secs: 1,
            },
            ApiError::ShuttingDown,
            ApiError::Internal("panic".into()),
        ]
    }

    #[test]
    fn status_table_covers_every_variant() {
        let statuses: Vec<(u16, &str)> = all_variants()
            .iter()
            .map(|e| (e.status(), e.code()))
            .collect();
        let expected = [
            (400, "invalid_parameter"),
            (400, "malformed_multipart"),
            (400, "missing_image"),
            (401, "unauthorized"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (413, "body_too_large"),
            (415, "unsupported_media_type"),
            (415, "unsupported_image_format"),
            (422, "undecodable_image"),
            (422, "image_too_large"),
            (422, "output_too_large"),
            (408, "request_timeout"),
            (503, "overloaded"),
            (503, "shutting_down"),
            (500, "internal_error"),
        ];
        assert_eq!(statuses, expected);
    }

    #[test]
    fn error_enum_stays_small() {
        assert!(std::mem::size_of::<ApiError>() <= 56);
    }

    #[test]
    fn internal_detail_stays_out_of_json() {
        let json = ApiError::Internal("secret stack".into()).to_json("req-1");
        let text = String::from_utf8(json).unwrap();
        assert!(!text.contains("secret stack"), "{text}");
        assert!(text.contains("\"request_id\":\"req-1\""), "{text}");
    }

    #[test]
    fn json_names_code_and_message() {
        let json = ApiError::BodyTooLarge { limit: 10485760 }.to_json("abc");
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["error"]["code"], "body_too_large");
        assert_eq!(value["error"]["status"], 413);
        assert!(value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10485760"));
    }
}
