//! The local source: a socket's cgroup names its pod even when the pod has no IP of its own
//! (host network) or before its IP is known. On cgroup v2 a cgroup's id is its directory's
//! inode number, and kubelet puts the pod UID in the path.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

/// The pod UID in a cgroup path, for both cgroup drivers:
/// cgroupfs `.../kubepods/burstable/pod<uid>/<container>` and systemd
/// `.../kubepods-burstable-pod<uid_with_underscores>.slice/...`.
pub fn pod_uid(path: &str) -> Option<String> {
    path.split('/').find_map(|segment| {
        let start = segment.rfind("pod")? + 3;
        let uid = segment[start..]
            .trim_end_matches(".slice")
            .replace('_', "-");
        let well_formed = uid.len() == 36
            && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            && uid.matches('-').count() == 4;
        well_formed.then_some(uid)
    })
}

/// Maps cgroup ids to pod UIDs by walking the cgroup v2 hierarchy, rewalking at most every few
/// seconds when asked about an id it has not seen.
pub struct CgroupPods {
    root: PathBuf,
    state: Mutex<(HashMap<u64, String>, Option<Instant>)>,
}

const REWALK: Duration = Duration::from_secs(5);

impl CgroupPods {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            state: Mutex::new((HashMap::new(), None)),
        }
    }

    /// The cgroup v2 hierarchy of this host, if mounted.
    pub fn from_mount_table() -> Option<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        crate::host::cgroup2_root(&mountinfo).map(Self::new)
    }

    fn walk(dir: &Path, prefix: &str, found: &mut HashMap<u64, String>, depth: u32) {
        if depth > 12 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let path = format!("{prefix}/{}", entry.file_name().to_string_lossy());
            if let Some(uid) = pod_uid(&path) {
                found.insert(meta.ino(), uid);
            }
            Self::walk(&entry.path(), &path, found, depth + 1);
        }
    }

    pub fn pod_uid(&self, cgroup_id: u64) -> Option<String> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        if let Some(uid) = state.0.get(&cgroup_id) {
            return Some(uid.clone());
        }
        if state.1.is_some_and(|at| at.elapsed() < REWALK) {
            return None;
        }
        let mut found = HashMap::new();
        Self::walk(&self.root, "", &mut found, 0);
        *state = (found, Some(Instant::now()));
        state.0.get(&cgroup_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_uids_from_both_cgroup_drivers() {
        let uid = "0b7a6f6e-4c1d-4f2e-9a63-8a3b8a1c2d3e";
        assert_eq!(
            pod_uid(&format!("/kubepods/burstable/pod{uid}/4f1c0d")).as_deref(),
            Some(uid)
        );
        assert_eq!(
            pod_uid(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-9.scope",
                uid.replace('-', "_")
            ))
            .as_deref(),
            Some(uid)
        );
        assert_eq!(pod_uid("/system.slice/sshd.service"), None);
        assert_eq!(pod_uid("/kubepods/podnot-a-uid"), None);
    }
}
