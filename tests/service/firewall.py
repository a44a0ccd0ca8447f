"""The tests' own iptables chain, and the permission to touch the host's network at all.

A test that must filter traffic adds its rules in a chain of its own (`ZDL-TEST-<pid>`), jumped to from one
rule in a chain it does not own (Docker's `DOCKER-USER`), and takes out exactly those: the jump rule, then its
own chain, flushed and deleted. It never flushes, saves-and-replays or restores a table, so rules that others
add meanwhile stay. Nothing here runs unless the host's network may be touched: under CI=true, or where
ZDL_TEST_FIREWALL=1 says so (a workstation's firewall is its owner's).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

#: Set to 1 to let the tests change this host's firewall and network (their own chain, a network namespace).
ALLOW_VARIABLE = "ZDL_TEST_FIREWALL"


def network_refusal() -> str | None:
    """Why the tests may not touch this host's network, or None when they may (CI=true or ZDL_TEST_FIREWALL=1,
    as root, with iptables installed)."""
    ci = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
    if not ci and os.environ.get(ALLOW_VARIABLE, "") != "1":
        return (f"these tests add rules to the host's firewall (in a chain of their own) and start network "
                f"namespaces; set {ALLOW_VARIABLE}=1 to allow that here (CI=true allows it)")
    if os.geteuid() != 0:
        return "changing iptables needs root"
    if shutil.which("iptables") is None or shutil.which("iptables-save") is None:
        return "iptables is not installed (Debian: apt-get install iptables)"
    return None


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`iptables -w ARGS` (waiting for the xtables lock); a failure raises with its output."""
    done = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"iptables {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def saved_tables(tool: str = "iptables") -> str:
    """`iptables-save` without its dated comments and packet counters, which change by themselves."""
    dump = subprocess.run([f"{tool}-save"], capture_output=True, text=True, timeout=60, check=True).stdout
    lines = (re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in dump.splitlines() if not line.startswith("#"))
    return "".join(line + "\n" for line in lines)


def chain_name() -> str:
    """This process's chain (iptables allows 28 characters)."""
    return f"ZDL-TEST-{os.getpid()}"


@contextmanager
def own_chain(parent: str, rules: Sequence[Sequence[str]], table: str = "filter") -> Iterator[str]:
    """`rules` in a chain of this process's own, jumped to from the top of `parent` (which must exist);
    afterwards the jump rule is deleted, then the chain flushed and deleted. Yields the chain's name."""
    chain = chain_name()
    table_was_there = f"*{table}\n" in saved_tables()
    iptables("-t", table, "-N", chain)
    try:
        for rule in rules:
            iptables("-t", table, "-A", chain, *rule)
        iptables("-t", table, "-I", parent, "1", "-j", chain)
        try:
            yield chain
        finally:
            iptables("-t", table, "-D", parent, "-j", chain)
    finally:
        iptables("-t", table, "-F", chain)
        iptables("-t", table, "-X", chain)
        if not table_was_there:
            drop_if_empty(table)


def drop_if_empty(table: str, tool: str = "iptables") -> None:
    """Delete `table` where iptables is nftables' and the table holds no rule and no chain of anyone's own: an
    nftables table is made by the first rule or chain put in it (ours, or a daemon's started here), and would
    stay behind, empty, in iptables-save. (A legacy table is the kernel module's, listed once loaded, and stays.)"""
    version = subprocess.run([tool, "-V"], capture_output=True, text=True, timeout=60, check=True).stdout
    if "nf_tables" not in version:
        return
    section = saved_tables(tool).partition(f"*{table}\n")[2].partition("COMMIT")[0]
    if section and all(line.startswith(":") and line.split()[1] != "-" for line in section.splitlines()):
        family = "ip6" if tool == "ip6tables" else "ip"
        subprocess.run(["nft", "delete", "table", family, table], capture_output=True, text=True, timeout=60,
                       check=True)
