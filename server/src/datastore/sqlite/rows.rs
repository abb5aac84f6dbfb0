//! What only SQLite's SQL needs: its bound on parameters, `?` marks, and
//! the queries written with them. Decoding is shared (`datastore::rows`).

use std::sync::LazyLock;

use crate::datastore::rows::ENTRY_COLUMNS;

/// SQLite's default bound on parameters per statement.
pub(super) const MAX_PARAMS: usize = 999;

/// One parent's entries in creation order, read along the
/// `entries_parent_created` index (no sort, so rows stream as they are read).
pub(super) static ENTRIES_BY_PARENT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE parent_id = ? ORDER BY created_at, id")
});

/// `?, ?, ...` for `n` parameters.
pub(super) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}
