//! Walking manifest rows in key order, a page at a time: the one loop every reader of a whole table used to
//! write for itself ("ask for rows after the last key seen; stop at an empty page").
//!
//! The position (after which key the next page starts) is one piece of logic shared by the two drivers:
//! [`Pages`] for async code (each page read on the blocking pool through the [`SharedManifest`]) and
//! [`ManifestPages`] for code that already holds the [`Manifest`] on a thread of its own (`verify`). Pages are
//! keyed by an increasing `i64` ([`Keyed`]): a row ID, or a staging sequence number. Paging by key, not by
//! `OFFSET`, keeps each page an index seek and lets rows
//! change state while the walk goes on without a row being skipped or seen twice.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::manifest::{
    DoneFile, DownloadJob, Manifest, ManifestError, MovedFile, RestoreJob, SelectionRow, SourceRow,
    StagedChange, VerifyRow,
};

use super::SharedManifest;

/// A row read in pages: its key, increasing in the order the rows come in.
pub(crate) trait Keyed {
    /// The key the next page starts after.
    fn key(&self) -> i64;
}

/// Reads the page of at most `limit` rows whose keys follow `after`.
pub(crate) trait Fetch<T>:
    Fn(&Manifest, i64, usize) -> Result<Vec<T>, ManifestError>
{
}

impl<T, F: Fn(&Manifest, i64, usize) -> Result<Vec<T>, ManifestError>> Fetch<T> for F {}

/// Where a walk is: after which key the next page starts. The logic both drivers share.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    after: i64,
}

impl Position {
    /// Take in a page just read: `None` at the end (an empty page, the position unchanged, so that a later
    /// read sees rows added since), else the rows, the position moved past the last of them.
    fn took<T: Keyed>(&mut self, rows: Vec<T>) -> Option<Vec<T>> {
        self.after = rows.last()?.key();
        Some(rows)
    }
}

/// Rows of a [`SharedManifest`] in key order, a page at a time (see [`SharedManifest::pages`]).
///
/// Not fused: after the end, [`Pages::next`] asks again from where it stopped, so a reader that waits for
/// rows still being written (the downloader, behind the crawl) keeps one cursor.
pub(crate) struct Pages<T, F> {
    manifest: SharedManifest,
    fetch: Arc<F>,
    limit: usize,
    position: Position,
    rows: PhantomData<fn() -> T>,
}

impl<T, F> Pages<T, F>
where
    T: Keyed + Send + 'static,
    F: Fetch<T> + Send + Sync + 'static,
{
    /// The next page, or `None` when no row follows the position.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<T>>, ManifestError> {
        let (fetch, after, limit) = (Arc::clone(&self.fetch), self.position.after, self.limit);
        let rows = self.manifest.call(move |m| fetch(m, after, limit)).await?;
        Ok(self.position.took(rows))
    }

    /// Start again from the first row.
    pub(crate) fn rewind(&mut self) {
        self.position = Position::default();
    }

    /// Go on after `key` rather than after the last row of the page: for a reader that used a page only up
    /// to that row and wants the rest of it again.
    pub(crate) fn resume_after(&mut self, key: i64) {
        self.position.after = key;
    }
}

impl SharedManifest {
    /// Walk rows in key order, `limit` at a time, each page read by `fetch(manifest, after, limit)`.
    pub(crate) fn pages<T, F>(&self, limit: usize, fetch: F) -> Pages<T, F>
    where
        T: Keyed + Send + 'static,
        F: Fetch<T> + Send + Sync + 'static,
    {
        Pages {
            manifest: self.clone(),
            fetch: Arc::new(fetch),
            limit,
            position: Position::default(),
            rows: PhantomData,
        }
    }
}

/// Rows of a [`Manifest`] held by the caller, in key order, a page at a time: [`Pages`] for synchronous code.
/// The manifest is lent page by page, so the caller can write through it between pages.
pub(crate) struct ManifestPages<T, F> {
    fetch: F,
    limit: usize,
    position: Position,
    rows: PhantomData<fn() -> T>,
}

impl<T: Keyed, F: Fetch<T>> ManifestPages<T, F> {
    /// Walk rows in key order, `limit` at a time, each page read by `fetch(manifest, after, limit)`.
    pub(crate) fn new(limit: usize, fetch: F) -> Self {
        Self {
            fetch,
            limit,
            position: Position::default(),
            rows: PhantomData,
        }
    }

    /// The next page read from `manifest`, or `None` when no row follows the position.
    pub(crate) fn next(&mut self, manifest: &Manifest) -> Result<Option<Vec<T>>, ManifestError> {
        let rows = (self.fetch)(manifest, self.position.after, self.limit)?;
        Ok(self.position.took(rows))
    }
}

/// Keyed by row ID.
macro_rules! keyed_by_rowid {
    ($($row:ty),* $(,)?) => {
        $(impl Keyed for $row {
            fn key(&self) -> i64 {
                self.rowid
            }
        })*
    };
}

keyed_by_rowid!(
    DownloadJob,
    DoneFile,
    MovedFile,
    SelectionRow,
    SourceRow,
    RestoreJob,
    VerifyRow
);

/// Staged changes come in the order they arrived.
impl Keyed for StagedChange {
    fn key(&self) -> i64 {
        self.seq
    }
}

/// A folder as `(row ID, local path)`.
impl Keyed for (i64, String) {
    fn key(&self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row(i64);

    impl Keyed for Row {
        fn key(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn a_page_moves_the_position_past_its_last_row_and_an_empty_one_leaves_it() {
        let mut at = Position::default();
        let page = at.took(vec![Row(3), Row(7)]).expect("a page");
        assert_eq!(page.len(), 2);
        assert_eq!(at.after, 7);
        assert!(at.took(Vec::<Row>::new()).is_none());
        assert_eq!(at.after, 7, "the end leaves the position where it was");
    }

    /// A fetch over the keys in `keys`, as the manifest's `*_after` reads are over row IDs.
    fn over(
        keys: &Arc<std::sync::Mutex<Vec<i64>>>,
    ) -> impl Fn(&Manifest, i64, usize) -> Result<Vec<Row>, ManifestError> + Send + Sync + 'static
    {
        let keys = Arc::clone(keys);
        move |_m: &Manifest, after, limit| {
            let keys = keys.lock().unwrap();
            Ok(keys
                .iter()
                .filter(|k| **k > after)
                .take(limit)
                .map(|k| Row(*k))
                .collect())
        }
    }

    fn keys_of(page: Option<Vec<Row>>) -> Vec<i64> {
        page.unwrap_or_default().iter().map(Keyed::key).collect()
    }

    #[tokio::test]
    async fn pages_walk_every_row_once_in_key_order_and_read_on_after_the_end() {
        let (_dir, manifest) = crate::manifest::testutil::manifest();
        let shared = SharedManifest::new(manifest);
        let keys = Arc::new(std::sync::Mutex::new((1..=10).collect::<Vec<i64>>()));
        let mut pages = shared.pages(4, over(&keys));
        let mut walked = Vec::new();
        while let Some(page) = pages.next().await.unwrap() {
            walked.push(keys_of(Some(page)));
        }
        assert_eq!(walked, [vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]);
        // Rows written after the end are the next page.
        keys.lock().unwrap().extend([11, 12]);
        assert_eq!(keys_of(pages.next().await.unwrap()), [11, 12]);
        assert!(pages.next().await.unwrap().is_none());
        pages.resume_after(10);
        assert_eq!(keys_of(pages.next().await.unwrap()), [11, 12]);
        pages.rewind();
        assert_eq!(keys_of(pages.next().await.unwrap()), [1, 2, 3, 4]);
    }

    #[test]
    fn manifest_pages_walk_the_same_way_with_the_manifest_lent_per_page() {
        let (_dir, manifest) = crate::manifest::testutil::manifest();
        let keys = Arc::new(std::sync::Mutex::new(vec![2, 3, 5, 7, 11]));
        let mut pages = ManifestPages::new(2, over(&keys));
        let mut walked = Vec::new();
        while let Some(page) = pages.next(&manifest).unwrap() {
            walked.push(keys_of(Some(page)));
        }
        assert_eq!(walked, [vec![2, 3], vec![5, 7], vec![11]]);
    }
}
