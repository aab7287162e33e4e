//! The kernel-drop probe: offsets for the drop program from the running kernel's BTF, drop
//! reason names from its `skb_drop_reason` enum, and drop locations named from /proc/kallsyms.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    sync::Mutex,
};

use aya::programs::{BtfTracePoint, Link as _};
use flowd_common::KernelOffsets;

use super::btf::{BtfError, KernelBtf};

pub const DROP_PROGRAM: &str = "flowd_kfree_skb";
const REASON_PREFIX: &str = "SKB_DROP_REASON_";

/// Reads every offset the drop program needs; any missing field disables drop capture.
pub fn kernel_offsets(btf: &KernelBtf) -> Result<KernelOffsets, BtfError> {
    let reasons = btf.enum_values("skb_drop_reason")?;
    let consumed = reasons
        .iter()
        .find(|(name, _)| name == "SKB_CONSUMED")
        .map(|(_, value)| *value as u32)
        // Kernels before SKB_CONSUMED existed free consumed packets through another tracepoint.
        .unwrap_or(u32::MAX);
    Ok(KernelOffsets {
        skb_head: btf.member_offset("sk_buff", "head")?,
        skb_network_header: btf.member_offset("sk_buff", "network_header")?,
        skb_protocol: btf.member_offset("sk_buff", "protocol")?,
        skb_dev: btf.member_offset("sk_buff", "dev")?,
        dev_ifindex: btf.member_offset("net_device", "ifindex")?,
        dev_nd_net: btf.member_offset("net_device", "nd_net")?,
        net_cookie: btf.member_offset("net", "net_cookie")?,
        reason_consumed: consumed,
        valid: 1,
    })
}

/// Names for drop reasons and locations, shared with the flow stage.
#[derive(Debug, Default)]
pub struct DropNames {
    reasons: HashMap<u32, String>,
    locations: Mutex<HashMap<u64, String>>,
}

impl DropNames {
    pub fn from_btf(btf: &KernelBtf) -> Self {
        let reasons = btf
            .enum_values("skb_drop_reason")
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| {
                let short = name.strip_prefix(REASON_PREFIX).unwrap_or(&name).to_owned();
                (value as u32, short)
            })
            .collect();
        Self {
            reasons,
            locations: Mutex::new(HashMap::new()),
        }
    }

    /// The kernel's name for a drop reason without its prefix, e.g. `NETFILTER_DROP`.
    pub fn reason(&self, value: u32) -> String {
        self.reasons
            .get(&value)
            .cloned()
            .unwrap_or_else(|| format!("REASON_{value}"))
    }

    /// `function+0xoffset` for a kernel address, cached; the address in hex when kallsyms hides
    /// addresses (kptr_restrict) or does not know it.
    pub fn location(&self, address: u64) -> String {
        if address == 0 {
            return String::new();
        }
        if let Some(known) = self
            .locations
            .lock()
            .ok()
            .and_then(|l| l.get(&address).cloned())
        {
            return known;
        }
        let name = symbolise(address).unwrap_or_else(|| format!("{address:#x}"));
        if let Ok(mut locations) = self.locations.lock() {
            locations.insert(address, name.clone());
        }
        name
    }
}

/// Nearest text symbol at or below `address` in /proc/kallsyms.
fn symbolise(address: u64) -> Option<String> {
    let file = std::fs::File::open("/proc/kallsyms").ok()?;
    let mut best: Option<(u64, String)> = None;
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let mut parts = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if addr == 0 || addr > address {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| addr > *b) {
            best = Some((addr, name.to_owned()));
        }
    }
    best.map(|(start, name)| format!("{name}+{:#x}", address - start))
}

/// Loads and attaches the drop program. Its absence is not fatal: flows are still captured,
/// they just cannot say why the kernel dropped a packet.
pub fn attach(ebpf: &mut aya::Ebpf) -> Result<DropProbe, String> {
    let btf = aya::Btf::from_sys_fs().map_err(|err| format!("kernel BTF: {err}"))?;
    let program: &mut BtfTracePoint = ebpf
        .program_mut(DROP_PROGRAM)
        .ok_or("the drop program is missing from the object")?
        .try_into()
        .map_err(|err| format!("{err}"))?;
    program
        .load("kfree_skb", &btf)
        .map_err(|err| format!("loading tp_btf/kfree_skb: {err}"))?;
    let id = program
        .attach()
        .map_err(|err| format!("attaching tp_btf/kfree_skb: {err}"))?;
    let link = program
        .take_link(id)
        .map_err(|err| format!("taking the kfree_skb link: {err}"))?;
    Ok(DropProbe { link: Some(link) })
}

/// The attached drop program; detached when dropped or explicitly.
pub struct DropProbe {
    link: Option<aya::programs::tp_btf::BtfTracePointLink>,
}

impl DropProbe {
    pub fn detach(mut self) {
        if let Some(link) = self.link.take() {
            if let Err(err) = link.detach() {
                tracing::debug!(error = %err, "detaching kfree_skb");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_reasons_and_zero_locations_have_stable_names() {
        let names = DropNames::default();
        assert_eq!(names.reason(77), "REASON_77");
        assert_eq!(names.location(0), "");
    }

    #[test]
    fn this_kernel_names_netfilter_drops() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            eprintln!("SKIPPED: no kernel BTF");
            return;
        };
        let names = DropNames::from_btf(&btf);
        let value = btf
            .enum_values("skb_drop_reason")
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP")
            .unwrap()
            .1;
        assert_eq!(names.reason(value as u32), "NETFILTER_DROP");
        assert!(kernel_offsets(&btf).unwrap().valid == 1);
    }
}
