//! odbackup: back up a Microsoft `OneDrive` (personal, business, `SharePoint`) to local disk.
//!
//! ```text
//!   cli ──► app (one run: settings, auth, lock, reporter)
//!             │
//!             ├─► sync (crawl) ─► sync::children ─► graph::children pages ─► sync::placement (filter + layout)
//!             │     │                 ─► manifest::commit_page (one tx per page; the folder frontier lives in
//!             │     │                    the manifest, so a crawl resumes)
//!             │     └─► sync::delta ─► graph::delta pages (a task of their own, one page ahead of the manifest)
//!             │                       ─► manifest::take_listing_page (one tx per page with its cursor, pages that
//!             │                          waited together: an item whose parent is placed is stored; one waiting
//!             │                          for it, or a deletion, is staged and applied, parents first, at the end)
//!             │         (below both: sync::convert, Graph item → manifest row; sync::scope, options + error)
//!             │     shortcuts: shared folders in My files, each listed as a scope of its own drive
//!             │
//!             └─► download ─► shared::Pages of manifest::downloadable_after (by row id) ─► download::transfer
//!                                │   download::stream: graph::open_content / graph::fetch (the listing's
//!                                │   downloadUrl while fresh, else /content: 302 or the bytes; Range), one loop
//!                                │   body ─► hash (quickXor / sha1) ─► .part ─► fsync ─► verify ─► rename ─► mtime
//!                                │   (a small body gathered in memory: written, synced, renamed in two trips)
//!                                │   large (download::ranged): spans ∥ on one URL ─► .part at offsets + span
//!                                │   journal, each span hashed at its offset, folded ─► fsync ─► verify ─► rename
//!                                ▼
//!                          manifest::record_done / record_failed, finished transfers ready together in one
//!                          transaction (guarded by the version fetched; a file renamed but not yet recorded is
//!                          verified and adopted by the next run)
//!
//!   restore: backup's manifest rows ∥ plain folder (no-follow) ─► names, filters, place ─► restore tables
//!            ─► graph::put_small + PATCH times ∥ createUploadSession ─► fragments (resumed where the service
//!               says) ─► verify size + quickXorHash ─► manifest::restore_done / restore_failed
//!   verify:  manifest rows ─► files read through no-follow folder handles (fsdest) ─► hash ─► problems / repair
//!   tenant:  directory users + sites ─► drives ─► one shard's share ─► one backup per drive (app::run each)
//!
//!   beside them: config (settings, no argument parsing), auth (token sources, sign-in, store), filter, localpath,
//!   hash, ids (canonical drive/item IDs), progress (Reporter, Event, Notice), shared (the manifest's typed async
//!   handle: one method per use, pages by key), adaptive (concurrency that follows the service), endpoint (URL
//!   checks), drives, browse (ls)
//! ```
//!
//! `graph` knows HTTP and JSON but nothing of `SQLite`; `manifest` knows `SQLite` but nothing of HTTP; `sync`
//! and `download` are plain async functions over those two seams and never print: progress goes through
//! [`progress::Reporter`], and only the binary's `cli` module draws or prints.
//!
//! # The public surface
//!
//! The library has four callers: the `odbackup` binary (`src/main.rs` and its `cli` module, a separate crate
//! that sees only what is public here), the integration tests, the examples and the doctests. What is public
//! is what they name, and the types those items hand back; everything else is `pub(crate)` or private, so the
//! compiler reports what becomes unused and nothing outside can come to depend on an internal.
//!
//! - Entry points: [`app`] (one run, sign-in, status, failures, verify, restore), [`tenant`] (a whole
//!   organisation), [`browse`] (`ls`), [`drives`] (the drives a sign-in reaches).
//! - What the command line builds and passes in: [`config`] (the file's schema and the effective settings),
//!   [`filter`], [`localpath::Layout`], [`sync::Scope`], [`download`]'s and [`restore`]'s policies,
//!   [`verify::VerifyOptions`], [`graph::GraphOptions`] and [`graph::DriveSelector`], [`endpoint`]'s URL
//!   checks, and [`auth`]: the sign-in flows ([`auth::signin`], [`auth::app`]) and the token store
//!   ([`auth::store`]).
//! - What comes back and is rendered: the summaries of [`app`], [`verify`], [`restore`] and [`tenant`], and
//!   [`manifest`]'s report rows ([`manifest::StatusReport`], [`manifest::FailureRow`]).
//! - Seams a caller implements or wires: [`progress::Reporter`] and its events, [`auth::TokenSource`];
//!   [`graph::GraphClient`], [`manifest::Manifest::open`] and [`shared::SharedManifest`] for driving
//!   [`download::download`] directly (a test does, with a policy the command line does not offer);
//!   [`hash`]'s hashers (the quickXorHash example measures them); [`ids`] for the IDs in public types.
//! - At the top: [`Error`], its [`ErrorKind`] (the binary's exit codes), [`FatalStop`] and [`DestError`]
//!   (the destination's errors; the destination handle itself is internal).
//!
//! Private modules: `adaptive` (the AIMD limit), `error` (re-exported above), `fsdest` (the destination
//! handle) and `shortcuts` (shared folders, reached only through a backup). Inside the public modules the
//! submodules are private too and re-export what is part of the surface; only `auth` keeps three submodules
//! public, one per sign-in concern the binary drives.
//!
//! ```no_run
//! # async fn demo() -> Result<(), odbackup::Error> {
//! use std::sync::Arc;
//! use odbackup::app::{self, Phases, RunSettings};
//! let dest = std::path::PathBuf::from("/backup/onedrive");
//! let settings = RunSettings {
//!     manifest: app::default_manifest_path(&dest),
//!     dest,
//!     graph: odbackup::graph::GraphOptions::default(),
//!     credentials: app::Credentials::default(), // the stored sign-in of `odbackup login`
//!     drive: odbackup::graph::DriveSelector::Me,
//!     scope: odbackup::sync::Scope::Special("cameraroll".into()),
//!     list_concurrency: 8,
//!     concurrency: 8,
//!     phases: Phases::Backup,
//!     // Photos and videos only, filed by month taken.
//!     filter: Arc::new(odbackup::filter::Filter::new(odbackup::filter::FilterSpec {
//!         media: Some(odbackup::filter::MediaSelection::All),
//!         ..Default::default()
//!     }).map_err(|e| odbackup::Error::Usage(e.to_string()))?),
//!     layout: Some(odbackup::localpath::Layout::Date),
//!     dry_run: false,
//!     full: false,
//!     full_listing_every: None,
//!     crawl_method: odbackup::config::CrawlMethod::Children,
//!     keep: odbackup::download::KeepPolicy::default(),
//!     policy: odbackup::download::DownloadPolicy::default(),
//!     dest_pin: None,
//! };
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let summary = app::run(&settings, Arc::new(odbackup::progress::NoopReporter), &cancel).await?;
//! assert!(summary.all_done());
//! # Ok(()) }
//! ```

mod adaptive;
pub mod app;
pub mod auth;
pub mod browse;
pub mod config;
pub mod download;
pub mod drives;
pub mod endpoint;
mod error;
pub mod filter;
mod fsdest;
pub mod graph;
pub mod hash;
pub mod ids;
pub mod localpath;
pub mod manifest;
pub mod progress;
pub mod restore;
pub mod shared;
mod shortcuts;
pub mod sync;
pub mod tenant;
pub mod verify;

pub use error::{Error, ErrorKind, FatalStop};
/// The destination's errors, which [`Error::Destination`] carries (the folder handle itself is internal).
pub use fsdest::DestError;
