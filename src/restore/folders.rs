//! The target's folders, found or created once per run and shared by every upload: a folder this run created
//! is known to be empty (no listing needed to judge conflicts in it); a folder that was already there is
//! listed once, page by page, and its children are what conflicts are judged against.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use unicode_normalization::UnicodeNormalization as _;

use super::plan::{ExistingItem, split_parent};
use super::{Fatal, fatal_of};
use crate::graph::{DriveItem, GraphClient, GraphError, PagingGuard, is_name_taken};
use crate::ids::{DriveId, ItemId};
use crate::manifest::FailureClass;

/// Most pages read from one folder's listing: a service that keeps handing out next links is not followed
/// forever (at 1,000 items a page, this is ten million children).
const MAX_PAGES: usize = 10_000;

/// Why a folder of the target could not be had.
#[derive(Debug, Clone)]
pub struct FolderFailure {
    /// The class every file below it fails with.
    pub class: FailureClass,
    /// The HTTP status, if any.
    pub http_status: Option<u16>,
    /// What happened, naming the folder.
    pub message: String,
    /// When it stops the whole run (no permission to write, no space, sign-in refused).
    pub fatal: Option<Fatal>,
}

impl FolderFailure {
    /// A listing of the folder `id` given up for `why` (it made no progress, or never ended).
    fn unfinished_listing(id: &ItemId, why: impl std::fmt::Display) -> Self {
        Self {
            class: FailureClass::Other,
            http_status: None,
            message: format!(
                "listing the folder {:?} on the target: {why}; re-run to try again",
                id.as_str()
            ),
            fatal: None,
        }
    }

    fn of(path: &str, what: &str, err: &GraphError) -> Self {
        Self {
            class: crate::download::classify(err),
            http_status: err.status(),
            message: format!("{what} {path:?} on the target: {err}"),
            fatal: fatal_of(err),
        }
    }
}

/// A folder of the target.
#[derive(Debug)]
pub struct TargetFolder {
    /// Its ID.
    pub id: ItemId,
    /// Whether this run created it (then it held nothing else when the run began to fill it).
    pub(crate) created_here: bool,
    /// Its children as listed (folders that were already there only), by folded name.
    listing: OnceCell<Result<HashMap<String, ExistingItem>, FolderFailure>>,
}

type Cell = Arc<OnceCell<Result<Arc<TargetFolder>, FolderFailure>>>;

/// Every folder of the target this run has needed.
pub struct TargetFolders {
    graph: GraphClient,
    drive: DriveId,
    cells: Mutex<HashMap<String, Cell>>,
    created: AtomicU64,
}

/// Names are compared as the service compares them: without regard to case or Unicode normalization.
pub fn fold(name: &str) -> String {
    name.nfc().collect::<String>().to_lowercase()
}

fn existing_of(item: &DriveItem) -> ExistingItem {
    ExistingItem {
        id: item.id.clone(),
        folder: item.folder.is_some() || item.package.is_some() || item.root.is_some(),
        size: item.size,
        quick_xor: item
            .file
            .as_ref()
            .and_then(|f| f.hashes.as_ref())
            .and_then(|h| h.quick_xor_hash.clone()),
        modified: item
            .file_system_info
            .as_ref()
            .and_then(|f| f.last_modified_date_time.clone()),
    }
}

impl TargetFolders {
    /// Folders of `drive`.
    pub fn new(graph: GraphClient, drive: DriveId) -> Self {
        Self {
            graph,
            drive,
            cells: Mutex::new(HashMap::new()),
            created: AtomicU64::new(0),
        }
    }

    /// Folders this run created.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// The folder at the drive path `path` (`/`, `/To/a`), created with any missing parents.
    pub async fn ensure(&self, path: &str) -> Result<Arc<TargetFolder>, FolderFailure> {
        let cell = {
            let mut cells = self
                .cells
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(cells.entry(fold(path)).or_default())
        };
        cell.get_or_init(|| Box::pin(self.find_or_create(path)))
            .await
            .clone()
    }

    async fn find_or_create(&self, path: &str) -> Result<Arc<TargetFolder>, FolderFailure> {
        if path.trim_matches('/').is_empty() {
            let root = self
                .graph
                .root(&self.drive)
                .await
                .map_err(|e| FolderFailure::of("/", "reading the root", &e))?;
            return Ok(Arc::new(TargetFolder {
                id: root.id,
                created_here: false,
                listing: OnceCell::new(),
            }));
        }
        let (parent_path, name) = split_parent(path);
        let parent = Box::pin(self.ensure(&parent_path)).await?;
        if !parent.created_here
            && let Some(there) = self.child(&parent, &name).await?
        {
            if there.folder {
                return Ok(Arc::new(TargetFolder {
                    id: there.id,
                    created_here: false,
                    listing: OnceCell::new(),
                }));
            }
            return Err(FolderFailure {
                class: FailureClass::Path,
                http_status: None,
                message: format!(
                    "a file named {name:?} is where the folder {path:?} goes on the target; move it away, or \
                     restore with another --to"
                ),
                fatal: None,
            });
        }
        match self
            .graph
            .create_folder(&self.drive, &parent.id, &name)
            .await
        {
            Ok(item) => {
                self.created.fetch_add(1, Ordering::Relaxed);
                Ok(Arc::new(TargetFolder {
                    id: item.id,
                    created_here: true,
                    listing: OnceCell::new(),
                }))
            }
            // Made by someone else meanwhile (or listed before it appeared): use it, as one already there.
            Err(e) if is_name_taken(&e) => {
                let item = self
                    .graph
                    .child_by_name(&self.drive, &parent.id, &name)
                    .await
                    .map_err(|e| FolderFailure::of(path, "reading the folder", &e))?;
                if item.folder.is_none() {
                    return Err(FolderFailure {
                        class: FailureClass::Path,
                        http_status: Some(409),
                        message: format!(
                            "something that is not a folder is at {path:?} on the target"
                        ),
                        fatal: None,
                    });
                }
                Ok(Arc::new(TargetFolder {
                    id: item.id,
                    created_here: false,
                    listing: OnceCell::new(),
                }))
            }
            Err(e) => Err(FolderFailure::of(path, "creating the folder", &e)),
        }
    }

    /// What `folder` already holds under `name` (always nothing for a folder this run created).
    pub async fn child(
        &self,
        folder: &TargetFolder,
        name: &str,
    ) -> Result<Option<ExistingItem>, FolderFailure> {
        if folder.created_here {
            return Ok(None);
        }
        let listing = folder
            .listing
            .get_or_init(|| self.list(&folder.id))
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(listing.get(&fold(name)).cloned())
    }

    /// Look `name` up afresh in `folder` (after a conflict the listing did not show).
    pub async fn lookup(
        &self,
        folder: &TargetFolder,
        name: &str,
    ) -> Result<Option<ExistingItem>, GraphError> {
        match self
            .graph
            .child_by_name(&self.drive, &folder.id, name)
            .await
        {
            Ok(item) => Ok(Some(existing_of(&item))),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, id: &ItemId) -> Result<HashMap<String, ExistingItem>, FolderFailure> {
        let mut out = HashMap::new();
        let mut cursor: Option<String> = None;
        // A listing cut short would judge name conflicts against half a folder: one that makes no progress
        // (a link back to a page already sent, pages with nothing new) or never ends fails the folder instead.
        let mut guard = PagingGuard::default();
        for _ in 0..MAX_PAGES {
            let page = self
                .graph
                .children(&self.drive, id, cursor.as_deref())
                .await
                .map_err(|e| FolderFailure::of(id.as_str(), "listing the folder", &e))?;
            guard
                .check(&page)
                .map_err(|stalled| FolderFailure::unfinished_listing(id, stalled))?;
            for item in &page.value {
                if let Some(name) = &item.name {
                    out.insert(fold(name), existing_of(item));
                }
            }
            match page.next_link {
                Some(next) => {
                    guard.follow(&next);
                    cursor = Some(next);
                }
                None => return Ok(out),
            }
        }
        Err(FolderFailure::unfinished_listing(
            id,
            format!("more than {MAX_PAGES} pages"),
        ))
    }
}
