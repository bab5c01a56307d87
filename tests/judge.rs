//! The RAGAS-style judge against the local stub server (`mock_ollama`) with scripted chat replies: scores for known
//! verdicts, NaN when there is nothing to judge, malformed verdicts and HTTP failures as errors naming the metric,
//! and what the judge actually sends.

use std::sync::Arc;
use std::time::Duration;

use dossier::eval::{Judge, JudgeConfig, JudgeError, JudgedCounts, Metric, Sample};
use dossier_actors::embed::{Embedder, OpenAiEmbedder, OpenAiEmbedderConfig};

use crate::support::mock_ollama::{self, ChatReply, DEFAULT_DIMENSION, MockOllama, embedding_for};

const JUDGE_MODEL: &str = "judge-model";

fn judge(server: &MockOllama, base_url: &str) -> Judge {
    let mut embedder = OpenAiEmbedderConfig::new(server.base_url(), "nomic-embed-text");
    embedder.dimensions = Some(DEFAULT_DIMENSION as u32);
    let embedder: Arc<dyn Embedder> = Arc::new(OpenAiEmbedder::new(embedder).expect("embedder"));
    let mut config = JudgeConfig::new(base_url, JUDGE_MODEL);
    config.timeout = Duration::from_secs(5);
    Judge::new(config, embedder).expect("judge")
}

fn sample() -> Sample {
    Sample {
        question: "Where is the Eiffel Tower?".into(),
        answer: "The Eiffel Tower is in Paris. It is 330 m tall. It was built in 1889.".into(),
        contexts: vec![
            "The Eiffel Tower is a landmark in Paris, completed in 1889.".into(),
            "Berlin is the capital of Germany.".into(),
            "The tower is 330 metres tall.".into(),
        ],
        reference: Some("The Eiffel Tower is in Paris, France.".into()),
    }
}

/// The user message of the n-th chat request.
fn user_prompt(server: &MockOllama, n: usize) -> String {
    server.chat_bodies()[n]["messages"][1]["content"].as_str().unwrap_or_default().to_owned()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn faithfulness_with_two_of_three_statements_supported_returns_two_thirds() {
    let server = MockOllama::start().await;
    server.push_chat_answer(
        r#"{"statements": ["The Eiffel Tower is in Paris.", "The Eiffel Tower is 330 m tall.", "The Eiffel Tower was built in 1887."]}"#,
    );
    server.push_chat_answer(
        r#"{"verdicts": [{"index": 1, "reason": "stated", "verdict": 1}, {"index": 2, "reason": "stated", "verdict": 1}, {"index": 3, "reason": "says 1889", "verdict": 0}]}"#,
    );

    let score = judge(&server, server.base_url()).faithfulness(&sample()).await.expect("judged");

    assert!((score - 2.0 / 3.0).abs() < 1e-12, "{score}");
    let bodies = server.chat_bodies();
    assert_eq!(bodies.len(), 2);
    for body in &bodies {
        assert_eq!(body["model"], JUDGE_MODEL);
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_eq!(body["messages"][0]["role"], "system");
    }
    let first = user_prompt(&server, 0);
    assert!(first.contains("Where is the Eiffel Tower?") && first.contains("It was built in 1889."), "{first}");
    let second = user_prompt(&server, 1);
    assert!(second.contains("[2] Berlin is the capital of Germany."), "{second}");
    assert!(second.contains("[3] The Eiffel Tower was built in 1887."), "{second}");
}

#[tokio::test]
async fn answer_relevancy_with_generated_questions_returns_their_mean_cosine_to_the_question() {
    let server = MockOllama::start().await;
    let generated = ["Where is the Eiffel Tower?", "How tall is the Eiffel Tower?", "When was the tower built?"];
    server.push_chat_answer(format!(r#"{{"questions": {}, "noncommittal": 0}}"#, serde_json::json!(generated)));

    let score = judge(&server, server.base_url()).answer_relevancy(&sample()).await.expect("judged");

    // The stub's vectors are deterministic: the same arithmetic here, with the first question identical (cosine 1).
    let question = embedding_for("Where is the Eiffel Tower?", DEFAULT_DIMENSION);
    let expected =
        generated.iter().map(|text| cosine(&question, &embedding_for(text, DEFAULT_DIMENSION))).sum::<f64>() / 3.0;
    assert!((score - expected).abs() < 1e-9, "{score} != {expected}");
    assert!(expected < 0.99, "the generated questions must differ for the test to mean anything: {expected}");
    assert_eq!(server.batch_sizes(), vec![4], "question and the 3 generated ones in one embeddings request");
    assert!(user_prompt(&server, 0).contains("write 3 different questions"));
}

#[tokio::test]
async fn answer_relevancy_with_noncommittal_answer_is_zero_without_embedding() {
    let server = MockOllama::start().await;
    server.push_chat_answer(r#"{"questions": ["a?", "b?", "c?"], "noncommittal": 1}"#);

    let score = judge(&server, server.base_url()).answer_relevancy(&sample()).await.expect("judged");

    assert_eq!(score, 0.0);
    assert_eq!(server.requests(), 0, "no embeddings request");
}

#[tokio::test]
async fn context_precision_with_useful_first_and_third_contexts_returns_average_precision() {
    let server = MockOllama::start().await;
    for verdict in [1, 0, 1] {
        server.push_chat_answer(format!(r#"{{"reason": "r", "verdict": {verdict}}}"#));
    }

    let score = judge(&server, server.base_url()).context_precision(&sample()).await.expect("judged");

    // (1/1 · 1 + 0 + 2/3 · 1) / 2 useful = 0.8333…
    assert!((score - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{score}");
    assert_eq!(server.chat_requests(), 3, "one request per context");
    for (n, context) in sample().contexts.iter().enumerate() {
        let prompt = user_prompt(&server, n);
        assert!(prompt.contains(context) && prompt.contains("The Eiffel Tower is in Paris, France."), "{prompt}");
    }
}

#[tokio::test]
async fn context_recall_with_three_of_four_statements_attributed_returns_three_quarters() {
    let server = MockOllama::start().await;
    let item = |attributed: u8| format!(r#"{{"statement": "s", "reason": "r", "attributed": {attributed}}}"#);
    let items = [item(1), item(1), item(0), item(1)].join(", ");
    server.push_chat_answer(format!(r#"{{"statements": [{items}]}}"#));

    let score = judge(&server, server.base_url()).context_recall(&sample()).await.expect("judged");

    assert!((score - 0.75).abs() < 1e-12, "{score}");
    assert!(user_prompt(&server, 0).contains("[1] The Eiffel Tower is a landmark in Paris"));
}

#[tokio::test]
async fn score_with_nothing_to_judge_is_nan_and_serialises_as_null() {
    let server = MockOllama::start().await;
    let judge = judge(&server, server.base_url());
    let empty = Sample { question: "q?".into(), answer: "  ".into(), contexts: vec![], reference: None };

    let scores = judge.score(&empty).await.expect("judged");

    assert!(scores.faithfulness.is_nan() && scores.answer_relevancy.is_nan());
    assert!(scores.context_precision.is_nan() && scores.context_recall.is_nan());
    assert_eq!(server.chat_requests() + server.requests(), 0, "nothing sent");
    assert_eq!(
        serde_json::to_string(&scores).expect("json"),
        r#"{"faithfulness":null,"answer_relevancy":null,"context_precision":null,"context_recall":null}"#
    );
}

#[tokio::test]
async fn score_all_returns_per_sample_scores_in_order_and_means_over_judged_samples() {
    let server = MockOllama::start().await;
    let judge = judge(&server, server.base_url());
    let one_context = Sample { contexts: vec!["The Eiffel Tower is in Paris.".into()], ..sample() };
    let blank = Sample { answer: String::new(), reference: None, ..one_context.clone() };
    // Sample 1, in request order: statements, verdicts (1 of 2), questions (noncommittal), precision (useful),
    // recall (1 of 1). Sample 2 has a blank answer and no reference: nothing is asked.
    for reply in [
        r#"{"statements": ["a", "b"]}"#,
        r#"{"verdicts": [{"index": 1, "reason": "r", "verdict": 1}, {"index": 2, "reason": "r", "verdict": 0}]}"#,
        r#"{"questions": ["a?", "b?", "c?"], "noncommittal": 1}"#,
        r#"{"reason": "r", "verdict": 1}"#,
        r#"{"statements": [{"statement": "s", "reason": "r", "attributed": 1}]}"#,
    ] {
        server.push_chat_answer(reply);
    }

    let report = judge.score_all(&[one_context, blank], 1).await.expect("judged");

    assert_eq!(report.samples, 2);
    let first = report.per_sample[0];
    assert_eq!(
        (first.faithfulness, first.answer_relevancy, first.context_precision, first.context_recall),
        (0.5, 0.0, 1.0, 1.0)
    );
    assert!(report.per_sample[1].faithfulness.is_nan() && report.per_sample[1].context_recall.is_nan());
    // Means skip the NaN of sample 2: they equal sample 1's scores, over 1 judged sample each.
    assert_eq!(report.mean, first);
    let one = JudgedCounts { faithfulness: 1, answer_relevancy: 1, context_precision: 1, context_recall: 1 };
    assert_eq!(report.judged, one);
    assert_eq!(server.chat_requests(), 5);
}

#[tokio::test]
async fn metrics_with_no_statements_are_nan_and_without_contexts_follow_their_definition() {
    let server = MockOllama::start().await;
    let judge = judge(&server, server.base_url());
    // The answer makes no claim: faithfulness NaN after the statements request, no verdict request.
    server.push_chat_answer(r#"{"statements": []}"#);
    assert!(judge.faithfulness(&sample()).await.expect("judged").is_nan());
    assert_eq!(server.chat_requests(), 1);
    // The reference makes no claim: context recall NaN.
    server.push_chat_answer(r#"{"statements": []}"#);
    assert!(judge.context_recall(&sample()).await.expect("judged").is_nan());

    let no_contexts = Sample { contexts: vec![], ..sample() };
    // No contexts: precision has nothing to rank (NaN); recall finds nothing (0); no request for either.
    assert!(judge.context_precision(&no_contexts).await.expect("judged").is_nan());
    assert_eq!(judge.context_recall(&no_contexts).await.expect("judged"), 0.0);
    assert_eq!(server.chat_requests(), 2);
    // Statements but no contexts: nothing supports them (0), after the statements request only.
    server.push_chat_answer(r#"{"statements": ["The Eiffel Tower is in Paris."]}"#);
    assert_eq!(judge.faithfulness(&no_contexts).await.expect("judged"), 0.0);
    assert_eq!(server.chat_requests(), 3);
    // No reference: precision and recall have nothing to judge against.
    let no_reference = Sample { reference: None, ..sample() };
    assert!(judge.context_precision(&no_reference).await.expect("judged").is_nan());
    assert!(judge.context_recall(&no_reference).await.expect("judged").is_nan());
    assert_eq!(server.chat_requests(), 3);
}

#[tokio::test]
async fn malformed_verdicts_are_errors_naming_the_metric_and_quoting_the_reply() {
    let server = MockOllama::start().await;
    let judge = judge(&server, server.base_url());
    let statements = r#"{"statements": ["a", "b"]}"#;
    let cases: Vec<(Metric, Vec<&str>, &str)> = vec![
        (Metric::Faithfulness, vec!["Here are the statements: a, b"], "expected value"),
        (Metric::Faithfulness, vec![r#"{"statements": ["a"], "extra": 1}"#], "unknown field `extra`"),
        (Metric::Faithfulness, vec![r#"{"statements": ["a", " "]}"#], "statement 2 is blank"),
        (
            Metric::Faithfulness,
            vec![statements, r#"{"verdicts": [{"index": 1, "reason": "r", "verdict": 1}]}"#],
            "1 verdicts for 2 statements",
        ),
        (
            Metric::Faithfulness,
            vec![
                statements,
                r#"{"verdicts": [{"index": 2, "reason": "r", "verdict": 1}, {"index": 1, "reason": "r", "verdict": 0}]}"#,
            ],
            "verdict 1 has index 2 (expected 1)",
        ),
        (Metric::AnswerRelevancy, vec![r#"{"questions": ["a?"], "noncommittal": 0}"#], "1 questions, asked for 3"),
        (Metric::ContextPrecision, vec![r#"{"reason": "r", "verdict": 2}"#], "a verdict must be 0 or 1, got 2"),
        (
            Metric::ContextRecall,
            vec![r#"{"statements": [{"statement": "s", "attributed": 1}]}"#],
            "missing field `reason`",
        ),
    ];
    for (metric, replies, expected) in cases {
        for reply in &replies {
            server.push_chat_answer(*reply);
        }
        let outcome = match metric {
            Metric::Faithfulness => judge.faithfulness(&sample()).await,
            Metric::AnswerRelevancy => judge.answer_relevancy(&sample()).await,
            Metric::ContextPrecision => judge.context_precision(&sample()).await,
            Metric::ContextRecall => judge.context_recall(&sample()).await,
        };
        let error = outcome.expect_err(expected);
        let JudgeError::Malformed(malformed) = &error else { panic!("{metric}: expected malformed, got {error}") };
        assert_eq!(malformed.metric, metric);
        assert!(malformed.reason.contains(expected), "{metric}: {:?} lacks {expected:?}", malformed.reason);
        let last_reply = replies.last().copied().unwrap_or_default();
        assert_eq!(malformed.excerpt, last_reply.trim(), "quotes the reply");
        assert!(error.to_string().starts_with(&format!("{metric}: malformed verdict")), "{error}");
    }
}

#[tokio::test]
async fn truncated_or_fenced_replies_are_an_error_and_accepted_respectively() {
    let server = MockOllama::start().await;
    let judge = judge(&server, server.base_url());
    server.push_chat(ChatReply::Truncated(r#"{"reason": "r", "verd"#.into()));
    let error = judge.context_precision(&Sample { contexts: vec!["c".into()], ..sample() }).await.expect_err("cut");
    assert!(error.to_string().contains("cut off (finish_reason: length)"), "{error}");

    server.push_chat_answer("```json\n{\"reason\": \"r\", \"verdict\": 1}\n```");
    let score = judge.context_precision(&Sample { contexts: vec!["c".into()], ..sample() }).await.expect("fenced");
    assert_eq!(score, 1.0);
}

#[tokio::test]
async fn http_error_surfaces_status_body_and_metric_after_one_request() {
    let server = MockOllama::start().await;
    let judge = judge(&server, server.base_url());
    server.push_chat(ChatReply::Fail(503));

    let error = judge.context_recall(&sample()).await.expect_err("503");

    let message = error.to_string();
    assert!(matches!(error, JudgeError::Request { metric: Metric::ContextRecall, .. }), "{message}");
    assert!(message.starts_with("context_recall: judge model `judge-model` request failed: HTTP 503"), "{message}");
    assert!(message.contains("scripted failure"), "{message}");
    assert_eq!(server.chat_requests(), 1, "no retry behind our back");
}

#[tokio::test]
async fn unreachable_judge_is_a_request_error_naming_the_cause() {
    let server = MockOllama::start().await;
    let judge = judge(&server, &mock_ollama::unused_base_url().await);

    let error = judge.faithfulness(&sample()).await.expect_err("refused");

    let message = error.to_string();
    assert!(message.starts_with("faithfulness: judge model `judge-model` request failed: "), "{message}");
    assert!(message.to_lowercase().contains("connect"), "{message}");
}

#[tokio::test]
async fn judge_with_bad_configuration_fails_before_sending() {
    let server = MockOllama::start().await;
    let embedder: Arc<dyn Embedder> =
        Arc::new(OpenAiEmbedder::new(OpenAiEmbedderConfig::new(server.base_url(), "m")).expect("embedder"));
    let error = Judge::new(JudgeConfig::new("ftp://host/v1", "m"), Arc::clone(&embedder)).expect_err("scheme");
    assert!(error.to_string().contains("is not an http(s) URL"), "{error}");
    let error = Judge::new(JudgeConfig::new(server.base_url(), " "), Arc::clone(&embedder)).expect_err("model");
    assert!(error.to_string().contains("model name is empty"), "{error}");
    let config = JudgeConfig { questions: 0, ..JudgeConfig::new(server.base_url(), "m") };
    assert!(Judge::new(config, embedder).is_err());
    assert_eq!(server.chat_requests(), 0);
}
