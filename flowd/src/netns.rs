//! Network-namespace plumbing: run a closure inside another namespace, identify a namespace.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so work runs on a short-lived thread
//! that enters the namespace and dies with it: the rest of the process never changes namespace.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use nix::sched::{setns, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source} (does it exist? `ip netns list` shows named ones)")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}: {source} (entering needs CAP_SYS_ADMIN: run as root)")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("cannot read the network namespace cookie: {0}")]
    Cookie(std::io::Error),
    #[error("a thread working in network namespace {0} panicked")]
    Panicked(PathBuf),
}

/// Runs `work` with the calling thread inside `netns` (or in the current namespace for `None`).
pub fn run_in<T: Send>(
    netns: Option<&Path>,
    work: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    let Some(path) = netns else {
        return Ok(work());
    };
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                    path: path.to_owned(),
                    source,
                })?;
                Ok(work())
            })
            .join()
            .map_err(|_| NetnsError::Panicked(path.to_owned()))?
    })
}

/// The kernel's cookie for the calling thread's network namespace: the same value a BPF program
/// gets from `bpf_get_netns_cookie`, so records can name the namespace they were seen in.
pub fn current_cookie() -> Result<u64, NetnsError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    // Unbound: a fresh namespace may not even have loopback up.
    let socket = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|errno| NetnsError::Cookie(errno.into()))?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid socket fd, out-pointer and length describe `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(NetnsError::Cookie(std::io::Error::last_os_error()));
    }
    Ok(cookie)
}
