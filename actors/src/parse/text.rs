//! Plain text and Markdown, plus the text helpers every parser shares (UTF-8 checking, newline normalisation, a
//! size-capped output buffer).
//!
//! No crate is needed: the standard library's UTF-8 validation gives the offset of the first bad byte. Markdown is
//! kept as written, since the chunker reads Markdown structure; only its title is extracted (the first level-one
//! heading outside code fences).

use super::{ParseError, ParseLimits};

/// The byte-order mark some editors put at the start of UTF-8 files.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Decodes UTF-8 strictly, dropping a leading BOM. Offsets in errors count from the start of `bytes`, BOM included,
/// so they match what a hex editor shows for the uploaded file.
pub(crate) fn decode_utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    let (skipped, body) = match bytes.strip_prefix(UTF8_BOM) {
        Some(body) => (UTF8_BOM.len(), body),
        None => (0, bytes),
    };
    std::str::from_utf8(body).map_err(|error| ParseError::InvalidUtf8 { offset: skipped + error.valid_up_to() })
}

/// CRLF and lone CR become LF, so every parser hands the chunker one line ending.
pub(crate) fn normalize_newlines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

/// Output text that refuses to grow past the limit, so a bomb fails as soon as it has produced too much rather than
/// after exhausting memory.
#[derive(Debug)]
pub(crate) struct TextSink {
    text: String,
    limit: usize,
}

impl TextSink {
    pub(crate) fn new(limit: usize) -> Self {
        Self { text: String::new(), limit }
    }

    pub(crate) fn push_str(&mut self, s: &str) -> Result<(), ParseError> {
        if self.text.len().saturating_add(s.len()) > self.limit {
            return Err(ParseError::TextTooLarge { limit: self.limit });
        }
        self.text.push_str(s);
        Ok(())
    }

    pub(crate) fn push(&mut self, c: char) -> Result<(), ParseError> {
        let mut buf = [0; 4];
        self.push_str(c.encode_utf8(&mut buf))
    }

    pub(crate) fn pop(&mut self) -> Option<char> {
        self.text.pop()
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn into_string(self) -> String {
        self.text
    }
}

/// Plain text: strict UTF-8, BOM dropped, newlines normalised. No title (the caller has the file name).
pub(crate) fn parse_plain(bytes: &[u8], limits: &ParseLimits) -> Result<(String, Option<String>), ParseError> {
    Ok((decode_text_file(bytes, limits)?, None))
}

/// Markdown: as plain text, kept verbatim; the title is the first level-one heading.
pub(crate) fn parse_markdown(bytes: &[u8], limits: &ParseLimits) -> Result<(String, Option<String>), ParseError> {
    let text = decode_text_file(bytes, limits)?;
    let title = markdown_title(&text);
    Ok((text, title))
}

fn decode_text_file(bytes: &[u8], limits: &ParseLimits) -> Result<String, ParseError> {
    // Checked before decoding: the text is the file, so there is no point validating 2 GB to refuse it after.
    if bytes.len() > limits.max_text_bytes.saturating_add(UTF8_BOM.len()) {
        return Err(ParseError::TextTooLarge { limit: limits.max_text_bytes });
    }
    let text = normalize_newlines(decode_utf8(bytes)?);
    if text.len() > limits.max_text_bytes {
        return Err(ParseError::TextTooLarge { limit: limits.max_text_bytes });
    }
    Ok(text)
}

/// The first `# Heading` (ATX) or `Heading\n===` (setext) level-one heading, skipping fenced code blocks, where
/// `# ` is usually a shell comment.
pub(crate) fn markdown_title(text: &str) -> Option<String> {
    let mut fence: Option<&str> = None;
    let mut previous: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(open) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            }
            previous = None;
            continue;
        }
        if indent < 4 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            fence = Some(if trimmed.starts_with("```") { "```" } else { "~~~" });
            previous = None;
            continue;
        }
        if indent < 4 {
            if let Some(rest) = trimmed.strip_prefix('#')
                && (rest.is_empty() || rest.starts_with([' ', '\t']))
            {
                // "# Title ##" may close with hashes after a space (CommonMark); "# C#" keeps its hash.
                let rest = rest.trim();
                let title = match rest.trim_end_matches('#') {
                    "" => "",
                    body if body.ends_with([' ', '\t']) => body.trim_end(),
                    _ => rest,
                };
                if !title.is_empty() {
                    return Some(title.to_owned());
                }
            }
            let underline = trimmed.trim_end();
            if !underline.is_empty()
                && underline.bytes().all(|b| b == b'=')
                && let Some(heading) = previous
            {
                return Some(heading.trim().to_owned());
            }
        }
        previous = (!trimmed.trim().is_empty() && indent < 4).then_some(line);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ParseLimits {
        ParseLimits::default()
    }

    #[test]
    fn parse_plain_with_bom_and_crlf_returns_clean_lf_text() {
        let (text, title) = parse_plain(b"\xef\xbb\xbfline one\r\nline two\rline three\n", &limits()).unwrap();
        assert_eq!(text, "line one\nline two\nline three\n");
        assert_eq!(title, None);
    }

    #[test]
    fn parse_plain_invalid_utf8_reports_byte_offset() {
        let mut bytes = b"hello ".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(parse_plain(&bytes, &limits()), Err(ParseError::InvalidUtf8 { offset: 6 }));
        // The offset counts the BOM, so it points at the byte in the file as uploaded.
        let mut with_bom = UTF8_BOM.to_vec();
        with_bom.extend_from_slice(&bytes);
        let err = parse_plain(&with_bom, &limits()).unwrap_err();
        assert_eq!(err.to_string(), "invalid UTF-8 at byte 9");
    }

    #[test]
    fn parse_plain_truncated_multibyte_char_is_invalid() {
        let bytes = "é".as_bytes();
        assert_eq!(parse_plain(&bytes[..1], &limits()), Err(ParseError::InvalidUtf8 { offset: 0 }));
    }

    #[test]
    fn parse_plain_over_limit_returns_text_too_large() {
        let small = ParseLimits { max_text_bytes: 4, ..limits() };
        assert_eq!(parse_plain(b"hello", &small), Err(ParseError::TextTooLarge { limit: 4 }));
        assert!(parse_plain(b"hell", &small).is_ok());
    }

    #[test]
    fn parse_markdown_keeps_text_verbatim_and_takes_first_h1_as_title() {
        let source = "Intro line\n\n```sh\n# not a title\n```\n\n## Sub\n\n#  The Title ##\n\n# Second\n";
        let (text, title) = parse_markdown(source.as_bytes(), &limits()).unwrap();
        assert_eq!(text, source);
        assert_eq!(title.as_deref(), Some("The Title"));
    }

    #[test]
    fn markdown_title_setext_and_missing_cases() {
        assert_eq!(markdown_title("Setext Title\n============\n\nbody").as_deref(), Some("Setext Title"));
        assert_eq!(markdown_title("#hashtag is not a heading\n    # indented code\n"), None);
        assert_eq!(markdown_title("~~~\n# code\n~~~\n#\n"), None);
        assert_eq!(markdown_title("# C#\n").as_deref(), Some("C#"));
        assert_eq!(markdown_title("# ###\n"), None);
    }

    #[test]
    fn text_sink_refuses_to_grow_past_limit() {
        let mut sink = TextSink::new(3);
        sink.push_str("ab").unwrap();
        sink.push('c').unwrap();
        assert_eq!(sink.push('d'), Err(ParseError::TextTooLarge { limit: 3 }));
        assert_eq!(sink.as_str(), "abc");
    }
}
