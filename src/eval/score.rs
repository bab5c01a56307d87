//! The arithmetic of the judged metrics (shares, RAGAS's average precision, cosine similarity) and the per-sample
//! [`JudgedScores`], whose NaN ("nothing to judge") is JSON `null`.

use serde::{Deserialize, Serialize};

/// The four scores of one sample, each in [0, 1] (answer relevancy in [−1, 1], as a cosine) or NaN when there was
/// nothing to judge. NaN is written as JSON `null` and `null` is read as NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JudgedScores {
    /// See [`super::judge::Metric::Faithfulness`].
    #[serde(with = "nan_as_null")]
    pub faithfulness: f64,
    /// See [`super::judge::Metric::AnswerRelevancy`].
    #[serde(with = "nan_as_null")]
    pub answer_relevancy: f64,
    /// See [`super::judge::Metric::ContextPrecision`].
    #[serde(with = "nan_as_null")]
    pub context_precision: f64,
    /// See [`super::judge::Metric::ContextRecall`].
    #[serde(with = "nan_as_null")]
    pub context_recall: f64,
}

impl JudgedScores {
    /// The mean of each metric over the samples that had something to judge (NaN skipped); NaN if none had.
    pub fn mean(scores: &[JudgedScores]) -> JudgedScores {
        let nan_mean = |value: fn(&JudgedScores) -> f64| {
            let judged: Vec<f64> = scores.iter().map(value).filter(|score| !score.is_nan()).collect();
            if judged.is_empty() { f64::NAN } else { judged.iter().sum::<f64>() / judged.len() as f64 }
        };
        JudgedScores {
            faithfulness: nan_mean(|scores| scores.faithfulness),
            answer_relevancy: nan_mean(|scores| scores.answer_relevancy),
            context_precision: nan_mean(|scores| scores.context_precision),
            context_recall: nan_mean(|scores| scores.context_recall),
        }
    }
}

/// Serde for an `f64` that is NaN when absent: NaN ⇄ `null`.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() { serializer.serialize_none() } else { serializer.serialize_f64(*value) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

/// The share of `true`s (NaN for none: the callers return earlier in that case).
pub(crate) fn share(verdicts: impl Iterator<Item = bool>) -> f64 {
    let (mut yes, mut total) = (0usize, 0usize);
    for verdict in verdicts {
        yes += usize::from(verdict);
        total += 1;
    }
    if total == 0 { f64::NAN } else { yes as f64 / total as f64 }
}

/// RAGAS's context precision: Σₖ (useful in the first k ÷ k) · vₖ ÷ (useful contexts); 0 when none is useful, NaN
/// for no contexts.
pub fn average_precision(useful: &[bool]) -> f64 {
    if useful.is_empty() {
        return f64::NAN;
    }
    let (mut hits, mut sum) = (0usize, 0.0);
    for (index, &verdict) in useful.iter().enumerate() {
        if verdict {
            hits += 1;
            sum += hits as f64 / (index + 1) as f64;
        }
    }
    if hits == 0 { 0.0 } else { sum / hits as f64 }
}

/// Cosine similarity, computed in f64; `None` for vectors of different lengths or a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 { None } else { Some(dot / (norm_a.sqrt() * norm_b.sqrt())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_matches_hand_computation() {
        // Useful at ranks 1 and 3 of 3: (1/1 · 1 + 2/3 · 1) / 2 = 0.8333…
        assert!((average_precision(&[true, false, true]) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // Useful only at rank 2: (1/2) / 1 = 0.5. All useful: 1. None useful: 0. No contexts: NaN.
        assert!((average_precision(&[false, true]) - 0.5).abs() < 1e-12);
        assert_eq!(average_precision(&[true, true, true]), 1.0);
        assert_eq!(average_precision(&[false, false]), 0.0);
        assert!(average_precision(&[]).is_nan());
    }

    #[test]
    fn cosine_handles_parallel_orthogonal_and_degenerate_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]).unwrap_or(0.0) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), Some(0.0));
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), None);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), None);
    }

    #[test]
    fn judged_scores_serialise_nan_as_null_and_read_null_as_nan() {
        let scores =
            JudgedScores { faithfulness: 0.5, answer_relevancy: f64::NAN, context_precision: 1.0, context_recall: 0.0 };
        let json = serde_json::to_string(&scores).expect("serialise");
        assert_eq!(
            json,
            r#"{"faithfulness":0.5,"answer_relevancy":null,"context_precision":1.0,"context_recall":0.0}"#
        );
        let back: JudgedScores = serde_json::from_str(&json).expect("deserialise");
        assert!(back.answer_relevancy.is_nan() && back.faithfulness == 0.5);
    }

    #[test]
    fn mean_skips_nan_and_is_nan_when_nothing_was_judged() {
        let a =
            JudgedScores { faithfulness: 1.0, answer_relevancy: f64::NAN, context_precision: 0.5, context_recall: 0.0 };
        let b = JudgedScores {
            faithfulness: 0.0,
            answer_relevancy: f64::NAN,
            context_precision: f64::NAN,
            context_recall: 1.0,
        };
        let mean = JudgedScores::mean(&[a, b]);
        assert_eq!((mean.faithfulness, mean.context_precision, mean.context_recall), (0.5, 0.5, 0.5));
        assert!(mean.answer_relevancy.is_nan());
        assert!(JudgedScores::mean(&[]).faithfulness.is_nan());
    }
}
