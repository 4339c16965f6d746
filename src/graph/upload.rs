//! Writing to a drive, HTTP only: simple uploads, upload sessions and their fragments, folders, client times.
//!
//! A session's `uploadUrl` is pre-authenticated, like a download URL: [`UploadUrl`] shows only its scheme and
//! host (the rest of it, path included, is the credential), and fragments go out on the client that never
//! carries the bearer token — the docs warn that a `PUT` with an `Authorization` header "may result in a
//! `HTTP 401 Unauthorized`" (<https://learn.microsoft.com/en-us/graph/api/driveitem-createuploadsession>).
//!
//! This module knows nothing of local files, hashing or the manifest: bytes in, items out. Deciding what to
//! upload, in which fragments, and what to do with a refused one is the restore's (`crate::restore`).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use reqwest::header;
use serde::Deserialize;

use super::error::{ErrorBody, GraphError};
use super::model::DriveItem;
use super::transport::{Payload, Tally, read_error_body};
use super::{GraphClient, NAME_SEGMENT, decode, encode_id};
use crate::ids::{DriveId, ItemId};

/// A pre-authenticated upload-session URL. All of it but the scheme and host is a credential: `Debug` and
/// `Display` show `scheme://host` only; [`UploadUrl::expose`] is for making the request and for keeping it
/// (as the manifest keeps listing URLs), never for a log or a message.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UploadUrl(String);

impl UploadUrl {
    /// Wrap a URL.
    pub fn new(url: String) -> Self {
        Self(url)
    }

    /// The full URL, secret included.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Scheme and host only.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
            Err(_) => "<upload url>".to_owned(),
        }
    }

    fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "the upload host".to_owned())
    }
}

impl std::fmt::Debug for UploadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UploadUrl({})", self.redacted())
    }
}

impl std::fmt::Display for UploadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// An upload session as created. See <https://learn.microsoft.com/en-us/graph/api/resources/uploadsession>.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    /// Where the fragments go.
    pub upload_url: UploadUrl,
    /// When the session expires unless a fragment renews it (RFC 3339).
    pub expiration_date_time: Option<String>,
    /// Ranges the service still lacks (`"0-"` at first).
    #[serde(default)]
    pub next_expected_ranges: Vec<String>,
}

/// Where an upload session stands, from a status `GET` or a fragment's 202.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// When the session expires unless a fragment renews it.
    pub expiration_date_time: Option<String>,
    /// Ranges the service still lacks, `"start-end"` or `"start-"`; not always all of them (docs).
    #[serde(default)]
    pub next_expected_ranges: Vec<String>,
}

impl SessionStatus {
    /// The first byte the service still lacks: the start of its earliest expected range (`None` when it
    /// lists none, as when it has every byte).
    pub fn resume_offset(&self) -> Option<u64> {
        self.next_expected_ranges
            .iter()
            .filter_map(|r| r.split('-').next()?.trim().parse::<u64>().ok())
            .min()
    }
}

/// What a fragment's answer said.
#[derive(Debug, Clone)]
pub enum FragmentOutcome {
    /// 202: more bytes are expected.
    More(SessionStatus),
    /// 200 or 201: that was the last fragment; here is the item it made.
    Done(Box<DriveItem>),
}

/// What a write does when the name is taken (`@microsoft.graph.conflictBehavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictBehavior {
    /// Refuse with 409 `nameAlreadyExists`.
    Fail,
    /// Replace the existing file's content.
    Replace,
    /// Keep both: the service picks a free name (`name 1.ext`).
    Rename,
}

impl ConflictBehavior {
    /// The spelling Graph takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictBehavior::Fail => "fail",
            ConflictBehavior::Replace => "replace",
            ConflictBehavior::Rename => "rename",
        }
    }
}

/// The item properties an upload session is created with
/// (<https://learn.microsoft.com/en-us/graph/api/resources/driveitemuploadableproperties>).
#[derive(Debug, Clone, Copy)]
pub struct UploadProperties<'a> {
    /// The file's name in the parent folder.
    pub name: &'a str,
    /// When the name is taken.
    pub conflict: ConflictBehavior,
    /// `fileSystemInfo.createdDateTime` (RFC 3339).
    pub created: Option<&'a str>,
    /// `fileSystemInfo.lastModifiedDateTime` (RFC 3339).
    pub modified: Option<&'a str>,
    /// The size, so the service can refuse over quota (507) before any byte is sent.
    pub size: u64,
}

/// One fragment's bytes, produced afresh for every attempt (a retry sends them again).
pub type FragmentBody = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Seconds of fragment added to the request timeout per this many bytes: a 60 MiB fragment over a slow
/// link needs longer than a JSON call (256 KiB/s is the slowest link this allows for without a timeout).
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 256 * 1024;

fn file_system_info(created: Option<&str>, modified: Option<&str>) -> serde_json::Value {
    let mut info = serde_json::Map::new();
    if let Some(c) = created {
        info.insert("createdDateTime".into(), c.into());
    }
    if let Some(m) = modified {
        info.insert("lastModifiedDateTime".into(), m.into());
    }
    serde_json::Value::Object(info)
}

impl GraphClient {
    fn child_url(&self, drive: &DriveId, parent: &ItemId, name: &str, tail: &str) -> String {
        self.url(&format!(
            "/drives/{}/items/{}:/{}:/{tail}",
            encode_id(drive.as_str()),
            encode_id(parent.as_str()),
            percent_encoding::utf8_percent_encode(name, NAME_SEGMENT)
        ))
    }

    /// Upload a small file in one request: `PUT /drives/{d}/items/{parent}:/{name}:/content`. Microsoft's
    /// `OneDrive` page keeps this for files up to 4 MB (the Graph page says 250 MB); larger ones go through
    /// [`GraphClient::create_upload_session`].
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-put-content>.
    ///
    /// # Errors
    /// 409 `nameAlreadyExists` under [`ConflictBehavior::Fail`], 507 `quotaLimitReached` over quota, 400 for
    /// a name the service refuses, as [`GraphError::Http`].
    #[tracing::instrument(skip_all, fields(drive = %drive, parent = %parent, bytes = bytes.len()))]
    pub async fn put_small(
        &self,
        drive: &DriveId,
        parent: &ItemId,
        name: &str,
        bytes: Bytes,
        conflict: ConflictBehavior,
    ) -> Result<DriveItem, GraphError> {
        let url = format!(
            "{}?@microsoft.graph.conflictBehavior={}",
            self.child_url(drive, parent, name, "content"),
            conflict.as_str()
        );
        let what = format!("uploading {name:?} into item {parent}");
        let body = Payload {
            bytes,
            content_type: "application/octet-stream",
        };
        self.send_and_read(&what, reqwest::Method::PUT, &url, Some(&body), |a| {
            decode(&what, &a.body)
        })
        .await
    }

    /// Start an upload session for a new file `props.name` in `parent`, with its times and size.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-createuploadsession>.
    ///
    /// # Errors
    /// As [`GraphClient::put_small`]; 507 comes here, before any byte is sent, when the size is over quota.
    #[tracing::instrument(skip_all, fields(drive = %drive, parent = %parent, size = props.size))]
    pub async fn create_upload_session(
        &self,
        drive: &DriveId,
        parent: &ItemId,
        props: &UploadProperties<'_>,
    ) -> Result<UploadSession, GraphError> {
        let url = self.child_url(drive, parent, props.name, "createUploadSession");
        let body = Payload::json(&serde_json::json!({
            "item": {
                "@microsoft.graph.conflictBehavior": props.conflict.as_str(),
                "name": props.name,
                "fileSize": props.size,
                "fileSystemInfo": file_system_info(props.created, props.modified),
            }
        }));
        let what = format!("starting an upload of {:?} into item {parent}", props.name);
        self.send_and_read(&what, reqwest::Method::POST, &url, Some(&body), |a| {
            decode(&what, &a.body)
        })
        .await
    }

    /// Send bytes `start..start+len` of a `total`-byte file to an upload session (`Content-Range: bytes
    /// a-b/total`), without the bearer token, under the retry policy until an answer arrives; `body` makes
    /// the bytes afresh for every attempt.
    ///
    /// # Errors
    /// [`GraphError::UploadSessionGone`] on 404 (start over), [`GraphError::FragmentRefused`] on 416 (ask the
    /// status and resume from there), [`GraphError::Http`] for the rest (507 over quota, 409 when the name
    /// was taken meanwhile).
    #[tracing::instrument(skip_all, fields(url = %url, start, len))]
    pub async fn put_fragment(
        &self,
        url: &UploadUrl,
        start: u64,
        len: u64,
        total: u64,
        body: &(dyn Fn() -> FragmentBody + Send + Sync),
    ) -> Result<FragmentOutcome, GraphError> {
        let what = format!("uploading bytes {start}.. to {url}");
        let host = url.host();
        let timeout = self.inner.options.request_timeout
            + Duration::from_secs(len / SLOWEST_UPLOAD_BYTES_PER_SEC);
        let end = (start + len).saturating_sub(1);
        let mut tally = Tally::default();
        loop {
            self.pass_gate().await?;
            self.count_request();
            let request = self
                .inner
                .downloads
                .put(url.expose())
                .header(header::CONTENT_LENGTH, len)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                )
                .body(reqwest::Body::wrap_stream(body()))
                .timeout(timeout);
            let failure = match request.send().await {
                Err(e) => self.transport_failure(&what, e, &host),
                Ok(response) => {
                    let status = response.status().as_u16();
                    tracing::trace!(status, "upload host answered");
                    self.watch_rate_limit(response.headers());
                    match status {
                        200..=202 => {
                            let answer = response
                                .bytes()
                                .await
                                .map_err(|e| self.transport_failure(&what, e, &host).1)?;
                            return if status == 202 {
                                decode(&what, &answer).map(FragmentOutcome::More)
                            } else {
                                decode(&what, &answer).map(|i| FragmentOutcome::Done(Box::new(i)))
                            };
                        }
                        404 => return Err(GraphError::UploadSessionGone),
                        416 => {
                            let body = read_error_body(response, timeout).await;
                            return Err(GraphError::FragmentRefused {
                                start,
                                code: ErrorBody::parse(&body).code().map(str::to_owned),
                            });
                        }
                        _ => {
                            let headers = response.headers().clone();
                            let body = read_error_body(response, timeout).await;
                            Self::http_failure(&what, status, &headers, &body, true)
                        }
                    }
                }
            };
            self.wait_before_retry(&mut tally, failure).await?;
        }
    }

    /// Where a session stands: `GET` its URL (no bearer token).
    ///
    /// # Errors
    /// [`GraphError::UploadSessionGone`] on 404.
    #[tracing::instrument(skip_all, fields(url = %url))]
    pub async fn upload_session_status(
        &self,
        url: &UploadUrl,
    ) -> Result<SessionStatus, GraphError> {
        let what = format!("asking {url} for an upload's status");
        let answer = self
            .upload_host_call(&what, reqwest::Method::GET, url)
            .await?;
        decode(&what, &answer)
    }

    /// Cancel a session: `DELETE` its URL (no bearer token). A session already gone is fine.
    #[tracing::instrument(skip_all, fields(url = %url))]
    pub async fn cancel_upload_session(&self, url: &UploadUrl) -> Result<(), GraphError> {
        let what = format!("cancelling an upload at {url}");
        match self
            .upload_host_call(&what, reqwest::Method::DELETE, url)
            .await
        {
            Ok(_) | Err(GraphError::UploadSessionGone) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn upload_host_call(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &UploadUrl,
    ) -> Result<Bytes, GraphError> {
        let host = url.host();
        let timeout = self.inner.options.request_timeout;
        let mut tally = Tally::default();
        loop {
            self.pass_gate().await?;
            self.count_request();
            let sent = self
                .inner
                .downloads
                .request(method.clone(), url.expose())
                .timeout(timeout)
                .send()
                .await;
            let failure = match sent {
                Err(e) => self.transport_failure(what, e, &host),
                Ok(response) => {
                    let status = response.status().as_u16();
                    self.watch_rate_limit(response.headers());
                    match status {
                        200..=299 => match response.bytes().await {
                            Ok(b) => return Ok(b),
                            Err(e) => self.transport_failure(what, e, &host),
                        },
                        404 => return Err(GraphError::UploadSessionGone),
                        _ => {
                            let headers = response.headers().clone();
                            let body = read_error_body(response, timeout).await;
                            Self::http_failure(what, status, &headers, &body, true)
                        }
                    }
                }
            };
            self.wait_before_retry(&mut tally, failure).await?;
        }
    }

    /// Create the folder `name` in `parent` (`POST …/children`, conflict behaviour `fail`).
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-post-children>.
    ///
    /// # Errors
    /// 409 `nameAlreadyExists` when something has that name: look it up with
    /// [`GraphClient::child_by_name`].
    #[tracing::instrument(skip_all, fields(drive = %drive, parent = %parent))]
    pub async fn create_folder(
        &self,
        drive: &DriveId,
        parent: &ItemId,
        name: &str,
    ) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}/children",
            encode_id(drive.as_str()),
            encode_id(parent.as_str())
        ));
        let body = Payload::json(&serde_json::json!({
            "name": name,
            "folder": {},
            "@microsoft.graph.conflictBehavior": "fail",
        }));
        let what = format!("creating folder {name:?} in item {parent}");
        self.send_and_read(&what, reqwest::Method::POST, &url, Some(&body), |a| {
            decode(&what, &a.body)
        })
        .await
    }

    /// The child `name` of `parent`, by path relative to it (`items/{parent}:/{name}:`).
    /// See <https://learn.microsoft.com/en-us/graph/onedrive-addressing-driveitems>.
    #[tracing::instrument(skip_all, fields(drive = %drive, parent = %parent))]
    pub async fn child_by_name(
        &self,
        drive: &DriveId,
        parent: &ItemId,
        name: &str,
    ) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}:/{}:?$select={}",
            encode_id(drive.as_str()),
            encode_id(parent.as_str()),
            percent_encoding::utf8_percent_encode(name, NAME_SEGMENT),
            super::ITEM_SELECT
        ));
        self.get_json(&format!("reading {name:?} in item {parent}"), &url)
            .await
    }

    /// Set a file's client times (`PATCH` its `fileSystemInfo`), as a simple upload cannot carry them.
    /// See <https://learn.microsoft.com/en-us/graph/api/driveitem-update>.
    #[tracing::instrument(skip_all, fields(drive = %drive, item = %item))]
    pub async fn set_file_system_info(
        &self,
        drive: &DriveId,
        item: &ItemId,
        created: Option<&str>,
        modified: Option<&str>,
    ) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "/drives/{}/items/{}",
            encode_id(drive.as_str()),
            encode_id(item.as_str())
        ));
        let body = Payload::json(&serde_json::json!({
            "fileSystemInfo": file_system_info(created, modified),
        }));
        let what = format!("setting the times of item {item}");
        self.send_and_read(&what, reqwest::Method::PATCH, &url, Some(&body), |a| {
            decode(&what, &a.body)
        })
        .await
    }
}

/// Whether `err` says the service is out of space for this write (507, `quotaLimitReached`).
pub fn is_quota(err: &GraphError) -> bool {
    err.status() == Some(507)
        || err.has_code("quotaLimitReached")
        || err.has_code("insufficientStorage")
}

/// Whether `err` says the name is taken (409 `nameAlreadyExists`).
pub fn is_name_taken(err: &GraphError) -> bool {
    err.status() == Some(409) || err.has_code("nameAlreadyExists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_url_never_shows_more_than_its_host() {
        for raw in [
            "https://sn3302.up.1drv.com/up/fe6987415ace7X4e1eF866337",
            "https://contoso-my.sharepoint.com/personal/a/_api/v2.0/drives/b!x/items/01Y/uploadSession?guid='1'&tempauth=SECRET",
        ] {
            let url = UploadUrl::new(raw.to_owned());
            let shown = format!("{url} {url:?} {}", url.redacted());
            assert!(
                !shown.contains("fe6987") && !shown.contains("SECRET") && !shown.contains("/up/"),
                "{shown}"
            );
            assert_eq!(url.expose(), raw);
        }
        assert_eq!(
            UploadUrl::new("https://sn3302.up.1drv.com/up/x".into()).to_string(),
            "https://sn3302.up.1drv.com"
        );
    }

    #[test]
    fn the_resume_offset_is_the_earliest_range_the_service_lacks() {
        let status = |ranges: &[&str]| SessionStatus {
            expiration_date_time: None,
            next_expected_ranges: ranges.iter().map(|r| (*r).to_owned()).collect(),
        };
        assert_eq!(status(&["26-"]).resume_offset(), Some(26));
        assert_eq!(
            status(&["77829-99375", "12345-55232"]).resume_offset(),
            Some(12345)
        );
        assert_eq!(status(&[]).resume_offset(), None);
        assert_eq!(status(&["junk"]).resume_offset(), None);
        let parsed: SessionStatus = serde_json::from_str(
            r#"{"expirationDateTime":"2015-01-29T09:21:55.523Z","nextExpectedRanges":["0-"]}"#,
        )
        .unwrap();
        assert_eq!(parsed.resume_offset(), Some(0));
    }
}
