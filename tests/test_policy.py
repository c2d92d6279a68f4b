"""The policy hook: policies installed as entry points (a dist-info built in tmp_path, nothing installed for the
machine), named in VSC_POLICY or $VSC_HOME/config.json, combined, and failing without stopping the agent."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vsc_provider.requests import policy
from vsc_provider.requests.model import Decision, MetadataItem, PendingRequest

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
SECRET_PIN = "739164"


def request(rp: str = "Example Bank", request_id: str = "req-1") -> PendingRequest:
    return PendingRequest(
        id=request_id,
        card="0123456789abcdef",
        card_label="Alice",
        kind="sign",
        rp=rp,
        alg="ES256",
        format="jws",
        metadata=(MetadataItem("text", "Transfer", b"100 EUR to Bob"),),
        expires=time.time() + 60,
        display_hash="x",
    )


POLICY_MODULE = f'''
from vsc_provider.requests.model import Decision

def accept_bank(request):
    return Decision("accept", pin="{SECRET_PIN}") if request.rp == "Example Bank" else Decision("ask")

def reject_shop(request):
    return Decision("reject", reason="no shops") if request.rp == "Shop" else Decision("ask")

def explode(request):
    raise RuntimeError("policy bug")

def wrong_type(request):
    return "accept"

def wrong_action(request):
    return Decision("maybe")

not_callable = 42
'''


def install_dist(site: Path, module: str, entry_points: dict[str, str]) -> None:
    """A package as pip would leave it: the module and a dist-info whose entry_points.txt names policies."""
    (site / f"{module}.py").write_text(POLICY_MODULE)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{policy.GROUP}]\n{lines}")


@pytest.fixture
def clean_config(monkeypatch: pytest.MonkeyPatch, vsc_home: Path) -> Path:
    monkeypatch.delenv(policy.ENV, raising=False)
    vsc_home.mkdir(parents=True, exist_ok=True)
    return vsc_home


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    yield directory
    for name in [m for m in sys.modules if m.startswith("vsc_test_policies")]:
        del sys.modules[name]


@pytest.fixture
def policy_log() -> Iterator[list[str]]:
    """What the policy module logs (the vsc logger may not propagate to pytest's handler)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("vsc.requests.policy")
    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_no_policy_asks(clean_config):
    assert policy.load()(request()) == Decision("ask")


def test_entry_point_policy_accepts_with_its_pin(clean_config, site):
    install_dist(site, "vsc_test_policies", {"bank": "vsc_test_policies:accept_bank"})
    names = [p.name for p in policy.discover()]
    assert "bank (vsc_test_policies:accept_bank)" in names
    decision = policy.load()(request("Example Bank"))
    assert decision.action == "accept" and decision.pin == SECRET_PIN
    assert policy.load()(request("Someone else")) == Decision("ask")


def test_any_reject_wins_over_accept(clean_config, site, monkeypatch):
    install_dist(site, "vsc_test_policies", {"bank": "vsc_test_policies:accept_bank"})
    monkeypatch.setenv(policy.ENV, "vsc_test_policies:reject_shop")
    loaded = policy.load()
    shop = loaded(request("Shop"))
    assert shop.action == "reject" and shop.reason == "no shops" and shop.pin is None
    assert loaded(request("Example Bank")).action == "accept"
    # A policy accepting everything does not overrule one that rejects.
    monkeypatch.setenv(policy.ENV, "vsc_test_policies:reject_shop,vsc_test_policies:accept_bank")
    both = policy.load()(request("Shop"))
    assert both.action == "reject"


def test_broken_policies_count_as_ask_and_are_logged(clean_config, site, monkeypatch, policy_log):
    install_dist(
        site,
        "vsc_test_policies",
        {
            "bank": "vsc_test_policies:accept_bank",
            "explode": "vsc_test_policies:explode",
            "junk": "vsc_test_policies:wrong_type",
            "maybe": "vsc_test_policies:wrong_action",
            "number": "vsc_test_policies:not_callable",
            "missing": "vsc_test_policies_gone:policy",
        },
    )
    monkeypatch.setenv(policy.ENV, "no_such_module_here:policy, not-a-target")
    loaded = policy.load()
    # The broken ones answer ask; the working one still accepts.
    decision = loaded(request("Example Bank", "req-77"))
    assert decision.action == "accept" and decision.pin == SECRET_PIN
    assert loaded(request("Other")) == Decision("ask")
    text = "\n".join(policy_log)
    assert "explode (vsc_test_policies:explode) raised on request req-77" in text
    assert "RuntimeError: policy bug" in text
    assert "junk (vsc_test_policies:wrong_type) answered request req-77 with a str" in text
    assert "maybe (vsc_test_policies:wrong_action) answered request req-77 with a Decision" in text
    assert "number (vsc_test_policies:not_callable) not loaded" in text
    assert "missing (vsc_test_policies_gone:policy) not loaded" in text and "ModuleNotFoundError" in text
    assert "no_such_module_here:policy not loaded" in text
    assert "not-a-target not loaded" in text and "module:callable" in text
    assert SECRET_PIN not in text


def test_example_allowlist_through_the_environment(clean_config, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv(policy.ENV, "rp_allowlist:policy")
    monkeypatch.setenv("VSC_ALLOWED_RPS", "Example Bank, Intranet")
    loaded = policy.load()
    unknown = loaded(request("Phisher Inc"))
    assert unknown.action == "reject" and "'Phisher Inc' is not on this machine's list" in unknown.reason
    assert loaded(request("Intranet")) == Decision("ask")
    sys.modules.pop("rp_allowlist", None)


def test_config_file_names_policies(clean_config, site, monkeypatch):
    install_dist(site, "vsc_test_policies_cfg", {})
    (clean_config / "config.json").write_text(json.dumps({"policy": "vsc_test_policies_cfg:reject_shop"}))
    assert policy.configured_names() == ["vsc_test_policies_cfg:reject_shop"]
    assert policy.load()(request("Shop")).action == "reject"
    # The environment's names come first; a name in both places is used once.
    monkeypatch.setenv(policy.ENV, "vsc_test_policies_cfg:accept_bank")
    (clean_config / "config.json").write_text(
        json.dumps({"policy": ["vsc_test_policies_cfg:reject_shop", "vsc_test_policies_cfg:accept_bank"]})
    )
    assert policy.configured_names() == ["vsc_test_policies_cfg:accept_bank", "vsc_test_policies_cfg:reject_shop"]
    sys.modules.pop("vsc_test_policies_cfg", None)


def test_bad_config_file_is_logged_not_fatal(clean_config, policy_log):
    (clean_config / "config.json").write_text(json.dumps({"policy": 7}))
    assert policy.load()(request()) == Decision("ask")
    assert any("config.json not loaded" in line and "'policy' is a module:callable" in line for line in policy_log)
    (clean_config / "config.json").write_text("{not json")
    assert policy.load()(request()) == Decision("ask")
    assert any("not readable JSON" in line for line in policy_log)
