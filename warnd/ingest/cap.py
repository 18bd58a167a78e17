"""CAP 1.2 ingestion: the bytes a feed sends become a NormalisedWarning, or a precise rejection.

A feed is hostile input until proven otherwise, so the checks run from cheapest to dearest and
each one refuses with its own code: size, UTF-8, well-formed XML without DTDs or entities, the
CAP 1.2 namespace, nesting depth, the OASIS schema, then the CAP rules the schema cannot express
(DOMAIN.md §2). Only a message that passes all of them is mapped to hazard, level and area.
Every rejection says what is wrong and where ("info[1]/area[2]/polygon[1]: …"), so that the
operator of the feed can fix it without reading warnd's code.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Final, Literal
from xml.etree.ElementTree import Element, ParseError
from xml.parsers.expat import ErrorString

import xmlschema
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import fromstring

from warnd.core.errors import InputError
from warnd.core.geometry import MAX_POLYGON_POINTS, MAX_RADIUS_KM, MAX_SHAPES, ring_problem
from warnd.core.model import Area, Circle, NormalisedWarning
from warnd.core.vocabulary import (
    HAZARDS,
    SEVERITY_LEVEL,
    Level,
    hazard_in,
    is_level_parameter,
    level_in,
    parameter_level,
)

CapErrorCode = Literal[
    "too_large",
    "malformed_xml",
    "forbidden_xml",
    "wrong_namespace",
    "schema_invalid",
    "rule_violation",
    "unsupported",
    "internal_error",
]

_HTTP_STATUS: Final[dict[CapErrorCode, int]] = {
    "too_large": 413,
    "malformed_xml": 400,
    "forbidden_xml": 400,
    "wrong_namespace": 422,
    "schema_invalid": 422,
    "rule_violation": 422,
    "unsupported": 422,
    # The message may be fine and warnd at fault: a 5xx tells the feed and our monitoring so.
    "internal_error": 500,
}


class CapError(InputError):
    """A CAP message was refused: `code` names the failed check, `detail` says what and where."""

    def __init__(self, code: CapErrorCode, detail: str) -> None:
        super().__init__(detail, code=code)
        self.http_status = _HTTP_STATUS[code]

    def __repr__(self) -> str:
        return f"CapError({self.code!r}, {self.detail!r})"


CAP_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.2"
_CAP_PREFIX: Final = f"{{{CAP_NAMESPACE}}}"
_ALERT_TAG: Final = f"{_CAP_PREFIX}alert"
_CAP_11_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.1"

# CAP itself nests five deep (alert/info/area/geocode/value) and an XML signature a few more;
# anything far deeper is hostile, and xmlschema's recursive validator would hit Python's
# recursion limit on it long before the byte limit is reached.
_MAX_DEPTH: Final = 32
# Only an XML signature (<ds:Signature>) may carry attributes in CAP, and it carries a few.
_MAX_ATTRIBUTES: Final = 1000
# XML Schema's own attributes, which any element may carry (xsi:schemaLocation, a hint that
# is never fetched); the schema judges them.
_XML_ATTRIBUTES: Final = ("{http://www.w3.org/2001/XMLSchema-instance}",)

# Schema errors beyond the first few are usually consequences of the first; keep details short.
_MAX_REPORTED: Final = 3

# Elements that may repeat in CAP: their paths always carry an index, e.g. "info[1]/area[2]".
_REPEATABLE: Final = frozenset(
    {
        "code",
        "info",
        "category",
        "responseType",
        "eventCode",
        "parameter",
        "resource",
        "area",
        "polygon",
        "circle",
        "geocode",
    }
)
_INFO_TIMES: Final = ("effective", "onset", "expires")

# Inputs are bounded by max_bytes, and these patterns have no nested quantifiers, so matching
# is linear: a feed cannot make them backtrack.
_DECIMAL: Final = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_CAP_TIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[-+]\d{2}:\d{2}")
_TIME_WITHOUT_OFFSET: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?([Zz]?)")
_UNEXPECTED_CHILD: Final = re.compile(r"Unexpected child with tag '[^']*' at position (\d+)\.")
_INCOMPLETE: Final = re.compile(r"The content of element '[^']*' is not complete\.")
_EXPECTED_TAG: Final = re.compile(r"Tag '(\w+)' expected\.")

_BEIJING: Final = timedelta(hours=8)

_MAX_GEOCODES: Final = 500  # geocodes in the chosen info block


def parse_cap(body: bytes, *, max_bytes: int = 512 * 1024) -> NormalisedWarning:
    """Turn a CAP 1.2 message into a NormalisedWarning, or raise CapError saying why not.

    Pure apart from loading the shipped XSD once per process.
    """
    if len(body) > max_bytes:
        raise CapError(
            "too_large", f"body is {len(body)} bytes; at most {max_bytes} bytes are accepted"
        )
    try:
        return _parse(body)
    except CapError:
        raise
    # Final guard. Every failure we can foresee is turned into a specific CapError where it
    # happens; this catches the ones we could not foresee (a library bug, RecursionError,
    # MemoryError on a pathological body), because a feed must never crash the ingest worker
    # or get a traceback back. The cause stays chained for the caller's log.
    except Exception as exc:
        raise CapError(
            "internal_error",
            f"warnd could not process this message ({type(exc).__name__}); it was not accepted."
            " Please report it to the warnd operators together with the message.",
        ) from exc


def _parse(body: bytes) -> NormalisedWarning:
    text = _decode(body)
    root = _parse_xml(text)
    if root.tag != _ALERT_TAG:
        raise CapError("wrong_namespace", _namespace_detail(root.tag))
    paths = _element_paths(root)
    # Before the schema: its pattern would only say "does not match", while the usual mistake
    # (UTC written as Z, or no offset at all) deserves a message that names the fix.
    _check_time_offsets(root, paths)
    _validate_schema(root, paths)

    msg_type = _text(root, "msgType")
    if msg_type in ("Ack", "Error"):
        raise CapError(
            "unsupported",
            f"msgType: {msg_type} messages acknowledge or report on other messages; warnd takes"
            " only Alert, Update and Cancel",
        )

    alert, problems = _read_alert(root, paths)
    if problems:
        raise CapError("rule_violation", _join(problems))
    return _to_warning(alert, raw=text)


# --- bytes to elements ---------------------------------------------------------------------


def _decode(body: bytes) -> str:
    if not body.strip():
        raise CapError("malformed_xml", "body is empty: expected a CAP 1.2 <alert> document")
    try:
        # utf-8-sig: a leading byte-order mark is an encoding artefact, not content.
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise CapError(
            "malformed_xml",
            f"line {line}, byte {exc.start}: 0x{body[exc.start]:02x} is not valid UTF-8;"
            " CAP messages must be sent in UTF-8 (GBK or GB2312 must be converted)",
        ) from None


def _parse_xml(text: str) -> Element:
    """Parse without DTDs or entities: they allow billion-laughs expansion and file reads."""
    try:
        # A str is parsed as the Unicode it already is; an encoding declaration is ignored,
        # which is right because the body was just proven to be UTF-8.
        return fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except ParseError as exc:
        line, column = exc.position
        raise CapError(
            "malformed_xml",
            f"line {line}, column {column + 1}: {ErrorString(exc.code)}; the body must be a"
            " well-formed CAP 1.2 XML document",
        ) from None
    except DTDForbidden as exc:
        target = f" referring to {_show(exc.sysid)}" if exc.sysid else ""
        raise CapError(
            "forbidden_xml",
            f"document type declaration <!DOCTYPE {exc.name}>{target} is not allowed: DTDs can"
            " declare entities that expand without bound or read external files",
        ) from None
    except EntitiesForbidden as exc:
        raise CapError(
            "forbidden_xml", f"entity declaration {_show(exc.name)} is not allowed in CAP"
        ) from None
    except DefusedXmlException as exc:
        raise CapError(
            "forbidden_xml", f"external references are not allowed in CAP ({exc})"
        ) from None


def _namespace_detail(tag: str) -> str:
    namespace, _, local = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
    expected = f'expected <alert xmlns="{CAP_NAMESPACE}">'
    if namespace == _CAP_11_NAMESPACE:
        return f"root element is a CAP 1.1 alert; warnd accepts CAP 1.2 only ({expected})"
    if not namespace:
        return f"root element <{local}> has no namespace; {expected}"
    return f"root element is <{local}> in namespace {namespace}; {expected}"


def _element_paths(root: Element) -> dict[int, str]:
    """Readable locations ("info[1]/area[2]/polygon[1]") of every element, by id().

    Walks with an explicit stack, since the nesting depth is what is being checked.
    """
    paths = {id(root): "alert"}
    stack: list[tuple[Element, str, int]] = [(root, "", 1)]
    attributes = 0
    while stack:
        parent, prefix, depth = stack.pop()
        # Checked before the schema, whose validator builds an error per unknown attribute
        # quadratically: 20,000 attributes cost it 40 s of CPU, a stall for every feed.
        if parent.attrib:
            where = paths[id(parent)]
            own = [a for a in parent.attrib if not a.startswith(_XML_ATTRIBUTES)]
            if own and parent.tag.startswith(_CAP_PREFIX):
                names = ", ".join(_show(_local(a), 30) for a in own[:3])
                raise CapError(
                    "schema_invalid",
                    f"{where}: CAP elements carry no attributes; this one has "
                    f"{len(own)} ({names}{', …' if len(own) > 3 else ''})",
                )
            attributes += len(parent.attrib)
            if attributes > _MAX_ATTRIBUTES:
                raise CapError(
                    "schema_invalid",
                    f"{where}: more than {_MAX_ATTRIBUTES} attributes in the message; an XML "
                    "signature needs a few dozen",
                )
        if depth > _MAX_DEPTH:
            raise CapError(
                "schema_invalid",
                f"{paths[id(parent)]}: elements are nested more than {_MAX_DEPTH} deep;"
                " no CAP message nests like this",
            )
        totals: dict[str, int] = {}
        for child in parent:
            totals[child.tag] = totals.get(child.tag, 0) + 1
        seen: dict[str, int] = {}
        for child in parent:
            seen[child.tag] = seen.get(child.tag, 0) + 1
            name = _local(child.tag)
            if name in _REPEATABLE or totals[child.tag] > 1:
                name = f"{name}[{seen[child.tag]}]"
            path = prefix + name
            paths[id(child)] = path
            stack.append((child, path + "/", depth + 1))
    return paths


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


# --- schema --------------------------------------------------------------------------------


@functools.cache
def _schema() -> xmlschema.XMLSchema:
    source = resources.files("warnd.ingest") / "schema" / "CAP-v1.2.xsd"
    return xmlschema.XMLSchema(source.read_text(encoding="utf-8"))


def _validate_schema(root: Element, paths: dict[int, str]) -> None:
    errors: list[str] = []
    # use_location_hints=False: an xsi:schemaLocation in the message must never make warnd
    # fetch anything; the message is checked against the shipped schema only.
    for error in _schema().iter_errors(root, use_location_hints=False):
        errors.append(_describe_schema_error(error, paths))
        if len(errors) == _MAX_REPORTED:
            break
    if errors:
        raise CapError("schema_invalid", _join(errors))


def _describe_schema_error(error: xmlschema.XMLSchemaValidationError, paths: dict[int, str]) -> str:
    element = error.elem
    reason = _without_namespace(error.reason or error.message)
    if not isinstance(element, Element):
        return reason
    path = paths.get(id(element), _local(element.tag))
    expected = _EXPECTED_TAG.search(reason)
    misplaced = _describe_misplaced(element, reason, paths)
    if misplaced:
        return misplaced
    if expected and _INCOMPLETE.match(reason):
        return f"{path}: required element <{expected.group(1)}> is missing"
    if len(element) == 0 and _local(element.tag) in ("sent", *_INFO_TIMES):
        return (
            f"{path}: {_show(element.text or '')} is not a CAP date-time; write it as"
            " YYYY-MM-DDThh:mm:ss with a numeric offset, e.g. 2026-07-29T09:30:00+08:00"
        )
    if len(element) == 0 and reason.startswith("value "):
        return f"{path}: {_show(element.text or '')}: {reason}"
    return f"{path}: {reason}"


def _describe_misplaced(parent: Element, reason: str, paths: dict[int, str]) -> str | None:
    """xmlschema blames the parent of a misplaced child; the operator needs the child."""
    unexpected = _UNEXPECTED_CHILD.match(reason)
    if unexpected is None:
        return None
    position = int(unexpected.group(1)) - 1
    children = list(parent)
    if not 0 <= position < len(children):
        return None
    child = children[position]
    name = _display_name(child.tag)
    expected = _EXPECTED_TAG.search(reason)
    if expected is None:
        return (
            f"{paths[id(child)]}: <{name}> is not allowed here (CAP 1.2 fixes which elements"
            " appear, in which order)"
        )
    tag = expected.group(1)
    if parent.find(_cap(tag)) is None:
        return (
            f"{paths[id(parent)]}: required element <{tag}> is missing"
            f" (found <{name}> in its place)"
        )
    return (
        f"{paths[id(child)]}: <{name}> is not expected here, <{tag}> belongs at this position"
        " (CAP 1.2 fixes the order and number of elements)"
    )


def _display_name(tag: str) -> str:
    namespace, _, local = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
    return local if namespace == CAP_NAMESPACE else f"{local} in namespace {namespace or 'none'}"


def _without_namespace(reason: str) -> str:
    return reason.replace(f"{{{CAP_NAMESPACE}}}", "").replace("'cap:", "'")


# --- CAP rules the schema cannot check -----------------------------------------------------


class _RuleError(ValueError):
    """One broken CAP rule, worded for the feed operator; the caller adds where it is."""


@dataclass
class _AreaBlock:
    path: str
    desc: str
    codes: list[str] = field(default_factory=list)
    polygons: list[tuple[tuple[float, float], ...]] = field(default_factory=list)
    polygon_paths: list[str] = field(default_factory=list)  # where each polygon is, in order
    circles: list[Circle] = field(default_factory=list)
    geocodes: int = 0  # every geocode, division code or not


@dataclass
class _InfoBlock:
    path: str
    language: str
    event: str
    severity: str
    headline: str
    description: str
    instruction: str
    event_codes: list[str]
    parameters: list[tuple[str, str]]
    effective: datetime | None
    expires: datetime | None
    extra: dict[str, str]
    areas: list[_AreaBlock]


@dataclass
class _Alert:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    references: tuple[str, ...]
    infos: list[_InfoBlock]


def _read_alert(root: Element, paths: dict[int, str]) -> tuple[_Alert, list[str]]:
    """Read a schema-valid alert into plain data, collecting every rule it breaks."""
    problems: list[str] = []
    identifier = _text(root, "identifier")
    sender = _text(root, "sender")
    for name, value in (("identifier", identifier), ("sender", sender)):
        problem = _key_problem(value)
        if problem:
            problems.append(f"{name} {_show(value)}: {problem}")

    try:
        sent = _time(_text(root, "sent"))
    except _RuleError as violation:
        # Nothing below can be judged against an unreadable sent time.
        raise CapError("rule_violation", f"sent: {violation}") from None
    msg_type = _text(root, "msgType")
    if _text(root, "scope") == "Private" and not _text(root, "addresses"):
        problems.append("addresses: required when scope is Private, and missing or empty")

    references = tuple(_text(root, "references").split())
    if msg_type in ("Update", "Cancel") and not references:
        problems.append(
            f"references: required for msgType {msg_type}, and missing or empty; list the"
            " superseded messages as sender,identifier,sent"
        )
    for number, reference in enumerate(references, 1):
        problem = _reference_problem(reference)
        if problem:
            problems.append(f"references entry {number} {_show(reference)}: {problem}")

    infos = [_read_info(info, paths, sent, problems) for info in root.findall(_cap("info"))]
    alert = _Alert(
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=_text(root, "status"),
        msg_type=msg_type,
        references=references,
        infos=infos,
    )
    return alert, problems


def _read_info(
    info: Element, paths: dict[int, str], sent: datetime, problems: list[str]
) -> _InfoBlock:
    path = paths[id(info)]
    effective = _optional_time(info, path, "effective", problems)
    expires = _optional_time(info, path, "expires", problems)
    if expires is not None:
        if expires <= sent:
            problems.append(f"{path}/expires: {expires.isoformat()} is not after sent")
        elif effective is not None and expires <= effective:
            problems.append(
                f"{path}/expires: {expires.isoformat()} is not after effective"
                f" {effective.isoformat()}"
            )
    extra = {name: _text(info, name) for name in ("senderName", "web", "contact")}
    return _InfoBlock(
        path=path,
        language=_text(info, "language") or "en-US",  # the schema's default
        event=_text(info, "event"),
        severity=_text(info, "severity"),
        headline=_text(info, "headline"),
        description=_text(info, "description"),
        instruction=_text(info, "instruction"),
        event_codes=[value for _, value in _pairs(info, "eventCode")],
        parameters=_pairs(info, "parameter"),
        effective=effective,
        expires=expires,
        extra={name: value for name, value in extra.items() if value},
        areas=[_read_area(area, paths, problems) for area in info.findall(_cap("area"))],
    )


def _read_area(area: Element, paths: dict[int, str], problems: list[str]) -> _AreaBlock:
    block = _AreaBlock(path=paths[id(area)], desc=_text(area, "areaDesc"))
    for polygon in area.findall(_cap("polygon")):
        try:
            block.polygons.append(_polygon((polygon.text or "").strip()))
            block.polygon_paths.append(paths[id(polygon)])
        except _RuleError as violation:
            problems.append(f"{paths[id(polygon)]}: {violation}")
    for circle in area.findall(_cap("circle")):
        try:
            block.circles.append(_circle((circle.text or "").strip()))
        except _RuleError as violation:
            problems.append(f"{paths[id(circle)]}: {violation}")
    geocodes = _pairs(area, "geocode")
    block.geocodes = len(geocodes)
    for _, value in geocodes:
        # Division codes: 6 (county), 9 (town) or 12 (village) ASCII digits, whatever the
        # valueName says; isascii() because str.isdigit() also accepts full-width digits.
        if value.isascii() and value.isdigit() and len(value) in (6, 9, 12):
            block.codes.append(value.ljust(12, "0"))
    return block


def _key_problem(value: str) -> str | None:
    """Why a value cannot be part of the (sender, identifier, sent) key, or None."""
    if not value:
        return "is empty"
    for position, char in enumerate(value, 1):
        if char.isspace():
            what = "a space"
        elif char == ",":
            what = "a comma"
        elif char in "<&":
            what = f"'{char}'"
        else:
            continue
        return (
            f"contains {what} at character {position}; CAP forbids spaces, commas, '<' and '&'"
            " here because references are written as space-separated sender,identifier,sent"
        )
    return None


def _reference_problem(reference: str) -> str | None:
    parts = reference.split(",")
    if len(parts) != 3 or not all(parts):
        return f"is not a sender,identifier,sent triple ({len(parts)} comma-separated parts)"
    if not _CAP_TIME.fullmatch(parts[2]):
        return (
            f"sent part {_show(parts[2])} is not a CAP date-time with numeric offset,"
            " e.g. 2026-07-29T09:30:00+08:00"
        )
    try:
        _time(parts[2])
    except _RuleError as violation:
        return f"sent part: {violation}"
    return None


def _check_time_offsets(root: Element, paths: dict[int, str]) -> None:
    problems = []
    elements = root.findall(_cap("sent"))
    for info in root.findall(_cap("info")):
        for name in _INFO_TIMES:
            elements.extend(info.findall(_cap(name)))
    for element in elements:
        value = (element.text or "").strip()
        naive = _TIME_WITHOUT_OFFSET.fullmatch(value)
        if naive is None:
            continue
        if naive.group(1):
            problem = (
                f"{_show(value)} ends in 'Z'; CAP 1.2 requires a numeric UTC offset"
                f"{_beijing_example(value)}"
            )
        else:
            problem = (
                f"{_show(value)} has no UTC offset; CAP 1.2 requires one"
                f" (if it is Beijing time, write {value}+08:00)"
            )
        problems.append(f"{paths[id(element)]}: {problem}")
    if problems:
        raise CapError("rule_violation", _join(problems))


def _beijing_example(utc_text: str) -> str:
    try:
        moment = datetime.fromisoformat(utc_text[:-1] + "+00:00") + _BEIJING
    except (ValueError, OverflowError):
        return ", e.g. +08:00 for Beijing time"
    local = moment.replace(tzinfo=None).isoformat()
    return f": write {local}+08:00 (Beijing time) or {utc_text[:-1]}-00:00"


# --- geometry ------------------------------------------------------------------------------


def _point(token: str) -> tuple[float, float]:
    lat_text, comma, lon_text = token.partition(",")
    if not (comma and _DECIMAL.fullmatch(lat_text) and _DECIMAL.fullmatch(lon_text)):
        raise _RuleError(f"{_show(token)} is not a lat,lon pair in decimal degrees")
    lat, lon = float(lat_text), float(lon_text)
    if not -90 <= lat <= 90:
        swapped = -90 <= lon <= 90 and -180 <= lat <= 180
        hint = "; latitude and longitude look swapped (CAP writes lat,lon)" if swapped else ""
        raise _RuleError(f"latitude {lat_text} is outside [-90, 90]{hint}")
    if not -180 <= lon <= 180:
        raise _RuleError(f"longitude {lon_text} is outside [-180, 180]")
    return lat, lon


def _polygon(text: str) -> tuple[tuple[float, float], ...]:
    tokens = text.split()
    points = []
    for number, token in enumerate(tokens, 1):
        try:
            points.append(_point(token))
        except _RuleError as violation:
            raise _RuleError(f"point {number}: {violation}") from None
    if len(points) < 4:
        raise _RuleError(
            f"ring has {len(points)} points; a CAP polygon needs at least 4, the first point"
            " repeated as the last"
        )
    if points[0] != points[-1]:
        raise _RuleError(
            f"ring is not closed (first point {tokens[0]} differs from last {tokens[-1]})"
        )
    # A longer ring is refused by the area limits, and is not worth searching for crossings.
    problem = ring_problem(points) if len(points) <= MAX_POLYGON_POINTS else None
    if problem:
        raise _RuleError(problem)
    return tuple(points)


def _circle(text: str) -> Circle:
    parts = text.split()
    if len(parts) != 2:
        raise _RuleError(f"{_show(text)} is not 'lat,lon radius' with the radius in km")
    try:
        lat, lon = _point(parts[0])
    except _RuleError as violation:
        raise _RuleError(f"centre: {violation}") from None
    radius_text = parts[1]
    if not _DECIMAL.fullmatch(radius_text):
        raise _RuleError(f"radius {_show(radius_text)} is not a number of kilometres")
    radius = float(radius_text)
    if radius <= 0:
        raise _RuleError(f"radius {radius_text} km must be greater than 0")
    if radius > MAX_RADIUS_KM:
        raise _RuleError(
            f"radius {_show(radius_text)} km: no place on earth is more than {MAX_RADIUS_KM} km"
            " from the centre; give the radius in kilometres"
        )
    return Circle(lat=lat, lon=lon, radius_km=radius)


# --- mapping -------------------------------------------------------------------------------


def _to_warning(alert: _Alert, *, raw: str) -> NormalisedWarning:
    info = _choose_info(alert.infos)
    if info is None:
        if alert.msg_type != "Cancel":
            raise CapError(
                "unsupported",
                f"alert: a {alert.msg_type} without an <info> block says nothing warnd can"
                " send; add info with event, severity and area",
            )
        # A bare Cancel only points at what it ends (references); the level is not used to
        # target anyone, so the lowest one stands in rather than refusing the cancellation.
        return NormalisedWarning(
            sender=alert.sender,
            identifier=alert.identifier,
            sent=alert.sent,
            status=alert.status,
            msg_type=alert.msg_type,
            hazard="other",
            level=Level.BLUE,
            area=Area(),
            references=alert.references,
            raw=raw,
        )

    limits = _area_limit_problems(info)
    if limits:
        raise CapError("rule_violation", _join(limits))
    area = Area(
        codes=tuple(dict.fromkeys(code for block in info.areas for code in block.codes)),
        polygons=tuple(polygon for block in info.areas for polygon in block.polygons),
        circles=tuple(circle for block in info.areas for circle in block.circles),
    )
    if alert.msg_type != "Cancel":
        if not info.areas:
            raise CapError(
                "rule_violation",
                f"{info.path}: has no <area>; an {alert.msg_type} must say where it applies",
            )
        if area.is_empty():
            descs = _show("、".join(block.desc for block in info.areas))
            raise CapError(
                "unsupported",
                f"{info.path}: no area can be located ({descs}): warnd needs a polygon, a"
                " circle or a geocode with a 6-, 9- or 12-digit division code",
            )
    return NormalisedWarning(
        sender=alert.sender,
        identifier=alert.identifier,
        sent=alert.sent,
        status=alert.status,
        msg_type=alert.msg_type,
        hazard=_hazard(info),
        level=_level(info, alert.msg_type),
        area=area,
        event=info.event,
        headline=info.headline,
        description=info.description,
        instruction=info.instruction,
        area_desc="、".join(dict.fromkeys(block.desc for block in info.areas if block.desc)),
        references=alert.references,
        effective=info.effective,
        expires=info.expires,
        raw=raw,
        extra=info.extra,
        parameters=tuple(info.parameters),
    )


def _area_limit_problems(info: _InfoBlock) -> list[str]:
    """Where the chosen block's area is larger than warnd will search the roster for."""
    problems = []
    shapes = sum(len(block.polygons) + len(block.circles) for block in info.areas)
    if shapes > MAX_SHAPES:
        problems.append(
            f"{info.path}: {shapes} polygons and circles in its areas; at most {MAX_SHAPES}"
            " are accepted (merge shapes, or name the divisions with geocodes)"
        )
    for block in info.areas:
        for polygon, path in zip(block.polygons, block.polygon_paths, strict=True):
            if len(polygon) > MAX_POLYGON_POINTS:
                problems.append(
                    f"{path}: {len(polygon)} points; at most {MAX_POLYGON_POINTS} are accepted"
                    " in one polygon (simplify the ring)"
                )
    geocodes = sum(block.geocodes for block in info.areas)
    if geocodes > _MAX_GEOCODES:
        problems.append(
            f"{info.path}: {geocodes} geocodes in its areas; at most {_MAX_GEOCODES} are"
            " accepted (name a town or county instead of its villages)"
        )
    return problems


def _choose_info(infos: list[_InfoBlock]) -> _InfoBlock | None:
    """The block in Simplified Chinese when there is one: the language warnd's texts use."""
    for wanted in ("zh-cn", "zh"):
        for info in infos:
            language = info.language.lower()
            if language == wanted or language.startswith(wanted + "-"):
                return info
    return infos[0] if infos else None


def _hazard(info: _InfoBlock) -> str:
    """eventCode first (it is meant for machines), then event, then headline; else "other"."""
    for value in info.event_codes:
        if value.lower() in HAZARDS:
            return value.lower()
        found = hazard_in(value)
        if found:
            return found
    for text in (info.event, info.headline):
        found = hazard_in(text)
        if found:
            return found
    return "other"


def _level(info: _InfoBlock, msg_type: str) -> Level:
    """An explicit colour or grade wins over severity: it is what the issuer actually declared.

    Parameters come first because they are structured; level-named ones before the rest.
    """
    parameters = sorted(info.parameters, key=lambda pair: not is_level_parameter(pair[0]))
    for name, value in parameters:
        level = parameter_level(name, value)
        if level:
            return level
    for text in (info.event, info.headline):
        level = level_in(text, roman=False)
        if level:
            return level
    if info.severity in SEVERITY_LEVEL:
        return SEVERITY_LEVEL[info.severity]
    if msg_type == "Cancel":
        # Refusing a cancellation over its level would leave people warned; the level of a
        # Cancel targets no one, so the lowest one stands in.
        return Level.BLUE
    raise CapError(
        "rule_violation",
        f"{info.path}/severity: Unknown, and no colour (红色/橙色/黄色/蓝色 or Red/Orange/Yellow/"
        "Blue) in event, headline or parameters; warnd cannot tell the warning level",
    )


# --- small readers -------------------------------------------------------------------------


def _cap(name: str) -> str:
    return f"{{{CAP_NAMESPACE}}}{name}"


def _text(parent: Element, name: str) -> str:
    """The stripped text of a CAP child element; "" when it is absent or empty."""
    child = parent.find(_cap(name))
    return (child.text or "").strip() if child is not None else ""


def _pairs(parent: Element, name: str) -> list[tuple[str, str]]:
    """(valueName, value) of each eventCode, parameter or geocode child."""
    return [(_text(pair, "valueName"), _text(pair, "value")) for pair in parent.findall(_cap(name))]


def _time(text: str) -> datetime:
    """A schema-valid CAP date-time as an aware datetime (xs:dateTime allows 24:00:00)."""
    try:
        if text[11:19] == "24:00:00":
            moment = datetime.fromisoformat(text[:11] + "00:00:00" + text[19:]) + timedelta(days=1)
        else:
            moment = datetime.fromisoformat(text)
        # Every later stage compares and stores instants; one that has no UTC equivalent
        # (year 1 at +08:00, year 9999 at -12:00) must be refused here, not crash them.
        moment.astimezone(UTC)
    except ValueError:
        raise _RuleError(f"{_show(text)} is not a valid date-time") from None
    except OverflowError:
        raise _RuleError(f"{_show(text)} is outside the range of representable times") from None
    return moment


def _optional_time(info: Element, path: str, name: str, problems: list[str]) -> datetime | None:
    text = _text(info, name)
    if not text:
        return None
    try:
        return _time(text)
    except _RuleError as violation:
        problems.append(f"{path}/{name}: {violation}")
        return None


def _show(value: str, limit: int = 60) -> str:
    """A value quoted for a detail message: control characters escaped, long values cut."""
    cut = value[:limit]
    shown = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in cut
    )
    return f"'{shown}…'" if len(value) > limit else f"'{shown}'"


def _join(problems: list[str]) -> str:
    shown = "; ".join(problems[:_MAX_REPORTED])
    more = len(problems) - _MAX_REPORTED
    return f"{shown}; and {more} more" if more > 0 else shown
