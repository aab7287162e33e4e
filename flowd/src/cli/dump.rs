use std::{
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
    time::SystemTime,
};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use super::{format, Target};
use crate::{
    flow::wire::timestamp,
    proto::v1::{self as pb, get_flows_response::Event},
};

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub target: Target,
    /// Output: one compact line a flow, more columns, or JSON lines (proto3 JSON mapping).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Compact)]
    pub output: Output,
    /// Colour the verdict: auto (on a terminal), always, never.
    #[arg(long, value_enum, default_value_t = Colour::Auto)]
    pub color: Colour,
    /// Show the last N recorded flows [default: 20, or 0 with --follow].
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
    /// Keep printing new flows as they are recorded.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Flows that ended since this time: a duration ago (1h, 30m) or an RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Flows that ended before this time: a duration ago or an RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Resume after this cursor (from a previous dump's JSON, or a gap message).
    #[arg(long, value_name = "CURSOR", conflicts_with = "resume_token")]
    pub after_cursor: Option<u64>,
    /// Through a relay: resume every node where a checkpoint left off (the token `-o json`
    /// prints in checkpoint lines, or the one printed when the dump ends).
    #[arg(long, value_name = "TOKEN")]
    pub resume_token: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Each flag narrows the output (AND); repeating a flag widens it (OR).
#[derive(Debug, Args, Default)]
pub struct FilterArgs {
    /// forwarded, dropped, denied, not-enforced.
    #[arg(long, value_enum)]
    pub verdict: Vec<VerdictArg>,
    /// Either side's address or CIDR.
    #[arg(long, value_name = "IP|CIDR")]
    pub ip: Vec<String>,
    #[arg(long, value_name = "IP|CIDR")]
    pub from_ip: Vec<String>,
    #[arg(long, value_name = "IP|CIDR")]
    pub to_ip: Vec<String>,
    /// Either side's port.
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u32>,
    #[arg(long, value_name = "PORT")]
    pub to_port: Vec<u32>,
    /// tcp, udp, icmp, icmpv6, sctp or a protocol number.
    #[arg(long, value_name = "PROTOCOL")]
    pub protocol: Vec<String>,
    #[arg(long, value_enum)]
    pub outcome: Vec<OutcomeArg>,
    /// Kernel drop reason, e.g. NETFILTER_DROP.
    #[arg(long, value_name = "REASON")]
    pub drop_reason: Vec<String>,
    /// Kubernetes namespace of either side.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Vec<String>,
    /// Pod of either side: name prefix, or namespace/name-prefix.
    #[arg(long, value_name = "[NS/]POD")]
    pub pod: Vec<String>,
    /// Label selector on either side, e.g. app=web,tier!=db.
    #[arg(long, value_name = "SELECTOR")]
    pub label: Vec<String>,
    /// Workload of either side: name or Kind/name.
    #[arg(long, value_name = "[KIND/]NAME")]
    pub workload: Vec<String>,
    /// Service of either side: [namespace/]name.
    #[arg(long, value_name = "[NS/]NAME")]
    pub service: Vec<String>,
    /// Deciding policy: name, namespace/name or tier/name.
    #[arg(long, value_name = "POLICY")]
    pub policy: Vec<String>,
    #[arg(long, value_name = "NODE")]
    pub node: Vec<String>,
    #[arg(long, value_name = "NAME")]
    pub interface: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Compact,
    Wide,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Colour {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    Forwarded,
    Dropped,
    Denied,
    NotEnforced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    Established,
    Closed,
    Reset,
    Refused,
    Unanswered,
    Answered,
    RequestOnly,
    Unreachable,
}

fn protocol_number(name: &str) -> anyhow::Result<i32> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "tcp" => pb::Protocol::Tcp as i32,
        "udp" => pb::Protocol::Udp as i32,
        "icmp" => pb::Protocol::Icmp as i32,
        "icmpv6" | "ipv6-icmp" => pb::Protocol::Icmpv6 as i32,
        "sctp" => pb::Protocol::Sctp as i32,
        other => match other.parse::<u8>() {
            Ok(number) => i32::from(number),
            Err(_) => {
                bail!("--protocol {name}: expected tcp, udp, icmp, icmpv6, sctp or a number 0-255")
            }
        },
    })
}

impl FilterArgs {
    /// The flags as one API filter, or `None` when no flag narrows anything.
    pub fn to_filter(&self) -> anyhow::Result<Option<pb::FlowFilter>> {
        let filter = pb::FlowFilter {
            verdict: self
                .verdict
                .iter()
                .map(|v| match v {
                    VerdictArg::Forwarded => pb::Verdict::Forwarded,
                    VerdictArg::Dropped => pb::Verdict::Dropped,
                    VerdictArg::Denied => pb::Verdict::Denied,
                    VerdictArg::NotEnforced => pb::Verdict::NotEnforced,
                } as i32)
                .collect(),
            ip: self.ip.clone(),
            source_ip: self.from_ip.clone(),
            destination_ip: self.to_ip.clone(),
            port: self.port.clone(),
            destination_port: self.to_port.clone(),
            protocol: self
                .protocol
                .iter()
                .map(|p| protocol_number(p))
                .collect::<anyhow::Result<_>>()?,
            outcome: self
                .outcome
                .iter()
                .map(|o| match o {
                    OutcomeArg::Established => pb::Outcome::Established,
                    OutcomeArg::Closed => pb::Outcome::Closed,
                    OutcomeArg::Reset => pb::Outcome::Reset,
                    OutcomeArg::Refused => pb::Outcome::Refused,
                    OutcomeArg::Unanswered => pb::Outcome::Unanswered,
                    OutcomeArg::Answered => pb::Outcome::Answered,
                    OutcomeArg::RequestOnly => pb::Outcome::RequestOnly,
                    OutcomeArg::Unreachable => pb::Outcome::Unreachable,
                } as i32)
                .collect(),
            drop_reason: self.drop_reason.clone(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            label: self.label.clone(),
            workload: self.workload.clone(),
            service: self.service.clone(),
            policy: self.policy.clone(),
            node: self.node.clone(),
            interface: self.interface.clone(),
            ..Default::default()
        };
        Ok((filter != pb::FlowFilter::default()).then_some(filter))
    }
}

/// A duration ago ("90s", "1h") or an RFC 3339 time.
pub fn parse_time(
    flag: &str,
    text: &str,
    now: SystemTime,
) -> anyhow::Result<pbjson_types::Timestamp> {
    let time = match humantime::parse_duration(text) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(text).with_context(|| {
            format!("{flag} {text}: expected a duration ago (30s, 1h) or a time such as 2026-11-26T10:00:00Z")
        })?,
    };
    Ok(timestamp(time))
}

pub async fn execute(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time("--since", t, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time("--until", t, now))
        .transpose()?;
    let ranged = since.is_some()
        || until.is_some()
        || args.after_cursor.is_some()
        || args.resume_token.is_some();
    let last = args
        .last
        .unwrap_or(if args.follow || ranged { 0 } else { 20 });
    let request = pb::GetFlowsRequest {
        last,
        follow: args.follow,
        since,
        until,
        after_cursor: args.after_cursor,
        allow: args.filter.to_filter()?.into_iter().collect(),
        deny: Vec::new(),
        watermarks: false,
        resume_token: args.resume_token.clone().unwrap_or_default(),
    };
    let mut client = args.target.connect().await?;
    let mut stream = client
        .get_flows(request)
        .await
        .map_err(|status| anyhow::anyhow!("the agent refused the request: {}", status.message()))?
        .into_inner();
    let colour = match args.color {
        Colour::Always => true,
        Colour::Never => false,
        Colour::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Compact => writeln!(out, "{}", format::TABLE_HEADER)?,
        Output::Wide => writeln!(out, "{}", format::WIDE_HEADER)?,
        Output::Json => {}
    }
    let mut resume_token = None;
    while let Some(response) = stream
        .message()
        .await
        .map_err(|status| anyhow::anyhow!("the flow stream failed: {}", status.message()))?
    {
        match (response.event, args.output) {
            (Some(Event::Flow(flow)), Output::Compact) => writeln!(
                out,
                "{}",
                format::colourise(format::flow_line(&flow), &flow, colour)
            )?,
            (Some(Event::Flow(flow)), Output::Wide) => writeln!(
                out,
                "{}",
                format::colourise(format::wide_line(&flow), &flow, colour)
            )?,
            (Some(Event::Flow(flow)), Output::Json) => {
                writeln!(out, "{}", crate::proto::flow_json(&flow)?)?
            }
            (Some(Event::LostRecords(lost)), output) => {
                if lost.node.is_empty() {
                    eprintln!(
                        "flowd: {} records skipped because this reader fell behind; \
                         `flowd dump --after-cursor {}` replays them",
                        lost.count, lost.resume_after
                    );
                } else {
                    eprintln!(
                        "flowd: {} records of node {} are gone from its history (after cursor {}); \
                         the stream goes on from cursor {}",
                        lost.count, lost.node, lost.resume_after, lost.next_cursor
                    );
                }
                if output == Output::Json {
                    let marker = pb::GetFlowsResponse {
                        event: Some(Event::LostRecords(lost)),
                    };
                    writeln!(out, "{}", serde_json::to_string(&marker)?)?;
                }
            }
            (Some(Event::NodeStatus(node)), output) => {
                eprintln!("flowd: {}", node_line(&node));
                if output == Output::Json {
                    let marker = pb::GetFlowsResponse {
                        event: Some(Event::NodeStatus(node)),
                    };
                    writeln!(out, "{}", serde_json::to_string(&marker)?)?;
                }
            }
            (Some(Event::Checkpoint(checkpoint)), output) => {
                if output == Output::Json {
                    let marker = pb::GetFlowsResponse {
                        event: Some(Event::Checkpoint(checkpoint.clone())),
                    };
                    writeln!(out, "{}", serde_json::to_string(&marker)?)?;
                }
                resume_token = Some(checkpoint.resume_token);
            }
            (Some(Event::Watermark(_)) | None, _) => {}
        }
        if args.follow {
            out.flush()?;
        }
    }
    if let Some(token) = resume_token.filter(|_| args.output != Output::Json) {
        eprintln!("flowd: to go on from here: flowd dump --resume-token {token}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A node's state as one line: what a relay says about the nodes it reads.
pub fn node_line(node: &pb::NodeStatus) -> String {
    let state = pb::NodeState::try_from(node.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("NODE_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| node.state.to_string());
    let mut line = format!(
        "node {} ({}) {}",
        if node.node.is_empty() {
            "?"
        } else {
            &node.node
        },
        node.address,
        state.replace('_', " ")
    );
    if node.lag_records > 0 {
        line.push_str(&format!(", {} records behind", node.lag_records));
    }
    if !node.message.is_empty() {
        line.push_str(&format!(": {}", node.message));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            parse_time("--since", "1h", now).unwrap().seconds,
            10_000 - 3600
        );
        assert_eq!(
            parse_time("--since", "1970-01-01T00:01:40Z", now)
                .unwrap()
                .seconds,
            100
        );
        let err = parse_time("--since", "yesterday-ish", now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--since yesterday-ish"), "{err}");
    }

    #[test]
    fn flags_become_one_filter() {
        let args = FilterArgs {
            verdict: vec![VerdictArg::Dropped, VerdictArg::Denied],
            protocol: vec!["tcp".into(), "47".into()],
            to_port: vec![42001],
            ..Default::default()
        };
        let filter = args.to_filter().unwrap().unwrap();
        assert_eq!(
            filter.verdict,
            [pb::Verdict::Dropped as i32, pb::Verdict::Denied as i32]
        );
        assert_eq!(filter.protocol, [6, 47]);
        assert_eq!(filter.destination_port, [42001]);
        assert!(FilterArgs::default().to_filter().unwrap().is_none());
        let bad = FilterArgs {
            protocol: vec!["tcpp".into()],
            ..Default::default()
        };
        assert!(bad
            .to_filter()
            .unwrap_err()
            .to_string()
            .contains("--protocol tcpp"));
    }
}
