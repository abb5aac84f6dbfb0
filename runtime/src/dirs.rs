//! Directories that hold a daemon's sockets and data. A directory another
//! user created first, or can write to, lets that user swap our sockets or
//! files for theirs (a squatted `/tmp/signet-server` made root's CLI talk to
//! an attacker's server). So a daemon's directory must be its own and not
//! writable by group or others, and every directory above it must belong to
//! root or the daemon and be writable by others only when sticky (as `/tmp`,
//! where nobody can rename what another user made).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} belongs to uid {owner}, not to uid {expected} that runs this daemon: another user may have created it to swap its contents; remove it or choose another path")]
    NotOwned {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
    #[error(
        "{path} (mode {mode:04o}) is writable by users other than its owner; make it `chmod go-w`"
    )]
    WritableByOthers { path: PathBuf, mode: u32 },
    #[error("{path}, a parent of {dir}, belongs to uid {owner} and is writable by others without the sticky bit (mode {mode:04o}): anyone could replace {dir}")]
    UnsafeParent {
        path: PathBuf,
        dir: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error("{path}, a parent of {dir}, belongs to uid {owner} (neither root nor uid {expected}): that user could replace {dir}")]
    ForeignParent {
        path: PathBuf,
        dir: PathBuf,
        owner: u32,
        expected: u32,
    },
}

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Creates `dir` (missing parents too, each with `mode`) or takes the
/// existing one, then checks it as [`check_own_dir`] does.
pub fn ensure_own_dir(dir: &Path, mode: u32) -> Result<PathBuf, DirError> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|source| DirError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    check_own_dir(dir)
}

/// `dir` (symlinks resolved) is a directory of this process's effective
/// user, not writable by group or others, under parents no other user can
/// rename; returns its resolved path.
pub fn check_own_dir(dir: &Path) -> Result<PathBuf, DirError> {
    check_dir_of(dir, euid())
}

fn check_dir_of(dir: &Path, me: u32) -> Result<PathBuf, DirError> {
    let real = std::fs::canonicalize(dir).map_err(|source| DirError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let meta = metadata(&real)?;
    if !meta.is_dir() {
        return Err(DirError::NotADirectory { path: real });
    }
    if meta.uid() != me {
        return Err(DirError::NotOwned {
            path: real,
            owner: meta.uid(),
            expected: me,
        });
    }
    if meta.mode() & GROUP_OR_OTHER_WRITE != 0 {
        return Err(DirError::WritableByOthers {
            path: real,
            mode: meta.mode() & 0o7777,
        });
    }
    check_parents(&real, me)?;
    Ok(real)
}

/// Every directory above `dir` belongs to root or `me`, and is writable by
/// others only when sticky.
fn check_parents(dir: &Path, me: u32) -> Result<(), DirError> {
    for parent in dir.ancestors().skip(1) {
        let meta = metadata(parent)?;
        let mode = meta.mode() & 0o7777;
        if meta.uid() != 0 && meta.uid() != me {
            return Err(DirError::ForeignParent {
                path: parent.to_path_buf(),
                dir: dir.to_path_buf(),
                owner: meta.uid(),
                expected: me,
            });
        }
        if mode & GROUP_OR_OTHER_WRITE != 0 && mode & STICKY == 0 {
            return Err(DirError::UnsafeParent {
                path: parent.to_path_buf(),
                dir: dir.to_path_buf(),
                owner: meta.uid(),
                mode,
            });
        }
    }
    Ok(())
}

fn metadata(path: &Path) -> Result<std::fs::Metadata, DirError> {
    std::fs::metadata(path).map_err(|source| DirError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Where a daemon named `name` keeps its sockets by default: `/run/<name>`
/// for root (what the packaged units' `RuntimeDirectory=` makes), else
/// `$XDG_RUNTIME_DIR/<name>`, else `/tmp/<name>-<uid>` (checked like any
/// other directory before use, so squatting it only stops the daemon).
pub fn runtime_dir(name: &str) -> PathBuf {
    runtime_dir_for(
        name,
        euid(),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
    )
}

fn runtime_dir_for(name: &str, uid: u32, xdg: Option<PathBuf>) -> PathBuf {
    if uid == 0 {
        return Path::new("/run").join(name);
    }
    match xdg {
        Some(xdg) if xdg.is_absolute() => xdg.join(name),
        _ => PathBuf::from(format!("/tmp/{name}-{uid}")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_new_directory_is_created_with_its_mode_and_accepted() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("a/b");
        let real = ensure_own_dir(&dir, 0o700).unwrap();
        assert_eq!(real, std::fs::canonicalize(&dir).unwrap());
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Taken again as it is.
        ensure_own_dir(&dir, 0o700).unwrap();
    }

    #[test]
    fn a_directory_writable_by_others_is_refused_naming_it() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("sock");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o777);
        let err = ensure_own_dir(&dir, 0o755).unwrap_err();
        assert!(
            matches!(&err, DirError::WritableByOthers { mode: 0o777, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("sock"), "{err}");
    }

    #[test]
    fn a_parent_writable_by_others_without_the_sticky_bit_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let parent = top.path().join("open");
        let dir = parent.join("sock");
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&parent, 0o777);
        let err = check_own_dir(&dir).unwrap_err();
        assert!(matches!(&err, DirError::UnsafeParent { .. }), "{err}");
        chmod(&parent, 0o1777);
        check_own_dir(&dir).unwrap();
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let top = tempfile::tempdir().unwrap();
        let file = top.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_own_dir(&file),
            Err(DirError::NotADirectory { .. })
        ));
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("squatted");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        // As seen by a daemon running as another uid than the directory's.
        let other = euid().wrapping_add(4242);
        let err = check_dir_of(&dir, other).unwrap_err();
        assert!(
            matches!(&err, DirError::NotOwned { owner, expected, .. } if *owner == euid() && *expected == other),
            "{err}"
        );
        assert!(err.to_string().contains("squatted"), "{err}");
    }

    #[test]
    fn default_runtime_dirs_follow_the_user() {
        assert_eq!(
            runtime_dir_for("signet-agent", 0, Some("/run/user/0".into())),
            PathBuf::from("/run/signet-agent")
        );
        assert_eq!(
            runtime_dir_for("signet-agent", 1000, Some("/run/user/1000".into())),
            PathBuf::from("/run/user/1000/signet-agent")
        );
        assert_eq!(
            runtime_dir_for("signet-agent", 1000, Some("relative".into())),
            PathBuf::from("/tmp/signet-agent-1000")
        );
        assert_eq!(
            runtime_dir_for("signet-server", 1000, None),
            PathBuf::from("/tmp/signet-server-1000")
        );
    }
}
