//! odbackup: back up a Microsoft OneDrive to local disk.
pub mod auth;
pub mod graph;
pub mod hash;
pub mod ids;
pub mod manifest;
