//! RAGAS-style judged metrics — faithfulness, answer relevancy, context precision, context recall — computed by an
//! LLM judge behind any OpenAI-compatible `/chat/completions` endpoint, with our own prompts (see [`super::prompt`])
//! and strictly parsed JSON verdicts (see [`super::verdict`]).
//!
//! The definitions (RAGAS's, with the choices written down):
//! - **Faithfulness** = supported statements ÷ statements of the answer. The judge first lists the answer's
//!   statements, then gives a 0/1 verdict per statement against all the contexts. No statements: NaN. Statements
//!   but no contexts: 0 (nothing can support them; no second request is made).
//! - **Answer relevancy** = mean cosine similarity between the question's embedding and the embeddings of
//!   `questions` (default 3) questions the judge writes from the answer alone; 0 when the judge calls the answer
//!   noncommittal. Embeddings come from our [`Embedder`]. A blank answer: NaN. (RAGAS asks for the questions in
//!   separate requests; one request for all of them costs a third and reads the same.)
//! - **Context precision** (with a reference answer) = Σₖ precision@k · vₖ ÷ Σₖ vₖ over the contexts in rank order,
//!   vₖ the judge's 0/1 "useful for the reference answer" verdict on context k (one request per context); 0 when
//!   no context is useful. No contexts, or no reference: NaN.
//! - **Context recall** = attributed statements ÷ statements of the reference answer, the judge splitting the
//!   reference and attributing each statement to the contexts in one request. No statements, or no reference: NaN.
//!   A reference but no contexts: 0 (no request).
//!
//! NaN means "nothing to judge", never "bad": it serialises as JSON `null` (and `null` reads back as NaN), and
//! [`JudgedScores::mean`] skips it, as RAGAS's `nanmean` does. A reply that does not parse is an error, never a 0.
//!
//! Requests go through the same single-attempt async-openai transport as the embedder
//! ([`dossier_actors::embed::openai_client`]): one request per call, no hidden retries, an HTTP error surfaces
//! with its status and body. Requests ask for temperature 0 and `response_format: json_object`.
//!
//! Threading: a [`Judge`] is `Send + Sync`; one sample's requests run one after another (so a scripted or rate-
//! limited server sees them in a fixed order), and [`Judge::score_all`] judges up to `concurrency` samples at once.

use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, FinishReason, ResponseFormat,
};
use dossier_actors::embed::{Embedder, describe_openai_error, openai_client};
use futures::{StreamExt, TryStreamExt};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::prompt::{self, numbered, render};
use super::score::{JudgedScores, average_precision, cosine, share};
use super::verdict::{
    Attributions, GeneratedQuestions, Malformed, StatementVerdicts, Statements, Usefulness, parse, require_non_blank,
};
use crate::settings::Settings;

/// Questions generated per answer for answer relevancy (RAGAS's default `strictness`).
pub const DEFAULT_QUESTIONS: usize = 3;
/// Time allowed for one judge request (LLMs are slow; a long reply on a CPU can take minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The four judged metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Are the answer's statements supported by the contexts?
    Faithfulness,
    /// Does the answer address the question?
    AnswerRelevancy,
    /// Are the useful contexts ranked first?
    ContextPrecision,
    /// Do the contexts hold what the reference answer says?
    ContextRecall,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Faithfulness => "faithfulness",
            Self::AnswerRelevancy => "answer_relevancy",
            Self::ContextPrecision => "context_precision",
            Self::ContextRecall => "context_recall",
        })
    }
}

/// What can stop a judged metric.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The judge cannot be set up.
    #[error("judge configuration: {0}")]
    Config(String),
    /// The request failed: connection, timeout, or a non-2xx status (shown with its body).
    #[error("{metric}: judge model `{model}` request failed: {reason}")]
    Request {
        /// The metric being computed.
        metric: Metric,
        /// The judge model.
        model: String,
        /// What happened.
        reason: String,
    },
    /// The reply is not the verdict the prompt asks for.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// Embedding the questions (answer relevancy) failed.
    #[error("{metric}: embedding failed: {reason}")]
    Embedding {
        /// The metric being computed.
        metric: Metric,
        /// What happened.
        reason: String,
    },
}

/// Where the judge is and how to call it.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// The API root, e.g. `http://localhost:11434/v1`.
    pub base_url: String,
    /// Sent as a bearer token when set; never logged.
    pub api_key: Option<SecretString>,
    /// The chat model that judges.
    pub model: String,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Questions generated per answer for answer relevancy (at least 1).
    pub questions: usize,
}

impl JudgeConfig {
    /// A configuration for `model` at `base_url` with the default timeout and question count and no key.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            timeout: DEFAULT_TIMEOUT,
            questions: DEFAULT_QUESTIONS,
        }
    }

    /// The judge at `LLM_BASE_URL` (with `LLM_API_KEY`), judging with `model`.
    pub fn from_settings(settings: &Settings, model: impl Into<String>) -> Result<Self, JudgeError> {
        let base_url = settings.llm_base_url.clone().ok_or_else(|| {
            JudgeError::Config("LLM_BASE_URL is not set: judged metrics need an OpenAI-compatible endpoint".into())
        })?;
        Ok(Self { api_key: settings.llm_api_key.clone(), ..Self::new(base_url, model) })
    }
}

/// One question-answering sample to judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The user's question.
    pub question: String,
    /// The system's answer.
    pub answer: String,
    /// The retrieved contexts, best first.
    pub contexts: Vec<String>,
    /// A reference (ground-truth) answer, needed by context precision and recall.
    pub reference: Option<String>,
}

/// The judged metrics of a set of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedReport {
    /// Samples judged.
    pub samples: usize,
    /// Each metric's mean over the samples that had something to judge (`null` if none had).
    pub mean: JudgedScores,
    /// How many samples had something to judge, per metric: the denominators of `mean`.
    pub judged: JudgedCounts,
    /// Each sample's scores, in input order.
    pub per_sample: Vec<JudgedScores>,
}

/// A count per judged metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgedCounts {
    /// Faithfulness.
    pub faithfulness: usize,
    /// Answer relevancy.
    pub answer_relevancy: usize,
    /// Context precision.
    pub context_precision: usize,
    /// Context recall.
    pub context_recall: usize,
}

/// The LLM judge. Cheap to share behind an `Arc`.
pub struct Judge {
    client: Client<OpenAIConfig>,
    base_url: String,
    model: String,
    questions: usize,
    embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("questions", &self.questions)
            .field("embedder", &self.embedder.model())
            .finish_non_exhaustive()
    }
}

impl Judge {
    /// Checks the configuration and builds the client; sends nothing. `embedder` embeds the questions compared by
    /// answer relevancy.
    pub fn new(config: JudgeConfig, embedder: Arc<dyn Embedder>) -> Result<Self, JudgeError> {
        let model = config.model.trim().to_owned();
        if model.is_empty() {
            return Err(JudgeError::Config("the judge model name is empty".into()));
        }
        if config.questions == 0 {
            return Err(JudgeError::Config("answer relevancy needs at least 1 generated question".into()));
        }
        let (base_url, client) = openai_client(&config.base_url, config.api_key.as_ref(), config.timeout)
            .map_err(|reason| JudgeError::Config(format!("judge model `{model}`: {reason}")))?;
        Ok(Self { client, base_url, model, questions: config.questions, embedder })
    }

    /// All four metrics of one sample, one after another.
    pub async fn score(&self, sample: &Sample) -> Result<JudgedScores, JudgeError> {
        Ok(JudgedScores {
            faithfulness: self.faithfulness(sample).await?,
            answer_relevancy: self.answer_relevancy(sample).await?,
            context_precision: self.context_precision(sample).await?,
            context_recall: self.context_recall(sample).await?,
        })
    }

    /// Every sample's scores (in input order) and their means, `concurrency` samples at a time (at least 1). The
    /// first failure stops the run: a judge that cannot be parsed or reached gives no report rather than a partial
    /// one.
    pub async fn score_all(&self, samples: &[Sample], concurrency: usize) -> Result<JudgedReport, JudgeError> {
        let per_sample: Vec<JudgedScores> = futures::stream::iter(samples)
            .map(|sample| self.score(sample))
            .buffered(concurrency.max(1))
            .try_collect()
            .await?;
        let judged =
            |value: fn(&JudgedScores) -> f64| per_sample.iter().filter(|scores| !value(scores).is_nan()).count();
        Ok(JudgedReport {
            samples: per_sample.len(),
            mean: JudgedScores::mean(&per_sample),
            judged: JudgedCounts {
                faithfulness: judged(|scores| scores.faithfulness),
                answer_relevancy: judged(|scores| scores.answer_relevancy),
                context_precision: judged(|scores| scores.context_precision),
                context_recall: judged(|scores| scores.context_recall),
            },
            per_sample,
        })
    }

    /// Faithfulness of the answer to the contexts (see the module docs).
    pub async fn faithfulness(&self, sample: &Sample) -> Result<f64, JudgeError> {
        let metric = Metric::Faithfulness;
        if sample.answer.trim().is_empty() {
            return Ok(f64::NAN);
        }
        let values = [("question", sample.question.as_str()), ("answer", sample.answer.as_str())];
        let (statements, reply): (Statements, _) =
            self.ask(metric, &render(prompt::FAITHFULNESS_STATEMENTS, &values)).await?;
        let texts: Vec<&str> = statements.statements.iter().map(String::as_str).collect();
        require_non_blank(metric, "statement", &texts, &reply)?;
        if statements.statements.is_empty() {
            return Ok(f64::NAN);
        }
        if sample.contexts.is_empty() {
            return Ok(0.0);
        }
        let contexts = numbered(&sample.contexts);
        let listed = numbered(&statements.statements);
        let values = [("contexts", contexts.as_str()), ("statements", listed.as_str())];
        let (verdicts, reply): (StatementVerdicts, _) =
            self.ask(metric, &render(prompt::FAITHFULNESS_VERDICTS, &values)).await?;
        let expected = statements.statements.len();
        if verdicts.verdicts.len() != expected {
            let reason = format!("{} verdicts for {expected} statements", verdicts.verdicts.len());
            return Err(Malformed::new(metric, reason, &reply).into());
        }
        if let Some((position, verdict)) =
            verdicts.verdicts.iter().enumerate().find(|(position, verdict)| verdict.index != position + 1)
        {
            let reason = format!("verdict {} has index {} (expected {})", position + 1, verdict.index, position + 1);
            return Err(Malformed::new(metric, reason, &reply).into());
        }
        Ok(share(verdicts.verdicts.iter().map(|verdict| verdict.verdict.0)))
    }

    /// Answer relevancy of the answer to the question (see the module docs).
    pub async fn answer_relevancy(&self, sample: &Sample) -> Result<f64, JudgeError> {
        let metric = Metric::AnswerRelevancy;
        if sample.answer.trim().is_empty() {
            return Ok(f64::NAN);
        }
        let count = self.questions.to_string();
        let values = [("count", count.as_str()), ("answer", sample.answer.as_str())];
        let (generated, reply): (GeneratedQuestions, _) =
            self.ask(metric, &render(prompt::ANSWER_RELEVANCY, &values)).await?;
        if generated.questions.len() != self.questions {
            let reason = format!("{} questions, asked for {}", generated.questions.len(), self.questions);
            return Err(Malformed::new(metric, reason, &reply).into());
        }
        let texts: Vec<&str> = generated.questions.iter().map(String::as_str).collect();
        require_non_blank(metric, "question", &texts, &reply)?;
        if generated.noncommittal.0 {
            return Ok(0.0);
        }
        let mut inputs = Vec::with_capacity(generated.questions.len() + 1);
        inputs.push(sample.question.clone());
        inputs.extend(generated.questions);
        let vectors = self
            .embedder
            .embed(&inputs)
            .await
            .map_err(|error| JudgeError::Embedding { metric, reason: error.to_string() })?;
        let Some((question, generated)) = vectors.split_first() else {
            return Err(JudgeError::Embedding { metric, reason: "the embedder returned no vectors".into() });
        };
        let similarities = generated
            .iter()
            .map(|vector| {
                cosine(question, vector).ok_or_else(|| JudgeError::Embedding {
                    metric,
                    reason: "a zero or mismatched vector has no cosine similarity".into(),
                })
            })
            .collect::<Result<Vec<f64>, _>>()?;
        Ok(similarities.iter().sum::<f64>() / similarities.len() as f64)
    }

    /// Context precision of the contexts' order against the reference answer (see the module docs).
    pub async fn context_precision(&self, sample: &Sample) -> Result<f64, JudgeError> {
        let metric = Metric::ContextPrecision;
        let Some(reference) = sample.reference.as_deref().filter(|reference| !reference.trim().is_empty()) else {
            return Ok(f64::NAN);
        };
        if sample.contexts.is_empty() {
            return Ok(f64::NAN);
        }
        let mut useful = Vec::with_capacity(sample.contexts.len());
        for context in &sample.contexts {
            let values = [("question", sample.question.as_str()), ("reference", reference), ("context", context)];
            let (verdict, _): (Usefulness, _) = self.ask(metric, &render(prompt::CONTEXT_PRECISION, &values)).await?;
            useful.push(verdict.verdict.0);
        }
        Ok(average_precision(&useful))
    }

    /// Context recall of the reference answer's statements in the contexts (see the module docs).
    pub async fn context_recall(&self, sample: &Sample) -> Result<f64, JudgeError> {
        let metric = Metric::ContextRecall;
        let Some(reference) = sample.reference.as_deref().filter(|reference| !reference.trim().is_empty()) else {
            return Ok(f64::NAN);
        };
        if sample.contexts.is_empty() {
            return Ok(0.0);
        }
        let contexts = numbered(&sample.contexts);
        let values = [("question", sample.question.as_str()), ("reference", reference), ("contexts", &contexts)];
        let (attributions, reply): (Attributions, _) =
            self.ask(metric, &render(prompt::CONTEXT_RECALL, &values)).await?;
        let texts: Vec<&str> = attributions.statements.iter().map(|item| item.statement.as_str()).collect();
        require_non_blank(metric, "statement", &texts, &reply)?;
        if attributions.statements.is_empty() {
            return Ok(f64::NAN);
        }
        Ok(share(attributions.statements.iter().map(|item| item.attributed.0)))
    }

    /// Sends one prompt and parses the reply as `T`; returns the reply text too, for error messages.
    async fn ask<T: DeserializeOwned>(&self, metric: Metric, prompt: &str) -> Result<(T, String), JudgeError> {
        let request = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: vec![
                ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(prompt::SYSTEM.trim())),
                ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(prompt.to_owned())),
            ],
            temperature: Some(0.0),
            response_format: Some(ResponseFormat::JsonObject),
            ..CreateChatCompletionRequest::default()
        };
        let started = std::time::Instant::now();
        let response = self.client.chat().create(request).await.map_err(|error| {
            let reason = describe_openai_error(&error);
            tracing::warn!(%metric, model = %self.model, error = %reason, "judge_request_failed");
            JudgeError::Request { metric, model: self.model.clone(), reason }
        })?;
        tracing::debug!(%metric, model = %self.model, duration_ms = started.elapsed().as_millis() as u64, "judged");
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(Malformed::new(metric, "the reply has no choices", "").into());
        };
        let content = choice.message.content.unwrap_or_default();
        if choice.finish_reason == Some(FinishReason::Length) {
            return Err(Malformed::new(metric, "the reply was cut off (finish_reason: length)", &content).into());
        }
        if content.trim().is_empty() {
            let refusal = choice.message.refusal.unwrap_or_default();
            return Err(Malformed::new(metric, "the reply has no content", &refusal).into());
        }
        let parsed = parse(metric, &content)?;
        Ok((parsed, content))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_config_from_settings_needs_llm_base_url() {
        let settings = Settings::from_lookup(|_| None).expect("defaults");
        let error = JudgeConfig::from_settings(&settings, "m").expect_err("no url");
        assert!(error.to_string().contains("LLM_BASE_URL is not set"), "{error}");
        let settings = Settings::from_lookup(|name| (name == "LLM_BASE_URL").then(|| "http://h:1/v1".to_owned()))
            .expect("settings");
        let config = JudgeConfig::from_settings(&settings, "judge").expect("config");
        assert_eq!((config.base_url.as_str(), config.model.as_str()), ("http://h:1/v1", "judge"));
    }
}
