"""`zdl backup FILE` and `zdl restore FILE`: worker/cluster/backup.py from the command line.

Where the Redis is: `--state-dir` of a `zdl cluster up` (its address and the operator's password are kept
there), else $ZDL_REDIS_URL and $ZDL_REDIS_OPERATOR_PASSWORD (docker-compose.yml's servers, or any other).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from worker.cluster import backup
from worker.cluster.backup import BackupError, RedisAddress

#: Files `zdl cluster up` keeps in its state dir: the main Redis's address and the operator's password.
REDIS_ADDRESS_FILE = "redis-address"
OPERATOR_PASSWORD_FILE = "redis-operator-password"
#: The main Redis's data directory inside a state dir.
REDIS_DATA_DIR = "redis"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `zdl backup` and `zdl restore`."""
    b = subparsers.add_parser("backup", help="snapshot the service's job records, histories and weights to a file")
    b.add_argument("file", type=Path, help="the backup to write (an RDB file)")
    b.add_argument("--state-dir", type=Path, default=None,
                   help="the state dir of a running `zdl cluster up` (default: $ZDL_REDIS_URL and "
                        "$ZDL_REDIS_OPERATOR_PASSWORD)")
    b.set_defaults(func=run_backup)
    r = subparsers.add_parser("restore", help="load a backup into a cluster that has not started yet")
    r.add_argument("file", type=Path, help="a file written by `zdl backup`")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--state-dir", type=Path, help="the state dir a `zdl cluster up` will start from")
    where.add_argument("--redis-dir", type=Path, help="the data directory of a Redis not started yet (compose's "
                                                     "redis-data volume)")
    r.set_defaults(func=run_restore)


def operator_access(state_dir: Path | None) -> tuple[RedisAddress, str]:
    """The main Redis's address and the operator's password, from the state dir or the environment."""
    if state_dir is not None:
        try:
            host, _, port = (state_dir / REDIS_ADDRESS_FILE).read_text().strip().rpartition(":")
            password = os.environ.get(backup.OPERATOR_PASSWORD_ENV) or \
                (state_dir / OPERATOR_PASSWORD_FILE).read_text().strip()
        except FileNotFoundError as exc:
            raise BackupError(f"{state_dir} holds no running cluster's Redis ({exc.filename} is missing): start "
                              f"it with `zdl cluster up --state-dir {state_dir}`") from None
        return RedisAddress(host, int(port)), password
    url, password = os.environ.get("ZDL_REDIS_URL", ""), os.environ.get(backup.OPERATOR_PASSWORD_ENV, "")
    if not url or not password:
        raise BackupError("set ZDL_REDIS_URL and ZDL_REDIS_OPERATOR_PASSWORD, or give --state-dir of a running "
                          "`zdl cluster up`")
    return RedisAddress.from_url(url), password


def run_backup(args: argparse.Namespace) -> int:
    address, password = operator_access(args.state_dir)
    try:
        size = backup.snapshot(address, password, args.file)
    except (BackupError, OSError) as exc:
        return fail(f"backup of {address.host}:{address.port} failed: {exc}")
    sys.stdout.write(f"wrote {args.file} ({size / 1e6:.1f} MB)\n")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    redis_dir = args.redis_dir if args.redis_dir is not None else args.state_dir / REDIS_DATA_DIR
    try:
        written = backup.restore_into(args.file, redis_dir)
    except (BackupError, OSError) as exc:
        return fail(f"restore failed: {exc}")
    sys.stdout.write(f"wrote {written}: the Redis started on {redis_dir} loads the backup\n")
    return 0


def fail(message: str) -> int:
    sys.stderr.write(f"zdl: error: {message}\n")
    return 2
