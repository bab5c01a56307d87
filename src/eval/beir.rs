//! Strict readers for the BEIR data layout: `corpus.jsonl` (plain or gzipped), `queries.jsonl` and a qrels TSV.
//!
//! Strict means: every non-blank line must be exactly what the format says, or reading stops with a
//! [`DatasetError`] naming the file, the 1-based line number and what is wrong (a missing or unknown field, an empty
//! or repeated id, a score that is not an integer, a wrong number of columns). Blank lines are skipped. Nothing is
//! silently dropped: qrels that name documents or queries the other files do not have are kept and counted when the
//! evaluation set is built (see `EvalSet` in the runner).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A data file that could not be read, or a line in it that is not what the format says.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{} line {line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// One corpus document.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// `_id`: the document id the qrels refer to.
    #[serde(rename = "_id")]
    pub id: String,
    /// `title`: may be absent or empty (BEIR's own loader treats it as optional).
    #[serde(default)]
    pub title: String,
    /// `text`: the body.
    pub text: String,
    /// `metadata`: anything else the corpus carries, kept as given.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Document {
    /// What gets indexed: the title and the text separated by a blank line, or the text alone when there is no
    /// title.
    pub fn body(&self) -> String {
        if self.title.trim().is_empty() { self.text.clone() } else { format!("{}\n\n{}", self.title, self.text) }
    }
}

/// One query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// `_id`: the query id the qrels refer to.
    #[serde(rename = "_id")]
    pub id: String,
    /// `text`: what is searched for.
    pub text: String,
    /// `metadata`: optional, kept as given (BEIR's query files often carry an empty object).
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Relevance judgements: for each query id, the graded relevance of each judged document id. Relevance is an
/// integer; 0 or less means "judged not relevant" (trec_eval's convention).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Qrels {
    /// query id → document id → relevance.
    pub judgements: BTreeMap<String, BTreeMap<String, i32>>,
    /// Judgement lines read (the header not included).
    pub lines: usize,
}

impl Qrels {
    /// The judgements of one query, if it has any.
    pub fn of(&self, query_id: &str) -> Option<&BTreeMap<String, i32>> {
        self.judgements.get(query_id)
    }
}

/// The BEIR qrels header, accepted (and skipped) on the first non-blank line only.
const QRELS_HEADER: [&str; 3] = ["query-id", "corpus-id", "score"];

/// Reads a BEIR `corpus.jsonl`, gzipped when the name ends in `.gz`; with `limit`, only the first `limit` documents.
pub fn read_corpus(path: &Path, limit: Option<usize>) -> Result<Vec<Document>, DatasetError> {
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut documents = Vec::new();
    for_each_line(path, |line, text| {
        if limit.is_some_and(|limit| documents.len() >= limit) {
            return Ok(false);
        }
        let document: Document = parse_json(text)?;
        check_id(&document.id, line, &mut first_line)?;
        documents.push(document);
        Ok(true)
    })?;
    Ok(documents)
}

/// Reads a BEIR `queries.jsonl` (gzipped when the name ends in `.gz`). A query with empty text is an error: it could
/// not be searched.
pub fn read_queries(path: &Path) -> Result<Vec<Query>, DatasetError> {
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut queries = Vec::new();
    for_each_line(path, |line, text| {
        let query: Query = parse_json(text)?;
        check_id(&query.id, line, &mut first_line)?;
        if query.text.trim().is_empty() {
            return Err(format!("query `{}` has empty text", query.id));
        }
        queries.push(query);
        Ok(true)
    })?;
    Ok(queries)
}

/// Reads a qrels TSV: `query-id<TAB>corpus-id<TAB>score` a line, integer (graded) scores, the BEIR header line
/// optional. A (query, document) pair judged twice is an error naming both lines.
pub fn read_qrels(path: &Path) -> Result<Qrels, DatasetError> {
    let mut qrels = Qrels::default();
    let mut first_line: HashMap<(String, String), usize> = HashMap::new();
    let mut seen_any = false;
    for_each_line(path, |line, text| {
        let fields: Vec<&str> = text.trim_end_matches('\r').split('\t').collect();
        let first = !seen_any;
        seen_any = true;
        if first && fields == QRELS_HEADER {
            return Ok(true);
        }
        let [query, document, score] = fields[..] else {
            return Err(format!(
                "expected 3 tab-separated fields (query-id, corpus-id, score), found {}: {}",
                fields.len(),
                excerpt(text)
            ));
        };
        let (query, document) = (query.trim(), document.trim());
        if query.is_empty() || document.is_empty() {
            return Err(format!("empty query-id or corpus-id: {}", excerpt(text)));
        }
        let score: i32 = score.trim().parse().map_err(|_| {
            format!("score `{}` is not an integer (relevance is graded in whole numbers)", score.trim())
        })?;
        if let Some(earlier) = first_line.insert((query.to_owned(), document.to_owned()), line) {
            return Err(format!("query `{query}` and document `{document}` are already judged on line {earlier}"));
        }
        qrels.judgements.entry(query.to_owned()).or_default().insert(document.to_owned(), score);
        qrels.lines += 1;
        Ok(true)
    })?;
    Ok(qrels)
}

/// Calls `visit(line_number, line)` for each non-blank line until it returns `Ok(false)`; an `Err(reason)` becomes a
/// [`DatasetError::Line`] for that line.
fn for_each_line(path: &Path, mut visit: impl FnMut(usize, &str) -> Result<bool, String>) -> Result<(), DatasetError> {
    let io = |source| DatasetError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|ext| ext == "gz") {
        Box::new(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    for (index, text) in reader.lines().enumerate() {
        let line = index + 1;
        let text = text.map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => {
                DatasetError::Line { path: path.to_owned(), line, reason: "not valid UTF-8".to_owned() }
            }
            _ => io(source),
        })?;
        if text.trim().is_empty() {
            continue;
        }
        match visit(line, &text) {
            Ok(true) => {}
            Ok(false) => break,
            Err(reason) => return Err(DatasetError::Line { path: path.to_owned(), line, reason }),
        }
    }
    Ok(())
}

/// Parses one JSON line, with [`json_error_reason`] as the reason.
fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|error| json_error_reason(&error))
}

/// serde_json's message for a one-line document: "at line 1 column N" becomes "(column N)", since the line number
/// that matters is the file's (or there is only one line).
pub(crate) fn json_error_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(reason) if error.line() == 1 => format!("{reason} (column {})", error.column()),
        Some(reason) => format!("{reason} (line {}, column {})", error.line(), error.column()),
        None => message,
    }
}

/// An id must be non-blank and appear once per file.
fn check_id(id: &str, line: usize, first_line: &mut HashMap<String, usize>) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("empty `_id`".to_owned());
    }
    match first_line.insert(id.to_owned(), line) {
        Some(earlier) => Err(format!("`_id` `{id}` already appears on line {earlier}")),
        None => Ok(()),
    }
}

/// The start of a line, for error messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A temporary file holding `contents`, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> Self {
            let dir = std::env::temp_dir().join(format!("dossier-beir-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join(name);
            std::fs::write(&path, contents).expect("write temp file");
            Self(path)
        }

        fn gz(name: &str, contents: &str) -> Self {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(contents.as_bytes()).expect("gzip");
            Self::new(name, &encoder.finish().expect("gzip"))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn line_error(error: DatasetError) -> (usize, String) {
        match error {
            DatasetError::Line { line, reason, .. } => (line, reason),
            other => panic!("expected a line error, got {other}"),
        }
    }

    #[test]
    fn read_corpus_with_plain_and_gzip_files_reads_the_same_documents() {
        let text = concat!(
            r#"{"_id": "d1", "title": "Title", "text": "Body one."}"#,
            "\n\n",
            r#"{"_id": "d2", "text": "No title.", "metadata": {"url": "u"}}"#,
            "\n"
        );
        let plain = TempFile::new("corpus.jsonl", text.as_bytes());
        let gzipped = TempFile::gz("corpus.jsonl.gz", text);

        let documents = read_corpus(&plain.0, None).expect("plain corpus");

        assert_eq!(documents, read_corpus(&gzipped.0, None).expect("gzipped corpus"));
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].body(), "Title\n\nBody one.");
        assert_eq!(documents[1].body(), "No title.");
        assert!(documents[1].metadata.as_ref().is_some_and(|map| map.contains_key("url")));
        assert_eq!(read_corpus(&plain.0, Some(1)).expect("limited").len(), 1);
    }

    #[test]
    fn read_corpus_with_missing_text_names_file_line_and_field() {
        let file = TempFile::new(
            "corpus.jsonl",
            b"{\"_id\": \"d1\", \"text\": \"ok\"}\n\n{\"_id\": \"d2\", \"title\": \"t\"}\n",
        );

        let error = read_corpus(&file.0, None).expect_err("missing text");

        let message = error.to_string();
        assert!(message.contains("corpus.jsonl line 3: missing field `text`"), "{message}");
    }

    #[test]
    fn read_corpus_with_unknown_field_duplicate_or_empty_id_fails_on_that_line() {
        let unknown = TempFile::new("c.jsonl", br#"{"_id": "d1", "txt": "typo", "text": "t"}"#);
        let (line, reason) = line_error(read_corpus(&unknown.0, None).expect_err("unknown field"));
        assert_eq!(line, 1);
        assert!(reason.contains("unknown field `txt`"), "{reason}");

        let duplicate =
            TempFile::new("c.jsonl", b"{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d1\", \"text\": \"b\"}\n");
        let (line, reason) = line_error(read_corpus(&duplicate.0, None).expect_err("duplicate id"));
        assert_eq!((line, reason.as_str()), (2, "`_id` `d1` already appears on line 1"));

        let empty = TempFile::new("c.jsonl", br#"{"_id": " ", "text": "a"}"#);
        assert_eq!(line_error(read_corpus(&empty.0, None).expect_err("empty id")), (1, "empty `_id`".to_owned()));
    }

    #[test]
    fn read_corpus_with_truncated_json_or_bad_utf8_fails_on_that_line() {
        let truncated = TempFile::new("c.jsonl", b"{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d2\", \"te\n");
        let (line, reason) = line_error(read_corpus(&truncated.0, None).expect_err("truncated"));
        assert_eq!(line, 2);
        assert!(reason.contains("EOF") && reason.contains("column"), "{reason}");

        let invalid = TempFile::new("c.jsonl", b"{\"_id\": \"d1\", \"text\": \"\xff\"}\n");
        assert_eq!(line_error(read_corpus(&invalid.0, None).expect_err("utf-8")), (1, "not valid UTF-8".to_owned()));
    }

    #[test]
    fn read_corpus_with_missing_file_names_the_file() {
        let error = read_corpus(Path::new("/nonexistent/corpus.jsonl"), None).expect_err("missing");
        assert!(matches!(error, DatasetError::Io { .. }));
        assert!(error.to_string().starts_with("/nonexistent/corpus.jsonl: "), "{error}");
    }

    #[test]
    fn read_queries_with_metadata_and_blank_lines_reads_them_in_order() {
        let file = TempFile::new(
            "queries.jsonl",
            b"{\"_id\": \"q2\", \"text\": \"second\", \"metadata\": {}}\n\n{\"_id\": \"q1\", \"text\": \"first\"}\n",
        );

        let queries = read_queries(&file.0).expect("queries");

        let ids: Vec<&str> = queries.iter().map(|query| query.id.as_str()).collect();
        assert_eq!(ids, ["q2", "q1"]);
    }

    #[test]
    fn read_queries_with_empty_text_or_wrong_type_fails_on_that_line() {
        let empty =
            TempFile::new("q.jsonl", b"{\"_id\": \"q1\", \"text\": \"x\"}\n{\"_id\": \"q2\", \"text\": \"  \"}\n");
        assert_eq!(
            line_error(read_queries(&empty.0).expect_err("empty text")),
            (2, "query `q2` has empty text".to_owned())
        );

        let number = TempFile::new("q.jsonl", br#"{"_id": 7, "text": "x"}"#);
        let (line, reason) = line_error(read_queries(&number.0).expect_err("numeric id"));
        assert_eq!(line, 1);
        assert!(reason.starts_with("invalid type: integer `7`, expected a string"), "{reason}");
    }

    #[test]
    fn read_qrels_with_header_and_graded_scores_reads_every_judgement() {
        let file = TempFile::new("qrels.tsv", b"query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\r\n\nq2\td1\t-1\n");

        let qrels = read_qrels(&file.0).expect("qrels");

        assert_eq!(qrels.lines, 3);
        assert_eq!(qrels.of("q1").map(|judged| judged.get("d1")), Some(Some(&2)));
        assert_eq!(qrels.of("q1").map(|judged| judged.get("d2")), Some(Some(&0)));
        assert_eq!(qrels.of("q2").map(|judged| judged.get("d1")), Some(Some(&-1)));
    }

    #[test]
    fn read_qrels_without_header_reads_the_first_line_as_a_judgement() {
        let file = TempFile::new("qrels.tsv", b"q1\td1\t1\n");
        assert_eq!(read_qrels(&file.0).expect("qrels").lines, 1);
    }

    #[test]
    fn read_qrels_with_malformed_lines_names_the_line_and_the_problem() {
        let cases: [(&[u8], usize, &str); 6] = [
            (b"q1\td1\t1\nq1 d2 1\n", 2, "expected 3 tab-separated fields (query-id, corpus-id, score), found 1"),
            (b"q1\td1\t1\textra\n", 1, "found 4"),
            (b"q1\td1\t1.5\n", 1, "score `1.5` is not an integer"),
            (b"q1\t\t1\n", 1, "empty query-id or corpus-id"),
            (b"q1\td1\t1\nquery-id\tcorpus-id\tscore\n", 2, "score `score` is not an integer"),
            (b"q1\td1\t1\nq2\td1\t1\nq1\td1\t0\n", 3, "query `q1` and document `d1` are already judged on line 1"),
        ];
        for (contents, expected_line, expected_reason) in cases {
            let file = TempFile::new("qrels.tsv", contents);
            let (line, reason) = line_error(read_qrels(&file.0).expect_err("malformed qrels"));
            assert_eq!(line, expected_line, "{reason}");
            assert!(reason.contains(expected_reason), "{reason:?} does not contain {expected_reason:?}");
        }
    }

    #[test]
    fn read_scifact_sample_matches_its_readme() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scifact");
        let corpus = read_corpus(&data.join("corpus.jsonl.gz"), None).expect("corpus");
        let queries = read_queries(&data.join("queries_train.jsonl")).expect("queries");
        let qrels = read_qrels(&data.join("qrels_train.tsv")).expect("qrels");
        assert_eq!((corpus.len(), queries.len(), qrels.lines), (5_183, 809, 919));
    }
}
