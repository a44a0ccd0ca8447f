"""The tests' own firewall chain against the host's real iptables: the tables are as found afterwards, and
rules that are not ours, there before or added meanwhile, stay. Runs where the host's network may be touched
(CI=true or ZDL_TEST_FIREWALL=1, as root); the rules name interfaces that do not exist, so none matches a packet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.service import docker_engine
from tests.service.firewall import ALLOW_VARIABLE, drop_if_empty, iptables, network_refusal, own_chain, saved_tables

#: Interface names (15 characters at most) of no interface: ours, and two stand-ins for another's rules.
OURS, FOREIGN, MEANWHILE = (f"zdl{tag}{os.getpid() % 100000}" for tag in ("o", "f", "m"))


def rule(chain: str, interface: str, target: str) -> str:
    """A rule as iptables-save writes it."""
    return f"-A {chain} -i {interface} -j {target}\n"


def remove_stand_ins(original: str) -> None:
    """The stand-in rules out, and the filter table too where they made it (nftables)."""
    for interface in (FOREIGN, MEANWHILE):
        iptables("-D", "FORWARD", "-i", interface, "-j", "ACCEPT", check=False)
    if "*filter\n" not in original:
        drop_if_empty("filter")


@pytest.fixture
def host_tables() -> Iterator[str]:
    """The host's tables (iptables-save without counters) as found; the stand-ins removed after, in any case."""
    reason = network_refusal()
    if reason is not None:
        pytest.skip(f"the host's firewall may not be touched: {reason}")
    original = saved_tables()
    yield original
    remove_stand_ins(original)


def test_own_chain_leaves_the_tables_as_found_and_others_rules_in(host_tables: str) -> None:
    iptables("-A", "FORWARD", "-i", FOREIGN, "-j", "ACCEPT")  # another's rule, there before ours
    with_foreign = saved_tables()
    with own_chain("FORWARD", [("-i", OURS, "-j", "DROP")]) as chain:
        inside = saved_tables()
        assert f"-A FORWARD -j {chain}\n" in inside and rule(chain, OURS, "DROP") in inside, inside
        iptables("-A", "FORWARD", "-i", MEANWHILE, "-j", "ACCEPT")  # another's rule, added while ours are in
    after = saved_tables()
    assert chain not in after, after
    assert rule("FORWARD", FOREIGN, "ACCEPT") in after and rule("FORWARD", MEANWHILE, "ACCEPT") in after, after
    assert after.replace(rule("FORWARD", MEANWHILE, "ACCEPT"), "") == with_foreign
    remove_stand_ins(host_tables)
    assert saved_tables() == host_tables


def test_the_host_network_is_refused_without_ci_or_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A workstation's firewall is its owner's: left alone unless CI=true or ZDL_TEST_FIREWALL=1 says so."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(ALLOW_VARIABLE, raising=False)
    refusal = network_refusal()
    assert refusal is not None and f"{ALLOW_VARIABLE}=1" in refusal
    for name, value in (("CI", "true"), (ALLOW_VARIABLE, "1")):
        with monkeypatch.context() as allowed:
            allowed.setenv(name, value)
            refusal = network_refusal()
            assert refusal is None or ALLOW_VARIABLE not in refusal, refusal


def test_what_a_docker_daemon_adds_is_undone_and_others_rules_stay(host_tables: str) -> None:
    """The additions of a dockerd started by the compose tests, made here by hand (chains of its own, jumps to
    them, a masquerade naming its bridge, FORWARD's policy to DROP), are taken out rule by rule; another's rule
    added meanwhile stays. (Chains named for this process, in case a Docker engine runs here.)"""
    iptables("-A", "FORWARD", "-i", FOREIGN, "-j", "ACCEPT")
    before = docker_engine.HostNetwork.read()
    docker, user = f"DOCKER-T{os.getpid()}", f"DOCKER-U{os.getpid()}"
    try:
        for args in (("-N", docker), ("-N", user), ("-A", user, "-j", "RETURN"), ("-A", docker, "-j", user),
                     ("-I", "FORWARD", "1", "-j", user), ("-A", "FORWARD", "-o", "docker0", "-j", docker),
                     ("-t", "nat", "-N", docker), ("-t", "nat", "-A", "PREROUTING", "-m", "addrtype",
                                                   "--dst-type", "LOCAL", "-j", docker),
                     ("-t", "nat", "-A", "POSTROUTING", "-s", "198.18.0.0/30", "!", "-o", "docker0", "-j",
                      "MASQUERADE"),
                     ("-P", "FORWARD", "DROP")):
            iptables(*args)
        iptables("-A", "FORWARD", "-i", MEANWHILE, "-j", "ACCEPT")
    finally:
        before.undo_docker()
    after = saved_tables()
    assert docker not in after and user not in after and "198.18.0.0/30" not in after, after
    assert after.replace(rule("FORWARD", MEANWHILE, "ACCEPT"), "") == before.firewall["iptables"]
    remove_stand_ins(host_tables)
    assert saved_tables() == host_tables
