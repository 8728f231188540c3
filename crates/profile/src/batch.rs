//! Reading many wg-quick files at once: a folder, or a `.zip` as providers hand them out.
//!
//! This only *reads*: it yields each candidate file's display name and text (or why it could
//! not be read), so that the importer can parse and store each one, report every bad file and
//! keep the good ones. Archives are read with limits (entry count, size per file), because a
//! zip from the internet may be hostile.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// wg-quick files are a few hundred bytes; a bigger `.conf` is the wrong file.
pub const MAX_CONF_BYTES: u64 = 1024 * 1024;
/// The most files one folder or archive may hold.
pub const MAX_FILES: usize = 10_000;

/// One file to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The path inside the folder or archive, for messages (`mullvad/se-sto-wg-001.conf`).
    pub display: String,
    /// The file's text, or why it could not be read.
    pub text: Result<String, String>,
}

/// Why a whole folder or archive could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct BatchError {
    pub path: PathBuf,
    pub reason: String,
}

/// What an import path holds, decided the same way by every front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// A signed `.underpass` bundle.
    Bundle,
    /// A folder of wg-quick files.
    Folder,
    /// A `.zip` of wg-quick files.
    Zip,
    /// One wg-quick file of this many bytes.
    Single(u64),
}

/// Looks at `path` (without reading it whole) and says which kind of import it is.
pub fn import_kind(path: &Path) -> std::io::Result<ImportKind> {
    let meta = fs::metadata(path)?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(if meta.is_dir() {
        ImportKind::Folder
    } else if ext == "underpass" {
        ImportKind::Bundle
    } else if ext == "zip" {
        ImportKind::Zip
    } else {
        ImportKind::Single(meta.len())
    })
}

/// True when `name` looks like a wg-quick file: `*.conf`, not hidden, not macOS metadata.
fn is_conf(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.to_ascii_lowercase().ends_with(".conf")
        && !base.starts_with('.')
        && !name.starts_with("__MACOSX/")
}

/// Every `.conf` file under `dir` (recursively), sorted by path.
pub fn read_folder(dir: &Path) -> Result<Vec<Candidate>, BatchError> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    Ok(files
        .into_iter()
        .map(|(display, path)| Candidate {
            display,
            text: read_limited_file(&path),
        })
        .collect())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), BatchError> {
    let err = |reason: String| BatchError {
        path: dir.to_path_buf(),
        reason,
    };
    for entry in fs::read_dir(dir).map_err(|e| err(e.to_string()))? {
        let entry = entry.map_err(|e| err(e.to_string()))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| err(e.to_string()))?;
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if file_type.is_dir() {
            if !rel.rsplit('/').next().unwrap_or("").starts_with('.') {
                walk(root, &path, out)?;
            }
        } else if is_conf(&rel) {
            if out.len() >= MAX_FILES {
                return Err(err(format!("more than {MAX_FILES} .conf files")));
            }
            out.push((rel, path));
        }
    }
    Ok(())
}

fn read_limited_file(path: &Path) -> Result<String, String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    read_limited(file)
}

fn read_limited(reader: impl std::io::Read) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_CONF_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CONF_BYTES {
        return Err("larger than 1 MiB; not a wg-quick file".into());
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text; not a wg-quick file".into())
}

/// Every `.conf` entry of the zip archive at `path`, in archive order.
pub fn read_zip(path: &Path) -> Result<Vec<Candidate>, BatchError> {
    let err = |reason: String| BatchError {
        path: path.to_path_buf(),
        reason,
    };
    let file = fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| err(format!("not a readable zip archive: {e}")))?;
    if archive.len() > MAX_FILES {
        return Err(err(format!("more than {MAX_FILES} entries")));
    }
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                out.push(Candidate {
                    display: format!("entry #{}", i + 1),
                    text: Err(format!("cannot be read: {e}")),
                });
                continue;
            }
        };
        let name = entry.name().replace('\\', "/");
        if entry.is_dir() || !is_conf(&name) {
            continue;
        }
        let text = if entry.size() > MAX_CONF_BYTES {
            Err("larger than 1 MiB; not a wg-quick file".into())
        } else {
            read_limited(entry)
        };
        out.push(Candidate {
            display: name,
            text,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_paths_are_told_apart_by_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        assert_eq!(import_kind(dir.path()).unwrap(), ImportKind::Folder);
        assert_eq!(import_kind(&file("a.ZIP", b"PK")).unwrap(), ImportKind::Zip);
        assert_eq!(
            import_kind(&file("c.underpass", b"x")).unwrap(),
            ImportKind::Bundle
        );
        assert_eq!(
            import_kind(&file("se.conf", b"12345")).unwrap(),
            ImportKind::Single(5)
        );
        assert!(import_kind(&dir.path().join("missing.conf")).is_err());
    }

    #[test]
    fn only_visible_conf_files_count() {
        assert!(is_conf("se-sto.conf"));
        assert!(is_conf("mullvad/SE.CONF"));
        assert!(!is_conf(".hidden.conf"));
        assert!(!is_conf("__MACOSX/._se.conf"));
        assert!(!is_conf("readme.txt"));
    }
}
