//! The vector index on a Qdrant server, through qdrant-client (gRPC): the same collections, vectors, payloads and
//! queries as the embedded engine. Writes wait for the server to apply them (`wait = true`), so a batch is durable
//! on the server before the projection moves its checkpoint. Each generation's collection is also reachable through
//! the configuration's alias, repointed when a rebuild switches generations (dossier itself resolves the live
//! generation from its own record, so the alias is for other readers of the server).

use std::collections::HashMap;

use async_trait::async_trait;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::vector_output::Vector as OutputVector;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateAliasBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, HnswConfigDiffBuilder, KeywordIndexParamsBuilder, Modifier,
    PointId, PointStruct, PrefetchQueryBuilder, Query, QueryPointsBuilder, Range, RrfBuilder, ScrollPointsBuilder,
    SetPayloadPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpdateCollectionBuilder,
    UpsertPointsBuilder, Value as QdrantValue, Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::vector::index::{CollectionSpec, IndexError, IndexOp, StoredPoint, VectorIndex};
use crate::vector::names::{DENSE, SPARSE};
use crate::vector::search::{IndexHit, PointFilter, SearchQuery};
use crate::vector::{ChunkPoint, SparseVector};

/// The HNSW graph degree a serving collection gets (Qdrant's default).
const SERVING_HNSW_M: u64 = 16;

/// A Qdrant server.
pub struct ServerIndex {
    client: Qdrant,
}

impl ServerIndex {
    /// A client for the server at `url` (its gRPC port, e.g. `http://localhost:6334`).
    pub fn connect(url: &str, api_key: Option<String>) -> Result<Self, IndexError> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .skip_compatibility_check()
            .build()
            .map_err(|error| IndexError::engine("(server)", format!("QDRANT_URL={url}: {error}")))?;
        Ok(Self { client })
    }
}

fn failed(collection: &str) -> impl Fn(qdrant_client::QdrantError) -> IndexError + '_ {
    move |error| IndexError::engine(collection, error)
}

/// A [`PointFilter`] as a server filter.
fn server_filter(filter: &PointFilter) -> Result<Filter, IndexError> {
    let mut must = Vec::new();
    if let Some(tenant) = &filter.tenant_id {
        must.push(Condition::matches("tenant", tenant.clone()));
    }
    match filter.document_ids.as_slice() {
        [] => {}
        [one] => must.push(Condition::matches("document", one.to_string())),
        many => must.push(Condition::matches("document", many.iter().map(Uuid::to_string).collect::<Vec<_>>())),
    }
    if let Some(from) = filter.from_chunk_index {
        must.push(Condition::range("chunk_index", Range { gte: Some(f64::from(from)), ..Range::default() }));
    }
    for condition in &filter.metadata {
        condition.validate()?;
        let key = format!("metadata.{}", condition.key);
        must.push(match &condition.value {
            Value::String(text) => Condition::matches(key, text.clone()),
            Value::Bool(flag) => Condition::matches(key, *flag),
            Value::Number(number) => Condition::matches(key, number.as_i64().unwrap_or_default()),
            other => {
                return Err(IndexError::Invalid(format!("metadata filter {}: cannot match {other}", condition.key)));
            }
        });
    }
    Ok(Filter::must(must))
}

fn server_point(point: &ChunkPoint) -> Result<PointStruct, IndexError> {
    let mut vectors: HashMap<String, Vector> = HashMap::new();
    vectors.insert(SPARSE.to_owned(), Vector::new_sparse(point.sparse.indices.clone(), point.sparse.values.clone()));
    if let Some(dense) = &point.dense {
        vectors.insert(DENSE.to_owned(), Vector::new_dense(dense.clone()));
    }
    let payload = Payload::try_from(point.payload())
        .map_err(|error| IndexError::Invalid(format!("document {}: {error}", point.document_id)))?;
    Ok(PointStruct::new(point.id().to_string(), vectors, payload))
}

fn json_payload(payload: HashMap<String, QdrantValue>) -> Value {
    Value::Object(payload.into_iter().map(|(key, value)| (key, value.into_json())).collect())
}

fn uuid_of(id: Option<PointId>) -> Option<Uuid> {
    match id?.point_id_options? {
        PointIdOptions::Uuid(text) => text.parse().ok(),
        PointIdOptions::Num(_) => None,
    }
}

#[async_trait]
impl VectorIndex for ServerIndex {
    fn backend_name(&self) -> &'static str {
        "qdrant"
    }

    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<(), IndexError> {
        let name = spec.name.as_str();
        if self.client.collection_exists(name).await.map_err(failed(name))? {
            return Ok(());
        }
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(SPARSE, SparseVectorParamsBuilder::default().modifier(Modifier::Idf as i32));
        let mut create = CreateCollectionBuilder::new(name).sparse_vectors_config(sparse);
        if let Some(dimensions) = spec.dense_dimensions {
            let mut dense = VectorsConfigBuilder::default();
            dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(u64::from(dimensions), Distance::Cosine));
            create = create.vectors_config(dense);
        }
        self.client.create_collection(create).await.map_err(failed(name))?;
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(name, "tenant", FieldType::Keyword)
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                    .wait(true),
            )
            .await
            .map_err(failed(name))?;
        for (field, kind) in [("document", FieldType::Keyword), ("chunk_index", FieldType::Integer)] {
            let index = CreateFieldIndexCollectionBuilder::new(name, field, kind).wait(true);
            self.client.create_field_index(index).await.map_err(failed(name))?;
        }
        Ok(())
    }

    async fn drop_collection(&self, name: &str) -> Result<(), IndexError> {
        if self.client.collection_exists(name).await.map_err(failed(name))? {
            self.client.delete_collection(name).await.map_err(failed(name))?;
        }
        Ok(())
    }

    async fn collection_exists(&self, name: &str) -> Result<bool, IndexError> {
        self.client.collection_exists(name).await.map_err(failed(name))
    }

    async fn apply(&self, name: &str, ops: Vec<IndexOp>) -> Result<(), IndexError> {
        for op in ops {
            match op {
                IndexOp::Upsert(points) => {
                    let points = points.iter().map(server_point).collect::<Result<Vec<_>, _>>()?;
                    let upsert = UpsertPointsBuilder::new(name, points).wait(true);
                    self.client.upsert_points(upsert).await.map_err(failed(name))?;
                }
                IndexOp::DeleteDocuments(documents) => {
                    let filter = server_filter(&PointFilter { document_ids: documents, ..PointFilter::default() })?;
                    let delete = DeletePointsBuilder::new(name).points(filter).wait(true);
                    self.client.delete_points(delete).await.map_err(failed(name))?;
                }
                IndexOp::DeleteChunksFrom { document_id, from_index } => {
                    let filter = server_filter(&PointFilter {
                        document_ids: vec![document_id],
                        from_chunk_index: Some(from_index),
                        ..PointFilter::default()
                    })?;
                    let delete = DeletePointsBuilder::new(name).points(filter).wait(true);
                    self.client.delete_points(delete).await.map_err(failed(name))?;
                }
                IndexOp::SetMetadata { document_id, metadata, position } => {
                    let filter =
                        server_filter(&PointFilter { document_ids: vec![document_id], ..PointFilter::default() })?;
                    let payload =
                        Payload::try_from(json!({ "metadata": Value::Object(metadata), "position": position }))
                            .map_err(|error| IndexError::Invalid(format!("document {document_id}: {error}")))?;
                    let set = SetPayloadPointsBuilder::new(name, payload).points_selector(filter).wait(true);
                    self.client.set_payload(set).await.map_err(failed(name))?;
                }
            }
        }
        Ok(())
    }

    async fn search(&self, name: &str, query: &SearchQuery) -> Result<Vec<IndexHit>, IndexError> {
        if !self.client.collection_exists(name).await.map_err(failed(name))? {
            return Err(IndexError::MissingCollection(name.to_owned()));
        }
        let filter = server_filter(&query.filter)?;
        let sparse = query.sparse.as_ref().map(|s| VectorInput::new_sparse(s.indices.clone(), s.values.clone()));
        let dense = query.dense.as_ref().map(|d| VectorInput::new_dense(d.clone()));
        let request = QueryPointsBuilder::new(name).filter(filter.clone()).limit(query.limit as u64).with_payload(true);
        let request = match (sparse, dense) {
            (Some(sparse), Some(dense)) => {
                let prefetch = |input: VectorInput, using: &str| {
                    PrefetchQueryBuilder::default()
                        .query(Query::new_nearest(input))
                        .using(using)
                        .filter(filter.clone())
                        .limit(query.prefetch_limit as u64)
                };
                request
                    .add_prefetch(prefetch(sparse, SPARSE))
                    .add_prefetch(prefetch(dense, DENSE))
                    .query(Query::new_rrf(RrfBuilder::with_k(query.rrf_k as u32)))
            }
            (Some(sparse), None) => request.query(Query::new_nearest(sparse)).using(SPARSE),
            (None, Some(dense)) => request.query(Query::new_nearest(dense)).using(DENSE),
            (None, None) => return Ok(Vec::new()),
        };
        let response = self.client.query(request).await.map_err(failed(name))?;
        response
            .result
            .into_iter()
            .map(|point| {
                let payload = json_payload(point.payload);
                IndexHit::from_payload(point.score, &payload)
                    .ok_or_else(|| IndexError::engine(name, "a point has an unreadable payload"))
            })
            .collect()
    }

    async fn scroll(&self, name: &str, after: Option<Uuid>, limit: usize) -> Result<Vec<StoredPoint>, IndexError> {
        let mut request = ScrollPointsBuilder::new(name).limit(limit as u32 + 1).with_payload(true).with_vectors(true);
        if let Some(after) = after {
            request = request.offset(PointId::from(after.to_string()));
        }
        let response = self.client.scroll(request).await.map_err(failed(name))?;
        let mut points = Vec::new();
        for record in response.result {
            let Some(id) = uuid_of(record.id) else { continue };
            if Some(id) == after {
                continue;
            }
            let mut sparse = SparseVector::default();
            let mut dense = None;
            if let Some(VectorsOptions::Vectors(named)) = record.vectors.and_then(|v| v.vectors_options) {
                for (vector_name, vector) in named.vectors {
                    match (vector_name.as_str(), vector.into_vector()) {
                        (SPARSE, OutputVector::Sparse(vector)) => {
                            let mut pairs: Vec<(u32, f32)> = vector.indices.into_iter().zip(vector.values).collect();
                            pairs.sort_by_key(|(index, _)| *index);
                            sparse = SparseVector {
                                indices: pairs.iter().map(|(i, _)| *i).collect(),
                                values: pairs.iter().map(|(_, v)| *v).collect(),
                            };
                        }
                        (DENSE, OutputVector::Dense(vector)) => dense = Some(vector.data),
                        _ => {}
                    }
                }
            }
            points.push(StoredPoint { id, payload: json_payload(record.payload), sparse, dense });
            if points.len() == limit {
                break;
            }
        }
        Ok(points)
    }

    async fn count(&self, name: &str) -> Result<u64, IndexError> {
        let response = self.client.count(CountPointsBuilder::new(name).exact(true)).await.map_err(failed(name))?;
        Ok(response.result.map_or(0, |result| result.count))
    }

    async fn set_bulk_load(&self, name: &str, bulk: bool) -> Result<(), IndexError> {
        // Qdrant's advice for bulk uploads: no HNSW graph (`m = 0`) while loading, the default graph afterwards
        // (the server then builds it in the background).
        let m = if bulk { 0 } else { SERVING_HNSW_M };
        let update = UpdateCollectionBuilder::new(name).hnsw_config(HnswConfigDiffBuilder::default().m(m));
        self.client.update_collection(update).await.map_err(failed(name))?;
        Ok(())
    }

    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), IndexError> {
        // Repointing is delete + create; a reader of the alias may miss it for that instant (dossier does not read it).
        let _ = self.client.delete_alias(alias).await;
        self.client.create_alias(CreateAliasBuilder::new(collection, alias)).await.map_err(failed(collection))?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), IndexError> {
        self.client.health_check().await.map(|_| ()).map_err(failed("(server)"))
    }
}
