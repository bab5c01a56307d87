//! The vector index: one Qdrant collection per embedding configuration, holding a point per chunk of every ready
//! document, projected from the log.
//!
//! Each point carries a BM25 sparse vector of the chunk's text (Qdrant's tokenizer with stemming and stop words;
//! the collection applies Qdrant's IDF modifier, so the statistics are the collection's own) and, when the document
//! was embedded with the collection's model, the dense vector recorded in its `ChunksEmbedded` event. Point ids are
//! derived from (document, chunk index), so every write is an idempotent upsert or delete and replaying a batch after
//! a crash changes nothing. Payload: tenant (a keyword index with `is_tenant`), document, chunk index, the log
//! position that produced the point, the chunk's text and byte range, and the document's metadata.
//!
//! Points appear when a document becomes ready and disappear when it is reprocessed, fails or is deleted, so search
//! never returns a chunk the read model does not also serve. Backends: qdrant-edge in process ([`edge`]) and a
//! Qdrant server ([`server`]), behind [`VectorIndex`].

pub mod bm25;
pub mod edge;
mod fold;
pub mod index;
mod point;
mod projection;
pub mod search;
pub mod server;
pub mod verify;

pub use bm25::{Bm25, Bm25Params, SparseVector};
pub use fold::{IndexPlan, VectorFold};
pub use index::{CollectionSpec, IndexError, IndexOp, Queued, StoredPoint, VectorIndex, WriteChain};
pub use point::{ChunkPoint, point_id};
pub use projection::{VECTOR_INDEX, VectorProjection};
pub use search::{IndexHit, MetadataFilter, SearchHit, SearchMode, SearchQuery};

/// Names of the vectors inside a collection.
pub mod names {
    /// The BM25 sparse vector.
    pub const SPARSE: &str = "bm25";
    /// The dense embedding vector.
    pub const DENSE: &str = "dense";
}

/// What a collection indexes: the BM25 parameters, and the embedding model whose vectors it holds (if any).
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingConfig {
    /// The model's name as recorded in `ChunksEmbedded`, and its vector length; `None` for BM25 only.
    pub dense: Option<(String, u32)>,
}

impl EmbeddingConfig {
    /// A slug naming the configuration in collection names: `bm25`, or `<model>-<dimensions>` with every character
    /// outside `[a-z0-9]` turned into `-`.
    pub fn slug(&self) -> String {
        match &self.dense {
            None => "bm25".to_owned(),
            Some((model, dimensions)) => {
                let model: String = model
                    .to_ascii_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                format!("{}-{dimensions}", model.trim_matches('-'))
            }
        }
    }

    /// The collection of a generation: `dossier_chunks_<slug>_g<generation>`.
    pub fn collection(&self, generation: u32) -> String {
        format!("{}_g{generation}", self.alias())
    }

    /// The alias that always names the live generation's collection.
    pub fn alias(&self) -> String {
        format!("dossier_chunks_{}", self.slug().replace('-', "_"))
    }

    /// The collection's layout for this configuration.
    pub fn spec(&self, generation: u32) -> CollectionSpec {
        CollectionSpec { name: self.collection(generation), dense_dimensions: self.dense.as_ref().map(|(_, d)| *d) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_derived_from_the_model_and_generation() {
        let config = EmbeddingConfig { dense: Some(("sentence-transformers/all-MiniLM-L6-v2".into(), 384)) };
        assert_eq!(config.slug(), "sentence-transformers-all-minilm-l6-v2-384");
        assert_eq!(config.collection(3), "dossier_chunks_sentence_transformers_all_minilm_l6_v2_384_g3");
        assert_eq!(EmbeddingConfig { dense: None }.collection(1), "dossier_chunks_bm25_g1");
    }
}
