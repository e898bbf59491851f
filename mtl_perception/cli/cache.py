"""``mtl-perception cache``: list the artifact cache (ONNX exports, TensorRT engines) and prune it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="list or prune the ONNX / TensorRT artifact cache (least recently used first)",
        description="The artifact cache holds one ONNX export or TensorRT engine per (checkpoint, precision, input "
        "size) and grows with every new checkpoint. Every use touches an artifact, so pruning removes the least "
        "recently used first; a removed artifact is exported or built again on its next use. Examples: "
        "`mtl-perception cache list`, `mtl-perception cache prune --max-gb 2 --unused-days 30 --dry-run`.",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="the cache folder (default: $MTL_PERCEPTION_CACHE or ~/.cache/mtl_perception, as the node and CLIs)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    acts = p.add_subparsers(dest="action", metavar="{list,prune}")
    acts.add_parser("list", help="every cached artifact, least recently used first, with sizes")
    pr = acts.add_parser("prune", help="remove artifacts unused for N days, then the oldest down to a size")
    pr.add_argument("--max-gb", type=float, default=None, help="keep at most this many GB (1e9 bytes)")
    pr.add_argument("--unused-days", type=float, default=None, help="remove artifacts not used for this many days")
    pr.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    p.set_defaults(func=run, action=None)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def run(args: argparse.Namespace) -> int:
    from mtl_perception.deploy.artifacts import cache_root
    from mtl_perception.deploy.cache import list_entries, prune

    # not created: listing a cache that does not exist creates nothing
    root = cache_root(Path(args.cache_dir).expanduser() if args.cache_dir else None, create=False)
    if root.exists() and not root.is_dir():
        raise CLIError(f"cache folder {root} is not a folder; pass --cache-dir DIR or set MTL_PERCEPTION_CACHE")
    now = time.time()
    if args.action in (None, "list"):
        entries = list_entries(root)
        total = sum(e.bytes for e in entries)
        if args.json:
            doc = {"cache_dir": str(root), "entries": [e.as_dict(now) for e in entries], "bytes": total}
            print(json.dumps(doc, indent=2))
            return 0
        print(f"{root}: {len(entries)} artifact(s), {_mb(total)}")
        for e in entries:
            print(f"  {e.kind:7s} {_mb(e.bytes):>10s}  unused {e.as_dict(now)['unused_days']:>7.2f} d  {e.key}")
        return 0
    if args.max_gb is None and args.unused_days is None:
        raise CLIError("prune needs a limit: pass --max-gb GB and/or --unused-days DAYS (add --dry-run to preview)")
    res = prune(
        root,
        max_bytes=None if args.max_gb is None else int(args.max_gb * 1e9),
        unused_for_s=None if args.unused_days is None else args.unused_days * 86400.0,
        dry_run=args.dry_run,
        now=now,
    )
    if args.json:
        doc = {
            "cache_dir": str(root),
            "dry_run": res.dry_run,
            "removed": [e.as_dict(now) for e in res.removed],
            "freed_bytes": res.freed_bytes,
            "kept": len(res.kept),
            "kept_bytes": res.kept_bytes,
            "stale_temps_removed": [str(p) for p in res.stale_temps],
        }
        print(json.dumps(doc, indent=2))
        return 0
    verb = "would remove" if res.dry_run else "removed"
    kept = f"kept {len(res.kept)}, {_mb(res.kept_bytes)}"
    print(f"{root}: {verb} {len(res.removed)} artifact(s), {_mb(res.freed_bytes)}; {kept}")
    for e in res.removed:
        print(f"  {e.kind:7s} {_mb(e.bytes):>10s}  unused {e.as_dict(now)['unused_days']:>7.2f} d  {e.key}")
    if res.stale_temps:
        print(f"  and {len(res.stale_temps)} temporary file(s) of writers that died")
    return 0
