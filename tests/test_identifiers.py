import datetime as dt

import pytest

from schemas import identifiers as ids


def test_domain_examples_are_valid():
    assert ids.check_uscc("91110000600037341L") is None
    assert ids.org_code_check_char("60003734") == "1"
    assert ids.check_citizen_id("11010519491231002X") is None
    assert ids.check_citizen_id("440524188001010014") is None
    assert ids.check_project_code("2020-320382-47-03-012345") is None


@pytest.mark.parametrize("value, code", [
    ("91110000600037341A", "USCC_CHECK"),
    ("91110000600037342L", "ORG_CODE_CHECK"),   # org-code check wrong; USCC check recomputed below
    ("9111000060003734IL", "USCC_FORMAT"),      # I is not in the alphabet
    ("9111000060003734", "USCC_FORMAT"),
])
def test_uscc_problems(value, code):
    if code == "ORG_CODE_CHECK":  # give it a right USCC check so only the org code is wrong
        value = value[:17] + ids.uscc_check_char(value[:17])
    assert ids.check_uscc(value)[0] == code


@pytest.mark.parametrize("value, code", [
    ("110105194912310021", "CITIZEN_ID_CHECK"),
    ("11010519491331002X", "CITIZEN_ID_BIRTHDATE"),
    ("1101051949123100", "CITIZEN_ID_FORMAT"),
])
def test_citizen_id_problems(value, code):
    assert ids.check_citizen_id(value)[0] == code


def test_citizen_id_born_in_future_is_refused():
    first = "320382" + "20990101" + "001"
    assert ids.check_citizen_id(first + ids.citizen_check_char(first), today=dt.date(2026, 1, 1))[0] == "CITIZEN_ID_BIRTHDATE"


def test_gender_from_sequence_parity():
    assert ids.citizen_gender("440524188001010014") == "MALE"
    assert ids.citizen_gender("11010519491231002X") == "FEMALE"


@pytest.mark.parametrize("code, ok", [("320382", True), ("320000", True), ("990382", False),
                                      ("320082", False), ("32038", False)])
def test_region_codes(code, ok):
    assert (ids.check_region(code) is None) is ok


@pytest.mark.parametrize("value", ["1999-320382-47-03-012345", "2020-990382-47-03-012345",
                                   "2020-320382-47-03-01234", "2099-320382-47-03-012345"])
def test_project_code_problems(value):
    assert ids.check_project_code(value, today=dt.date(2026, 11, 21))[0] == "PROJECT_CODE"
