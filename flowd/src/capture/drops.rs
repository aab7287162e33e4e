//! The kernel-drop probe: `tp_btf/kfree_skb`, or the classic `skb:kfree_skb` tracepoint where
//! that cannot load. Offsets for the drop program come from the running kernel's BTF, drop
//! reason names from its `skb_drop_reason` enum (or, without BTF, from the tracepoint's format
//! file), and drop locations are named from /proc/kallsyms.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::programs::{BtfTracePoint, Link as _, TracePoint};
use flowd_common::{KernelOffsets, TracepointFields};

use super::btf::{BtfError, KernelBtf};

pub const DROP_PROGRAM: &str = "flowd_kfree_skb";
pub const TRACEPOINT_PROGRAM: &str = "flowd_kfree_skb_tracepoint";
const REASON_PREFIX: &str = "SKB_DROP_REASON_";

/// Which kfree_skb hook reports kernel drops, as configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DropProbeMode {
    /// tp_btf where the kernel has BTF, the classic tracepoint otherwise.
    #[default]
    Auto,
    /// tp_btf/kfree_skb only (needs kernel BTF).
    Btf,
    /// The classic skb:kfree_skb tracepoint (needs tracefs; mounted if absent). Without BTF it
    /// counts drops by reason but cannot tie them to flows.
    Tracepoint,
    /// No drop probe: flows are still captured, without drop reasons.
    Off,
}

/// What the classic tracepoint's format file says: where its fields are, and the kernel's
/// names for drop reasons (its `__print_symbolic` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracepointFormat {
    pub fields: TracepointFields,
    pub reasons: Vec<(u32, String)>,
}

impl TracepointFormat {
    /// `SKB_CONSUMED` is not a drop: its value from the table, else 1 when the table leaves 1 out
    /// (kernels that name consumed frees elsewhere), else none.
    pub fn reason_consumed(&self) -> u32 {
        let named = |value: u32| self.reasons.iter().find(|(v, _)| *v == value);
        match self.reasons.iter().find(|(_, name)| name == "CONSUMED") {
            Some((value, _)) => *value,
            None if named(1).is_none() => 1,
            None => u32::MAX,
        }
    }
}

/// Parses `events/skb/kfree_skb/format`.
pub fn parse_format(text: &str) -> Result<TracepointFormat, String> {
    let offset_of = |field: &str| -> Result<u32, String> {
        text.lines()
            .map(str::trim)
            .filter(|line| line.starts_with("field:"))
            .find_map(|line| {
                let declaration = line.split(';').next()?;
                let name = declaration.rsplit([' ', '*']).next()?;
                if name != field {
                    return None;
                }
                line.split(';')
                    .find_map(|part| part.trim().strip_prefix("offset:"))
                    .and_then(|offset| offset.parse().ok())
            })
            .ok_or_else(|| format!("the kfree_skb tracepoint has no `{field}` field"))
    };
    let fields = TracepointFields {
        skbaddr: offset_of("skbaddr")?,
        location: offset_of("location")?,
        reason: offset_of("reason")?,
        valid: 1,
    };
    let mut reasons = Vec::new();
    if let Some(table) = text.split("__print_symbolic(").nth(1) {
        for entry in table.split('{').skip(1) {
            let Some((value, rest)) = entry.split_once(',') else {
                continue;
            };
            let name = rest.split('"').nth(1);
            if let (Ok(value), Some(name)) = (value.trim().parse::<u32>(), name) {
                reasons.push((value, name.to_owned()));
            }
        }
    }
    Ok(TracepointFormat { fields, reasons })
}

/// tracefs, mounted at /sys/kernel/tracing if it is mounted nowhere aya looks.
fn tracefs() -> Result<PathBuf, String> {
    let candidates = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    if let Some(found) = candidates
        .iter()
        .map(Path::new)
        .find(|path| path.join("events").is_dir())
    {
        return Ok(found.to_path_buf());
    }
    let target = Path::new(candidates[0]);
    nix::mount::mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|err| {
        format!(
            "tracefs is not mounted and mounting it at {} failed ({err}): mount it              (mount -t tracefs nodev {0}, or a hostPath in the pod), or set dropProbe: btf",
            target.display()
        )
    })?;
    Ok(target.to_path_buf())
}

/// The classic tracepoint's format, mounting tracefs when needed.
pub fn read_format() -> Result<TracepointFormat, String> {
    let path = tracefs()?.join("events/skb/kfree_skb/format");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        format!(
            "{}: {err} (this kernel has no skb:kfree_skb)",
            path.display()
        )
    })?;
    parse_format(&text).map_err(|err| format!("{}: {err}", path.display()))
}

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
        Self::from_reasons(
            btf.enum_values("skb_drop_reason")
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| {
                    let short = name.strip_prefix(REASON_PREFIX).unwrap_or(&name).to_owned();
                    (value as u32, short)
                }),
        )
    }

    /// From (value, name) pairs, names without the `SKB_DROP_REASON_` prefix.
    pub fn from_reasons(reasons: impl IntoIterator<Item = (u32, String)>) -> Self {
        Self {
            reasons: reasons.into_iter().collect(),
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
    nearest_symbol(BufReader::new(file).lines(), address)
}

/// Nearest text symbol at or below `address` among kallsyms-format `lines`, as `name+0xoffset`.
pub fn nearest_symbol(
    lines: impl Iterator<Item = std::io::Result<String>>,
    address: u64,
) -> Option<String> {
    let mut best: Option<(u64, String)> = None;
    for line in lines.map_while(Result::ok) {
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

/// Loads and attaches the drop program for `mode` (`Btf` or `Tracepoint`). Its absence is not
/// fatal: flows are still captured, they just cannot say why the kernel dropped a packet.
pub fn attach(ebpf: &mut aya::Ebpf, mode: DropProbeMode) -> Result<DropProbe, String> {
    if mode == DropProbeMode::Tracepoint {
        let program: &mut TracePoint = ebpf
            .program_mut(TRACEPOINT_PROGRAM)
            .ok_or("the tracepoint drop program is missing from the object")?
            .try_into()
            .map_err(|err| format!("{err}"))?;
        program
            .load()
            .map_err(|err| format!("loading tracepoint/skb/kfree_skb: {err}"))?;
        let id = program
            .attach("skb", "kfree_skb")
            .map_err(|err| format!("attaching tracepoint/skb/kfree_skb: {err}"))?;
        let link = program
            .take_link(id)
            .map_err(|err| format!("taking the kfree_skb link: {err}"))?;
        return Ok(DropProbe {
            link: Some(DropLink::Tracepoint(link)),
            program: TRACEPOINT_PROGRAM,
        });
    }
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
    Ok(DropProbe {
        link: Some(DropLink::Btf(link)),
        program: DROP_PROGRAM,
    })
}

enum DropLink {
    Btf(aya::programs::tp_btf::BtfTracePointLink),
    Tracepoint(aya::programs::trace_point::TracePointLink),
}

/// The attached drop program; detached when dropped or explicitly.
pub struct DropProbe {
    link: Option<DropLink>,
    /// The program's name, for status.
    pub program: &'static str,
}

impl DropProbe {
    pub fn detach(mut self) {
        let detached = match self.link.take() {
            Some(DropLink::Btf(link)) => link.detach(),
            Some(DropLink::Tracepoint(link)) => link.detach(),
            None => Ok(()),
        };
        if let Err(err) = detached {
            tracing::debug!(error = %err, "detaching kfree_skb");
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

    /// This machine's kernel (6.18): `rx_sk` sits between `location` and `protocol`.
    const FORMAT: &str = "name: kfree_skb
ID: 2310
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;

print fmt: \"skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s\", REC->skbaddr, REC->rx_sk, REC->protocol, REC->location, __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 3, \"NO_SOCKET\" }, { 12, \"NETFILTER_DROP\" }, { 128, \"MAX\" })
";

    #[test]
    fn the_tracepoint_format_gives_field_offsets_and_reason_names() {
        let format = parse_format(FORMAT).unwrap();
        assert_eq!(
            format.fields,
            TracepointFields {
                skbaddr: 8,
                location: 16,
                reason: 36,
                valid: 1
            }
        );
        let names = DropNames::from_reasons(format.reasons.clone());
        assert_eq!(names.reason(12), "NETFILTER_DROP");
        assert_eq!(names.reason(3), "NO_SOCKET");
        assert_eq!(
            format.reason_consumed(),
            1,
            "1 is left out of the table: consumed"
        );
        let older = FORMAT.replace("{ 2, \"NOT_SPECIFIED\" }", "{ 1, \"NOT_SPECIFIED\" }");
        assert_eq!(parse_format(&older).unwrap().reason_consumed(), u32::MAX);
        let err = parse_format(&FORMAT.replace("reason;", "why;")).unwrap_err();
        assert!(err.contains("`reason`"), "{err}");
    }

    #[test]
    fn this_kernels_tracepoint_format_parses() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root to mount tracefs");
            return;
        }
        let format = read_format().unwrap();
        assert!(format
            .reasons
            .iter()
            .any(|(_, name)| name == "NETFILTER_DROP"));
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
