//! BM25 sparse vectors, computed with qdrant-edge's BM25 (Qdrant's tokenizer, English stemming and stop words) for
//! both backends, so the embedded engine and a Qdrant server index exactly the same vectors.
//!
//! A document vector holds each term's BM25 term-frequency part; the IDF part is applied by the collection (Qdrant's
//! `Idf` modifier on the sparse vector), from the collection's own document frequencies. A query vector holds each
//! distinct query term with weight 1.

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::ordered_float::NotNan;

/// A sparse vector: term ids and weights, of the same length, ids unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseVector {
    /// Term ids (hashes of the stemmed tokens).
    pub indices: Vec<u32>,
    /// Their weights.
    pub values: Vec<f32>,
}

/// The BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation.
    pub k1: f64,
    /// Length normalisation (0 none, 1 full).
    pub b: f64,
    /// The average chunk length in tokens the normalisation assumes.
    pub avg_len: f64,
}

impl Default for Bm25Params {
    /// Tuned on the SciFact training split (docs/evaluation.md).
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75, avg_len: 256.0 }
    }
}

/// The BM25 embedder.
#[derive(Debug)]
pub struct Bm25 {
    inner: EdgeBm25,
}

impl Bm25 {
    /// Builds an English BM25 embedder; fails on non-finite or negative parameters.
    pub fn new(params: Bm25Params) -> Result<Self, String> {
        let finite = |name: &str, value: f64| {
            NotNan::new(value)
                .ok()
                .filter(|v| v.into_inner() >= 0.0 && v.is_finite())
                .ok_or_else(|| format!("BM25 {name} must be a finite number >= 0, got {value}"))
        };
        let config = EdgeBm25Config {
            k: finite("k1", params.k1)?,
            b: finite("b", params.b)?,
            avg_len: finite("avg_len", params.avg_len)?,
            language: Some("english".to_owned()),
            ..EdgeBm25Config::default()
        };
        EdgeBm25::new(config).map(|inner| Self { inner }).map_err(|error| format!("BM25: {error}"))
    }

    /// The vector of a chunk's text.
    pub fn document(&self, text: &str) -> SparseVector {
        let vector = self.inner.embed_document(text);
        SparseVector { indices: vector.indices, values: vector.values }
    }

    /// The vector of a query.
    pub fn query(&self, text: &str) -> SparseVector {
        let vector = self.inner.embed_query(text);
        SparseVector { indices: vector.indices, values: vector.values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_and_drops_stop_words() {
        let bm25 = Bm25::new(Bm25Params::default()).unwrap();
        // "running" and "runs" stem to "run"; "the" and "and" are stop words.
        let document = bm25.document("the running and the runs");
        assert_eq!(document.indices.len(), 1, "{document:?}");
        let query = bm25.query("run");
        assert_eq!(query.indices, document.indices);
        assert_eq!(query.values, vec![1.0]);
        assert!(bm25.document("the and of").indices.is_empty());
    }

    #[test]
    fn more_occurrences_weigh_more_but_saturate() {
        let bm25 = Bm25::new(Bm25Params::default()).unwrap();
        let once = bm25.document("protein").values[0];
        let twice = bm25.document("protein protein").values[0];
        let many = bm25.document(&"protein ".repeat(50)).values[0];
        assert!(once < twice && twice < many, "{once} {twice} {many}");
        assert!(many < (1.2 + 1.0) as f32, "bounded by k1 + 1: {many}");
    }

    #[test]
    fn a_warm_embedder_gives_the_same_vectors_as_a_fresh_one() {
        // The vendored qdrant-edge memoizes what words become, per embedder (vendor/README.md): what earlier texts
        // left in the memo must not change a later text's vector. The texts share words in several inflections.
        let texts = [
            "Running proteins fold; the runner ran while folded proteins were running.",
            "Folding of a protein runs fast, and runners fold maps.",
            "Generalization generalizes: generalized generally, generating generators.",
            "The runs, the running, the folds and the folding: proteins everywhere.",
        ];
        let warm = Bm25::new(Bm25Params::default()).unwrap();
        for _ in 0..2 {
            for text in texts {
                let fresh = Bm25::new(Bm25Params::default()).unwrap();
                assert_eq!(warm.document(text), fresh.document(text), "{text}");
                assert_eq!(warm.query(text), fresh.query(text), "{text}");
            }
        }
    }

    #[test]
    fn memoized_vectors_equal_qdrants_on_the_scifact_corpus() {
        // The vendored qdrant-edge turns words into token ids through a memo (vendor/README.md); its vectors must be
        // the ones qdrant-edge computes word by word, for every abstract of the corpus (about 1.2 M words, read
        // twice so that the second pass is served from the memo) and for text that lowercases, folds or splits
        // unusually.
        use std::io::BufRead;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/scifact/corpus.jsonl.gz");
        let file = std::fs::File::open(path).unwrap();
        let mut texts: Vec<String> = std::io::BufReader::new(flate2::read::GzDecoder::new(file))
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(&line.unwrap()).unwrap()["text"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(texts.len() > 5_000, "{} abstracts", texts.len());
        texts.extend(
            [
                "",
                "   ",
                "THE Running RUNS; İstanbul's ÇAĞRI naïve café Straße ΣΊΣΥΦΟΣ",
                "x2 3x α-helix β2-adrenergic 10.1038/nature12373 CD4+ IL-1β",
                "a\u{0}b\tc\u{200b}d e\u{301}f 漢字かな交じり文 emoji😀word",
                &"supercalifragilistic".repeat(20),
            ]
            .map(String::from),
        );
        let memoized = Bm25::new(Bm25Params::default()).unwrap();
        let mut compared = 0;
        for _ in 0..2 {
            for text in &texts {
                let expected = memoized.inner.embed_document_unmemoized(text);
                let got = memoized.document(text);
                assert_eq!(got.indices, expected.indices, "{text}");
                assert_eq!(got.values, expected.values, "{text}");
                compared += got.indices.len();
            }
        }
        assert!(compared > 500_000, "{compared} terms compared");
    }

    #[test]
    fn rejects_bad_parameters() {
        let error = Bm25::new(Bm25Params { k1: f64::NAN, ..Bm25Params::default() }).unwrap_err();
        assert!(error.contains("k1"), "{error}");
        assert!(Bm25::new(Bm25Params { b: -1.0, ..Bm25Params::default() }).is_err());
    }
}
