"""PIN policy: shapes of PIN allowed, and the growing waiting periods."""

from __future__ import annotations

import pytest

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.pin import PinPolicy, weakness


@pytest.mark.parametrize("pin", [b"482915", b"19283746", b"120000", b"000100"])
def test_acceptable_pins(pin):
    assert weakness(pin) == ""
    PinPolicy().check(pin)


@pytest.mark.parametrize(
    ("pin", "rv"),
    [
        (b"123456", C.CKR_PIN_INVALID),
        (b"987654", C.CKR_PIN_INVALID),
        (b"890123", C.CKR_PIN_INVALID),
        (b"111111", C.CKR_PIN_INVALID),
        (b"48291a", C.CKR_PIN_INVALID),
        (b"48291", C.CKR_PIN_LEN_RANGE),
        (b"4" * 40, C.CKR_PIN_LEN_RANGE),
    ],
)
def test_refused_pins(pin, rv):
    with pytest.raises(CKRError) as err:
        PinPolicy().check(pin)
    assert err.value.rv == rv
    assert err.value.reason


def test_so_pin_is_longer():
    with pytest.raises(CKRError) as err:
        PinPolicy().check(b"482915", so=True)
    assert err.value.rv == C.CKR_PIN_LEN_RANGE
    PinPolicy().check(b"19283746", so=True)


def test_delays_start_at_the_third_wrong_try_and_grow():
    policy = PinPolicy(delay_base=2.0, delay_max=60.0)
    assert policy.delay_after(1) == 0
    assert policy.delay_after(2) == 0
    assert policy.delay_after(3) == 2.0
    assert policy.delay_after(4) == 4.0
    assert policy.delay_after(9) == 60.0
