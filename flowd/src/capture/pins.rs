//! State kept in the BPF filesystem across agent restarts.
//!
//! The maps (what the kernel counted, and what the agent already reported of it) and the tcx
//! links are pinned under `<pinPath>/layout-<fingerprint>/`. While no agent runs, the pinned
//! links keep the programs attached and counting into the pinned maps; the next agent loads its
//! programs over the same maps, swaps them into the same links atomically, and reports what was
//! counted meanwhile. The fingerprint covers every map's type, key and value size and size
//! setting, so an agent whose maps differ never reads another's layout: it removes the old
//! state, says so, and starts from zero.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use super::load::{MapSizes, PROGRAMS};

/// Where systems mount the BPF filesystem.
const STANDARD_BPF_FS: &str = "/sys/fs/bpf";

/// Magic number of the BPF filesystem (`statfs`'s `f_type`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Maps that survive a restart. The rest (PEER_NETNS, the programs' globals) are rebuilt at
/// start from what the agent sees then.
pub const PINNED_MAPS: [&str; 6] = [
    "FLOWS",
    "REPORTED",
    "EVENTS",
    "COUNTERS",
    "DROP_REASONS",
    "OWNERS",
];

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("pinPath {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "pinPath {path} is not on a BPF filesystem and mounting one there failed ({source}); \
         mount it (mount -t bpf bpf {path}) or set pinPath: off"
    )]
    NotBpfFs { path: PathBuf, source: nix::Error },
    #[error(
        "another flowd agent uses pinPath {0}: give each agent on a host its own pinPath (or \
         pinPath: off)"
    )]
    InUse(PathBuf),
    #[error("the kernel programs cannot be read for their map layout: {0}")]
    Layout(String),
}

/// The pinned state of this agent's layout, locked against a second agent for its lifetime.
#[derive(Debug)]
pub struct PinDir {
    layout: PathBuf,
    /// Whether maps of a previous agent were found (their counts are adopted).
    adopted: bool,
    /// flock on the pin directory: released by the kernel however the agent ends.
    _lock: File,
}

impl PinDir {
    /// Prepares `root` (mounting a BPF filesystem there if it is not on one), takes its lock,
    /// and removes the state of any other layout.
    pub fn open(root: &Path, sizes: MapSizes) -> Result<Self, PinError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PinError::Io { path, source }
        };
        // The usual place is a mount point in sysfs, where no directory can be made until a BPF
        // filesystem is mounted on it.
        let standard = Path::new(STANDARD_BPF_FS);
        if root.starts_with(standard) && !is_bpf_fs(standard).map_err(io(standard))? {
            mount_bpf_fs(standard)?;
        }
        std::fs::create_dir_all(root).map_err(io(root))?;
        if !is_bpf_fs(root).map_err(io(root))? {
            mount_bpf_fs(root)?;
        }
        let lock = File::open(root).map_err(io(root))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(PinError::InUse(root.to_owned()));
        }
        let name = format!("layout-{:016x}", fingerprint(sizes)?);
        for entry in std::fs::read_dir(root).map_err(io(root))? {
            let entry = entry.map_err(io(root))?;
            let other = entry.file_name();
            let other = other.to_string_lossy();
            if other.starts_with("layout-") && other != name {
                tracing::warn!(
                    path = %entry.path().display(),
                    "pinned state of a flowd with other maps (an upgrade or other map sizes) removed; counting starts from zero"
                );
                std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        let layout = root.join(name);
        let links = layout.join("links");
        std::fs::create_dir_all(&links).map_err(io(&links))?;
        let adopted = layout.join("FLOWS").exists();
        if adopted {
            tracing::info!(path = %layout.display(), "adopting the maps and links of the previous agent");
        }
        Ok(Self {
            layout,
            adopted,
            _lock: lock,
        })
    }

    pub fn adopted(&self) -> bool {
        self.adopted
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.layout.join(name)
    }

    /// Where one interface's link of one direction is pinned.
    pub fn link_path(&self, netns_cookie: u64, ifindex: u32, direction: &str) -> PathBuf {
        self.layout
            .join("links")
            .join(format!("{netns_cookie}-{ifindex}-{direction}"))
    }

    /// Every pinned link, for removing those whose interface is gone or no longer wanted.
    pub fn pinned_links(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.layout.join("links"))
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// After an orderly stop: nothing of flowd stays in the kernel.
    pub fn remove(&self) {
        if let Err(err) = std::fs::remove_dir_all(&self.layout) {
            tracing::warn!(path = %self.layout.display(), error = %err, "removing pinned state");
        }
    }
}

fn mount_bpf_fs(path: &Path) -> Result<(), PinError> {
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| PinError::NotBpfFs {
        path: path.to_owned(),
        source,
    })?;
    tracing::info!(path = %path.display(), "mounted a BPF filesystem for pinned state");
    Ok(())
}

fn is_bpf_fs(path: &Path) -> std::io::Result<bool> {
    let stat = nix::sys::statfs::statfs(path).map_err(std::io::Error::from)?;
    Ok(stat.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// FNV-1a over every map's definition as this agent will create it: stable across builds and
/// Rust versions, unlike `std`'s hasher.
fn fingerprint(sizes: MapSizes) -> Result<u64, PinError> {
    let object =
        aya_obj::Object::parse(PROGRAMS).map_err(|err| PinError::Layout(err.to_string()))?;
    let mut maps: Vec<_> = object.maps.iter().collect();
    maps.sort_by(|a, b| a.0.cmp(b.0));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, map) in maps {
        if !PINNED_MAPS.contains(&name.as_str()) {
            continue;
        }
        let max_entries = match name.as_str() {
            "FLOWS" | "REPORTED" => sizes.flow_entries,
            "EVENTS" => sizes.ring_buffer_bytes,
            _ => map.max_entries(),
        };
        feed(name.as_bytes());
        for value in [
            map.map_type(),
            map.key_size(),
            map.value_size(),
            max_entries,
            map.map_flags(),
        ] {
            feed(&value.to_le_bytes());
        }
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(flow_entries: u32) -> MapSizes {
        MapSizes {
            flow_entries,
            ring_buffer_bytes: 1 << 20,
        }
    }

    #[test]
    fn the_layout_changes_with_map_sizes_and_only_then() {
        let a = fingerprint(sizes(1024)).unwrap();
        assert_eq!(a, fingerprint(sizes(1024)).unwrap());
        assert_ne!(a, fingerprint(sizes(2048)).unwrap());
    }

    #[test]
    fn every_pinned_map_is_in_the_programs() {
        let object = aya_obj::Object::parse(PROGRAMS).unwrap();
        for name in PINNED_MAPS {
            assert!(object.maps.contains_key(name), "{name} missing");
        }
    }
}
