//! `flowd health`: the gRPC health check the Helm chart's probes run. It asks the agent over the
//! same socket consumers use, so a probe passes only when the API really answers.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

use super::Target;

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub target: Target,
    /// The service to ask about; the empty name asks about the server as a whole.
    #[arg(long, default_value = "flowd.v1.FlowService")]
    pub service: String,
    /// Give up (and fail) after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn execute(args: HealthArgs) -> anyhow::Result<ExitCode> {
    match tokio::time::timeout(args.timeout, ask(&args)).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("{}: SERVING", shown(&args.service));
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(status)) => {
            eprintln!("{}: {}", shown(&args.service), status.as_str_name());
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(err)) => {
            eprintln!("flowd health: {err:#}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!(
                "flowd health: no answer within {} (raise --timeout if the node is very busy)",
                humantime::format_duration(args.timeout)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn ask(args: &HealthArgs) -> anyhow::Result<ServingStatus> {
    let mut client = HealthClient::new(args.target.channel().await?);
    let response = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: args.service.clone(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown))
}

fn shown(service: &str) -> &str {
    if service.is_empty() {
        "server"
    } else {
        service
    }
}
