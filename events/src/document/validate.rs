//! Checks on the user-supplied fields of document commands, so that nothing malformed ever reaches the log.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::document::error::DocumentError;
use crate::document::events::Metadata;

/// Longest filename accepted, in bytes (the common file-system limit).
pub const MAX_FILENAME_LEN: usize = 255;

/// Longest media type accepted, in bytes, parameters included.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

/// Longest metadata key accepted, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 128;

/// Longest part of a refused value echoed back in an error, so that a huge value does not flood logs and responses.
const MAX_ECHO_LEN: usize = 300;

/// A filename is a single path component: it is later used to name downloads and must not escape a directory.
pub(crate) fn filename(filename: &str) -> Result<(), DocumentError> {
    let reason = if filename.is_empty() {
        "must not be empty"
    } else if filename.len() > MAX_FILENAME_LEN {
        "must be at most 255 bytes long"
    } else if filename.contains(['/', '\\']) {
        "must not contain a path separator ('/' or '\\')"
    } else if filename.chars().any(char::is_control) {
        "must not contain control characters"
    } else if filename == "." || filename == ".." {
        "must not be a relative path component ('.' or '..')"
    } else {
        return Ok(());
    };
    Err(DocumentError::InvalidFilename { filename: echo(filename), reason })
}

/// A media type is `type/subtype` as RFC 6838 names them, optionally followed by `; parameters`.
pub(crate) fn media_type(media_type: &str) -> Result<(), DocumentError> {
    let essence = media_type.split_once(';').map_or(media_type, |(essence, _)| essence).trim_end();
    let valid = media_type.len() <= MAX_MEDIA_TYPE_LEN
        && !media_type.chars().any(char::is_control)
        && essence
            .split_once('/')
            .is_some_and(|(kind, subtype)| is_restricted_name(kind) && is_restricted_name(subtype));
    if valid { Ok(()) } else { Err(DocumentError::InvalidMediaType { media_type: echo(media_type) }) }
}

/// RFC 6838 §4.2 `restricted-name`: 1 to 127 characters, a letter or digit first.
fn is_restricted_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() <= 127
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|byte| byte.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(byte))
}

/// A SHA-256 digest in hex, returned in lower case: the blob store's keys are lower case, and one spelling per
/// digest keeps the log comparable byte for byte.
pub(crate) fn sha256(field: &'static str, value: &str) -> Result<String, DocumentError> {
    if value.len() == 64 && value.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(DocumentError::InvalidDigest { field, value: echo(value) })
    }
}

/// Every key of a metadata map.
pub(crate) fn metadata(metadata: &Metadata) -> Result<(), DocumentError> {
    metadata.keys().try_for_each(|key| metadata_key(key))
}

/// A metadata key: short enough to index, printable.
pub(crate) fn metadata_key(key: &str) -> Result<(), DocumentError> {
    let reason = if key.is_empty() {
        "must not be empty"
    } else if key.len() > MAX_METADATA_KEY_LEN {
        "must be at most 128 bytes long"
    } else if key.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(DocumentError::InvalidMetadataKey { key: echo(key), reason })
}

/// A required text: blank counts as missing.
pub(crate) fn non_empty(field: &'static str, value: &str) -> Result<(), DocumentError> {
    if value.trim().is_empty() { Err(DocumentError::EmptyField { field }) } else { Ok(()) }
}

/// A retry time must be storable as RFC 3339 (years 0–9999, whole-minute offset), or the event could not be encoded.
pub(crate) fn retry_at(retry_at: Option<OffsetDateTime>) -> Result<(), DocumentError> {
    match retry_at {
        Some(at) => match at.format(&Rfc3339) {
            Ok(_) => Ok(()),
            Err(error) => Err(DocumentError::InvalidRetryAt { reason: error.to_string() }),
        },
        None => Ok(()),
    }
}

/// The start of a refused value, cut at a character boundary.
fn echo(value: &str) -> String {
    if value.len() <= MAX_ECHO_LEN {
        return value.to_owned();
    }
    let end = (0..=MAX_ECHO_LEN).rev().find(|&end| value.is_char_boundary(end)).unwrap_or(0);
    format!("{}…", &value[..end])
}
