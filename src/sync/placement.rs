//! Which listed items are wanted and where they go under the destination: paths by the layout, the filters'
//! verdict, and the verdicts judged again when the filters change.

use std::sync::Arc;

use crate::filter::{Candidate, Filter};
use crate::graph::DriveItem;
use crate::ids::DriveId;
use crate::localpath::{Layout, child_path, date_folder, disambiguated, safe_name, top_level_name};
use crate::manifest::{
    FrontierEntry, ItemKind, ManifestError, MediaKind, NewItem, Skip, SkipClass,
};
use crate::shared::SharedManifest;

use super::convert::{child_remote_path, to_new_item};

/// Which items are wanted and where they go.
#[derive(Clone)]
pub(crate) struct Placement {
    /// The run's filters.
    pub(crate) filter: Arc<Filter>,
    /// The destination's layout.
    pub(crate) layout: Layout,
}

impl Placement {
    /// The manifest row of a listed child of the folder `entry`.
    pub(super) fn row(&self, drive: &DriveId, entry: &FrontierEntry, item: &DriveItem) -> NewItem {
        let row = to_new_item(
            drive,
            item,
            Some(entry.folder_id.clone()),
            "",
            String::new(),
        );
        self.place(row, &entry.folder_path, &entry.folder_local_path)
    }

    /// Place a row inside the folder at `parent_remote` (local `parent_local`): its paths by the layout (with
    /// the alternative used if another item holds that local path) and the filters' verdict.
    pub(crate) fn place(
        &self,
        mut row: NewItem,
        parent_remote: &str,
        parent_local: &str,
    ) -> NewItem {
        row.remote_path = child_remote_path(parent_remote, &row.name);
        let folder = match self.layout {
            Layout::Date if row.kind == ItemKind::File => {
                date_folder(row.taken_at.as_deref().or(row.modified_at.as_deref()))
            }
            _ => parent_local.to_owned(),
        };
        // The state folder's name is odbackup's at the top of the destination, whatever the drive holds.
        // Suffixes come from the ID's stable spelling: the same whatever case the service uses today.
        let seed = row.item_id.stable_spelling().into_owned();
        let safe = match safe_name(&row.name, &seed).name {
            safe if folder.is_empty() => top_level_name(safe),
            safe => safe,
        };
        let alternative = disambiguated(&safe, &seed);
        row.local_path = child_path(&folder, &safe);
        row.local_path_on_clash = Some(child_path(&folder, &alternative));
        if row.kind == ItemKind::Remote && self.filter.spec().skip_shared {
            row.skip = Some(Skip::new(SkipClass::LeftOut, crate::shortcuts::LEFT_OUT));
        }
        if row.package.is_some() && self.filter.spec().skip_onenote {
            // Left as a package, never listed: nothing below it enters the manifest.
            row.kind = ItemKind::Package;
            row.skip = Some(Skip::new(
                SkipClass::LeftOut,
                "OneNote notebook: left out by --no-onenote",
            ));
        }
        row.excluded = judge(
            &self.filter,
            &row.remote_path,
            row.kind,
            row.media,
            row.size,
            row.taken_at.as_deref(),
            row.modified_at.as_deref(),
        );
        row
    }
}

/// The filters' verdict on a file or folder row (other kinds are skipped anyway).
fn judge(
    filter: &Filter,
    remote_path: &str,
    kind: ItemKind,
    media: MediaKind,
    size: Option<u64>,
    taken_at: Option<&str>,
    modified_at: Option<&str>,
) -> Option<String> {
    if !matches!(kind, ItemKind::File | ItemKind::Folder) {
        return None;
    }
    filter
        .rejects(&Candidate {
            remote_path,
            is_folder: kind == ItemKind::Folder,
            is_photo: media == MediaKind::Photo,
            is_video: media == MediaKind::Video,
            size: size.unwrap_or(0),
            taken_at,
            modified_at,
        })
        .map(str::to_owned)
}

/// Judge every file and folder row of the manifest again when `filter` differs from the one the rows were
/// last judged by (a fingerprint is kept in the manifest), so that changing filters needs no new listing.
/// Pages through the manifest; returns how many rows changed their verdict.
pub async fn apply_filter(
    manifest: &SharedManifest,
    filter: &Arc<Filter>,
) -> Result<u64, ManifestError> {
    const PAGE: usize = 4096;
    let fingerprint = filter.fingerprint();
    if manifest.setting("filter").await?.as_deref() == Some(fingerprint.as_str()) {
        return Ok(0);
    }
    if !filter.spec().skip_onenote {
        manifest.relist_skipped_notebooks().await?;
    }
    let mut changed = 0u64;
    let mut rows = manifest.selection_rows(PAGE);
    while let Some(page) = rows.next().await? {
        let marks: Vec<(i64, Option<String>)> = page
            .into_iter()
            .filter_map(|row| {
                let verdict = judge(
                    filter,
                    &row.remote_path,
                    row.kind,
                    row.media,
                    Some(row.size),
                    row.taken_at.as_deref(),
                    row.modified_at.as_deref(),
                );
                (verdict != row.excluded).then_some((row.rowid, verdict))
            })
            .collect();
        if !marks.is_empty() {
            changed += marks.len() as u64;
            manifest.set_excluded(marks).await?;
        }
    }
    // Only once every row is judged: a run killed half-way judges them all again.
    manifest.set_setting("filter", fingerprint).await?;
    Ok(changed)
}
