//! Token files: one JSON file per signed-in account under `<config dir>/accounts/`, holding the refresh
//! token, the current access token and what is needed to refresh it (client ID, tenant, scopes, sign-in
//! URL). Files are written atomically with mode 0600 (the directory 0700), so a crash leaves the old file
//! or the new one, and no other user can read either, not even for an instant.
//!
//! This module is plain file I/O (blocking; callers on the async runtime wrap it in `spawn_blocking`). It
//! knows nothing of HTTP, of where the config directory comes from (the command line resolves
//! `ODBACKUP_CONFIG_DIR` and passes it in) and never prints.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::AccessToken;
use super::signin::{AuthSettings, RefreshToken, TokenResponse};

/// The account name used when the user names none.
pub(crate) const DEFAULT_ACCOUNT: &str = "default";
/// The folder under the config directory that holds the token files.
pub(crate) const ACCOUNTS_DIR: &str = "accounts";
/// Longest account name accepted (it becomes a file name).
const MAX_ACCOUNT_LEN: usize = 64;
/// The token file format; bumped if the layout changes incompatibly.
const FORMAT_VERSION: u32 = 1;
/// The format of an app-only sign-in's file: an odbackup that knows only version 1 would read it as a delegated
/// sign-in without a refresh token, so it is marked newer and such a version says so.
const APP_FORMAT_VERSION: u32 = 2;

/// Why a token file could not be read, written or removed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The account name can't be a file name.
    #[error(
        "invalid account name {name:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@', not starting with '.'"
    )]
    InvalidAccount {
        /// The name as given.
        name: String,
    },
    /// The user's config directory could not be determined.
    #[error("could not find the user's config directory; set ODBACKUP_CONFIG_DIR")]
    NoConfigDir,
    /// Reading, writing or removing the file failed.
    #[error("token file {}: could not {action}", path.display())]
    Io {
        /// What we were doing (`read`, `write`, `remove`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not a token file this version understands.
    #[error("token file {} is damaged or from a newer odbackup ({detail}); run `odbackup logout` and `odbackup login`", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's content).
        detail: String,
    },
}

/// What is stored for one account: enough to refresh without asking the user again. `Debug` hides the
/// tokens; there is no `Serialize`, the file format is private to this module.
#[derive(Debug, Clone)]
pub struct StoredTokens {
    /// The long-lived token; `None` when `offline_access` was not granted.
    pub(crate) refresh_token: Option<RefreshToken>,
    /// The last access token, reused until it nears expiry (short commands don't refresh each time).
    pub access_token: Option<AccessToken>,
    /// When the access token expires, in seconds since the Unix epoch.
    pub(crate) expires_at: i64,
    /// When the access token was issued, in seconds since the Unix epoch (its lifetime tells the
    /// refresher how early to renew it).
    pub(crate) issued_at: i64,
    /// The application (client) ID the tokens were issued to; a refresh must use the same one.
    pub client_id: String,
    /// The tenant signed in to.
    pub tenant: String,
    /// The scopes requested at sign-in.
    pub scopes: Vec<String>,
    /// The sign-in host (national clouds differ).
    pub login_base_url: String,
    /// A label for the account, e.g. the user principal name from `/me`, filled in by the caller.
    pub username: Option<String>,
    /// For an app-only sign-in (client credentials): where the app's credential lives. Such a sign-in has no
    /// refresh token; a new access token is requested with the credential instead.
    pub app: Option<super::app::AppCredentialRef>,
}

impl StoredTokens {
    /// What to store after a sign-in with `settings` that returned `tokens` at `now`.
    pub(crate) fn from_response(
        settings: &AuthSettings,
        tokens: TokenResponse,
        now: SystemTime,
    ) -> Self {
        let mut stored = Self {
            refresh_token: None,
            access_token: None,
            expires_at: 0,
            issued_at: 0,
            client_id: settings.client_id.clone(),
            tenant: settings.tenant.clone(),
            scopes: settings.scopes.clone(),
            login_base_url: settings.login_base_url.clone(),
            username: None,
            app: None,
        };
        stored.apply(tokens, now);
        stored
    }

    /// Take in a refresh's answer: the new access token, and the new refresh token when one came back
    /// (the service rotates it on every refresh; the old one is discarded).
    pub(crate) fn apply(&mut self, tokens: TokenResponse, now: SystemTime) {
        self.access_token = Some(tokens.access_token);
        if let Some(refresh) = tokens.refresh_token {
            self.refresh_token = Some(refresh);
        }
        self.issued_at = unix_secs(now);
        self.expires_at = unix_secs(now + tokens.expires_in);
    }

    /// The settings to refresh with: the ones the tokens were issued under.
    pub(crate) fn settings(&self) -> AuthSettings {
        AuthSettings {
            login_base_url: self.login_base_url.clone(),
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
        }
    }

    /// When the access token expires.
    pub(crate) fn expires_at_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at.max(0) as u64)
    }

    /// How long the access token was valid for when issued, if known.
    pub(crate) fn lifetime(&self) -> Option<Duration> {
        (self.issued_at > 0 && self.expires_at >= self.issued_at)
            .then(|| Duration::from_secs((self.expires_at - self.issued_at) as u64))
    }
}

/// Seconds since the Unix epoch (0 for times before it).
fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The file's layout. Plain strings live only here, between the secret types and the disk.
#[derive(Serialize, Deserialize)]
struct TokenFile {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    expires_at: i64,
    #[serde(default)]
    issued_at: i64,
    client_id: String,
    tenant: String,
    scopes: Vec<String>,
    login_base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app: Option<super::app::AppCredentialRef>,
}

/// The token files of one config directory. Cheap to clone (a path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The store under `config_dir` (its `accounts/` folder), or under the user's config directory
    /// (`ProjectDirs` for `odbackup`, e.g. `~/.config/odbackup`) when `config_dir` is `None`. The command
    /// line passes `ODBACKUP_CONFIG_DIR` here when it is set; tests pass a temporary folder.
    pub fn open(config_dir: Option<&Path>) -> Result<Self, StoreError> {
        let base = match config_dir {
            Some(dir) => dir.to_path_buf(),
            None => directories::ProjectDirs::from("", "", "odbackup")
                .ok_or(StoreError::NoConfigDir)?
                .config_dir()
                .to_path_buf(),
        };
        Ok(Self {
            dir: base.join(ACCOUNTS_DIR),
        })
    }

    /// The folder holding the token files.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The token file of `account`, `<dir>/<account>.json`.
    pub fn path(&self, account: &str) -> Result<PathBuf, StoreError> {
        check_account(account)?;
        Ok(self.dir.join(format!("{account}.json")))
    }

    /// The stored tokens of `account`, or `None` if it never signed in (or logged out).
    pub fn load(&self, account: &str) -> Result<Option<StoredTokens>, StoreError> {
        let path = self.path(account)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let file: TokenFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            // Line and column only: serde's message may quote a value, and values here are secrets.
            detail: format!("invalid JSON near line {} column {}", e.line(), e.column()),
        })?;
        if file.version > APP_FORMAT_VERSION
            || (file.version > FORMAT_VERSION && file.app.is_none())
        {
            return Err(StoreError::Corrupt {
                path,
                detail: format!("format version {}", file.version),
            });
        }
        Ok(Some(StoredTokens {
            refresh_token: file.refresh_token.map(RefreshToken::new),
            access_token: file.access_token.map(AccessToken::new),
            expires_at: file.expires_at,
            issued_at: file.issued_at,
            client_id: file.client_id,
            tenant: file.tenant,
            scopes: file.scopes,
            login_base_url: file.login_base_url,
            username: file.username,
            app: file.app,
        }))
    }

    /// Replace `account`'s token file atomically: write a temporary file (mode 0600) in the same folder,
    /// fsync it, rename it over the old one, fsync the folder.
    pub(crate) fn save(&self, account: &str, tokens: &StoredTokens) -> Result<(), StoreError> {
        let path = self.path(account)?;
        let file = TokenFile {
            version: if tokens.app.is_some() {
                APP_FORMAT_VERSION
            } else {
                FORMAT_VERSION
            },
            refresh_token: tokens.refresh_token.as_ref().map(|t| t.expose().to_owned()),
            access_token: tokens.access_token.as_ref().map(|t| t.expose().to_owned()),
            expires_at: tokens.expires_at,
            issued_at: tokens.issued_at,
            client_id: tokens.client_id.clone(),
            tenant: tokens.tenant.clone(),
            scopes: tokens.scopes.clone(),
            login_base_url: tokens.login_base_url.clone(),
            username: tokens.username.clone(),
            app: tokens.app.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("a token file always serializes");
        json.push(b'\n');
        self.create_dir()?;
        write_atomically(&self.dir, &path, &json)
    }

    /// Delete `account`'s token file; `false` if there was none.
    pub fn remove(&self, account: &str) -> Result<bool, StoreError> {
        let path = self.path(account)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }

    /// The accounts with a token file, sorted.
    #[cfg(test)]
    pub(crate) fn accounts(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "list",
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let account = name.strip_suffix(".json")?;
                check_account(account).ok()?;
                Some(account.to_owned())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Create the accounts folder, readable by the owner only.
    fn create_dir(&self) -> Result<(), StoreError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.dir).map_err(|source| StoreError::Io {
            action: "create the folder of",
            path: self.dir.clone(),
            source,
        })
    }
}

/// Account names become file names, so they may not contain separators or start with a dot.
fn check_account(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ACCOUNT_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidAccount {
            name: name.to_owned(),
        })
    }
}

/// Write `bytes` to `path` so that readers see the old file or the new one, never a mix, and nobody else
/// can read it at any point: the temporary file is created 0600 (not chmod-ed afterwards) in the same
/// folder, so the rename stays on one file system.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        rand::rng().random::<u64>()
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(bytes).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("flush", &tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io_err("replace", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable. Not possible on every platform (Windows can't open folders).
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("flush the folder of", path))?;
    Ok(())
}

/// An error builder for `map_err`: `action` failed on `at`.
fn io_err(action: &'static str, at: &Path) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = at.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(refresh: &str, access: &str) -> StoredTokens {
        let settings = AuthSettings::new("client-1");
        StoredTokens::from_response(
            &settings,
            TokenResponse {
                access_token: AccessToken::new(access.to_owned()),
                refresh_token: Some(RefreshToken::new(refresh.to_owned())),
                expires_in: Duration::from_secs(3600),
                scope: String::new(),
            },
            UNIX_EPOCH + Duration::from_secs(1_000_000),
        )
    }

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(Some(dir.path())).unwrap();
        (dir, store)
    }

    #[test]
    fn saved_tokens_load_back() {
        let (_dir, store) = store();
        assert!(store.load("default").unwrap().is_none());
        let mut saved = tokens("RT-1", "AT-1");
        saved.username = Some("alice@contoso.com".into());
        store.save("default", &saved).unwrap();
        let loaded = store.load("default").unwrap().unwrap();
        assert_eq!(loaded.refresh_token.as_ref().unwrap().expose(), "RT-1");
        assert_eq!(loaded.access_token.as_ref().unwrap().expose(), "AT-1");
        assert_eq!(loaded.expires_at, 1_003_600);
        assert_eq!(loaded.lifetime(), Some(Duration::from_secs(3600)));
        assert_eq!(loaded.client_id, "client-1");
        assert_eq!(loaded.tenant, "common");
        assert_eq!(
            loaded.scopes,
            ["Files.Read.All", "offline_access", "User.Read"]
        );
        assert_eq!(loaded.login_base_url, "https://login.microsoftonline.com");
        assert_eq!(loaded.username.as_deref(), Some("alice@contoso.com"));
        assert_eq!(loaded.settings(), AuthSettings::new("client-1"));
        assert_eq!(store.accounts().unwrap(), ["default"]);
        assert_eq!(
            store.path("default").unwrap(),
            store.dir().join("default.json")
        );
    }

    #[test]
    fn debug_output_hides_the_tokens() {
        let debug = format!("{:?}", tokens("RT-SECRET", "AT-SECRET"));
        assert!(
            !debug.contains("RT-SECRET") && !debug.contains("AT-SECRET"),
            "{debug}"
        );
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let mut stored = tokens("RT-1", "AT-1");
        stored.apply(
            TokenResponse {
                access_token: AccessToken::new("AT-2".into()),
                refresh_token: None,
                expires_in: Duration::from_secs(60),
                scope: String::new(),
            },
            UNIX_EPOCH + Duration::from_secs(2_000_000),
        );
        assert_eq!(stored.refresh_token.as_ref().unwrap().expose(), "RT-1");
        assert_eq!(stored.access_token.as_ref().unwrap().expose(), "AT-2");
        assert_eq!(stored.expires_at, 2_000_060);
    }

    #[cfg(unix)]
    #[test]
    fn token_files_and_their_folder_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_dir, store) = store();
        store.save("default", &tokens("RT-1", "AT-1")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.path("default").unwrap()), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
        // Rewriting keeps it private too (the new file replaces the old one).
        store.save("default", &tokens("RT-2", "AT-2")).unwrap();
        assert_eq!(mode(&store.path("default").unwrap()), 0o600);
    }

    #[test]
    fn saving_leaves_no_temporary_files() {
        let (_dir, store) = store();
        for i in 0..5 {
            store
                .save("work", &tokens(&format!("RT-{i}"), "AT"))
                .unwrap();
        }
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["work.json"]);
    }

    #[test]
    fn readers_never_see_a_half_written_file() {
        let (_dir, store) = store();
        store.save("default", &tokens("RT-0", "AT")).unwrap();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 1..=200 {
                    // Vary the length so a torn write would show up as bad JSON.
                    let refresh = format!("RT-{}", "x".repeat(i % 37));
                    store.save("default", &tokens(&refresh, "AT")).unwrap();
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() || reads == 0 {
            let loaded = store
                .load("default")
                .unwrap()
                .expect("the file never disappears");
            assert!(loaded.refresh_token.unwrap().expose().starts_with("RT-"));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                for entry in fs::read_dir(store.dir()).unwrap() {
                    // Temporary files may vanish between listing and stat.
                    if let Ok(meta) = entry.unwrap().metadata() {
                        assert_eq!(meta.permissions().mode() & 0o077, 0, "readable by others");
                    }
                }
            }
            reads += 1;
        }
        writer.join().unwrap();
    }

    #[test]
    fn remove_deletes_the_file_once() {
        let (_dir, store) = store();
        store.save("default", &tokens("RT", "AT")).unwrap();
        assert!(store.remove("default").unwrap());
        assert!(!store.remove("default").unwrap());
        assert!(store.load("default").unwrap().is_none());
        assert!(store.accounts().unwrap().is_empty());
    }

    #[test]
    fn account_names_cannot_escape_the_folder() {
        let (_dir, store) = store();
        for bad in ["", "../evil", "a/b", ".hidden", "a\\b", &"x".repeat(65)] {
            assert!(
                matches!(store.path(bad), Err(StoreError::InvalidAccount { .. })),
                "{bad}"
            );
        }
        for good in ["default", "alice@contoso.com", "work_2", "a-b.c"] {
            store.path(good).unwrap();
        }
    }

    #[test]
    fn a_damaged_file_is_reported_without_its_content() {
        let (_dir, store) = store();
        store.save("default", &tokens("RT", "AT")).unwrap();
        fs::write(
            store.path("default").unwrap(),
            br#"{"refresh_token": 42, "x": "RT-SECRET"#,
        )
        .unwrap();
        let err = store.load("default").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert!(
            !text.contains("RT-SECRET") && text.contains("odbackup login"),
            "{text}"
        );
    }
}
