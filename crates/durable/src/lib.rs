//! One way to replace a file so that a crash, a power cut or a full disk leaves either the old
//! contents or the new ones, never a torn file: write a temporary file in the same directory,
//! fsync it, rename it over the target, then fsync the directory so the rename itself is on
//! disk. Every state file of Underpass (the helper's intent and records, the per-user profile
//! store, the app's settings) goes through [`write`].
//!
//! Why a crate of its own: the root helper and the per-user profile store both need it, and
//! neither should depend on the other.
//!
//! The file is created with mode 0600 on Unix (what `tempfile` gives, said explicitly): state
//! files hold keys or decisions that are nobody else's business. Callers that need a wider
//! mode set it afterwards.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// What failed, and where. The message names the file and the step.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

impl WriteError {
    fn at<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> WriteError + 'a {
        move |source| WriteError {
            path: path.to_path_buf(),
            step,
            source,
        }
    }
}

/// Replaces `path` with `bytes`, durably and atomically (see the crate docs).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(WriteError::at(dir, "creating a temporary file in"))?;
    restrict(tmp.as_file()).map_err(WriteError::at(tmp.path(), "restricting"))?;
    tmp.write_all(bytes)
        .map_err(WriteError::at(path, "writing the new"))?;
    tmp.as_file()
        .sync_all()
        .map_err(WriteError::at(path, "flushing the new"))?;
    tmp.persist(path)
        .map_err(|e| WriteError::at(path, "replacing")(e.error))?;
    sync_dir(dir).map_err(WriteError::at(dir, "flushing the directory"))
}

#[cfg(unix)]
fn restrict(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_file: &fs::File) -> io::Result<()> {
    // The directory's ACL restricts access on Windows.
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; its rename is durable once it returns.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_failed_write_names_the_file_and_keeps_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("state.json");
        let err = write(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
        // A directory in the way of the rename: the write fails, the directory stays.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), b"keep").unwrap();
        let err = write(&blocked, b"x").unwrap_err();
        assert!(err.to_string().contains("replacing"), "{err}");
        assert_eq!(fs::read(blocked.join("keep")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
