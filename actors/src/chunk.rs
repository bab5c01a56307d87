//! Chunking: splits parsed text into overlapping chunks with the `text-splitter` crate (Markdown-aware for
//! Markdown), keeping each chunk's byte range in the parsed text so an answer can cite exactly where it came from.

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

/// Chunk size and overlap, in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSettings {
    /// Largest chunk.
    pub max_chars: usize,
    /// Characters shared by neighbouring chunks.
    pub overlap: usize,
}

impl Default for ChunkSettings {
    fn default() -> Self {
        Self { max_chars: 1_000, overlap: 100 }
    }
}

/// One chunk of the parsed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextChunk {
    /// Its position among the document's chunks, from 0.
    pub index: u32,
    /// The text (exactly `parsed[byte_start..byte_end]`).
    pub text: String,
    /// Where it starts in the parsed text.
    pub byte_start: u64,
    /// Where it ends (exclusive).
    pub byte_end: u64,
}

/// Settings the splitter refuses.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunk settings: {0}")]
pub struct ChunkSettingsError(String);

/// Splits `text`; `markdown` selects the Markdown-aware splitter. Whitespace-only text gives no chunk.
pub fn chunk(text: &str, markdown: bool, settings: ChunkSettings) -> Result<Vec<TextChunk>, ChunkSettingsError> {
    if settings.max_chars == 0 || settings.overlap >= settings.max_chars {
        return Err(ChunkSettingsError(format!(
            "max_chars must be positive and larger than overlap (got {} and {})",
            settings.max_chars, settings.overlap
        )));
    }
    let config = ChunkConfig::new(settings.max_chars)
        .with_overlap(settings.overlap)
        .map_err(|error| ChunkSettingsError(error.to_string()))?;
    let spans: Vec<(usize, &str)> = if markdown {
        MarkdownSplitter::new(config).chunk_indices(text).collect()
    } else {
        TextSplitter::new(config).chunk_indices(text).collect()
    };
    Ok(spans
        .into_iter()
        .filter(|(_, piece)| !piece.trim().is_empty())
        .enumerate()
        .map(|(index, (start, piece))| TextChunk {
            index: index as u32,
            text: piece.to_owned(),
            byte_start: start as u64,
            byte_end: (start + piece.len()) as u64,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_long_text_returns_ordered_chunks_whose_ranges_slice_the_text() {
        let text = "Sentence number one is here. ".repeat(200) + "Ünïcode ends it.";
        let chunks = chunk(&text, false, ChunkSettings { max_chars: 300, overlap: 50 }).unwrap();
        assert!(chunks.len() > 10);
        for (i, piece) in chunks.iter().enumerate() {
            assert_eq!(piece.index as usize, i);
            assert_eq!(&text[piece.byte_start as usize..piece.byte_end as usize], piece.text);
            assert!(piece.text.chars().count() <= 300);
        }
        // Overlap: each chunk starts before the previous one ends.
        assert!(chunks.windows(2).all(|pair| pair[1].byte_start < pair[0].byte_end));
        assert!(chunks.last().unwrap().text.ends_with("Ünïcode ends it."));
    }

    #[test]
    fn chunk_markdown_keeps_sections_apart() {
        let text = format!("# One\n\n{}\n\n# Two\n\n{}\n", "alpha ".repeat(30), "beta ".repeat(30));
        let chunks = chunk(&text, true, ChunkSettings { max_chars: 200, overlap: 0 }).unwrap();
        assert!(chunks.iter().any(|c| c.text.starts_with("# Two")), "{chunks:?}");
        assert!(chunks.iter().all(|c| !(c.text.contains("alpha") && c.text.contains("beta"))));
    }

    #[test]
    fn chunk_whitespace_or_bad_settings_returns_nothing_or_error() {
        assert!(chunk("  \n\t ", false, ChunkSettings::default()).unwrap().is_empty());
        assert!(chunk("x", false, ChunkSettings { max_chars: 10, overlap: 10 }).is_err());
    }
}
