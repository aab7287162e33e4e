//! Each loaded flowd program's run count and time, as the kernel keeps them while
//! `kernel.bpf_stats_enabled` is 1 (off by default: the accounting itself costs per run).

use aya::Ebpf;

const STATS_SWITCH: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// A loaded program by name and kernel id, taken once at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedProgram {
    pub name: String,
    pub id: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramRunStats {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

/// The programs of `ebpf` the kernel accepted (ones this kernel could not load are absent).
pub fn loaded_programs(ebpf: &Ebpf) -> Vec<LoadedProgram> {
    ebpf.programs()
        .filter_map(|(name, program)| {
            let info = program.info().ok()?;
            Some(LoadedProgram {
                name: name.to_owned(),
                id: info.id(),
            })
        })
        .collect()
}

/// Whether the kernel is counting program runs now.
pub fn stats_enabled() -> bool {
    std::fs::read_to_string(STATS_SWITCH).is_ok_and(|text| text.trim() == "1")
}

/// Run counts and times of `programs`, read from the kernel now; a program gone since is
/// left out.
pub fn run_stats(programs: &[LoadedProgram]) -> Vec<ProgramRunStats> {
    if programs.is_empty() {
        return Vec::new();
    }
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| {
            let program = programs.iter().find(|p| p.id == info.id())?;
            Some(ProgramRunStats {
                name: program.name.clone(),
                runs: info.run_count(),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            })
        })
        .collect()
}
