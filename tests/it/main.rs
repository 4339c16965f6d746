//! odbackup's integration tests: the real binary (and the library) against the Graph simulator.

mod support;

mod auth;
mod browse;
mod cli;
mod content;
mod crawl;
mod dest_safety;
mod download;
mod edges;
mod faults;
mod filters;
mod incremental;
mod paths;
mod progress;
mod resume;
mod sites;
mod speed;
mod tenant;
