//! The page's JSON: the FlowService calls in the proto3 JSON mapping, so a script reads the
//! same fields (and filters) as a gRPC client. GetFlows streams as JSON lines.

use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures::StreamExt as _;
use tonic::{Code, Request, Status};

use crate::proto::v1::{self as pb, flow_service_server::FlowService};

fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_body(status: &Status) -> serde_json::Value {
    serde_json::json!({ "error": status.message(), "code": format!("{:?}", status.code()) })
}

fn error(status: Status) -> Response {
    (http_status(status.code()), Json(error_body(&status))).into_response()
}

fn answer<T: serde::Serialize>(result: Result<tonic::Response<T>, Status>) -> Response {
    match result {
        Ok(response) => Json(response.into_inner()).into_response(),
        Err(status) => error(status),
    }
}

pub async fn graph<S: FlowService>(
    State(service): State<Arc<S>>,
    Json(request): Json<pb::GetGraphRequest>,
) -> Response {
    let graph = service.get_graph(Request::new(request)).await.map(|mut r| {
        for edge in &mut r.get_mut().edges {
            edge.protocol = crate::proto::json_protocol(edge.protocol);
        }
        r
    });
    answer(graph)
}

pub async fn recommend<S: FlowService>(
    State(service): State<Arc<S>>,
    Json(request): Json<pb::RecommendPolicyRequest>,
) -> Response {
    answer(service.recommend_policy(Request::new(request)).await)
}

pub async fn status<S: FlowService>(State(service): State<Arc<S>>) -> Response {
    answer(
        service
            .get_status(Request::new(pb::GetStatusRequest {}))
            .await,
    )
}

/// One JSON object per line, as the stream goes: a following page reads lines as they come. An
/// error after the start is the last line, `{"error": ..., "code": ...}`.
pub async fn flows<S: FlowService>(
    State(service): State<Arc<S>>,
    Json(request): Json<pb::GetFlowsRequest>,
) -> Response {
    let stream = match service.get_flows(Request::new(request)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return error(status),
    };
    let lines = stream.map(|item| {
        let value = match item {
            Ok(mut message) => {
                if let Some(pb::get_flows_response::Event::Flow(flow)) = &mut message.event {
                    flow.protocol = crate::proto::json_protocol(flow.protocol);
                }
                serde_json::to_vec(&message)
            }
            Err(status) => serde_json::to_vec(&error_body(&status)),
        };
        let mut line = value.unwrap_or_else(|err| {
            serde_json::to_vec(&serde_json::json!({ "error": err.to_string() })).unwrap_or_default()
        });
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
