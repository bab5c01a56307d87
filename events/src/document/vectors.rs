//! The compact encoding of embedding vectors in [`ChunksEmbedded`](crate::document::ChunksEmbedded) events.
//!
//! A vector is stored as base64 (standard alphabet, padded) of its components as little-endian `f32`s: about a
//! third of the size of a JSON array of numbers, and bit-exact, so a rebuilt vector index holds exactly the vectors
//! the embedder returned (a JSON number round-trip need not).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Bytes per component.
const F32_BYTES: usize = size_of::<f32>();

/// Why an encoded vector could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// The text is not valid base64.
    #[error("the vector is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The decoded bytes are not `dimensions` little-endian `f32`s.
    #[error(
        "expected a vector of {expected} dimensions ({} bytes), got {actual_bytes} bytes",
        expected.saturating_mul(F32_BYTES)
    )]
    WrongLength {
        /// The dimensions expected.
        expected: usize,
        /// The number of bytes decoded.
        actual_bytes: usize,
    },
}

/// Encodes a vector as base64 of its little-endian `f32` components.
pub fn encode_vector(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|component| component.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

/// Decodes a vector written by [`encode_vector`], checking it has `dimensions` components.
pub fn decode_vector(encoded: &str, dimensions: usize) -> Result<Vec<f32>, VectorError> {
    let bytes = STANDARD.decode(encoded)?;
    let (components, rest) = bytes.as_chunks::<F32_BYTES>();
    if !rest.is_empty() || components.len() != dimensions {
        return Err(VectorError::WrongLength { expected: dimensions, actual_bytes: bytes.len() });
    }
    Ok(components.iter().map(|component| f32::from_le_bytes(*component)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_vector_of_encoded_vector_round_trips_bit_exactly() {
        let vector = [0.0, -0.0, 1.0, -1.5, f32::MIN_POSITIVE, f32::MAX, 0.1, 1e-30];
        let decoded = decode_vector(&encode_vector(&vector), vector.len()).unwrap();
        let bits = |values: &[f32]| values.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&decoded), bits(&vector));
    }

    #[test]
    fn encode_vector_uses_little_endian_f32_and_padded_base64() {
        // 1.0f32 is 0x3F800000, little-endian 00 00 80 3F.
        assert_eq!(encode_vector(&[1.0]), "AACAPw==");
        assert_eq!(encode_vector(&[]), "");
    }

    #[test]
    fn decode_vector_with_wrong_dimensions_returns_wrong_length() {
        let encoded = encode_vector(&[1.0, 2.0, 3.0]);
        let error = decode_vector(&encoded, 4).unwrap_err();
        assert_eq!(error, VectorError::WrongLength { expected: 4, actual_bytes: 12 });
        assert_eq!(error.to_string(), "expected a vector of 4 dimensions (16 bytes), got 12 bytes");
    }

    #[test]
    fn decode_vector_with_partial_component_returns_wrong_length() {
        let encoded = STANDARD.encode([0u8; 6]);
        assert!(matches!(decode_vector(&encoded, 1), Err(VectorError::WrongLength { expected: 1, actual_bytes: 6 })));
    }

    #[test]
    fn decode_vector_with_invalid_base64_returns_base64_error() {
        assert!(matches!(decode_vector("not base64!", 1), Err(VectorError::Base64(_))));
    }

    #[test]
    fn decode_vector_of_empty_text_with_zero_dimensions_returns_empty_vector() {
        assert_eq!(decode_vector("", 0).unwrap(), Vec::<f32>::new());
    }
}
