//! The pipeline's happy path and its ordering invariants: parse, chunk, embed, ready.

use crate::document::tests::fixtures::{
    STATUSES, TEXT_LENGTH, TEXT_SHA256, chunk, chunked, chunker, embedded, history, parsed, ready, record_chunks,
    record_embeddings, record_parse, uploaded, vectors,
};
use crate::document::tests::given::given;
use crate::document::{
    ChunkerSettings, DocumentChunked, DocumentCommand, DocumentError, DocumentStatus, encode_vector,
};

fn record_chunks_of(chunks: Vec<crate::document::Chunk>) -> DocumentCommand {
    DocumentCommand::RecordChunks { chunker: chunker(), chunks }
}

fn record_embeddings_of(dimensions: u32, vectors: Vec<Vec<f32>>) -> DocumentCommand {
    DocumentCommand::RecordEmbeddings { model: "all-MiniLM-L6-v2".to_owned(), dimensions, vectors }
}

fn statuses_except(allowed: &[DocumentStatus]) -> impl Iterator<Item = DocumentStatus> {
    STATUSES.into_iter().filter(move |status| *status != DocumentStatus::Deleted && !allowed.contains(status))
}

#[test]
fn decide_parse_when_uploaded_emits_document_parsed() {
    given([uploaded()]).when(record_parse()).then_expect([parsed()]);
}

#[test]
fn decide_parse_when_not_freshly_uploaded_returns_parse_not_expected() {
    for status in statuses_except(&[DocumentStatus::Uploaded]) {
        given(history(status)).when(record_parse()).then_error_eq(DocumentError::ParseNotExpected { status });
    }
}

#[test]
fn decide_parse_with_malformed_text_sha256_returns_invalid_digest() {
    let command = DocumentCommand::RecordParse {
        text_sha256: "not a digest".to_owned(),
        text_length: TEXT_LENGTH,
        title: None,
        page_count: None,
        parser: "plain".to_owned(),
    };
    given([uploaded()])
        .when(command)
        .then_error(|error| matches!(error, DocumentError::InvalidDigest { field: "text_sha256", .. }));
}

#[test]
fn decide_parse_with_blank_parser_returns_empty_field() {
    let command = DocumentCommand::RecordParse {
        text_sha256: TEXT_SHA256.to_owned(),
        text_length: TEXT_LENGTH,
        title: None,
        page_count: None,
        parser: "  ".to_owned(),
    };
    given([uploaded()]).when(command).then_error_eq(DocumentError::EmptyField { field: "parser" });
}

#[test]
fn decide_chunks_when_parsed_emits_document_chunked() {
    given([uploaded(), parsed()]).when(record_chunks()).then_expect([chunked()]);
}

#[test]
fn decide_chunks_with_empty_ranges_and_text_end_emits_document_chunked() {
    let chunks = vec![chunk(0, 0, 0), chunk(1, TEXT_LENGTH, TEXT_LENGTH)];
    given([uploaded(), parsed()]).when(record_chunks_of(chunks.clone())).then_expect([DocumentChunked {
        chunker: chunker(),
        chunks,
    }
    .into()]);
}

#[test]
fn decide_chunks_when_not_parsed_returns_chunks_without_parse() {
    for status in statuses_except(&[DocumentStatus::Parsed]) {
        given(history(status)).when(record_chunks()).then_error_eq(DocumentError::ChunksWithoutParse { status });
    }
}

#[test]
fn decide_chunks_with_no_chunk_returns_no_chunks() {
    given([uploaded(), parsed()]).when(record_chunks_of(Vec::new())).then_error_eq(DocumentError::NoChunks);
}

#[test]
fn decide_chunks_with_indexes_out_of_order_returns_chunk_out_of_order() {
    let cases = [
        (vec![chunk(1, 0, 10)], 0, 1),
        (vec![chunk(0, 0, 10), chunk(2, 10, 20)], 1, 2),
        (vec![chunk(0, 0, 10), chunk(0, 10, 20)], 1, 0),
        (vec![chunk(0, 0, 10), chunk(1, 10, 20), chunk(3, 20, 30), chunk(2, 30, 40)], 2, 3),
    ];
    for (chunks, position, index) in cases {
        given([uploaded(), parsed()])
            .when(record_chunks_of(chunks))
            .then_error_eq(DocumentError::ChunkOutOfOrder { position, index });
    }
}

#[test]
fn decide_chunks_with_range_ending_before_start_returns_invalid_chunk_range() {
    given([uploaded(), parsed()])
        .when(record_chunks_of(vec![chunk(0, 0, 10), chunk(1, 30, 20)]))
        .then_error_eq(DocumentError::InvalidChunkRange { index: 1, byte_start: 30, byte_end: 20 });
}

#[test]
fn decide_chunks_past_end_of_text_returns_chunk_outside_text() {
    given([uploaded(), parsed()]).when(record_chunks_of(vec![chunk(0, 0, TEXT_LENGTH + 1)])).then_error_eq(
        DocumentError::ChunkOutsideText { index: 0, byte_end: TEXT_LENGTH + 1, text_length: TEXT_LENGTH },
    );
}

#[test]
fn decide_chunks_with_impossible_chunker_returns_invalid_chunker() {
    for (max_chars, overlap) in [(0, 0), (100, 100), (100, 150)] {
        given([uploaded(), parsed()])
            .when(DocumentCommand::RecordChunks { chunker: ChunkerSettings { max_chars, overlap }, chunks: vec![] })
            .then_error_eq(DocumentError::InvalidChunker { max_chars, overlap });
    }
}

#[test]
fn decide_embeddings_when_chunked_emits_chunks_embedded() {
    given([uploaded(), parsed(), chunked()]).when(record_embeddings()).then_expect([embedded()]);
}

#[test]
fn decide_embeddings_without_chunks_returns_error() {
    for status in statuses_except(&[DocumentStatus::Chunked]) {
        given(history(status))
            .when(record_embeddings())
            .then_error_eq(DocumentError::EmbeddingsWithoutChunks { status });
    }
}

#[test]
fn decide_embeddings_with_zero_dimensions_returns_zero_dimensions() {
    given([uploaded(), parsed(), chunked()])
        .when(record_embeddings_of(0, vec![vec![], vec![]]))
        .then_error_eq(DocumentError::ZeroDimensions);
}

#[test]
fn decide_embeddings_with_blank_model_returns_empty_field() {
    given([uploaded(), parsed(), chunked()])
        .when(DocumentCommand::RecordEmbeddings { model: String::new(), dimensions: 3, vectors: vectors() })
        .then_error_eq(DocumentError::EmptyField { field: "model" });
}

#[test]
fn decide_embeddings_with_one_vector_per_chunk_missing_returns_vector_count_mismatch() {
    for count in [0, 1, 3] {
        let vectors = vec![vec![0.0; 3]; count];
        given([uploaded(), parsed(), chunked()])
            .when(record_embeddings_of(3, vectors))
            .then_error_eq(DocumentError::VectorCountMismatch { vectors: count, chunks: 2 });
    }
}

#[test]
fn decide_embeddings_with_vector_of_wrong_length_returns_vector_dimension_mismatch() {
    given([uploaded(), parsed(), chunked()])
        .when(record_embeddings_of(3, vec![vec![0.0; 3], vec![0.0; 4]]))
        .then_error_eq(DocumentError::VectorDimensionMismatch { index: 1, expected: 3, actual: 4 });
}

#[test]
fn decide_embeddings_with_non_finite_value_returns_non_finite_vector() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        given([uploaded(), parsed(), chunked()])
            .when(record_embeddings_of(3, vec![vec![0.0; 3], vec![0.0, 1.0, bad]]))
            .then_error_eq(DocumentError::NonFiniteVector { index: 1, component: 2 });
    }
}

#[test]
fn decide_embeddings_encodes_each_vector_compactly() {
    let events =
        crate::document::decide(&crate::document::replay(&history(DocumentStatus::Chunked)), record_embeddings())
            .unwrap();
    let [crate::document::DocumentEvent::ChunksEmbedded(embedded)] = events.as_slice() else {
        panic!("unexpected {events:?}")
    };
    assert_eq!(embedded.vectors[0], encode_vector(&vectors()[0]));
    assert_eq!(embedded.decode_vectors().unwrap(), vectors());
}

#[test]
fn decide_mark_ready_when_embedded_emits_document_ready() {
    given(history(DocumentStatus::Embedded)).when(DocumentCommand::MarkReady).then_expect([ready()]);
}

#[test]
fn decide_mark_ready_when_chunked_without_embedder_emits_document_ready() {
    given(history(DocumentStatus::Chunked)).when(DocumentCommand::MarkReady).then_expect([ready()]);
}

#[test]
fn decide_mark_ready_before_chunking_or_when_finished_returns_not_ready_to_complete() {
    for status in statuses_except(&[DocumentStatus::Chunked, DocumentStatus::Embedded]) {
        given(history(status))
            .when(DocumentCommand::MarkReady)
            .then_error_eq(DocumentError::NotReadyToComplete { status });
    }
}
