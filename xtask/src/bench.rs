//! `cargo xtask bench`: runs the benchmark program and records its table in BENCHMARKS.md with
//! the command, the machine and the date.

use std::process::Command;

use anyhow::Context as _;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{} GiB", kb / 1024 / 1024))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {memory}, Linux {kernel}")
}

pub fn run() -> anyhow::Result<()> {
    let root = crate::workspace_root()?;
    let output = crate::cargo_command(&["bench", "--package", "flowd", "--bench", "bench"])?
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo bench")?;
    anyhow::ensure!(
        output.status.success(),
        "the benchmark failed: {}",
        output.status
    );
    let table: String = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    print!("{table}");
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let document = format!(
        "# Benchmarks\n\n\
         Produced by `cargo xtask bench` (as root, so the kernel and agent sections run) on \
         {machine}, {date}. Each figure is measured next to a baseline run in the same go; the \
         ratio is flowd / baseline. Rerun after changes that touch the data path.\n\n\
         {table}\n{notes}",
        machine = machine(),
        notes = NOTES
    );
    std::fs::write(root.join("BENCHMARKS.md"), document).context("writing BENCHMARKS.md")?;
    println!("xtask: BENCHMARKS.md updated");
    Ok(())
}

const NOTES: &str = "\
## What each line measures

- **history ingest**: 200,000 records appended to the redb history in batches of 1,000, one \
durable commit per batch. Baseline: the same encoded records appended to a plain file with one \
fsync per batch, the cheapest durable log.
- **dropped/denied in the last hour**: 1,000,000 stored records, 1% not forwarded, 100,000 in the \
last hour; the query reads the not-forwarded index. Baseline: a full scan with the same filter.
- **GetFlows streaming**: 200,000 stored records streamed to one tonic client over the unix socket. \
Baseline: the same messages, length-delimited, through a raw unix socket pair in one process.
- **tc program**: `BPF_PROG_TEST_RUN` on the loaded `flowd_ingress` (1,000,000 repeats for an \
existing flow; 20,000 distinct frames run once each for new flows), minus the harness's own cost \
per run, measured with a two-instruction program on the same frame.
- **under real traffic**: `kernel.bpf_stats` run time over run count of both programs while a \
20 MiB TCP transfer and 2,000 UDP exchanges cross the veth pair (GSO packets included).
- **agent memory**: resident set of a real `flowd run` with 100,000 connections in its kernel map \
(one UDP datagram to each of 100,000 destinations), against the same agent idle.
";
