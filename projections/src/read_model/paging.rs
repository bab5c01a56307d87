//! Keyset paging shared by both read-model backends.

use uuid::Uuid;

use crate::read_model::row::DocumentRow;
use crate::read_model::store::DocumentPage;

/// The inclusive lower bound of the ids after `after`, or `None` when no id can follow it.
///
/// Both backends order ids as bytes, which is the UUIDs' numeric order; an inclusive bound needs one statement
/// whether or not there is a cursor.
pub(super) fn lower_bound(after: Option<Uuid>) -> Option<Uuid> {
    match after {
        None => Some(Uuid::nil()),
        Some(after) => after.as_u128().checked_add(1).map(Uuid::from_u128),
    }
}

/// Cuts a page from `limit + 1` fetched documents; the cursor is set only when the extra one shows more exist.
pub(super) fn page(mut documents: Vec<DocumentRow>, limit: usize) -> DocumentPage {
    let more = documents.len() > limit;
    documents.truncate(limit);
    let next_after = if more { documents.last().map(|row| row.document_id) } else { None };
    DocumentPage { documents, next_after }
}

/// `limit` as a SQL `LIMIT` (saturating: no table holds `i64::MAX` rows).
pub(super) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_bound_follows_the_cursor_and_ends_at_the_largest_id() {
        assert_eq!(lower_bound(None), Some(Uuid::nil()));
        assert_eq!(lower_bound(Some(Uuid::from_u128(41))), Some(Uuid::from_u128(42)));
        assert_eq!(lower_bound(Some(Uuid::max())), None);
    }
}
