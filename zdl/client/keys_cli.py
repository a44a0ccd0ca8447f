"""`zdl keys add|list|revoke` and `zdl usage`: named API keys managed while the service runs, from the shell.

They speak to the API as `zdl submit` does (--url / $ZDL_URL, --api-key / $ZDL_API_KEY, else the key
`zdl cluster up` saved, which is an admin key named `admin`); managing keys needs an admin key.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

from zdl.client import Client
from zdl.client.cli import add_service_arguments, say, service

#: `zdl keys add`'s limit flags: (flag, the API's limit name, type).
LIMIT_FLAGS = (("--running-jobs", "running_jobs", int), ("--active-jobs", "active_jobs", int),
               ("--stored-jobs", "stored_jobs", int), ("--stored-mb", "stored_mb", float),
               ("--core-hours", "core_hours", float))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point (group `zdl.commands`): adds `zdl keys` and `zdl usage`."""
    keys = subparsers.add_parser("keys", help="manage the service's API keys (needs an admin key)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    add = actions.add_parser("add", help="make a key named NAME and print it (shown this once)")
    add.add_argument("name", metavar="NAME", help="a student id or label: a-z 0-9 . _ -, at most 64")
    add.add_argument("--admin", action="store_true", help="an admin key (manages keys, sees every job)")
    for flag, limit, kind in LIMIT_FLAGS:
        add.add_argument(flag, dest=limit, type=kind, default=None, help=f"the key's own {limit} limit")
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="every key with its usage")
    listing.set_defaults(func=run_list)
    revoke = actions.add_parser("revoke", help="revoke the key named NAME and cancel its queued and running jobs")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(func=run_revoke)
    usage = subparsers.add_parser("usage", help="your key's measured CPU time and storage against its limits")
    usage.set_defaults(func=run_usage)
    for parser in (add, listing, revoke, usage):
        add_service_arguments(parser)


def run_add(args: argparse.Namespace) -> int:
    limits = {limit: getattr(args, limit) for _, limit, _ in LIMIT_FLAGS if getattr(args, limit) is not None}
    with admin_client(args) as client:
        made = client.admin.add_key(args.name, admin=args.admin, **limits)
    say(f"key {made['name']}{' (admin)' if made['admin'] else ''}: {made['key']}")
    say("  shown this once: hand it over now (it is stored only as a hash)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with admin_client(args) as client:
        rows = client.admin.keys()
    say(key_table(rows))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    with admin_client(args) as client:
        revoked = client.admin.revoke_key(args.name)
    say(f"revoked {args.name}; {revoked.get('cancelled', 0)} of its jobs cancelled")
    return 0


def run_usage(args: argparse.Namespace) -> int:
    with admin_client(args) as client:
        usage = client.usage()
    say(key_table([usage, *(usage["keys"] or [])]) if usage["keys"] else key_table([usage]))
    return 0


def key_table(rows: list[dict[str, Any]]) -> str:
    """Keys as a plain-text table: name, admin, jobs running/queued/stored, CPU hours, stored MiB, last used."""
    header = ("name", "admin", "running", "queued", "stored", "cpu_h", "stored_mib", "last_used")
    cells = [header] + [(
        r["name"], "yes" if r["admin"] else "", str(r["usage"]["jobs"]["running"]), str(r["usage"]["jobs"]["queued"]),
        f"{r['usage']['stored_jobs']}/{r['limits']['stored_jobs']}", f"{r['usage']['cpu_seconds'] / 3600:.3f}",
        f"{r['usage']['stored_bytes'] / 2**20:.1f}/{r['limits']['stored_mb']:g}", _when(r.get("last_used_at")),
    ) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def admin_client(args: argparse.Namespace) -> contextlib.AbstractContextManager[Client]:
    """A client of --url with --api-key; its errors (unreachable, 401, 403, 409) as one-line UserErrors."""
    return service(args)
