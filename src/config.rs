//! The configuration file: what the user wrote in TOML, checked strictly (unknown keys and bad values are
//! errors naming the key and the line), with named profiles. Settings are resolved elsewhere with the
//! precedence flag > environment > file > default; this module only reads and validates the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::filter::{ByteSize, DateBound, MediaSelection};
use crate::localpath::Layout;

/// How a full listing of a scope is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrawlMethod {
    /// Walk `/children`, `list_concurrency` folders at once (one request per folder and page).
    Children,
    /// Page through `/delta` from the scope root (one request per 1,000 items, one after the other), where the
    /// service allows it (personal drives; the drive root elsewhere); otherwise walk `/children`. The default:
    /// at 20 ms of latency it lists 100,000 items in 13.9 s with 103 requests, where the walk takes 18.7 s and
    /// 5,004 (BENCHMARKS.md), and every request counts against the service's throttling budget.
    #[default]
    Delta,
}

impl std::str::FromStr for CrawlMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "children" => Ok(CrawlMethod::Children),
            "delta" => Ok(CrawlMethod::Delta),
            other => Err(format!(
                "unknown crawl method {other:?}: expected children or delta"
            )),
        }
    }
}

/// How files with the same content (quickXorHash and size) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupeMode {
    /// Every file is a copy of its own (the default).
    #[default]
    Off,
    /// A file whose content is already on disk as another done file is given that file's bytes as a hard
    /// link instead of being downloaded, where the destination allows hard links.
    Hardlink,
}

impl std::str::FromStr for DedupeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(DedupeMode::Off),
            "hardlink" => Ok(DedupeMode::Hardlink),
            other => Err(format!(
                "unknown dedupe mode {other:?}: expected off or hardlink"
            )),
        }
    }
}

/// Declares the config keys once: [`ConfigValues`] (a file's top level or one profile) and the file's
/// top-level table, which has the same keys plus `profiles`. Spelled out rather than `#[serde(flatten)]` so
/// that `deny_unknown_fields` can point at the offending line.
macro_rules! config_keys {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        /// Every key a config file (or a `[profiles.NAME]` table) may set. All optional: a missing key falls
        /// back to the environment or the built-in default.
        #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigValues {
            $($(#[$doc])* pub $field: Option<$ty>,)*
        }

        /// A parsed config file: top-level values plus named profiles.
        #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigFile {
            $($(#[$doc])* pub $field: Option<$ty>,)*
            /// Named profiles (`--profile NAME`), each overriding the top-level values.
            #[serde(default)]
            pub profiles: std::collections::BTreeMap<String, ConfigValues>,
        }

        impl ConfigFile {
            /// The top-level values.
            pub fn values(&self) -> ConfigValues {
                ConfigValues { $($field: self.$field.clone(),)* }
            }
        }

        impl ConfigValues {
            /// Every key's name, as written in a config file.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field),)*];

            /// `self`'s keys where set, `base`'s otherwise.
            #[must_use]
            pub fn over(&self, base: &ConfigValues) -> ConfigValues {
                ConfigValues { $($field: self.$field.clone().or_else(|| base.$field.clone()),)* }
            }
        }
    };
}

config_keys! {
    /// Backup root folder.
    dest: PathBuf,
    /// Manifest file (default: DEST/.odbackup/manifest.sqlite).
    manifest: PathBuf,
    /// Microsoft Graph base URL.
    graph_url: String,
    /// Microsoft identity platform base URL.
    auth_url: String,
    /// Sign-in tenant: common, consumers, organizations or a tenant ID.
    tenant: String,
    /// The application (client) ID of your app registration.
    client_id: String,
    /// Scopes requested at sign-in.
    scopes: Vec<String>,
    /// Which stored sign-in to use.
    account: String,
    /// Back up this drive by ID.
    drive_id: String,
    /// Back up this user's drive (business), by UPN.
    user: String,
    /// Back up a library of this `SharePoint` site (its URL, `host:/sites/name` or `host,guid,guid`).
    site: String,
    /// With `site`: the library, by name (default: the site's default library).
    library: String,
    /// Start at this folder path.
    root: String,
    /// Start at this special folder.
    special: String,
    /// Transfers at once.
    concurrency: usize,
    /// Folder listings at once.
    list_concurrency: usize,
    /// How a full listing is made: `children` or `delta`.
    crawl_method: CrawlMethod,
    /// Keep only items whose remote path (or a folder above it) matches one of these globs.
    include: Vec<String>,
    /// Leave out items whose remote path (or a folder above it) matches one of these globs.
    exclude: Vec<String>,
    /// Keep only files with these extensions.
    ext: Vec<String>,
    /// Keep only photos, videos, or both (`all`).
    media: MediaSelection,
    /// Keep only files taken (photos, videos) or modified (others) on or after this date.
    since: DateBound,
    /// Keep only files taken or modified on or before this date.
    until: DateBound,
    /// Keep only files at least this large (bytes, or a string such as "500K").
    min_size: ByteSize,
    /// Keep only files at most this large.
    max_size: ByteSize,
    /// `mirror` (the drive's folders) or `date` (YYYY/MM/name).
    layout: Layout,
    /// Move files deleted on the drive into `DEST/.odbackup/trash/<date>/` instead of keeping them in place.
    mirror_deletes: bool,
    /// Keep the previous version of a changed file in the trash instead of replacing it.
    keep_versions: bool,
    /// Back up `OneNote` notebooks as folders of their section files (false: leave them out, on record).
    onenote: bool,
    /// Back up folders and files others shared and the user added to My files (false: leave them out, on record).
    shared: bool,
    /// How files with the same content are stored: `off` (copies) or `hardlink` (once, as hard links).
    dedupe: DedupeMode,
    /// Seconds without a byte after which a transfer is aborted and resumed.
    stall_timeout: u64,
    /// Fetch files the service flagged as malware (where the tenant allows it).
    allow_malware: bool,
    /// Files larger than this are fetched in pieces of this size, several at once.
    chunk_size: ByteSize,
    /// Pieces of one large file fetched at once.
    streams_per_file: usize,
    /// Also write the log to this file.
    log_file: PathBuf,
    /// No progress display.
    quiet: bool,
    /// Log level on stderr: 0 warnings, 1 info, 2 debug, 3 trace.
    verbose: u8,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("could not read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a bad value.
    #[error("config file {path}, line {line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// `--profile NAME` names a profile the file does not have.
    #[error("config file {path} has no profile {name:?} (profiles: {known})")]
    NoProfile {
        /// The file.
        path: PathBuf,
        /// The requested profile.
        name: String,
        /// The profiles it has.
        known: String,
    },
}

impl ConfigFile {
    /// Parse a config file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err| {
            let line = err.span().map_or(1, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            });
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                message: err.message().to_owned(),
            }
        })
    }

    /// Read a config file. A missing file is an empty config unless `required` (the user named it).
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Self::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The values in force: a profile's keys over the top-level ones.
    pub fn effective(
        &self,
        profile: Option<&str>,
        path: &Path,
    ) -> Result<ConfigValues, ConfigError> {
        let Some(name) = profile else {
            return Ok(self.values());
        };
        match self.profiles.get(name) {
            Some(p) => Ok(p.over(&self.values())),
            None => Err(ConfigError::NoProfile {
                path: path.to_path_buf(),
                name: name.to_owned(),
                known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// The default config file: `<user config dir>/odbackup/config.toml`, or `$ODBACKUP_CONFIG_DIR/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join("config.toml"))
}

/// odbackup's folder in the user's config directory (`ODBACKUP_CONFIG_DIR` overrides it).
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ODBACKUP_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "odbackup").map(|d| d.config_dir().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_knows_every_key() {
        let text = include_str!("../config.example.toml");
        let file = ConfigFile::parse(text, Path::new("config.example.toml")).unwrap();
        assert!(file.profiles.contains_key("family-photos"));
        for key in ConfigValues::KEYS {
            assert!(
                text.contains(&format!("# {key} = ")) || text.contains(&format!("\n{key} = ")),
                "config.example.toml does not document `{key}`"
            );
        }
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let text = "dest = \"/b\"\n\nconcurrenyc = 4\n";
        let err = ConfigFile::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("concurrenyc"),
            "{err}"
        );
    }

    #[test]
    fn filter_values_are_checked_when_the_file_is_read() {
        let text = "ext = [\"jpg\"]\nmin_size = \"1.5M\"\nmax_size = 4096\nsince = \"2021-01-01\"\nmedia = \"photos\"\nlayout = \"date\"\n";
        let file = ConfigFile::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(file.min_size, Some(ByteSize(1_572_864)));
        assert_eq!(file.max_size, Some(ByteSize(4096)));
        assert_eq!(file.layout, Some(Layout::Date));
        for (bad, line, key) in [
            (
                "dest = \"/b\"\nmedia = \"pictures\"\n",
                "line 2",
                "pictures",
            ),
            ("since = \"yesterday\"\n", "line 1", "yesterday"),
            ("\n\nmin_size = \"12 parsecs\"\n", "line 3", "parsecs"),
            ("layout = \"flat\"\n", "line 1", "flat"),
        ] {
            let err = ConfigFile::parse(bad, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(line) && err.contains(key), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_line() {
        let err = ConfigFile::parse("concurrency = \"many\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn profiles_override_top_level_values() {
        let text = "concurrency = 4\ndest = \"/all\"\n[profiles.photos]\ndest = \"/photos\"\nspecial = \"cameraroll\"\n";
        let file = ConfigFile::parse(text, Path::new("c.toml")).unwrap();
        let v = file.effective(Some("photos"), Path::new("c.toml")).unwrap();
        assert_eq!(v.dest.as_deref(), Some(Path::new("/photos")));
        assert_eq!(v.concurrency, Some(4));
        assert_eq!(v.special.as_deref(), Some("cameraroll"));
        assert!(file.effective(Some("nope"), Path::new("c.toml")).is_err());
    }
}
