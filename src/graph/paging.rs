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
    pub(crate) value: Vec<DriveItem>,
    /// Where the next page is: save it to resume, pass it back verbatim. `None` on the last page.
    #[serde(rename = "@odata.nextLink")]
    pub(crate) next_link: Option<String>,
    /// On a delta listing's last page: the link that asks for changes since this listing.
    #[serde(rename = "@odata.deltaLink")]
    pub(crate) delta_link: Option<String>,
}

impl Page {
    /// The items (an alias of `value`, the name Graph gives them).
    #[cfg(test)]
    pub(crate) fn items(&self) -> &[DriveItem] {
        &self.value
    }

    /// Whether this is the last page.
    #[cfg(test)]
    pub(crate) fn is_last(&self) -> bool {
        self.next_link.is_none()
    }
}

/// Pages in a row that bring no item the listing has not already shown before it is given up. Small: a
/// listing that makes progress brings new items on almost every page, and each stalled page is a request.
pub const MAX_PAGES_WITHOUT_PROGRESS: u32 = 3;

/// Watches one listing (a folder's children, a delta round or enumeration) for a service that makes no
/// progress, so every paging loop ends within a bounded number of requests: a nextLink that points back at the
/// page that carried it or at an earlier one (the same `@odata.nextLink` with the same items again was seen,
/// onedrive-api-docs #1431, microsoft-graph-docs #2749), and pages that bring nothing new but point on (rclone
/// ends a listing at the first empty page).
#[derive(Debug, Default)]
pub struct PagingGuard {
    followed: std::collections::HashSet<String>,
    /// 32-bit hashes of the IDs seen, not the IDs themselves: a listing of a million items costs about 10 MB
    /// (16 MB while the set grows), where 64-bit ones cost twice that, a fifth of a large listing's memory. A
    /// collision only makes one item look seen; a page is judged stalled when none of its items is new.
    seen: std::collections::HashSet<u32>,
    stalled: u32,
}

/// Why a listing was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoProgress {
    /// A nextLink points at a page already asked for.
    #[error("the service's next page link points back at a page it already sent")]
    RepeatedLink,
    /// Several pages in a row brought no item not seen before, and still point on.
    #[error("{MAX_PAGES_WITHOUT_PROGRESS} pages in a row brought nothing new and still pointed on")]
    NothingNew,
}

impl PagingGuard {
    /// A link about to be asked for (the first one too, when it is a saved cursor).
    pub(crate) fn follow(&mut self, link: &str) {
        self.followed.insert(link.to_owned());
    }

    /// Judge a page that just arrived, before its nextLink is followed.
    ///
    /// # Errors
    /// [`NoProgress`] when the listing should end here.
    pub(crate) fn check(&mut self, page: &Page) -> Result<(), NoProgress> {
        let mut fresh = false;
        for item in &page.value {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&item.id, &mut hasher);
            // The low half of the hash: truncation is the point.
            #[allow(clippy::cast_possible_truncation)]
            let short = std::hash::Hasher::finish(&hasher) as u32;
            fresh |= self.seen.insert(short);
        }
        self.stalled = if fresh { 0 } else { self.stalled + 1 };
        let Some(next) = &page.next_link else {
            return Ok(());
        };
        if self.followed.contains(next) {
            return Err(NoProgress::RepeatedLink);
        }
        if self.stalled >= MAX_PAGES_WITHOUT_PROGRESS {
            return Err(NoProgress::NothingNew);
        }
        Ok(())
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

    fn page(ids: &[&str], next: Option<&str>) -> Page {
        let value: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| serde_json::json!({ "id": id }))
            .collect();
        serde_json::from_value(serde_json::json!({ "value": value, "@odata.nextLink": next }))
            .unwrap()
    }

    #[test]
    fn a_listing_that_points_back_or_brings_nothing_new_is_given_up_within_a_few_pages() {
        // A link back at the page that carried it.
        let mut g = PagingGuard::default();
        g.follow("L1");
        assert_eq!(
            g.check(&page(&["a"], Some("L1"))),
            Err(NoProgress::RepeatedLink)
        );
        // A link back at an earlier page.
        let mut g = PagingGuard::default();
        assert_eq!(g.check(&page(&["a"], Some("L1"))), Ok(()));
        g.follow("L1");
        assert_eq!(g.check(&page(&["b"], Some("L2"))), Ok(()));
        g.follow("L2");
        assert_eq!(
            g.check(&page(&["c"], Some("L1"))),
            Err(NoProgress::RepeatedLink)
        );
        // Empty pages, or the same items again, under ever new links.
        let mut g = PagingGuard::default();
        assert_eq!(g.check(&page(&["a", "b"], Some("L1"))), Ok(()));
        assert_eq!(g.check(&page(&[], Some("L2"))), Ok(()));
        assert_eq!(
            g.check(&page(&["A"], Some("L3"))),
            Ok(()),
            "IDs compare canonically only for personal shapes"
        );
        assert_eq!(g.check(&page(&["a"], Some("L4"))), Ok(()));
        assert_eq!(g.check(&page(&[], Some("L5"))), Ok(()));
        assert_eq!(
            g.check(&page(&["b"], Some("L6"))),
            Err(NoProgress::NothingNew)
        );
        // Progress resets the count; the last page may be empty.
        let mut g = PagingGuard::default();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(g.check(&page(&[id], Some(&format!("L{i}")))), Ok(()));
            assert_eq!(g.check(&page(&[], Some(&format!("E{i}")))), Ok(()));
        }
        assert_eq!(g.check(&page(&[], None)), Ok(()));
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
