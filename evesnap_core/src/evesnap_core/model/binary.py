"""Binary protobuf on the wire: an ``EdgeDevConfig`` in, ``ZInfoMsg`` reports out.

A controller speaks binary protobuf to EVE; evesnap takes that as well as
proto3 JSON. A binary config is decoded with eve-api's message definitions
(eve_proto) and turned into the same proto3 JSON the JSON path parses, so
both paths validate alike. Fields those definitions leave out (eve-api's
``fixedresources``, a newer controller's field) are not lost: each message's
unknown fields are kept, as their wire bytes, under `UNKNOWN_FIELDS` (base64)
in that message's JSON, stored with the config, and written back by
`config_to_binary`. Reports go out as length-delimited ``ZInfoMsg`` (a varint
length before each message, as protobuf's writeDelimitedTo).

Needs the ``protobuf`` distribution (``pip install 'evesnap-core[protobuf]'``).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from evesnap_core.errors import ConfigError

UNKNOWN_FIELDS = "evesnapUnknownFields"
"""Key, in a message's JSON, of the wire bytes of its fields eve_proto does not define."""

BINARY_SUFFIXES = (".pb", ".bin", ".binpb")
JSON_SUFFIXES = (".json",)

NEEDS_PROTOBUF = "binary protobuf needs Google's protobuf runtime (pip install 'evesnap-core[protobuf]')"


def is_binary(path: Path, data: bytes) -> bool:
    """A config file is binary by its suffix (.pb, .bin, .binpb), JSON by .json;
    otherwise by content: JSON starts with ``{`` (after white space)."""
    suffix = path.suffix.lower()
    if suffix in BINARY_SUFFIXES:
        return True
    if suffix in JSON_SUFFIXES:
        return False
    head = data.lstrip()[:1]
    return bool(head) and head not in (b"{", b"[")


def _protobuf() -> tuple[Any, Any]:
    try:
        from google.protobuf import json_format, message

        from evesnap_core.model import eve_proto
    except ImportError:
        raise ConfigError("", NEEDS_PROTOBUF) from None
    return json_format, (message, eve_proto)


def _repeated(field: Any) -> bool:
    """FieldDescriptor.is_repeated (protobuf >= 5.29; `label` before, gone in 7)."""
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(field.label == field.LABEL_REPEATED)


def _unknown_bytes(msg: Any) -> bytes:
    """The wire bytes of `msg`'s unknown fields (its known ones cleared on a copy)."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    for field, _ in copy.ListFields():
        copy.ClearField(field.name)
    return bytes(copy.SerializeToString())


def _keep_unknown(msg: Any, data: dict[str, Any]) -> None:
    unknown = _unknown_bytes(msg)
    if unknown:
        data[UNKNOWN_FIELDS] = base64.b64encode(unknown).decode()
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if _repeated(field):
            for item, item_data in zip(value, data.get(field.json_name, []), strict=True):
                _keep_unknown(item, item_data)
        elif field.json_name in data:
            _keep_unknown(value, data[field.json_name])


def config_from_binary(data: bytes) -> dict[str, Any]:
    """A binary EdgeDevConfig as proto3 JSON (a dict), its unknown fields kept."""
    json_format, (message, eve_proto) = _protobuf()
    msg = eve_proto.config_message("EdgeDevConfig")
    try:
        msg.ParseFromString(data)
    except message.DecodeError as exc:
        raise ConfigError("", f"not a binary EdgeDevConfig: {exc}") from None
    out: dict[str, Any] = json_format.MessageToDict(msg)
    _keep_unknown(msg, out)
    return out


def _put_unknown(msg: Any, data: Any) -> None:
    if not isinstance(data, dict):
        return
    kept = data.get(UNKNOWN_FIELDS)
    if isinstance(kept, str):
        msg.MergeFromString(base64.b64decode(kept))
    for field in msg.DESCRIPTOR.fields:
        if field.message_type is None or field.json_name not in data:
            continue
        value = getattr(msg, field.name)
        if _repeated(field):
            for item, item_data in zip(value, data[field.json_name], strict=False):
                _put_unknown(item, item_data)
        elif msg.HasField(field.name):
            _put_unknown(value, data[field.json_name])


def config_to_binary(config: dict[str, Any]) -> bytes:
    """A config's proto3 JSON (DeviceConfig.to_json_dict) as a binary EdgeDevConfig,
    with the unknown fields it came with. JSON-only extras (a field a JSON config
    carried that eve_proto does not define) have no number: they are left out."""
    json_format, (_, eve_proto) = _protobuf()
    msg = eve_proto.config_message("EdgeDevConfig")
    json_format.ParseDict(config, msg, ignore_unknown_fields=True)
    _put_unknown(msg, config)
    return bytes(msg.SerializeToString())


def info_messages_to_binary(messages: list[dict[str, Any]]) -> bytes:
    """ZInfoMsg (proto3 JSON, as controller_reports makes them) length-delimited."""
    json_format, (_, eve_proto) = _protobuf()
    out = bytearray()
    for item in messages:
        msg = eve_proto.info_message("ZInfoMsg")
        json_format.ParseDict(item, msg)  # strict: only eve-api's fields
        body = msg.SerializeToString()
        out += _varint(len(body)) + body
    return bytes(out)


def info_messages_from_binary(data: bytes) -> list[Any]:
    """The ZInfoMsg of a length-delimited stream (for readers and tests)."""
    _, (_, eve_proto) = _protobuf()
    found = []
    pos = 0
    while pos < len(data):
        length, pos = _read_varint(data, pos)
        msg = eve_proto.info_message("ZInfoMsg")
        msg.ParseFromString(data[pos : pos + length])
        found.append(msg)
        pos += length
    return found


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated length-delimited stream")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
