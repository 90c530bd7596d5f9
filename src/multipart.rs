//! Placeholder with the interface of the multipart parser being written on
//! the `multipart` branch; replaced when that branch merges.

use crate::error::ApiError;

pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub data: &'a [u8],
}

pub fn boundary(content_type: Option<&str>) -> Result<String, ApiError> {
    let content_type = content_type
        .ok_or_else(|| ApiError::UnsupportedMediaType("missing Content-Type".into()))?;
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(ApiError::UnsupportedMediaType(
            "not multipart/form-data".into(),
        ));
    }
    let (_, b) = content_type
        .split_once("boundary=")
        .ok_or_else(|| ApiError::MalformedMultipart("no boundary".into()))?;
    Ok(b.trim_matches('"').to_string())
}

pub fn image_part<'a>(body: &'a [u8], boundary: &str) -> Result<Part<'a>, ApiError> {
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let positions: Vec<usize> = finder.find_iter(body).collect();
    for pair in positions.windows(2) {
        let part = &body[pair[0] + delimiter.len()..pair[1]];
        let Some(split) = memchr::memmem::find(part, b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&part[..split]);
        if headers.contains("name=\"image\"") {
            let data = &part[split + 4..part.len().saturating_sub(2)];
            return Ok(Part {
                name: "image".into(),
                filename: None,
                data,
            });
        }
    }
    Err(ApiError::MissingImage("no 'image' field".into()))
}
