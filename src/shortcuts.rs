//! Shared folders and files added to "My files": follow each shortcut (`remoteItem`) into the drive it points
//! at and back its target up where the shortcut sits (`DEST/<path of the shortcut>/…`).
//!
//! A shortcut's listing names its target by `remoteItem.parentReference.driveId` and `remoteItem.id`; the
//! target's children are listed at `/drives/{driveId}/items/{id}/children` (onedrive-api-docs #908;
//! <https://learn.microsoft.com/en-us/graph/api/resources/remoteitem>), and the rows of its tree are keyed by
//! that drive and their own IDs. The owner's `/delta` does not report changes inside shared folders (rclone and
//! abraunegg/onedrive list them on their own for that reason), so every run lists each followed shortcut's tree
//! again by `/children` and flags what it no longer sees as deleted: one request per folder (and page) of each
//! shared tree per run.
//!
//! Following is bounded: each target (drive, ID) is followed at most once per run, a target already inside the
//! backup (a folder of the user's own drive, or of another followed shortcut's tree) is not copied twice, and
//! at most [`MAX_SHORTCUTS`] shortcuts are looked at. A target the service no longer serves (403/404: the
//! owner stopped sharing) is reported once by name; what is on disk of it is kept and not flagged deleted.

use std::collections::HashSet;

use crate::ids::{DriveId, ItemId};
use crate::manifest::{ItemKind, ShortcutRow, Skip, SkipClass};
use crate::progress::{Event, NoticeKind};
use crate::sync::ListingContext;
use crate::sync::{CrawlError, CrawlOptions, to_new_item, walk_frontier};

/// The reason on record for a shortcut `--no-shared` leaves out.
pub const LEFT_OUT: &str = "shared item added to My files: left out by --no-shared";

/// The most shortcuts one run looks at (shortcuts inside shared folders included): a bound on the work, far
/// above what a user adds by hand.
pub const MAX_SHORTCUTS: usize = 10_000;

/// What following the shortcuts did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SharedSummary {
    /// Shortcuts whose target was listed (a folder's whole tree) in this run.
    pub(crate) followed: u64,
    /// Items recorded from shared drives.
    pub items_seen: u64,
    /// Shortcuts not followed because their target is already in the backup (or is followed by another).
    pub(crate) already_backed_up: u64,
    /// Shortcuts whose target the service no longer serves, by remote path (their local files are kept).
    pub not_accessible: Vec<String>,
    /// Items flagged deleted in shared trees (changes inside them, or shortcuts removed from My files).
    pub marked_deleted: u64,
    /// Whether every shortcut was looked at (false when the run was cancelled).
    pub complete: bool,
}

/// The crawl scope of a shortcut's target: one per target, whatever shortcut leads to it.
fn scope_key(drive: &DriveId, item: &ItemId) -> String {
    format!("shared:{}/{}", drive.key(), item.key())
}

/// Follow every shortcut in the manifest (those found inside followed trees too), or, with `--no-shared`,
/// record them all as left out. `ctx.drive` is the drive the backup is of.
pub async fn follow_shortcuts(ctx: &ListingContext<'_>) -> Result<SharedSummary, CrawlError> {
    let ListingContext {
        manifest,
        reporter,
        cancel,
        ..
    } = *ctx;
    let mut summary = SharedSummary::default();
    // Shared drives are never a personal drive's own top level (no Personal Vault there).
    let shared_options = CrawlOptions {
        personal: false,
        ..ctx.options.clone()
    };
    let shared = ListingContext {
        options: &shared_options,
        ..*ctx
    };
    let mut looked_at: HashSet<(DriveId, ItemId)> = HashSet::new();
    let mut targets: HashSet<(DriveId, ItemId)> = HashSet::new();
    let mut followed: Vec<ShortcutRow> = Vec::new();
    loop {
        let fresh: Vec<ShortcutRow> = manifest
            .shortcuts()
            .await?
            .into_iter()
            .filter(|s| !looked_at.contains(&(s.drive_id.clone(), s.item_id.clone())))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for shortcut in fresh {
            if cancel.is_cancelled() {
                return Ok(summary);
            }
            if looked_at.len() >= MAX_SHORTCUTS {
                reporter.event(&Event::Notice {
                    kind: NoticeKind::TooManyShortcuts,
                    path: None,
                    message: &format!(
                        "more than {MAX_SHORTCUTS} shortcuts to shared items: the rest are not followed in this run"
                    ),
                    detail: None,
                });
                summary.complete = true;
                return Ok(summary);
            }
            looked_at.insert((shortcut.drive_id.clone(), shortcut.item_id.clone()));
            let outcome = follow_one(&shared, &shortcut, &mut targets, &mut summary).await?;
            match outcome {
                Followed::Cancelled => return Ok(summary),
                Followed::Tree => followed.push(shortcut),
                Followed::Done => {}
            }
        }
    }
    // A shortcut to a folder inside another shortcut's target, followed first, had its rows taken over when
    // the larger tree was listed after it: it now counts as backed up there (and the next run skips it up front).
    for shortcut in followed {
        let Some((drive, item)) = shortcut.target.clone() else {
            continue;
        };
        let key = scope_key(&drive, &item);
        if let Some(at) = manifest.held_elsewhere(drive, item, key).await? {
            summary.followed -= 1;
            summary.already_backed_up += 1;
            let reason = Skip::new(
                SkipClass::Duplicate,
                format!("already backed up at {at}: not copied twice"),
            );
            manifest
                .set_shortcut_outcome(
                    shortcut.drive_id.clone(),
                    shortcut.item_id.clone(),
                    Some(reason),
                )
                .await?;
        }
    }
    summary.complete = true;
    Ok(summary)
}

/// How following one shortcut ended.
#[derive(Debug, PartialEq, Eq)]
enum Followed {
    /// Its target's tree (or file) was listed.
    Tree,
    /// Recorded as not followed, or removed from My files.
    Done,
    /// The run was cancelled while listing it.
    Cancelled,
}

/// Follow one shortcut of `ctx.drive` (the backup's own drive); its target is listed as a scope of the
/// target's drive.
#[allow(clippy::too_many_lines)] // one shortcut followed start to end: resolve, guard against loops, walk, report
async fn follow_one(
    ctx: &ListingContext<'_>,
    shortcut: &ShortcutRow,
    targets: &mut HashSet<(DriveId, ItemId)>,
    summary: &mut SharedSummary,
) -> Result<Followed, CrawlError> {
    let ListingContext {
        graph,
        manifest,
        drive: own_drive,
        options,
        reporter,
        ..
    } = *ctx;
    let record = |reason: Option<Skip>| {
        manifest.set_shortcut_outcome(shortcut.drive_id.clone(), shortcut.item_id.clone(), reason)
    };
    let Some((drive, item)) = shortcut.target.clone() else {
        record(Some(Skip::new(
            SkipClass::NoTarget,
            "shortcut without a target (the listing named no remote drive and ID)",
        )))
        .await?;
        return Ok(Followed::Done);
    };
    if shortcut.deleted {
        // Removed from My files: what its tree put on record goes the way of any deleted folder.
        summary.marked_deleted += manifest
            .forget_shared_tree(drive.clone(), shortcut.remote_path.clone())
            .await?;
        return Ok(Followed::Done);
    }
    if options.filter.spec().skip_shared {
        record(Some(Skip::new(SkipClass::LeftOut, LEFT_OUT))).await?;
        return Ok(Followed::Done);
    }
    let key = scope_key(&drive, &item);
    let elsewhere = if drive == *own_drive {
        Some(format!(
            "shortcut into this drive itself: {} is backed up where it is, not twice",
            shortcut.remote_path
        ))
    } else if !targets.insert((drive.clone(), item.clone())) {
        Some(
            "another shortcut leads to the same shared item: backed up there, not twice".to_owned(),
        )
    } else {
        manifest
            .held_elsewhere(drive.clone(), item.clone(), key.clone())
            .await?
            .map(|at| format!("already backed up at {at}: not copied twice"))
    };
    if let Some(reason) = elsewhere {
        summary.already_backed_up += 1;
        record(Some(Skip::new(SkipClass::Duplicate, reason))).await?;
        return Ok(Followed::Done);
    }
    let target = match graph.item(&drive, &item).await {
        Ok(target) => target,
        Err(err) if err.is_auth() => {
            return Err(CrawlError::Listing {
                path: shortcut.remote_path.clone(),
                source: err,
            });
        }
        Err(err) => {
            // Revoked (404 itemNotFound or 403 accessDenied) or otherwise refused: said once, by name; nothing
            // of its tree is flagged deleted, so the files on disk stay as they are.
            reporter.event(&Event::Notice {
                kind: NoticeKind::SharedNotAccessible,
                path: Some(&shortcut.remote_path),
                message: "shared item not accessible: its files on disk are kept",
                detail: Some(&err.to_string()),
            });
            summary.not_accessible.push(shortcut.remote_path.clone());
            record(Some(Skip::new(
                SkipClass::Inaccessible,
                format!("shared item not accessible ({err}): its files already on disk are kept"),
            )))
            .await?;
            return Ok(Followed::Done);
        }
    };
    let root = to_new_item(
        &drive,
        &target,
        None,
        &shortcut.remote_path,
        shortcut.local_path.clone(),
    );
    if !matches!(root.kind, ItemKind::Folder | ItemKind::File) {
        record(Some(Skip::new(
            SkipClass::NoContent,
            format!(
                "shortcut to a {} item: nothing to back up",
                root.kind.as_str()
            ),
        )))
        .await?;
        return Ok(Followed::Done);
    }
    let is_file = root.kind == ItemKind::File;
    let start = manifest.begin_crawl(drive.clone(), key, root).await?;
    let crawl_id = start.crawl_id;
    if is_file {
        // A shared file is its own whole scope: seen, and queued for download like any file.
        summary.items_seen += 1;
    } else {
        let target = ListingContext {
            drive: &drive,
            ..*ctx
        };
        let walked = walk_frontier(&target, crawl_id).await?;
        summary.items_seen += walked.items_seen;
        if !walked.complete {
            return Ok(Followed::Cancelled); // the next run resumes this crawl
        }
    }
    summary.marked_deleted += manifest.finish_crawl(crawl_id).await?;
    summary.followed += 1;
    record(None).await?;
    Ok(Followed::Tree)
}
