//! The evaluation harness end to end on the SciFact training sample in `tests/data/scifact/`: the real files through the BEIR
//! readers, the qrels check and the runner, with retrievers whose scores are known in advance (the real search is
//! wired in by `dossier eval` and gated in `tests/evaluation/`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use async_trait::async_trait;
use dossier::eval::{EvalSet, Hit, RetrieveError, Retriever, evaluate, read_corpus, read_qrels, read_queries};

/// The SciFact training queries and qrels. Two claims repeat an earlier claim's text word for word (ids 86 and 90);
/// the oracles below know a query only by its text, so those two are left out of the queries, which also makes
/// their 3 judgements ones that name unknown queries.
fn scifact() -> EvalSet {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/scifact");
    let corpus = read_corpus(&data.join("corpus.jsonl.gz"), None).expect("corpus");
    let mut texts = HashSet::new();
    let queries = read_queries(&data.join("queries_train.jsonl"))
        .expect("queries")
        .into_iter()
        .filter(|query| texts.insert(query.text.clone()))
        .collect();
    let qrels = read_qrels(&data.join("qrels_train.tsv")).expect("qrels");
    EvalSet::new(queries, qrels, corpus.iter().map(|document| document.id.as_str()))
}

/// Answers each query with its relevant documents, best first, after `decoys` non-relevant ones, each as two chunks.
struct Oracle {
    relevant: HashMap<String, Vec<String>>,
    decoys: usize,
}

impl Oracle {
    fn new(set: &EvalSet, decoys: usize) -> Self {
        let relevant = set
            .queries
            .iter()
            .map(|query| {
                let judged = set.qrels.of(&query.id).map(|judged| judged.keys().cloned().collect()).unwrap_or_default();
                (query.text.clone(), judged)
            })
            .collect();
        Self { relevant, decoys }
    }
}

#[async_trait]
impl Retriever for Oracle {
    async fn retrieve(&self, query: &str, depth: usize) -> Result<Vec<Hit>, RetrieveError> {
        let relevant = self.relevant.get(query).ok_or("unknown query text")?;
        let decoys = (0..self.decoys).map(|n| format!("decoy-{n}"));
        let ranked: Vec<String> = decoys.chain(relevant.iter().cloned()).take(depth).collect();
        let top = ranked.len() as f64;
        // Two chunks per document: the best one ranks it, the weaker one must not count it twice.
        Ok(ranked
            .iter()
            .enumerate()
            .flat_map(|(rank, doc)| [Hit::new(doc.as_str(), top - rank as f64), Hit::new(doc.as_str(), -1.0)])
            .collect())
    }
}

#[tokio::test]
async fn scifact_with_oracle_retriever_scores_one_and_counts_the_unknown_queries() {
    let set = scifact();
    assert_eq!((set.summary.judgements, set.summary.judged_queries), (919, 807));
    assert_eq!((set.summary.unknown_queries, set.summary.unknown_query_judgements), (2, 3));
    assert_eq!(set.summary.unknown_documents + set.summary.unjudged_queries + set.summary.queries_without_relevant, 0);

    let report = evaluate(&set, &Oracle::new(&set, 0), &[10]).await.expect("evaluated");

    assert_eq!(report.queries, 807);
    assert_eq!(report.qrels, set.summary);
    assert_eq!((report.ndcg_at_10, report.recall_at_10, report.recall_at_100, report.mrr_at_10), (1.0, 1.0, 1.0, 1.0));
    assert!(report.per_query.iter().all(|result| result.first_relevant_rank == Some(1)));
}

#[tokio::test]
async fn scifact_with_relevant_documents_after_ten_decoys_scores_zero_at_ten_and_full_recall_at_100() {
    let set = scifact();

    let report = evaluate(&set, &Oracle::new(&set, 10), &[10, 20]).await.expect("evaluated");

    assert_eq!((report.ndcg_at_10, report.recall_at_10, report.mrr_at_10), (0.0, 0.0, 0.0));
    assert_eq!(report.recall_at_100, 1.0);
    assert!(report.at(20).is_some_and(|at_20| at_20.ndcg > 0.0 && (at_20.mrr - 1.0 / 11.0).abs() < 1e-12));
    let first = &report.per_query[0];
    assert_eq!((first.first_relevant_rank, first.top.first().map(String::as_str)), (Some(11), Some("decoy-0")));
}
