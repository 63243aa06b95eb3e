//! Output paths checked before any compute: a run that can only fail at its end (a
//! missing folder, a read-only disk, a path that is a directory) fails at its start.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Fails unless a file can be written at `path`: its folder exists and accepts a new
/// file (probed by creating and removing a hidden file), and `path` is not a directory.
pub fn check_writable_file(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::invalid(format!("output {} is a directory, not a file", path.display())));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("folder {} does not exist", dir.display())),
        ));
    }
    let probe = dir.join(format!(".ucgm-write-probe.{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| Error::io(path, std::io::Error::new(e.kind(), format!("cannot write in {}: {e}", dir.display()))))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_folder_and_directory_fail_early() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_writable_file(&d.path().join("a.png")).is_ok());
        assert!(check_writable_file(&d.path().join("no/such/a.png"))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        assert!(check_writable_file(d.path()).unwrap_err().to_string().contains("is a directory"));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the probe is removed");
    }
}
