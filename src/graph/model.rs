//! The Graph resources odbackup reads, as serde types. Tolerant by design: everything but `id` is optional,
//! because delta entries, business drives and deleted items all leave fields out, and unknown fields are
//! ignored.
//!
//! See <https://learn.microsoft.com/en-us/graph/api/resources/driveitem>.

use serde::Deserialize;

use crate::ids::{DriveId, ItemId};

/// A pre-authenticated download URL. Its query string is a credential: `Debug` and `Display` show only the
/// scheme, host and path; [`DownloadUrl::expose`] is for making the request.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DownloadUrl(String);

impl DownloadUrl {
    /// Wrap a URL.
    pub fn new(url: String) -> Self {
        Self(url)
    }

    /// The full URL, secret included.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Scheme, host and path only.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.path()
            ),
            Err(_) => "<download url>".to_owned(),
        }
    }
}

impl std::fmt::Debug for DownloadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DownloadUrl({}?***)", self.redacted())
    }
}

impl std::fmt::Display for DownloadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}?***", self.redacted())
    }
}

/// A drive item (file, folder, package, remote item).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveItem {
    /// Its ID (unique within its drive).
    pub id: ItemId,
    /// Its name (absent on business delta deletions).
    pub name: Option<String>,
    /// Size in bytes (for folders, of all descendants).
    pub size: Option<u64>,
    /// Changes with metadata or content.
    pub e_tag: Option<String>,
    /// Changes with content.
    pub c_tag: Option<String>,
    /// Server creation time.
    pub created_date_time: Option<String>,
    /// Server modification time.
    pub last_modified_date_time: Option<String>,
    /// Where it lives.
    pub parent_reference: Option<ItemReference>,
    /// Present on files.
    pub file: Option<FileFacet>,
    /// Present on folders.
    pub folder: Option<FolderFacet>,
    /// Present on packages (`OneNote` notebooks).
    pub package: Option<PackageFacet>,
    /// Present on shortcuts into another drive.
    pub remote_item: Option<RemoteItem>,
    /// Times as the client set them (what the local mtime should be).
    pub file_system_info: Option<FileSystemInfo>,
    /// Photo metadata.
    pub photo: Option<PhotoFacet>,
    /// Video metadata.
    pub video: Option<serde_json::Value>,
    /// Present (empty) on the drive root.
    pub root: Option<serde_json::Value>,
    /// Present on delta entries of deleted items.
    pub deleted: Option<serde_json::Value>,
    /// Present on special folders.
    pub special_folder: Option<SpecialFolder>,
    /// Present when the service flagged the file as malware.
    pub malware: Option<serde_json::Value>,
    /// A short-lived pre-authenticated URL for the content.
    #[serde(rename = "@microsoft.graph.downloadUrl")]
    pub download_url: Option<DownloadUrl>,
}

/// A reference to an item's parent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReference {
    /// The drive.
    pub drive_id: Option<String>,
    /// The drive's type.
    pub drive_type: Option<String>,
    /// The parent's ID.
    pub id: Option<ItemId>,
    /// The parent's path (`/drive/root:/a`), never present in delta.
    pub path: Option<String>,
}

/// The file facet.
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
    /// quickXorHash, base64.
    pub quick_xor_hash: Option<String>,
    /// SHA-1, hex (personal drives, until 2023).
    pub sha1_hash: Option<String>,
    /// SHA-256, hex (not to be relied on).
    pub sha256_hash: Option<String>,
}

/// The folder facet.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderFacet {
    /// Direct children.
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
    /// The target's ID.
    pub id: ItemId,
    /// The target's name.
    pub name: Option<String>,
    /// The target's size.
    pub size: Option<u64>,
    /// The target's drive.
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

/// A special folder's alias.
#[derive(Debug, Clone, Deserialize)]
pub struct SpecialFolder {
    /// `photos`, `cameraroll`, …
    pub name: Option<String>,
}

/// A drive.
#[derive(Debug, Clone)]
pub struct Drive {
    /// Its ID.
    pub id: DriveId,
    /// `personal`, `business` or `documentLibrary`.
    pub drive_type: String,
    /// The owner's display name.
    pub owner: Option<String>,
    /// Storage quota.
    pub quota: Option<Quota>,
}

/// Storage quota.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Bytes used.
    pub used: Option<u64>,
    /// Bytes available in all.
    pub total: Option<u64>,
    /// Bytes left.
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawDrive {
    pub id: DriveId,
    pub drive_type: Option<String>,
    pub owner: Option<serde_json::Value>,
    pub quota: Option<Quota>,
}

impl From<RawDrive> for Drive {
    fn from(raw: RawDrive) -> Self {
        let owner = raw.owner.as_ref().and_then(|o| {
            ["user", "group", "application"]
                .iter()
                .find_map(|k| o.get(k)?.get("displayName")?.as_str().map(str::to_owned))
        });
        Drive {
            id: raw.id,
            drive_type: raw.drive_type.unwrap_or_else(|| "unknown".to_owned()),
            owner,
            quota: raw.quota,
        }
    }
}

/// A page of items.
#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    /// The items.
    #[serde(default)]
    pub value: Vec<DriveItem>,
    /// The next page, if any.
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    /// On a delta listing's last page, the link for next time.
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_items_deserialize() {
        let personal = r#"{"id":"7DDA!12","name":"a.jpg","size":3,"eTag":"e","cTag":"c",
            "parentReference":{"driveId":"7dda","driveType":"personal","id":"7DDA!1","path":"/drive/root:/P"},
            "file":{"mimeType":"image/jpeg","hashes":{"quickXorHash":"AAAA","sha1Hash":"AB"}},
            "fileSystemInfo":{"createdDateTime":"2021-01-01T00:00:00Z","lastModifiedDateTime":"2021-01-02T00:00:00Z"},
            "photo":{"takenDateTime":"2020-12-31T23:00:00Z"},"image":{"width":1},
            "@microsoft.graph.downloadUrl":"https://dl.example/x?tempauth=SECRET","unknownField":1}"#;
        let item: DriveItem = serde_json::from_str(personal).unwrap();
        assert_eq!(
            item.file.unwrap().hashes.unwrap().quick_xor_hash.as_deref(),
            Some("AAAA")
        );
        let url = item.download_url.unwrap();
        assert!(!format!("{url:?} {url}").contains("SECRET"));
        let deleted: DriveItem =
            serde_json::from_str(r#"{"id":"x","deleted":{},"size":0}"#).unwrap();
        assert!(deleted.deleted.is_some() && deleted.name.is_none());
        let bare: DriveItem = serde_json::from_str(r#"{"id":"y","name":"z","file":{}}"#).unwrap();
        assert!(bare.file.unwrap().hashes.is_none());
        let pkg: DriveItem = serde_json::from_str(
            r#"{"id":"p","name":"N","package":{"type":"oneNote"},"folder":{"childCount":2}}"#,
        )
        .unwrap();
        assert_eq!(
            pkg.package.unwrap().package_type.as_deref(),
            Some("oneNote")
        );
    }
}
