//! Listing pages and their cursors. A nextLink or deltaLink is an opaque absolute URL that callers save
//! (the crawl frontier) and hand back verbatim; before following one we check it points at the configured
//! Graph origin, because following it sends the bearer token.
//!
//! This module knows nothing of where cursors are stored.
//! See <https://learn.microsoft.com/en-us/graph/paging>.

use serde::Deserialize;

use super::error::GraphError;
use super::model::DriveItem;

/// The fields a listing asks for: what the manifest stores, plus the server times the crawl falls back on
/// when `fileSystemInfo` is missing. `id` always comes back. `@microsoft.graph.downloadUrl` is asked for too
/// (children and delta pages both carry it when selected in the dialect the client writes; see `Dialect` in
/// `mod.rs`): a download that follows the crawl within its freshness window uses it instead of a `/content`
/// round trip per file; it expires within the hour, so the downloader falls back to `/content` for an old,
/// refused or missing one.
pub const ITEM_SELECT: &str = "id,name,size,eTag,cTag,createdDateTime,lastModifiedDateTime,parentReference,\
file,folder,package,remoteItem,fileSystemInfo,photo,video,deleted,root,specialFolder,malware,\
@microsoft.graph.downloadUrl";

/// Items per listing page: the most Graph accepts (pages may still come back shorter).
pub const PAGE_SIZE: u32 = 1000;

/// One page of a listing.
#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    /// The items, in the service's order.
    #[serde(default)]
    pub value: Vec<DriveItem>,
    /// Where the next page is: save it to resume, pass it back verbatim. `None` on the last page.
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    /// On a delta listing's last page: the link that asks for changes since this listing.
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

impl Page {
    /// The items (an alias of `value`, the name Graph gives them).
    pub fn items(&self) -> &[DriveItem] {
        &self.value
    }

    /// Whether this is the last page.
    pub fn is_last(&self) -> bool {
        self.next_link.is_none()
    }
}

/// Check that `link` has the scheme, host and port of `base`; the link itself is returned untouched.
pub(super) fn same_origin(base: &url::Url, link: &str) -> Result<url::Url, GraphError> {
    let parsed = url::Url::parse(link).map_err(|e| GraphError::Unexpected {
        what: "following a paging link".to_owned(),
        reason: format!("the link is not a URL: {e}"),
    })?;
    if parsed.scheme() != base.scheme()
        || parsed.host_str() != base.host_str()
        || parsed.port_or_known_default() != base.port_or_known_default()
    {
        return Err(GraphError::ForeignLink {
            origin: origin(&parsed),
            expected: origin(base),
        });
    }
    Ok(parsed)
}

/// `scheme://host[:port]`, nothing else (a link's query may hold a token; it is not shown).
pub(super) fn origin(url: &url::Url) -> String {
    match url.port() {
        Some(port) => format!(
            "{}://{}:{port}",
            url.scheme(),
            url.host_str().unwrap_or("?")
        ),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_followed_only_on_the_configured_origin() {
        let base = url::Url::parse("https://graph.microsoft.com/v1.0").unwrap();
        let cases = [
            (
                "https://graph.microsoft.com/v1.0/drives/x/items/y/children?$skiptoken=abc",
                true,
            ),
            ("https://graph.microsoft.com:443/v1.0/x", true),
            ("https://graph.microsoft.com/beta/x", true),
            ("http://graph.microsoft.com/v1.0/x", false),
            ("https://graph.microsoft.com:8443/v1.0/x", false),
            ("https://graph.microsoft.com.evil.example/v1.0/x", false),
            ("https://evil.example/v1.0/x?token=abc", false),
        ];
        for (link, ok) in cases {
            assert_eq!(same_origin(&base, link).is_ok(), ok, "{link}");
        }
        let err = same_origin(&base, "https://evil.example/v1.0/x?token=abc").unwrap_err();
        assert!(matches!(err, GraphError::ForeignLink { .. }));
        assert!(!err.to_string().contains("token=abc"), "{err}");
        assert!(matches!(
            same_origin(&base, "/v1.0/relative"),
            Err(GraphError::Unexpected { .. })
        ));
    }

    #[test]
    fn a_page_keeps_its_links_verbatim() {
        let page: Page = serde_json::from_str(
            r#"{"@odata.context":"x","value":[{"id":"a","name":"A"},{"id":"b"}],
            "@odata.nextLink":"https://graph.microsoft.com/v1.0/drives/d/items/i/children?$top=1000&$skiptoken=Paged%3dTRUE"}"#,
        )
        .unwrap();
        assert_eq!(page.items().len(), 2);
        assert!(!page.is_last());
        assert!(page.next_link.unwrap().ends_with("$skiptoken=Paged%3dTRUE"));
        let last: Page = serde_json::from_str(
            r#"{"value":[],"@odata.deltaLink":"https://graph.microsoft.com/v1.0/drives/d/root/delta?token=t"}"#,
        )
        .unwrap();
        assert!(last.is_last() && last.delta_link.is_some());
        let empty: Page = serde_json::from_str("{}").unwrap();
        assert!(empty.value.is_empty() && empty.is_last());
    }
}
