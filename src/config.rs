//! The configuration file: what the user wrote in TOML, checked strictly (unknown keys and bad values are
//! errors naming the key and the line), with named profiles. The keys are declared once with the flags of
//! the same names (the command line's settings schema, which implements [`ConfigSchema`]) and resolved there
//! with the precedence flag > environment > file > default; this module only reads and validates the file,
//! and holds the value types the settings share with the library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

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

/// A config file's schema: the keys it may set at the top level and in each `[profiles.NAME]` table. The
/// command line declares it (`cli/settings.rs`, beside the flags of the same names); this module reads any
/// schema strictly and picks a profile, knowing nothing of flags.
pub trait ConfigSchema: DeserializeOwned + Default {
    /// The values of one table (the top level or one profile), every key optional.
    type Values;
    /// The top-level values.
    fn top_level(&self) -> Self::Values;
    /// The named profiles.
    fn profiles(&self) -> &BTreeMap<String, Self::Values>;
    /// `profile`'s keys where set, `base`'s otherwise.
    fn over(profile: &Self::Values, base: &Self::Values) -> Self::Values;
}

/// Parse a config file's text; `path` only names it in errors.
pub fn parse<F: ConfigSchema>(text: &str, path: &Path) -> Result<F, ConfigError> {
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
pub fn load<F: ConfigSchema>(path: &Path, required: bool) -> Result<F, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => Ok(F::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The values in force: a profile's keys over the top-level ones.
pub fn effective<F: ConfigSchema>(
    file: &F,
    profile: Option<&str>,
    path: &Path,
) -> Result<F::Values, ConfigError> {
    let Some(name) = profile else {
        return Ok(file.top_level());
    };
    match file.profiles().get(name) {
        Some(p) => Ok(F::over(p, &file.top_level())),
        None => Err(ConfigError::NoProfile {
            path: path.to_path_buf(),
            name: name.to_owned(),
            known: file
                .profiles()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        }),
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
