//! The files of a run's output directory that `ucgm train` manages:
//!
//! * `checkpoints/{step:07}.safetensors` — the step checkpoints, each written atomically
//!   (temp file `.{name}.{pid}.tmp` in the same folder, fsync, rename, folder fsync:
//!   [`crate::tensor_file::write_bytes_atomic`]);
//! * `checkpoints/latest` — a one-line text file naming the newest checkpoint
//!   (`0000300.safetensors`), replaced atomically after every successful checkpoint;
//!   `--resume latest` and `--resume <dir>` follow it ([`resolve_resume`]);
//! * retention ([`apply_retention`], `train.keep_last`): only the newest N step
//!   checkpoints are kept; the one just written and files of any other name are never
//!   deleted;
//! * stale temporary files ([`remove_stale_temp_files`]): a write interrupted by a crash
//!   or a kill leaves its `.{name}.{pid}.tmp` behind (up to a checkpoint's size). At the
//!   start of a run those of this naming pattern — checkpoints, the `latest` pointer and
//!   sample grids — whose process is no longer running (or is this one: nothing is being
//!   written yet) are removed; those of a live process are left alone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tensor_file::write_bytes_atomic;

/// Folder of the checkpoints under the output directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// Folder of the sample grids under the output directory.
pub const SAMPLES: &str = "samples";
/// Name of the pointer file (in the checkpoints folder).
pub const LATEST: &str = "latest";
const CHECKPOINT_EXT: &str = ".safetensors";

/// File name of the checkpoint after `step` steps.
pub fn checkpoint_name(step: u64) -> String {
    format!("{step:07}{CHECKPOINT_EXT}")
}

/// The step of a file named exactly as [`checkpoint_name`] writes it (None otherwise).
pub fn checkpoint_step(name: &str) -> Option<u64> {
    numbered(name, CHECKPOINT_EXT)
}

/// `{n:07}{ext}` → n.
fn numbered(name: &str, ext: &str) -> Option<u64> {
    let digits = name.strip_suffix(ext)?;
    if digits.len() < 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (format!("{n:07}") == digits).then_some(n)
}

/// `.{target}.{pid}.tmp` → (target, pid), for targets this module writes: checkpoints and
/// the pointer in the checkpoints folder, PNG grids in the samples folder.
fn temp_target(name: &str, samples: bool) -> Option<(&str, u32)> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (target, pid) = inner.rsplit_once('.')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    let ours = if samples {
        numbered(target, ".png").is_some()
    } else {
        target == LATEST || checkpoint_step(target).is_some()
    };
    ours.then_some((target, pid))
}

/// Whether process `pid` exists.
#[cfg(unix)]
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether process `pid` exists (without a way to ask: only this process is known alive).
#[cfg(not(unix))]
pub fn process_alive(pid: u32) -> bool {
    pid == std::process::id()
}

/// What [`remove_stale_temp_files`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TempCleanup {
    /// Removed files with the process that had left each.
    pub removed: Vec<(PathBuf, u32)>,
    /// Files of a process that is still running (left alone).
    pub kept: Vec<(PathBuf, u32)>,
}

impl TempCleanup {
    /// One line per file, for the run's log.
    pub fn messages(&self) -> Vec<String> {
        let removed = self
            .removed
            .iter()
            .map(|(p, pid)| format!("removed stale temporary file {} (an interrupted write of process {pid})", p.display()));
        let kept = self.kept.iter().map(|(p, pid)| {
            format!(
                "left temporary file {} alone: process {pid} is running (another run writing to this output directory?)",
                p.display()
            )
        });
        removed.chain(kept).collect()
    }
}

/// Removes the temporary files of interrupted writes in `output_dir`'s checkpoints and
/// samples folders whose writer is not running any more (or is this process, which has
/// not started writing). Other files are never touched.
pub fn remove_stale_temp_files(output_dir: &Path) -> Result<TempCleanup> {
    let me = std::process::id();
    let mut report = TempCleanup::default();
    for (folder, samples) in [(CHECKPOINTS, false), (SAMPLES, true)] {
        let dir = output_dir.join(folder);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((_, pid)) = temp_target(name, samples) {
                if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    found.push((entry.path(), pid));
                }
            }
        }
        found.sort();
        for (path, pid) in found {
            if pid != me && process_alive(pid) {
                report.kept.push((path, pid));
            } else {
                match std::fs::remove_file(&path) {
                    Ok(()) => report.removed.push((path, pid)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
        }
    }
    Ok(report)
}

/// Creates `output_dir` with its checkpoints and samples folders and checks that a file
/// can be written there, so that a bad output path fails before any training step.
/// Returns the checkpoints folder.
pub fn prepare_output_dir(output_dir: &Path) -> Result<PathBuf> {
    let fail = |path: &Path, what: &str, e: std::io::Error| Error::io(path, std::io::Error::new(e.kind(), format!("{what} (output_dir): {e}")));
    let ckpt = output_dir.join(CHECKPOINTS);
    for dir in [&ckpt, &output_dir.join(SAMPLES)] {
        std::fs::create_dir_all(dir).map_err(|e| fail(output_dir, "cannot create the output directory", e))?;
    }
    let probe = ckpt.join(format!(".write-probe.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(b"ucgm")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| fail(&ckpt, "cannot write in the output directory", e))?;
    Ok(ckpt)
}

/// Points `checkpoints/latest` at `checkpoint` (a file in that folder), atomically.
pub fn write_latest(checkpoint: &Path) -> Result<()> {
    let dir = checkpoint.parent().unwrap_or(Path::new("."));
    let name = checkpoint
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("{} is not a checkpoint file name", checkpoint.display())))?;
    write_bytes_atomic(&dir.join(LATEST), format!("{name}\n").as_bytes())
}

/// The checkpoint a `latest` pointer file names.
pub fn read_latest(pointer: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(pointer).map_err(|e| Error::io(pointer, e))?;
    let name = text.trim();
    if checkpoint_step(name).is_none() {
        return Err(Error::format(
            pointer,
            format!("expected the name of a checkpoint such as 0000100.safetensors, found {name:?}"),
        ));
    }
    let path = pointer.parent().unwrap_or(Path::new(".")).join(name);
    if !path.is_file() {
        return Err(Error::format(pointer, format!("names {name}, which does not exist")));
    }
    Ok(path)
}

/// What `--resume ARG` means: `latest` → the run's `checkpoints/latest` pointer; a folder
/// → its `latest` pointer or its `checkpoints/latest`; a file named `latest` → the
/// checkpoint it names; any other path → that checkpoint.
pub fn resolve_resume(arg: &Path, output_dir: &Path) -> Result<PathBuf> {
    if arg == Path::new(LATEST) {
        let pointer = output_dir.join(CHECKPOINTS).join(LATEST);
        if !pointer.exists() {
            return Err(Error::invalid(format!(
                "--resume latest: {} does not exist (no checkpoint of output_dir {} to resume)",
                pointer.display(),
                output_dir.display()
            )));
        }
        return read_latest(&pointer);
    }
    if arg.is_dir() {
        for pointer in [arg.join(LATEST), arg.join(CHECKPOINTS).join(LATEST)] {
            if pointer.is_file() {
                return read_latest(&pointer);
            }
        }
        return Err(Error::invalid(format!(
            "--resume {0}: a folder without a `latest` pointer ({0}/latest or {0}/checkpoints/latest)",
            arg.display()
        )));
    }
    if arg.file_name().and_then(|n| n.to_str()) == Some(LATEST) {
        return read_latest(arg);
    }
    Ok(arg.to_path_buf())
}

/// The `__metadata__` map of a safetensors file, reading only its header (a checkpoint
/// can be gigabytes; this is for checks before it is loaded).
pub fn read_header_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = crate::tensor_file::TensorFile::open_header(path)?;
    Ok(file.metadata().iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Keeps the newest `keep` step checkpoints (by step) in `dir`: `just_written` always
/// counts as one of them; files in `protect` (inputs of the run) and files of any other
/// name are never deleted. Returns the deleted files.
pub fn apply_retention(dir: &Path, keep: usize, just_written: &Path, protect: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let mut others: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(step) = name.to_str().and_then(checkpoint_step) else { continue };
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let path = entry.path();
        if same(&path, just_written) || protect.iter().any(|p| same(&path, p)) {
            continue;
        }
        others.push((step, path));
    }
    others.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    let mut removed = Vec::new();
    for (_, path) in others.into_iter().skip(keep.saturating_sub(1)) {
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_temp_patterns() {
        assert_eq!(checkpoint_name(42), "0000042.safetensors");
        assert_eq!(checkpoint_step("0000042.safetensors"), Some(42));
        assert_eq!(checkpoint_step("12345678.safetensors"), Some(12_345_678));
        for bad in [
            "42.safetensors",
            "00000042.safetensors",
            "0000042.safetensors.bak",
            "best.safetensors",
            "000004x.safetensors",
        ] {
            assert_eq!(checkpoint_step(bad), None, "{bad}");
        }
        assert_eq!(temp_target(".0000042.safetensors.123.tmp", false), Some(("0000042.safetensors", 123)));
        assert_eq!(temp_target(".latest.9.tmp", false), Some(("latest", 9)));
        assert_eq!(temp_target(".0000042.png.9.tmp", true), Some(("0000042.png", 9)));
        for bad in [
            ".0000042.png.9.tmp",
            ".mine.safetensors.1.tmp",
            ".0000042.safetensors.x.tmp",
            "0000042.safetensors.1.tmp",
            ".0000042.safetensors.1.tmp~",
        ] {
            assert_eq!(temp_target(bad, false), None, "{bad}");
        }
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn retention_pointer_and_cleanup() {
        let out = tempfile::tempdir().unwrap();
        let dir = prepare_output_dir(out.path()).unwrap();
        for step in [1, 2, 3, 4, 5] {
            std::fs::write(dir.join(checkpoint_name(step)), b"x").unwrap();
        }
        std::fs::write(dir.join("notes.safetensors"), b"mine").unwrap();
        let just = dir.join(checkpoint_name(3));
        let protect = [dir.join(checkpoint_name(1))];
        let removed = apply_retention(&dir, 2, &just, &protect).unwrap();
        assert_eq!(removed, [dir.join(checkpoint_name(4)), dir.join(checkpoint_name(2))]);
        assert!(dir.join(checkpoint_name(5)).exists() && just.exists() && protect[0].exists());
        assert!(dir.join("notes.safetensors").exists());

        write_latest(&just).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(LATEST)).unwrap(), "0000003.safetensors\n");
        assert_eq!(resolve_resume(Path::new(LATEST), out.path()).unwrap(), just);
        assert_eq!(resolve_resume(out.path(), Path::new("elsewhere")).unwrap(), just);
        assert_eq!(resolve_resume(&dir, Path::new("elsewhere")).unwrap(), just);
        assert_eq!(resolve_resume(&dir.join(LATEST), Path::new("elsewhere")).unwrap(), just);
        let other = dir.join(checkpoint_name(5));
        assert_eq!(resolve_resume(&other, out.path()).unwrap(), other);
        std::fs::write(dir.join(LATEST), "0000009.safetensors\n").unwrap();
        assert!(resolve_resume(Path::new(LATEST), out.path())
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let empty = tempfile::tempdir().unwrap();
        assert!(resolve_resume(Path::new(LATEST), empty.path()).is_err());
        assert!(resolve_resume(empty.path(), empty.path()).is_err());

        // Stale temporary files: a dead writer's and this process's go, a live one's stays.
        let dead = dir.join(".0000006.safetensors.4000000000.tmp");
        let mine = dir.join(format!(".latest.{}.tmp", std::process::id()));
        let grid = out.path().join(SAMPLES).join(".0000006.png.4000000000.tmp");
        // PID 1 exists on every unix system.
        let live = dir.join(".0000007.safetensors.1.tmp");
        let foreign = dir.join(".other.4000000000.tmp");
        for f in [&dead, &mine, &grid, &live, &foreign] {
            std::fs::write(f, b"partial").unwrap();
        }
        let report = remove_stale_temp_files(out.path()).unwrap();
        let mut removed: Vec<_> = report.removed.iter().map(|(p, _)| p.clone()).collect();
        removed.sort();
        let mut want = vec![dead.clone(), mine.clone(), grid.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(!dead.exists() && !mine.exists() && !grid.exists() && foreign.exists());
        if cfg!(unix) {
            assert_eq!(report.kept, [(live.clone(), 1)]);
            assert!(live.exists());
        }
        assert_eq!(report.messages().len(), report.removed.len() + report.kept.len());
    }

    #[test]
    fn header_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let mut meta = BTreeMap::new();
        meta.insert("k".to_string(), "v".to_string());
        crate::tensor_file::write_atomic(&p, &[crate::tensor_file::TensorOut::f32("x", vec![1], &[1.0])], &meta).unwrap();
        let mut got = read_header_metadata(&p).unwrap();
        assert!(
            got.remove(crate::tensor_file::CHECKSUM_KEY).is_some(),
            "every written file carries its checksum"
        );
        assert_eq!(got, meta);
        std::fs::write(&p, b"junk").unwrap();
        assert!(matches!(read_header_metadata(&p), Err(Error::Format { .. })));
        assert!(matches!(read_header_metadata(&dir.path().join("none")), Err(Error::Io { .. })));
    }

    #[test]
    fn unwritable_output_dirs_fail() {
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = prepare_output_dir(&file.join("run")).unwrap_err().to_string();
        assert!(e.contains("cannot create the output directory") && e.contains("run"), "{e}");
    }
}
