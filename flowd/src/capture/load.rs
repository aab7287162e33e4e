use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::SchedClassifier,
    Ebpf, EbpfLoader,
};
use flowd_common::{FlowKey, FlowStats, ReportedCounts};

use super::CaptureError;

/// The compiled kernel programs, embedded so the agent is a single binary.
pub(super) static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowd"));

pub const INGRESS_PROGRAM: &str = "flowd_ingress";
pub const EGRESS_PROGRAM: &str = "flowd_egress";

#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    pub flow_entries: u32,
    pub ring_buffer_bytes: u32,
}

/// Everything fixed at load time.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub sizes: MapSizes,
    /// Cookie of the network namespace the programs will be attached in (see
    /// [`crate::netns::current_cookie`]); stamped on every flow key.
    pub netns_cookie: u64,
    /// Which kfree_skb hook reports kernel drops.
    pub drop_probe: super::DropProbeMode,
}

/// What the drop probe will be, decided before loading: its globals are patched in at load.
struct DropSetup {
    mode: super::DropProbeMode,
    offsets: flowd_common::KernelOffsets,
    fields: flowd_common::TracepointFields,
    names: super::DropNames,
}

/// Reads kernel BTF and, for the classic tracepoint, its format file. Any failure leaves the
/// probe off (`Off`) with a warning: capture goes on without drop reasons.
fn drop_setup(requested: super::DropProbeMode) -> DropSetup {
    use super::DropProbeMode as Mode;
    let off = || DropSetup {
        mode: Mode::Off,
        offsets: flowd_common::KernelOffsets::default(),
        fields: flowd_common::TracepointFields::default(),
        names: super::DropNames::default(),
    };
    if requested == Mode::Off {
        return off();
    }
    let btf = super::btf::KernelBtf::from_sys_fs()
        .map_err(|err| err.to_string())
        .and_then(|btf| {
            let offsets = super::drops::kernel_offsets(&btf).map_err(|err| err.to_string())?;
            Ok((offsets, super::DropNames::from_btf(&btf)))
        });
    let mode = match (requested, &btf) {
        (Mode::Auto, Ok(_)) => Mode::Btf,
        (Mode::Auto, Err(_)) => Mode::Tracepoint,
        (chosen, _) => chosen,
    };
    if mode == Mode::Btf {
        return match btf {
            Ok((offsets, names)) => DropSetup {
                mode,
                offsets,
                fields: flowd_common::TracepointFields::default(),
                names,
            },
            Err(err) => {
                tracing::warn!(error = %err, "kernel drop reasons unavailable (dropProbe: btf needs kernel BTF; try tracepoint)");
                off()
            }
        };
    }
    let format = match super::drops::read_format() {
        Ok(format) => format,
        Err(err) => {
            tracing::warn!(error = %err, "kernel drop reasons unavailable");
            return off();
        }
    };
    let (offsets, names) = match btf {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(error = %err, "no kernel BTF: drops are counted by reason, not tied to flows");
            let offsets = flowd_common::KernelOffsets {
                reason_consumed: format.reason_consumed(),
                ..Default::default()
            };
            (offsets, super::DropNames::from_reasons(format.reasons))
        }
    };
    DropSetup {
        mode,
        offsets,
        fields: format.fields,
        names,
    }
}

/// Programs loaded into the kernel and the maps the agent reads, taken out of the object.
pub struct LoadedPrograms {
    pub ebpf: Ebpf,
    /// Attached kfree_skb probe; `None` when this kernel cannot report drop reasons.
    pub drops: Option<super::DropProbe>,
    /// Socket hooks naming the process behind local sockets; `None` when unavailable.
    pub sockets: Option<super::sockets::SocketHooks>,
    pub drop_names: std::sync::Arc<super::DropNames>,
    pub flows: HashMap<MapData, FlowKey, FlowStats>,
    /// What was reported of each flow still in `flows`; written only when state is pinned.
    pub reported: HashMap<MapData, FlowKey, ReportedCounts>,
    pub events: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    /// Every kernel drop on the host by reason (`DROP_REASON_SLOTS` slots).
    pub drop_reasons: PerCpuArray<MapData, u64>,
    /// Attached veths whose peer is in another namespace: ifindex to that namespace's id, for
    /// the tc programs' socket lookups.
    pub peer_netns: HashMap<MapData, u32, u32>,
    /// Keeps the kernel-side log ring drained into tracing; absent if the object has no logs.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// Loads the programs; with `pins`, over the maps pinned there (created and pinned when absent).
pub fn load_programs(
    options: LoadOptions,
    pins: Option<&super::pins::PinDir>,
) -> Result<LoadedPrograms, CaptureError> {
    raise_memlock_limit();
    let drops = drop_setup(options.drop_probe);
    let mut loader = EbpfLoader::new();
    loader
        .override_global("NETNS_COOKIE", &options.netns_cookie, true)
        .override_global("KERNEL_OFFSETS", &drops.offsets, true)
        .override_global("TRACEPOINT_FIELDS", &drops.fields, true)
        .map_max_entries("FLOWS", options.sizes.flow_entries)
        .map_max_entries("REPORTED", options.sizes.flow_entries)
        .map_max_entries("EVENTS", options.sizes.ring_buffer_bytes);
    if let Some(pins) = pins {
        for name in super::pins::PINNED_MAPS {
            loader.map_pin_path(name, pins.map_path(name));
        }
    }
    let mut ebpf = loader.load(PROGRAMS).map_err(CaptureError::from_load)?;
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => Some(logger),
        Err(err) => {
            tracing::debug!(error = %err, "kernel-side logging unavailable");
            None
        }
    };
    for name in [INGRESS_PROGRAM, EGRESS_PROGRAM] {
        let program: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or(CaptureError::Missing(name))?
            .try_into()
            .map_err(|source| CaptureError::Verify {
                program: name,
                source,
            })?;
        program.load().map_err(|source| CaptureError::Verify {
            program: name,
            source,
        })?;
    }
    let drop_names = drops.names;
    let drops = match drops.mode {
        super::DropProbeMode::Off => None,
        mode => match super::drops::attach(&mut ebpf, mode) {
            Ok(probe) => Some(probe),
            Err(err) => {
                tracing::warn!(error = %err, "kernel drop reasons unavailable");
                None
            }
        },
    };
    let sockets = match super::sockets::attach(&mut ebpf) {
        Ok(hooks) => {
            tracing::info!(cgroup = %hooks.cgroup.display(), "socket hooks attached");
            Some(hooks)
        }
        Err(err) => {
            tracing::warn!(error = %err, "flows will not name their processes");
            None
        }
    };
    let flows = take_map(&mut ebpf, "FLOWS")?;
    let reported = take_map(&mut ebpf, "REPORTED")?;
    let events = take_map(&mut ebpf, "EVENTS")?;
    let counters = take_map(&mut ebpf, "COUNTERS")?;
    let drop_reasons = take_map(&mut ebpf, "DROP_REASONS")?;
    let peer_netns = take_map(&mut ebpf, "PEER_NETNS")?;
    Ok(LoadedPrograms {
        ebpf,
        drops,
        sockets,
        drop_names: std::sync::Arc::new(drop_names),
        flows,
        reported,
        events,
        counters,
        drop_reasons,
        peer_netns,
        logger,
    })
}

fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, CaptureError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(CaptureError::Missing(name))?;
    M::try_from(map).map_err(|source| CaptureError::Map { name, source })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones to the cgroup. Raising
/// the limit needs CAP_SYS_RESOURCE, which a container often lacks, so failure is not fatal.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK; fine on kernels that charge BPF memory to the cgroup"
        );
    }
}
