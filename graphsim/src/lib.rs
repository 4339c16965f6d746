//! graphsim: a stateful Microsoft Graph (OneDrive) simulator on loopback, for odbackup's tests
//! and benchmarks. It never depends on odbackup: it speaks HTTP only, so a test can't pass by
//! sharing code with what it tests.
//!
//! ```text
//!  test / bench ──► Simulator (handle: truth, knobs, mutations, counters)
//!                      │ shared state (RwLock<World>, atomics)
//!        ┌─────────────┼──────────────────────┬─────────────────────────┐
//!   Graph host /v1.0   download host            identity host
//!   (bearer, items,    (pre-authenticated       (/{tenant}/oauth2/v2.0/
//!    children, delta,   URLs, Range, resets,     devicecode, token,
//!    302 /content,      corruption)              authorize)
//!    uploads, sessions)  upload host (session fragments, status, cancel; no bearer)
//! ```
//!
//! Behaviour follows the Graph documentation (<https://learn.microsoft.com/en-us/graph/api/resources/onedrive>)
//! and the issue threads cited on each knob: 302 to a different origin, opaque
//! `$skiptoken` paging, delta with deltaLinks and flavour-specific quirks, throttling with
//! Retry-After and violation tracking, expiring URLs and tokens. File content is generated from
//! a seed (never stored), so a 2 GB file costs nothing until it is read.
//!
//! ```no_run
//! use graphsim::{Failure, Simulator, Tree};
//! let sim = Simulator::start(Tree::personal().file("Photos/a.jpg", 3_000_000));
//! sim.fail_next(2, Failure::throttled(1));
//! // run odbackup with --graph-url sim.graph_url() and ODBACKUP_ACCESS_TOKEN=sim.token() …
//! assert_eq!(sim.violations().len(), 0);
//! let expected = sim.quick_xor("Photos/a.jpg");
//! # let _ = expected;
//! ```

#![warn(missing_docs)]

mod content;
mod download;
mod graph;
mod identity;
mod quickxor;
#[cfg(test)]
mod quickxor_vectors;
mod server;
mod sim;
mod state;
#[cfg(test)]
mod tests;
mod time;
mod tree;
mod upload;

pub use identity::{AuthorizeOutcome, DeviceOutcome, DeviceScript};
pub use quickxor::QuickXorHash;
pub use sim::Simulator;
pub use state::{
    ContentAnswer, DeltaOrder, Failure, IdCase, IdDrift, ListingUrls, PagingFault, RequestKind,
    SimConfig, Violation,
};
pub use tree::{FileOpts, Flavour, GenSpec, Hashes, Tree};

/// The bearer token Graph accepts by default (see `Simulator::set_default_token_accepted`).
pub const DEFAULT_TOKEN: &str = "graphsim-default-token";
