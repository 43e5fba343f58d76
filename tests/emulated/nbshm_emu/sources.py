"""What the harness reads from the repository itself: the INF template, the ETW event table in
src/etw.rs and the schema in docs/etw.md. Each is parsed here on its own, so the emulated binary
is checked against all three."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

LEVELS = {"LogAlways": 0, "Critical": 1, "Error": 2, "Warning": 3, "Informational": 4, "Verbose": 5}


# --- INF ------------------------------------------------------------------------------------------

def _strip_comment(line: str) -> str:
    out, quoted = [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            break
        out.append(ch)
    return "".join(out).strip()


def parse_inf(path: Path | None = None) -> dict[str, list[tuple[str | None, str]]]:
    """Sections → list of (key or None, value) entries, in order; keys as written."""
    path = path or REPO / "inf" / "nbshm.inx"
    sections: dict[str, list[tuple[str | None, str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            current = m.group(1).strip()
            sections.setdefault(current, [])
            continue
        if current is None:
            continue
        if "=" in line and not line.upper().startswith("HKR"):
            key, value = line.split("=", 1)
            sections[current].append((key.strip(), value.strip()))
        else:
            sections[current].append((None, line))
    return sections


def inf_facts(path: Path | None = None) -> dict:
    """NetCfgInstanceId(s), AddService names and Ndi\\Service from the INF template."""
    sections = parse_inf(path)
    ids, services, ndi_service = set(), set(), set()
    for name, entries in sections.items():
        for key, value in entries:
            if key and key.lower() == "netcfginstanceid":
                ids.add(value.strip('"'))
            if key and key.lower() == "addservice":
                services.add(value.split(",")[0].strip())
            if key is None and value.upper().startswith("HKR"):
                parts = [p.strip() for p in value.split(",")]
                if len(parts) >= 5 and parts[1].lower() == "ndi" and parts[2].lower() == "service":
                    ndi_service.add(parts[4])
    return {"NetCfgInstanceId": ids, "AddService": services, "NdiService": ndi_service}


# --- src/etw.rs -----------------------------------------------------------------------------------

def etw_rs_schema(path: Path | None = None) -> dict:
    """{'keywords': {name: value}, 'events': {EventName: {'level', 'keywords', 'fields': [(name, type)]}}}"""
    text = (path or REPO / "src" / "etw.rs").read_text(encoding="utf-8")
    keywords = {m.group(1): int(m.group(2), 16)
                for m in re.finditer(r"pub const (KW_\w+): u64 = (0x[0-9A-Fa-f]+);", text)}
    start = text.rfind("\nevents! {")
    if start < 0:
        raise ValueError("src/etw.rs: no `events! {` table")
    table = text[start:]
    events = {}
    for m in re.finditer(r'(\w+)\s*=\s*"(\w+)",\s*(\w+),\s*([\w| ]+?),\s*\{(.*?)\n\s*\}', table, re.S):
        fields = re.findall(r'(\w+)\s+"(\w+)"\s+\w+\s*:', m.group(5))
        kw = 0
        for part in m.group(4).split("|"):
            kw |= keywords[part.strip()]
        events[m.group(2)] = {
            "fn": m.group(1),
            "level": LEVELS[m.group(3)],
            "keywords": kw,
            "fields": [(name, ftype) for ftype, name in fields],
        }
    return {"keywords": keywords, "events": events}


# --- docs/etw.md -----------------------------------------------------------------------------------

def etw_md_schema(path: Path | None = None) -> dict:
    """{'guid': str, 'events': {EventName: {'level', 'keywords', 'fields': [(name, type)]}}}"""
    text = (path or REPO / "docs" / "etw.md").read_text(encoding="utf-8")
    guid = None
    m = re.search(r"\|\s*Nbshm\.SharedMemoryFilter\s*\|\s*\{([0-9a-fA-F-]{36})\}\s*\|", text)
    if m:
        guid = m.group(1).lower()
    events = {}
    parts = re.split(r"^### (\w+)\s*$", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        lm = re.search(r"level:\s*\w+\s*\((\d)\)\s*·\s*keywords:\s*(0x[0-9A-Fa-f]+)", body)
        if not lm:
            continue
        fields = []
        for row in re.finditer(r"^\|\s*(\w+)\s*\|\s*(\w+)\s*\|", body, re.M):
            if row.group(1) == "field":
                continue
            fields.append((row.group(1), row.group(2)))
        events[name] = {"level": int(lm.group(1)), "keywords": int(lm.group(2), 16), "fields": fields}
    return {"guid": guid, "events": events}


# The TraceLogging in-type (and out-type) each `write_event!` field type must produce on x64:
# what a decoder sees for that type.
FIELD_TYPE_ENCODING = {
    "u8": (4, None),  # UINT8
    "u32": (8, None),  # UINT32
    "u64": (10, None),  # UINT64
    "u32_hex": (20, None),  # HEXINT32
    "pointer": (21, None),  # HEXINT64 (pointer-sized on x64)
    "str8": (23, 35),  # counted 8-bit string, shown as UTF-8
    "str16": (22, None),  # counted UTF-16 string
}


# --- configuration keywords -----------------------------------------------------------------------

def config_keywords(path: Path | None = None) -> list[dict]:
    """The KEYWORDS table of src/config.rs, in order: name, default, min, max, runtime."""
    text = (path or REPO / "src" / "config.rs").read_text(encoding="utf-8")
    table = text[text.index("pub const KEYWORDS"):]
    table = table[:table.index("\n];")]
    out = []
    for body in re.findall(r"KeywordInfo \{(.*?)\n    \}", table, re.S):
        f = dict(re.findall(r"(\w+): ([^,\n]+),", body))
        out.append({"name": f["name"].strip('"'), "default": int(f["default"].replace("_", "")),
                    "min": int(f["min"].replace("_", "")), "max": int(f["max"].replace("_", "")),
                    "runtime": f["runtime"] == "true"})
    return out
