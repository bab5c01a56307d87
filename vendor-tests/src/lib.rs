//! The patch in `vendor/qdrant-edge` (see `vendor/README.md`) under test. The two posting-list files are compiled
//! here as they are, inside the module layout they expect, so `cargo test --workspace` runs qdrant's own tests of
//! them and the check below, without building all of qdrant-edge's test suite.

#[rustfmt::skip]
#[allow(warnings, clippy::all, clippy::pedantic)]
#[path = "../../vendor/qdrant-edge/src/sparse/index/posting_list_common.rs"]
pub(crate) mod posting_list_common;

#[rustfmt::skip]
#[allow(warnings, clippy::all, clippy::pedantic)]
#[path = "../../vendor/qdrant-edge/src/sparse/index/posting_list.rs"]
pub(crate) mod posting_list;

/// The paths the vendored files import from.
mod common {
    pub mod types {
        pub type PointOffsetType = u32;
    }
}

/// The paths the vendored files import from.
pub(crate) mod sparse {
    pub mod common {
        pub mod types {
            pub type DimWeight = f32;
        }
    }
    pub mod index {
        #[allow(unused_imports, reason = "qdrant's own tests import through this path")]
        pub(crate) use crate::{posting_list, posting_list_common};
    }
}

#[cfg(test)]
mod tests {
    use crate::posting_list::PostingList;
    use crate::posting_list_common::{DEFAULT_MAX_NEXT_WEIGHT, PostingElementEx};

    /// Each entry's `max_next_weight` is the largest weight after it (the invariant sparse search prunes with).
    fn assert_max_next_weights(list: &PostingList, step: usize) {
        let mut after = DEFAULT_MAX_NEXT_WEIGHT;
        for element in list.elements.iter().rev() {
            assert_eq!(element.max_next_weight, after, "step {step}: entry {} in {:?}", element.record_id, list);
            after = after.max(element.weight);
        }
    }

    #[test]
    fn max_next_weight_is_the_largest_later_weight_after_random_inserts_updates_and_deletes() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % u64::from(below)) as u32
        };
        let mut list = PostingList::new_one(1_000, 1.0);
        for step in 0..20_000 {
            // Mostly appends (new points), with updates in place, inserts in gaps and deletes mixed in.
            let weight = if next(20) == 0 { 10.0 + next(100) as f32 } else { next(100) as f32 / 10.0 };
            match next(10) {
                0..=5 => {
                    let last = list.elements.last().map_or(0, |element| element.record_id);
                    list.upsert(PostingElementEx::new(last + 1 + next(3), weight));
                }
                6 | 7 => {
                    let id = list.elements.get(next(list.elements.len() as u32 + 1) as usize).map(|e| e.record_id);
                    list.upsert(PostingElementEx::new(id.unwrap_or(0), weight));
                }
                8 => list.upsert(PostingElementEx::new(next(2_000), weight)),
                _ => {
                    let id = list.elements.get(next(list.elements.len() as u32 + 1) as usize).map(|e| e.record_id);
                    list.delete(id.unwrap_or(0));
                }
            }
            assert_max_next_weights(&list, step);
        }
        assert!(list.elements.len() > 1_000, "the list grew: {}", list.elements.len());
    }
}
