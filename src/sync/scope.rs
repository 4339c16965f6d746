//! What a listing is asked to do and how it can fail: its scope, its options, its error.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::CrawlMethod;
use crate::filter::Filter;
use crate::graph::{DriveItem, GraphClient, GraphError};
use crate::ids::DriveId;
use crate::localpath::Layout;
use crate::manifest::ManifestError;
use crate::progress::{CrawlProgress, Reporter};
use crate::shared::SharedManifest;

use super::convert::{child_remote_path, normalize_remote_path, parent_path_from_reference};

/// Folders listed at once unless `--list-concurrency` says otherwise. Listing is latency-bound, so a few
/// more than the transfer default pays off, while staying far below the service's throttling thresholds.
pub const DEFAULT_LIST_CONCURRENCY: usize = 8;

/// Days after which a scope is listed in full again even where its change feed works (`full_listing_days`):
/// the feed has been seen to leave deletions out (onedrive-api-docs #1927). Once a month costs one request per
/// 1,000 items.
pub const DEFAULT_FULL_LISTING_DAYS: u32 = 30;

/// Where a crawl starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole drive.
    Root,
    /// A folder by its path from the drive root, e.g. `/Pictures/2021`.
    Path(String),
    /// A special folder by its alias: `photos`, `cameraroll`, `documents`, `music`.
    Special(String),
}

impl Scope {
    /// A stable key naming this scope in the manifest (one crawl state per drive and scope).
    pub fn key(&self) -> String {
        match self {
            Scope::Root => "root".to_owned(),
            Scope::Path(p) => format!("path:{}", normalize_remote_path(p)),
            Scope::Special(name) => format!("special:{}", name.to_ascii_lowercase()),
        }
    }
}

/// What the crawler needs to know, resolved from settings by the caller.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    /// Where to start.
    pub scope: Scope,
    /// Folders listed at once.
    pub list_concurrency: usize,
    /// Which items are wanted (the others are recorded, marked excluded).
    pub filter: Arc<Filter>,
    /// Where items go under the destination.
    pub layout: Layout,
    /// Whether delta works only from the drive root (`OneDrive` for Business and `SharePoint`); on personal
    /// drives it works from any folder.
    pub(crate) delta_from_drive_root: bool,
    /// How a full listing is made.
    pub(crate) method: CrawlMethod,
    /// Whether the drive is a `OneDrive` Personal one (`driveType: personal`).
    pub(crate) personal: bool,
    /// `--full`: list from scratch, without resuming a saved position of an interrupted listing by delta.
    pub full: bool,
}

/// What every listing of a run works with: the service, the manifest, the drive and how it is listed, and
/// where events, cancellation and page counts go. Passed by reference down the listing's calls (crawl, folder
/// walk, delta round, shortcuts), each of which takes what it needs from it.
#[derive(Clone, Copy)]
pub struct ListingContext<'a> {
    /// The Graph client.
    pub graph: &'a GraphClient,
    /// The run's manifest.
    pub manifest: &'a SharedManifest,
    /// The drive listed.
    pub drive: &'a DriveId,
    /// How it is listed.
    pub options: &'a CrawlOptions,
    /// Where listing events go.
    pub reporter: &'a Arc<dyn Reporter>,
    /// Stops the listing at a page boundary.
    pub cancel: &'a CancellationToken,
    /// Pages committed so far, for the downloader running alongside.
    pub progress: &'a watch::Sender<CrawlProgress>,
}

/// Why a crawl stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    /// The crawl's starting folder could not be found or read.
    #[error("could not open the crawl root {scope}: {source}")]
    Scope {
        /// The scope as the user gave it.
        scope: String,
        /// The Graph error.
        #[source]
        source: GraphError,
    },
    /// `--special`: the drive has no special folder of that name that this sign-in can see. Camera Roll and
    /// Music are not available on `OneDrive` for Business, and with read-only permissions a special folder that
    /// does not exist yet answers 403 Forbidden
    /// (<https://learn.microsoft.com/en-us/graph/api/drive-get-specialfolder>).
    #[error(
        "the drive has no special folder {name:?} that this sign-in can see ({source}); special folders are \
         documents, photos, cameraroll and music (the last two on OneDrive Personal only), approot and \
         recordings (OneDrive for Business), and one never written to does not exist yet: check the name, or \
         back up the folder by its path with --root"
    )]
    SpecialFolderMissing {
        /// The name as the user gave it.
        name: String,
        /// The Graph error.
        #[source]
        source: GraphError,
    },
    /// The starting point is a file, not a folder.
    #[error("{scope} is not a folder")]
    NotAFolder {
        /// The scope as the user gave it.
        scope: String,
    },
    /// Listing a folder failed in a way that is not specific to that folder (auth, network, throttling
    /// beyond the retry budget). The crawl can be resumed by re-running the same command.
    #[error("listing {path} failed: {source}")]
    Listing {
        /// The folder's remote path.
        path: String,
        /// The Graph error.
        #[source]
        source: GraphError,
    },
    /// The manifest could not be written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl CrawlError {
    /// The Graph error behind this one, if any (the caller maps auth errors to their exit code).
    pub(crate) fn graph_error(&self) -> Option<&GraphError> {
        match self {
            CrawlError::Scope { source, .. }
            | CrawlError::SpecialFolderMissing { source, .. }
            | CrawlError::Listing { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The remote path of the scope's root folder.
pub(super) fn scope_remote_path(scope: &Scope, root: &DriveItem) -> String {
    match scope {
        Scope::Root => "/".to_owned(),
        Scope::Path(p) => normalize_remote_path(p),
        Scope::Special(_) => {
            // A special folder's display name is localized and the folder may have been moved, so its path
            // comes from where the server says it is.
            let name = root.name.clone().unwrap_or_default();
            let parent = root
                .parent_reference
                .as_ref()
                .and_then(|p| p.path.as_deref())
                .map_or_else(|| "/".to_owned(), parent_path_from_reference);
            child_remote_path(&parent, &name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_are_stable_and_normalised() {
        assert_eq!(Scope::Root.key(), "root");
        assert_eq!(
            Scope::Path("Pictures/2021/".into()).key(),
            "path:/Pictures/2021"
        );
        assert_eq!(
            Scope::Special("CameraRoll".into()).key(),
            "special:cameraroll"
        );
    }
}
