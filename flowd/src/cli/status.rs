use std::process::ExitCode;

use clap::Args;

use super::Target;
use crate::proto::v1 as pb;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print the status as proto3 JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn execute(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.target.connect().await?;
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn render(status: &pb::GetStatusResponse) -> String {
    let uptime = status.uptime.as_ref().map(|d| d.seconds).unwrap_or(0);
    let mut text = format!(
        "flowd {} on node {}, up {}s\n\
         programs: {}\n\
         flows recorded: {} ({:.1}/s)   followers: {}\n\
         history: {} records, cursors {}..{}, {} bytes of records, file {} bytes\n\
         kernel flow map: {} of {} entries\n",
        status.version,
        status.node,
        uptime,
        status.programs.join(", "),
        status.flows_recorded,
        status.flows_per_second,
        status.subscribers,
        status.flows_stored,
        status.first_cursor,
        status.last_cursor,
        status.store_bytes,
        status.store_file_bytes,
        status.active_flows,
        status.flow_map_capacity,
    );
    if !status.nodes.is_empty() {
        text.push_str("nodes:\n");
    }
    for node in &status.nodes {
        text.push_str(&format!("  {}\n", super::dump::node_line(node)));
    }
    if status.nodes.is_empty() || !status.interfaces.is_empty() {
        text.push_str("interfaces:\n");
    }
    for attached in &status.interfaces {
        if let Some(i) = &attached.interface {
            let netns = if i.netns.is_empty() { "host" } else { &i.netns };
            text.push_str(&format!(
                "  {:<12} ifindex {:<4} {:<8} netns {}\n",
                i.name, i.index, attached.attach_mode, netns
            ));
        }
    }
    if let Some(history) = status.history.as_ref().filter(|h| h.write_failing) {
        text.push_str(&format!(
            "HISTORY NOT WRITTEN: {} records held in memory; {}\n",
            history.records_held, history.write_error
        ));
    }
    let mut lost: Vec<_> = status.lost.iter().collect();
    lost.sort();
    if lost.is_empty() {
        text.push_str("lost records: none\n");
    } else {
        text.push_str("lost records:\n");
        for (cause, count) in lost {
            text.push_str(&format!("  {cause:<28} {count}\n"));
        }
    }
    text.push_str("counters:\n");
    let mut counters: Vec<_> = status.counters.iter().collect();
    counters.sort();
    for (name, value) in counters {
        text.push_str(&format!("  {name:<28} {value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_losses_and_history() {
        let status = pb::GetStatusResponse {
            version: "0.1.0".into(),
            node: "node-1".into(),
            flows_recorded: 12,
            flows_per_second: 2.5,
            flows_stored: 10,
            first_cursor: 3,
            last_cursor: 12,
            lost: [("slow_subscriber".to_string(), 7)].into_iter().collect(),
            programs: vec!["flowd_ingress".into(), "flowd_egress".into()],
            ..Default::default()
        };
        let text = render(&status);
        assert!(text.contains("flows recorded: 12 (2.5/s)"), "{text}");
        assert!(text.contains("cursors 3..12"), "{text}");
        assert!(
            text.contains("slow_subscriber") && text.contains('7'),
            "{text}"
        );
        assert!(text.contains("flowd_ingress, flowd_egress"), "{text}");
        let quiet = render(&pb::GetStatusResponse::default());
        assert!(quiet.contains("lost records: none"), "{quiet}");
        assert!(!quiet.contains("HISTORY NOT WRITTEN"), "{quiet}");
        let failing = render(&pb::GetStatusResponse {
            history: Some(pb::HistoryHealth {
                write_failing: true,
                write_error: "No space left on device".into(),
                records_held: 600,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            failing.contains("HISTORY NOT WRITTEN: 600 records held in memory; No space left"),
            "{failing}"
        );
    }
}
