//! Look at the remote drive before backing it up (`ls`, `tree`): walk a folder to a given depth and hand
//! each entry to the caller, sorted by name, folders first. Reads Graph only; no manifest, no local files,
//! and nothing printed here.

use serde::Serialize;

use crate::app::{Credentials, sign_in_facts, token_source};
use crate::error::Error;
use crate::graph::{DriveItem, DriveSelector, GraphClient, GraphOptions};
use crate::ids::{DriveId, ItemId};
use crate::sync::normalize_remote_path;

/// One item of a remote listing.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteEntry {
    /// `/Pictures/2021/a.jpg`.
    pub path: String,
    /// The item's name.
    pub name: String,
    /// `folder`, `file`, `package` (a `OneNote` notebook…) or `remote` (shared from another drive).
    pub kind: &'static str,
    /// Bytes (a folder's is the total of everything below it).
    pub size: Option<u64>,
    /// Last modified (RFC 3339), as the client that wrote it said.
    pub modified: Option<String>,
    /// A folder's direct children.
    pub children: Option<u64>,
    /// 1 for the entries of the listed folder, 2 for theirs, …
    pub depth: usize,
    /// Whether it is the last entry of its folder (for drawing a tree).
    pub last: bool,
}

/// Where to look.
#[derive(Debug, Clone)]
pub struct BrowseSettings {
    /// How to reach Graph.
    pub graph: GraphOptions,
    /// Where tokens come from.
    pub credentials: Credentials,
    /// Which drive.
    pub drive: DriveSelector,
}

/// The folder at `path` itself (its size is the total below it).
pub async fn stat(settings: &BrowseSettings, path: &str) -> Result<RemoteEntry, Error> {
    let (graph, drive) = connect(settings).await?;
    let item = resolve(&graph, &drive, path).await?;
    Ok(entry(&item, normalize_remote_path(path), 0, true))
}

/// Walk the folder at `path` down to `depth` levels (1: its own entries), calling `each` in tree order;
/// without `with_files`, folders (and packages) only.
pub async fn walk(
    settings: &BrowseSettings,
    path: &str,
    depth: usize,
    with_files: bool,
    mut each: impl FnMut(&RemoteEntry),
) -> Result<(), Error> {
    let (graph, drive) = connect(settings).await?;
    let root = resolve(&graph, &drive, path).await?;
    if root.folder.is_none() && root.root.is_none() {
        // A file: show it alone, as `ls FILE` does.
        each(&entry(&root, normalize_remote_path(path), 1, true));
        return Ok(());
    }
    // Depth-first with an explicit stack; each folder's children are fetched whole (a folder's page count
    // is what holds in memory, never the drive).
    let mut stack: Vec<std::vec::IntoIter<RemoteEntryWithId>> = vec![
        children(
            &graph,
            &drive,
            &root.id,
            &normalize_remote_path(path),
            1,
            with_files,
        )
        .await?
        .into_iter(),
    ];
    while let Some(level) = stack.last_mut() {
        let Some(next) = level.next() else {
            stack.pop();
            continue;
        };
        each(&next.entry);
        if next.entry.kind == "folder" && next.entry.depth < depth {
            let below = children(
                &graph,
                &drive,
                &next.id,
                &next.entry.path,
                next.entry.depth + 1,
                with_files,
            )
            .await?;
            stack.push(below.into_iter());
        }
    }
    Ok(())
}

struct RemoteEntryWithId {
    id: ItemId,
    entry: RemoteEntry,
}

async fn connect(settings: &BrowseSettings) -> Result<(GraphClient, DriveId), Error> {
    let graph = GraphClient::new(settings.graph.clone(), token_source(&settings.credentials)?)?;
    let facts = sign_in_facts(&settings.credentials);
    let drive = crate::drives::resolve(&graph, &settings.drive, &facts).await?;
    Ok((graph, drive.id))
}

async fn resolve(graph: &GraphClient, drive: &DriveId, path: &str) -> Result<DriveItem, Error> {
    match graph
        .item_by_path(drive, &normalize_remote_path(path))
        .await
    {
        Err(err) if err.status() == Some(404) => Err(Error::Usage(format!(
            "there is no {} on the drive (paths start at the drive root, e.g. /Pictures/2021)",
            normalize_remote_path(path)
        ))),
        other => other.map_err(Error::from_graph("looking up the remote path")),
    }
}

async fn children(
    graph: &GraphClient,
    drive: &DriveId,
    folder: &ItemId,
    folder_path: &str,
    depth: usize,
    with_files: bool,
) -> Result<Vec<RemoteEntryWithId>, Error> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    // A listing whose pages point back or bring nothing new ends here, naming the folder.
    let mut guard = crate::graph::PagingGuard::default();
    loop {
        let page = graph
            .children(drive, folder, cursor.as_deref())
            .await
            .map_err(Error::from_graph("listing a folder"))?;
        if let Err(stalled) = guard.check(&page) {
            return Err(Error::from_graph("listing a folder")(
                crate::graph::GraphError::Unexpected {
                    what: format!("listing {folder_path}"),
                    reason: stalled.to_string(),
                },
            ));
        }
        items.extend(
            page.value
                .into_iter()
                .filter(|i| with_files || i.file.is_none()),
        );
        match page.next_link {
            Some(next) => {
                guard.follow(&next);
                cursor = Some(next);
            }
            None => break,
        }
    }
    items.sort_by(|a, b| {
        (a.folder.is_none(), a.name.as_deref().map(str::to_lowercase))
            .cmp(&(b.folder.is_none(), b.name.as_deref().map(str::to_lowercase)))
    });
    let count = items.len();
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item.name.clone().unwrap_or_default();
            let path = if folder_path == "/" {
                format!("/{name}")
            } else {
                format!("{folder_path}/{name}")
            };
            RemoteEntryWithId {
                id: item.id.clone(),
                entry: entry(&item, path, depth, i + 1 == count),
            }
        })
        .collect())
}

fn entry(item: &DriveItem, path: String, depth: usize, last: bool) -> RemoteEntry {
    let kind = if item.package.is_some() {
        "package"
    } else if item.remote_item.is_some() {
        "remote"
    } else if item.folder.is_some() || item.root.is_some() {
        "folder"
    } else {
        "file"
    };
    RemoteEntry {
        name: item.name.clone().unwrap_or_default(),
        path,
        kind,
        size: item.size,
        modified: item
            .file_system_info
            .as_ref()
            .and_then(|f| f.last_modified_date_time.clone())
            .or_else(|| item.last_modified_date_time.clone()),
        children: item.folder.as_ref().and_then(|f| f.child_count),
        depth,
        last,
    }
}
