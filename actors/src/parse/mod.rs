//! Document parsers: bytes of an upload in, plain text (and a title) out, for the chunker.
//!
//! Formats: plain text, Markdown, HTML (visible text only), PDF (text layer) and DOCX. [`detect`] picks the format
//! from the declared media type, the bytes and the file name; [`parse`] extracts the text. Every failure is a
//! [`ParseError`] with a message the uploader can read, and every one is permanent: the pipeline records it and does
//! not retry.
//!
//! Threading: parsing is blocking, CPU-bound work with no I/O; the pipeline runs it on a blocking thread
//! (`tokio::task::spawn_blocking`), never on the async runtime or an actor's mailbox loop.
//!
//! Hostile input is expected. Every parser bounds its output ([`ParseLimits::max_text_bytes`]) and any decompression
//! it does; none recurses per level of nesting, so a 100,000-deep HTML bomb cannot overflow the stack; and a panic
//! inside a third-party parser is caught and reported as [`ParseError::ParserCrashed`] (see [`parse`]).

mod docx;
mod error;
mod html;
mod media_type;
mod pdf;
mod text;

#[cfg(test)]
mod fixtures;

pub use error::ParseError;
pub use media_type::{MediaType, detect};

/// Bounds on what one document may cost to parse.
// Not `Copy`, though it could be: the runtime clones it explicitly, and clippy rejects `.clone()` on a `Copy` type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest extracted text, in bytes of UTF-8; more is [`ParseError::TextTooLarge`].
    pub max_text_bytes: usize,
    /// Most PDF pages; more is [`ParseError::TooManyPages`].
    pub max_pages: u32,
    /// Deepest element nesting in HTML and DOCX markup; deeper is [`ParseError::TooDeep`].
    pub max_nesting: usize,
}

impl Default for ParseLimits {
    /// 20 MiB of text, 2,000 pages, 512 levels of nesting.
    fn default() -> Self {
        Self { max_text_bytes: 20 * 1024 * 1024, max_pages: 2_000, max_nesting: 512 }
    }
}

/// The text of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The extracted text: UTF-8, LF line endings, no NULs or other control characters but tab and newline, never
    /// empty or whitespace-only. Markdown is kept as written; HTML and DOCX headings and list items come out in
    /// Markdown form (`# `, `- `) so the chunker sees their structure.
    pub text: String,
    /// The document's own title, where it has one (HTML `<title>`, PDF or DOCX metadata, first Markdown `# `).
    pub title: Option<String>,
    /// Number of pages, for formats that have pages (PDF).
    pub page_count: Option<u32>,
    /// Which parser produced the text (e.g. `"lopdf"`), recorded with the result so reprocessing can tell outputs
    /// of different parsers apart.
    pub parser: &'static str,
}

/// Extracts the text of `bytes`, read as `media_type`, within `limits`.
///
/// Blocking CPU work: run it on a blocking thread. Fails with a permanent [`ParseError`]: empty input, bad bytes
/// for the format, encryption, no text, or a limit exceeded.
///
/// # Panics
///
/// Never. The parsers here avoid panicking paths, and the third-party parsers they call (lopdf above all: a large
/// surface over adversarial input, with a history of panics on malformed files) run under
/// [`std::panic::catch_unwind`], so a panic there becomes [`ParseError::ParserCrashed`] for this one document
/// instead of a dead worker thread and an unexplained retry. (The panic message still reaches the panic hook, i.e.
/// stderr, which is useful for reporting the bug upstream. This relies on `panic = "unwind"`, the default.)
pub fn parse(media_type: MediaType, bytes: &[u8], limits: &ParseLimits) -> Result<Parsed, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let extracted = guarded(media_type, || match media_type {
        MediaType::PlainText => text::parse_plain(bytes, limits).map(|(text, title)| (text, title, None, "plain-text")),
        MediaType::Markdown => text::parse_markdown(bytes, limits).map(|(text, title)| (text, title, None, "markdown")),
        MediaType::Html => html::parse(bytes, limits).map(|(text, title)| (text, title, None, "html5gum")),
        MediaType::Pdf => pdf::parse(bytes, limits).map(|(text, title, pages)| (text, title, Some(pages), "lopdf")),
        MediaType::Docx => docx::parse(bytes, limits).map(|(text, title)| (text, title, None, "docx-quick-xml")),
    });
    let (text, title, page_count, parser) = extracted?;
    let text = clean_control_chars(text);
    if text.trim().is_empty() {
        return Err(match media_type {
            MediaType::Pdf => ParseError::NoTextLayer,
            other => ParseError::NoText { format: other.label() },
        });
    }
    let title = title.map(|title| clean_control_chars(title).trim().to_owned()).filter(|title| !title.is_empty());
    Ok(Parsed { text, title, page_count, parser })
}

/// Runs `work`, turning a panic into [`ParseError::ParserCrashed`]. `UnwindSafe` holds for our closures because
/// they borrow only shared, immutable data: a panic cannot leave anything we read afterwards half-updated.
fn guarded<T>(
    media_type: MediaType,
    work: impl FnOnce() -> Result<T, ParseError> + std::panic::UnwindSafe,
) -> Result<T, ParseError> {
    std::panic::catch_unwind(work).unwrap_or(Err(ParseError::ParserCrashed { format: media_type.label() }))
}

/// Drops NULs and other C0 controls (keeping tab and LF; form feed becomes LF). PDF text in particular carries them
/// from odd font encodings, and Postgres text columns reject NUL outright.
fn clean_control_chars(text: String) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return text;
    }
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\t' => Some(c),
            '\u{c}' | '\r' => Some('\n'),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_empty_bytes_returns_empty_for_every_type() {
        for media_type in [MediaType::PlainText, MediaType::Markdown, MediaType::Html, MediaType::Pdf, MediaType::Docx]
        {
            let err = parse(media_type, b"", &ParseLimits::default()).unwrap_err();
            assert_eq!(err, ParseError::Empty);
            assert_eq!(err.kind(), "empty");
        }
    }

    #[test]
    fn parse_whitespace_only_text_returns_no_text() {
        let err = parse(MediaType::PlainText, b" \r\n\t\n", &ParseLimits::default()).unwrap_err();
        assert_eq!(err, ParseError::NoText { format: "text" });
        assert_eq!(err.to_string(), "the text document has no text");
    }

    #[test]
    fn parse_text_with_control_chars_drops_them() {
        let parsed = parse(MediaType::PlainText, b"a\0b\x07c\x0cd\te", &ParseLimits::default()).unwrap();
        assert_eq!(parsed.text, "abc\nd\te");
        assert_eq!(parsed.parser, "plain-text");
        assert_eq!(parsed.page_count, None);
    }

    #[test]
    fn parse_markdown_end_to_end_keeps_markdown_and_title() {
        let parsed = parse(MediaType::Markdown, b"# Hello\r\n\r\n*world*\r\n", &ParseLimits::default()).unwrap();
        assert_eq!(parsed.text, "# Hello\n\n*world*\n");
        assert_eq!(parsed.title.as_deref(), Some("Hello"));
    }

    #[test]
    fn detect_then_parse_unknown_binary_fails_without_parsing() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let err = detect(png, Some("application/octet-stream"), Some("scan.png")).unwrap_err();
        assert_eq!(err.to_string(), "unsupported media type image/png");
    }

    #[test]
    fn guarded_panicking_parser_returns_parser_crashed() {
        let result: Result<(), ParseError> =
            guarded(MediaType::Pdf, || panic!("simulated bug in a third-party parser"));
        let err = result.unwrap_err();
        assert_eq!(err, ParseError::ParserCrashed { format: "PDF" });
        assert_eq!(err.kind(), "parser_crashed");
    }

    /// Deterministic mutations (byte flips, truncations, splices) of valid files of every format: whatever the
    /// bytes, `parse` returns. A panic escaping `parse` fails the test; so does a third-party panic (`ParserCrashed`),
    /// which is contained but worth reporting upstream, so we want to know about it.
    #[test]
    fn parse_mutated_files_never_panic() {
        let seeds: Vec<(MediaType, Vec<u8>)> = vec![
            (MediaType::Pdf, fixtures::text_pdf(&["Hello PDF", "page two"])),
            (MediaType::Pdf, fixtures::image_only_pdf()),
            (MediaType::Docx, fixtures::docx("<w:p><w:r><w:t>Hello &amp; DOCX</w:t><w:tab/></w:r></w:p>", Some("T"))),
            (MediaType::Html, b"<html><title>t</title><script>x</script><p>a&amp;b<li>c<table><td>d</table>".to_vec()),
            (
                MediaType::Markdown,
                "# Title

```
code
```
text é
"
                .as_bytes()
                .to_vec(),
            ),
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % u64::try_from(bound.max(1)).unwrap()).unwrap()
        };
        let limits = ParseLimits::default();
        for (media_type, seed) in &seeds {
            for _ in 0..150 {
                let mut bytes = seed.clone();
                match next(3) {
                    0 => {
                        for _ in 0..=next(8) {
                            let at = next(bytes.len());
                            bytes[at] = u8::try_from(next(256)).unwrap();
                        }
                    }
                    1 => bytes.truncate(next(bytes.len())),
                    _ => {
                        let from = next(bytes.len());
                        let to = next(bytes.len());
                        let chunk = bytes[from.min(to)..from.max(to)].to_vec();
                        let at = next(bytes.len());
                        bytes.splice(at..at, chunk);
                    }
                }
                let result = parse(*media_type, &bytes, &limits);
                assert_ne!(result.as_ref().err().map(ParseError::kind), Some("parser_crashed"), "{bytes:?}");
            }
        }
    }

    #[test]
    fn limits_default_matches_documented_values() {
        let limits = ParseLimits::default();
        assert_eq!((limits.max_text_bytes, limits.max_pages, limits.max_nesting), (20 * 1024 * 1024, 2_000, 512));
    }
}
