#!/usr/bin/env python3
"""A gRPC session with an Aurigraph node that knows nothing of its protos beforehand: server
reflection describes the services, and the messages are built from those descriptors (what
grpcurl does). Needs `pip install grpcio grpcio-reflection protobuf`.

Usage: grpc_session.py HOST:PORT [ADDRESS_HEX]
"""
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9004"
    channel = grpc.insecure_channel(target)
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)

    print("$ list services")
    for name in database.get_services():
        print(" ", name)

    def call(method_path, body):
        service_name, method_name = method_path.rsplit(".", 1)
        method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        request = json_format.ParseDict(body, request_class())
        print(f"\n$ {method_path} {json_format.MessageToJson(request, indent=None) or '{}'}")
        try:
            response = rpc(request, timeout=5)
            print(json_format.MessageToJson(response, indent=2))
        except grpc.RpcError as error:
            code = dict(error.trailing_metadata() or ()).get("aurigraph-error-code", "")
            print(f"  {error.code().name} {code}: {error.details()}")

    call("aurigraph.v11.NodeService.Info", {})
    call("grpc.health.v1.Health.Check", {"service": "aurigraph.v11.TransactionService"})
    if len(sys.argv) > 2:
        # Byte fields are base64 in protobuf's JSON mapping.
        import base64

        address = base64.b64encode(bytes.fromhex(sys.argv[2])).decode()
        call("aurigraph.v11.AccountService.GetAccount", {"address": address})
    call("aurigraph.v11.TransactionService.GetTransaction", {"txHash": "AAAA"})


if __name__ == "__main__":
    main()
