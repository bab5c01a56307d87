//! DOCX: the text of `word/document.xml`, one paragraph per block, and the title from `docProps/core.xml`.
//!
//! Why `zip` (default features off, `deflate-flate2` only) + `quick-xml`: a DOCX is a ZIP of XML parts and Word
//! writes them deflated, so inflate is the one codec we need; the other defaults (bzip2, zstd, lzma, AES, zopfli)
//! are code to build and attack surface for nothing. flate2 uses the pure-Rust miniz_oxide backend, shared with
//! lopdf. quick-xml is a pull parser with no recursion and no DTD or external-entity processing, so neither a deep
//! document nor an entity bomb can hurt; docx-rs and friends build a full object model we would only walk. The
//! inflated XML is capped (`XML_LIMIT`) before it is parsed, so a zip bomb costs at most that much memory.
//!
//! Mapping: `w:p` paragraphs are separated by blank lines (headings styled `Heading1`..`Heading6` or `Title` get
//! Markdown `#` markers), `w:t` is text, `w:tab` a tab, `w:br`/`w:cr` a line break; table cells are tab-separated
//! and rows are lines. Deleted text (`w:delText`), field codes (`w:instrText`) and the `mc:Fallback` copy of
//! drawings and text boxes are left out, as Word itself shows them.

use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use zip::ZipArchive;
use zip::result::ZipError;

use super::text::{TextSink, decode_utf8};
use super::{ParseError, ParseLimits};

const FORMAT: &str = "DOCX";
const DOCUMENT_PART: &str = "word/document.xml";
const CORE_PART: &str = "docProps/core.xml";
/// Most inflated bytes of `word/document.xml` we accept: a 500-page manuscript is a few MiB of XML.
const XML_LIMIT: usize = 64 * 1024 * 1024;
/// Most inflated bytes of the core properties, which hold a handful of short fields.
const CORE_LIMIT: usize = 1024 * 1024;

/// Text and title of a DOCX.
pub(crate) fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<(String, Option<String>), ParseError> {
    if bytes.starts_with(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        // Word saves password-protected .docx files as an OLE container holding the encrypted package.
        return Err(ParseError::Mismatch {
            declared: super::MediaType::Docx.as_str(),
            actual: "an OLE compound file (a legacy .doc or an encrypted Office document)",
        });
    }
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|error| zip_error(error, "the ZIP archive"))?;
    let xml =
        read_part(&mut archive, DOCUMENT_PART, XML_LIMIT)?.ok_or(ParseError::MissingPart { part: DOCUMENT_PART })?;
    let xml = decode_utf8(&xml).map_err(|error| ParseError::malformed(FORMAT, format!("{DOCUMENT_PART}: {error}")))?;
    let (text, heading_title) = document_text(xml, limits)?;
    // The title is a nicety: a broken core-properties part must not fail a readable document.
    let core_title = read_part(&mut archive, CORE_PART, CORE_LIMIT).ok().flatten().and_then(|core| core_title(&core));
    Ok((text, core_title.or(heading_title)))
}

/// The inflated bytes of one part, `None` if the archive has no such part.
fn read_part(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &'static str,
    limit: usize,
) -> Result<Option<Vec<u8>>, ParseError> {
    let file = match archive.by_name(name) {
        Ok(file) => file,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(error) => return Err(zip_error(error, name)),
    };
    let too_large = ParseError::DecompressionLimit { part: name, limit };
    // The declared size is a hint only (a bomb can lie); `take` enforces the cap on what is actually inflated.
    if usize::try_from(file.size()).map_or(true, |size| size > limit) {
        return Err(too_large);
    }
    let mut content = Vec::new();
    file.take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut content)
        .map_err(|error| ParseError::malformed(FORMAT, format!("{name}: {error}")))?;
    if content.len() > limit {
        return Err(too_large);
    }
    Ok(Some(content))
}

fn zip_error(error: ZipError, what: &str) -> ParseError {
    match error {
        ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED) | ZipError::InvalidPassword => {
            ParseError::Encrypted { format: FORMAT }
        }
        other => ParseError::malformed(FORMAT, format!("{what}: {other}")),
    }
}

/// Per-paragraph state while walking `w:body`.
#[derive(Default)]
struct Paragraph {
    text: String,
    heading: Option<usize>,
    is_title_style: bool,
}

/// The text of `word/document.xml`, and the first `Title`-styled paragraph as a fallback title.
fn document_text(xml: &str, limits: &ParseLimits) -> Result<(String, Option<String>), ParseError> {
    let mut reader = Reader::from_str(xml);
    let mut out = TextSink::new(limits.max_text_bytes);
    // A stack, not one paragraph: text boxes put whole paragraphs inside a paragraph's run.
    let mut paragraphs: Vec<Paragraph> = Vec::new();
    let mut title = None;
    let mut depth = 0_usize;
    // Depth at which we entered a `w:t` / `mc:Fallback` / `w:tabs`, while inside one.
    let mut in_text: Option<usize> = None;
    let mut in_fallback: Option<usize> = None;
    let mut in_tabs: Option<usize> = None;
    let mut open_cells = 0_usize;
    loop {
        let event = reader.read_event().map_err(|error| {
            ParseError::malformed(FORMAT, format!("{DOCUMENT_PART} at byte {}: {error}", reader.error_position()))
        })?;
        let visible = in_fallback.is_none();
        match event {
            Event::Start(element) => {
                depth += 1;
                if depth > limits.max_nesting {
                    return Err(ParseError::TooDeep { format: FORMAT, limit: limits.max_nesting });
                }
                match element.local_name().as_ref() {
                    "t" if in_text.is_none() => in_text = Some(depth),
                    "Fallback" if visible => in_fallback = Some(depth),
                    "tabs" if in_tabs.is_none() => in_tabs = Some(depth),
                    "p" if visible => paragraphs.push(Paragraph::default()),
                    "tbl" if visible => ensure_newlines(&mut out, 2)?,
                    "tc" => open_cells += 1,
                    _ => {}
                }
            }
            Event::Empty(element) if visible => {
                let text = paragraphs.last_mut().map(|paragraph| &mut paragraph.text);
                match (element.local_name().as_ref(), text) {
                    ("tab", Some(text)) if in_tabs.is_none() => text.push('\t'),
                    ("br" | "cr", Some(text)) => text.push('\n'),
                    ("noBreakHyphen", Some(text)) => text.push('-'),
                    ("pStyle", Some(_)) => {
                        if let Some(paragraph) = paragraphs.last_mut() {
                            style(&element, paragraph);
                        }
                    }
                    _ => {}
                }
            }
            Event::End(element) => {
                match element.local_name().as_ref() {
                    "p" if visible => {
                        if let Some(paragraph) = paragraphs.pop() {
                            end_paragraph(paragraph, open_cells > 0, &mut out, &mut title)?;
                        }
                    }
                    "tc" => {
                        open_cells = open_cells.saturating_sub(1);
                        if visible {
                            out.push('\t')?;
                        }
                    }
                    "tr" if visible => {
                        // The row break replaces the last cell's tab.
                        if out.as_str().ends_with('\t') {
                            out.pop();
                        }
                        out.push('\n')?;
                    }
                    _ => {}
                }
                for marker in [&mut in_text, &mut in_fallback, &mut in_tabs] {
                    if *marker == Some(depth) {
                        *marker = None;
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(text) if in_text.is_some() && visible => {
                if let Some(paragraph) = paragraphs.last_mut() {
                    paragraph.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(text) if in_text.is_some() && visible => {
                if let Some(paragraph) = paragraphs.last_mut() {
                    paragraph.text.push_str(&text.xml10_content());
                }
            }
            Event::GeneralRef(reference) if in_text.is_some() && visible => {
                if let Some(paragraph) = paragraphs.last_mut() {
                    paragraph.text.push(resolve_reference(&reference));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        // Checked here as well as on output, so one enormous paragraph cannot grow past the limit either.
        if paragraphs.last().is_some_and(|paragraph| paragraph.text.len() > limits.max_text_bytes) {
            return Err(ParseError::TextTooLarge { limit: limits.max_text_bytes });
        }
    }
    Ok((out.into_string().trim_end().to_owned(), title))
}

fn style(element: &BytesStart<'_>, paragraph: &mut Paragraph) {
    let value = element
        .attributes()
        .flatten()
        .find(|attribute| attribute.key.local_name().as_ref() == "val")
        .map(|attribute| attribute.value.to_ascii_lowercase());
    let Some(value) = value else { return };
    if value == "title" {
        paragraph.heading = Some(1);
        paragraph.is_title_style = true;
    } else if let Some(level) = value.strip_prefix("heading").and_then(|level| level.parse::<usize>().ok()) {
        paragraph.heading = Some(level.clamp(1, 6));
    }
}

fn end_paragraph(
    paragraph: Paragraph,
    in_table: bool,
    out: &mut TextSink,
    title: &mut Option<String>,
) -> Result<(), ParseError> {
    let text = paragraph.text.trim();
    if text.is_empty() {
        return Ok(());
    }
    if in_table {
        // Paragraphs within a cell join with a space; the cell's end adds the tab.
        if !out.as_str().is_empty() && !out.as_str().ends_with(['\n', '\t']) {
            out.push(' ')?;
        }
        return out.push_str(text);
    }
    if paragraph.is_title_style && title.is_none() {
        *title = Some(text.to_owned());
    }
    ensure_newlines(out, 2)?;
    if let Some(level) = paragraph.heading {
        out.push_str(&"#".repeat(level))?;
        out.push(' ')?;
    }
    out.push_str(text)
}

/// Ends the output with at least `count` newlines (unless it is empty), so blocks are separated by blank lines.
fn ensure_newlines(out: &mut TextSink, count: usize) -> Result<(), ParseError> {
    if out.as_str().is_empty() {
        return Ok(());
    }
    let have = out.as_str().len() - out.as_str().trim_end_matches('\n').len();
    for _ in have.min(count)..count {
        out.push('\n')?;
    }
    Ok(())
}

/// `&amp;`-style and `&#...;` references; anything else (DOCX declares no custom entities) is unreadable.
fn resolve_reference(reference: &str) -> char {
    let resolved = match reference.strip_prefix('#') {
        Some(number) => match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => number.parse::<u32>().ok(),
        }
        .and_then(char::from_u32),
        None => predefined_entity(reference),
    };
    resolved.filter(|c| *c != '\0').unwrap_or('\u{fffd}')
}

fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

/// `dc:title` from the core-properties part.
fn core_title(xml: &[u8]) -> Option<String> {
    let xml = decode_utf8(xml).ok()?;
    let mut reader = Reader::from_str(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(element) if element.local_name().as_ref() == "title" => in_title = true,
            Event::End(element) if element.local_name().as_ref() == "title" => break,
            Event::Text(text) if in_title => title.push_str(&text.xml10_content()),
            Event::GeneralRef(reference) if in_title => title.push(resolve_reference(&reference)),
            Event::Eof => break,
            _ => {}
        }
    }
    let title = title.trim();
    (!title.is_empty()).then(|| title.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{docx, zip_of};
    use super::super::{MediaType, detect, parse as parse_any};
    use super::*;

    fn limits() -> ParseLimits {
        ParseLimits::default()
    }

    const RUN: &str = r#"<w:r><w:t xml:space="preserve">"#;

    #[test]
    fn parse_docx_built_with_zip_returns_paragraphs_headings_and_title() {
        let body = format!(
            r#"<w:p><w:pPr><w:pStyle w:val="Heading1"/><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>{RUN}Intro</w:t></w:r></w:p>
<w:p>{RUN}Hello </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>DOCX</w:t></w:r><w:r><w:tab/><w:t>tabbed &amp; &#x41;</w:t><w:br/><w:t>next line</w:t></w:r></w:p>
<w:p><w:r><w:delText>deleted</w:delText><w:instrText>PAGE</w:instrText></w:r></w:p>
<w:p>{RUN}Last</w:t></w:r></w:p>"#
        );
        let bytes = docx(&body, Some("Core &amp; Title"));
        assert_eq!(detect(&bytes, None, Some("report.docx")), Ok(MediaType::Docx));
        let parsed = parse_any(MediaType::Docx, &bytes, &limits()).unwrap();
        assert_eq!(parsed.text, "# Intro\n\nHello DOCX\ttabbed & A\nnext line\n\nLast");
        assert_eq!(parsed.title.as_deref(), Some("Core & Title"));
        assert_eq!(parsed.parser, "docx-quick-xml");
    }

    #[test]
    fn parse_docx_table_returns_tab_separated_rows() {
        let cell = |text: &str| format!("<w:tc><w:p>{RUN}{text}</w:t></w:r></w:p></w:tc>");
        let body = format!(
            "<w:p>{RUN}Before</w:t></w:r></w:p><w:tbl><w:tr>{}{}</w:tr><w:tr>{}{}</w:tr></w:tbl><w:p>{RUN}After</w:t></w:r></w:p>",
            cell("a"),
            cell("b"),
            cell("c"),
            cell("d")
        );
        let parsed = parse_any(MediaType::Docx, &docx(&body, None), &limits()).unwrap();
        assert_eq!(parsed.text, "Before\n\na\tb\nc\td\n\nAfter");
    }

    #[test]
    fn parse_docx_title_style_and_fallback_content() {
        let body = format!(
            r#"<w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr>{RUN}Styled Title</w:t></w:r></w:p>
<w:p><w:r><mc:AlternateContent><mc:Choice Requires="wps"><w:p>{RUN}box text</w:t></w:r></w:p></mc:Choice><mc:Fallback><w:p>{RUN}box text</w:t></w:r></w:p></mc:Fallback></mc:AlternateContent></w:r>{RUN}outer</w:t></w:r></w:p>"#
        );
        let parsed = parse_any(MediaType::Docx, &docx(&body, None), &limits()).unwrap();
        assert_eq!(parsed.title.as_deref(), Some("Styled Title"));
        assert_eq!(parsed.text.matches("box text").count(), 1, "{:?}", parsed.text);
        assert!(parsed.text.ends_with("outer"), "{:?}", parsed.text);
    }

    #[test]
    fn parse_zip_without_document_xml_returns_missing_part() {
        let bytes = zip_of(&[("word/other.xml", b"<x/>"), ("[Content_Types].xml", b"<Types/>")]);
        let err = parse_any(MediaType::Docx, &bytes, &limits()).unwrap_err();
        assert_eq!(err.to_string(), "not a DOCX: word/document.xml is missing");
        assert_eq!(err.kind(), "missing_part");
    }

    #[test]
    fn parse_docx_with_bad_xml_returns_malformed() {
        let bytes = zip_of(&[("word/document.xml", b"<w:document><w:body><w:p></w:body>")]);
        let err = parse_any(MediaType::Docx, &bytes, &limits()).unwrap_err();
        assert_eq!(err.kind(), "malformed", "{err:?}");
    }

    #[test]
    fn parse_truncated_or_non_zip_docx_returns_malformed() {
        let bytes = docx("<w:p><w:r><w:t>x</w:t></w:r></w:p>", None);
        for cut in [4, bytes.len() / 2, bytes.len() - 10] {
            let err = parse_any(MediaType::Docx, bytes.get(..cut).unwrap(), &limits()).unwrap_err();
            assert!(matches!(err, ParseError::Malformed { .. } | ParseError::MissingPart { .. }), "{cut}: {err:?}");
        }
        assert_eq!(parse_any(MediaType::Docx, b"not a zip", &limits()).unwrap_err().kind(), "malformed");
    }

    #[test]
    fn parse_docx_zip_bomb_is_capped() {
        // 80 MiB of zeros deflates to about 80 KiB: over the 64 MiB cap on word/document.xml.
        let zeros = vec![b' '; XML_LIMIT + 16 * 1024 * 1024];
        let bytes = zip_of(&[("word/document.xml", &zeros)]);
        assert!(bytes.len() < 1024 * 1024);
        let err = parse_any(MediaType::Docx, &bytes, &limits()).unwrap_err();
        assert_eq!(err, ParseError::DecompressionLimit { part: "word/document.xml", limit: XML_LIMIT });
    }

    #[test]
    fn parse_docx_over_text_limit_returns_text_too_large() {
        let small = ParseLimits { max_text_bytes: 5, ..limits() };
        let bytes = docx(&format!("<w:p>{RUN}far too long</w:t></w:r></w:p>"), None);
        assert_eq!(parse_any(MediaType::Docx, &bytes, &small), Err(ParseError::TextTooLarge { limit: 5 }));
    }

    #[test]
    fn parse_docx_deeply_nested_xml_returns_too_deep() {
        let body = format!("{}{}", "<w:sdt>".repeat(1_000), "</w:sdt>".repeat(1_000));
        let err = parse_any(MediaType::Docx, &docx(&body, None), &limits()).unwrap_err();
        assert_eq!(err.to_string(), "DOCX nests deeper than 512 levels");
    }

    #[test]
    fn parse_docx_without_text_returns_no_text() {
        let err = parse_any(MediaType::Docx, &docx("<w:p/><w:p><w:r/></w:p>", None), &limits()).unwrap_err();
        assert_eq!(err, ParseError::NoText { format: "DOCX" });
    }

    #[test]
    fn parse_ole_container_returns_mismatch() {
        let err = parse(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0", &limits()).unwrap_err();
        assert_eq!(err.kind(), "media_type_mismatch");
    }
}
