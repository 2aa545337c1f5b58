//! Files the authority writes that only its owner may read.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{AuthorityError, ConfigError};

/// Creates the data dir (mode 0700) if it does not exist.
pub(crate) fn ensure_private_dir(path: &Path) -> Result<(), AuthorityError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| AuthorityError::Internal(format!("creating {}: {e}", path.display())))
}

/// Writes `contents` to a new file readable only by its owner (mode 0600).
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), AuthorityError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AuthorityError::Internal(format!("creating {}: {e}", path.display())))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| AuthorityError::Internal(format!("writing {}: {e}", path.display())))
}

/// Refuses a file that exists and that anyone but its owner may read or
/// write (any group or other permission bit), naming the fix.
pub(crate) fn check_private(path: &Path) -> Result<(), AuthorityError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Err(ConfigError::LooseFileMode {
            path: path.to_owned(),
            mode: meta.permissions().mode() & 0o7777,
        }
        .into()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AuthorityError::Internal(format!(
            "reading the mode of {}: {e}",
            path.display()
        ))),
    }
}

/// Creates `path` empty with mode 0600 unless it exists, so that SQLite opens
/// a private file (and gives its `-wal` and `-shm` files the same mode).
pub(crate) fn create_private_if_absent(path: &Path) -> Result<(), AuthorityError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(AuthorityError::Internal(format!(
            "creating {}: {e}",
            path.display()
        ))),
    }
}
