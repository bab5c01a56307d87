//! The judge's JSON verdicts, parsed strictly into typed structs: unknown keys, missing keys, a verdict other than
//! 0 or 1, a blank statement or question, or anything but one JSON object is a [`Malformed`] verdict naming the
//! metric and quoting the start of the reply, never a silent 0. The one leniency: a reply wrapped in a single
//! Markdown code fence (```` ```json … ``` ````), which many models add even in JSON mode, is unwrapped first.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::beir::json_error_reason;
use super::judge::Metric;

/// How much of a malformed reply an error quotes.
const EXCERPT_CHARS: usize = 300;

/// A judge reply that is not the JSON verdict its prompt asks for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{metric}: malformed verdict from the judge ({reason}): {excerpt}")]
pub struct Malformed {
    /// The metric whose verdict it was.
    pub metric: Metric,
    /// What is wrong.
    pub reason: String,
    /// The start of the reply.
    pub excerpt: String,
}

impl Malformed {
    /// A malformed-verdict error quoting `reply`.
    pub fn new(metric: Metric, reason: impl Into<String>, reply: &str) -> Self {
        let reply = reply.trim();
        let excerpt = match reply.char_indices().nth(EXCERPT_CHARS) {
            Some((cut, _)) => format!("{}…", &reply[..cut]),
            None => reply.to_owned(),
        };
        Self { metric, reason: reason.into(), excerpt }
    }
}

/// A 0/1 verdict; any other value, or a JSON boolean, is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct Binary(pub bool);

impl TryFrom<u64> for Binary {
    type Error = String;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self(false)),
            1 => Ok(Self(true)),
            other => Err(format!("a verdict must be 0 or 1, got {other}")),
        }
    }
}

/// Faithfulness step 1: the answer's statements.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statements {
    /// One claim each.
    pub statements: Vec<String>,
}

/// Faithfulness step 2: one verdict per statement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementVerdicts {
    /// In the statements' order.
    pub verdicts: Vec<StatementVerdict>,
}

/// The verdict on one statement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementVerdict {
    /// The statement's 1-based number.
    pub index: usize,
    /// Why.
    pub reason: String,
    /// Supported by the contexts.
    pub verdict: Binary,
}

/// Answer relevancy: questions generated from the answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedQuestions {
    /// Questions the answer would answer.
    pub questions: Vec<String>,
    /// The answer is evasive.
    pub noncommittal: Binary,
}

/// Context precision: one context's usefulness.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usefulness {
    /// Why.
    pub reason: String,
    /// Useful for the reference answer.
    pub verdict: Binary,
}

/// Context recall: the reference's statements, each attributed or not.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attributions {
    /// In the reference's order.
    pub statements: Vec<Attribution>,
}

/// One reference statement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    /// The claim.
    pub statement: String,
    /// Why.
    pub reason: String,
    /// Found in the contexts.
    pub attributed: Binary,
}

/// Parses a judge reply as `T`, unwrapping one Markdown code fence if the whole reply is fenced.
pub fn parse<T: DeserializeOwned>(metric: Metric, reply: &str) -> Result<T, Malformed> {
    serde_json::from_str(unfence(reply)).map_err(|error| Malformed::new(metric, json_error_reason(&error), reply))
}

/// The reply without a surrounding ```` ``` ```` / ```` ```json ```` fence, if it has exactly that.
fn unfence(reply: &str) -> &str {
    let trimmed = reply.trim();
    let Some(inner) = trimmed.strip_prefix("```").and_then(|rest| rest.strip_suffix("```")) else {
        return trimmed;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    if inner.contains("```") { trimmed } else { inner.trim() }
}

/// Checks that no listed text is blank (a blank statement or question is no verdict at all).
pub fn require_non_blank(metric: Metric, what: &str, texts: &[&str], reply: &str) -> Result<(), Malformed> {
    match texts.iter().position(|text| text.trim().is_empty()) {
        Some(position) => Err(Malformed::new(metric, format!("{what} {} is blank", position + 1), reply)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_with_exact_shape_returns_the_verdict() {
        let parsed: Usefulness = parse(Metric::ContextPrecision, r#"{"reason": "r", "verdict": 1}"#).expect("valid");
        assert_eq!(parsed.verdict, Binary(true));
    }

    #[test]
    fn parse_with_fenced_reply_unwraps_one_fence() {
        let fenced = "```json\n{\"reason\": \"r\", \"verdict\": 0}\n```";
        let parsed: Usefulness = parse(Metric::ContextPrecision, fenced).expect("fenced");
        assert_eq!(parsed.verdict, Binary(false));
        let bare_fence = "```\n{\"reason\": \"r\", \"verdict\": 0}\n```";
        assert!(parse::<Usefulness>(Metric::ContextPrecision, bare_fence).is_ok());
    }

    #[test]
    fn parse_with_unknown_or_missing_key_names_metric_and_key() {
        let error = parse::<Usefulness>(Metric::ContextPrecision, r#"{"reason": "r", "verdict": 1, "score": 3}"#)
            .expect_err("unknown key");
        assert_eq!(error.metric, Metric::ContextPrecision);
        assert!(error.reason.contains("unknown field `score`"), "{error}");
        assert!(error.to_string().starts_with("context_precision: malformed verdict from the judge"), "{error}");

        let error = parse::<Usefulness>(Metric::ContextPrecision, r#"{"reason": "r"}"#).expect_err("missing");
        assert!(error.reason.contains("missing field `verdict`"), "{error}");
    }

    #[test]
    fn parse_with_verdict_out_of_range_or_boolean_is_malformed() {
        for reply in [
            r#"{"reason": "r", "verdict": 2}"#,
            r#"{"reason": "r", "verdict": true}"#,
            r#"{"reason": "r", "verdict": 0.5}"#,
        ] {
            let error = parse::<Usefulness>(Metric::ContextPrecision, reply).expect_err(reply);
            assert!(error.reason.contains("verdict") || error.reason.contains("invalid type"), "{error}");
        }
        let error = parse::<Usefulness>(Metric::ContextPrecision, r#"{"reason": "r", "verdict": 2}"#).expect_err("2");
        assert!(error.reason.contains("a verdict must be 0 or 1, got 2"), "{error}");
    }

    #[test]
    fn parse_with_prose_or_two_objects_is_malformed_and_quotes_the_reply() {
        let error = parse::<Statements>(Metric::Faithfulness, "Sure! Here are the statements: ...").expect_err("prose");
        assert_eq!(error.excerpt, "Sure! Here are the statements: ...");
        assert!(parse::<Statements>(Metric::Faithfulness, r#"{"statements": []} {"statements": []}"#).is_err());
        let long = "x".repeat(1_000);
        let error = parse::<Statements>(Metric::Faithfulness, &long).expect_err("long");
        assert_eq!(error.excerpt.chars().count(), EXCERPT_CHARS + 1, "cut with an ellipsis");
    }

    #[test]
    fn require_non_blank_names_the_blank_item() {
        let error = require_non_blank(Metric::AnswerRelevancy, "question", &["a?", " "], "{}").expect_err("blank");
        assert_eq!(error.reason, "question 2 is blank");
        assert!(require_non_blank(Metric::AnswerRelevancy, "question", &["a?"], "{}").is_ok());
    }
}
