//! One declaration per setting. Each group of settings below is written once, as the flags a command takes,
//! and [`setting_groups!`] makes of it: the clap `Args` struct (flag, environment variable, help), the
//! config file's key of the same name (with the same doc, in [`ConfigValues`]), a `--no-…` flag for every
//! switch, and the group's merge with the file (`or_file`): flag > environment > config file, and the
//! default where the value is used (each default is named in the flag's help).
//!
//! Why a macro rather than rustic's structs that derive both clap and serde: the config file is one flat
//! table with `deny_unknown_fields` and every bad value reported with its line, which serde's `flatten`
//! (needed to merge the groups into one file table) cannot do; and `clap` stays in `src/cli` (the file's
//! reading, profiles and errors stay clap-free in `odbackup::config`, generic over the schema made here).
//! Why not ripgrep's "config file as arguments": the file would then beat environment variables, and a
//! bad value would be reported as a flag rather than at its line.

// The doc comments on arguments are clap's `--help` text, read in a terminal, not rendered Markdown.
#![allow(clippy::doc_markdown)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use odbackup::config::{ConfigSchema, CrawlMethod, DedupeMode};
use odbackup::filter::{ByteSize, DateBound, MediaSelection};
use odbackup::localpath::Layout;
use serde::Deserialize;

/// Declares the groups of settings (see the module doc). A command flattens the groups it takes, so a setting
/// two commands share is still declared once, with one flag, environment variable, config key and help.
///
/// In a group, `value` fields are `Option<T>` (unset: the file's, then the default), `list` fields are
/// `Vec<T>` (empty: the file's), and `switch` fields `on / off` are a flag `--on[=BOOL]` (its environment
/// variable takes true/false, 1/0, yes/no, on/off) and a flag `--off`, resolved to `Option<bool>`: the
/// command line can switch off what the file switched on, and the other way round. `--off` wins over `--on`
/// and the environment wherever it stands (the two are not declared as overriding each other: clap would
/// then refuse `--off` when the environment sets `--on`'s value). `count` fields are a repeatable flag
/// (`-vv`) whose count and the config file's number are merged by taking the higher, so neither can lower
/// the other.
macro_rules! setting_groups {
    (
        $(
            $(#[doc = $gdoc:literal])*
            $(#[command($($gcmd:tt)*)])*
            group $group:ident {
                $( value {
                    $( $(#[doc = $vdoc:literal])* $(#[arg($($varg:tt)*)])* $v:ident: $vty:ty, )*
                } )?
                $( list {
                    $( $(#[doc = $ldoc:literal])* $(#[arg($($larg:tt)*)])* $l:ident: $lty:ty, )*
                } )?
                $( switch {
                    $(
                        $(#[doc = $sdoc:literal])* $(#[arg($($sarg:tt)*)])* $s:ident /
                        $(#[doc = $ndoc:literal])* $(#[arg($($narg:tt)*)])* $no:ident,
                    )*
                } )?
                $( count {
                    $( $(#[doc = $cdoc:literal])* $(#[arg($($carg:tt)*)])* $c:ident: $cty:ty, )*
                } )?
            }
        )*
    ) => {
        $(
            $(#[doc = $gdoc])*
            #[derive(Debug, Clone, Default, clap::Args)]
            $(#[command($($gcmd)*)])*
            pub struct $group {
                $($( $(#[doc = $vdoc])* $(#[arg($($varg)*)])* pub $v: Option<$vty>, )*)?
                $($( $(#[doc = $ldoc])* $(#[arg($($larg)*)])* pub $l: Vec<$lty>, )*)?
                $($(
                    $(#[doc = $sdoc])*
                    $(#[arg($($sarg)*)])*
                    #[arg(
                        value_name = "BOOL",
                        num_args = 0..=1,
                        require_equals = true,
                        default_missing_value = "true",
                        value_parser = clap::builder::BoolishValueParser::new(),
                    )]
                    pub $s: Option<bool>,
                    $(#[doc = $ndoc])*
                    $(#[arg($($narg)*)])*
                    #[arg(long)]
                    pub $no: bool,
                )*)?
                $($(
                    $(#[doc = $cdoc])*
                    $(#[arg($($carg)*)])*
                    #[arg(action = clap::ArgAction::Count)]
                    pub $c: $cty,
                )*)?
            }

            impl $group {
                /// These settings as given on the command line or in the environment, else as the config
                /// file has them.
                #[must_use]
                #[allow(dead_code)]
                pub fn or_file(&self, file: &ConfigValues) -> Self {
                    Self {
                        $($( $v: self.$v.clone().or_else(|| file.$v.clone()), )*)?
                        $($( $l: if self.$l.is_empty() {
                            file.$l.clone().unwrap_or_default()
                        } else {
                            self.$l.clone()
                        }, )*)?
                        $($(
                            $s: if self.$no { Some(false) } else { self.$s.or(file.$s) },
                            $no: false,
                        )*)?
                        $($( $c: self.$c.max(file.$c.unwrap_or_default()), )*)?
                    }
                }
            }
        )*

        /// Every key a config file (or a `[profiles.NAME]` table) may set. All optional: a missing key falls
        /// back to the environment or the built-in default.
        #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigValues {
            $(
                $($( $(#[doc = $vdoc])* pub $v: Option<$vty>, )*)?
                $($( $(#[doc = $ldoc])* pub $l: Option<Vec<$lty>>, )*)?
                $($( $(#[doc = $sdoc])* pub $s: Option<bool>, )*)?
                $($( $(#[doc = $cdoc])* pub $c: Option<$cty>, )*)?
            )*
        }

        /// A parsed config file: top-level values plus named profiles. The keys are spelled out again
        /// (by the macro) rather than `#[serde(flatten)]`ed so that `deny_unknown_fields` can point at the
        /// offending line.
        #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigFile {
            $(
                $($( $(#[doc = $vdoc])* pub $v: Option<$vty>, )*)?
                $($( $(#[doc = $ldoc])* pub $l: Option<Vec<$lty>>, )*)?
                $($( $(#[doc = $sdoc])* pub $s: Option<bool>, )*)?
                $($( $(#[doc = $cdoc])* pub $c: Option<$cty>, )*)?
            )*
            /// Named profiles (`--profile NAME`), each overriding the top-level values.
            #[serde(default)]
            pub profiles: BTreeMap<String, ConfigValues>,
        }

        #[cfg(test)]
        impl ConfigValues {
            /// Every key's name, as written in a config file (the test that `config.example.toml` documents
            /// each reads it).
            pub const KEYS: &'static [&'static str] = &[
                $(
                    $($(stringify!($v),)*)? $($(stringify!($l),)*)? $($(stringify!($s),)*)?
                    $($(stringify!($c),)*)?
                )*
            ];

            /// The keys that are switches, each with a `--no-…` flag.
            pub const SWITCHES: &'static [&'static str] = &[$( $($(stringify!($s),)*)? )*];
        }

        impl ConfigSchema for ConfigFile {
            type Values = ConfigValues;

            fn top_level(&self) -> ConfigValues {
                ConfigValues {
                    $(
                        $($( $v: self.$v.clone(), )*)?
                        $($( $l: self.$l.clone(), )*)?
                        $($( $s: self.$s, )*)?
                        $($( $c: self.$c, )*)?
                    )*
                }
            }

            fn profiles(&self) -> &BTreeMap<String, ConfigValues> {
                &self.profiles
            }

            fn over(profile: &ConfigValues, base: &ConfigValues) -> ConfigValues {
                ConfigValues {
                    $(
                        $($( $v: profile.$v.clone().or_else(|| base.$v.clone()), )*)?
                        $($( $l: profile.$l.clone().or_else(|| base.$l.clone()), )*)?
                        $($( $s: profile.$s.or(base.$s), )*)?
                        $($( $c: profile.$c.or(base.$c), )*)?
                    )*
                }
            }
        }
    };
}

setting_groups! {
    /// Output settings every command takes.
    group OutputArgs {
        value {
            /// Also write the log (at least at info level) to this file, appending.
            #[arg(long, global = true, env = "ODBACKUP_LOG_FILE", value_name = "PATH")]
            log_file: PathBuf,
        }
        switch {
            /// No progress display; only the final summary and errors.
            #[arg(short, long, global = true, env = "ODBACKUP_QUIET")]
            quiet /
            /// Show the progress display even where the config file or ODBACKUP_QUIET asks for quiet.
            #[arg(global = true)]
            no_quiet,
        }
        count {
            /// More log output on stderr (-v info, -vv debug, -vvv trace; in the config file 0 to 3, the higher
            /// of the two wins); RUST_LOG overrides.
            #[arg(short, long, global = true)]
            verbose: u8,
        }
    }

    /// The destination and its manifest.
    group DestArgs {
        value {
            /// The backup's root folder; files land at DEST/<remote path>.
            #[arg(long, env = "ODBACKUP_DEST", value_name = "DIR")]
            dest: PathBuf,
            /// The manifest file [default: DEST/.odbackup/manifest.sqlite].
            #[arg(long, env = "ODBACKUP_MANIFEST", value_name = "PATH")]
            manifest: PathBuf,
        }
    }

    /// Sign-in settings.
    group AuthArgs {
        value {
            /// The Application (client) ID of your app registration (see README).
            #[arg(long, env = "ODBACKUP_CLIENT_ID", value_name = "ID")]
            client_id: String,
            /// common (personal and work accounts), consumers (personal only), organizations (work/school only),
            /// or a tenant ID [default: common].
            #[arg(long, env = "ODBACKUP_TENANT")]
            tenant: String,
            /// Microsoft identity platform base URL [default: https://login.microsoftonline.com].
            #[arg(long, env = "ODBACKUP_AUTH_URL", value_name = "URL")]
            auth_url: String,
            /// Scopes to request, comma-separated [default: Files.Read.All,offline_access,User.Read].
            #[arg(long, value_delimiter = ',')]
            scopes: Vec<String>,
        }
    }

    /// Which stored sign-in a command uses.
    group AccountArgs {
        value {
            /// Which stored sign-in: a name, to keep several [default: default]. Commands that reach the
            /// service use ODBACKUP_ACCESS_TOKEN instead when it is set.
            #[arg(long, env = "ODBACKUP_ACCOUNT")]
            account: String,
        }
    }

    /// Where Microsoft Graph is.
    group GraphArgs {
        value {
            /// Microsoft Graph base URL (national clouds, or a local simulator for tests)
            /// [default: https://graph.microsoft.com/v1.0].
            #[arg(long, env = "ODBACKUP_GRAPH_URL", value_name = "URL")]
            graph_url: String,
        }
    }

    /// How many transfers run at once, and in what pieces large files move (download, backup and restore).
    group TransferArgs {
        value {
            /// Transfers at once, a hard cap [default: download and backup start at 8 and grow up to 32 while
            /// the service keeps up and does not throttle; restore runs 8].
            #[arg(long, value_name = "N", env = "ODBACKUP_CONCURRENCY")]
            concurrency: usize,
            /// Downloads fetch files larger than SIZE as SIZE-long pieces, several at once, each resumable on
            /// its own (at least 256K); restore uploads files above 4 MiB in fragments of about SIZE (rounded
            /// down to a multiple of 320 KiB, at most 60 MiB). Suffixes K, M, G [default: 32M].
            #[arg(long, value_name = "SIZE", env = "ODBACKUP_CHUNK_SIZE")]
            chunk_size: ByteSize,
        }
    }

    /// Which drive to back up: the signed-in user's own unless one of these says otherwise.
    group DriveArgs {
        value {
            /// A drive by ID (`odbackup drives` lists them).
            #[arg(long, value_name = "ID", conflicts_with_all = ["user", "site"])]
            drive_id: String,
            /// Another user's OneDrive (business), by sign-in name.
            #[arg(long, value_name = "UPN", conflicts_with = "site")]
            user: String,
            /// A SharePoint site: its address (https://contoso.sharepoint.com/sites/Team), host:/sites/Team, or
            /// its ID (host,guid,guid). Needs the Sites.Read.All permission (`odbackup login --sites`).
            #[arg(long, value_name = "SITE")]
            site: String,
            /// With --site: the document library to back up, by name [default: the site's default library].
            #[arg(long, value_name = "NAME")]
            library: String,
        }
    }

    /// Which part of the drive is listed, and how.
    group ScopeArgs {
        value {
            /// Start at this folder (a path from the drive root, e.g. /Pictures/2021).
            #[arg(long, env = "ODBACKUP_ROOT", value_name = "PATH", conflicts_with = "special")]
            root: String,
            /// Start at a special folder: photos, cameraroll, documents or music.
            #[arg(long, value_name = "NAME", value_parser = ["photos", "cameraroll", "documents", "music"])]
            special: String,
            /// Folders listed at once [default: 8].
            #[arg(long, env = "ODBACKUP_LIST_CONCURRENCY")]
            list_concurrency: usize,
            /// How a full listing is made: delta (page through the scope's changes from nothing: one request
            /// per 1,000 items; on business drives only for the whole drive) or children (walk the folders,
            /// --list-concurrency at once) [default: delta].
            #[arg(long, value_name = "children|delta", env = "ODBACKUP_CRAWL_METHOD")]
            crawl_method: CrawlMethod,
            /// List the scope in full (and reconcile what was deleted) when its last full listing is older than
            /// this many days, even where its change feed works: the feed has been seen to leave deletions out
            /// [default: 30; 0: never].
            #[arg(long, value_name = "DAYS", env = "ODBACKUP_FULL_LISTING_DAYS")]
            full_listing_days: u32,
        }
        switch {
            /// Back up OneNote notebooks, each as a folder of its section files named like the notebook (the
            /// default).
            #[arg(long, env = "ODBACKUP_ONENOTE")]
            onenote /
            /// Leave OneNote notebooks out (by default each is backed up as a folder of its section files,
            /// named like the notebook). They are recorded as skipped.
            no_onenote,
            /// Back up folders and files others shared that were added to My files, each where its shortcut
            /// sits, listed again on every run (the default).
            #[arg(long, env = "ODBACKUP_SHARED")]
            shared /
            /// Leave out folders and files others shared that were added to My files (by default each is backed
            /// up where its shortcut sits, and listed again on every run). Their shortcuts are recorded as
            /// skipped.
            no_shared,
        }
    }

    /// Which items a run wants. Items left out are recorded in the manifest as excluded, not forgotten: a
    /// later run with other filters fetches them without listing the drive again.
    #[command(next_help_heading = "Filters")]
    group FilterArgs {
        value {
            /// Keep only photos, only videos, or both (all); by the service's photo/video facets, else the
            /// extension.
            #[arg(long, value_name = "photos|videos|all", env = "ODBACKUP_MEDIA")]
            media: MediaSelection,
            /// Keep only files taken (photos, videos) or modified (others) on or after DATE (YYYY-MM-DD, UTC, or
            /// RFC 3339).
            #[arg(long, value_name = "DATE", env = "ODBACKUP_SINCE")]
            since: DateBound,
            /// Keep only files taken or modified on or before DATE (a bare date includes that whole day).
            #[arg(long, value_name = "DATE", env = "ODBACKUP_UNTIL")]
            until: DateBound,
            /// Keep only files of at least SIZE bytes (suffixes K, M, G, T; binary).
            #[arg(long, value_name = "SIZE", env = "ODBACKUP_MIN_SIZE")]
            min_size: ByteSize,
            /// Keep only files of at most SIZE bytes.
            #[arg(long, value_name = "SIZE", env = "ODBACKUP_MAX_SIZE")]
            max_size: ByteSize,
        }
        list {
            /// Keep only items whose remote path, or a folder above it, matches GLOB (case-insensitive;
            /// repeatable). `*` stays within a folder, `**` crosses folders; without a leading / it matches at
            /// any depth.
            #[arg(long, value_name = "GLOB", env = "ODBACKUP_INCLUDE")]
            include: String,
            /// Leave out items whose remote path, or a folder above it, matches GLOB (repeatable; wins over
            /// --include).
            #[arg(long, value_name = "GLOB", env = "ODBACKUP_EXCLUDE")]
            exclude: String,
            /// Keep only files with these extensions, comma-separated (jpg,heic,mp4).
            #[arg(long, value_name = "EXTS", value_delimiter = ',', env = "ODBACKUP_EXT")]
            ext: String,
        }
    }

    /// How files are placed under the destination.
    group LayoutArgs {
        value {
            /// mirror: DEST/<remote path>. date: DEST/YYYY/MM/<name> by the date taken (else modified), with a
            /// stable suffix when names meet. Fixed for a destination once its first run has chosen it.
            #[arg(long, value_name = "mirror|date", env = "ODBACKUP_LAYOUT")]
            layout: Layout,
        }
    }

    /// What happens to local files when the drive changes, and how files are fetched.
    group KeepArgs {
        value {
            /// Abort and resume (by Range) a transfer that receives no byte for this many seconds [default: 60].
            #[arg(long, value_name = "SECS", env = "ODBACKUP_STALL_TIMEOUT")]
            stall_timeout: u64,
            /// Pieces of one large file fetched at once (1-16; 1 fetches every file in one stream). Each piece
            /// takes a transfer slot when one is free, so --concurrency still bounds the connections
            /// [default: 4].
            #[arg(long, value_name = "N", env = "ODBACKUP_STREAMS_PER_FILE")]
            streams_per_file: usize,
            /// hardlink: store files with the same content (quickXorHash and size) once, as hard links of the
            /// copy already on disk, instead of downloading each; where the destination refuses hard links,
            /// files are downloaded as copies and the run says so. off: a copy per file [default: off].
            #[arg(long, value_name = "off|hardlink", env = "ODBACKUP_DEDUPE")]
            dedupe: DedupeMode,
        }
        switch {
            /// Move files deleted on the drive into DEST/.odbackup/trash/<date>/ (by default they stay in
            /// place, and the manifest marks them deleted).
            #[arg(long, env = "ODBACKUP_MIRROR_DELETES")]
            mirror_deletes /
            /// Keep files deleted on the drive in place, whatever the config file or environment says.
            no_mirror_deletes,
            /// Before fetching a file that changed on the drive, move its previous version into the trash.
            #[arg(long, env = "ODBACKUP_KEEP_VERSIONS")]
            keep_versions /
            /// Replace changed files without keeping their previous version, whatever the config file says.
            no_keep_versions,
            /// Also fetch files OneDrive flagged as malware (asks with AVOverride; only tenants that allow it
            /// serve them). They are kept with the caveat malware_override. Off by default: they are skipped
            /// and reported.
            #[arg(long, env = "ODBACKUP_ALLOW_MALWARE")]
            allow_malware /
            /// Skip files flagged as malware, whatever the config file or environment says.
            no_allow_malware,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory as _, Parser as _};
    use odbackup::config::{self, ConfigError};

    use super::*;
    use crate::cli::{Args, Command};

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        config::parse(text, Path::new("c.toml"))
    }

    fn values(text: &str) -> ConfigValues {
        config::effective(&parse(text).unwrap(), None, Path::new("c.toml")).unwrap()
    }

    /// `odbackup backup ARGS`, parsed; its listing and keep groups.
    fn backup(args: &[&str]) -> (ScopeArgs, KeepArgs, FilterArgs) {
        let argv = ["odbackup", "backup"].iter().chain(args);
        match Args::try_parse_from(argv).unwrap().command {
            Command::Backup {
                remote,
                keep,
                filters,
                ..
            } => (remote.scope, keep, filters),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn a_setting_several_commands_take_is_one_flag_with_one_env_and_help() {
        let args = Args::command();
        let reaching = [
            "login", "whoami", "drives", "crawl", "download", "backup", "ls", "tree", "restore",
        ];
        let signed_in = [
            "login", "logout", "whoami", "drives", "crawl", "download", "backup", "ls", "tree",
            "restore",
        ];
        let transferring = ["download", "backup", "restore"];
        for (id, commands) in [
            ("graph_url", &reaching[..]),
            ("account", &signed_in[..]),
            ("concurrency", &transferring[..]),
            ("chunk_size", &transferring[..]),
        ] {
            assert!(ConfigValues::KEYS.contains(&id), "{id} is a config key");
            let seen: Vec<_> = commands
                .iter()
                .map(|name| {
                    let command = args.find_subcommand(name).unwrap();
                    let arg = command
                        .get_arguments()
                        .find(|a| a.get_id() == id)
                        .unwrap_or_else(|| panic!("`{name}` takes no {id}"));
                    (
                        arg.get_long().map(str::to_owned),
                        arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                        arg.get_help().map(ToString::to_string),
                    )
                })
                .collect();
            assert!(seen.windows(2).all(|w| w[0] == w[1]), "{id}: {seen:#?}");
            assert!(seen[0].1.is_some(), "{id} has an environment variable");
        }
    }

    #[test]
    fn the_higher_of_the_verbose_flags_and_the_config_files_verbose_wins() {
        for (argv, file, expected) in [
            (&["odbackup", "status"][..], "", 0),
            (&["odbackup", "status"][..], "verbose = 2\n", 2),
            (&["odbackup", "-v", "status"][..], "verbose = 2\n", 2),
            (&["odbackup", "status", "-vvv"][..], "verbose = 1\n", 3),
        ] {
            let parsed = Args::try_parse_from(argv).unwrap();
            assert_eq!(
                parsed.output.or_file(&values(file)).verbose,
                expected,
                "{argv:?} {file:?}"
            );
        }
    }

    #[test]
    fn the_example_config_parses_and_knows_every_key() {
        let text = include_str!("../../config.example.toml");
        let file: ConfigFile = config::parse(text, Path::new("config.example.toml")).unwrap();
        assert!(file.profiles.contains_key("family-photos"));
        for key in ConfigValues::KEYS {
            assert!(
                text.contains(&format!("# {key} = ")) || text.contains(&format!("\n{key} = ")),
                "config.example.toml does not document `{key}`"
            );
        }
        for key in ConfigValues::SWITCHES {
            let off = format!("--no-{}", key.replace('_', "-"));
            assert!(
                text.contains(&off),
                "config.example.toml does not name {off}"
            );
        }
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = parse("dest = \"/b\"\n\nconcurrenyc = 4\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("concurrenyc"),
            "{err}"
        );
        let err = parse("[profiles.p]\nmirror_delete = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("mirror_delete"),
            "{err}"
        );
    }

    #[test]
    fn filter_values_are_checked_when_the_file_is_read() {
        let text = "ext = [\"jpg\"]\nmin_size = \"1.5M\"\nmax_size = 4096\nsince = \"2021-01-01\"\nmedia = \"photos\"\nlayout = \"date\"\n";
        let file = parse(text).unwrap();
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
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(line) && err.contains(key), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_line() {
        let err = parse("concurrency = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse("\nmirror_deletes = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn profiles_override_top_level_values() {
        let text = "concurrency = 4\ndest = \"/all\"\nshared = false\n[profiles.photos]\ndest = \"/photos\"\nspecial = \"cameraroll\"\nshared = true\n";
        let file = parse(text).unwrap();
        let v = config::effective(&file, Some("photos"), Path::new("c.toml")).unwrap();
        assert_eq!(v.dest.as_deref(), Some(Path::new("/photos")));
        assert_eq!(v.concurrency, Some(4));
        assert_eq!(v.special.as_deref(), Some("cameraroll"));
        assert_eq!(v.shared, Some(true));
        assert!(config::effective(&file, Some("nope"), Path::new("c.toml")).is_err());
    }

    #[test]
    fn a_switch_the_file_turns_on_is_turned_off_by_its_no_flag_and_the_other_way_round() {
        let on = values("mirror_deletes = true\nkeep_versions = true\nallow_malware = true\n");
        let (_, keep, _) = backup(&[]);
        let keep = keep.or_file(&on);
        assert_eq!(
            (keep.mirror_deletes, keep.keep_versions, keep.allow_malware),
            (Some(true), Some(true), Some(true))
        );
        let (_, keep, _) = backup(&[
            "--no-mirror-deletes",
            "--no-keep-versions",
            "--no-allow-malware",
        ]);
        let keep = keep.or_file(&on);
        assert_eq!(
            (keep.mirror_deletes, keep.keep_versions, keep.allow_malware),
            (Some(false), Some(false), Some(false))
        );

        let off = values("onenote = false\nshared = false\n");
        let (scope, _, _) = backup(&[]);
        let scope = scope.or_file(&off);
        assert_eq!((scope.onenote, scope.shared), (Some(false), Some(false)));
        let (scope, _, _) = backup(&["--onenote", "--shared=true"]);
        let scope = scope.or_file(&off);
        assert_eq!((scope.onenote, scope.shared), (Some(true), Some(true)));

        let (scope, _, _) = backup(&[]);
        assert_eq!(scope.or_file(&ConfigValues::default()).onenote, None);
    }

    #[test]
    fn the_no_flag_of_a_switch_wins_wherever_it_stands() {
        let none = ConfigValues::default();
        for (args, expected) in [
            (
                &["--mirror-deletes", "--no-mirror-deletes"][..],
                Some(false),
            ),
            (
                &["--no-mirror-deletes", "--mirror-deletes"][..],
                Some(false),
            ),
            (&["--mirror-deletes"][..], Some(true)),
            (&["--mirror-deletes=false"][..], Some(false)),
            (&["--mirror-deletes=no"][..], Some(false)),
            (&["--mirror-deletes=1"][..], Some(true)),
        ] {
            let (_, keep, _) = backup(args);
            assert_eq!(keep.or_file(&none).mirror_deletes, expected, "{args:?}");
        }
        // A switch takes its value only after `=`: what follows is the next argument.
        let parsed = Args::try_parse_from(["odbackup", "-q", "ls", "/Pictures"]).unwrap();
        assert_eq!(parsed.output.quiet, Some(true));
        assert!(matches!(parsed.command, Command::Ls { ref path, .. } if path == "/Pictures"));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let file = values(
            "include = [\"/Pictures\"]\nmin_size = \"1K\"\nstall_timeout = 5\nlist_concurrency = 3\ncrawl_method = \"children\"\n",
        );
        let (scope, keep, filters) = backup(&[]);
        let (scope, keep, filters) = (
            scope.or_file(&file),
            keep.or_file(&file),
            filters.or_file(&file),
        );
        assert_eq!(filters.include, ["/Pictures"]);
        assert_eq!(filters.min_size, Some(ByteSize(1024)));
        assert_eq!(filters.max_size, None, "unset everywhere: the default");
        assert_eq!(keep.stall_timeout, Some(5));
        assert_eq!(scope.list_concurrency, Some(3));
        assert_eq!(scope.crawl_method, Some(CrawlMethod::Children));

        let (scope, keep, filters) = backup(&[
            "--include",
            "/Music",
            "--min-size",
            "2K",
            "--stall-timeout",
            "9",
            "--crawl-method",
            "delta",
        ]);
        let (scope, keep, filters) = (
            scope.or_file(&file),
            keep.or_file(&file),
            filters.or_file(&file),
        );
        assert_eq!(filters.include, ["/Music"]);
        assert_eq!(filters.min_size, Some(ByteSize(2048)));
        assert_eq!(keep.stall_timeout, Some(9));
        assert_eq!(scope.list_concurrency, Some(3));
        assert_eq!(scope.crawl_method, Some(CrawlMethod::Delta));
    }
}
