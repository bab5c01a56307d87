//! The answer of `POST /ask` when no chat model is configured: the retrieved chunks' sentences that share the most
//! terms with the question, each followed by its citation marker.
//!
//! Terms are the BM25 embedder's (Qdrant's tokenizer, English stemming, stop words dropped), so "apples" in the
//! question matches "apple" in a sentence exactly as search matched the chunk. A sentence's score is the number of
//! distinct question terms it holds; ties go to the better-ranked chunk, then to the earlier sentence, so the same
//! chunks always give the same answer. A sentence holding fewer than half as many as the best one is not quoted (one
//! shared common word is not an answer next to a sentence that holds the whole question), nor one that shares none.

use std::collections::HashSet;

use dossier_projections::vector::{Bm25, SearchHit};

/// Most sentences quoted in one answer.
pub const MAX_SENTENCES: usize = 3;

/// One quoted sentence: where it is in the document, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The hit (retrieval rank, from 0) it comes from.
    pub hit: usize,
    /// Its start in the document's extracted text (bytes).
    pub byte_start: u64,
    /// Its end (exclusive).
    pub byte_end: u64,
    /// The sentence.
    pub text: String,
}

/// The best sentences of `hits` for `question`, best first (at most [`MAX_SENTENCES`], no sentence twice).
pub fn best_sentences(bm25: &Bm25, question: &str, hits: &[SearchHit]) -> Vec<Quote> {
    let wanted: HashSet<u32> = bm25.query(question).indices.into_iter().collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    // (score, hit rank, position in the chunk): sorted by score descending, then rank and position ascending.
    let mut candidates: Vec<(usize, usize, usize, Quote)> = Vec::new();
    for (rank, hit) in hits.iter().enumerate() {
        for (start, end) in sentences(&hit.text) {
            let sentence = &hit.text[start..end];
            let terms: HashSet<u32> = bm25.query(sentence).indices.into_iter().collect();
            let score = terms.intersection(&wanted).count();
            if score == 0 {
                continue;
            }
            let quote = Quote {
                hit: rank,
                byte_start: hit.byte_start + start as u64,
                byte_end: hit.byte_start + end as u64,
                text: sentence.to_owned(),
            };
            candidates.push((score, rank, start, quote));
        }
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let best = candidates.first().map_or(0, |candidate| candidate.0);
    let mut seen = HashSet::new();
    candidates
        .into_iter()
        .take_while(|(score, _, _, _)| score * 2 >= best)
        .map(|(_, _, _, quote)| quote)
        // Overlapping chunks hold the same sentence twice; quote it once.
        .filter(|quote| seen.insert(quote.text.clone()))
        .take(MAX_SENTENCES)
        .collect()
}

/// The byte ranges of `text`'s sentences, trimmed of surrounding whitespace. A sentence ends after `.`, `!` or `?`
/// followed by whitespace (not the `.` of a numbered list item), and at a line break that ends a block: before a
/// blank line, after a heading or a table row, and before a line that starts a heading, a list item, a quote, a
/// table row or a code fence (these have no full stop). Any other line break is a hard wrap inside a paragraph, and
/// the sentence goes on across it.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        let end = match c {
            '\n' if ends_block(text, index) => Some(index),
            '.' | '!' | '?' if next_is_space && !(c == '.' && numbers_a_list_item(text, index)) => {
                Some(index + c.len_utf8())
            }
            _ => None,
        };
        if let Some(end) = end {
            push_trimmed(text, start, end, &mut ranges);
            start = end;
        }
    }
    push_trimmed(text, start, text.len(), &mut ranges);
    ranges
}

/// Whether the line break at `index` ends a block.
fn ends_block(text: &str, index: usize) -> bool {
    let line = text[..index].rsplit('\n').next().unwrap_or_default().trim();
    let next = text[index + 1..].split('\n').next().unwrap_or_default().trim();
    line.starts_with(['#', '|']) || next.is_empty() || starts_block(next)
}

/// Whether the `.` at `index` follows nothing but digits on its line (`2. item`): a list item's number.
fn numbers_a_list_item(text: &str, index: usize) -> bool {
    let line = text[..index].rsplit('\n').next().unwrap_or_default().trim_start();
    !line.is_empty() && line.bytes().all(|byte| byte.is_ascii_digit())
}

/// Whether a (trimmed) line starts a heading, a list item, a quote, a table row or a code fence.
fn starts_block(line: &str) -> bool {
    let marker_then_space = |rest: &str, markers: &[char]| {
        let mut chars = rest.chars();
        chars.next().is_some_and(|c| markers.contains(&c)) && chars.next().is_none_or(char::is_whitespace)
    };
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let numbered = digits > 0 && marker_then_space(&line[digits..], &['.', ')']);
    numbered || marker_then_space(line, &['-', '*', '+']) || line.starts_with(['#', '>', '|', '`'])
}

fn push_trimmed(text: &str, start: usize, end: usize, ranges: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let leading = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if !trimmed.is_empty() {
        ranges.push((start + leading, start + leading + trimmed.len()));
    }
}

#[cfg(test)]
mod tests {
    use dossier_projections::vector::Bm25Params;
    use uuid::Uuid;

    use super::*;

    fn hit(byte_start: u64, text: &str) -> SearchHit {
        SearchHit {
            document_id: Uuid::nil(),
            chunk_index: 0,
            score: 1.0,
            text: text.to_owned(),
            byte_start,
            byte_end: byte_start + text.len() as u64,
        }
    }

    #[test]
    fn sentences_split_on_stops_and_line_breaks_and_trim() {
        let text = "  First one. Second one!\nA heading\n\nv1.2 is out? Yes";
        let pieces: Vec<&str> = sentences(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(pieces, ["First one.", "Second one!", "A heading", "v1.2 is out?", "Yes"]);
        assert!(sentences(" \n ").is_empty());
    }

    #[test]
    fn sentences_go_on_across_a_hard_wrap_but_not_into_a_heading_list_or_table() {
        let text = concat!(
            "# Title\nA reader never\nskips an event. Next\none.\n",
            "- item one\n2. item two\n3.14 is pi\n| a | b |\n| c |"
        );
        let pieces: Vec<&str> = sentences(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(
            pieces,
            [
                "# Title",
                "A reader never\nskips an event.",
                "Next\none.",
                "- item one",
                "2. item two\n3.14 is pi",
                "| a | b |",
                "| c |"
            ]
        );
    }

    #[test]
    fn best_sentences_rank_by_shared_terms_and_point_into_the_document() {
        let bm25 = Bm25::new(Bm25Params::default()).expect("bm25");
        let hits = [
            hit(100, "Pears are green. Apples grow on apple trees in autumn."),
            hit(0, "Apples are red. Apples grow."),
        ];
        let quotes = best_sentences(&bm25, "When do apple trees grow apples?", &hits);
        assert_eq!(quotes[0].text, "Apples grow on apple trees in autumn.");
        assert_eq!((quotes[0].hit, quotes[0].byte_start), (0, 117));
        assert_eq!(quotes[1].text, "Apples grow.", "two of the best sentence's three terms");
        assert_eq!(quotes.len(), 2, "pears share no term, and red apples one term of three: {quotes:?}");
        assert!(best_sentences(&bm25, "the of and", &hits).is_empty(), "stop words match nothing");
    }

    #[test]
    fn best_sentences_quote_a_repeated_sentence_once() {
        let bm25 = Bm25::new(Bm25Params::default()).expect("bm25");
        let hits = [hit(0, "Plums are purple."), hit(10, "Plums are purple.")];
        assert_eq!(best_sentences(&bm25, "plums", &hits).len(), 1);
    }
}
