//! `flowd policy`: the evaluator as a tool. `eval` is a stable JSON-lines interface; `check` asks
//! what a policy set not yet applied would deny among recorded flows; `recommend` writes
//! least-privilege policies from observed traffic; `explain` prints one flow's whole trace.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, Write as _},
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
    time::SystemTime,
};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};

use super::{dump::parse_time, Target};
use crate::{
    policy::{
        self, explain, jsonl, Endpoint, EndpointResolver, FlowQuery, Icmp, ObservedFlow,
        PolicyEngine, Protocol, RecommendOptions, RecommendScope, StaticPods, Transport,
    },
    proto::v1 as pb,
};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Evaluate flows given as JSON lines (stable machine interface, see README).
    Eval(EvalArgs),
    /// Which recorded flows would a policy set (not applied yet) deny?
    Check(CheckArgs),
    /// Least-privilege policies allowing exactly the traffic observed.
    Recommend(RecommendArgs),
    /// One flow's decision with every policy and rule considered.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct Sources {
    /// Policy objects: a file or directory of Kubernetes/Calico policies (repeatable).
    #[arg(long = "policy-file", value_name = "PATH")]
    pub policy_files: Vec<PathBuf>,
    /// Pods and namespaces: a file or directory of Kubernetes objects (repeatable).
    #[arg(long = "metadata-file", value_name = "PATH")]
    pub metadata_files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// JSON lines of {"source", "destination", "port", "protocol"}; "-" reads standard input.
    #[arg(long, value_name = "FILE")]
    pub flows: PathBuf,
    /// Output format (JSON lines is the only one).
    #[arg(long, short = 'o', value_enum, default_value_t = EvalOutput::Json)]
    pub output: EvalOutput,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EvalOutput {
    Json,
}

/// Where recorded flows come from: the local agent, or a file of `flowd dump -o json` lines.
#[derive(Debug, Args)]
pub struct RecordedFlows {
    #[command(flatten)]
    pub target: Target,
    /// Read flows from this file of `flowd dump -o json` lines instead of the agent.
    #[arg(long, value_name = "FILE")]
    pub flows: Option<PathBuf>,
    /// From the agent: flows that ended since (a duration ago, or an RFC 3339 time).
    #[arg(long, value_name = "TIME", default_value = "24h")]
    pub since: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub sources: Sources,
    #[command(flatten)]
    pub recorded: RecordedFlows,
    /// Print the findings as JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// Pods and namespaces (labels are what recommended policies select on).
    #[arg(long = "metadata-file", value_name = "PATH")]
    pub metadata_files: Vec<PathBuf>,
    #[command(flatten)]
    pub recorded: RecordedFlows,
    /// Namespace to write policies for.
    #[arg(long)]
    pub namespace: String,
    /// Only the workload with these labels, e.g. app=core (otherwise one policy per workload).
    #[arg(long, value_name = "k=v,...")]
    pub workload: Option<String>,
    /// Policy dialect.
    #[arg(long, value_enum, default_value_t = Dialect::Kubernetes)]
    pub format: Dialect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    Kubernetes,
    Calico,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// NS/POD or IP.
    #[arg(long)]
    pub source: String,
    /// NS/POD or IP.
    #[arg(long)]
    pub destination: String,
    /// Destination port; required for TCP, UDP, SCTP and UDPLite.
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
    /// Source port, for rules that match source ports (unknown if left out).
    #[arg(long)]
    pub source_port: Option<u16>,
    /// ICMP (or ICMPv6) message type, for rules with `icmp`/`notICMP` (unknown if left out).
    #[arg(long)]
    pub icmp_type: Option<u8>,
    /// ICMP code of that type.
    #[arg(long, requires = "icmp_type", default_value_t = 0)]
    pub icmp_code: u8,
}

pub async fn execute(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Eval(args) => eval(args),
        PolicyCommand::Check(args) => check(args).await,
        PolicyCommand::Recommend(args) => recommend(args).await,
        PolicyCommand::Explain(args) => explain_one(args),
    }
}

/// Policies and pods, refusing to go on if a file could not be used at all; per-object problems
/// are reported on stderr and the rest still loads.
fn load(sources: &Sources) -> anyhow::Result<(PolicyEngine, StaticPods)> {
    if sources.policy_files.is_empty() {
        bail!("no policies: give at least one --policy-file");
    }
    let loaded = policy::load_paths(&sources.policy_files);
    for error in &loaded.errors {
        eprintln!("flowd: {error}");
    }
    // Objects skipped as unsupported: a policy flowd cannot evaluate must never look applied.
    for warning in &loaded.warnings {
        eprintln!("flowd: warning: {warning}");
    }
    let pods = load_pods(&sources.metadata_files);
    Ok((PolicyEngine::new(&loaded.policies), pods))
}

fn load_pods(paths: &[PathBuf]) -> StaticPods {
    let pods = StaticPods::load_paths(paths);
    for error in &pods.errors {
        eprintln!("flowd: {error}");
    }
    // Kinds the files hold but endpoints are not made of, one line per file and kind.
    for warning in &pods.warnings {
        eprintln!("flowd: warning: {warning}");
    }
    pods.pods
}

fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let (engine, pods) = load(&args.sources)?;
    let stdout = std::io::stdout().lock();
    if args.flows.as_os_str() == "-" {
        jsonl::run(&engine, &pods, std::io::stdin().lock(), stdout)?;
    } else {
        let file = std::fs::File::open(&args.flows)
            .with_context(|| format!("cannot read --flows {}", args.flows.display()))?;
        jsonl::run(&engine, &pods, std::io::BufReader::new(file), stdout)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The recorded flows, from a file of JSON lines or from the agent's history.
async fn recorded_flows(recorded: &RecordedFlows) -> anyhow::Result<Vec<pb::Flow>> {
    if let Some(path) = &recorded.flows {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read --flows {}", path.display()))?;
        let mut flows = Vec::new();
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let flow: pb::Flow = serde_json::from_str(&line).with_context(|| {
                format!(
                    "{} line {}: not a flow as `flowd dump -o json` prints",
                    path.display(),
                    number + 1
                )
            })?;
            flows.push(flow);
        }
        return Ok(flows);
    }
    let mut client = recorded.target.connect().await?;
    let since = parse_time("--since", &recorded.since, SystemTime::now())?;
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            since: Some(since),
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!("the agent refused the request: {}", status.message()))?
        .into_inner();
    let mut flows = Vec::new();
    while let Some(message) = stream.message().await? {
        if let Some(pb::get_flows_response::Event::Flow(flow)) = message.event {
            flows.push(flow);
        }
    }
    Ok(flows)
}

/// A recorded endpoint as the evaluator sees it: the pod from metadata when its address is
/// known, else what the record itself says.
fn endpoint(pods: &StaticPods, recorded: Option<&pb::Endpoint>) -> Option<Endpoint> {
    let recorded = recorded?;
    let ip: IpAddr = recorded.ip.parse().ok()?;
    if let Ok(known) = pods.resolve(&recorded.ip) {
        // A pod, a node, or a cluster IP with its services: more than the record says.
        if known.is_named() {
            return Some(known);
        }
    }
    if recorded.kind == pb::EndpointKind::Pod as i32 {
        let mut pod = Endpoint::pod(&recorded.namespace, &recorded.name, ip);
        pod.labels = recorded.labels.clone().into_iter().collect();
        return Some(pod);
    }
    Some(Endpoint::external(ip))
}

fn display(endpoint: &Endpoint, recorded: Option<&pb::Endpoint>) -> String {
    let workload = recorded
        .and_then(|r| r.workload.as_ref())
        .map(|w| format!("{}/{}", w.kind, w.name));
    match (&endpoint.namespace, workload, &endpoint.pod) {
        (Some(ns), Some(workload), _) => format!("{ns}/{workload}"),
        (Some(ns), None, Some(pod)) => format!("{ns}/{pod}"),
        _ => endpoint.ip.to_string(),
    }
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (engine, pods) = load(&args.sources)?;
    let flows = recorded_flows(&args.recorded).await?;
    // (source, destination, protocol, port) -> (flows, deciding side summary)
    let mut denied: BTreeMap<(String, String, String, u32), (u64, String)> = BTreeMap::new();
    for flow in &flows {
        let (Some(source), Some(destination)) = (
            endpoint(&pods, flow.source.as_ref()),
            endpoint(&pods, flow.destination.as_ref()),
        ) else {
            continue;
        };
        let port = flow.destination.as_ref().map(|d| d.port).unwrap_or(0);
        let source_port = flow.source.as_ref().map(|s| s.port).unwrap_or(0);
        // A field outside its wire range is not a flow the kernel could have seen: skipped.
        let (Ok(protocol), Ok(port16), Ok(source_port), Ok(icmp_type), Ok(icmp_code)) = (
            u8::try_from(flow.protocol),
            u16::try_from(port),
            u16::try_from(source_port),
            u8::try_from(flow.icmp_type),
            u8::try_from(flow.icmp_code),
        ) else {
            continue;
        };
        let protocol = Protocol::from_number(protocol);
        let transport = Transport::observed(protocol, source_port, port16, icmp_type, icmp_code);
        let evaluation = engine.evaluate_endpoints(&source, &destination, transport);
        if evaluation.allowed {
            continue;
        }
        let side = if evaluation.egress.allowed {
            &evaluation.ingress
        } else {
            &evaluation.egress
        };
        let key = (
            display(&source, flow.source.as_ref()),
            display(&destination, flow.destination.as_ref()),
            protocol.to_string(),
            port,
        );
        let entry = denied.entry(key).or_insert((0, explain::summary(side)));
        entry.0 += flow.connections.max(1);
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        for ((source, destination, protocol, port), (connections, decision)) in &denied {
            let line = serde_json::json!({
                "source": source, "destination": destination, "protocol": protocol,
                "port": port, "connections": connections, "decision": decision,
            });
            writeln!(out, "{line}")?;
        }
    } else if denied.is_empty() {
        writeln!(
            out,
            "{} recorded flows checked: the policies would deny none of them",
            flows.len()
        )?;
    } else {
        writeln!(
            out,
            "{} recorded flows checked; the policies would deny:",
            flows.len()
        )?;
        for ((source, destination, protocol, port), (connections, decision)) in &denied {
            writeln!(
                out,
                "  {source} -> {destination} {protocol}/{port}: {connections} connection(s), {decision}"
            )?;
        }
    }
    // Like grep and diff: 1 tells a script that something would be denied.
    Ok(if denied.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("--workload {text}: expected key=value pairs"))
        })
        .collect()
}

async fn recommend(args: RecommendArgs) -> anyhow::Result<ExitCode> {
    let pods = load_pods(&args.metadata_files);
    let flows = recorded_flows(&args.recorded).await?;
    let observed: Vec<ObservedFlow> = flows
        .iter()
        .filter(|f| {
            f.verdict == pb::Verdict::Forwarded as i32
                || f.verdict == pb::Verdict::Unspecified as i32
        })
        .filter_map(|f| {
            Some(ObservedFlow {
                source: endpoint(&pods, f.source.as_ref())?,
                destination: endpoint(&pods, f.destination.as_ref())?,
                protocol: Protocol::from_number(u8::try_from(f.protocol).ok()?),
                port: u16::try_from(f.destination.as_ref()?.port).ok()?,
            })
        })
        .collect();
    let scope = match &args.workload {
        Some(labels) => RecommendScope::Workload {
            namespace: args.namespace.clone(),
            labels: parse_labels(labels)?,
        },
        None => RecommendScope::Namespace(args.namespace.clone()),
    };
    let recommendations = policy::recommend(&observed, &scope, &RecommendOptions::default())?;
    if recommendations.is_empty() {
        eprintln!(
            "flowd: no observed traffic of namespace {} to base policies on",
            args.namespace
        );
    }
    for recommendation in &recommendations {
        for note in &recommendation.notes {
            eprintln!("flowd: {}: {note}", recommendation.name);
        }
    }
    print!(
        "{}",
        policy::recommend::to_yaml_stream(&recommendations, args.format == Dialect::Calico)
    );
    Ok(ExitCode::SUCCESS)
}

fn explain_one(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let (engine, pods) = load(&args.sources)?;
    let resolve = |text: &str, flag: &str| {
        pods.resolve(text)
            .map_err(|err| anyhow::anyhow!("--{flag} {text}: {err}"))
    };
    let protocol = Protocol::parse(&args.protocol).with_context(|| {
        format!(
            "--protocol {}: expected TCP, UDP, SCTP, ICMP, ICMPv6 or a number",
            args.protocol
        )
    })?;
    let port = match args.port {
        Some(port) => port,
        None if !protocol.has_ports() => 0,
        None => bail!("--port is required for {protocol}"),
    };
    if args.icmp_type.is_some() && !protocol.is_icmp() {
        bail!("--icmp-type: {protocol} is not ICMP or ICMPv6 (give --protocol ICMP)");
    }
    if args.source_port.is_some() && !protocol.has_ports() {
        bail!("--source-port: {protocol} has no ports");
    }
    let query = FlowQuery {
        source: resolve(&args.source, "source")?,
        destination: resolve(&args.destination, "destination")?,
        protocol,
        port,
        source_port: args.source_port,
        icmp: args.icmp_type.map(|kind| Icmp {
            kind,
            code: args.icmp_code,
        }),
    };
    let evaluation = engine.explain(&query);
    print!("{}", explain::explain(&query, &evaluation));
    Ok(ExitCode::SUCCESS)
}
