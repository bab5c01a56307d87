//! Retrieval metrics computed exactly as trec_eval computes them (pytrec_eval is trec_eval 9.x behind a Python
//! binding, and BEIR reports pytrec_eval's numbers):
//!
//! - **Ranking.** Hits are first aggregated per document (a document's score is its best chunk's score), then sorted
//!   by score descending and, on equal scores, by document id *descending* in byte order: trec_eval's
//!   `comp_sim_docno` in `form_res_rels.c` compares `strcmp(p2->docno, p1->docno)`, which every measure below goes
//!   through (pytrec_eval pre-sorts ties ascending, but trec_eval's own `qsort` re-sorts them, so the descending
//!   order is what is scored). Each document therefore appears once and is credited once.
//! - **Relevance.** A judgement of 1 or more is relevant; 0 or less is not (trec_eval's default `relevance_level` of
//!   1; negative values are "judged not relevant"). Unjudged documents are not relevant.
//! - **nDCG@k** (`ndcg_cut.k`, `m_ndcg_cut.c`): DCG@k = Σ over ranks r ≤ k of rel(r) / log2(r + 1), with *linear*
//!   gains — the relevance value itself, not 2^rel − 1 (the measure's own help text: "Gain values are the relevance
//!   values in the qrels file"). The ideal DCG@k takes every judged-relevant document of the query (retrieved or
//!   not), sorted by relevance descending, cut at k. A query with no relevant document scores 0 (trec_eval leaves
//!   DCG unnormalised when the ideal is 0, and DCG is then 0).
//! - **Recall@k** (`recall.k`, `m_recall.c`): relevant documents among the first k ÷ all relevant documents of the
//!   query; 0 when the query has none.
//! - **MRR@k**: 1 / rank of the first relevant document among the first k, else 0 — BEIR's `mrr` (relevant means a
//!   qrels score > 0), but on the trec_eval ranking above, so all three metrics see one order. (BEIR sorts with
//!   Python's stable `sorted`, which keeps ties in the run's insertion order; only ties can differ.)
//!
//! Means are plain arithmetic means over the evaluated queries, unrounded (BEIR rounds to 5 decimals when printing).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// One retrieved item: a chunk or a whole document, identified by the document it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The corpus document id (BEIR `_id`).
    pub doc_id: String,
    /// The retrieval score; higher is better. Must not be NaN.
    pub score: f64,
}

impl Hit {
    /// A hit for `doc_id` with `score`.
    pub fn new(doc_id: impl Into<String>, score: f64) -> Self {
        Self { doc_id: doc_id.into(), score }
    }
}

/// Collapses chunk hits to one hit per document, scored by its best chunk, and ranks the documents: score
/// descending, then document id descending (trec_eval's tie order). Hits must not have NaN scores (the runner
/// rejects them first); were one to slip through it would compare equal to everything.
pub fn rank_documents(hits: &[Hit]) -> Vec<Hit> {
    let mut best: HashMap<&str, f64> = HashMap::with_capacity(hits.len());
    for hit in hits {
        best.entry(hit.doc_id.as_str()).and_modify(|score| *score = score.max(hit.score)).or_insert(hit.score);
    }
    let mut ranked: Vec<Hit> = best.into_iter().map(|(doc_id, score)| Hit::new(doc_id, score)).collect();
    ranked.sort_by(|a, b| {
        // partial_cmp, not total_cmp: trec_eval compares doubles with `<`/`>`, so 0.0 and -0.0 tie.
        b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal).then_with(|| b.doc_id.cmp(&a.doc_id))
    });
    ranked
}

/// The relevance of `doc_id` for a query: its judgement if positive, else 0 (not relevant).
fn gain(judgements: &BTreeMap<String, i32>, doc_id: &str) -> f64 {
    judgements.get(doc_id).map_or(0.0, |&relevance| f64::from(relevance.max(0)))
}

/// The rank-r discount, r counted from 1.
fn discount(rank: usize) -> f64 {
    ((rank + 1) as f64).log2()
}

/// nDCG@k of a ranking (already aggregated and ordered, see [`rank_documents`]) against one query's judgements.
pub fn ndcg_at(ranking: &[Hit], judgements: &BTreeMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(index, hit)| gain(judgements, &hit.doc_id) / discount(index + 1))
        .sum();
    let mut ideal: Vec<i32> = judgements.values().copied().filter(|&relevance| relevance > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let ideal_dcg: f64 =
        ideal.iter().take(k).enumerate().map(|(index, &relevance)| f64::from(relevance) / discount(index + 1)).sum();
    if ideal_dcg > 0.0 { dcg / ideal_dcg } else { 0.0 }
}

/// Recall@k: the share of the query's relevant documents found among the first k of the ranking.
pub fn recall_at(ranking: &[Hit], judgements: &BTreeMap<String, i32>, k: usize) -> f64 {
    let relevant = relevant_count(judgements);
    if relevant == 0 {
        return 0.0;
    }
    let found = ranking.iter().take(k).filter(|hit| gain(judgements, &hit.doc_id) > 0.0).count();
    found as f64 / relevant as f64
}

/// MRR@k for one query: 1 / the rank of the first relevant document among the first k, or 0.
pub fn mrr_at(ranking: &[Hit], judgements: &BTreeMap<String, i32>, k: usize) -> f64 {
    first_relevant_rank(ranking, judgements).filter(|&rank| rank <= k).map_or(0.0, |rank| 1.0 / rank as f64)
}

/// The 1-based rank of the first relevant document in the ranking, if any.
pub fn first_relevant_rank(ranking: &[Hit], judgements: &BTreeMap<String, i32>) -> Option<usize> {
    ranking.iter().position(|hit| gain(judgements, &hit.doc_id) > 0.0).map(|index| index + 1)
}

/// How many of the query's judged documents are relevant (judgement ≥ 1).
pub fn relevant_count(judgements: &BTreeMap<String, i32>) -> usize {
    judgements.values().filter(|&&relevance| relevance > 0).count()
}

/// The three metrics at one cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AtCutoff {
    /// The cutoff k.
    pub k: usize,
    /// nDCG@k.
    pub ndcg: f64,
    /// Recall@k.
    pub recall: f64,
    /// MRR@k.
    pub mrr: f64,
}

impl AtCutoff {
    /// All three metrics of one ranking at cutoff `k`.
    pub fn score(ranking: &[Hit], judgements: &BTreeMap<String, i32>, k: usize) -> Self {
        Self {
            k,
            ndcg: ndcg_at(ranking, judgements, k),
            recall: recall_at(ranking, judgements, k),
            mrr: mrr_at(ranking, judgements, k),
        }
    }

    /// The arithmetic mean of each metric over `scores` (all at cutoff `k`); zeros when there are none.
    pub fn mean<'a>(k: usize, scores: impl IntoIterator<Item = &'a AtCutoff>) -> Self {
        let (mut sum, mut count) = (Self { k, ndcg: 0.0, recall: 0.0, mrr: 0.0 }, 0usize);
        for score in scores {
            sum.ndcg += score.ndcg;
            sum.recall += score.recall;
            sum.mrr += score.mrr;
            count += 1;
        }
        if count > 0 {
            let n = count as f64;
            sum.ndcg /= n;
            sum.recall /= n;
            sum.mrr /= n;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPSILON: f64 = 1e-12;

    fn judged(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
        pairs.iter().map(|(doc, relevance)| ((*doc).to_owned(), *relevance)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<Hit> {
        // Strictly decreasing scores: the order given is the ranking.
        ids.iter().enumerate().map(|(index, id)| Hit::new(*id, 100.0 - index as f64)).collect()
    }

    fn ids(ranked: &[Hit]) -> Vec<&str> {
        ranked.iter().map(|hit| hit.doc_id.as_str()).collect()
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < EPSILON, "{actual} != {expected}");
    }

    #[test]
    fn rank_documents_with_tied_scores_orders_ids_descending_like_trec_eval() {
        // trec_eval's comp_sim_docno: score descending, then strcmp(p2, p1), i.e. id descending ("b" > "a").
        let hits = [Hit::new("a", 1.0), Hit::new("c", 2.0), Hit::new("b", 1.0), Hit::new("d", 0.5)];
        assert_eq!(ids(&rank_documents(&hits)), ["c", "b", "a", "d"]);
        // Byte order, not numeric: "9" > "10" because '9' > '1'.
        let numeric = [Hit::new("10", 1.0), Hit::new("9", 1.0), Hit::new("100", 1.0)];
        assert_eq!(ids(&rank_documents(&numeric)), ["9", "100", "10"]);
        // -0.0 and 0.0 are equal scores, so the id decides.
        let zeros = [Hit::new("x", -0.0), Hit::new("y", 0.0)];
        assert_eq!(ids(&rank_documents(&zeros)), ["y", "x"]);
    }

    #[test]
    fn rank_documents_with_several_chunks_per_document_keeps_each_document_once_at_its_best_score() {
        let hits = [Hit::new("d1", 0.2), Hit::new("d2", 0.5), Hit::new("d1", 0.9), Hit::new("d2", 0.1)];
        let ranked = rank_documents(&hits);
        assert_eq!(ranked, vec![Hit::new("d1", 0.9), Hit::new("d2", 0.5)]);
    }

    #[test]
    fn ndcg_with_binary_relevance_matches_hand_computation() {
        // Relevant: d1, d3 (1 each). Ranking d1, d2, d3.
        // DCG@3 = 1/log2(2) + 0/log2(3) + 1/log2(4) = 1 + 0.5 = 1.5
        // IDCG@3 = 1/log2(2) + 1/log2(3) = 1 + 0.630929753571457 = 1.630929753571457
        // nDCG@3 = 1.5 / 1.630929753571457 = 0.9197207891481876
        let judgements = judged(&[("d1", 1), ("d3", 1)]);
        let expected = 1.5 / (1.0 + 1.0 / 3f64.log2());
        assert_close(ndcg_at(&ranking(&["d1", "d2", "d3"]), &judgements, 3), expected);
        assert_close(expected, 0.919_720_789_148_187_6);
    }

    #[test]
    fn ndcg_with_graded_relevance_uses_linear_gains() {
        // Judged: d1 = 1, d2 = 2, d3 = 3. Ranking d1, d2, d3 (worst first).
        // DCG@3  = 1/log2(2) + 2/log2(3) + 3/log2(4) = 1 + 1.261859507 + 1.5 = 3.761859507
        // IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.261859507 + 0.5 = 4.761859507
        // nDCG@3 = 0.7899980042460358; with 2^rel − 1 gains it would be (1 + 3/log2 3 + 7/2)/(7 + 3/log2 3 + 1/2) = 0.6806…
        let judgements = judged(&[("d1", 1), ("d2", 2), ("d3", 3)]);
        let log3 = 3f64.log2();
        let expected = (1.0 + 2.0 / log3 + 1.5) / (3.0 + 2.0 / log3 + 0.5);
        assert_close(ndcg_at(&ranking(&["d1", "d2", "d3"]), &judgements, 3), expected);
        assert_close(expected, 0.789_998_004_246_035_8);
    }

    #[test]
    fn ndcg_ideal_counts_relevant_documents_not_retrieved_and_is_cut_at_k() {
        // Relevant: d1, d2, d3 (1 each); retrieved only d1 at rank 2.
        // DCG@2 = 0 + 1/log2(3) = 0.630929753571457
        // IDCG@2 = 1 + 1/log2(3) (the third relevant document falls beyond k = 2) = 1.630929753571457
        let judgements = judged(&[("d1", 1), ("d2", 1), ("d3", 1)]);
        let log3 = 3f64.log2();
        assert_close(ndcg_at(&ranking(&["x", "d1"]), &judgements, 2), (1.0 / log3) / (1.0 + 1.0 / log3));
        // At k = 1 the relevant document at rank 2 does not count: 0.
        assert_close(ndcg_at(&ranking(&["x", "d1"]), &judgements, 1), 0.0);
    }

    #[test]
    fn metrics_treat_zero_and_negative_judgements_as_not_relevant() {
        // d0 judged 0, dn judged −1, d1 judged 1. Ranking dn, d0, d1.
        // DCG@3 = 1/log2(4) = 0.5; IDCG@3 = 1; nDCG = 0.5. Recall@3 = 1/1. MRR@3 = 1/3.
        let judgements = judged(&[("d0", 0), ("dn", -1), ("d1", 1)]);
        let ranked = ranking(&["dn", "d0", "d1"]);
        assert_close(ndcg_at(&ranked, &judgements, 3), 0.5);
        assert_close(recall_at(&ranked, &judgements, 3), 1.0);
        assert_close(mrr_at(&ranked, &judgements, 3), 1.0 / 3.0);
        assert_eq!(relevant_count(&judgements), 1);
    }

    #[test]
    fn metrics_with_no_relevant_documents_are_zero() {
        let judgements = judged(&[("d0", 0)]);
        let ranked = ranking(&["d0", "d1"]);
        assert_eq!(AtCutoff::score(&ranked, &judgements, 10), AtCutoff { k: 10, ndcg: 0.0, recall: 0.0, mrr: 0.0 });
    }

    #[test]
    fn metrics_with_empty_run_are_zero() {
        let judgements = judged(&[("d1", 2)]);
        assert_eq!(AtCutoff::score(&[], &judgements, 10), AtCutoff { k: 10, ndcg: 0.0, recall: 0.0, mrr: 0.0 });
        assert_eq!(first_relevant_rank(&[], &judgements), None);
    }

    #[test]
    fn recall_and_mrr_respect_the_cutoff() {
        // Relevant: d1, d2, d3, d4. Ranking x, d2, y, d4, d1.
        // Recall@2 = 1/4; Recall@4 = 2/4; Recall@5 = 3/4. MRR@1 = 0; MRR@2 = 1/2; MRR@10 = 1/2.
        let judgements = judged(&[("d1", 1), ("d2", 1), ("d3", 1), ("d4", 1)]);
        let ranked = ranking(&["x", "d2", "y", "d4", "d1"]);
        assert_close(recall_at(&ranked, &judgements, 2), 0.25);
        assert_close(recall_at(&ranked, &judgements, 4), 0.5);
        assert_close(recall_at(&ranked, &judgements, 5), 0.75);
        assert_close(mrr_at(&ranked, &judgements, 1), 0.0);
        assert_close(mrr_at(&ranked, &judgements, 2), 0.5);
        assert_close(mrr_at(&ranked, &judgements, 10), 0.5);
    }

    #[test]
    fn metrics_on_chunk_hits_credit_each_relevant_document_once() {
        // Three chunks of relevant d1 outscore everything: after aggregation d1 is rank 1 once, x rank 2, d2 rank 3.
        // Relevant d1, d2. DCG@3 = 1 + 1/log2(4) = 1.5; IDCG@3 = 1 + 1/log2(3).
        // Without aggregation d1 would fill ranks 1–3 and count three times (DCG > IDCG, nDCG > 1).
        let hits =
            [Hit::new("d1", 0.9), Hit::new("d1", 0.8), Hit::new("d1", 0.7), Hit::new("x", 0.6), Hit::new("d2", 0.5)];
        let judgements = judged(&[("d1", 1), ("d2", 1)]);
        let ranked = rank_documents(&hits);
        assert_close(ndcg_at(&ranked, &judgements, 3), 1.5 / (1.0 + 1.0 / 3f64.log2()));
        assert_close(recall_at(&ranked, &judgements, 2), 0.5);
    }

    #[test]
    fn metrics_on_tied_scores_use_the_trec_eval_order() {
        // d1 (relevant) and d2 tie at 1.0; ids descending puts d2 first, so d1 is at rank 2.
        // nDCG@10 = (1/log2 3) / 1 = 0.6309…; MRR@10 = 1/2.
        let judgements = judged(&[("d1", 1)]);
        let ranked = rank_documents(&[Hit::new("d1", 1.0), Hit::new("d2", 1.0)]);
        assert_close(ndcg_at(&ranked, &judgements, 10), 1.0 / 3f64.log2());
        assert_close(mrr_at(&ranked, &judgements, 10), 0.5);
    }

    #[test]
    fn mean_averages_each_metric_and_is_zero_for_no_queries() {
        let scores = [
            AtCutoff { k: 10, ndcg: 1.0, recall: 0.5, mrr: 1.0 },
            AtCutoff { k: 10, ndcg: 0.0, recall: 0.25, mrr: 0.5 },
        ];
        assert_eq!(AtCutoff::mean(10, &scores), AtCutoff { k: 10, ndcg: 0.5, recall: 0.375, mrr: 0.75 });
        assert_eq!(AtCutoff::mean(10, &[]), AtCutoff { k: 10, ndcg: 0.0, recall: 0.0, mrr: 0.0 });
    }

    /// `testdata/trec_eval_golden.json`: a synthetic run (chunk hits with many tied scores, byte-order-tricky ids)
    /// and graded qrels (−1 to 3, some queries with nothing relevant), with the per-query values pytrec_eval
    /// (trec_eval 9) computed on the best-chunk aggregation; `testdata/make_trec_eval_golden.py` regenerates it.
    #[derive(serde::Deserialize)]
    struct Golden {
        qrels: BTreeMap<String, BTreeMap<String, i32>>,
        chunks: BTreeMap<String, Vec<(String, f64)>>,
        expected: BTreeMap<String, BTreeMap<String, f64>>,
    }

    #[test]
    fn metrics_match_pytrec_eval_on_golden_run() {
        let golden: Golden = serde_json::from_str(include_str!("testdata/trec_eval_golden.json")).expect("golden");
        assert_eq!(golden.expected.len(), 30);
        let mut nonzero = 0;
        for (query_id, expected) in &golden.expected {
            let hits: Vec<Hit> =
                golden.chunks[query_id].iter().map(|(doc, score)| Hit::new(doc.as_str(), *score)).collect();
            let ranking = rank_documents(&hits);
            let judgements = &golden.qrels[query_id];
            for k in [1, 5, 10, 100] {
                let ndcg = ndcg_at(&ranking, judgements, k);
                let recall = recall_at(&ranking, judgements, k);
                assert!((ndcg - expected[&format!("ndcg_cut_{k}")]).abs() < 1e-9, "{query_id} ndcg@{k}: {ndcg}");
                assert!((recall - expected[&format!("recall_{k}")]).abs() < 1e-9, "{query_id} recall@{k}: {recall}");
            }
            // trec_eval's recip_rank has no cutoff: MRR at a depth beyond the whole ranking.
            let mrr = mrr_at(&ranking, judgements, usize::MAX);
            assert!((mrr - expected["recip_rank"]).abs() < 1e-12, "{query_id} mrr: {mrr}");
            nonzero += usize::from(expected["ndcg_cut_10"] > 0.0);
        }
        assert!(nonzero >= 20, "the golden run must exercise non-trivial rankings");
    }
}
