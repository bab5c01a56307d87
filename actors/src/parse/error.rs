//! The one error type of the parsers.
//!
//! Every variant is a permanent failure: the same bytes give the same error on every attempt, so the pipeline
//! records it on the document and does not retry. Messages are written for the person who uploaded the file; `kind`
//! is the stable code that events, metrics and the API carry.

use thiserror::Error;

/// Why a document could not be turned into text. Every variant is permanent (retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The upload has no bytes at all.
    #[error("the file is empty")]
    Empty,

    /// The document parsed, but holds no visible text (or only whitespace).
    #[error("the {format} document has no text")]
    NoText {
        /// The format, as people name it ("HTML", "DOCX", ...).
        format: &'static str,
    },

    /// A PDF whose pages carry no text operators: a scan or other image-only file, which would need OCR.
    #[error("PDF has no text layer (image-only?)")]
    NoTextLayer,

    /// Neither the declared type nor the bytes name a format we parse.
    #[error("unsupported media type {media_type}")]
    Unsupported {
        /// The media type that was declared or recognised, e.g. `image/png`.
        media_type: String,
    },

    /// The declared type is one we parse, but the bytes are plainly something else (a "PDF" that is a ZIP).
    #[error("declared {declared} but the bytes are {actual}")]
    Mismatch {
        /// The declared media type.
        declared: &'static str,
        /// What the bytes are, as a phrase ("a ZIP archive").
        actual: &'static str,
    },

    /// A text file (plain text or Markdown) that is not valid UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first invalid byte in the file as uploaded.
        offset: usize,
    },

    /// The file is encrypted and cannot be read without a password.
    #[error("{format} is encrypted")]
    Encrypted {
        /// The format ("PDF", "DOCX").
        format: &'static str,
    },

    /// The bytes claim a format but are broken (truncated, corrupt structure, bad XML).
    #[error("malformed {format}: {reason}")]
    Malformed {
        /// The format ("PDF", "DOCX", ...).
        format: &'static str,
        /// What is wrong, from the parser.
        reason: String,
    },

    /// A ZIP archive that lacks a part every DOCX has.
    #[error("not a DOCX: {part} is missing")]
    MissingPart {
        /// The missing part's path in the archive.
        part: &'static str,
    },

    /// Markup nested deeper than [`super::ParseLimits::max_nesting`] (an "HTML bomb").
    #[error("{format} nests deeper than {limit} levels")]
    TooDeep {
        /// The format ("HTML", "DOCX").
        format: &'static str,
        /// The limit that was exceeded.
        limit: usize,
    },

    /// The extracted text is larger than [`super::ParseLimits::max_text_bytes`].
    #[error("the text is larger than the limit of {limit} bytes")]
    TextTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },

    /// A PDF with more pages than [`super::ParseLimits::max_pages`].
    #[error("PDF has {pages} pages, more than the limit of {limit}")]
    TooManyPages {
        /// The document's page count.
        pages: u32,
        /// The limit that was exceeded.
        limit: u32,
    },

    /// A compressed part inflates past our cap (a zip or stream bomb).
    #[error("{part} decompresses to more than {limit} bytes")]
    DecompressionLimit {
        /// Which part ("word/document.xml", "a PDF stream").
        part: &'static str,
        /// The cap in bytes.
        limit: usize,
    },

    /// A third-party parser panicked on this input; the panic was caught (see `parse`), so this names the file as
    /// the cause instead of crashing the worker.
    #[error("the {format} parser failed on this file (malformed input?)")]
    ParserCrashed {
        /// The format whose parser failed.
        format: &'static str,
    },
}

impl ParseError {
    /// A stable snake_case code for this failure, for events, metrics and API clients (the message may change).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NoText { .. } => "no_text",
            Self::NoTextLayer => "no_text_layer",
            Self::Unsupported { .. } => "unsupported_media_type",
            Self::Mismatch { .. } => "media_type_mismatch",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::Encrypted { .. } => "encrypted",
            Self::Malformed { .. } => "malformed",
            Self::MissingPart { .. } => "missing_part",
            Self::TooDeep { .. } => "nesting_too_deep",
            Self::TextTooLarge { .. } => "text_too_large",
            Self::TooManyPages { .. } => "too_many_pages",
            Self::DecompressionLimit { .. } => "decompression_limit",
            Self::ParserCrashed { .. } => "parser_crashed",
        }
    }

    pub(crate) fn malformed(format: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Malformed { format, reason: reason.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_every_variant_is_distinct_snake_case() {
        let all = [
            ParseError::Empty,
            ParseError::NoText { format: "HTML" },
            ParseError::NoTextLayer,
            ParseError::Unsupported { media_type: "image/png".into() },
            ParseError::Mismatch { declared: "application/pdf", actual: "a ZIP archive" },
            ParseError::InvalidUtf8 { offset: 3 },
            ParseError::Encrypted { format: "PDF" },
            ParseError::malformed("PDF", "truncated"),
            ParseError::MissingPart { part: "word/document.xml" },
            ParseError::TooDeep { format: "HTML", limit: 512 },
            ParseError::TextTooLarge { limit: 10 },
            ParseError::TooManyPages { pages: 3, limit: 2 },
            ParseError::DecompressionLimit { part: "word/document.xml", limit: 1 },
            ParseError::ParserCrashed { format: "PDF" },
        ];
        let mut kinds: Vec<_> = all.iter().map(ParseError::kind).collect();
        assert!(kinds.iter().all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all.len());
    }

    #[test]
    fn display_examples_read_as_the_issue_words_them() {
        assert_eq!(ParseError::Empty.to_string(), "the file is empty");
        assert_eq!(ParseError::InvalidUtf8 { offset: 1234 }.to_string(), "invalid UTF-8 at byte 1234");
        assert_eq!(ParseError::Encrypted { format: "PDF" }.to_string(), "PDF is encrypted");
        assert_eq!(ParseError::NoTextLayer.to_string(), "PDF has no text layer (image-only?)");
        assert_eq!(
            ParseError::MissingPart { part: "word/document.xml" }.to_string(),
            "not a DOCX: word/document.xml is missing"
        );
        assert_eq!(
            ParseError::Mismatch { declared: "application/pdf", actual: "a ZIP archive" }.to_string(),
            "declared application/pdf but the bytes are a ZIP archive"
        );
        assert_eq!(ParseError::TooDeep { format: "HTML", limit: 512 }.to_string(), "HTML nests deeper than 512 levels");
        assert_eq!(
            ParseError::Unsupported { media_type: "image/png".into() }.to_string(),
            "unsupported media type image/png"
        );
    }
}
