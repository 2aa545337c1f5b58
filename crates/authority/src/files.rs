//! Files the authority writes that only its owner may read.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::AuthorityError;

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
