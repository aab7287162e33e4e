//! Facts about this host that several stages read (capture attaches cgroup programs at the
//! cgroup v2 root; enrichment walks the same tree to name pods).

use std::path::PathBuf;

/// The memory page size (4096 if the system will not say).
pub fn page_size() -> u32 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|size| u32::try_from(size).ok())
        .unwrap_or(4096)
}

/// Where the cgroup v2 hierarchy is mounted. On hybrid systems it is not /sys/fs/cgroup, so the
/// mount table decides.
pub fn cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = mount.split_whitespace().collect();
        // Field 4 is the root of the mount within the hierarchy: only a full view will do.
        if fields.get(3) != Some(&"/") {
            return None;
        }
        fields.get(4).map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v2_hierarchy_in_a_hybrid_mount_table() {
        let mountinfo = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            cgroup2_root(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn a_container_view_of_a_sub_hierarchy_is_not_the_root() {
        let mountinfo = "40 30 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(mountinfo), None);
        assert_eq!(cgroup2_root(""), None);
    }
}
