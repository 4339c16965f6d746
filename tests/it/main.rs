//! odbackup's integration tests: the real binary (and the library) against the Graph simulator.

#[macro_use]
mod support;

mod auth;
mod batched;
mod browse;
mod cli;
mod content;
mod crawl;
mod dedupe;
mod dest_safety;
mod download;
mod drift;
mod edges;
mod faults;
mod filters;
mod hostile;
mod incremental;
mod notices;
mod onenote;
mod pace;
mod paths;
mod progress;
mod restore;
mod resume;
mod settings;
mod shared;
mod sites;
mod speed;
mod tenant;
mod verify;
