//! Which parser a document goes to: the media types we parse, what a client's `Content-Type` means, and what the
//! bytes themselves say.
//!
//! Precedence (`detect`): a declared type we parse wins unless the bytes contradict it; then definitive magic bytes
//! (PDF, ZIP, images, ...); then the file name's extension; then weak text heuristics (does it look like HTML?);
//! then plain text if the bytes are UTF-8 without NULs. The extension is asked before the HTML heuristic on purpose:
//! Markdown may start with inline HTML, and `notes.md` beginning with `<p>` is still Markdown. Only `memchr` is used
//! here (no third-party parser runs during detection), so detection cannot panic or blow up on hostile input.

use std::fmt;

use memchr::memmem;

use super::ParseError;

/// A document format we can turn into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// `text/plain` (and other textual types such as CSV or JSON, read as text).
    PlainText,
    /// `text/markdown`.
    Markdown,
    /// `text/html` (and XHTML).
    Html,
    /// `application/pdf`, read from its text layer.
    Pdf,
    /// Word 2007+ (`.docx`).
    Docx,
}

const DOCX_MIME: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

impl MediaType {
    /// The canonical media type string.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PlainText => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Html => "text/html",
            Self::Pdf => "application/pdf",
            Self::Docx => DOCX_MIME,
        }
    }

    /// The format as people name it, for error messages.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::PlainText => "text",
            Self::Markdown => "Markdown",
            Self::Html => "HTML",
            Self::Pdf => "PDF",
            Self::Docx => "DOCX",
        }
    }

    /// Reads a declared media type (a `Content-Type` value): parameters such as `; charset=utf-8` are ignored, case
    /// does not matter, and common aliases are accepted. Textual types we have no parser for (`text/csv`,
    /// `application/json`, ...) read as plain text. `None` for anything else, including `application/octet-stream`.
    pub fn parse_declared(declared: &str) -> Option<MediaType> {
        let essence = essence(declared);
        let media_type = match essence.as_str() {
            "text/plain" => Self::PlainText,
            "text/markdown" | "text/x-markdown" | "text/x-gfm" | "text/x-web-markdown" | "application/markdown" => {
                Self::Markdown
            }
            "text/html" | "application/xhtml+xml" | "text/xhtml" => Self::Html,
            "application/pdf" | "application/x-pdf" | "application/acrobat" | "text/pdf" | "text/x-pdf" => Self::Pdf,
            DOCX_MIME => Self::Docx,
            "application/json"
            | "application/xml"
            | "application/yaml"
            | "application/x-yaml"
            | "application/toml"
            | "application/javascript"
            | "application/x-sh"
            | "application/sql" => Self::PlainText,
            // RTF is ASCII but not prose: reading it as text would ingest its control words.
            "text/rtf" => return None,
            other if other.starts_with("text/") => Self::PlainText,
            other if other.ends_with("+json") || other.ends_with("+xml") => Self::PlainText,
            _ => return None,
        };
        Some(media_type)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lower-cased `type/subtype` of a `Content-Type` value, without parameters.
fn essence(declared: &str) -> String {
    declared.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Declared types that say nothing about the content: browsers and HTTP tools send them for unknown files.
fn is_generic(essence: &str) -> bool {
    matches!(
        essence,
        "" | "application/octet-stream"
            | "binary/octet-stream"
            | "application/unknown"
            | "application/binary"
            | "application/x-download"
            | "application/force-download"
            | "*/*"
    )
}

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Pdf,
    Docx,
    /// A recognised binary format we do not parse: its media type and a phrase for messages.
    Other {
        media_type: &'static str,
        phrase: &'static str,
    },
    /// Nothing definitive: maybe text.
    Unknown,
}

const ZIP: Sniffed = Sniffed::Other { media_type: "application/zip", phrase: "a ZIP archive" };
const OLE: Sniffed = Sniffed::Other {
    media_type: "application/x-ole-storage",
    phrase: "an OLE compound file (a legacy .doc or an encrypted Office document)",
};

/// Definitive magic numbers only; text heuristics live in `looks_like_html`.
fn sniff(bytes: &[u8]) -> Sniffed {
    let other = |media_type, phrase| Sniffed::Other { media_type, phrase };
    // The PDF spec lets the header sit anywhere in the first 1024 bytes (some writers put junk before it).
    if memmem::find(bytes.get(..1024).unwrap_or(bytes), b"%PDF-").is_some() {
        return Sniffed::Pdf;
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        // Part names are stored uncompressed in the local headers and the central directory, so a byte search
        // finds them without running a ZIP parser on untrusted input.
        return if memmem::find(bytes, b"word/document.xml").is_some() {
            Sniffed::Docx
        } else if memmem::find(bytes, b"xl/workbook.xml").is_some() {
            other("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "an XLSX spreadsheet")
        } else if memmem::find(bytes, b"ppt/presentation.xml").is_some() {
            other("application/vnd.openxmlformats-officedocument.presentationml.presentation", "a PPTX presentation")
        } else if bytes.get(30..58) == Some(b"mimetypeapplication/epub+zip") {
            other("application/epub+zip", "an EPUB book")
        } else {
            ZIP
        };
    }
    const MAGIC: &[(&[u8], &str, &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png", "a PNG image"),
        (b"\xff\xd8\xff", "image/jpeg", "a JPEG image"),
        (b"GIF87a", "image/gif", "a GIF image"),
        (b"GIF89a", "image/gif", "a GIF image"),
        (b"II*\0", "image/tiff", "a TIFF image"),
        (b"MM\0*", "image/tiff", "a TIFF image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "", ""),
        (b"{\\rtf", "application/rtf", "an RTF document"),
        (b"\x1f\x8b", "application/gzip", "a gzip archive"),
        (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed", "a 7-Zip archive"),
        (b"Rar!\x1a\x07", "application/vnd.rar", "a RAR archive"),
        (b"\x7fELF", "application/x-executable", "an executable"),
        (b"MZ", "application/x-msdownload", "a Windows executable"),
        (b"%!PS", "application/postscript", "a PostScript file"),
        (b"OggS", "audio/ogg", "an Ogg media file"),
        (b"ID3", "audio/mpeg", "an MP3 file"),
        (b"fLaC", "audio/flac", "a FLAC file"),
        (b"\x1aE\xdf\xa3", "video/webm", "a Matroska/WebM video"),
    ];
    for (magic, media_type, phrase) in MAGIC {
        if bytes.starts_with(magic) {
            return if media_type.is_empty() { OLE } else { other(media_type, phrase) };
        }
    }
    if bytes.starts_with(b"RIFF") {
        return match bytes.get(8..12) {
            Some(b"WEBP") => other("image/webp", "a WebP image"),
            Some(b"WAVE") => other("audio/wav", "a WAV file"),
            _ => other("application/octet-stream", "a RIFF media file"),
        };
    }
    if bytes.get(4..8) == Some(b"ftyp") {
        return other("video/mp4", "an MP4/QuickTime media file");
    }
    Sniffed::Unknown
}

/// The WHATWG MIME-sniffing rule for HTML: after whitespace, one of a list of tags that real pages start with.
fn looks_like_html(bytes: &[u8]) -> bool {
    let start = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = start.iter().position(|b| !b.is_ascii_whitespace()).and_then(|i| start.get(i..)).unwrap_or_default();
    let head: Vec<u8> = start.iter().take(512).map(u8::to_ascii_lowercase).collect();
    if head.starts_with(b"<?xml") {
        // XHTML: an XML declaration followed by an html root.
        return memmem::find(&head, b"<html").is_some() || memmem::find(&head, b"<!doctype html").is_some();
    }
    const TAGS: &[&[u8]] = &[
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<script",
        b"<iframe",
        b"<h1",
        b"<div",
        b"<font",
        b"<table",
        b"<a",
        b"<style",
        b"<title",
        b"<b",
        b"<body",
        b"<br",
        b"<p",
        b"<!--",
    ];
    TAGS.iter().any(|tag| {
        // The tag must end there ("<b>" or "<b " but not "<blockquote-ish>" words like "<bold").
        head.starts_with(tag) && matches!(head.get(tag.len()), Some(b' ' | b'>' | b'\t' | b'\n' | b'\r' | b'/'))
    })
}

fn from_extension(filename: &str) -> Option<MediaType> {
    let extension = filename.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "md" | "markdown" | "mdown" | "mkd" | "mkdn" => Some(MediaType::Markdown),
        "txt" | "text" | "log" | "csv" | "tsv" => Some(MediaType::PlainText),
        "html" | "htm" | "xhtml" => Some(MediaType::Html),
        "pdf" => Some(MediaType::Pdf),
        "docx" => Some(MediaType::Docx),
        _ => None,
    }
}

/// Whether the sniffed bytes rule out the declared type.
fn contradiction(declared: MediaType, sniffed: Sniffed) -> Option<&'static str> {
    match (declared, sniffed) {
        (MediaType::Pdf, Sniffed::Pdf) | (MediaType::Docx, Sniffed::Docx) => None,
        // A ZIP without word/document.xml is left to the DOCX parser, which names the missing part.
        (MediaType::Docx, Sniffed::Other { media_type: "application/zip", .. }) => None,
        (_, Sniffed::Pdf) => Some("a PDF document"),
        (_, Sniffed::Docx) => Some("a DOCX document"),
        (_, Sniffed::Other { phrase, .. }) => Some(phrase),
        (MediaType::Pdf, Sniffed::Unknown) => Some("not a PDF (no %PDF- header)"),
        (MediaType::Docx, Sniffed::Unknown) => Some("not a ZIP archive"),
        (MediaType::PlainText | MediaType::Markdown | MediaType::Html, Sniffed::Unknown) => None,
    }
}

/// Decides which parser gets `bytes`, from the declared media type (a `Content-Type` value), the bytes, and the
/// file name. See the module docs for the order. Fails on empty input, on a declared type the bytes contradict
/// (`Mismatch`), and on formats we do not parse (`Unsupported`).
pub fn detect(bytes: &[u8], declared: Option<&str>, filename: Option<&str>) -> Result<MediaType, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let sniffed = sniff(bytes);
    let declared_essence = declared.map(essence).filter(|essence| !is_generic(essence));
    if let Some(media_type) = declared.and_then(MediaType::parse_declared) {
        return match contradiction(media_type, sniffed) {
            None => Ok(media_type),
            Some(actual) => Err(ParseError::Mismatch { declared: media_type.as_str(), actual }),
        };
    }
    match sniffed {
        Sniffed::Pdf => return Ok(MediaType::Pdf),
        Sniffed::Docx => return Ok(MediaType::Docx),
        Sniffed::Other { media_type, .. } => {
            return Err(ParseError::Unsupported { media_type: media_type.to_owned() });
        }
        Sniffed::Unknown => {}
    }
    // A specific type we do not parse (image/png, application/msword, ...) is believed: reading such a file as
    // text because its bytes happen to be ASCII would ingest garbage.
    if let Some(essence) = declared_essence {
        return Err(ParseError::Unsupported { media_type: essence });
    }
    if let Some(media_type) = filename.and_then(from_extension) {
        // The binary formats were ruled out above: a ".pdf" without a PDF header is not a PDF.
        return match contradiction(media_type, sniffed) {
            None => Ok(media_type),
            Some(actual) => Err(ParseError::Mismatch { declared: media_type.as_str(), actual }),
        };
    }
    if looks_like_html(bytes) {
        return Ok(MediaType::Html);
    }
    if std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0) {
        return Ok(MediaType::PlainText);
    }
    Err(ParseError::Unsupported { media_type: "application/octet-stream".to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";

    #[test]
    fn as_str_and_parse_declared_round_trip() {
        for media_type in [MediaType::PlainText, MediaType::Markdown, MediaType::Html, MediaType::Pdf, MediaType::Docx]
        {
            assert_eq!(MediaType::parse_declared(media_type.as_str()), Some(media_type));
        }
    }

    #[test]
    fn parse_declared_with_parameters_case_and_aliases_is_accepted() {
        assert_eq!(MediaType::parse_declared("Text/HTML; charset=UTF-8"), Some(MediaType::Html));
        assert_eq!(MediaType::parse_declared(" text/x-markdown "), Some(MediaType::Markdown));
        assert_eq!(MediaType::parse_declared("application/xhtml+xml"), Some(MediaType::Html));
        assert_eq!(MediaType::parse_declared("text/csv"), Some(MediaType::PlainText));
        assert_eq!(MediaType::parse_declared("application/json"), Some(MediaType::PlainText));
        assert_eq!(MediaType::parse_declared("application/octet-stream"), None);
        assert_eq!(MediaType::parse_declared("image/png"), None);
        assert_eq!(MediaType::parse_declared(""), None);
    }

    #[test]
    fn detect_empty_bytes_returns_empty() {
        assert_eq!(detect(b"", Some("text/plain"), Some("a.txt")), Err(ParseError::Empty));
    }

    #[test]
    fn detect_declared_pdf_that_is_a_zip_returns_mismatch() {
        let err = detect(b"PK\x03\x04\x14\0\0\0rest", Some("application/pdf"), Some("report.pdf")).unwrap_err();
        assert_eq!(err.to_string(), "declared application/pdf but the bytes are a ZIP archive");
        assert_eq!(err.kind(), "media_type_mismatch");
    }

    #[test]
    fn detect_declared_pdf_without_header_returns_mismatch() {
        let err = detect(b"hello", Some("application/pdf"), None).unwrap_err();
        assert_eq!(err.kind(), "media_type_mismatch");
    }

    #[test]
    fn detect_declared_text_that_is_a_pdf_returns_mismatch() {
        let err = detect(PDF, Some("text/plain"), None).unwrap_err();
        assert_eq!(err, ParseError::Mismatch { declared: "text/plain", actual: "a PDF document" });
    }

    #[test]
    fn detect_declared_type_consistent_with_bytes_wins() {
        assert_eq!(detect(PDF, Some("application/pdf"), None), Ok(MediaType::Pdf));
        // HTML source declared as text stays text: the client asked to see the markup.
        assert_eq!(detect(b"<html><body>x</body></html>", Some("text/plain"), None), Ok(MediaType::PlainText));
        assert_eq!(detect(b"# Title", Some("text/markdown; charset=utf-8"), Some("x.txt")), Ok(MediaType::Markdown));
    }

    #[test]
    fn detect_octet_stream_sniffs_magic_bytes() {
        assert_eq!(detect(PDF, Some("application/octet-stream"), None), Ok(MediaType::Pdf));
        let docx = b"PK\x03\x04\x14\0\0\0\0\0word/document.xml....";
        assert_eq!(detect(docx, Some("application/octet-stream"), Some("x.bin")), Ok(MediaType::Docx));
        assert_eq!(detect(b"  <!DOCTYPE html><p>hi", None, None), Ok(MediaType::Html));
    }

    #[test]
    fn detect_png_returns_unsupported_image_png() {
        let err = detect(PNG, None, Some("photo.png")).unwrap_err();
        assert_eq!(err.to_string(), "unsupported media type image/png");
        assert_eq!(err.kind(), "unsupported_media_type");
        // The declared type of an image is believed even when the sniffed bytes say nothing.
        let err = detect(b"abc", Some("image/png"), None).unwrap_err();
        assert_eq!(err, ParseError::Unsupported { media_type: "image/png".into() });
    }

    #[test]
    fn detect_other_zip_and_ole_return_unsupported() {
        assert_eq!(
            detect(b"PK\x03\x04xl/workbook.xml", None, None).unwrap_err().to_string(),
            "unsupported media type application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
        let ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0\0\0";
        assert_eq!(detect(ole, None, Some("secret.docx")).unwrap_err().kind(), "unsupported_media_type");
        assert_eq!(detect(ole, Some(DOCX_MIME), None).unwrap_err().kind(), "media_type_mismatch");
    }

    #[test]
    fn detect_extension_decides_before_html_heuristics() {
        assert_eq!(detect(b"<p>inline html</p>\n\n# Title", None, Some("notes.MD")), Ok(MediaType::Markdown));
        assert_eq!(detect(b"just words", None, Some("page.htm")), Ok(MediaType::Html));
        assert_eq!(detect(b"just words", None, Some("x.pdf")).unwrap_err().kind(), "media_type_mismatch");
    }

    #[test]
    fn detect_utf8_without_hint_returns_plain_text_and_binary_returns_unsupported() {
        assert_eq!(detect("héllo wörld".as_bytes(), None, None), Ok(MediaType::PlainText));
        assert_eq!(detect(b"bold claim", None, None), Ok(MediaType::PlainText));
        let err = detect(b"\0\x01\x02\xff\xfe", None, None).unwrap_err();
        assert_eq!(err, ParseError::Unsupported { media_type: "application/octet-stream".into() });
        assert_eq!(detect(b"ab\0cd", None, None).unwrap_err().kind(), "unsupported_media_type");
    }

    #[test]
    fn looks_like_html_requires_a_whole_tag_name() {
        assert!(looks_like_html(b"\xef\xbb\xbf\n <HTML lang=en>"));
        assert!(looks_like_html(b"<?xml version=\"1.0\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\">"));
        assert!(!looks_like_html(b"<bold> is not a tag we sniff"));
        assert!(!looks_like_html(b"<?xml version=\"1.0\"?><note/>"));
    }
}
