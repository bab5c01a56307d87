//! The point stored for one chunk, and its deterministic id.

use dossier_events::document::Metadata;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::vector::SparseVector;

/// The namespace of point ids (a fixed random UUID: changing it would orphan every stored point).
const POINT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d0e_8a4b_4f7e_9c3d_51b2_a7e8_0d94);

/// The id of a chunk's point: a UUIDv5 of the document id and the chunk index, the same on every run and backend.
pub fn point_id(document_id: Uuid, chunk_index: u32) -> Uuid {
    let mut name = [0u8; 20];
    name[..16].copy_from_slice(document_id.as_bytes());
    name[16..].copy_from_slice(&chunk_index.to_be_bytes());
    Uuid::new_v5(&POINT_NAMESPACE, &name)
}

/// One chunk as a point: its vectors and its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkPoint {
    /// The tenant that owns the document.
    pub tenant_id: String,
    /// The document.
    pub document_id: Uuid,
    /// The chunk's index in the document.
    pub chunk_index: u32,
    /// The log position of the event that last shaped this point.
    pub position: u64,
    /// The chunk's text.
    pub text: String,
    /// Where the chunk starts in the extracted text (bytes).
    pub byte_start: u64,
    /// Where it ends (exclusive).
    pub byte_end: u64,
    /// The document's metadata.
    pub metadata: Metadata,
    /// BM25 of the text.
    pub sparse: SparseVector,
    /// The embedding, when the document was embedded with the collection's model.
    pub dense: Option<Vec<f32>>,
}

impl ChunkPoint {
    /// Its id.
    pub fn id(&self) -> Uuid {
        point_id(self.document_id, self.chunk_index)
    }

    /// Its payload as stored: everything but the text, which the read model holds (ADR 0016).
    pub fn payload(&self) -> Value {
        json!({
            "tenant": self.tenant_id,
            "document": self.document_id.to_string(),
            "chunk_index": self.chunk_index,
            "position": self.position,
            "byte_start": self.byte_start,
            "byte_end": self.byte_end,
            "metadata": Value::Object(self.metadata.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_and_distinct() {
        let document = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        assert_eq!(point_id(document, 0), point_id(document, 0));
        assert_ne!(point_id(document, 0), point_id(document, 1));
        assert_ne!(point_id(document, 0), point_id(Uuid::nil(), 0));
        // Pinned (computed independently: SHA-1 of the namespace, the document's 16 bytes and 7 as a big-endian u32,
        // with the version-5 bits set): a change here would orphan every point already stored.
        assert_eq!(point_id(document, 7).to_string(), "bb0a75ce-64d9-507c-a37c-cafc8b79944d");
        assert_eq!(point_id(document, 7).get_version_num(), 5);
    }
}
