//! Reading an upload from its body: `multipart/form-data` (a `file` part and an optional `metadata` part holding a
//! JSON object) or JSON (`filename`, `text` or `content_base64`, `media_type`, `metadata`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use dossier_events::document::Metadata;
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::request::{ApiRequest, parse_json};

/// An upload, whatever its body's form.
#[derive(Debug)]
pub struct UploadInput {
    /// The file's name as given.
    pub filename: String,
    /// The declared media type (`None`: sniffed from the bytes).
    pub media_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// User metadata.
    pub metadata: Metadata,
}

/// The JSON form of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonUpload {
    filename: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    content_base64: Option<String>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

/// Reads the upload in `request`'s body, refusing a file over `max_bytes` with 413 before decoding it.
pub async fn read(request: &ApiRequest, max_bytes: usize) -> Result<UploadInput, ApiError> {
    let content_type = request.header("Content-Type")?.unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => from_json(&request.body, max_bytes),
        "multipart/form-data" => from_multipart(content_type, request.body.clone(), max_bytes).await,
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json or multipart/form-data, got {:?}",
            content_type.chars().take(100).collect::<String>()
        ))),
    }
}

fn too_large(size: usize, max_bytes: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("the file is {size} bytes, over the limit of {max_bytes} bytes"))
}

fn from_json(body: &[u8], max_bytes: usize) -> Result<UploadInput, ApiError> {
    let upload: JsonUpload = parse_json(body)?;
    let (bytes, media_type) = match (upload.text, upload.content_base64) {
        // Text without a media type is typed like a file: by its name, then by its bytes (`notes.md` is Markdown).
        (Some(text), None) => (text.into_bytes(), upload.media_type),
        (None, Some(encoded)) => {
            // Refuse before decoding: base64 is 4 characters per 3 bytes.
            if encoded.len() / 4 * 3 > max_bytes + 3 {
                return Err(too_large(encoded.len() / 4 * 3, max_bytes));
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|error| ApiError::body("content_base64", format!("content_base64: not base64: {error}")))?;
            (bytes, upload.media_type)
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::body("text", "give either text or content_base64, not both"));
        }
        (None, None) => return Err(ApiError::body("text", "missing field `text` (or `content_base64`)")),
    };
    if bytes.len() > max_bytes {
        return Err(too_large(bytes.len(), max_bytes));
    }
    Ok(UploadInput { filename: upload.filename, media_type, bytes, metadata: upload.metadata })
}

async fn from_multipart(content_type: &str, body: Bytes, max_bytes: usize) -> Result<UploadInput, ApiError> {
    let boundary = multer::parse_boundary(content_type).map_err(|error| ApiError::InvalidHeader {
        header: "Content-Type".into(),
        reason: format!("no usable multipart boundary: {error}"),
    })?;
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let malformed = |error: multer::Error| ApiError::body("$", format!("malformed multipart body: {error}"));
    let mut file: Option<(String, Option<String>, Vec<u8>)> = None;
    let mut metadata: Option<Metadata> = None;
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" if file.is_none() => {
                let filename = field
                    .file_name()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::body("filename", "the file part has no filename"))?;
                let media_type = field
                    .content_type()
                    .map(|mime| mime.essence_str().to_owned())
                    .filter(|mime| mime != "application/octet-stream");
                let bytes = field.bytes().await.map_err(malformed)?;
                if bytes.len() > max_bytes {
                    return Err(too_large(bytes.len(), max_bytes));
                }
                file = Some((filename, media_type, bytes.to_vec()));
            }
            "metadata" if metadata.is_none() => {
                let text = field.bytes().await.map_err(malformed)?;
                let parsed: Metadata = parse_json(&text).map_err(|error| match error {
                    ApiError::InvalidBody { detail, .. } => ApiError::body("metadata", format!("metadata: {detail}")),
                    other => other,
                })?;
                metadata = Some(parsed);
            }
            "file" | "metadata" => return Err(ApiError::body(name, "this part is given more than once")),
            other => {
                return Err(ApiError::body(
                    other.chars().take(64).collect::<String>(),
                    "unknown multipart part (expected file and, optionally, metadata)",
                ));
            }
        }
    }
    let (filename, media_type, bytes) =
        file.ok_or_else(|| ApiError::body("file", "missing part `file` (the document's bytes)"))?;
    Ok(UploadInput { filename, media_type, bytes, metadata: metadata.unwrap_or_default() })
}
