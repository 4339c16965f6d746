//! odbackup's integration tests: the real binary (and the library) against the Graph simulator.

mod support;

mod auth;
mod browse;
mod cli;
mod crawl;
mod dest_safety;
mod download;
mod faults;
mod filters;
mod incremental;
mod paths;
mod progress;
mod restore;
mod resume;
mod speed;
