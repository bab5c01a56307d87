use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use rust_stemmers::Algorithm;

use crate::segment::data_types::index::{SnowballLanguage, SnowballParams, StemmingAlgorithm};

pub enum Stemmer {
    Snowball(Arc<rust_stemmers::Stemmer>, Arc<StemCache>),
}

/// dossier patch: the stems of recently seen tokens. Text repeats its words, and the Snowball stemmer costs far more
/// than a lookup (it was about half of BM25's time in dossier's profiles). Stemming is a pure function of the token,
/// so the result is the same; the cache starts over when it is full.
#[derive(Default)]
pub struct StemCache(parking_lot::Mutex<ahash::AHashMap<Box<str>, Box<str>>>);

/// dossier patch: tokens whose stems [`StemCache`] keeps before it starts over.
const STEM_CACHE_ENTRIES: usize = 100_000;

impl StemCache {
    fn stem<'a>(&self, stemmer: &rust_stemmers::Stemmer, input: Cow<'a, str>) -> Cow<'a, str> {
        if let Some(stem) = self.0.lock().get(input.as_ref()) {
            return if **stem == *input { input } else { Cow::Owned(stem.to_string()) };
        }
        let token: Box<str> = input.as_ref().into();
        let stem = stemmer.stem_cow(input);
        let mut cache = self.0.lock();
        if cache.len() >= STEM_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(token, stem.as_ref().into());
        stem
    }
}

impl std::fmt::Debug for Stemmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Snowball(..) => f.debug_tuple("Snowball").finish(),
        }
    }
}

impl Stemmer {
    pub fn from_algorithm(config: &StemmingAlgorithm) -> Self {
        match config {
            StemmingAlgorithm::Snowball(SnowballParams {
                r#type: _,
                language,
            }) => Self::Snowball(
                Arc::new(rust_stemmers::Stemmer::create(Algorithm::from(*language))),
                Arc::default(),
            ),
        }
    }

    /// Construct default stemmer for a given language.
    /// Returns `None` if the language is not supported.
    pub fn try_default_from_language(language: &str) -> Option<Self> {
        let language = SnowballLanguage::from_str(language).ok()?;

        Some(Self::Snowball(
            Arc::new(rust_stemmers::Stemmer::create(Algorithm::from(language))),
            Arc::default(),
        ))
    }

    pub fn stem<'a>(&self, input: Cow<'a, str>) -> Cow<'a, str> {
        match self {
            Stemmer::Snowball(algorithm, cache) => cache.stem(algorithm, input),
        }
    }
}
