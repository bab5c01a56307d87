//! PDF: the text layer, page by page, and the title from the document information dictionary.
//!
//! Why `lopdf` (0.47, default features off) and not `pdf-extract`: pdf-extract (0.12) is a layer over an older
//! lopdf (0.42) that adds better glyph positioning (word spacing from kerning) at the price of euclid, cff-parser,
//! postscript and the Adobe CMap and Type 1 parsers, and it panics on unexpected input by design (its maintainer
//! prefers panics so that failing PDFs get reported: jrmuizel/pdf-extract#129, #76, #104). lopdf alone reads the
//! text operators with the fonts' encodings and ToUnicode maps, repairs broken cross-reference tables, bounds every
//! stream it decompresses, limits how deep objects nest (its parser recurses, but stops at 100 levels), and detects
//! encryption; with `chrono` and `rayon` turned off it builds in about 20 s here and needs no C. Text from image-only
//! pages needs OCR, which is out of scope: such files fail with `NoTextLayer`.
//!
//! lopdf still runs a large parser over hostile bytes, so the call is made under `catch_unwind` by `super::parse`.
//!
//! Encryption: a file that opens with the empty user password (the common "owner password only" kind that merely
//! restricts printing or copying) is read like any other; one that needs a password fails with `Encrypted`.

use std::error::Error as _;

use lopdf::xref::XrefRecovery;
use lopdf::{DecompressError, Document, LoadOptions, Object};
use memchr::memmem;

use super::text::TextSink;
use super::{ParseError, ParseLimits};

const FORMAT: &str = "PDF";

/// Cap on what any one stream may inflate to (lopdf's own default is 256 MiB): a page's content stream is rarely
/// over a few MiB, and the whole text may not exceed 20 MiB anyway.
const STREAM_LIMIT: usize = 64 * 1024 * 1024;

/// Text, title and page count of a PDF.
pub(crate) fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<(String, Option<String>, u32), ParseError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(ParseError::Mismatch { declared: "application/pdf", actual: "a ZIP archive" });
    }
    if memmem::find(bytes.get(..1024).unwrap_or(bytes), b"%PDF-").is_none() {
        return Err(ParseError::malformed(FORMAT, "no %PDF- header"));
    }
    let options = LoadOptions { max_decompressed_size: Some(STREAM_LIMIT), ..LoadOptions::default() };
    let document = Document::load_mem_with_options(bytes, options).map_err(|error| load_error(bytes, &error))?;
    // lopdf removes /Encrypt from the trailer once it has decrypted with the empty password; still there means the
    // file needs a password we do not have.
    if document.trailer.has(b"Encrypt") {
        return Err(ParseError::Encrypted { format: FORMAT });
    }

    let pages = document.get_pages();
    let page_count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    if page_count == 0 {
        return Err(ParseError::malformed(FORMAT, "the document has no pages"));
    }
    if page_count > limits.max_pages {
        return Err(ParseError::TooManyPages { pages: page_count, limit: limits.max_pages });
    }

    let mut out = TextSink::new(limits.max_text_bytes);
    let mut unreadable_pages = 0_u32;
    let mut first_failure: Option<String> = None;
    for &page_number in pages.keys() {
        let mut page_text = TextSink::new(limits.max_text_bytes);
        let mut page_failed = false;
        for chunk in document.extract_text_chunks_with_limit(&[page_number], STREAM_LIMIT) {
            match chunk {
                Ok(text) => page_text.push_str(&text)?,
                Err(lopdf::Error::Decompress(DecompressError::MemoryLimitExceeded { .. })) => {
                    return Err(ParseError::DecompressionLimit { part: "a PDF stream", limit: STREAM_LIMIT });
                }
                // One bad font or operator loses that piece of text, not the document: keep what reads.
                Err(error) => {
                    page_failed = true;
                    first_failure.get_or_insert_with(|| format!("page {page_number}: {}", describe(&error)));
                }
            }
        }
        unreadable_pages += u32::from(page_failed);
        let page_text = page_text.as_str().trim();
        if !page_text.is_empty() {
            if !out.as_str().is_empty() {
                out.push_str("\n\n")?;
            }
            out.push_str(page_text)?;
        }
    }
    if let Some(reason) = first_failure {
        if out.as_str().trim().is_empty() {
            return Err(ParseError::malformed(FORMAT, format!("the text layer could not be read ({reason})")));
        }
        tracing::warn!(unreadable_pages, page_count, first_failure = %reason, "pdf_text_partly_unreadable");
    }
    // A damaged file (truncated, say) that yields no text is damaged, not image-only: say so.
    if out.as_str().trim().is_empty() && document.xref_recovery == Some(XrefRecovery::Reconstructed) {
        return Err(ParseError::malformed(FORMAT, "the file is damaged (truncated?) and no text could be recovered"));
    }
    Ok((out.into_string(), title(&document), page_count))
}

/// Sorts lopdf's load failures into encryption, bombs and plain corruption.
fn load_error(bytes: &[u8], error: &lopdf::Error) -> ParseError {
    match error {
        lopdf::Error::Decompress(DecompressError::MemoryLimitExceeded { .. }) => {
            ParseError::DecompressionLimit { part: "a PDF stream", limit: STREAM_LIMIT }
        }
        lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword | lopdf::Error::AlreadyEncrypted => {
            ParseError::Encrypted { format: FORMAT }
        }
        // An encryption dictionary lopdf cannot even parse fails the load with a generic error; the file is still
        // encrypted, and saying so is more useful than "couldn't parse input".
        _ if memmem::find(bytes, b"/Encrypt").is_some() => ParseError::Encrypted { format: FORMAT },
        other => ParseError::malformed(FORMAT, describe(other)),
    }
}

/// An error with its causes, since lopdf's top-level messages ("couldn't parse input") say little alone.
fn describe(error: &lopdf::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `/Title` of the document information dictionary, decoded from PDFDocEncoding or UTF-16.
fn title(document: &Document) -> Option<String> {
    let resolve = |object: &Object| -> Option<Object> {
        match object {
            Object::Reference(id) => document.get_object(*id).ok().cloned(),
            other => Some(other.clone()),
        }
    };
    let info = resolve(document.trailer.get(b"Info").ok()?)?;
    let title = resolve(info.as_dict().ok()?.get(b"Title").ok()?)?;
    lopdf::decode_text_string(&title).ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use lopdf::{EncryptionState, EncryptionVersion, Permissions};

    use super::super::fixtures::{image_only_pdf, pdf_from_objects, stream, text_pdf};
    use super::super::{MediaType, detect, parse as parse_any};
    use super::*;

    fn limits() -> ParseLimits {
        ParseLimits::default()
    }

    #[test]
    fn parse_hand_written_pdf_returns_text_title_and_pages() {
        let bytes = text_pdf(&["Hello PDF", "Second page"]);
        assert_eq!(detect(&bytes, None, None), Ok(MediaType::Pdf));
        let parsed = parse_any(MediaType::Pdf, &bytes, &limits()).unwrap();
        assert_eq!(parsed.text, "Hello PDF\n\nSecond page");
        assert_eq!(parsed.title.as_deref(), Some("Fixture Title"));
        assert_eq!(parsed.page_count, Some(2));
        assert_eq!(parsed.parser, "lopdf");
    }

    #[test]
    fn parse_pdf_with_compressed_content_stream_returns_text() {
        // Re-saved by lopdf with every stream deflated, as real producers write them.
        // (lopdf only keeps a compressed stream when it is smaller, hence the repetition.)
        let long = "Deflated text ".repeat(40);
        let mut document = Document::load_mem(&text_pdf(&[long.as_str()])).unwrap();
        document.compress();
        let mut bytes = Vec::new();
        document.save_to(&mut bytes).unwrap();
        assert!(memmem::find(&bytes, b"FlateDecode").is_some());
        assert!(memmem::find(&bytes, b"Deflated text").is_none(), "the content stream should be compressed");
        assert_eq!(parse_any(MediaType::Pdf, &bytes, &limits()).unwrap().text, long.trim());
    }

    #[test]
    fn parse_pdf_that_is_really_a_zip_returns_mismatch() {
        let zip = super::super::fixtures::zip_of(&[("a.txt", b"hello")]);
        let err = parse_any(MediaType::Pdf, &zip, &limits()).unwrap_err();
        assert_eq!(err.to_string(), "declared application/pdf but the bytes are a ZIP archive");
    }

    #[test]
    fn parse_pdf_with_encrypt_in_trailer_returns_encrypted() {
        // A standard security handler dictionary whose user password is not empty (the /U entry does not match).
        let mut objects: Vec<String> = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".into(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".into(),
            stream("", "BT /F1 12 Tf (secret) Tj ET"),
        ];
        let padding = "<".to_owned() + &"41".repeat(32) + ">";
        objects.push(format!("<< /Filter /Standard /V 1 /R 2 /O {padding} /U {padding} /P -44 >>"));
        let id = "<".to_owned() + &"00".repeat(16) + ">";
        let bytes = pdf_from_objects(&objects, &format!("/Encrypt 5 0 R /ID [{id} {id}]"));
        let err = parse_any(MediaType::Pdf, &bytes, &limits()).unwrap_err();
        assert_eq!(err.to_string(), "PDF is encrypted");
        assert_eq!(err.kind(), "encrypted");
    }

    fn encrypted(user_password: &str) -> Vec<u8> {
        let mut document = Document::load_mem(&text_pdf(&["Locked text"])).unwrap();
        let id = Object::String(vec![7; 16], lopdf::StringFormat::Hexadecimal);
        document.trailer.set("ID", Object::Array(vec![id.clone(), id]));
        let version = EncryptionVersion::V2 {
            document: &document,
            owner_password: "owner",
            user_password,
            key_length: 128,
            permissions: Permissions::PRINTABLE,
        };
        let state = EncryptionState::try_from(version).unwrap();
        document.encrypt(&state).unwrap();
        let mut bytes = Vec::new();
        document.save_to(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn parse_pdf_needing_user_password_returns_encrypted() {
        let err = parse_any(MediaType::Pdf, &encrypted("user-secret"), &limits()).unwrap_err();
        assert_eq!(err, ParseError::Encrypted { format: "PDF" });
    }

    #[test]
    fn parse_pdf_with_owner_password_only_returns_text() {
        let parsed = parse_any(MediaType::Pdf, &encrypted(""), &limits()).unwrap();
        assert_eq!(parsed.text, "Locked text");
    }

    #[test]
    fn parse_image_only_pdf_returns_no_text_layer() {
        let err = parse_any(MediaType::Pdf, &image_only_pdf(), &limits()).unwrap_err();
        assert_eq!(err.to_string(), "PDF has no text layer (image-only?)");
        assert_eq!(err.kind(), "no_text_layer");
    }

    #[test]
    fn parse_truncated_pdf_returns_error_or_recovered_text_without_panic() {
        let bytes = text_pdf(&["Hello PDF"]);
        let content_at = memmem::find(&bytes, b"BT /F1").unwrap();
        // Cut before the page content: nothing to recover.
        for cut in [10, bytes.len() / 4, content_at + 3] {
            let err = parse_any(MediaType::Pdf, bytes.get(..cut).unwrap(), &limits()).unwrap_err();
            assert_eq!(err.kind(), "malformed", "cut at {cut}: {err:?}");
        }
        // Cut after it (the cross-reference table and trailer lost): lopdf rebuilds the table by scanning for
        // objects, and the text is read, which is what a viewer would show.
        let recovered = parse_any(MediaType::Pdf, bytes.get(..bytes.len() - 40).unwrap(), &limits()).unwrap();
        assert_eq!(recovered.text, "Hello PDF");
    }

    #[test]
    fn parse_garbage_after_header_returns_malformed() {
        let mut bytes = b"%PDF-1.7\n".to_vec();
        bytes.extend((0..4096_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let err = parse_any(MediaType::Pdf, &bytes, &limits()).unwrap_err();
        assert_eq!(err.kind(), "malformed", "{err:?}");
        assert!(err.to_string().starts_with("malformed PDF: "));
    }

    #[test]
    fn parse_pdf_without_header_returns_malformed() {
        let err = parse(b"hello world", &limits()).unwrap_err();
        assert_eq!(err.to_string(), "malformed PDF: no %PDF- header");
    }

    #[test]
    fn parse_pdf_over_page_limit_returns_too_many_pages() {
        let small = ParseLimits { max_pages: 1, ..limits() };
        let err = parse_any(MediaType::Pdf, &text_pdf(&["one", "two"]), &small).unwrap_err();
        assert_eq!(err, ParseError::TooManyPages { pages: 2, limit: 1 });
    }

    #[test]
    fn parse_pdf_over_text_limit_returns_text_too_large() {
        let small = ParseLimits { max_text_bytes: 8, ..limits() };
        let err = parse_any(MediaType::Pdf, &text_pdf(&["more than eight bytes"]), &small).unwrap_err();
        assert_eq!(err, ParseError::TextTooLarge { limit: 8 });
    }

    #[test]
    fn parse_pdf_with_cyclic_page_tree_and_deep_arrays_terminates() {
        let deep = format!("BT /F1 12 Tf {}(x){} TJ ET", "[".repeat(50_000), "]".repeat(50_000));
        let objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>".to_owned(),
            stream("", &deep),
        ];
        let started = Instant::now();
        let result = parse_any(MediaType::Pdf, &pdf_from_objects(&objects, ""), &limits());
        assert!(result.is_err(), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
