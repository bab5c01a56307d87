//! The judge's prompts, pinned in the repository (`src/eval/prompts/*.txt`, compiled in with `include_str!`) so a
//! change to one is a reviewed diff, and the one-pass renderer that fills their `{{name}}` placeholders.
//!
//! Filling is a single left-to-right pass: text substituted for a placeholder is never scanned again, so an answer
//! or a retrieved document that happens to contain `{{question}}` cannot rewrite the prompt.

/// The system message sent with every judge request.
pub const SYSTEM: &str = include_str!("prompts/system.txt");
/// Faithfulness, step 1: the answer's statements. Placeholders: `question`, `answer`.
pub const FAITHFULNESS_STATEMENTS: &str = include_str!("prompts/faithfulness_statements.txt");
/// Faithfulness, step 2: a verdict per statement against the contexts. Placeholders: `contexts`, `statements`.
pub const FAITHFULNESS_VERDICTS: &str = include_str!("prompts/faithfulness_verdicts.txt");
/// Answer relevancy: questions the answer answers, and whether it is noncommittal. Placeholders: `count`, `answer`.
pub const ANSWER_RELEVANCY: &str = include_str!("prompts/answer_relevancy.txt");
/// Context precision: was one context useful for the reference answer. Placeholders: `question`, `reference`,
/// `context`.
pub const CONTEXT_PRECISION: &str = include_str!("prompts/context_precision.txt");
/// Context recall: the reference's statements, each attributed to the contexts or not. Placeholders: `question`,
/// `reference`, `contexts`.
pub const CONTEXT_RECALL: &str = include_str!("prompts/context_recall.txt");

/// Fills `template`'s `{{name}}` placeholders from `values` in one pass. A placeholder with no value is left as it
/// is (the tests check that every template's placeholders are exactly the ones the judge fills).
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, value)| value.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match values.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Texts as a numbered list, `[1] …` one a paragraph, the way the prompts show contexts and statements.
pub fn numbered(texts: &[String]) -> String {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| format!("[{}] {}", index + 1, text.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The distinct `{{name}}` placeholders of a template, in order of first appearance.
#[cfg(test)]
fn placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        if !names.contains(&&after[..end]) {
            names.push(&after[..end]);
        }
        rest = &after[end + 2..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_every_placeholder_once_and_never_rescans_values() {
        let rendered = render(
            "Q: {{question}} A: {{answer}} Q again: {{question}}",
            &[("question", "what is {{answer}}?"), ("answer", "42")],
        );
        assert_eq!(rendered, "Q: what is {{answer}}? A: 42 Q again: what is {{answer}}?");
    }

    #[test]
    fn render_leaves_unknown_and_unclosed_placeholders_alone() {
        assert_eq!(render("{{a}} {{b}} {{c", &[("a", "1")]), "1 {{b}} {{c");
        assert_eq!(render("JSON {\"k\": [{\"v\": 1}]}", &[]), "JSON {\"k\": [{\"v\": 1}]}");
    }

    #[test]
    fn templates_use_exactly_the_placeholders_the_judge_fills() {
        let expected: [(&str, &[&str]); 6] = [
            (SYSTEM, &[]),
            (FAITHFULNESS_STATEMENTS, &["question", "answer"]),
            (FAITHFULNESS_VERDICTS, &["contexts", "statements"]),
            (ANSWER_RELEVANCY, &["count", "answer"]),
            (CONTEXT_PRECISION, &["question", "reference", "context"]),
            (CONTEXT_RECALL, &["question", "reference", "contexts"]),
        ];
        for (template, names) in expected {
            assert_eq!(placeholders(template), names, "{template}");
            assert!(template.contains("JSON"), "json_object mode needs the word JSON in the prompt: {template}");
        }
    }

    #[test]
    fn numbered_lists_texts_from_one() {
        assert_eq!(numbered(&["a ".into(), "b".into()]), "[1] a\n\n[2] b");
        assert_eq!(numbered(&[]), "");
    }
}
