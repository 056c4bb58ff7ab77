#!/usr/bin/env python3
"""An independent reader of vmsnap format 1.x, written from spec/FORMAT.md alone.

It shares no code with vmsnap's TypeScript reader: it exists to prove that
the spec is enough, and the tests run it on every test vector and on hostile
files, where it must refuse what the spec tells a reader to refuse.

    reader.py info FILE              print the header, regions and sections as JSON
    reader.py check FILE VECTOR.json decode FILE and compare it with the vector's content;
                                     a diff snapshot (section 4.1) is decoded with its chain,
                                     its parents found by snapshot id among the *.vmsnap
                                     files beside it

Needs Debian's python3-msgpack, python3-zstandard and python3-xxhash.
Exit status: 0 good, 1 invalid file or content differs, 2 usage.
"""
import json
import os
import struct
import sys

import msgpack
import xxhash
import zstandard

MAGIC = b"\x89VMS\r\n\x1a\n"
TRAILER_MAGIC = b"VMSNAPND"
HEADER, SECTION, CHUNK, ENTRY, TRAILER = 64, 32, 40, 48, 32
KNOWN = {b"META", b"RAMC", b"TAGC", b"VCPU", b"BLOB", b"INDX", b"DIFF", b"CHGP"}
EMPTY_XXH64 = 0xEF46DB3751D8E999
NO_REGION = 0xFFFFFFFF
U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1
MiB = 1 << 20

# Section 10.3.
LIMIT_META, LIMIT_VCPU, LIMIT_BLOB, LIMIT_ANCILLARY = 16 * MiB, 4 * MiB, 16 * MiB, 16 * MiB
MAX_SECTIONS, MAX_VCPUS, MAX_VCPU_TOTAL, MAX_BLOBS, MAX_BLOB_TOTAL = 2**20, 4096, 16 * MiB, 4096, 64 * MiB
MAX_REGIONS, MAX_REGISTERS, MAX_ALL_REGISTERS, MAX_REGION_SIZE, MAX_NESTING = 65536, 65536, 2**19, 2**52, 32
MAX_NAME, MAX_TEXT, MAX_ANNOTATION_VALUE = 256, 4096, 65536
MAX_WINDOW = 4 * MiB
ZSTD_MAGIC = 0xFD2FB528


class Invalid(Exception):
    pass


def xxh64(data):
    return xxhash.xxh64_intdigest(data, seed=0)


def need(condition, message, offset=None):
    if not condition:
        raise Invalid(message if offset is None else f"{message} (offset {offset})")


def is_uint(value, maximum):
    return type(value) is int and 0 <= value <= maximum


def read_header(data):
    need(len(data) >= HEADER and data[:8] == MAGIC, "not a vmsnap file", 0)
    major, minor, header_length, page_size, pages_per_chunk, granule, tag_bits, codec, checksum_id = struct.unpack_from("<HHIIIHBBB", data, 8)
    need(major == 1, f"format {major}.{minor} is not 1.x", 8)
    need(struct.unpack_from("<Q", data, 56)[0] == xxh64(data[:56]), "header checksum", 56)
    need(header_length == 64 and page_size in (4096, 16384, 65536) and granule == 16 and tag_bits == 4, "header fields", 12)
    need(1 <= pages_per_chunk and pages_per_chunk * page_size <= 4 * MiB, "pages_per_chunk", 20)
    need(codec in (0, 1) and checksum_id == 1, "codec or checksum id", 27)
    return {"major": major, "minor": minor, "page_size": page_size, "pages_per_chunk": pages_per_chunk, "codec": codec}


def read_section_header(data, offset):
    """Section 4: checksum first, then four ASCII letters and a zero reserved field."""
    need(offset + SECTION <= len(data), "section header past the end", offset)
    kind, reserved, length, payload_sum, header_sum = struct.unpack_from("<4sIQQQ", data, offset)
    need(header_sum == xxh64(data[offset:offset + 24]), "section header checksum", offset)
    need(all(0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A for b in kind), f"section type {kind!r} is not four ASCII letters", offset)
    need(reserved == 0, "section header reserved field", offset + 4)
    return kind, length, payload_sum


def read_payload(data, offset, length, payload_sum):
    start = offset + SECTION
    need(start + length <= len(data), "payload past the end", offset)
    payload = data[start:start + length]
    need(xxh64(payload) == payload_sum, "payload checksum", start)
    return payload


def payload_limit(kind, header):
    ppc, page = header["pages_per_chunk"], header["page_size"]
    return {
        b"META": LIMIT_META,
        b"VCPU": LIMIT_VCPU,
        b"BLOB": LIMIT_BLOB,
        b"RAMC": CHUNK + (ppc + 7) // 8 + ppc * page,
        b"TAGC": CHUNK + (ppc + 7) // 8 + ppc * page // 32,
        b"DIFF": 64 * 1024,
        b"CHGP": CHUNK + (ppc + 7) // 8,
    }.get(kind, LIMIT_ANCILLARY)


# Section 5: MessagePack, strictly.

def string_keyed(pairs):
    out = {}
    for key, value in pairs:
        need(type(key) is str, "a MessagePack map key is not a string")
        need(key not in out, f"MessagePack map key {key!r} appears twice")
        out[key] = value
    return out


def refuse_ext(code, data):
    raise Invalid(f"a MessagePack ext value (type {code})")


def check_structure(value, depth):
    if isinstance(value, (list, dict)):
        need(depth <= MAX_NESTING, f"MessagePack nesting deeper than {MAX_NESTING}")
        for item in (value.values() if isinstance(value, dict) else value):
            check_structure(item, depth + 1)
    else:
        need(value is None or type(value) in (bool, int, float, str, bytes), f"a MessagePack value of type {type(value).__name__}")


def unpack(payload, what):
    # raw=False refuses invalid UTF-8; unpackb refuses bytes after the value; timestamps come back as objects, refused below.
    value = msgpack.unpackb(payload, raw=False, strict_map_key=False, object_pairs_hook=string_keyed, ext_hook=refuse_ext)
    check_structure(value, 1)
    need(isinstance(value, dict), f"{what} payload is not a map")
    return value


def text(value, limit, what):
    # A str's length in Python is its number of code points: the spec's characters.
    need(type(value) is str and len(value) <= limit, f"{what} must be a string of at most {limit} characters")
    return value


def binary(value, what, length=None):
    need(type(value) is bytes and (length is None or len(value) == length), f"{what} must be binary" + ("" if length is None else f" of {length} bytes"))
    return value


def read_metadata(payload, page_size):
    meta = unpack(payload, "META")
    binary(meta.get("snapshot_id"), "snapshot_id", 16)
    if meta.get("parent_id") is not None:
        binary(meta["parent_id"], "parent_id", 16)
    need(is_uint(meta.get("created_ms"), U64_MAX), "created_ms")
    text(meta.get("tool"), MAX_TEXT, "tool")
    annotations = meta.get("annotations", {})
    need(type(annotations) is dict, "annotations must be a map")
    for key, value in annotations.items():
        text(key, MAX_TEXT, "an annotation key")
        text(value, MAX_ANNOTATION_VALUE, f"annotation {key}")
    regions = meta.get("regions")
    need(type(regions) is list and len(regions) <= MAX_REGIONS, "regions")
    slots = set()
    for index, region in enumerate(regions):
        where = f"region {index}"
        need(type(region) is dict, f"{where} is not a map")
        text(region.get("name"), MAX_NAME, f"{where} name")
        address, size, slot = region.get("guest_address"), region.get("size"), region.get("slot")
        need(is_uint(address, U64_MAX) and is_uint(size, MAX_REGION_SIZE) and size >= 1, f"{where} address or size")
        need(address % page_size == 0 and size % page_size == 0, f"{where} is not page aligned")
        need(size // page_size < 2**32 and address + size <= 2**64, f"{where} is too large")
        need(type(region.get("mte")) is bool and type(region.get("read_only")) is bool, f"{where} flags")
        need(not (region["mte"] and region["read_only"]), f"{where} is read-only and MTE")
        need(is_uint(slot, U32_MAX) and slot not in slots, f"{where} slot")
        slots.add(slot)
    ordered = sorted(regions, key=lambda r: r["guest_address"])
    for before, after in zip(ordered, ordered[1:]):
        need(before["guest_address"] + before["size"] <= after["guest_address"], "regions overlap")
    return meta


def read_vcpu(payload):
    vcpu = unpack(payload, "VCPU")
    need(is_uint(vcpu.get("id"), U32_MAX), "vCPU id")
    registers = vcpu.get("registers")
    need(type(registers) is list and len(registers) <= MAX_REGISTERS, "registers")
    seen = set()
    for entry in registers:
        need(type(entry) is list and len(entry) == 2, "a register is not [id, value]")
        reg_id, value = entry
        need(is_uint(reg_id, U64_MAX) and reg_id not in seen, f"register id {reg_id!r} is bad or repeated")
        seen.add(reg_id)
        binary(value, f"register {reg_id:#x}", 1 << ((reg_id >> 52) & 15))
    return vcpu


def read_blob(payload):
    blob = unpack(payload, "BLOB")
    text(blob.get("name"), MAX_NAME, "blob name")
    binary(blob.get("data"), "blob data")
    return blob


# Section 6: chunks and their zstd frames.

def zstd_frame(stored, content_length):
    """Checks the frame header and the frame's length (section 6) before decoding."""
    need(len(stored) >= 6 and struct.unpack_from("<I", stored, 0)[0] == ZSTD_MAGIC, "not a zstd frame")
    descriptor = stored[4]
    fcs_flag, single, checksum, dictionary = descriptor >> 6, (descriptor >> 5) & 1, (descriptor >> 2) & 1, descriptor & 3
    need(not (descriptor >> 3) & 1 and dictionary == 0, "zstd reserved bit or dictionary")
    at = 5 + (0 if single else 1)
    fcs_bytes = [1 if single else 0, 2, 4, 8][fcs_flag]
    need(fcs_bytes > 0 and len(stored) >= at + fcs_bytes, "zstd frame does not declare its content size")
    size = int.from_bytes(stored[at:at + fcs_bytes], "little") + (256 if fcs_bytes == 2 else 0)
    need(size == content_length, "zstd frame content size")
    if single:
        window = size
    else:
        exponent, mantissa = stored[5] >> 3, stored[5] & 7
        base = 1 << (10 + exponent)
        window = base + (base // 8) * mantissa
    need(window <= MAX_WINDOW, f"zstd window of {window} bytes")
    at += fcs_bytes
    while True:
        need(at + 3 <= len(stored), "zstd frame ends inside a block header")
        block = int.from_bytes(stored[at:at + 3], "little")
        at += 3
        block_type = (block >> 1) & 3
        need(block_type != 3, "zstd reserved block type")
        at += 1 if block_type == 1 else block >> 3
        need(at <= len(stored), "zstd frame ends inside a block")
        if block & 1:
            break
    at += 4 if checksum else 0
    need(at == len(stored), "the stored content is not exactly one zstd frame")
    return zstandard.ZstdDecompressor().decompress(stored, max_output_size=content_length)


def decode_chunk(kind, payload, expected, header):
    need(len(payload) >= CHUNK, "chunk header")
    region, page_count, first_page, encoding, r1, r2, r3, present, content_length, content_sum = struct.unpack_from("<IIQBBBBIQQ", payload, 0)
    need((kind, region, first_page, page_count) == expected, f"chunk is not the one the grid expects: {expected}")
    need((r1, r2, r3) == (0, 0, 0), "chunk reserved bytes")
    bitmap_length = (page_count + 7) // 8
    need(CHUNK + bitmap_length <= len(payload), "bitmap")
    bitmap = payload[CHUNK:CHUNK + bitmap_length]
    need(page_count % 8 == 0 or bitmap[-1] >> (page_count % 8) == 0, "bitmap bits past page_count")
    bits = [(bitmap[p >> 3] >> (p & 7)) & 1 for p in range(page_count)]
    need(sum(bits) == present, "present_count")
    page_size = header["page_size"]
    per_page = page_size if kind == b"RAMC" else page_size // 32
    need(content_length == present * per_page, "content_length")
    stored = payload[CHUNK + bitmap_length:]
    if encoding == 0:
        need(len(stored) == content_length, "raw content length")
        content = stored
    else:
        need(encoding == 1 and header["codec"] == 1, "encoding")
        need(len(stored) < content_length, "compressed content is not shorter than raw")
        content = zstd_frame(stored, content_length)
    need(len(content) == content_length and xxh64(content) == content_sum, "content checksum")
    pages, next_present = {}, 0
    for page, bit in enumerate(bits):
        if bit:
            piece = content[next_present * per_page:(next_present + 1) * per_page]
            need(any(piece), f"page {first_page + page} is stored but all zero")
            if kind == b"TAGC":  # two tags per byte, low nibble = lower granule
                piece = bytes(t for b in piece for t in (b & 15, b >> 4))
            pages[first_page + page] = piece
            next_present += 1
    return pages


def decode_changed(payload, expected):
    """A CHGP payload (section 4.1): a chunk header with no content, and the bitmap of the pages the diff gives."""
    need(len(payload) >= CHUNK, "changed-page map header")
    region, page_count, first_page, encoding, r1, r2, r3, present, content_length, content_sum = struct.unpack_from("<IIQBBBBIQQ", payload, 0)
    need((b"CHGP", region, first_page, page_count) == expected, f"changed-page map is not the one the grid expects: {expected}")
    need((encoding, r1, r2, r3, content_length, content_sum) == (0, 0, 0, 0, 0, EMPTY_XXH64), "changed-page map header fields")
    need(len(payload) == CHUNK + (page_count + 7) // 8, "changed-page map length")
    bitmap = payload[CHUNK:]
    need(page_count % 8 == 0 or bitmap[-1] >> (page_count % 8) == 0, "changed-page map bits past page_count")
    given = {first_page + p for p in range(page_count) if (bitmap[p >> 3] >> (p & 7)) & 1}
    need(len(given) == present, "changed-page map present_count")
    return given


def grid(regions, page_size, pages_per_chunk, diff=False):
    for index, region in enumerate(regions):
        pages = region["size"] // page_size
        for first in range(0, pages, pages_per_chunk):
            count = min(pages_per_chunk, pages - first)
            if diff:
                yield (b"CHGP", index, first, count)
            yield (b"RAMC", index, first, count)
            if region["mte"]:
                yield (b"TAGC", index, first, count)


def grid_size(regions, page_size, pages_per_chunk, diff=False):
    return sum(-(-(r["size"] // page_size) // pages_per_chunk) * ((2 if r["mte"] else 1) + diff) for r in regions)


# Sections 8-10: the index, walked together with the sections it lists.

def read_index(data):
    need(len(data) >= HEADER + 2 * SECTION + TRAILER, "file too short", len(data))
    t = len(data) - TRAILER
    index_offset, file_length, magic, trailer_sum = struct.unpack_from("<QQ8sQ", data, t)
    need(magic == TRAILER_MAGIC and trailer_sum == xxh64(data[t:t + 24]), "trailer", t)
    need(file_length == len(data), "file length", t + 8)
    need(HEADER <= index_offset and index_offset + SECTION <= t, "index offset", t)
    kind, length, payload_sum = read_section_header(data, index_offset)
    need(kind == b"INDX" and index_offset + SECTION + length == t, "index", index_offset)
    need(length <= ENTRY * MAX_SECTIONS, "more sections than the limit", index_offset)
    payload = read_payload(data, index_offset, length, payload_sum)
    need(len(payload) % ENTRY == 0, "index length", index_offset)
    entries = []
    for at in range(0, len(payload), ENTRY):
        kind, region, first_page, offset, length, page_count, reserved, payload_sum = struct.unpack_from("<4sIQQQIIQ", payload, at)
        need(reserved == 0, "index entry reserved field", index_offset)
        entries.append((kind, region, first_page, offset, length, page_count, payload_sum))
    return entries, index_offset


def read_snapshot(path):
    with open(path, "rb") as f:
        data = f.read()
    header = read_header(data)
    entries, index_offset = read_index(data)
    meta, chunks = None, None
    ram, tags, vcpus, blobs, vcpu_ids = {}, {}, [], [], set()
    vcpu_bytes = blob_bytes = registers = 0
    pending = None
    diff_parent, given, marked = None, set(), set()
    expected_offset = HEADER
    for number, entry in enumerate(entries):
        kind_in_index, region, first_page, offset, length, page_count, payload_sum_in_index = entry
        need(offset == expected_offset and length >= SECTION and offset + length <= index_offset, "index entries do not tile the file", offset)
        expected_offset += length
        kind, payload_length, payload_sum = read_section_header(data, offset)
        # Place the section (section 4) before its payload is read.
        need(number > 0 or kind == b"META", "the first section is not META", offset)
        need(number == 0 or kind != b"META", "a second META", offset)
        need(kind != b"INDX", "the index lists an INDX section", offset)
        need(kind in KNOWN or not kind[:1].isupper(), f"unknown critical section {kind!r}", offset)
        need(payload_length <= payload_limit(kind, header), f"{kind!r} payload over its limit", offset)
        place = (NO_REGION, 0, 0)
        need(kind != b"DIFF" or number == 1, "a DIFF section that is not the second section", offset)
        if number == 1 and meta is not None:  # the grid, once the second section says whether the file is a diff
            chunks = grid(meta["regions"], header["page_size"], header["pages_per_chunk"], kind == b"DIFF")
            pending = next(chunks, None)
        if kind in (b"RAMC", b"TAGC", b"CHGP"):
            need(pending is not None and pending[0] == kind, f"{kind!r} where the grid wants {pending}", offset)
            place = pending[1:]
        elif kind in (b"VCPU", b"BLOB"):
            need(pending is None, f"{kind!r} before the last chunk", offset)
        # Every field of the entry describes the section (section 8).
        need((kind_in_index, length, payload_sum_in_index) == (kind, SECTION + payload_length, payload_sum), "index entry differs from its section", offset)
        need((region, first_page, page_count) == place, "index entry region, first_page or page_count", offset)
        if kind not in KNOWN:
            continue  # ancillary: skipped
        payload = read_payload(data, offset, payload_length, payload_sum)
        if kind == b"META":
            meta = read_metadata(payload, header["page_size"])
            need(1 + grid_size(meta["regions"], header["page_size"], header["pages_per_chunk"]) <= MAX_SECTIONS, "more sections than the limit")
        elif kind == b"DIFF":
            diff = unpack(payload, "DIFF")
            diff_parent = binary(diff.get("parent_id"), "DIFF parent_id", 16)
            need(meta.get("parent_id") == diff_parent, "the DIFF parent_id differs from META's", offset)
            need(2 + grid_size(meta["regions"], header["page_size"], header["pages_per_chunk"], True) <= MAX_SECTIONS, "more sections than the limit")
        elif kind == b"CHGP":
            marked = decode_changed(payload, pending)
            given |= {(pending[1], page) for page in marked}
            pending = next(chunks, None)
        elif kind in (b"RAMC", b"TAGC"):
            target = ram if kind == b"RAMC" else tags
            for page, piece in decode_chunk(kind, payload, pending, header).items():
                need(diff_parent is None or page in marked, f"page {page} stored but not marked changed", offset)
                target[(pending[1], page)] = piece
            pending = next(chunks, None)
        elif kind == b"VCPU":
            vcpu_bytes += payload_length
            need(len(vcpus) < MAX_VCPUS and vcpu_bytes <= MAX_VCPU_TOTAL, "more vCPUs than the limits allow", offset)
            vcpu = read_vcpu(payload)
            need(vcpu["id"] not in vcpu_ids, f"vCPU {vcpu['id']} twice", offset)
            vcpu_ids.add(vcpu["id"])
            registers += len(vcpu["registers"])
            need(registers <= MAX_ALL_REGISTERS, "more registers than the limit", offset)
            vcpus.append(vcpu)
        else:
            blob_bytes += payload_length
            need(len(blobs) < MAX_BLOBS and blob_bytes <= MAX_BLOB_TOTAL, "more blobs than the limits allow", offset)
            blobs.append(read_blob(payload))
    need(expected_offset == index_offset, "index tiling", index_offset)
    need(meta is not None, "no META section")
    if len(entries) == 1:  # META alone: the grid of a full snapshot must be empty
        pending = next(grid(meta["regions"], header["page_size"], header["pages_per_chunk"]), None)
    need(pending is None, "chunks missing")
    return header, meta, ram, tags, vcpus, blobs, (diff_parent, given)


def snapshot_id_of(path):
    try:
        return read_snapshot(path)[1]["snapshot_id"]
    except (Invalid, struct.error, ValueError, KeyError, TypeError, OSError, zstandard.ZstdError):
        return None


def read_chain(path):
    """A snapshot merged with its parents (section 4.1): each page from the newest link that gives it."""
    header, meta, ram, tags, vcpus, blobs, (parent_id, given) = read_snapshot(path)
    if parent_id is None:
        return header, meta, ram, tags, vcpus, blobs
    directory = os.path.dirname(path) or "."
    parents = [os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(".vmsnap")]
    fields = ("name", "guest_address", "size", "mte", "read_only", "slot")
    layout = lambda h, m: (h["page_size"], h["pages_per_chunk"], [[r[k] for k in fields] for r in m["regions"]])
    # The parent: a snapshot beside it with that id and the same layout (test vectors share one id).
    candidates = [p for p in parents if os.path.abspath(p) != os.path.abspath(path) and snapshot_id_of(p) == parent_id]
    need(candidates, f"missing parent: snapshot {parent_id.hex()} is not beside {path}")
    found = [c for c in (read_chain(p) for p in candidates) if layout(c[0], c[1]) == layout(header, meta)]
    need(found, f"the parent {parent_id.hex()} beside {path} has another page size, chunk size or regions")
    p_header, p_meta, p_ram, p_tags, _, _ = found[0]
    for key in set(p_ram) | set(p_tags):
        if key not in given:
            if key in p_ram:
                ram[key] = p_ram[key]
            if key in p_tags:
                tags[key] = p_tags[key]
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
    header, meta, ram, tags, vcpus, blobs = read_chain(path)
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
    header, meta, ram, tags, vcpus, blobs, _ = read_snapshot(path)
    regions = [{k: r[k] for k in ("name", "guest_address", "size", "mte", "read_only", "slot")} for r in meta["regions"]]
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
