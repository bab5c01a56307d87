//! The embedded index's qdrant-edge settings: bulk loading (a rebuild's new generation) and serving.

use qdrant_edge::{EdgeOptimizersConfig, HnswIndexConfig};

/// While bulk loading, the size (in points) at which an explicit `optimize()` seals the appendable segment; nothing
/// optimizes on its own while bulk loading.
pub(super) const BULK_SEAL_POINTS: usize = 4_000;

/// While bulk loading, the bytes of sparse vector a point is assumed to take (a 1,000-character chunk has about a
/// hundred distinct terms, 8 bytes each) when the collection has no dense vector to size segments by.
pub(super) const BULK_SPARSE_BYTES_PER_POINT: usize = 800;

/// While bulk loading: the segment count the merge optimizer aims for; high, so that nothing is merged until the end.
pub(super) const BULK_SEGMENT_NUMBER: usize = 10_000;

/// While serving: the segment count the merge optimizer aims for. Qdrant's default follows the CPU count (two here),
/// so every segment sealed under steady writes was merged straight into the largest one, rewriting the whole
/// collection each time (a quarter of the CPU of an upload burst); with room for a few more, only small segments
/// are merged, with each other.
pub(super) const SERVING_SEGMENT_NUMBER: usize = 8;

/// The optimizer settings while bulk loading (see the module's notes): an explicit `optimize()` seals segments at
/// about `points` points (qdrant measures them in KiB of vectors: `dense_dimensions` f32 each, or the sparse
/// estimate) and merges none. The high segment count also marks the collection as bulk loading when it is reopened.
pub(super) fn bulk_optimizers(dense_dimensions: Option<usize>, points: usize) -> EdgeOptimizersConfig {
    let bytes_per_point = dense_dimensions.map_or(BULK_SPARSE_BYTES_PER_POINT, |dimensions| dimensions * 4);
    // 90 %: `points` points are over the threshold, whatever the rounding.
    EdgeOptimizersConfig {
        indexing_threshold: Some((points * bytes_per_point * 9 / 10 / 1024).max(1)),
        default_segment_number: Some(BULK_SEGMENT_NUMBER),
        ..EdgeOptimizersConfig::default()
    }
}

/// The optimizer settings while serving: qdrant's, but for the segment count (see [`SERVING_SEGMENT_NUMBER`]).
pub(super) fn serving_optimizers() -> EdgeOptimizersConfig {
    EdgeOptimizersConfig { default_segment_number: Some(SERVING_SEGMENT_NUMBER), ..EdgeOptimizersConfig::default() }
}

/// The dense vector's graph settings: none while bulk loading, qdrant's defaults otherwise.
pub(super) fn dense_hnsw(bulk: bool) -> HnswIndexConfig {
    if bulk {
        HnswIndexConfig { m: 0, payload_m: Some(0), ..HnswIndexConfig::default() }
    } else {
        HnswIndexConfig::default()
    }
}
