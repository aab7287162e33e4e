//! The unix socket's file: who may connect is decided by its mode, its group and its directory,
//! since the socket serves every flow of the node.

use std::{
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::Path,
};

use super::ApiError;

/// Owner and group only, whatever the umask.
pub const SOCKET_MODE: u32 = 0o660;
/// A directory flowd creates for its socket: nobody else writes to it, and `socketGroup`'s
/// members can still reach the socket through it (the socket's own mode keeps others out).
const DIRECTORY_MODE: u32 = 0o755;
const WORLD_WRITABLE: u32 = 0o002;
const STICKY: u32 = 0o1000;

/// Creates the socket's directory if missing; refuses one anybody may write to without the
/// sticky bit, where another user could replace the socket with their own.
pub fn prepare_directory(dir: &Path) -> Result<(), ApiError> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIRECTORY_MODE)
            .create(dir)
            .map_err(|source| ApiError::SocketDir {
                path: dir.to_owned(),
                source,
            })?;
        return Ok(());
    }
    let mode = std::fs::metadata(dir)
        .map_err(|source| ApiError::SocketDir {
            path: dir.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & WORLD_WRITABLE != 0 && mode & STICKY == 0 {
        return Err(ApiError::SocketDirWritable(dir.to_owned()));
    }
    Ok(())
}

/// Sets the socket's mode and, when asked, its group (a name or a numeric gid).
pub fn restrict(socket: &Path, group: Option<&str>) -> Result<(), ApiError> {
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| ApiError::SocketMode {
            path: socket.to_owned(),
            source,
        },
    )?;
    let Some(group) = group else {
        return Ok(());
    };
    let gid = match group.parse::<u32>() {
        Ok(gid) => nix::unistd::Gid::from_raw(gid),
        Err(_) => {
            nix::unistd::Group::from_name(group)
                .map_err(|err| ApiError::SocketGroup {
                    group: group.to_owned(),
                    reason: err.to_string(),
                })?
                .ok_or_else(|| ApiError::SocketGroup {
                    group: group.to_owned(),
                    reason: "no such group on this host; create it or give a numeric gid".into(),
                })?
                .gid
        }
    };
    nix::unistd::chown(socket, None, Some(gid)).map_err(|err| ApiError::SocketGroup {
        group: group.to_owned(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_anybody_may_write_is_refused_unless_sticky() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_directory(&open).unwrap_err().to_string();
        assert!(err.contains("world-writable"), "{err}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        prepare_directory(&open).unwrap();
        let fresh = root.path().join("a/b");
        prepare_directory(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & WORLD_WRITABLE, 0);
    }

    #[test]
    fn the_group_is_set_by_name_or_gid_and_an_unknown_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowd.sock");
        std::fs::write(&file, b"").unwrap();
        let gid = nix::unistd::getegid();
        restrict(&file, Some(&gid.as_raw().to_string())).unwrap();
        let meta = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&file).unwrap());
        assert_eq!(meta, gid.as_raw());
        let err = restrict(&file, Some("no-such-group-flowd"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no-such-group-flowd") && err.contains("numeric gid"),
            "{err}"
        );
    }
}
