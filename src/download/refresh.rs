//! Fresh download URLs for files whose listing URL has gone stale, by listing their folder again: one
//! request brings a URL for each of its files (up to a thousand a page), where `/content` costs a round
//! trip per file. A long run outlives its listing's URLs (the service documents about an hour, some tenants
//! far less: <https://learn.microsoft.com/en-us/graph/api/resources/driveitem>), and past that point every
//! file would otherwise be one more request to Graph, each one more chance of being throttled.
//!
//! The scheduler calls [`UrlRefresher::refresh`] with each page of jobs before it hands them out. Only jobs
//! that share a folder with enough others are worth a listing; a folder is listed at most once while its
//! URLs last; a listing that brings no URL at all (a service that leaves them out of listings), or two that
//! the service refuses for good (not throttling, a server error or the network), turn the refresher off for
//! the run, so it never costs more than a request or two where it cannot help. Listings that fail for a passing reason
//! (throttling, a 5xx, the network, after the client's own retries) turn it off after [`MAX_FAILURES`].
//! A URL is only used for the version it was listed with, as for the crawl's own URLs.

use std::collections::HashMap;

use super::plan::ListedUrlLifetime;
use crate::graph::GraphClient;
use crate::ids::{DriveId, ItemId};
use crate::manifest::{DownloadJob, ListedUrl, RelistedUrl, StoredUrl, url_version};
use crate::shared::SharedManifest;

/// Jobs of one folder in a page that make a new listing of it worth its request.
const MIN_FILES: usize = 4;

/// Pages of one folder's listing read at most per refresh: enough for the page of jobs in hand (the
/// scheduler reads 256 rows at a time), bounded whatever the folder holds.
const MAX_PAGES: usize = 4;

/// Listings refused for good (not a failure worth trying again: see `GraphError::is_transient`) after which
/// the refresher is turned off for the run.
const MAX_REFUSALS: u32 = 2;

/// Failed listings of any kind after which the refresher is turned off for the run.
const MAX_FAILURES: u32 = 8;

/// Folders listed at once, once listings have been seen to bring URLs: the scheduler hands out no job while
/// they run, so a page of jobs spread over many folders should not cost one round trip per folder.
const AT_ONCE: usize = 8;

/// What the refresher has learned in a run.
#[derive(Debug, Default)]
pub(super) struct UrlRefresher {
    /// Whether a listing has shown that this service puts download URLs in listings (a job came with one).
    service_lists_urls: bool,
    /// Off for the rest of the run (listings bring no URLs, or failed).
    off: bool,
    /// Listings that failed, and of those the ones refused as such.
    failures: u32,
    refusals: u32,
    /// When each folder was last listed again (Unix milliseconds).
    listed_at: HashMap<(DriveId, ItemId), i64>,
    /// Folders listed again, for the summary.
    pub(super) folders: u64,
    /// URLs they brought that were kept.
    pub(super) urls: u64,
}

impl UrlRefresher {
    /// Give the jobs of `jobs` whose listing URL is stale (or missing) a fresh one, by listing again each
    /// folder that holds at least [`MIN_FILES`] of them; the URLs are kept in the manifest for the rows too.
    /// Failures leave the jobs as they were (they go through `/content`).
    pub(super) async fn refresh(
        &mut self,
        graph: &GraphClient,
        manifest: &SharedManifest,
        lifetime: &std::sync::Mutex<ListedUrlLifetime>,
        jobs: &mut [DownloadJob],
    ) -> Result<(), crate::manifest::ManifestError> {
        self.service_lists_urls |= jobs.iter().any(|j| j.listed_url.is_some());
        if self.off || !self.service_lists_urls {
            return Ok(());
        }
        let mut folders = self.stale_folders(lifetime, jobs);
        while !folders.is_empty() && !self.off {
            // One listing at a time until one has shown that they bring URLs here (so a service that
            // refuses them or leaves the URLs out costs one or two requests), then several at once: the
            // scheduler waits for them, and a page of jobs can span many folders.
            let at_once = if self.urls > 0 { AT_ONCE } else { 1 };
            let batch: Vec<_> = folders
                .drain(..at_once.min(folders.len()))
                .map(|(key, members)| {
                    let wanted: HashMap<ItemId, usize> = members
                        .iter()
                        .map(|&at| (jobs[at].item_id.clone(), at))
                        .collect();
                    (key, wanted)
                })
                .collect();
            let listings = futures_util::future::join_all(batch.into_iter().map(
                |((drive, folder), wanted)| async move {
                    let listed_at = super::transfer::unix_ms();
                    let found = list_urls(graph, &drive, &folder, &wanted).await;
                    (drive, folder, wanted, listed_at, found)
                },
            ))
            .await;
            for (drive, folder, wanted, listed_at, found) in listings {
                let found = match found {
                    Ok(found) => found,
                    Err(err) => {
                        self.failed(&folder, &err);
                        continue;
                    }
                };
                self.listed_at
                    .insert((drive.clone(), folder.clone()), listed_at);
                self.folders += 1;
                if !found.any_url {
                    // This service leaves download URLs out of listings: every other folder would be the same.
                    self.off = true;
                    continue;
                }
                let mut fresh = Vec::new();
                for relisted in found.urls {
                    let Some(&at) = wanted.get(&relisted.item_id) else {
                        continue;
                    };
                    if jobs[at].url_version() == Some(relisted.version.as_str()) {
                        jobs[at].listed_url = Some(ListedUrl {
                            url: relisted.url.clone(),
                            fetched_at_ms: listed_at,
                        });
                        fresh.push(relisted);
                    }
                }
                self.urls += manifest
                    .store_relisted_urls(drive, fresh, listed_at)
                    .await?;
            }
        }
        Ok(())
    }

    /// The folders worth listing again for `jobs`, each with the jobs (their places in `jobs`) it holds whose
    /// listing URL is stale or missing: at least [`MIN_FILES`] of them, and not listed again while URLs
    /// it gave then would still be fresh.
    fn stale_folders(
        &self,
        lifetime: &std::sync::Mutex<ListedUrlLifetime>,
        jobs: &[DownloadJob],
    ) -> Vec<((DriveId, ItemId), Vec<usize>)> {
        let now_ms = super::transfer::unix_ms();
        let (usable, window_ms) = {
            let lifetime = lifetime
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let window_ms = i64::try_from(lifetime.window().as_millis()).unwrap_or(i64::MAX);
            let usable: Vec<bool> = jobs
                .iter()
                .map(|j| {
                    j.listed_url
                        .as_ref()
                        .is_some_and(|l| lifetime.usable(l.fetched_at_ms, now_ms))
                })
                .collect();
            (usable, window_ms)
        };
        let mut folders: HashMap<(DriveId, ItemId), Vec<usize>> = HashMap::new();
        for (at, job) in jobs.iter().enumerate() {
            if usable[at] || job.malware || job.url_version().is_none() {
                continue;
            }
            if let Some(parent) = &job.parent_id {
                folders
                    .entry((job.drive_id.clone(), parent.clone()))
                    .or_default()
                    .push(at);
            }
        }
        // A folder listed again within the URLs' window whose files still have none was listed without
        // them (moved, or changed since): another listing would not help.
        folders.retain(|key, members| {
            members.len() >= MIN_FILES
                && self
                    .listed_at
                    .get(key)
                    .is_none_or(|at| now_ms.saturating_sub(*at) >= window_ms)
        });
        folders.into_iter().collect()
    }

    /// A listing of `folder` failed: count it (see the module's doc for when that turns the refresher off).
    fn failed(&mut self, folder: &ItemId, err: &crate::graph::GraphError) {
        self.failures += 1;
        self.refusals += u32::from(!err.is_transient());
        self.off |= self.failures >= MAX_FAILURES || self.refusals >= MAX_REFUSALS;
        tracing::debug!(folder = %folder, error = %err, "folder not listed again for fresh download URLs");
    }
}

/// What a new listing of a folder brought.
struct Relisting {
    /// URLs of the files asked for, with the version each serves.
    urls: Vec<RelistedUrl>,
    /// Whether the listing carried any download URL at all (for any file).
    any_url: bool,
}

/// The download URLs a listing of `folder` gives its plain files (not flagged as malware) that `wanted`
/// names: pages until all of them were found, the listing ended, or [`MAX_PAGES`] were read.
async fn list_urls(
    graph: &GraphClient,
    drive: &DriveId,
    folder: &ItemId,
    wanted: &HashMap<ItemId, usize>,
) -> Result<Relisting, crate::graph::GraphError> {
    let mut found = Relisting {
        urls: Vec::new(),
        any_url: false,
    };
    let mut link: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = graph.children(drive, folder, link.as_deref()).await?;
        for item in page.value {
            let (Some(file), Some(url), None, None) = (
                &item.file,
                &item.download_url,
                &item.malware,
                &item.remote_item,
            ) else {
                continue;
            };
            found.any_url = true;
            let item_id = item.id.canonical();
            if !wanted.contains_key(&item_id) {
                continue;
            }
            let quick_xor = file
                .hashes
                .as_ref()
                .and_then(|h| h.quick_xor_hash.as_deref());
            let version = url_version(item.e_tag.as_deref(), item.c_tag.as_deref(), quick_xor);
            if let Some(version) = version {
                found.urls.push(RelistedUrl {
                    item_id,
                    version: version.to_owned(),
                    url: StoredUrl::new(url.expose().to_owned()),
                });
            }
        }
        link = page.next_link;
        if link.is_none() || found.urls.len() >= wanted.len() {
            break;
        }
    }
    Ok(found)
}
