"""Every sample behaves as its name says; hostile XML is refused with its code."""
import resource

import pytest

from bus.envelope import build_envelope, parse_envelope
from bus.errors import RejectedMessage
from schemas.hardened import XmlLimits
from schemas.validation import MessageValidator
from tests.conftest import SAMPLES

VALID = sorted((SAMPLES / "valid").glob("*.xml"))
INVALID = sorted((SAMPLES / "invalid").glob("*.xml"))
TYPES = ["CaseAccepted", "CaseProcess", "CaseResult", "EnterpriseRecord", "PersonRecord",
         "ProjectRecord", "ServiceItem"]


@pytest.fixture(scope="module")
def validator():
    return MessageValidator()


def test_at_least_two_valid_samples_per_type():
    for message_type in TYPES:
        assert len([p for p in VALID if p.name.startswith(message_type + "-")]) >= 2, message_type


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_sample_is_accepted(path, validator):
    envelope = parse_envelope(path.read_bytes(), validator)
    assert path.name.startswith(envelope.type + "-")
    assert envelope.routing_key == f"{envelope.type}.{envelope.source}"
    assert envelope.xml.startswith(b"<?xml")


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_sample_gives_the_code_in_its_name(path, validator):
    expected = path.name.split(".")[-2]
    with pytest.raises(RejectedMessage) as caught:
        parse_envelope(path.read_bytes(), validator)
    assert expected in [e.code for e in caught.value.errors], caught.value.errors
    for error in caught.value.errors:
        assert error.path.startswith("/") and error.text


def test_field_paths_name_the_bad_field(validator):
    with pytest.raises(RejectedMessage) as caught:
        parse_envelope((SAMPLES / "invalid" / "applicant-uscc.USCC_CHECK.xml").read_bytes(), validator)
    assert caught.value.errors[0].path == "/Envelope/Body/CaseAccepted/Applicant/IdNumber"
    with pytest.raises(RejectedMessage) as caught:
        parse_envelope((SAMPLES / "invalid" / "timestamp-without-zone.XSD_INVALID.xml").read_bytes(), validator)
    assert caught.value.errors[0].path == "/Envelope/Body/CaseResult/FinishedAt"


def test_business_keys_come_from_the_body(validator):
    env = parse_envelope((SAMPLES / "valid" / "CaseAccepted-enterprise.xml").read_bytes(), validator)
    assert env.keys.case_number == "320382-SCJG-20261120-0001"
    assert env.keys.uscc == "91320382MA1Y2K3P9C"
    assert env.keys.project_code == "2026-320382-47-03-004512"
    person = parse_envelope((SAMPLES / "valid" / "CaseAccepted-person-window.xml").read_bytes(), validator)
    assert person.keys.citizen_id == "320382199207040242" and person.keys.uscc is None


def test_gb18030_sender_is_stored_as_utf8(validator):
    raw = (SAMPLES / "valid" / "CaseAccepted-gb18030.xml").read_bytes()
    env = parse_envelope(raw, validator)
    assert b"GB18030" in raw[:60] and b"UTF-8" in env.xml[:60]
    assert "邳州市市场监督管理局".encode("utf-8") in env.xml


def test_envelope_is_immutable(validator):
    env = parse_envelope((SAMPLES / "valid" / "CaseResult-approved.xml").read_bytes(), validator)
    with pytest.raises(AttributeError):
        env.type = "CaseAccepted"


def test_build_envelope_round_trips(validator):
    original = parse_envelope((SAMPLES / "valid" / "PersonRecord-male.xml").read_bytes(), validator)
    body = validator.parser.parse(original.xml)[1][0]
    rebuilt = build_envelope("PersonRecord", body, "320300.gaj.rkxt", validator,
                             correlation_id=original.message_id)
    assert rebuilt.keys == original.keys and rebuilt.correlation_id == original.message_id
    assert parse_envelope(rebuilt.to_xml(), validator) == rebuilt


# -- hostile input generated at test time (too big to keep as files) -----------------------
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_fifty_megabyte_text_node_is_refused_without_parsing(validator):
    data = b'<?xml version="1.0"?><hx:Envelope xmlns:hx="urn:huitong:envelope:1"><a>' + b"x" * (50 << 20) + b"</a></hx:Envelope>"
    with pytest.raises(RejectedMessage) as caught:
        validator.validate(data)
    assert caught.value.code == "XML_TOO_LARGE"


def test_huge_text_node_under_a_raised_cap_hits_the_parser_limit():
    validator = MessageValidator(XmlLimits(max_bytes=64 << 20))
    data = b"<a>" + b"x" * (50 << 20) + b"</a>"
    before = _peak_rss_mb()
    with pytest.raises(RejectedMessage) as caught:
        validator.validate(data)
    assert caught.value.code == "XML_TOO_LARGE"
    # Refused by libxml2's text-node limit, not by building a 50 MB tree: memory stays bounded.
    assert _peak_rss_mb() - before < 200


def test_hundred_thousand_deep_nesting_is_refused(validator):
    data = b"<a>" * 100_000 + b"</a>" * 100_000
    with pytest.raises(RejectedMessage) as caught:
        validator.validate(data)
    assert caught.value.code == "XML_TOO_DEEP"


def test_depth_cap_is_configurable():
    shallow = MessageValidator(XmlLimits(max_depth=4))  # the sample nests 5 deep
    with pytest.raises(RejectedMessage) as caught:
        shallow.validate((SAMPLES / "valid" / "CaseAccepted-enterprise.xml").read_bytes())
    assert caught.value.code == "XML_TOO_DEEP"


def test_doctype_in_utf16_is_refused(validator):
    text = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
    with pytest.raises(RejectedMessage) as caught:
        validator.validate(text.encode("utf-16"))
    assert caught.value.code == "XML_DOCTYPE_FORBIDDEN"


def test_cdata_mentioning_doctype_is_not_mistaken_for_one(validator):
    raw = (SAMPLES / "valid" / "CaseResult-approved.xml").read_bytes()
    raw = raw.replace("不符合".encode(), b"").replace("准予许可".encode(), b"<![CDATA[<!DOCTYPE x>]]>")
    parse_envelope(raw, validator)


def test_validator_keeps_serving_after_hostile_input(validator):
    for path in INVALID:
        with pytest.raises(RejectedMessage):
            validator.validate(path.read_bytes())
    assert parse_envelope(VALID[0].read_bytes(), validator).type


def test_schemas_bound_the_depth_the_validator_relies_on():
    """MessageValidator skips the depth XPath for messages the XSD accepts; that is only safe
    while no canonical element can nest deeper than CANONICAL_DEPTH."""
    import xmlschema
    from xmlschema.validators import XsdAnyElement

    from schemas.validation import BUNDLE, CANONICAL_DEPTH

    schema = xmlschema.XMLSchema10(str(BUNDLE))
    from schemas.namespaces import ENVELOPE, MESSAGE_TYPES
    ours = {ENVELOPE, *MESSAGE_TYPES.values()}
    globals_ = [g for g in schema.maps.elements.values() if g.target_namespace in ours]

    def depth(element, stack=()):
        assert element.name not in stack, f"recursive element {element.name}"
        content = getattr(element.type, "content", None)
        if content is None or not hasattr(content, "iter_elements"):
            return 1
        deepest = 0
        for child in content.iter_elements():
            if isinstance(child, XsdAnyElement):
                candidates = [g for g in globals_ if child.is_matching(g.name)]
                deepest = max([deepest] + [depth(g, stack + (element.name,)) for g in candidates])
            else:
                deepest = max(deepest, depth(child, stack + (element.name,)))
        return 1 + deepest

    assert max(depth(g) for g in globals_) <= CANONICAL_DEPTH

