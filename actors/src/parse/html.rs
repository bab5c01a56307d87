//! HTML: the visible text of a page, with block structure kept as line breaks.
//!
//! Why `html5gum`: a WHATWG-conformant *tokenizer* (entities, raw-text and script states, comments) with no
//! dependencies and no unsafe code. It is a state machine, not a tree builder, so it never recurses per nesting
//! level: 100,000 nested `<div>`s cost a loop, not a stack overflow. html5ever would give a real DOM but recurses
//! over it and pulls in string-cache, phf and markup5ever; `tl` is fast but not spec-conformant on entities and raw
//! text. The tree builder's job that matters here, knowing which elements are open, is done by a small stack
//! (`Extractor::stack`) with the common implied end tags (`<p>`, `<li>`, `<td>`, ...) so that ordinary tag soup does
//! not look deep; that stack is what `ParseLimits::max_nesting` bounds.
//!
//! Output: the contents of `script`, `style`, `noscript`, `template`, `iframe`, `svg`, `textarea` and of elements
//! with the `hidden` attribute are skipped, as are comments; whitespace collapses as a browser would (except in
//! `pre`); block elements become line breaks, paragraphs blank lines; headings and list items get Markdown markers
//! (`## `, `- `) because the chunker splits on Markdown structure. `<title>` gives the title.
//!
//! Encoding: UTF-8 unless the bytes are not; then a BOM, a `charset=` in the first 1024 bytes, or the web's default
//! windows-1252 (decoded by `encoding_rs`, already in the tree through lopdf).

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use html5gum::{DefaultEmitter, StartTag, Token, Tokenizer};
use memchr::memmem;

use super::text::{TextSink, decode_utf8, normalize_newlines};
use super::{ParseError, ParseLimits};

const FORMAT: &str = "HTML";

// Element lists are space-separated names: easier to read and review than arrays of byte strings.
/// Elements whose content is never shown as text.
const SKIPPED: &str = "script style noscript template iframe svg textarea noembed noframes title";
/// Elements the tokenizer switches into a raw-text state for: their end tag is the only way out, so they are open
/// even when written `<script/>`.
const RAW_TEXT: &str = "script style noscript iframe textarea noembed noframes title xmp";
/// Elements with no content and no end tag.
const VOID: &str = "area base br col embed hr img input link meta param source track wbr keygen basefont bgsound \
                    frame";
/// Blocks separated by a blank line.
const PARAGRAPH: &str = "p h1 h2 h3 h4 h5 h6 blockquote pre ul ol dl table section article header footer nav aside main \
                         figure hr address form fieldset details hgroup xmp plaintext";
/// Blocks that start a new line.
const LINE: &str = "br li tr div dt dd caption summary figcaption option legend center dialog menu dir body tbody \
                    thead tfoot";
/// Where a search for an open `<p>` stops (the spec's "button scope").
const BUTTON_SCOPE: &str = "html table td th caption template button object marquee applet";

/// The parts open elements play in the implied-end-tag rules, as bits computed once per element, so the searches
/// down the stack (`close_open`) are integer tests rather than name comparisons.
mod role {
    pub(super) const P: u16 = 1;
    pub(super) const LI: u16 = 1 << 1;
    pub(super) const DT_DD: u16 = 1 << 2;
    pub(super) const TR: u16 = 1 << 3;
    pub(super) const CELL: u16 = 1 << 4;
    pub(super) const SECTION: u16 = 1 << 5;
    /// How many of the bits above are targets of `close_open` (and counted while open).
    pub(super) const TARGETS: usize = 6;
    pub(super) const BUTTON_SCOPE: u16 = 1 << 6;
    pub(super) const LIST: u16 = 1 << 7;
    pub(super) const DL: u16 = 1 << 8;
    pub(super) const TABLE: u16 = 1 << 9;
    pub(super) const TEMPLATE: u16 = 1 << 10;
}

fn roles(name: &[u8]) -> u16 {
    let own = match name {
        b"p" => role::P,
        b"li" => role::LI,
        b"dt" | b"dd" => role::DT_DD,
        b"tr" => role::TR,
        b"td" | b"th" => role::CELL,
        b"tbody" | b"thead" | b"tfoot" => role::SECTION,
        b"ul" | b"ol" | b"menu" => role::LIST,
        b"dl" => role::DL,
        b"table" => role::TABLE,
        b"template" => role::TEMPLATE,
        _ => 0,
    };
    if listed(BUTTON_SCOPE, name) { own | role::BUTTON_SCOPE } else { own }
}
const HEADINGS: &[&[u8]] = &[b"h1", b"h2", b"h3", b"h4", b"h5", b"h6"];

/// Whether `name` is one of the space-separated names in `list`.
fn listed(list: &str, name: &[u8]) -> bool {
    list.split_ascii_whitespace().any(|entry| entry.as_bytes() == name)
}

/// Visible text and `<title>` of an HTML document.
pub(crate) fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<(String, Option<String>), ParseError> {
    let source = normalize_newlines(&decode(bytes));
    let mut emitter = DefaultEmitter::default();
    // The tokenizer alone cannot know that `<script>` content is not markup (the tree builder normally tells it);
    // the naive switch does that from the tag name, which is all we need since we do not build a tree.
    emitter.naively_switch_states(true);
    let mut extractor = Extractor::new(limits);
    for token in Tokenizer::new_with_emitter(source.as_str(), emitter) {
        let token = match token {
            Ok(token) => token,
            Err(never) => match never {},
        };
        match token {
            Token::StartTag(tag) => extractor.start(&tag)?,
            Token::EndTag(tag) => extractor.end(&tag.name)?,
            Token::String(text) => extractor.text(&String::from_utf8_lossy(&text))?,
            // Comments and doctypes are not visible; tokenizer errors are recovered from by the tokenizer itself.
            Token::Comment(_) | Token::Doctype(_) | Token::Error(_) => {}
        }
    }
    Ok((extractor.out.into_string(), extractor.title))
}

/// The document as text: UTF-8 if it is, else the encoding it declares, else windows-1252 as browsers do.
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = decode_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let encoding = Encoding::for_bom(bytes).map(|(encoding, _)| encoding).or_else(|| meta_charset(bytes));
    // A charset label that says UTF-16 without a BOM is a lie for ASCII-compatible markup; the spec reads it as UTF-8.
    let encoding = match encoding {
        Some(encoding) if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE => UTF_8,
        Some(encoding) => encoding,
        None => WINDOWS_1252,
    };
    encoding.decode(bytes).0
}

/// The label in the first `charset=` of the first 1024 bytes (`<meta charset=...>` or `http-equiv` content).
fn meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head: Vec<u8> = bytes.iter().take(1024).map(u8::to_ascii_lowercase).collect();
    let start = memmem::find(&head, b"charset=")? + b"charset=".len();
    let rest = head.get(start..)?;
    let rest = rest.strip_prefix(b"\"").or_else(|| rest.strip_prefix(b"'")).unwrap_or(rest);
    let end = rest.iter().position(|b| matches!(b, b'"' | b'\'' | b';' | b'>' | b'/') || b.is_ascii_whitespace());
    Encoding::for_label(rest.get(..end.unwrap_or(rest.len()))?)
}

struct Open {
    name: Vec<u8>,
    roles: u16,
    skip: bool,
    pre: bool,
}

/// Walks the token stream keeping just enough state to know what is visible and where lines break.
struct Extractor {
    out: TextSink,
    stack: Vec<Open>,
    max_nesting: usize,
    /// Open elements whose content is hidden / preformatted (counts over `stack`).
    skipping: usize,
    preformatted: usize,
    /// Open elements per target role (`role::P` ...), so a search for one that is not open costs nothing.
    open_roles: [usize; role::TARGETS],
    /// Newlines owed before the next visible text (0, 1 or 2), collapsed so runs of blocks give one blank line.
    pending_break: usize,
    /// A separator (space or tab) owed before the next visible text, unless that text starts a line.
    pending_space: Option<char>,
    /// A Markdown marker (`# `, `- `) for the next text, dropped if the element turns out empty.
    pending_prefix: Option<String>,
    title: Option<String>,
    /// Text of the first `<title>`, while it is open.
    title_text: Option<String>,
}

impl Extractor {
    fn new(limits: &ParseLimits) -> Self {
        Self {
            out: TextSink::new(limits.max_text_bytes),
            stack: Vec::new(),
            max_nesting: limits.max_nesting,
            skipping: 0,
            preformatted: 0,
            open_roles: [0; role::TARGETS],
            pending_break: 0,
            pending_space: None,
            pending_prefix: None,
            title: None,
            title_text: None,
        }
    }

    fn start(&mut self, tag: &StartTag<()>) -> Result<(), ParseError> {
        let name = tag.name.as_slice();
        self.imply_end_tags(name);
        self.layout(name, true);
        if self.skipping == 0 {
            if let Some(level) = HEADINGS.iter().position(|heading| *heading == name) {
                self.pending_prefix = Some(format!("{} ", "#".repeat(level + 1)));
            } else if name == b"li" {
                self.pending_prefix = Some("- ".to_owned());
            } else if matches!(name, b"td" | b"th") {
                self.pending_space = Some('\t');
            }
        }
        let raw_text = listed(RAW_TEXT, name);
        if listed(VOID, name) || (tag.self_closing && !raw_text) {
            return Ok(());
        }
        if self.stack.len() >= self.max_nesting {
            return Err(ParseError::TooDeep { format: FORMAT, limit: self.max_nesting });
        }
        let skip = listed(SKIPPED, name) || tag.attributes.contains_key(b"hidden".as_slice());
        if name == b"title" && self.title.is_none() && self.title_text.is_none() && self.skipping == 0 {
            self.title_text = Some(String::new());
        }
        let pre = matches!(name, b"pre" | b"xmp" | b"plaintext" | b"listing");
        self.skipping += usize::from(skip);
        self.preformatted += usize::from(pre);
        let roles = roles(name);
        self.count_roles(roles, true);
        self.stack.push(Open { name: name.to_vec(), roles, skip, pre });
        Ok(())
    }

    fn end(&mut self, name: &[u8]) -> Result<(), ParseError> {
        if let Some(index) = self.stack.iter().rposition(|open| open.name == name) {
            self.pop_to(index);
        }
        self.layout(name, false);
        if HEADINGS.contains(&name) || name == b"li" {
            self.pending_prefix = None;
        }
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<(), ParseError> {
        if let Some(title) = self.title_text.as_mut()
            && self.stack.last().is_some_and(|open| open.name == b"title")
        {
            title.push_str(text);
            return Ok(());
        }
        if self.skipping > 0 {
            return Ok(());
        }
        if self.preformatted > 0 {
            if !text.is_empty() {
                self.flush_pending()?;
                self.out.push_str(text)?;
            }
            return Ok(());
        }
        for c in text.chars() {
            if c.is_ascii_whitespace() {
                let at_line_start = self.out.as_str().is_empty() || self.out.as_str().ends_with('\n');
                if self.pending_break == 0 && !at_line_start && self.pending_space.is_none() {
                    self.pending_space = Some(' ');
                }
            } else {
                self.flush_pending()?;
                // A no-break space is visible spacing that must not collapse; as text it is a plain space.
                self.out.push(if c == '\u{a0}' { ' ' } else { c })?;
            }
        }
        Ok(())
    }

    /// Writes owed line breaks, marker and separator before visible text.
    fn flush_pending(&mut self) -> Result<(), ParseError> {
        if self.pending_break > 0 {
            if !self.out.as_str().is_empty() {
                let have = self.out.as_str().len() - self.out.as_str().trim_end_matches('\n').len();
                for _ in have.min(self.pending_break)..self.pending_break {
                    self.out.push('\n')?;
                }
            }
            self.pending_break = 0;
            self.pending_space = None;
        }
        if let Some(prefix) = self.pending_prefix.take() {
            self.out.push_str(&prefix)?;
            self.pending_space = None;
        }
        if let Some(space) = self.pending_space.take()
            && !self.out.as_str().is_empty()
            && !self.out.as_str().ends_with('\n')
        {
            self.out.push(space)?;
        }
        Ok(())
    }

    /// Line breaks owed for a block element's start or end.
    fn layout(&mut self, name: &[u8], is_start: bool) {
        let breaks = if listed(PARAGRAPH, name) {
            2
        } else if listed(LINE, name) {
            1
        } else {
            return;
        };
        // `<br>` breaks where it stands; `</br>` is read as `<br>` by browsers.
        if self.skipping == 0 && (is_start || name != b"br" || self.pending_break == 0) {
            self.pending_break = self.pending_break.max(breaks);
            self.pending_space = None;
        }
    }

    /// The end tags HTML lets authors leave out, so `<p>a<p>b` or `<li>a<li>b` stay flat instead of nesting.
    fn imply_end_tags(&mut self, name: &[u8]) {
        let closes_p = listed(PARAGRAPH, name) || (listed(LINE, name) && name != b"br" && name != b"option");
        if closes_p {
            self.close_open(role::P, role::BUTTON_SCOPE);
        }
        if HEADINGS.contains(&name) && self.stack.last().is_some_and(|open| HEADINGS.contains(&open.name.as_slice())) {
            self.pop_to(self.stack.len().saturating_sub(1));
        }
        match name {
            b"li" => self.close_open(role::LI, role::LIST | role::TABLE | role::TEMPLATE),
            b"dt" | b"dd" => self.close_open(role::DT_DD, role::DL | role::TABLE | role::TEMPLATE),
            b"tr" => self.close_open(role::TR, role::TABLE | role::SECTION | role::TEMPLATE),
            b"td" | b"th" => self.close_open(role::CELL, role::TR | role::TABLE | role::TEMPLATE),
            b"tbody" | b"thead" | b"tfoot" => self.close_open(role::SECTION, role::TABLE),
            b"option" | b"optgroup" if self.stack.last().is_some_and(|open| open.name == b"option") => {
                self.pop_to(self.stack.len().saturating_sub(1));
            }
            _ => {}
        }
    }

    /// Closes the innermost open element named in `targets`, unless a `boundaries` element is met first.
    fn close_open(&mut self, target: u16, boundaries: u16) {
        let target_open = (0..role::TARGETS)
            .any(|bit| target & (1 << bit) != 0 && self.open_roles.get(bit).is_some_and(|count| *count > 0));
        if !target_open {
            return;
        }
        for (index, open) in self.stack.iter().enumerate().rev() {
            if open.roles & target != 0 {
                self.pop_to(index);
                return;
            }
            if open.roles & boundaries != 0 {
                return;
            }
        }
    }

    fn count_roles(&mut self, roles: u16, opened: bool) {
        for (bit, count) in self.open_roles.iter_mut().enumerate() {
            if roles & (1 << bit) != 0 {
                *count = if opened { count.saturating_add(1) } else { count.saturating_sub(1) };
            }
        }
    }

    /// Closes `stack[index]` and everything opened inside it.
    fn pop_to(&mut self, index: usize) {
        while self.stack.len() > index {
            let Some(open) = self.stack.pop() else { return };
            self.skipping -= usize::from(open.skip);
            self.preformatted -= usize::from(open.pre);
            self.count_roles(open.roles, false);
            if open.name == b"title"
                && let Some(title) = self.title_text.take()
            {
                self.title = Some(title.split_ascii_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn html(source: &str) -> (String, Option<String>) {
        parse(source.as_bytes(), &ParseLimits::default()).unwrap()
    }

    #[test]
    fn parse_page_with_script_style_comments_returns_visible_text_only() {
        let (text, title) = html(
            "<!DOCTYPE html><html><head><title> My  Page </title><style>body { color: red }</style>\
             <script>var secret = '<p>not text</p>';</script></head><body>\
             <!-- a comment that must not appear --><h1>Hello</h1><p>First   paragraph\n with <b>bold</b> text.</p>\
             <noscript>enable js</noscript><template><p>inert</p></template><div hidden>hidden div</div>\
             <ul><li>one<li>two</ul><p>a&amp;b &lt;c&gt; caf&eacute; &#x41;&nbsp;z<br>next line</p></body></html>",
        );
        assert_eq!(text, "# Hello\n\nFirst paragraph with bold text.\n\n- one\n- two\n\na&b <c> café A z\nnext line");
        assert_eq!(title.as_deref(), Some("My Page"));
        for hidden in ["secret", "color", "comment", "enable js", "inert", "hidden div", "not text"] {
            assert!(!text.contains(hidden), "{hidden:?} leaked into {text:?}");
        }
    }

    #[test]
    fn parse_table_returns_rows_as_lines_and_cells_tab_separated() {
        let (text, _) = html("<table><tr><th>name<th>qty<tr><td>apple<td>3</table>");
        assert_eq!(text, "name\tqty\napple\t3");
    }

    #[test]
    fn parse_pre_keeps_whitespace() {
        let (text, _) = html("<p>x</p><pre>  a\n    b</pre>");
        assert_eq!(text, "x\n\n  a\n    b");
    }

    #[test]
    fn parse_nested_div_bomb_fails_fast_without_stack_overflow() {
        let depth = 100_000;
        let source = format!("{}bomb{}", "<div>".repeat(depth), "</div>".repeat(depth));
        let started = Instant::now();
        let err = parse(source.as_bytes(), &ParseLimits::default()).unwrap_err();
        assert_eq!(err.to_string(), "HTML nests deeper than 512 levels");
        assert_eq!(err.kind(), "nesting_too_deep");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn parse_many_unclosed_paragraphs_and_items_is_not_deep() {
        let source = format!("<ul>{}</ul>{}", "<li>item".repeat(2_000), "<p>para".repeat(2_000));
        let (text, _) = parse(source.as_bytes(), &ParseLimits::default()).unwrap();
        assert!(text.starts_with("- item\n- item\n"));
        assert!(text.ends_with("para\n\npara"));
    }

    #[test]
    fn parse_many_tags_under_a_deep_stack_stays_linear() {
        // An open <p> that every block start searches for, fenced off by <button>, under 500 spans: the worst case
        // for `close_open`, which must stay a cheap integer test per level (about 1 s here in a debug build).
        let source = format!("<p><button>{}{}", "<span>".repeat(500), "<div>x</div>".repeat(50_000));
        let started = Instant::now();
        assert!(parse(source.as_bytes(), &ParseLimits::default()).is_ok());
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn parse_deep_but_allowed_nesting_returns_text() {
        let limits = ParseLimits { max_nesting: 600, ..ParseLimits::default() };
        let source = format!("{}deep{}", "<span>".repeat(599), "</span>".repeat(599));
        assert_eq!(parse(source.as_bytes(), &limits).unwrap().0, "deep");
    }

    #[test]
    fn parse_output_over_limit_returns_text_too_large() {
        let limits = ParseLimits { max_text_bytes: 10, ..ParseLimits::default() };
        let err = parse(b"<p>0123456789abc</p>", &limits).unwrap_err();
        assert_eq!(err, ParseError::TextTooLarge { limit: 10 });
    }

    #[test]
    fn parse_legacy_charset_decodes_with_declared_encoding() {
        let mut bytes = b"<meta charset=\"iso-8859-1\"><p>caf".to_vec();
        bytes.push(0xe9);
        let (text, _) = parse(&bytes, &ParseLimits::default()).unwrap();
        assert_eq!(text, "café");
    }

    #[test]
    fn parse_unterminated_script_and_comment_do_not_leak() {
        assert_eq!(html("<p>kept</p><script>never closed <p>x").0, "kept");
        assert_eq!(html("<p>kept</p><!-- never closed <p>x").0, "kept");
    }

    #[test]
    fn parse_svg_title_is_not_the_document_title() {
        let (text, title) = html("<body><svg><title>icon</title></svg><p>body</p></body>");
        assert_eq!((text.as_str(), title), ("body", None));
    }
}
