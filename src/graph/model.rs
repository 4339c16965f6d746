//! The Graph resources odbackup reads, as serde types. Tolerant by design: everything but `id` is optional,
//! because delta entries, business drives and deleted items all leave fields out, and unknown fields are
//! ignored. Dates stay RFC 3339 strings: ODB sends `0001-01-01T00:00:00Z` on deletions, and the manifest
//! stores them as text anyway.
//!
//! Plain data: this module knows nothing of HTTP, the manifest or local paths.
//! See <https://learn.microsoft.com/en-us/graph/api/resources/driveitem>.

use serde::Deserialize;

use super::content::DownloadUrl;
use crate::ids::{DriveId, ItemId};

/// A drive item: a file, folder, package (`OneNote` notebook) or shortcut into another drive.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveItem {
    /// Its ID (unique within its drive).
    pub id: ItemId,
    /// Its leaf name, not encoded (absent on business delta deletions).
    pub name: Option<String>,
    /// Size in bytes (for folders, of all descendants; absent on personal delta deletions).
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub size: Option<u64>,
    /// Changes with metadata or content.
    pub e_tag: Option<String>,
    /// Changes with content (never on ODB folders, nor in ODB delta).
    pub c_tag: Option<String>,
    /// Server creation time.
    pub created_date_time: Option<String>,
    /// Server modification time.
    pub last_modified_date_time: Option<String>,
    /// Where it lives.
    pub parent_reference: Option<ItemReference>,
    /// Present on files.
    pub file: Option<FileFacet>,
    /// Present on folders (and, on ODB, on packages too).
    pub folder: Option<FolderFacet>,
    /// Present on packages (`OneNote` notebooks): `/content` answers 404, the children are plain files.
    pub package: Option<PackageFacet>,
    /// Present on shortcuts into another drive.
    pub remote_item: Option<RemoteItem>,
    /// Times as the client set them: what the local mtime should be.
    pub file_system_info: Option<FileSystemInfo>,
    /// Photo metadata.
    pub photo: Option<PhotoFacet>,
    /// Video metadata.
    pub video: Option<VideoFacet>,
    /// Image dimensions (may be an empty object on ODB).
    pub image: Option<ImageFacet>,
    /// Present (empty) on the drive root.
    pub root: Option<RootFacet>,
    /// Present on delta entries of deleted items.
    pub deleted: Option<DeletedFacet>,
    /// Present on special folders.
    pub special_folder: Option<SpecialFolder>,
    /// Present when the service flagged the file as malware: `/content` will answer 403.
    pub malware: Option<MalwareFacet>,
    /// A short-lived pre-authenticated URL for the content (on `GET item`, and on listings that select it).
    /// Never log its query.
    #[serde(rename = "@microsoft.graph.downloadUrl")]
    pub download_url: Option<DownloadUrl>,
}

/// A reference to an item's parent (or, inside [`RemoteItem`], to the target's drive).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReference {
    /// The drive, as this endpoint spelled it (personal drive IDs vary in case between endpoints).
    pub drive_id: Option<String>,
    /// The drive's type.
    pub drive_type: Option<String>,
    /// The parent's ID (absent on the root's reference).
    pub id: Option<ItemId>,
    /// The parent's path (`/drive/root:/a`), never present in delta.
    pub path: Option<String>,
}

/// The file facet (`file: {}` with nothing inside happens).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileFacet {
    /// MIME type.
    pub mime_type: Option<String>,
    /// Content hashes (may be absent or empty).
    pub hashes: Option<Hashes>,
}

/// Content hashes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hashes {
    /// quickXorHash, base64: the only one guaranteed on both personal and business.
    pub quick_xor_hash: Option<String>,
    /// SHA-1, hex (personal drives, until 2023).
    pub sha1_hash: Option<String>,
    /// SHA-256, hex (documented as not to be relied on).
    pub sha256_hash: Option<String>,
}

/// The folder facet.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderFacet {
    /// Direct children.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub child_count: Option<u64>,
}

/// The package facet.
#[derive(Debug, Clone, Deserialize)]
pub struct PackageFacet {
    /// `oneNote`, or another type.
    #[serde(rename = "type")]
    pub package_type: Option<String>,
}

/// A shortcut's target in another drive.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteItem {
    /// The target's ID (in the target's drive).
    pub id: ItemId,
    /// The target's name.
    pub name: Option<String>,
    /// The target's size.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub size: Option<u64>,
    /// The target's drive and parent.
    pub parent_reference: Option<ItemReference>,
    /// Present when the target is a file.
    pub file: Option<FileFacet>,
    /// Present when the target is a folder.
    pub folder: Option<FolderFacet>,
}

/// Client-set times.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileSystemInfo {
    /// Creation time.
    pub created_date_time: Option<String>,
    /// Modification time.
    pub last_modified_date_time: Option<String>,
}

/// Photo metadata (business drives give only `takenDateTime`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhotoFacet {
    /// When it was taken.
    pub taken_date_time: Option<String>,
    /// Camera make.
    pub camera_make: Option<String>,
    /// Camera model.
    pub camera_model: Option<String>,
}

/// Video metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct VideoFacet {
    /// Length in milliseconds.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub duration: Option<u64>,
    /// Width in pixels.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub height: Option<u32>,
}

/// Image dimensions.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageFacet {
    /// Width in pixels.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub height: Option<u32>,
}

/// The root facet: an empty object on the drive root.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFacet {}

/// The deleted facet of a delta entry.
#[derive(Debug, Clone, Deserialize)]
pub struct DeletedFacet {
    /// `deleted` or `softDeleted`, when given.
    pub state: Option<String>,
}

/// A special folder's alias.
#[derive(Debug, Clone, Deserialize)]
pub struct SpecialFolder {
    /// `photos`, `cameraroll`, `documents`, …
    pub name: Option<String>,
}

/// The malware facet.
#[derive(Debug, Clone, Deserialize)]
pub struct MalwareFacet {
    /// What the scanner found.
    pub description: Option<String>,
}

/// A drive.
#[derive(Debug, Clone)]
pub struct Drive {
    /// Its ID: the stable way to address it later.
    pub id: DriveId,
    /// `personal`, `business` or `documentLibrary` (`unknown` if the service did not say).
    pub drive_type: String,
    /// Its name: `OneDrive`, or a library's (`Documents`).
    pub name: Option<String>,
    /// The owner's display name (a user, group or application).
    pub owner: Option<String>,
    /// Storage quota.
    pub quota: Option<Quota>,
    /// Its address in a browser.
    pub web_url: Option<String>,
}

impl Drive {
    /// Whether the user's `name` for a library means this drive: its name, or the last segment of its address
    /// (a library shown as "Documents" lives at `…/Shared Documents`), ignoring case.
    pub fn is_called(&self, name: &str) -> bool {
        let name = name.trim();
        self.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
            || self
                .web_url
                .as_deref()
                .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                .map(|last| percent_encoding::percent_decode_str(last).decode_utf8_lossy())
                .is_some_and(|last| last.eq_ignore_ascii_case(name))
    }
}

/// Storage quota.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Bytes used.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub used: Option<u64>,
    /// Bytes available in all.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub total: Option<u64>,
    /// Bytes left.
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub remaining: Option<u64>,
    /// `normal`, `nearing`, `critical`, `exceeded`.
    pub state: Option<String>,
}

/// The signed-in user.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Display name.
    pub display_name: Option<String>,
    /// Sign-in name.
    pub user_principal_name: Option<String>,
    /// Mail address.
    pub mail: Option<String>,
}

/// The drive resource as sent; [`Drive`] is what callers get.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawDrive {
    pub id: DriveId,
    pub drive_type: Option<String>,
    pub name: Option<String>,
    pub owner: Option<serde_json::Value>,
    pub quota: Option<Quota>,
    pub web_url: Option<String>,
}

impl From<RawDrive> for Drive {
    fn from(raw: RawDrive) -> Self {
        // `owner` is an identitySet: whichever of user, group or application is there.
        let owner = raw.owner.as_ref().and_then(|o| {
            ["user", "group", "application"]
                .iter()
                .find_map(|k| o.get(k)?.get("displayName")?.as_str().map(str::to_owned))
        });
        Drive {
            id: raw.id,
            drive_type: raw.drive_type.unwrap_or_else(|| "unknown".to_owned()),
            name: raw.name,
            owner,
            quota: raw.quota,
            web_url: raw.web_url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> DriveItem {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    #[test]
    fn a_personal_photo_keeps_its_hashes_and_hides_its_download_url() {
        let it = item(
            r#"{"id":"7DDA670C5E7F91DF!1234","name":"IMG_0001.HEIC","size":3145728,
            "eTag":"aN0RBNjcwQzVFN0Y5MURGITEyMzQuMQ","cTag":"aYzo3RERBNjcwQzVFN0Y5MURGITEyMzQuMjU3",
            "createdDateTime":"2021-09-29T20:00:00Z","lastModifiedDateTime":"2021-09-29T20:00:01.123Z",
            "parentReference":{"driveId":"7dda670c5e7f91df","driveType":"personal","id":"7DDA670C5E7F91DF!103",
                "path":"/drive/root:/Pictures/Camera%20Roll"},
            "file":{"mimeType":"image/heic","hashes":{"quickXorHash":"XhBEHQSgjAiEAx7YPgEs1CEGZwA=",
                "sha256Hash":"ABCDEF"}},
            "fileSystemInfo":{"createdDateTime":"2021-09-29T19:59:00Z","lastModifiedDateTime":"2021-09-29T19:59:30Z"},
            "photo":{"takenDateTime":"2021-09-29T19:58:00Z","cameraMake":"Apple","cameraModel":"iPhone 12",
                "fNumber":1.6,"iso":32},
            "image":{"width":4032,"height":3024},
            "location":{"latitude":1.5},
            "@microsoft.graph.downloadUrl":"https://my.microsoftpersonalcontent.com/personal/x/_layouts/15/download.aspx?UniqueId=1&tempauth=SECRET",
            "someFutureField":{"a":[1,2]}}"#,
        );
        let hashes = it.file.as_ref().unwrap().hashes.as_ref().unwrap();
        assert_eq!(
            hashes.quick_xor_hash.as_deref(),
            Some("XhBEHQSgjAiEAx7YPgEs1CEGZwA=")
        );
        assert_eq!(hashes.sha1_hash, None);
        assert_eq!(
            it.photo.as_ref().unwrap().camera_model.as_deref(),
            Some("iPhone 12")
        );
        assert_eq!(it.image.as_ref().unwrap().width, Some(4032));
        assert_eq!(
            it.parent_reference
                .as_ref()
                .unwrap()
                .id
                .as_ref()
                .unwrap()
                .as_str(),
            "7DDA670C5E7F91DF!103"
        );
        let url = it.download_url.as_ref().unwrap();
        let shown = format!("{url:?} {url} {it:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("tempauth"),
            "{shown}"
        );
        assert!(url.expose().ends_with("tempauth=SECRET"));
    }

    #[test]
    fn a_business_file_and_folder_deserialize() {
        let file = item(
            r#"{"id":"01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K","name":"Report.docx","size":18007,
            "eTag":"\"{E4E0F97F-B5C7-4F2B-9F1E-D0A5C4C0A6F1},3\"",
            "parentReference":{"driveType":"business","driveId":"b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3-Z8RY2VpuvV_tpd",
                "id":"01BYE5RZ56Y2GOVW7725BZO354PWSELRRZ","path":"/drive/root:","siteId":"x"},
            "file":{"mimeType":"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "hashes":{"quickXorHash":"aMHk8XkS_I8MdFlUCq1Blcjgmh="}},
            "photo":{"takenDateTime":"2020-01-01T00:00:00Z"},"image":{},
            "video":{"duration":61000,"width":1920,"height":1080,"bitrate":100,"fourCC":"H264"}}"#,
        );
        assert!(file.c_tag.is_none());
        assert_eq!(file.video.as_ref().unwrap().duration, Some(61000));
        assert!(file.image.as_ref().unwrap().width.is_none());
        let folder = item(
            r#"{"id":"01BYE5RZ56Y2GOVW7725BZO354PWSELRRZ","name":"root","root":{},
            "folder":{"childCount":4,"view":{"sortBy":"name"}},"specialFolder":{"name":"documents"},
            "parentReference":{"driveType":"business","driveId":"b!x"}}"#,
        );
        assert!(folder.root.is_some());
        assert_eq!(folder.folder.as_ref().unwrap().child_count, Some(4));
        assert_eq!(
            folder.special_folder.unwrap().name.as_deref(),
            Some("documents")
        );
        assert!(folder.parent_reference.unwrap().id.is_none());
    }

    #[test]
    fn delta_deletions_leave_out_names_and_sizes() {
        let odb = item(
            r#"{"id":"01X","deleted":{"state":"deleted"},"size":0,
            "createdDateTime":"0001-01-01T00:00:00Z","parentReference":{"driveId":"b!x","id":"01P"}}"#,
        );
        assert!(odb.deleted.is_some() && odb.name.is_none() && odb.size == Some(0));
        let personal = item(r#"{"id":"7D!5","name":"old.txt","deleted":{},"file":{}}"#);
        assert!(personal.deleted.unwrap().state.is_none() && personal.size.is_none());
    }

    #[test]
    fn empty_facets_packages_remote_items_and_malware() {
        let bare = item(r#"{"id":"y","name":"empty.bin","size":0,"file":{"hashes":{}}}"#);
        let hashes = bare.file.unwrap().hashes.unwrap();
        assert!(hashes.quick_xor_hash.is_none() && hashes.sha1_hash.is_none());
        let no_hashes = item(r#"{"id":"y","name":"z","file":{}}"#);
        assert!(no_hashes.file.unwrap().hashes.is_none());
        let pkg = item(
            r#"{"id":"p","name":"Notebook","package":{"type":"oneNote"},"folder":{"childCount":2}}"#,
        );
        assert_eq!(
            pkg.package.unwrap().package_type.as_deref(),
            Some("oneNote")
        );
        assert!(pkg.folder.is_some());
        let shortcut = item(
            r#"{"id":"7D!9","name":"Shared","remoteItem":{"id":"ABC!7","name":"Shared","size":10,
            "folder":{"childCount":1},"parentReference":{"driveId":"abc","driveType":"personal"}}}"#,
        );
        let remote = shortcut.remote_item.unwrap();
        assert_eq!(remote.id.as_str(), "ABC!7");
        assert_eq!(
            remote.parent_reference.unwrap().drive_id.as_deref(),
            Some("abc")
        );
        let bad = item(r#"{"id":"m","name":"x.exe","file":{},"malware":{"description":"Trojan"}}"#);
        assert_eq!(bad.malware.unwrap().description.as_deref(), Some("Trojan"));
    }

    #[test]
    fn an_item_without_id_is_refused() {
        assert!(serde_json::from_str::<DriveItem>(r#"{"name":"x"}"#).is_err());
    }

    #[test]
    fn drive_owner_comes_from_whichever_identity_is_there() {
        let raw: RawDrive = serde_json::from_str(
            r#"{"id":"b!x","driveType":"documentLibrary","owner":{"group":{"displayName":"Marketing"}},
            "quota":{"used":10,"total":100,"remaining":90,"state":"normal","deleted":0}}"#,
        )
        .unwrap();
        let drive = Drive::from(raw);
        assert_eq!(drive.owner.as_deref(), Some("Marketing"));
        assert_eq!(drive.quota.unwrap().remaining, Some(90));
        let bare: RawDrive = serde_json::from_str(r#"{"id":"abc"}"#).unwrap();
        assert_eq!(Drive::from(bare).drive_type, "unknown");
    }
}
