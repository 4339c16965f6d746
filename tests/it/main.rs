//! odbackup's integration tests: the real binary (and the library) against the Graph simulator.

mod support;

mod auth;
mod cli;
mod crawl;
mod download;
mod faults;
mod paths;
mod resume;
