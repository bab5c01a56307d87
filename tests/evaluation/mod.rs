//! The retrieval-quality gate: `dossier eval` (the real binary: pipeline, vector index, search) on a fixed sample of
//! the SciFact training split must keep nDCG@10 within a small margin of the value measured when the defaults were
//! tuned (docs/evaluation.md). Sparse always runs; hybrid runs when the test model is present (scripts/test.sh
//! downloads all-MiniLM-L6-v2 and sets DOSSIER_TEST_MODEL_DIR).
//!
//! The sample: every `query_step`-th training query that has judgements, and a corpus of their relevant documents
//! plus every `distractor_step`-th document of the full corpus as distractors, all in the files' order, so it is the
//! same on every run. Hybrid embeds every chunk with the model, so its sample is smaller (CI time).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::support::{Backend, Scratch};

/// nDCG@10 measured on this sample with the default settings (docs/evaluation.md), and the allowed drop.
const SPARSE_NDCG_AT_10: f64 = 0.7609;
const HYBRID_NDCG_AT_10: f64 = 0.8846;
const MARGIN: f64 = 0.02;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scifact");

/// The sparse gate's sample: every third query, every fifth distractor.
const SPARSE_SAMPLE: (usize, usize) = (3, 5);
/// The hybrid gate's sample: every sixth query, every twenty-fifth distractor.
const HYBRID_SAMPLE: (usize, usize) = (6, 25);

/// Writes the sample's corpus, queries and qrels into `dir`.
fn write_sample(dir: &Path, (query_step, distractor_step): (usize, usize)) -> (PathBuf, PathBuf, PathBuf) {
    let data = Path::new(DATA);
    let qrels_text = std::fs::read_to_string(data.join("qrels_train.tsv")).expect("qrels");
    let mut judged: Vec<String> = Vec::new();
    for line in qrels_text.lines().skip(1) {
        let query = line.split('\t').next().unwrap_or_default().to_owned();
        if judged.last() != Some(&query) && !judged.contains(&query) {
            judged.push(query);
        }
    }
    let chosen: BTreeSet<String> = judged.iter().step_by(query_step).cloned().collect();
    let mut relevant = BTreeSet::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for line in qrels_text.lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        if chosen.contains(fields[0]) {
            relevant.insert(fields[1].to_owned());
            qrels.push_str(line);
            qrels.push('\n');
        }
    }
    let queries: String = std::fs::read_to_string(data.join("queries_train.jsonl"))
        .expect("queries")
        .lines()
        .filter(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("query line");
            chosen.contains(value["_id"].as_str().unwrap_or_default())
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let corpus = flate2::read::GzDecoder::new(std::fs::File::open(data.join("corpus.jsonl.gz")).expect("corpus"));
    let mut sample = String::new();
    for (i, line) in std::io::BufReader::new(corpus).lines().enumerate() {
        let line = line.expect("corpus line");
        let value: serde_json::Value = serde_json::from_str(&line).expect("corpus json");
        if i % distractor_step == 0 || relevant.contains(value["_id"].as_str().unwrap_or_default()) {
            sample.push_str(&line);
            sample.push('\n');
        }
    }
    let paths = (dir.join("corpus.jsonl"), dir.join("queries.jsonl"), dir.join("qrels.tsv"));
    for (path, text) in [(&paths.0, &sample), (&paths.1, &queries), (&paths.2, &qrels)] {
        std::fs::File::create(path).and_then(|mut file| file.write_all(text.as_bytes())).expect("write sample");
    }
    paths
}

fn run_eval(scratch: &Scratch, mode: &str, model_dir: Option<&str>) -> serde_json::Value {
    let sample = if model_dir.is_some() { HYBRID_SAMPLE } else { SPARSE_SAMPLE };
    let (corpus, queries, qrels) = write_sample(&scratch.dir, sample);
    let mut command = scratch.dossier();
    command.args(["eval", "--mode", mode, "--corpus"]).arg(&corpus).arg("--queries").arg(&queries);
    command.arg("--qrels").arg(&qrels).arg("--workdir").arg(scratch.dir.join(format!("eval-{mode}")));
    if let Some(dir) = model_dir {
        command.env("EMBEDDING_MODEL_DIR", dir);
    }
    let output = command.output().expect("run dossier eval");
    assert!(output.status.success(), "dossier eval failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

fn check(report: &serde_json::Value, measured: f64) {
    let ndcg = report["ndcg@10"].as_f64().expect("ndcg@10");
    let queries = report["queries"].as_u64().expect("queries");
    assert!(queries > 100, "the sample has its queries: {report}");
    assert_eq!(report["qrels"]["unknown_documents"], 0, "every judged document is in the sample: {report}");
    eprintln!("{} nDCG@10 = {ndcg:.4} (gate {:.4})", report["mode"], measured - MARGIN);
    assert!(ndcg >= measured - MARGIN, "nDCG@10 fell to {ndcg:.4}, measured {measured:.4}: {report}");
}

#[test]
fn sparse_retrieval_keeps_its_measured_quality() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scratch = runtime.block_on(Scratch::new(Backend::Embedded));
    check(&run_eval(&scratch, "sparse", None), SPARSE_NDCG_AT_10);
}

#[test]
fn hybrid_retrieval_keeps_its_measured_quality() {
    let Some(model) = std::env::var("DOSSIER_TEST_MODEL_DIR").ok().filter(|dir| !dir.is_empty()) else {
        eprintln!("DOSSIER_TEST_MODEL_DIR is not set: the hybrid gate needs the MiniLM test model (scripts/test.sh)");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scratch = runtime.block_on(Scratch::new(Backend::Embedded));
    check(&run_eval(&scratch, "hybrid", Some(&model)), HYBRID_NDCG_AT_10);
}
