//! The evaluation runner: every judged query through a [`Retriever`], each ranking scored with [`super::metrics`],
//! per-query results and their means in one serde [`Report`]. It knows nothing of how retrieval happens: the CLI
//! wires in the real pipeline and search, the tests a scripted retriever.
//!
//! Which queries are evaluated, as BEIR does: the queries that have at least one judgement (BEIR's loader keeps only
//! the queries named in the qrels), including those whose judgements are all 0 (they score 0, and count in the
//! mean, as pytrec_eval scores them). Every evaluated query is run, so a query the retriever finds nothing for
//! scores 0 and counts too (trec_eval's `-c`; pytrec_eval would skip a query missing from the run, but BEIR's
//! retrievers always return one).
//!
//! Threading: queries are sent to the retriever up to [`DEFAULT_CONCURRENCY`] at a time on the caller's runtime.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::beir::{Qrels, Query};
use super::metrics::{AtCutoff, Hit, first_relevant_rank, rank_documents, relevant_count};

/// How many queries are in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The cutoffs every report has, whatever else is asked for: the headline nDCG@10, Recall@10, Recall@100, MRR@10.
pub const HEADLINE_CUTOFFS: [usize; 2] = [10, 100];

/// Why a retrieval failed, as the retriever tells it.
pub type RetrieveError = Box<dyn std::error::Error + Send + Sync>;

/// Anything that answers a query with ranked hits.
#[async_trait]
pub trait Retriever: Send + Sync {
    /// Up to `depth` distinct documents for `query`, best first, as `(doc_id, score)` hits. Hits may be chunks: a
    /// document may appear several times, and the runner keeps its best score (so a chunk retriever should ask its
    /// index for enough chunks to cover `depth` documents). Scores must not be NaN.
    async fn retrieve(&self, query: &str, depth: usize) -> Result<Vec<Hit>, RetrieveError>;
}

/// What can stop an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Nothing to evaluate.
    #[error("no query has both text and judgements: nothing to evaluate")]
    NoJudgedQueries,
    /// A cutoff of 0.
    #[error("cutoffs must be at least 1, got {0:?}")]
    InvalidCutoff(Vec<usize>),
    /// The retriever failed for a query.
    #[error("retrieval failed for query `{query_id}`: {source}")]
    Retrieval {
        /// The query.
        query_id: String,
        /// The retriever's error.
        #[source]
        source: RetrieveError,
    },
    /// The retriever returned a NaN score.
    #[error("retriever returned a NaN score for document `{doc_id}` of query `{query_id}`")]
    NanScore {
        /// The query.
        query_id: String,
        /// The document.
        doc_id: String,
    },
}

/// What the qrels say against the corpus and the queries: judgements naming documents or queries that are not
/// there are counted here, not dropped in silence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrelsSummary {
    /// Judgement lines in the qrels file.
    pub judgements: usize,
    /// Queries with judgements and text: the evaluated ones.
    pub judged_queries: usize,
    /// Of those, queries with no relevant (≥ 1) judgement: they score 0 and count in the means.
    pub queries_without_relevant: usize,
    /// Judgements whose query is not in the queries file, and how many distinct such queries. Those queries cannot
    /// be run (there is no text), so they are left out of the means.
    pub unknown_query_judgements: usize,
    /// See `unknown_query_judgements`.
    pub unknown_queries: usize,
    /// Judgements (of evaluated queries) whose document is not in the corpus, and how many distinct such documents.
    /// They stay in the judgements, as pytrec_eval would keep them: a relevant one can never be retrieved, so it
    /// lowers recall and nDCG, as it should if the corpus lost a document.
    pub unknown_document_judgements: usize,
    /// See `unknown_document_judgements`.
    pub unknown_documents: usize,
    /// Queries in the queries file with no judgement (not evaluated, as in BEIR).
    pub unjudged_queries: usize,
}

/// The queries to run and their judgements, checked against the corpus.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// The evaluated queries, in the queries file's order.
    pub queries: Vec<Query>,
    /// Their judgements.
    pub qrels: Qrels,
    /// What the check found.
    pub summary: QrelsSummary,
}

impl EvalSet {
    /// Checks `qrels` against `queries` and the corpus's document ids, keeping the queries that have judgements.
    pub fn new<'a>(queries: Vec<Query>, qrels: Qrels, corpus_ids: impl IntoIterator<Item = &'a str>) -> Self {
        let corpus: HashSet<&str> = corpus_ids.into_iter().collect();
        let known_queries: HashSet<&str> = queries.iter().map(|query| query.id.as_str()).collect();
        let mut summary = QrelsSummary { judgements: qrels.lines, ..QrelsSummary::default() };
        let mut unknown_documents: BTreeSet<&str> = BTreeSet::new();
        for (query_id, judged) in &qrels.judgements {
            if !known_queries.contains(query_id.as_str()) {
                summary.unknown_queries += 1;
                summary.unknown_query_judgements += judged.len();
                continue;
            }
            for doc_id in judged.keys().filter(|doc_id| !corpus.contains(doc_id.as_str())) {
                summary.unknown_document_judgements += 1;
                unknown_documents.insert(doc_id);
            }
        }
        summary.unknown_documents = unknown_documents.len();
        let (judged, unjudged): (Vec<Query>, Vec<Query>) =
            queries.into_iter().partition(|query| qrels.judgements.contains_key(&query.id));
        summary.unjudged_queries = unjudged.len();
        summary.judged_queries = judged.len();
        summary.queries_without_relevant =
            judged.iter().filter(|query| qrels.of(&query.id).is_none_or(|j| relevant_count(j) == 0)).count();
        if summary.unknown_queries > 0 || summary.unknown_documents > 0 {
            tracing::warn!(
                unknown_queries = summary.unknown_queries,
                unknown_query_judgements = summary.unknown_query_judgements,
                unknown_documents = summary.unknown_documents,
                unknown_document_judgements = summary.unknown_document_judgements,
                "qrels_name_unknown_ids"
            );
        }
        Self { queries: judged, qrels, summary }
    }
}

/// One query's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// The query id.
    pub query_id: String,
    /// Its relevant (≥ 1) judged documents.
    pub relevant: usize,
    /// Distinct documents retrieved (after chunk aggregation).
    pub retrieved: usize,
    /// Rank of the first relevant document retrieved, if any (at any depth).
    pub first_relevant_rank: Option<usize>,
    /// The top of the ranking (at most 10 document ids), to see what was found instead.
    pub top: Vec<String>,
    /// The metrics at each cutoff.
    pub metrics: Vec<AtCutoff>,
}

/// The outcome of an evaluation: headline means, means at every cutoff, the qrels check and per-query results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Queries evaluated (the denominator of every mean).
    pub queries: usize,
    /// Documents asked of the retriever per query (the largest cutoff).
    pub depth: usize,
    /// Mean nDCG@10.
    #[serde(rename = "ndcg@10")]
    pub ndcg_at_10: f64,
    /// Mean Recall@10.
    #[serde(rename = "recall@10")]
    pub recall_at_10: f64,
    /// Mean Recall@100.
    #[serde(rename = "recall@100")]
    pub recall_at_100: f64,
    /// Mean MRR@10.
    #[serde(rename = "mrr@10")]
    pub mrr_at_10: f64,
    /// Means at every cutoff (the requested ones, 10 and 100), ascending.
    pub means: Vec<AtCutoff>,
    /// The qrels check.
    pub qrels: QrelsSummary,
    /// Per-query results, in the queries file's order.
    pub per_query: Vec<QueryResult>,
}

impl Report {
    /// The means at cutoff `k`, if it was evaluated.
    pub fn at(&self, k: usize) -> Option<&AtCutoff> {
        self.means.iter().find(|mean| mean.k == k)
    }
}

/// Runs every query of `set` through `retriever` to the largest cutoff and scores it at each of `cutoffs` (10 and
/// 100 are always added, for the headline numbers).
pub async fn evaluate(set: &EvalSet, retriever: &dyn Retriever, cutoffs: &[usize]) -> Result<Report, EvalError> {
    if cutoffs.contains(&0) {
        return Err(EvalError::InvalidCutoff(cutoffs.to_vec()));
    }
    if set.queries.is_empty() {
        return Err(EvalError::NoJudgedQueries);
    }
    let cutoffs: Vec<usize> =
        cutoffs.iter().chain(&HEADLINE_CUTOFFS).copied().collect::<BTreeSet<_>>().into_iter().collect();
    let depth = cutoffs.iter().copied().max().unwrap_or(HEADLINE_CUTOFFS[1]);
    let empty = BTreeMap::new();
    let mut per_query: Vec<(usize, QueryResult)> = futures::stream::iter(set.queries.iter().enumerate())
        .map(|(index, query)| {
            let judgements = set.qrels.of(&query.id).unwrap_or(&empty);
            let cutoffs = &cutoffs;
            async move {
                let hits = retriever
                    .retrieve(&query.text, depth)
                    .await
                    .map_err(|source| EvalError::Retrieval { query_id: query.id.clone(), source })?;
                if let Some(hit) = hits.iter().find(|hit| hit.score.is_nan()) {
                    return Err(EvalError::NanScore { query_id: query.id.clone(), doc_id: hit.doc_id.clone() });
                }
                Ok((index, score_query(&query.id, &hits, judgements, cutoffs)))
            }
        })
        .buffer_unordered(DEFAULT_CONCURRENCY)
        .try_collect()
        .await?;
    per_query.sort_by_key(|(index, _)| *index);
    let per_query: Vec<QueryResult> = per_query.into_iter().map(|(_, result)| result).collect();
    let means: Vec<AtCutoff> = cutoffs
        .iter()
        .enumerate()
        .map(|(position, &k)| AtCutoff::mean(k, per_query.iter().map(|result| &result.metrics[position])))
        .collect();
    let mean_at = |k: usize| means.iter().find(|mean| mean.k == k).copied().unwrap_or(AtCutoff::mean(k, &[]));
    let report = Report {
        queries: per_query.len(),
        depth,
        ndcg_at_10: mean_at(10).ndcg,
        recall_at_10: mean_at(10).recall,
        recall_at_100: mean_at(100).recall,
        mrr_at_10: mean_at(10).mrr,
        means,
        qrels: set.summary.clone(),
        per_query,
    };
    tracing::info!(
        queries = report.queries,
        ndcg_at_10 = report.ndcg_at_10,
        recall_at_100 = report.recall_at_100,
        "evaluation_done"
    );
    Ok(report)
}

/// Scores one query's hits at every cutoff.
fn score_query(query_id: &str, hits: &[Hit], judgements: &BTreeMap<String, i32>, cutoffs: &[usize]) -> QueryResult {
    let ranking = rank_documents(hits);
    QueryResult {
        query_id: query_id.to_owned(),
        relevant: relevant_count(judgements),
        retrieved: ranking.len(),
        first_relevant_rank: first_relevant_rank(&ranking, judgements),
        top: ranking.iter().take(10).map(|hit| hit.doc_id.clone()).collect(),
        metrics: cutoffs.iter().map(|&k| AtCutoff::score(&ranking, judgements, k)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Answers each query text with fixed hits; an unknown text is an error.
    struct Scripted(HashMap<&'static str, Vec<Hit>>);

    #[async_trait]
    impl Retriever for Scripted {
        async fn retrieve(&self, query: &str, _depth: usize) -> Result<Vec<Hit>, RetrieveError> {
            self.0.get(query).cloned().ok_or_else(|| format!("no script for {query:?}").into())
        }
    }

    fn query(id: &str, text: &str) -> Query {
        Query { id: id.to_owned(), text: text.to_owned(), metadata: None }
    }

    fn qrels(lines: &[(&str, &str, i32)]) -> Qrels {
        let mut qrels = Qrels::default();
        for (query, doc, relevance) in lines {
            qrels.judgements.entry((*query).to_owned()).or_default().insert((*doc).to_owned(), *relevance);
            qrels.lines += 1;
        }
        qrels
    }

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() < 1e-12
    }

    /// Two judged queries (q1, q2), one unjudged (q3), one judged but unknown (q9), a judged document not in the
    /// corpus (gone).
    fn sample_set() -> EvalSet {
        let queries = vec![query("q1", "first"), query("q2", "second"), query("q3", "unjudged")];
        let qrels = qrels(&[("q1", "d1", 1), ("q1", "d2", 1), ("q2", "d3", 2), ("q2", "gone", 1), ("q9", "d1", 1)]);
        EvalSet::new(queries, qrels, ["d1", "d2", "d3", "d4"])
    }

    #[test]
    fn eval_set_counts_unknown_queries_documents_and_unjudged_queries() {
        let set = sample_set();
        let expected = QrelsSummary {
            judgements: 5,
            judged_queries: 2,
            queries_without_relevant: 0,
            unknown_query_judgements: 1,
            unknown_queries: 1,
            unknown_document_judgements: 1,
            unknown_documents: 1,
            unjudged_queries: 1,
        };
        assert_eq!(set.summary, expected);
        let ids: Vec<&str> = set.queries.iter().map(|query| query.id.as_str()).collect();
        assert_eq!(ids, ["q1", "q2"]);
        // The unknown document stays judged: it counts as relevant in q2's denominator.
        assert_eq!(set.qrels.of("q2").map(relevant_count), Some(2));
    }

    #[tokio::test]
    async fn evaluate_with_chunk_hits_matches_hand_computed_means() {
        // q1: relevant d1, d2. Chunks: d3 0.9, d1 0.8, d1 0.7 (same document again), d2 0.6 → ranking d3, d1, d2.
        //   nDCG@10 = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3) = (0.6309297535714574 + 0.5) / 1.6309297535714574
        //   Recall@10 = 2/2 = 1; MRR@10 = 1/2.
        // q2: relevant d3 (2), gone (1, not in the corpus). Ranking d4, d3.
        //   nDCG@10 = (2/log2 3) / (2 + 1/log2 3) ; Recall@10 = 1/2; MRR@10 = 1/2.
        let retriever = Scripted(HashMap::from([
            ("first", vec![Hit::new("d3", 0.9), Hit::new("d1", 0.8), Hit::new("d1", 0.7), Hit::new("d2", 0.6)]),
            ("second", vec![Hit::new("d4", 2.0), Hit::new("d3", 1.0)]),
        ]));
        let set = sample_set();

        let report = evaluate(&set, &retriever, &[1]).await.expect("evaluated");

        let inv_log3 = 1.0 / 3f64.log2();
        let q1_ndcg = (inv_log3 + 0.5) / (1.0 + inv_log3);
        let q2_ndcg = (2.0 * inv_log3) / (2.0 + inv_log3);
        assert_eq!(report.queries, 2);
        assert_eq!(report.depth, 100);
        assert!(close(report.ndcg_at_10, (q1_ndcg + q2_ndcg) / 2.0), "{}", report.ndcg_at_10);
        assert!(close(report.recall_at_10, 0.75) && close(report.recall_at_100, 0.75));
        assert!(close(report.mrr_at_10, 0.5));
        let ks: Vec<usize> = report.means.iter().map(|mean| mean.k).collect();
        assert_eq!(ks, [1, 10, 100]);
        // At k = 1 neither query has a relevant document first.
        assert_eq!(report.at(1).map(|mean| (mean.ndcg, mean.recall, mean.mrr)), Some((0.0, 0.0, 0.0)));
        let first = &report.per_query[0];
        assert_eq!((first.query_id.as_str(), first.relevant, first.retrieved), ("q1", 2, 3));
        assert_eq!(
            (first.first_relevant_rank, first.top.clone()),
            (Some(2), vec!["d3".into(), "d1".into(), "d2".into()])
        );
        assert_eq!(report.per_query[1].query_id, "q2");
        assert_eq!(report.qrels.unknown_documents, 1);
    }

    #[tokio::test]
    async fn evaluate_with_empty_results_scores_the_query_zero_and_counts_it() {
        // q1 finds both relevant documents (nDCG 1); q2 finds nothing (0): the mean is 0.5, not 1.
        let retriever =
            Scripted(HashMap::from([("first", vec![Hit::new("d1", 1.0), Hit::new("d2", 0.5)]), ("second", vec![])]));
        let report = evaluate(&sample_set(), &retriever, &[10]).await.expect("evaluated");
        assert!(close(report.ndcg_at_10, 0.5), "{}", report.ndcg_at_10);
        assert_eq!(report.per_query[1].retrieved, 0);
        assert_eq!(report.per_query[1].first_relevant_rank, None);
    }

    #[tokio::test]
    async fn evaluate_report_serialises_headline_metrics_under_beir_style_names() {
        let retriever = Scripted(HashMap::from([("first", vec![Hit::new("d1", 1.0)]), ("second", vec![])]));
        let report = evaluate(&sample_set(), &retriever, &[]).await.expect("evaluated");

        let json = serde_json::to_value(&report).expect("serialise");

        for key in ["ndcg@10", "recall@10", "recall@100", "mrr@10", "queries", "means", "qrels", "per_query"] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        assert_eq!(json["qrels"]["unknown_queries"], 1);
        let back: Report = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, report);
    }

    #[tokio::test]
    async fn evaluate_with_failing_retriever_names_the_query() {
        let retriever = Scripted(HashMap::from([("first", vec![])]));
        let error = evaluate(&sample_set(), &retriever, &[10]).await.expect_err("no script for q2");
        assert!(matches!(&error, EvalError::Retrieval { query_id, .. } if query_id == "q2"), "{error}");
        assert!(error.to_string().contains("no script for \"second\""), "{error}");
    }

    #[tokio::test]
    async fn evaluate_with_nan_score_fails_naming_query_and_document() {
        let retriever = Scripted(HashMap::from([("first", vec![Hit::new("d1", f64::NAN)]), ("second", vec![])]));
        let error = evaluate(&sample_set(), &retriever, &[10]).await.expect_err("nan");
        assert_eq!(error.to_string(), "retriever returned a NaN score for document `d1` of query `q1`");
    }

    #[tokio::test]
    async fn evaluate_with_zero_cutoff_or_no_judged_query_fails() {
        let retriever = Scripted(HashMap::new());
        assert!(matches!(evaluate(&sample_set(), &retriever, &[0, 10]).await, Err(EvalError::InvalidCutoff(_))));
        let unjudged = EvalSet::new(vec![query("q1", "first")], Qrels::default(), ["d1"]);
        assert!(matches!(evaluate(&unjudged, &retriever, &[10]).await, Err(EvalError::NoJudgedQueries)));
    }
}
