//! Which items a run wants: include/exclude globs on the remote path, extensions, photo/video, a date range
//! and a size range, compiled once. A leaf: it decides from plain values and knows nothing of Graph, the
//! manifest or the command line (which parses its values with the [`FromStr`] impls here, as does the
//! config file, so a flag and a config key accept exactly the same spellings).
//!
//! Items a filter rejects are *marked* in the manifest with the reason, never deleted, so a later run with
//! other filters picks them up without listing the drive again.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A filter value that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: {why}")]
pub struct FilterError {
    /// Which setting, by its config key: the command line says it in its flags' spelling.
    pub what: FilterSetting,
    /// The value as given.
    pub value: String,
    /// What is wrong with it and what would be accepted.
    pub why: String,
}

/// The setting a [`FilterError`] is about, named as the config file names it ([`FilterSetting::keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterSetting {
    /// `include`: the globs of what is kept.
    Include,
    /// `exclude`: the globs of what is left out.
    Exclude,
    /// `media`: photos, videos or both.
    Media,
    /// A size (`min_size`, `max_size`, `chunk_size`), read before it is known which of them it is.
    Size,
    /// A date (`since`, `until`), read before it is known which of them it is.
    Date,
    /// `min_size` and `max_size` together.
    SizeRange,
    /// `since` and `until` together.
    DateRange,
}

impl FilterSetting {
    /// The config keys of the setting (more than one for a range, or for a value read before it is known
    /// which setting it is).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Self::Include => &["include"],
            Self::Exclude => &["exclude"],
            Self::Media => &["media"],
            Self::Size => &["min_size", "max_size", "chunk_size"],
            Self::SizeRange => &["min_size", "max_size"],
            Self::Date | Self::DateRange => &["since", "until"],
        }
    }
}

impl fmt::Display for FilterSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Include => "include",
            Self::Exclude => "exclude",
            Self::Media => "media",
            Self::Size => "size",
            Self::Date => "date",
            Self::SizeRange => "size range",
            Self::DateRange => "date range",
        })
    }
}

/// Which kinds of media `--media` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaSelection {
    /// Photos only (photo facet, else a photo extension).
    Photos,
    /// Videos only (video facet, else a video extension).
    Videos,
    /// Photos and videos, nothing else.
    All,
}

impl MediaSelection {
    /// The spelling on the command line and in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaSelection::Photos => "photos",
            MediaSelection::Videos => "videos",
            MediaSelection::All => "all",
        }
    }
}

impl FromStr for MediaSelection {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "photos" | "photo" => Ok(MediaSelection::Photos),
            "videos" | "video" => Ok(MediaSelection::Videos),
            "all" => Ok(MediaSelection::All),
            _ => Err(FilterError {
                what: FilterSetting::Media,
                value: s.to_owned(),
                why: "expected photos, videos or all (photos and videos)".to_owned(),
            }),
        }
    }
}

/// A size in bytes, written as `1500`, `200K`, `1.5M`, `2G` (binary units: K = 1024).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "SizeText")]
pub struct ByteSize(pub u64);

/// What a config file may hold for a size: a number of bytes or a string with a unit.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

impl TryFrom<SizeText> for ByteSize {
    type Error = FilterError;
    fn try_from(value: SizeText) -> Result<Self, FilterError> {
        match value {
            SizeText::Bytes(n) => Ok(ByteSize(n)),
            SizeText::Text(s) => s.parse(),
        }
    }
}

impl FromStr for ByteSize {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        let bad = |why: &str| FilterError {
            what: FilterSetting::Size,
            value: s.to_owned(),
            why: why.to_owned(),
        };
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| {
            bad("expected a number of bytes, optionally with K, M, G or T (e.g. 500K, 1.5M)")
        })?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => {
                return Err(bad(
                    "unknown unit: use K, M, G or T (binary: 1K = 1024 bytes)",
                ));
            }
        };
        let bytes = number * factor as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(bad("out of range"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in time given as `2021-06-30` (midnight UTC) or as RFC 3339 (`2021-06-30T12:00:00+02:00`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String")]
pub struct DateBound {
    /// The instant.
    pub(crate) at: DateTime<Utc>,
    /// Whether it was a bare date (so `--until` includes that whole day).
    pub(crate) whole_day: bool,
}

impl TryFrom<String> for DateBound {
    type Error = FilterError;
    fn try_from(value: String) -> Result<Self, FilterError> {
        value.parse()
    }
}

impl FromStr for DateBound {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        let text = s.trim();
        if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            let at = date
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc();
            return Ok(DateBound {
                at,
                whole_day: true,
            });
        }
        DateTime::parse_from_rfc3339(text)
            .map(|at| DateBound {
                at: at.with_timezone(&Utc),
                whole_day: false,
            })
            .map_err(|_| FilterError {
                what: FilterSetting::Date,
                value: s.to_owned(),
                why: "expected YYYY-MM-DD or an RFC 3339 time such as 2021-06-30T12:00:00Z"
                    .to_owned(),
            })
    }
}

impl fmt::Display for DateBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.whole_day {
            write!(f, "{}", self.at.format("%Y-%m-%d"))
        } else {
            write!(f, "{}", self.at.to_rfc3339())
        }
    }
}

/// What the user asked for, as given (validated by [`Filter::new`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Keep only items whose remote path (or an ancestor folder's) matches one of these globs.
    pub include: Vec<String>,
    /// Drop items whose remote path (or an ancestor folder's) matches one of these globs.
    pub exclude: Vec<String>,
    /// Keep only files with one of these extensions (case-insensitive, without the dot).
    pub extensions: Vec<String>,
    /// Keep only photos and/or videos.
    pub media: Option<MediaSelection>,
    /// Keep only files taken (photos, videos) or modified (others) at or after this time.
    pub since: Option<DateBound>,
    /// Keep only files taken or modified before this time (a bare date includes that whole day).
    pub until: Option<DateBound>,
    /// Keep only files at least this large.
    pub min_size: Option<ByteSize>,
    /// Keep only files at most this large.
    pub max_size: Option<ByteSize>,
    /// Leave `OneNote` notebooks out (`--no-onenote`): they are recorded as skipped packages, and not listed.
    pub skip_onenote: bool,
    /// Leave shared folders and files added to My files out (`--no-shared`): their shortcuts are recorded as
    /// skipped, and not followed.
    pub skip_shared: bool,
}

/// A compiled filter. [`Filter::default`] wants everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    spec: FilterSpec,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    extensions: BTreeSet<String>,
    until_exclusive: Option<DateTime<Utc>>,
}

/// An item as the filter sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    /// `/a/b.jpg`, from the drive root.
    pub remote_path: &'a str,
    /// Whether it is a folder (only the path globs apply to folders).
    pub(crate) is_folder: bool,
    /// Whether it is a photo (facet or extension).
    pub(crate) is_photo: bool,
    /// Whether it is a video (facet or extension).
    pub(crate) is_video: bool,
    /// Size in bytes.
    pub size: u64,
    /// When the photo or video was taken (RFC 3339), if known.
    pub(crate) taken_at: Option<&'a str>,
    /// Last modification (RFC 3339), if known.
    pub(crate) modified_at: Option<&'a str>,
}

impl Filter {
    /// Compile a filter; a bad glob or an empty range is an error naming it.
    pub fn new(spec: FilterSpec) -> Result<Self, FilterError> {
        let extensions: BTreeSet<String> = spec
            .extensions
            .iter()
            .flat_map(|e| e.split(','))
            .map(|e| e.trim().trim_start_matches('.').to_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        if let (Some(min), Some(max)) = (spec.min_size, spec.max_size)
            && min > max
        {
            return Err(FilterError {
                what: FilterSetting::SizeRange,
                value: format!("{min}..{max}"),
                why: "min_size is larger than max_size: nothing would be kept".to_owned(),
            });
        }
        let until_exclusive = spec.until.map(|u| {
            if u.whole_day {
                u.at + chrono::Duration::days(1)
            } else {
                u.at
            }
        });
        if let (Some(since), Some(until)) = (spec.since, until_exclusive)
            && since.at >= until
        {
            return Err(FilterError {
                what: FilterSetting::DateRange,
                value: format!(
                    "{}..{}",
                    since,
                    spec.until.map(|u| u.to_string()).unwrap_or_default()
                ),
                why: "since is not before until: nothing would be kept".to_owned(),
            });
        }
        Ok(Filter {
            include: glob_set(FilterSetting::Include, &spec.include)?,
            exclude: glob_set(FilterSetting::Exclude, &spec.exclude)?,
            extensions,
            until_exclusive,
            spec,
        })
    }

    /// What was asked for.
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// Whether this filter wants everything.
    #[cfg(test)]
    pub(crate) fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_none() && !self.selects_content()
    }

    /// Whether a filter on file content (extension, media, dates, sizes) is set. Empty folders are only
    /// mirrored when none is: a media export should not recreate every document folder empty.
    pub(crate) fn selects_content(&self) -> bool {
        !self.extensions.is_empty()
            || self.spec.media.is_some()
            || self.spec.since.is_some()
            || self.spec.until.is_some()
            || self.spec.min_size.is_some()
            || self.spec.max_size.is_some()
    }

    /// A stable text naming what this filter selects; when it changes between runs, every row is judged
    /// again.
    pub(crate) fn fingerprint(&self) -> String {
        let s = &self.spec;
        let opt = |v: Option<String>| v.unwrap_or_default();
        format!(
            "v1|include={}|exclude={}|ext={}|media={}|since={}|until={}|min={}|max={}",
            s.include.join("\u{1f}"),
            s.exclude.join("\u{1f}"),
            self.extensions
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            opt(s.media.map(|m| m.as_str().to_owned())),
            opt(s.since.map(|d| d.to_string())),
            opt(s.until.map(|d| d.to_string())),
            opt(s.min_size.map(|b| b.to_string())),
            opt(s.max_size.map(|b| b.to_string())),
        ) + if s.skip_onenote { "|no-onenote" } else { "" }
            + if s.skip_shared { "|no-shared" } else { "" }
    }

    /// `None` if the item is wanted, else why not (stored in the manifest and shown by `status`). A reason
    /// names the setting by its config key (`ext`, `min_size`, …), not a flag: the same filter comes from the
    /// command line, the environment or the config file.
    pub(crate) fn rejects(&self, item: &Candidate<'_>) -> Option<&'static str> {
        if let Some(exclude) = &self.exclude
            && matches_path_or_ancestor(exclude, item.remote_path)
        {
            return Some("matches an exclude pattern");
        }
        if let Some(include) = &self.include
            && !matches_path_or_ancestor(include, item.remote_path)
        {
            return Some("matches no include pattern");
        }
        if item.is_folder {
            // A folder is created when a wanted file lands in it; only an empty one needs deciding.
            return self
                .selects_content()
                .then_some("folder not mirrored empty while content filters are set");
        }
        if !self.extensions.is_empty() {
            let name = item.remote_path.rsplit('/').next().unwrap_or_default();
            let ext = name
                .rsplit_once('.')
                .map(|(_, e)| e.to_lowercase())
                .unwrap_or_default();
            if !self.extensions.contains(&ext) {
                return Some("extension not in the ext list");
            }
        }
        match self.spec.media {
            Some(MediaSelection::Photos) if !item.is_photo => {
                return Some("not a photo (media setting)");
            }
            Some(MediaSelection::Videos) if !item.is_video => {
                return Some("not a video (media setting)");
            }
            Some(MediaSelection::All) if !item.is_photo && !item.is_video => {
                return Some("not a photo or video (media setting)");
            }
            _ => {}
        }
        if let Some(min) = self.spec.min_size
            && item.size < min.0
        {
            return Some("smaller than min_size");
        }
        if let Some(max) = self.spec.max_size
            && item.size > max.0
        {
            return Some("larger than max_size");
        }
        if self.spec.since.is_some() || self.until_exclusive.is_some() {
            // Photos and videos by when they were taken; everything else (and media without a taken date)
            // by when it was last modified.
            let when = if item.is_photo || item.is_video {
                item.taken_at.or(item.modified_at)
            } else {
                item.modified_at
            };
            let Some(when) = when.and_then(|w| DateTime::parse_from_rfc3339(w).ok()) else {
                return Some("no date to compare with since/until");
            };
            let when = when.with_timezone(&Utc);
            if self.spec.since.is_some_and(|s| when < s.at) {
                return Some("before the since date");
            }
            if self.until_exclusive.is_some_and(|u| when >= u) {
                return Some("after the until date");
            }
        }
        None
    }
}

/// Globs match the remote path case-insensitively; `*` stays within one folder and `**` crosses folders.
/// A pattern without a leading `/` matches at any depth (`*.tmp`, `Thumbs.db`); one with it is anchored at
/// the drive root (`/Pictures/2021/**`).
fn glob_set(what: FilterSetting, patterns: &[String]) -> Result<Option<GlobSet>, FilterError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let trimmed = pattern.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(FilterError {
                what,
                value: pattern.clone(),
                why: "an empty pattern matches nothing".to_owned(),
            });
        }
        let anchored = if trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("**/{trimmed}")
        };
        let glob = GlobBuilder::new(&anchored)
            .case_insensitive(true)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| FilterError {
                what,
                value: pattern.clone(),
                why: e.kind().to_string(),
            })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| FilterError {
        what,
        value: patterns.join(", "),
        why: e.to_string(),
    })
}

/// Whether `path` or one of its ancestor folders matches: `--exclude /Private` drops the whole folder.
fn matches_path_or_ancestor(set: &GlobSet, path: &str) -> bool {
    let mut current = path;
    loop {
        if current.is_empty() || current == "/" {
            return false;
        }
        if set.is_match(current) {
            return true;
        }
        match current.rfind('/') {
            Some(0) | None => return false,
            Some(i) => current = &current[..i],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Candidate<'_> {
        let ext = path.rsplit('.').next().unwrap_or_default().to_lowercase();
        Candidate {
            remote_path: path,
            is_folder: false,
            is_photo: matches!(ext.as_str(), "jpg" | "heic" | "png"),
            is_video: matches!(ext.as_str(), "mp4" | "mov"),
            size,
            taken_at: None,
            modified_at: Some("2022-05-01T10:00:00Z"),
        }
    }

    fn filter(spec: FilterSpec) -> Filter {
        Filter::new(spec).unwrap()
    }

    #[test]
    fn the_default_filter_wants_everything() {
        let f = Filter::default();
        assert!(f.is_everything());
        assert_eq!(f.rejects(&file("/a/b.txt", 1)), None);
    }

    #[test]
    fn globs_are_case_insensitive_and_unanchored_without_a_leading_slash() {
        let f = filter(FilterSpec {
            exclude: vec!["*.tmp".into(), "/Private".into()],
            ..FilterSpec::default()
        });
        assert!(f.rejects(&file("/a/deep/x.TMP", 1)).is_some());
        assert!(
            f.rejects(&file("/private/x.jpg", 1)).is_some(),
            "ancestor folder matched"
        );
        assert!(
            f.rejects(&file("/Public/private/x.jpg", 1)).is_none(),
            "anchored at the root"
        );
        assert!(f.rejects(&file("/a/x.jpg", 1)).is_none());
    }

    #[test]
    fn a_star_stays_inside_one_folder() {
        let f = filter(FilterSpec {
            include: vec!["/Pictures/*.jpg".into()],
            ..FilterSpec::default()
        });
        assert!(f.rejects(&file("/Pictures/a.jpg", 1)).is_none());
        assert!(f.rejects(&file("/Pictures/2021/a.jpg", 1)).is_some());
    }

    #[test]
    fn extensions_media_and_sizes_combine() {
        let f = filter(FilterSpec {
            extensions: vec!["HEIC,.mp4".into()],
            min_size: Some("1K".parse().unwrap()),
            ..FilterSpec::default()
        });
        assert!(f.rejects(&file("/a.heic", 2048)).is_none());
        assert_eq!(
            f.rejects(&file("/a.heic", 10)),
            Some("smaller than min_size")
        );
        assert_eq!(
            f.rejects(&file("/a.jpg", 2048)),
            Some("extension not in the ext list")
        );
        let media = filter(FilterSpec {
            media: Some(MediaSelection::All),
            ..FilterSpec::default()
        });
        assert!(media.rejects(&file("/a.mov", 1)).is_none());
        assert!(media.rejects(&file("/a.docx", 1)).is_some());
        let videos = filter(FilterSpec {
            media: Some(MediaSelection::Videos),
            ..FilterSpec::default()
        });
        assert!(videos.rejects(&file("/a.jpg", 1)).is_some());
    }

    #[test]
    fn dates_use_the_taken_date_for_media_and_include_the_whole_until_day() {
        let f = filter(FilterSpec {
            since: Some("2021-01-01".parse().unwrap()),
            until: Some("2021-12-31".parse().unwrap()),
            ..FilterSpec::default()
        });
        let mut photo = file("/a.jpg", 1);
        photo.taken_at = Some("2021-12-31T23:59:00Z");
        assert_eq!(f.rejects(&photo), None, "taken on the last day");
        photo.taken_at = Some("2020-12-31T23:59:00Z");
        assert_eq!(f.rejects(&photo), Some("before the since date"));
        let doc = file("/a.txt", 1); // modified 2022-05-01
        assert_eq!(f.rejects(&doc), Some("after the until date"));
    }

    #[test]
    fn folders_answer_only_to_path_globs_unless_content_filters_are_set() {
        let folder = Candidate {
            is_folder: true,
            ..file("/Docs", 0)
        };
        assert!(Filter::default().rejects(&folder).is_none());
        let f = filter(FilterSpec {
            media: Some(MediaSelection::Photos),
            ..FilterSpec::default()
        });
        assert!(f.rejects(&folder).is_some());
    }

    #[test]
    fn values_parse_or_say_what_is_accepted() {
        assert_eq!("1.5M".parse::<ByteSize>().unwrap().0, 1_572_864);
        assert_eq!("200 kb".parse::<ByteSize>().unwrap().0, 204_800);
        assert!(
            "12 parsecs"
                .parse::<ByteSize>()
                .unwrap_err()
                .why
                .contains("unit")
        );
        assert!("2021-13-01".parse::<DateBound>().is_err());
        assert!("pictures".parse::<MediaSelection>().is_err());
        let bad_glob = Filter::new(FilterSpec {
            exclude: vec!["a[".into()],
            ..FilterSpec::default()
        })
        .unwrap_err();
        assert_eq!(bad_glob.what, FilterSetting::Exclude);
        assert_eq!(bad_glob.what.keys(), ["exclude"]);
        let empty_range = Filter::new(FilterSpec {
            min_size: Some(ByteSize(10)),
            max_size: Some(ByteSize(5)),
            ..FilterSpec::default()
        })
        .unwrap_err();
        assert_eq!(empty_range.what, FilterSetting::SizeRange);
        // The library names settings as the config file does, never as the command line spells them.
        assert!(!empty_range.to_string().contains("--"), "{empty_range}");
    }

    #[test]
    fn fingerprints_change_with_the_selection_only() {
        let a = filter(FilterSpec {
            extensions: vec!["jpg,HEIC".into()],
            ..FilterSpec::default()
        });
        let b = filter(FilterSpec {
            extensions: vec!["heic".into(), "jpg".into()],
            ..FilterSpec::default()
        });
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), Filter::default().fingerprint());
    }
}
