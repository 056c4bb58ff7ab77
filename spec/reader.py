#!/usr/bin/env python3
"""An independent reader of vmsnap format 1.x, written from spec/FORMAT.md alone.

It shares no code with vmsnap's TypeScript reader: it exists to prove that
the spec is enough, and the tests run it on every test vector.

    reader.py info FILE              print the header, regions and sections as JSON
    reader.py check FILE VECTOR.json decode FILE and compare it with the vector's content

Needs Debian's python3-msgpack, python3-zstandard and python3-xxhash.
Exit status: 0 good, 1 invalid file or content differs, 2 usage.
"""
import json
import struct
import sys

import msgpack
import xxhash
import zstandard

MAGIC = b"\x89VMS\r\n\x1a\n"
TRAILER_MAGIC = b"VMSNAPND"
HEADER, SECTION, CHUNK, ENTRY, TRAILER = 64, 32, 40, 48, 32
KNOWN = {b"META", b"RAMC", b"TAGC", b"VCPU", b"BLOB", b"INDX"}


class Invalid(Exception):
    pass


def xxh64(data):
    return xxhash.xxh64_intdigest(data, seed=0)


def need(condition, message, offset=None):
    if not condition:
        raise Invalid(message if offset is None else f"{message} (offset {offset})")


def read_header(data):
    need(len(data) >= HEADER and data[:8] == MAGIC, "not a vmsnap file", 0)
    major, minor, header_length, page_size, pages_per_chunk, granule, tag_bits, codec, checksum_id = struct.unpack_from("<HHIIIHBBB", data, 8)
    need(major == 1, f"format {major}.{minor} is not 1.x", 8)
    need(struct.unpack_from("<Q", data, 56)[0] == xxh64(data[:56]), "header checksum", 56)
    need(header_length == 64 and page_size in (4096, 16384, 65536) and granule == 16 and tag_bits == 4, "header fields", 12)
    need(1 <= pages_per_chunk and pages_per_chunk * page_size <= 4 << 20, "pages_per_chunk", 20)
    need(codec in (0, 1) and checksum_id == 1, "codec or checksum id", 27)
    return {"major": major, "minor": minor, "page_size": page_size, "pages_per_chunk": pages_per_chunk, "codec": codec}


def read_section(data, offset):
    need(offset + SECTION <= len(data), "section header past the end", offset)
    kind, reserved, length, payload_sum, header_sum = struct.unpack_from("<4sIQQQ", data, offset)
    need(header_sum == xxh64(data[offset:offset + 24]), "section header checksum", offset)
    need(reserved == 0 and kind.isalpha() and kind.isascii(), "section type or reserved field", offset)
    start = offset + SECTION
    need(start + length <= len(data), f"{kind!r} payload past the end", offset)
    payload = data[start:start + length]
    need(xxh64(payload) == payload_sum, f"{kind!r} payload checksum", start)
    return kind, payload


def read_index(data):
    need(len(data) >= HEADER + 2 * SECTION + TRAILER, "file too short", len(data))
    t = len(data) - TRAILER
    index_offset, file_length, magic, trailer_sum = struct.unpack_from("<QQ8sQ", data, t)
    need(magic == TRAILER_MAGIC and trailer_sum == xxh64(data[t:t + 24]), "trailer", t)
    need(file_length == len(data), "file length", t + 8)
    kind, payload = read_section(data, index_offset)
    need(kind == b"INDX" and index_offset + SECTION + len(payload) == t, "index", index_offset)
    need(len(payload) % ENTRY == 0, "index length", index_offset)
    entries, expected = [], HEADER
    for at in range(0, len(payload), ENTRY):
        kind, region, first_page, offset, length, page_count, reserved, payload_sum = struct.unpack_from("<4sIQQQIIQ", payload, at)
        need(offset == expected and length >= SECTION and reserved == 0, "index entries do not tile the file", index_offset)
        expected += length
        entries.append({"type": kind, "region": region, "first_page": first_page, "offset": offset, "page_count": page_count})
    need(expected == index_offset and entries and entries[0]["type"] == b"META", "index tiling", index_offset)
    return entries


def read_metadata(payload):
    meta = msgpack.unpackb(payload, raw=False)
    need(isinstance(meta, dict) and isinstance(meta.get("regions"), list), "META is not a map with regions")
    return meta


def grid(regions, page_size, pages_per_chunk):
    for index, region in enumerate(regions):
        pages = region["size"] // page_size
        for first in range(0, pages, pages_per_chunk):
            count = min(pages_per_chunk, pages - first)
            yield (b"RAMC", index, first, count)
            if region["mte"]:
                yield (b"TAGC", index, first, count)


def decode_chunk(kind, payload, expected, header):
    region, page_count, first_page, encoding, r1, r2, r3, present, content_length, content_sum = struct.unpack_from("<IIQBBBBIQQ", payload, 0)
    need((kind, region, first_page, page_count) == expected, f"chunk is not the one the grid expects: {expected}")
    need((r1, r2, r3) == (0, 0, 0), "chunk reserved bytes")
    bitmap = payload[CHUNK:CHUNK + (page_count + 7) // 8]
    bits = [(bitmap[p >> 3] >> (p & 7)) & 1 for p in range(page_count)]
    need(sum(bits) == present, "present_count")
    page_size = header["page_size"]
    per_page = page_size if kind == b"RAMC" else page_size // 32
    need(content_length == present * per_page, "content_length")
    stored = payload[CHUNK + len(bitmap):]
    if encoding == 0:
        content = stored
    else:
        need(encoding == 1 and header["codec"] == 1, "encoding")
        params = zstandard.get_frame_parameters(stored)
        need(params.content_size == content_length, "zstd frame content size")
        content = zstandard.ZstdDecompressor().decompress(stored, max_output_size=content_length)
    need(len(content) == content_length and xxh64(content) == content_sum, "content checksum")
    pages, next_present = {}, 0
    for page, bit in enumerate(bits):
        if bit:
            piece = content[next_present * per_page:(next_present + 1) * per_page]
            if kind == b"TAGC":  # two tags per byte, low nibble = lower granule
                piece = bytes(t for b in piece for t in (b & 15, b >> 4))
            pages[first_page + page] = piece
            next_present += 1
    return pages


def read_snapshot(path):
    with open(path, "rb") as f:
        data = f.read()
    header = read_header(data)
    entries = read_index(data)
    _, meta_payload = read_section(data, entries[0]["offset"])
    meta = read_metadata(meta_payload)
    expected = grid(meta["regions"], header["page_size"], header["pages_per_chunk"])
    ram, tags, vcpus, blobs = {}, {}, [], []
    for entry in entries[1:]:
        kind, payload = read_section(data, entry["offset"])
        need(kind == entry["type"], "section type differs from the index", entry["offset"])
        if kind in (b"RAMC", b"TAGC"):
            chunk = next(expected, None)
            need(chunk is not None, "more chunks than the regions hold", entry["offset"])
            target = ram if kind == b"RAMC" else tags
            for page, piece in decode_chunk(kind, payload, chunk, header).items():
                target[(chunk[1], page)] = piece
        elif kind == b"VCPU":
            vcpu = msgpack.unpackb(payload, raw=False)
            for reg_id, value in vcpu["registers"]:
                need(len(value) == 1 << ((reg_id >> 52) & 15), "register size")
            vcpus.append(vcpu)
        elif kind == b"BLOB":
            blobs.append(msgpack.unpackb(payload, raw=False))
        else:
            need(kind not in KNOWN and not kind[:1].isupper(), f"unknown critical section {kind!r}", entry["offset"])
    need(next(expected, None) is None, "chunks missing")
    return header, meta, ram, tags, vcpus, blobs


def vector_page(vector, region, page):
    """The bytes and tags of a page, as spec/vectors/README.md describes the JSON."""
    size = vector["page_size"]
    data, tags = bytes(size), bytes(size // 16)
    for entry in region["pages"]:
        if entry["page"] != page:
            continue
        if "data" in entry:
            pattern = bytes.fromhex(entry["data"]["hex"])
            data = (pattern * (size // max(len(pattern), 1) + 1))[:size] if entry["data"]["repeat"] else pattern + bytes(size - len(pattern))
        if "tags" in entry:
            tags = bytes(int(digit, 16) for digit in entry["tags"])
    return data, tags


def check(path, vector_path):
    with open(vector_path) as f:
        vector = json.load(f)
    header, meta, ram, tags, vcpus, blobs = read_snapshot(path)
    need(header["page_size"] == vector["page_size"] and header["pages_per_chunk"] == vector["pages_per_chunk"], "header differs from the vector")
    need(meta["snapshot_id"].hex() == vector["snapshot_id"] and meta["created_ms"] == int(vector["created_ms"]), "id or time differs")
    need(meta["tool"] == vector["tool"] and meta.get("annotations", {}) == vector["annotations"], "tool or annotations differ")
    regions = sorted(vector["regions"], key=lambda r: int(r["guest_address"], 16))
    need(len(regions) == len(meta["regions"]), "region count differs")
    zero_tags = bytes(header["page_size"] // 16)
    for index, (want, got) in enumerate(zip(regions, meta["regions"])):
        fields = (want["name"], int(want["guest_address"], 16), int(want["size"], 16), want["mte"], want["read_only"], want["slot"])
        need(fields == (got["name"], got["guest_address"], got["size"], got["mte"], got["read_only"], got["slot"]), f"region {index} differs")
        for page in range(got["size"] // header["page_size"]):
            data, page_tags = vector_page(vector, want, page)
            need(ram.get((index, page), bytes(header["page_size"])) == data, f"region {index} page {page}: data differs")
            need(tags.get((index, page), zero_tags) == (page_tags if got["mte"] else zero_tags), f"region {index} page {page}: tags differ")
    got_vcpus = [{"id": v["id"], "registers": [[hex(r), value.hex()] for r, value in v["registers"]]} for v in vcpus]
    need(got_vcpus == vector["vcpus"], "vCPUs differ")
    need([{"name": b["name"], "data": b["data"].hex()} for b in blobs] == vector["blobs"], "blobs differ")


def info(path):
    header, meta, ram, tags, vcpus, blobs = read_snapshot(path)
    regions = [{k: v for k, v in r.items()} for r in meta["regions"]]
    print(json.dumps({"header": header, "regions": regions, "ram_pages_stored": len(ram), "tag_pages_stored": len(tags), "vcpus": len(vcpus), "blobs": len(blobs)}, indent=1))


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "info":
            info(argv[2])
        elif len(argv) == 4 and argv[1] == "check":
            check(argv[2], argv[3])
            print(f"{argv[2]}: matches {argv[3]}")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Invalid, struct.error, ValueError, KeyError, TypeError, zstandard.ZstdError) as error:
        print(f"{argv[2]}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
