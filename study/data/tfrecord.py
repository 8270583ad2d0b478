"""TFRecord files and tf.train.Example protos, read without TensorFlow.

Framing of each record (TensorFlow core/lib/io/record_writer):
    uint64 length (little endian) | uint32 masked_crc32c(length bytes) |
    data[length] | uint32 masked_crc32c(data)
masked_crc32c(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32), where crc is
CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). Both CRCs are checked.

Example proto (tensorflow/core/example/{example,feature}.proto):
    Example { Features features = 1 }   Features { map<string, Feature> feature = 1 }
    Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3 } }
    BytesList { repeated bytes value = 1 }
Only bytes features are returned; float and int64 features are skipped.
"""
from __future__ import annotations

import pathlib
import struct
from typing import Iterator

import numpy as np

from study.data.errors import DataError

_CASTAGNOLI_REFLECTED = 0x82F63B78
_MASK_DELTA = 0xA282EAD8


def _crc_tables() -> np.ndarray:
    """Slicing-by-8 tables: uint32 [8, 256]."""
    tables = np.zeros((8, 256), dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CASTAGNOLI_REFLECTED if crc & 1 else 0)
        tables[0, byte] = crc
    for k in range(1, 8):
        prev = tables[k - 1]
        tables[k] = (prev >> 8) ^ tables[0][prev & 0xFF]
    return tables


_TABLES = [list(map(int, row)) for row in _crc_tables()]


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of `data` (pure Python, slicing by 8). crc32c(b"123456789") == 0xE3069283."""
    t0, t1, t2, t3, t4, t5, t6, t7 = _TABLES
    crc ^= 0xFFFFFFFF
    view = memoryview(data)
    n8 = len(view) // 8 * 8
    words = struct.unpack_from(f"<{n8 // 4}I", view) if n8 else ()
    for i in range(0, len(words), 2):
        low = words[i] ^ crc
        high = words[i + 1]
        crc = (
            t7[low & 0xFF] ^ t6[(low >> 8) & 0xFF] ^ t5[(low >> 16) & 0xFF] ^ t4[low >> 24]
            ^ t3[high & 0xFF] ^ t2[(high >> 8) & 0xFF] ^ t1[(high >> 16) & 0xFF] ^ t0[high >> 24]
        )
    for byte in view[n8:]:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _fast_crc32c():
    """A C CRC-32C when an optional package provides one (google-crc32c); else None."""
    try:
        import google_crc32c  # optional: a C CRC-32C where it is installed

        return google_crc32c.value if google_crc32c.implementation == "c" else None
    except ImportError:
        return None


_C_CRC32C = _fast_crc32c()


def masked_crc32c(data: bytes) -> int:
    crc = _C_CRC32C(bytes(data)) if _C_CRC32C else crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: pathlib.Path, check_crc: bool = True) -> Iterator[bytes]:
    """The records of one TFRecord file, CRCs verified; DataError names the file and offset."""
    with open(path, "rb") as handle:
        offset = 0
        while True:
            header = handle.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DataError(f"{path}: truncated record header at byte {offset} (expected 12 bytes, found {len(header)})")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if check_crc and masked_crc32c(header[:8]) != length_crc:
                raise DataError(f"{path}: length CRC mismatch at byte {offset}; not a TFRecord file or corrupt")
            body = handle.read(length + 4)
            if len(body) < length + 4:
                raise DataError(f"{path}: truncated record at byte {offset} (expected {length} data bytes + CRC)")
            payload = body[:length]
            (data_crc,) = struct.unpack("<I", body[length:])
            if check_crc and masked_crc32c(payload) != data_crc:
                raise DataError(f"{path}: data CRC mismatch in the record at byte {offset}; the shard is corrupt")
            yield payload
            offset += 12 + length + 4


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DataError(f"{where}: malformed protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, where: str) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise DataError(f"{where}: unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise DataError(f"{where}: truncated protobuf field {number}")
        yield number, wire, value


def parse_example(record: bytes, where: str = "record") -> dict[str, list[bytes]]:
    """The bytes features of a serialized tf.train.Example: {name: [value, ...]}."""
    features: dict[str, list[bytes]] = {}
    for number, wire, features_msg in _fields(record, where):
        if number != 1 or wire != 2:
            continue
        for entry_number, entry_wire, entry in _fields(features_msg, where):
            if entry_number != 1 or entry_wire != 2:
                continue
            name, feature = None, b""
            for field, field_wire, value in _fields(entry, where):
                if field == 1 and field_wire == 2:
                    name = bytes(value).decode("utf-8", "replace")
                elif field == 2 and field_wire == 2:
                    feature = value
            if name is None:
                continue
            values = []
            for kind, kind_wire, bytes_list in _fields(feature, where):
                if kind == 1 and kind_wire == 2:
                    values.extend(bytes(v) for n, w, v in _fields(bytes_list, where) if n == 1 and w == 2)
            features[name] = features.get(name, []) + values
    return features
