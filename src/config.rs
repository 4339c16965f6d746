//! The configuration file: what the user wrote in TOML, checked strictly (unknown keys and bad values are
//! errors naming the key and the line), with named profiles. Settings are resolved elsewhere with the
//! precedence flag > environment > file > default; this module only reads and validates the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every key a config file (or a `[profiles.NAME]` table) may set. All optional: a missing key falls back to
/// the environment or the built-in default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigValues {
    /// Backup root folder.
    pub dest: Option<PathBuf>,
    /// Manifest file (default: DEST/.odbackup/manifest.sqlite).
    pub manifest: Option<PathBuf>,
    /// Microsoft Graph base URL.
    pub graph_url: Option<String>,
    /// Microsoft identity platform base URL.
    pub auth_url: Option<String>,
    /// Sign-in tenant: common, consumers, organizations or a tenant ID.
    pub tenant: Option<String>,
    /// The application (client) ID of your app registration.
    pub client_id: Option<String>,
    /// Scopes requested at sign-in.
    pub scopes: Option<Vec<String>>,
    /// Which stored sign-in to use.
    pub account: Option<String>,
    /// Back up this drive by ID.
    pub drive_id: Option<String>,
    /// Back up this user's drive (business), by UPN.
    pub user: Option<String>,
    /// Back up this SharePoint site's default library (`host:/sites/name`).
    pub site: Option<String>,
    /// Start at this folder path.
    pub root: Option<String>,
    /// Start at this special folder.
    pub special: Option<String>,
    /// Transfers at once.
    pub concurrency: Option<usize>,
    /// Folder listings at once.
    pub list_concurrency: Option<usize>,
}

/// A parsed config file: top-level values plus named profiles.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Values that apply to every run.
    #[serde(flatten)]
    pub values: ConfigValues,
    /// Named profiles (`--profile NAME`), each overriding the top-level values.
    #[serde(default)]
    pub profiles: std::collections::BTreeMap<String, ConfigValues>,
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
            let line = err
                .span()
                .map_or(1, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
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
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The values in force: a profile's keys over the top-level ones.
    pub fn effective(&self, profile: Option<&str>, path: &Path) -> Result<ConfigValues, ConfigError> {
        let Some(name) = profile else {
            return Ok(self.values.clone());
        };
        let Some(p) = self.profiles.get(name) else {
            return Err(ConfigError::NoProfile {
                path: path.to_path_buf(),
                name: name.to_owned(),
                known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let base = &self.values;
        macro_rules! pick {
            ($($field:ident),*) => { ConfigValues { $($field: p.$field.clone().or_else(|| base.$field.clone()),)* } };
        }
        Ok(pick!(
            dest,
            manifest,
            graph_url,
            auth_url,
            tenant,
            client_id,
            scopes,
            account,
            drive_id,
            user,
            site,
            root,
            special,
            concurrency,
            list_concurrency
        ))
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
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let text = "dest = \"/b\"\n\nconcurrenyc = 4\n";
        let err = ConfigFile::parse(text, Path::new("c.toml")).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("concurrenyc"), "{err}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let err = ConfigFile::parse("concurrency = \"many\"\n", Path::new("c.toml")).unwrap_err().to_string();
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
