//! Checking capabilities before touching the kernel, so a missing privilege is named with its fix
//! instead of surfacing as an EPERM from deep inside the loader.

use super::CaptureError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities of this process, from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Names the capabilities missing from `effective`, or `None` when all are present.
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8 only know it), and is
/// needed anyway to enter other network namespaces.
pub fn missing_capabilities(effective: u64) -> Option<String> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Whether kernel addresses in /proc/kallsyms are readable: without CAP_SYSLOG the kernel shows
/// them as zeros and drop locations can only be given as raw addresses.
pub fn names_drop_locations(effective: u64) -> bool {
    effective & (1u64 << CAP_SYSLOG) != 0
}

pub fn check_privileges() -> Result<(), CaptureError> {
    // Unknown (no procfs): let the kernel decide and report.
    let Some(effective) = effective_capabilities() else {
        return Ok(());
    };
    if let Some(missing) = missing_capabilities(effective) {
        return Err(CaptureError::MissingCapabilities { missing });
    }
    if !names_drop_locations(effective) {
        tracing::warn!(
            missing = "CAP_SYSLOG",
            "kernel drop locations will be shown as addresses, not function names: /proc/kallsyms \
             hides addresses without CAP_SYSLOG; grant it to name them"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything() {
        assert_eq!(missing_capabilities(u64::MAX), None);
    }

    #[test]
    fn unprivileged_user_is_told_what_is_missing() {
        let missing = missing_capabilities(0).unwrap();
        assert_eq!(missing, "CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON");
    }

    #[test]
    fn syslog_only_names_drop_locations() {
        let caps = (1 << CAP_NET_ADMIN) | (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert!(!names_drop_locations(caps));
        assert!(names_drop_locations(caps | (1 << CAP_SYSLOG)));
    }

    #[test]
    fn bpf_and_perfmon_suffice_without_sys_admin() {
        let caps = (1 << CAP_NET_ADMIN) | (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert_eq!(missing_capabilities(caps), None);
    }
}
