//! `--dedupe hardlink`: a file whose content (quickXorHash and size) is already on disk as another done file
//! is given that file's bytes as a hard link instead of being downloaded.
//!
//! The link is made between folder handles opened without following links (`fsdest`): the source must be a
//! regular file at its recorded place under the destination, with the listed length and hash when it is read
//! back now, and the new name must turn out to be that very file. It is made under the target's part-file
//! name and then renamed into place like a download, so a file of the user's under the target name goes to
//! the trash first, as it does for a download.
//!
//! A linked copy is never written into: every later version of any of the copies is downloaded to a part
//! file of its own and renamed over its name, which leaves the other names with the old bytes; part files
//! with more than one name are removed, never resumed (`Folder::remove_unless_plain`).

use std::io::{self, Read as _};

use super::transfer::{TransferOutcome, place};
use crate::fsdest::{self, Dest, DestError, Entry, Folder};
use crate::hash::{ContentHasher, Expected, Verification, verify};
use crate::manifest::{DownloadJob, Twin};

/// How placing a file as a hard link went.
#[derive(Debug)]
pub(super) enum Linked {
    /// On disk under its name, sharing the twin's bytes.
    Placed(TransferOutcome),
    /// The destination does not allow the link (another file system, no hard links, too many links, not
    /// permitted): the file is downloaded, and so are the others of this run.
    Unavailable(String),
    /// The twin is not usable (gone, changed, not a regular file) or the name could not be taken: the file
    /// is downloaded as usual.
    NotUsable(String),
}

/// Place the file of `job` as a hard link of `twin`'s file. Blocking: run it on the blocking pool.
pub(super) fn link_twin(dest: &Dest, job: &DownloadJob, twin: &Twin) -> Linked {
    let Some(local_path) = job.local_path.clone().filter(|p| !p.is_empty()) else {
        return Linked::NotUsable("no local path".to_owned());
    };
    let (Ok((parent, name)), Ok((twin_parent, twin_name))) = (
        fsdest::split_item_path(&local_path),
        fsdest::split_item_path(&twin.local_path),
    ) else {
        return Linked::NotUsable("not a path under the destination".to_owned());
    };
    let source = match dest.item_folder(twin_parent) {
        Ok(Some(folder)) => folder,
        Ok(None) => return Linked::NotUsable("the copy's folder is gone".to_owned()),
        Err(err) => return Linked::NotUsable(err.to_string()),
    };
    let expected = Expected {
        size: job.size,
        quick_xor: job.quick_xor.clone(),
        sha1: None,
    };
    // The copy must be a regular file of the listed length (read through no link); its bytes are checked
    // after the link is made, through the new name, so that a destination without hard links costs no read.
    let held = match source.open_read(twin_name).and_then(|f| Entry::of_open(&f)) {
        Ok(entry) if entry.len == job.size => entry,
        Ok(_) => return Linked::NotUsable("the copy on disk has another length".to_owned()),
        Err(err) => return Linked::NotUsable(source.error(twin_name, err).to_string()),
    };
    let folder = match dest.create_item_folder(parent) {
        Ok(folder) => folder,
        Err(err) => return Linked::NotUsable(err.to_string()),
    };
    let version = job.etag.as_deref().or(job.ctag.as_deref()).unwrap_or("");
    let part = fsdest::part_file_name(job.drive_id.as_str(), job.item_id.as_str(), version);
    // A partial download of this version is superseded by the link.
    for stale in [fsdest::journal_name(&part), part.clone()] {
        if let Err(err) = folder.remove(&stale) {
            return Linked::NotUsable(folder.error(&stale, err).to_string());
        }
    }
    match source.hard_link(twin_name, &folder, &part) {
        Ok(_) => {}
        Err(err) if link_unsupported(&err) => return Linked::Unavailable(err.to_string()),
        Err(err) => return Linked::NotUsable(source.error(twin_name, err).to_string()),
    }
    match still_verifies(&folder, &part, &held, &expected) {
        Ok(true) => {}
        Ok(false) => {
            // Something else was swapped in under the copy's name, or its bytes changed on disk.
            let _ = folder.remove(&part);
            return Linked::NotUsable("the copy on disk no longer has the listed bytes".to_owned());
        }
        Err(err) => {
            let _ = folder.remove(&part);
            return Linked::NotUsable(folder.error(&part, err).to_string());
        }
    }
    let ours = job.written_path.as_deref() == Some(local_path.as_str());
    // No modification time is set: the copies share one inode, and the first copy's time stays.
    let displaced = match place(dest, &folder, &part, name, ours, None) {
        Ok(placed) => placed.displaced,
        Err(err) => {
            let _ = folder.remove(&part);
            return Linked::NotUsable(placing_failed(&err));
        }
    };
    Linked::Placed(TransferOutcome::Done {
        local_path,
        verification: crate::hash::Verification::QuickXor,
        caveat: None,
        local_size: job.size,
        fetched: 0,
        adopted: false,
        attempts: 0,
        displaced,
        by_listing_url: false,
    })
}

/// Read the regular file `name` of `folder` back (never through a link): whether it is the file `held`
/// and has exactly the listed length and quickXorHash.
fn still_verifies(
    folder: &Folder,
    name: &str,
    held: &Entry,
    expected: &Expected,
) -> io::Result<bool> {
    let mut file = folder.open_read(name)?;
    let entry = Entry::of_open(&file)?;
    if !entry.same_file(held) || entry.len != expected.size {
        return Ok(false);
    }
    let mut hasher = ContentHasher::new(false);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(verify(expected, &hasher.finish()) == Verification::QuickXor)
}

/// Whether a refused link says the destination cannot hold hard links here (rather than something about
/// this one file): another file system (`EXDEV`), no hard links on it (`EPERM`, `ENOTSUP`, `ENOSYS`), or
/// too many links to the file already (`EMLINK`).
pub(super) fn link_unsupported(err: &io::Error) -> bool {
    use rustix::io::Errno;
    let Some(code) = err.raw_os_error() else {
        return false;
    };
    let errno = Errno::from_raw_os_error(code);
    [
        Errno::XDEV,
        Errno::PERM,
        Errno::MLINK,
        Errno::NOTSUP,
        Errno::OPNOTSUPP,
        Errno::NOSYS,
    ]
    .contains(&errno)
}

fn placing_failed(err: &DestError) -> String {
    format!("could not place the link: {err}")
}

#[cfg(test)]
mod tests {
    use super::link_unsupported;

    #[test]
    fn refusals_of_the_file_system_fall_back_and_others_do_not() {
        for code in [libc_code("EXDEV"), libc_code("EPERM"), libc_code("EMLINK")] {
            assert!(link_unsupported(&std::io::Error::from_raw_os_error(code)));
        }
        assert!(!link_unsupported(&std::io::Error::from_raw_os_error(
            rustix::io::Errno::EXIST.raw_os_error()
        )));
        assert!(!link_unsupported(&std::io::ErrorKind::NotFound.into()));
    }

    fn libc_code(name: &str) -> i32 {
        use rustix::io::Errno;
        match name {
            "EXDEV" => Errno::XDEV,
            "EPERM" => Errno::PERM,
            _ => Errno::MLINK,
        }
        .raw_os_error()
    }
}
