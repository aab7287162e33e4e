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
         flows recorded: {}   stored: {} (cursors {}..{})   followers: {}\n\
         kernel flow map: {} of {} entries\n\
         interfaces:\n",
        status.version,
        status.node,
        uptime,
        status.flows_recorded,
        status.flows_stored,
        status.first_cursor,
        status.last_cursor,
        status.subscribers,
        status.active_flows,
        status.flow_map_capacity,
    );
    for attached in &status.interfaces {
        if let Some(i) = &attached.interface {
            let netns = if i.netns.is_empty() { "host" } else { &i.netns };
            text.push_str(&format!(
                "  {:<12} ifindex {:<4} {:<8} netns {}\n",
                i.name, i.index, attached.attach_mode, netns
            ));
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
