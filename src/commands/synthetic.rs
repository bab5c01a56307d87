//! Synthetic text with the vocabulary of a real corpus, for benchmarks that need more text than the corpus holds.
//!
//! Each synthetic chunk is a deterministic mix of sentences drawn from the corpus (SciFact's abstracts by default),
//! so term frequencies, sentence lengths and posting-list shapes look like real scientific prose, while every chunk
//! is different. Text built from one repeated phrase would make every chunk share the same few terms: a worst case
//! for an inverted index that no real collection has, and a best case for compression.

use std::path::Path;

use crate::error::AppError;
use crate::eval::read_corpus;

/// Sentences of a corpus, and a deterministic way to mix them.
pub struct SyntheticText {
    sentences: Vec<String>,
}

impl SyntheticText {
    /// Reads the sentences of a BEIR `corpus.jsonl` (optionally gzipped).
    pub fn from_corpus(corpus: &Path) -> Result<Self, AppError> {
        let documents = read_corpus(corpus, None)?;
        let sentences: Vec<String> = documents
            .iter()
            .flat_map(|document| split_sentences(&document.text))
            .filter(|sentence| sentence.len() >= 20)
            .map(str::to_owned)
            .collect();
        if sentences.is_empty() {
            return Err(AppError::Usage(format!("{}: no sentences to build synthetic text from", corpus.display())));
        }
        Ok(Self { sentences })
    }

    /// The number of distinct sentences available.
    pub fn sentence_count(&self) -> usize {
        self.sentences.len()
    }

    /// A text of about `chars` characters (at least one sentence, never more than `chars` unless a single sentence
    /// is longer), the same for the same `seed`.
    pub fn text(&self, seed: u64, chars: usize) -> String {
        let mut state = seed;
        let mut text = String::with_capacity(chars + 200);
        loop {
            let sentence = &self.sentences[(splitmix64(&mut state) % self.sentences.len() as u64) as usize];
            if !text.is_empty() && text.len() + 1 + sentence.len() > chars {
                return text;
            }
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(sentence);
        }
    }
}

/// Splits prose at sentence ends (`. `, `? `, `! `), keeping the punctuation.
fn split_sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text.trim();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .match_indices(". ")
            .chain(rest.match_indices("? "))
            .chain(rest.match_indices("! "))
            .map(|(at, _)| at + 1)
            .min()
            .unwrap_or(rest.len());
        let (sentence, tail) = rest.split_at(end);
        rest = tail.trim_start();
        Some(sentence.trim())
    })
}

/// SplitMix64: a small, well-mixed deterministic generator (Steele, Lea and Flood, 2014).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SyntheticText {
        let text = "Alpha beta gamma delta epsilon. Zeta eta theta iota kappa lambda? Mu nu xi omicron pi rho sigma! \
                    Tau upsilon phi chi psi omega. short.";
        SyntheticText { sentences: split_sentences(text).filter(|s| s.len() >= 20).map(str::to_owned).collect() }
    }

    #[test]
    fn sentences_split_at_their_ends_and_keep_the_punctuation() {
        let sentences: Vec<&str> = split_sentences("One two. Three four? Five! Six").collect();
        assert_eq!(sentences, ["One two.", "Three four?", "Five!", "Six"]);
    }

    #[test]
    fn texts_are_deterministic_bounded_and_differ_by_seed() {
        let synthetic = sample();
        assert_eq!(synthetic.sentence_count(), 4);
        let first = synthetic.text(7, 120);
        assert_eq!(first, synthetic.text(7, 120));
        assert!(first.len() <= 120 && first.len() > 60, "{first:?}");
        let distinct: std::collections::HashSet<String> = (0..32).map(|seed| synthetic.text(seed, 120)).collect();
        assert!(distinct.len() > 8, "{} distinct texts of 32", distinct.len());
        // A budget below one sentence still gives one whole sentence.
        assert!(synthetic.sentences.contains(&synthetic.text(3, 5)));
    }

    #[test]
    fn the_bundled_corpus_gives_varied_prose() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scifact/corpus.jsonl.gz");
        let synthetic = SyntheticText::from_corpus(&corpus).unwrap();
        assert!(synthetic.sentence_count() > 30_000, "{}", synthetic.sentence_count());
        let texts: Vec<String> = (0..50).map(|seed| synthetic.text(seed, 1_000)).collect();
        let words: std::collections::HashSet<&str> = texts.iter().flat_map(|text| text.split_whitespace()).collect();
        assert!(words.len() > 2_000, "{} distinct words in 50 chunks", words.len());
    }
}
