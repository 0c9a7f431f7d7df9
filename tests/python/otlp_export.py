"""Sends one OTLP profiles export built with the official OpenTelemetry protos (PyPI
`opentelemetry-proto`), over gRPC (grpcio) or OTLP/HTTP (protobuf or JSON, optionally gzip).

    otlp_export.py SPEC.json --transport grpc --target 127.0.0.1:4040
    otlp_export.py SPEC.json --transport http --encoding json --gzip --target http://127.0.0.1:4040

SPEC describes the profiles (see `build`); the script prints one JSON line with what the server
answered: {"ok": bool, "status": HTTP status or gRPC code name, "body": text}.
"""

import argparse
import base64
import gzip
import json
import sys
import urllib.error
import urllib.request

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2 as service,
    profiles_service_pb2_grpc as service_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2 as common
from opentelemetry.proto.profiles.v1development import profiles_pb2 as profiles
from opentelemetry.proto.resource.v1 import resource_pb2 as resource

GRPC_METHOD = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"


class Dictionary:
    """The request's shared tables, each starting with its empty row as the spec requires."""

    def __init__(self):
        self.d = profiles.ProfilesDictionary()
        self.strings = {}
        self.string("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.link_table.add()
        self.d.attribute_table.add()
        self.d.stack_table.add()
        self.functions = {}
        self.locations = {}
        self.stacks = {}
        binary = self.d.mapping_table.add()
        binary.filename_strindex = self.string("/usr/bin/app")
        binary.memory_start = 0x400000
        binary.memory_limit = 0x800000
        kernel = self.d.mapping_table.add()
        kernel.filename_strindex = self.string("vmlinux")
        self.mapping = {"app": 1, "kernel": 2}

    def string(self, text):
        if text not in self.strings:
            self.strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self.strings[text]

    def value_type(self, pair):
        return profiles.ValueType(
            type_strindex=self.string(pair[0]), unit_strindex=self.string(pair[1])
        )

    def attribute(self, key, value):
        row = self.d.attribute_table.add()
        row.key_strindex = self.string(key)
        row.value.string_value = value
        return len(self.d.attribute_table) - 1

    def location(self, frame):
        """A frame is a function name; `[k]name` is a kernel frame without symbols."""
        if frame not in self.locations:
            row = self.d.location_table.add()
            if frame.startswith("[k]"):
                row.mapping_index = self.mapping["kernel"]
                row.address = 0xFFFF0000 + len(self.d.location_table)
                row.attribute_indices.append(self.attribute("profile.frame.type", "kernel"))
            else:
                row.mapping_index = self.mapping["app"]
                row.address = 0x401000 + 16 * len(self.d.location_table)
                line = row.lines.add()
                line.function_index = self.function(frame)
                line.line = 10 + len(self.d.location_table)
            self.locations[frame] = len(self.d.location_table) - 1
        return self.locations[frame]

    def function(self, name):
        if name not in self.functions:
            row = self.d.function_table.add()
            row.name_strindex = self.string(name)
            row.system_name_strindex = self.string(name)
            row.filename_strindex = self.string("app.go")
            self.functions[name] = len(self.d.function_table) - 1
        return self.functions[name]

    def stack(self, frames):
        """`frames` root first, as folded stacks read; OTLP stacks are leaf first."""
        key = tuple(frames)
        if key not in self.stacks:
            row = self.d.stack_table.add()
            row.location_indices.extend(self.location(f) for f in reversed(frames))
            self.stacks[key] = len(self.d.stack_table) - 1
        return self.stacks[key]

    def link(self, trace_id, span_id):
        row = self.d.link_table.add()
        row.trace_id = bytes.fromhex(trace_id)
        row.span_id = bytes.fromhex(span_id)
        return len(self.d.link_table) - 1


def key_values(attributes):
    return [
        common.KeyValue(key=k, value=common.AnyValue(string_value=v))
        for k, v in attributes.items()
    ]


def build(spec):
    """SPEC: {"resources": [{"attributes": {...}, "scopes": [{"name", "attributes",
    "profiles": [{"sample_type": [t, u], "period_type": [t, u], "period", "time_unix_nano",
    "duration_nano", "samples": [{"stack": [root..leaf], "values": [...], "timestamps": [...],
    "attributes": {...}, "link": [trace_hex, span_hex]}]}]}]}]}"""
    d = Dictionary()
    request = service.ExportProfilesServiceRequest()
    for r in spec["resources"]:
        rp = request.resource_profiles.add()
        rp.resource.CopyFrom(resource.Resource(attributes=key_values(r.get("attributes", {}))))
        for s in r["scopes"]:
            sp = rp.scope_profiles.add()
            sp.scope.name = s.get("name", "")
            sp.scope.attributes.extend(key_values(s.get("attributes", {})))
            for p in s["profiles"]:
                profile = sp.profiles.add()
                profile.sample_type.CopyFrom(d.value_type(p["sample_type"]))
                if "period_type" in p:
                    profile.period_type.CopyFrom(d.value_type(p["period_type"]))
                    profile.period = p["period"]
                profile.time_unix_nano = p.get("time_unix_nano", 0)
                profile.duration_nano = p.get("duration_nano", 0)
                profile.profile_id = bytes.fromhex(p.get("profile_id", "00" * 16))
                for sample in p["samples"]:
                    out = profile.samples.add()
                    out.stack_index = d.stack(sample["stack"])
                    out.values.extend(sample.get("values", []))
                    out.timestamps_unix_nano.extend(sample.get("timestamps", []))
                    for k, v in sample.get("attributes", {}).items():
                        out.attribute_indices.append(d.attribute(k, v))
                    if "link" in sample:
                        out.link_index = d.link(*sample["link"])
    request.dictionary.CopyFrom(d.d)
    return request


def otlp_json(request):
    """protojson, with trace, span and profile ids in hex as OTLP/JSON writes them."""
    doc = json_format.MessageToDict(request)
    hexed = lambda b64: base64.b64decode(b64).hex()
    for link in doc.get("dictionary", {}).get("linkTable", []):
        for key in ("traceId", "spanId"):
            if key in link:
                link[key] = hexed(link[key])
    for rp in doc.get("resourceProfiles", []):
        for sp in rp.get("scopeProfiles", []):
            for profile in sp.get("profiles", []):
                if "profileId" in profile:
                    profile["profileId"] = hexed(profile["profileId"])
    return json.dumps(doc).encode()


def send_grpc(target, request, tenant, compress):
    with grpc.insecure_channel(target) as channel:
        stub = service_grpc.ProfilesServiceStub(channel)
        metadata = [("x-scope-orgid", tenant)] if tenant else None
        compression = grpc.Compression.Gzip if compress else None
        try:
            stub.Export(request, metadata=metadata, timeout=30, compression=compression)
            return {"ok": True, "status": "OK", "body": ""}
        except grpc.RpcError as e:
            return {"ok": False, "status": e.code().name, "body": e.details() or ""}


def send_http(url, body, content_type, tenant, compress):
    headers = {"Content-Type": content_type}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            payload = response.read()
            status = response.status
            answer_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        payload, status = e.read(), e.code
        answer_type = e.headers.get("Content-Type", "")
    if "json" in answer_type or "text" in answer_type:
        text = payload.decode()
    elif status == 200:
        service.ExportProfilesServiceResponse.FromString(payload)
        text = ""
    else:
        # OTLP/HTTP errors are a google.rpc.Status: field 2 is the message.
        text = payload.decode(errors="replace")
    return {"ok": status == 200, "status": status, "body": text}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--transport", choices=["grpc", "http"], required=True)
    parser.add_argument("--encoding", choices=["proto", "json"], default="proto")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--target", required=True)
    parser.add_argument("--path", default="/v1development/profiles")
    parser.add_argument("--tenant")
    parser.add_argument("--raw-body", help="send this file's bytes instead of SPEC's request")
    args = parser.parse_args()
    with open(args.spec) as f:
        request = build(json.load(f))
    if args.transport == "grpc":
        result = send_grpc(args.target, request, args.tenant, args.gzip)
    else:
        if args.raw_body:
            with open(args.raw_body, "rb") as f:
                body = f.read()
        elif args.encoding == "json":
            body = otlp_json(request)
        else:
            body = request.SerializeToString()
        content_type = "application/json" if args.encoding == "json" else "application/x-protobuf"
        result = send_http(args.target + args.path, body, content_type, args.tenant, args.gzip)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
