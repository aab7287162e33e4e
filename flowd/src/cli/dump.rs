use std::{io::Write as _, process::ExitCode};

use clap::{Args, ValueEnum};

use super::{format, Target};
use crate::api::proto::v1::{self as pb, get_flows_response::Event};

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub target: Target,
    /// Output format: a readable table, or JSON lines (proto3 JSON mapping, one flow a line).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Show the last N recorded flows [default: 20, or 0 with --follow].
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
    /// Keep printing new flows as they are recorded.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub async fn execute(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.target.connect().await?;
    let last = args.last.unwrap_or(if args.follow { 0 } else { 20 });
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            last,
            follow: args.follow,
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if args.output == Output::Table {
        writeln!(out, "{}", format::TABLE_HEADER)?;
    }
    while let Some(response) = stream.message().await? {
        match (response.event, args.output) {
            (Some(Event::Flow(flow)), Output::Table) => {
                writeln!(out, "{}", format::flow_line(&flow))?
            }
            (Some(Event::Flow(flow)), Output::Json) => {
                writeln!(out, "{}", serde_json::to_string(&flow)?)?
            }
            (Some(Event::LostRecords(lost)), output) => {
                eprintln!(
                    "flowd: {} records skipped because this reader fell behind; resuming at cursor {}",
                    lost.count, lost.next_cursor
                );
                if output == Output::Json {
                    let marker = pb::GetFlowsResponse {
                        event: Some(Event::LostRecords(lost)),
                    };
                    writeln!(out, "{}", serde_json::to_string(&marker)?)?;
                }
            }
            (None, _) => {}
        }
        if args.follow {
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
