//! The JSON-lines interface of `flowd policy eval`.
//!
//! Input, one object per line:
//! `{"source": "NS/POD" | "IP", "destination": "NS/POD" | "IP", "port": 42001, "protocol": "TCP"}`
//! (`protocol` defaults to TCP; `port` may be left out only for port-less
//! protocols). Optional: `"sourcePort": 40000` (TCP, UDP, SCTP, UDPLite), and
//! `"icmpType": 8, "icmpCode": 0` (ICMP and ICMPv6; the code needs the type). Without
//! them a rule that matches source ports or an ICMP type cannot match, and a
//! `notPorts` or `notICMP` on them is taken as met. Each non-blank input line gives exactly one output line: the
//! input fields repeated, then `allowed`, `egress` and `ingress` (each with
//! `allowed`, `policy`, `kind`, `tier`, `rule`), `pending` when staged policies
//! exist, or `error` when the line could not be evaluated.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::endpoint::{FlowQuery, Icmp, Protocol};
use crate::eval::{PolicyEngine, SideDecision};
use crate::pods::EndpointResolver;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideJson {
    pub allowed: bool,
    /// "NS/NAME", or "NAME" for global policies; null when no policy decided.
    pub policy: Option<String>,
    pub kind: Option<String>,
    pub tier: Option<String>,
    pub rule: Option<i32>,
    /// The rule's name where the kind names rules (admin network policies).
    #[serde(rename = "ruleName", skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
}

impl From<&SideDecision> for SideJson {
    fn from(s: &SideDecision) -> Self {
        SideJson {
            allowed: s.allowed,
            policy: s.policy.as_ref().map(|p| p.qualified_name()),
            kind: s.policy.as_ref().map(|p| p.kind.as_str().to_string()),
            tier: s.policy.as_ref().map(|p| p.tier.clone()),
            rule: s.rule,
            rule_name: s.rule_name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingJson {
    pub allowed: bool,
    pub egress: SideJson,
    pub ingress: SideJson,
}

/// One output line; field order is the stable output order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<SideJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<SideJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Other input fields (an id, say) are passed through.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

const RESERVED: [&str; 9] = [
    "source",
    "destination",
    "port",
    "protocol",
    "allowed",
    "egress",
    "ingress",
    "pending",
    "error",
];

/// Counts from a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonlStats {
    pub lines: u64,
    pub allowed: u64,
    pub denied: u64,
    pub errors: u64,
}

/// Evaluate one input line (without its newline). Never fails: problems are
/// reported in the line's `error` field.
pub fn eval_line(engine: &PolicyEngine, resolver: &dyn EndpointResolver, line: &str) -> OutputLine {
    let mut out = OutputLine {
        source: None,
        destination: None,
        port: None,
        protocol: None,
        allowed: None,
        egress: None,
        ingress: None,
        pending: None,
        error: None,
        extra: BTreeMap::new(),
    };
    let input: Map<String, Value> = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            out.error = Some("input line is not a JSON object".into());
            return out;
        }
        Err(e) => {
            out.error = Some(format!("invalid JSON: {e}"));
            return out;
        }
    };
    out.source = input.get("source").cloned();
    out.destination = input.get("destination").cloned();
    out.port = input.get("port").cloned();
    out.protocol = input.get("protocol").cloned();
    for (k, v) in &input {
        if !RESERVED.contains(&k.as_str()) {
            out.extra.insert(k.clone(), v.clone());
        }
    }
    match build_query(&input, resolver) {
        Ok(q) => {
            if out.protocol.is_none() {
                out.protocol = Some(Value::String(q.protocol.to_string()));
            }
            let e = engine.evaluate(&q);
            out.allowed = Some(e.allowed);
            out.egress = Some(SideJson::from(&e.egress));
            out.ingress = Some(SideJson::from(&e.ingress));
            out.pending = e.pending.as_ref().map(|p| PendingJson {
                allowed: p.allowed,
                egress: SideJson::from(&p.egress),
                ingress: SideJson::from(&p.ingress),
            });
        }
        Err(msg) => out.error = Some(msg),
    }
    out
}

fn build_query(
    input: &Map<String, Value>,
    resolver: &dyn EndpointResolver,
) -> Result<FlowQuery, String> {
    let side = |key: &str| -> Result<_, String> {
        match input.get(key) {
            Some(Value::String(s)) => resolver.resolve(s).map_err(|e| format!("{key}: {e}")),
            Some(other) => Err(format!("{key}: expected a string, found {other}")),
            None => Err(format!("{key} is missing")),
        }
    };
    let protocol = match input.get("protocol") {
        None | Some(Value::Null) => Protocol::Tcp,
        Some(Value::String(s)) => {
            Protocol::parse(s).ok_or_else(|| format!("protocol: unknown protocol \"{s}\""))?
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .map(Protocol::from_number)
            .ok_or_else(|| format!("protocol: {n} is outside 0-255"))?,
        Some(other) => {
            return Err(format!(
                "protocol: expected a name or number, found {other}"
            ))
        }
    };
    let port = match input.get("port") {
        None | Some(Value::Null) if !protocol.has_ports() => 0,
        None | Some(Value::Null) => {
            return Err(format!("port is missing (required for {protocol})"))
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| format!("port: {n} is outside 0-65535"))?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("port: \"{s}\" is not a port number"))?,
        Some(other) => return Err(format!("port: expected a number, found {other}")),
    };
    let number = |key: &str, max: u64| -> Result<Option<u64>, String> {
        match input.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(format!("{key}: {n} is outside 0-{max}")),
            },
            Some(other) => Err(format!("{key}: expected a number, found {other}")),
        }
    };
    let source_port = number("sourcePort", u64::from(u16::MAX))?.map(|p| p as u16);
    if source_port.is_some() && !protocol.has_ports() {
        return Err(format!("sourcePort: {protocol} has no ports"));
    }
    let icmp = match (number("icmpType", 255)?, number("icmpCode", 255)?) {
        (None, None) => None,
        (None, Some(_)) => return Err("icmpCode needs icmpType".into()),
        (Some(kind), code) => Some(Icmp {
            kind: kind as u8,
            code: code.unwrap_or(0) as u8,
        }),
    };
    if icmp.is_some() && !protocol.is_icmp() {
        return Err(format!("icmpType: {protocol} is not ICMP or ICMPv6"));
    }
    Ok(FlowQuery {
        source: side("source")?,
        destination: side("destination")?,
        protocol,
        port,
        source_port,
        icmp,
    })
}

/// Render an output line as one line of JSON.
pub fn to_json_line(out: &OutputLine) -> String {
    match serde_json::to_string(out) {
        Ok(s) => s,
        // Only non-string map keys could fail, and there are none; stay total anyway.
        Err(e) => format!("{{\"error\":\"cannot encode output: {e}\"}}"),
    }
}

/// Read JSON lines from `input`, write one result line per non-blank input line.
pub fn run<R: BufRead, W: Write>(
    engine: &PolicyEngine,
    resolver: &dyn EndpointResolver,
    input: R,
    mut output: W,
) -> std::io::Result<JsonlStats> {
    let mut stats = JsonlStats::default();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        let out = eval_line(engine, resolver, &line);
        match (out.error.is_some(), out.allowed) {
            (true, _) => stats.errors += 1,
            (false, Some(true)) => stats.allowed += 1,
            _ => stats.denied += 1,
        }
        writeln!(output, "{}", to_json_line(&out))?;
    }
    output.flush()?;
    Ok(stats)
}
