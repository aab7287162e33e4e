"""An OTLP/gRPC logs receiver built from the official protobuf definitions (PyPI
opentelemetry-proto with grpcio), for flowd's exporter tests: nothing of flowd's own code
decodes what flowd sends.

Every log record received is appended to --out as one JSON line: its attributes (key -> value),
the resource's attributes, body, times and severity. With --reject-multiple N, records whose
flowd.cursor is a multiple of N are refused with an OTLP partial success (counted, not
written). Prints "ready PORT" once it serves.
"""

import argparse
import json
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(key_values):
    return {kv.key: value(kv.value) for kv in key_values}


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, out, reject_multiple):
        self.out = out
        self.reject_multiple = reject_multiple

    def Export(self, request, context):
        rejected = 0
        lines = []
        for resource_logs in request.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    attrs = attributes(record.attributes)
                    cursor = attrs.get("flowd.cursor", 0)
                    if self.reject_multiple and cursor % self.reject_multiple == 0:
                        rejected += 1
                        continue
                    lines.append(json.dumps({
                        "attributes": attrs,
                        "resource": resource,
                        "scope": scope_logs.scope.name,
                        "body": value(record.body),
                        "time_unix_nano": record.time_unix_nano,
                        "observed_time_unix_nano": record.observed_time_unix_nano,
                        "severity_text": record.severity_text,
                        "event_name": record.event_name,
                    }))
        # Written before the answer: what flowd sees acknowledged is in the file.
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = "cursor is a multiple of %d" % self.reject_multiple
        return response


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reject-multiple", type=int, default=0)
    args = parser.parse_args()
    out = open(args.out, "a", encoding="utf-8")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(out, args.reject_multiple), server)
    port = server.add_insecure_port("127.0.0.1:%d" % args.port)
    if port == 0:
        sys.exit("cannot listen on 127.0.0.1:%d" % args.port)
    server.start()
    print("ready %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
