"""Writes trec_eval_golden.json: a synthetic run and qrels with graded and negative judgements, queries with no
relevant document, several chunks per document and many tied scores, with pytrec_eval's per-query values.

The Rust test `metrics::tests::metrics_match_pytrec_eval_on_golden_run` recomputes them. Regenerate with
`pip install pytrec-eval-terrier && python3 make_trec_eval_golden.py` (deterministic: fixed seed).
"""
import json
import random

import pytrec_eval

rng = random.Random(20261127)
doc_ids = [f"d{n}" for n in range(12)] + ["9", "10", "100", "1000", "99", "D5", "d10a"]
qrels, chunks = {}, {}
for q in range(30):
    qid = f"q{q}"
    judged = rng.sample(doc_ids, rng.randint(1, 8))
    # Grades -1..3; about one query in six has no relevant document at all.
    no_relevant = q % 6 == 5
    qrels[qid] = {d: (rng.choice([-1, 0]) if no_relevant else rng.choice([-1, 0, 1, 1, 2, 3])) for d in judged}
    hits = []
    retrieved = set(rng.sample(doc_ids, rng.randint(1, 12))) | {d for d in judged if rng.random() < 0.7}
    for d in sorted(retrieved):
        boost = 2 if qrels[qid].get(d, 0) > 0 else 0  # relevant documents tend to rank higher
        for _ in range(rng.randint(1, 3)):  # several chunks per document
            hits.append([d, (rng.randint(0, 6) + boost) / 4.0])  # few distinct scores: many ties
    rng.shuffle(hits)
    chunks[qid] = hits

# A document's score is its best chunk's.
run = {}
for qid, hits in chunks.items():
    best = {}
    for d, s in hits:
        best[d] = max(s, best.get(d, float("-inf")))
    run[qid] = best

measures = {"ndcg_cut.1,5,10,100", "recall.1,5,10,100", "recip_rank"}
expected = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
keys = [f"ndcg_cut_{k}" for k in (1, 5, 10, 100)] + [f"recall_{k}" for k in (1, 5, 10, 100)] + ["recip_rank"]
expected = {qid: {key: values[key] for key in keys} for qid, values in expected.items()}
with open("trec_eval_golden.json", "w") as out:
    json.dump({"qrels": qrels, "chunks": chunks, "expected": expected}, out, indent=0, sort_keys=True)
    out.write("\n")
print(len(expected), "queries")
