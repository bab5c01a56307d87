//! Verification of the vector index: the live collection compared with the points a replay of the log implies.

use std::collections::BTreeMap;

use dossier_events::EventStore;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::read_model::ReadModelStore;
use crate::runner::RunnerError;
use crate::vector::fold::FoldError;
use crate::vector::index::{IndexOp, StoredPoint, VectorIndex};
use crate::vector::projection::checkpoint_name;
use crate::vector::{Bm25, ChunkPoint, EmbeddingConfig, SparseVector, VectorFold};

/// Points read per page.
const PAGE: usize = 1_000;

/// One difference between the collection and the log.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "difference", rename_all = "snake_case")]
pub enum PointDifference {
    /// The log implies a point the collection lacks.
    MissingPoint {
        /// The point.
        point_id: Uuid,
        /// Its document.
        document_id: Uuid,
        /// Its chunk.
        chunk_index: u32,
    },
    /// The collection holds a point the log does not imply (an orphan).
    ExtraPoint {
        /// The point.
        point_id: Uuid,
        /// The document its payload names, if any.
        document_id: Option<Uuid>,
    },
    /// The point differs.
    DifferentPoint {
        /// The point.
        point_id: Uuid,
        /// Its document.
        document_id: Uuid,
        /// Payload fields or vectors that differ.
        fields: Vec<String>,
    },
}

/// Compares the live collection (up to its checkpoint) with a replay of the log up to the same position.
pub async fn verify_vector_index(
    log: &dyn EventStore,
    index: &dyn VectorIndex,
    generations: &dyn ReadModelStore,
    config: &EmbeddingConfig,
    bm25: std::sync::Arc<Bm25>,
) -> Result<Vec<PointDifference>, RunnerError> {
    let name = checkpoint_name(config);
    let generation = generations.live_generation(&name).await?;
    let checkpoint = generations.checkpoint(&name, generation).await?.map_or(0, |c| c.position);
    let skipped = crate::skip::skipped_positions(log, &name).await?;
    let expected = expected_points(log, config, bm25, checkpoint, &skipped).await?;
    let collection = config.collection(generation);
    let mut differences = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if index.collection_exists(&collection).await? {
        let mut after = None;
        loop {
            let page = index.scroll(&collection, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for stored in &page {
                seen.insert(stored.id);
                match expected.get(&stored.id) {
                    None => differences.push(PointDifference::ExtraPoint {
                        point_id: stored.id,
                        document_id: stored
                            .payload
                            .get("document")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse().ok()),
                    }),
                    Some(point) => {
                        let fields = differing_fields(point, stored);
                        if !fields.is_empty() {
                            differences.push(PointDifference::DifferentPoint {
                                point_id: stored.id,
                                document_id: point.document_id,
                                fields,
                            });
                        }
                    }
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
    }
    for (id, point) in &expected {
        if !seen.contains(id) {
            differences.push(PointDifference::MissingPoint {
                point_id: *id,
                document_id: point.document_id,
                chunk_index: point.chunk_index,
            });
        }
    }
    Ok(differences)
}

/// Every point the log implies up to `until` (less the events an operator skipped), by id.
pub async fn expected_points(
    log: &dyn EventStore,
    config: &EmbeddingConfig,
    bm25: std::sync::Arc<Bm25>,
    until: u64,
    skipped: &std::collections::HashSet<u64>,
) -> Result<BTreeMap<Uuid, ChunkPoint>, RunnerError> {
    let mut fold = VectorFold::new(config.clone(), bm25).with_cache_limit(usize::MAX).with_skipped(skipped.clone());
    let mut points: BTreeMap<Uuid, ChunkPoint> = BTreeMap::new();
    let mut position = 0;
    while position < until {
        let page = log.read_all(position, PAGE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        let page: Vec<_> =
            page.into_iter().filter(|event| event.position <= until && !skipped.contains(&event.position)).collect();
        let ops = fold.fold(log, &page).await.map_err(|error| match error {
            FoldError::Poison(error) => RunnerError::Poison(error),
            FoldError::Store(error) => RunnerError::Store(error),
        })?;
        for op in ops {
            apply_in_memory(&mut points, op);
        }
    }
    Ok(points)
}

/// What `op` does, applied to a map of points.
fn apply_in_memory(points: &mut BTreeMap<Uuid, ChunkPoint>, op: IndexOp) {
    match op {
        IndexOp::Upsert(new) => {
            for point in new {
                points.insert(point.id(), point);
            }
        }
        IndexOp::DeleteDocuments(documents) => points.retain(|_, point| !documents.contains(&point.document_id)),
        IndexOp::DeleteChunksFrom { document_id, from_index } => {
            points.retain(|_, point| point.document_id != document_id || point.chunk_index < from_index)
        }
        IndexOp::SetMetadata { document_id, metadata, position } => {
            for point in points.values_mut().filter(|point| point.document_id == document_id) {
                point.metadata = metadata.clone();
                point.position = position;
            }
        }
    }
}

fn differing_fields(expected: &ChunkPoint, stored: &StoredPoint) -> Vec<String> {
    let mut fields = Vec::new();
    if let (Value::Object(want), Value::Object(found)) = (expected.payload(), &stored.payload) {
        for (key, value) in &want {
            if found.get(key) != Some(value) {
                fields.push(key.clone());
            }
        }
        // Points written before ADR 0016 also carry their text; it is never read, so it is no difference.
        for key in found.keys().filter(|key| !want.contains_key(*key) && *key != "text") {
            fields.push(key.clone());
        }
    }
    fields.sort();
    if !same_sparse(&expected.sparse, &stored.sparse) {
        fields.push("vector:bm25".to_owned());
    }
    if !same_dense(expected.dense.as_deref(), stored.dense.as_deref()) {
        fields.push("vector:dense".to_owned());
    }
    fields
}

fn same_sparse(expected: &SparseVector, stored: &SparseVector) -> bool {
    let mut pairs: Vec<(u32, f32)> = expected.indices.iter().copied().zip(expected.values.iter().copied()).collect();
    pairs.sort_by_key(|(index, _)| *index);
    pairs.len() == stored.indices.len()
        && pairs.iter().zip(stored.indices.iter().zip(&stored.values)).all(|((i, v), (j, w))| i == j && v == w)
}

/// Cosine collections store vectors normalised to length 1: compare with the normalised expectation.
fn same_dense(expected: Option<&[f32]>, stored: Option<&[f32]>) -> bool {
    match (expected, stored) {
        (None, None) => true,
        (Some(expected), Some(stored)) if expected.len() == stored.len() => {
            let norm = expected.iter().map(|x| x * x).sum::<f32>().sqrt();
            let norm = if norm > 0.0 { norm } else { 1.0 };
            expected.iter().zip(stored).all(|(x, y)| (x / norm - y).abs() <= 1e-5)
        }
        _ => false,
    }
}
