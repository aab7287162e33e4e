//! Records pass through the relay as the node encoded them: only the fields the merge needs
//! (cursor, recorded and end time) are decoded, and the node's bytes go to the consumer as they
//! are. Decoding and re-encoding every Flow was most of the relay's cost per record.

use std::{convert::Infallible, pin::Pin};

use bytes::{Buf as _, BufMut as _, Bytes};
use prost::Message as _;
use tokio_stream::Stream;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{http, BoxFuture, Context, Poll, Service, StdError},
    server::NamedService,
    Status,
};

use crate::proto::v1::{self as pb, flow_service_server::FlowServiceServer};

/// A `GetFlowsResponse`, encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded(pub Bytes);

impl Encoded {
    pub fn of(response: &pb::GetFlowsResponse) -> Self {
        Self(Bytes::from(response.encode_to_vec()))
    }
}

/// A node's record in the merge: its keys, and the response that carried it, still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedFlow {
    pub cursor: u64,
    pub recorded_ns: u64,
    pub end_ns: u64,
    pub encoded: Bytes,
}

/// The envelope's flow field only; the other events are rare and decoded whole.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(bytes = "bytes", optional, tag = "1")]
    flow: Option<Bytes>,
}

/// The Flow fields the merge reads (prost skips the others without decoding them).
#[derive(Clone, PartialEq, prost::Message)]
struct FlowKeys {
    #[prost(uint64, tag = "1")]
    cursor: u64,
    #[prost(message, optional, tag = "3")]
    end_time: Option<pbjson_types::Timestamp>,
    #[prost(message, optional, tag = "25")]
    recorded_time: Option<pbjson_types::Timestamp>,
}

/// What one node message is.
pub enum Parsed {
    Flow(MergedFlow),
    /// A watermark, a loss marker or anything newer: rare, so boxed.
    Other(Box<pb::get_flows_response::Event>),
}

pub fn parse(message: Encoded) -> Result<Option<Parsed>, prost::DecodeError> {
    let envelope = Envelope::decode(message.0.clone())?;
    if let Some(flow) = envelope.flow {
        let keys = FlowKeys::decode(flow)?;
        return Ok(Some(Parsed::Flow(MergedFlow {
            cursor: keys.cursor,
            recorded_ns: keys
                .recorded_time
                .as_ref()
                .map(crate::store::time_ns)
                .unwrap_or(0),
            end_ns: keys
                .end_time
                .as_ref()
                .map(crate::store::time_ns)
                .unwrap_or(0),
            encoded: message.0,
        })));
    }
    Ok(pb::GetFlowsResponse::decode(message.0)?
        .event
        .map(|event| Parsed::Other(Box::new(event))))
}

pub struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Encoded;
    type Error = Status;

    fn encode(&mut self, item: Encoded, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.0);
        Ok(())
    }
}

pub struct EncodedDecoder;

impl Decoder for EncodedDecoder {
    type Item = Encoded;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Encoded>, Status> {
        let length = src.remaining();
        Ok(Some(Encoded(src.copy_to_bytes(length))))
    }
}

/// Towards a node: requests encoded as usual, responses kept encoded.
#[derive(Clone, Copy, Default)]
pub struct NodeCodec;

impl Codec for NodeCodec {
    type Encode = pb::GetFlowsRequest;
    type Decode = Encoded;
    type Encoder = tonic_prost::ProstEncoder<pb::GetFlowsRequest>;
    type Decoder = EncodedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedDecoder
    }
}

/// Towards a consumer: requests decoded as usual, responses sent as already encoded.
#[derive(Clone, Copy, Default)]
pub struct ConsumerCodec;

impl Codec for ConsumerCodec {
    type Encode = Encoded;
    type Decode = pb::GetFlowsRequest;
    type Encoder = EncodedEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::GetFlowsRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

pub type EncodedStream = Pin<Box<dyn Stream<Item = Result<Encoded, Status>> + Send>>;

/// What serves GetFlows with encoded responses (the relay).
#[tonic::async_trait]
pub trait EncodedFlows: Clone + Send + Sync + 'static {
    async fn open(
        &self,
        request: tonic::Request<pb::GetFlowsRequest>,
    ) -> Result<tonic::Response<EncodedStream>, Status>;
}

/// flowd.v1.FlowService with GetFlows answered from `encoded` and every other method (and
/// anything unknown) by the generated server over `typed`.
#[derive(Clone)]
pub struct PassThrough<T: pb::flow_service_server::FlowService + EncodedFlows> {
    service: T,
    typed: FlowServiceServer<T>,
    max_request_bytes: usize,
}

impl<T: pb::flow_service_server::FlowService + EncodedFlows> PassThrough<T> {
    pub fn new(service: T, max_request_bytes: usize) -> Self {
        Self {
            typed: FlowServiceServer::new(service.clone())
                .max_decoding_message_size(max_request_bytes),
            service,
            max_request_bytes,
        }
    }
}

impl<T: pb::flow_service_server::FlowService + EncodedFlows> NamedService for PassThrough<T> {
    const NAME: &'static str = pb::flow_service_server::SERVICE_NAME;
}

struct GetFlows<T>(T);

impl<T: EncodedFlows> tonic::server::ServerStreamingService<pb::GetFlowsRequest> for GetFlows<T> {
    type Response = Encoded;
    type ResponseStream = EncodedStream;
    type Future = BoxFuture<tonic::Response<EncodedStream>, Status>;

    fn call(&mut self, request: tonic::Request<pb::GetFlowsRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.open(request).await })
    }
}

impl<T, B> Service<http::Request<B>> for PassThrough<T>
where
    T: pb::flow_service_server::FlowService + EncodedFlows,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != "/flowd.v1.FlowService/GetFlows" {
            return self.typed.call(request);
        }
        let method = GetFlows(self.service.clone());
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ConsumerCodec)
                .apply_max_message_size_config(Some(max_request_bytes), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_passes_with_its_keys_read_and_its_bytes_untouched() {
        let flow = pb::Flow {
            cursor: 42,
            node: "n".into(),
            end_time: Some(pbjson_types::Timestamp {
                seconds: 7,
                nanos: 0,
            }),
            recorded_time: Some(pbjson_types::Timestamp {
                seconds: 9,
                nanos: 5,
            }),
            ..Default::default()
        };
        let response = pb::GetFlowsResponse {
            event: Some(pb::get_flows_response::Event::Flow(flow)),
        };
        let encoded = Encoded::of(&response);
        let Some(Parsed::Flow(merged)) = parse(encoded.clone()).unwrap() else {
            panic!("a flow");
        };
        assert_eq!(
            (merged.cursor, merged.end_ns, merged.recorded_ns),
            (42, 7_000_000_000, 9_000_000_005)
        );
        assert_eq!(merged.encoded, encoded.0, "forwarded byte for byte");
        let mark = pb::GetFlowsResponse {
            event: Some(pb::get_flows_response::Event::Watermark(pb::Watermark {
                time: None,
            })),
        };
        assert!(matches!(
            parse(Encoded::of(&mark)).unwrap(),
            Some(Parsed::Other(event)) if matches!(*event, pb::get_flows_response::Event::Watermark(_))
        ));
        assert!(parse(Encoded(Bytes::from_static(&[0x0a, 0xff]))).is_err());
    }
}
