//! From Graph items to manifest rows: the conversion of one listed item, its media kind, and the remote and
//! local paths of a scope's root. Pure functions, unit-tested.

use crate::graph::DriveItem;
use crate::ids::{DriveId, ItemId};
use crate::localpath::{safe_name, top_level_name};
use crate::manifest::{ItemKind, MediaKind, NewItem, Skip, SkipClass, StoredUrl};

/// `/a/b` form: one leading slash, no trailing slash, `/` for the root.
pub fn normalize_remote_path(path: &str) -> String {
    let trimmed: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", trimmed.join("/"))
}

pub(crate) fn child_remote_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// `/drive/root:/a/b` or `/drives/{id}/root:/a%20b` → `/a/b` (percent-decoded).
pub(super) fn parent_path_from_reference(reference: &str) -> String {
    let after = reference.split_once("root:").map_or("", |(_, rest)| rest);
    let decoded = percent_encoding::percent_decode_str(after).decode_utf8_lossy();
    normalize_remote_path(&decoded)
}

/// The local relative path mirroring a remote path given as a whole (the scope root only; below it,
/// paths are built name by name so that a `/` inside a name cannot create a folder).
pub(super) fn local_path_of_remote(remote: &str, item_id: &str) -> String {
    remote
        .split('/')
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(depth, segment)| match safe_name(segment, item_id).name {
            // `--root /.odbackup`: the state folder's name stays odbackup's.
            safe if depth == 0 => top_level_name(safe),
            safe => safe,
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn parent_of(item: &DriveItem) -> Option<ItemId> {
    item.parent_reference.as_ref().and_then(|p| p.id.clone())
}

/// Photo extensions recognised when the service sent no photo facet (it often doesn't for RAW and HEIC).
const PHOTO_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "heic", "heif", "png", "gif", "tif", "tiff", "bmp", "webp", "dng", "cr2", "cr3",
    "nef", "arw", "orf", "rw2", "raf", "srw", "avif", "jxl",
];
/// Video extensions recognised when the service sent no video facet.
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "mov", "m4v", "avi", "mkv", "3gp", "3g2", "wmv", "mts", "m2ts", "webm", "mpg", "mpeg",
    "hevc",
];

/// Photo, video or other, by facet first and extension second.
pub fn media_kind(name: &str, has_photo: bool, has_video: bool) -> MediaKind {
    if has_video {
        return MediaKind::Video;
    }
    if has_photo {
        return MediaKind::Photo;
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if PHOTO_EXTENSIONS.contains(&ext.as_str()) {
        MediaKind::Photo
    } else if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
        MediaKind::Video
    } else {
        MediaKind::Other
    }
}

/// The package type of a `OneNote` notebook, as the manifest stores it.
pub const ONENOTE_PACKAGE: &str = "oneNote";

/// Whether a listed item is a `OneNote` notebook (`package: {type: "oneNote"}`; the type compared without regard
/// to case).
fn is_notebook(item: &DriveItem) -> bool {
    item.package
        .as_ref()
        .and_then(|p| p.package_type.as_deref())
        .is_some_and(|t| t.eq_ignore_ascii_case(ONENOTE_PACKAGE))
}

/// Convert one listed item into its manifest row. Pure, so the rules are unit-tested.
pub fn to_new_item(
    drive: &DriveId,
    item: &DriveItem,
    parent_id: Option<ItemId>,
    remote_path: &str,
    local_path: String,
) -> NewItem {
    let name = item.name.clone().unwrap_or_default();
    let hashes = item.file.as_ref().and_then(|f| f.hashes.as_ref());
    let notebook = is_notebook(item);
    let (kind, skip) = if notebook {
        // A notebook's own `/content` answers 404, but its children are ordinary section files (`.one`,
        // `.onetoc2`) that download like any file: it is listed and mirrored as a folder named like the notebook.
        // Personal drives give the package facet alone, business ones a folder facet beside it
        // (https://learn.microsoft.com/en-us/graph/api/resources/package; wisecom-oy/atlas #72, lionello/onedrive-cli #10).
        (ItemKind::Folder, None)
    } else if item.package.is_some() {
        let kind = item
            .package
            .as_ref()
            .and_then(|p| p.package_type.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        (
            ItemKind::Package,
            Some(Skip::new(
                SkipClass::Package,
                format!("{kind} package: the service offers no download for it"),
            )),
        )
    } else if item.remote_item.is_some() {
        // A shortcut to a folder or file shared from another drive ("Add to My files"): followed after the
        // listing, from its own drive (see `crate::shortcuts`).
        (ItemKind::Remote, None)
    } else if item.folder.is_some() || item.root.is_some() {
        (ItemKind::Folder, None)
    } else if item.file.is_some() {
        if item.malware.is_some() {
            (
                ItemKind::File,
                Some(Skip::new(
                    SkipClass::Malware,
                    "flagged as malware by OneDrive: the service refuses to serve it",
                )),
            )
        } else {
            (ItemKind::File, None)
        }
    } else {
        (
            ItemKind::Other,
            Some(Skip::new(
                SkipClass::NoContent,
                "neither a file nor a folder: no content to download",
            )),
        )
    };
    let modified_at = item
        .file_system_info
        .as_ref()
        .and_then(|f| f.last_modified_date_time.clone())
        .or_else(|| item.last_modified_date_time.clone());
    let created_at = item
        .file_system_info
        .as_ref()
        .and_then(|f| f.created_date_time.clone())
        .or_else(|| item.created_date_time.clone());
    // Only a file that will be fetched needs it; the manifest keeps it apart and briefly (a credential).
    let listed_url = match (kind, &skip) {
        (ItemKind::File, None) => item
            .download_url
            .as_ref()
            .map(|u| StoredUrl::new(u.expose().to_owned())),
        _ => None,
    };
    // Stored and compared canonically (see `crate::ids`); the service's own spelling is kept for listing URLs.
    let item_id = item.id.canonical();
    NewItem {
        listed_url,
        drive_id: drive.canonical(),
        served_id: (kind == ItemKind::Folder && item_id.as_str() != item.id.as_str())
            .then(|| item.id.as_str().to_owned()),
        item_id,
        parent_id: parent_id.map(|p| p.canonical()),
        name: name.clone(),
        remote_path: remote_path.to_owned(),
        local_path,
        kind,
        size: item.size,
        quick_xor: hashes.and_then(|h| h.quick_xor_hash.clone()),
        sha1: hashes.and_then(|h| h.sha1_hash.clone()),
        sha256: hashes.and_then(|h| h.sha256_hash.clone()),
        etag: item.e_tag.clone(),
        ctag: item.c_tag.clone(),
        mime_type: item.file.as_ref().and_then(|f| f.mime_type.clone()),
        created_at,
        modified_at,
        taken_at: item.photo.as_ref().and_then(|p| p.taken_date_time.clone()),
        media: if kind == ItemKind::File {
            media_kind(&name, item.photo.is_some(), item.video.is_some())
        } else {
            MediaKind::Other
        },
        skip,
        excluded: None,
        local_path_on_clash: None,
        package: notebook.then(|| ONENOTE_PACKAGE.to_owned()),
        remote_ref: item.remote_item.as_ref().map(|r| {
            let drive = r
                .parent_reference
                .as_ref()
                .and_then(|p| p.drive_id.clone())
                .unwrap_or_default();
            // Canonical on both sides: `remoteItem` references drop a leading zero from the drive ID
            // (abraunegg/onedrive #3115) and change case (onedrive-api-docs #1902).
            format!("{}/{}", crate::ids::canonical_drive_id(&drive), r.id.key())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_reference_paths_are_decoded() {
        assert_eq!(parent_path_from_reference("/drive/root:"), "/");
        assert_eq!(
            parent_path_from_reference("/drives/abc/root:/My%20Pictures/x"),
            "/My Pictures/x"
        );
    }

    #[test]
    fn media_kind_prefers_facets_then_extensions() {
        assert_eq!(media_kind("a.txt", true, false), MediaKind::Photo);
        assert_eq!(media_kind("a.jpg", false, true), MediaKind::Video);
        assert_eq!(media_kind("IMG_1.HEIC", false, false), MediaKind::Photo);
        assert_eq!(media_kind("clip.MOV", false, false), MediaKind::Video);
        assert_eq!(media_kind("notes.txt", false, false), MediaKind::Other);
        assert_eq!(media_kind("noext", false, false), MediaKind::Other);
    }
}
