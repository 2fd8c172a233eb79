"""Regenerate the checked-in Python stubs under protos/gen/python from protos/booking/v1/*.proto.

Runs offline with grpcio-tools' bundled protoc, mypy-protobuf and protoc-gen-connectrpc (all pinned in
pyproject.toml). The Connect stubs (*_connect.py, for the web face) are generated with `protobuf=google`, so they
use the same *_pb2 message classes as grpc.aio.
`--check` regenerates into a temporary folder and exits 1 if the checked-in stubs differ (CI uses it).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "protos" / "gen" / "python"
PACKAGE_DIR = Path("booking") / "v1"


def generate(out: Path) -> None:
    """Write *_pb2.py, *_pb2.pyi, *_pb2_grpc.py, *_pb2_grpc.pyi and *_connect.py for every proto into `out`."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    bin_dir = Path(sys.executable).parent
    include = Path(grpc_tools.__file__).parent / "_proto"
    (out / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--plugin=protoc-gen-connectrpc={bin_dir / 'protoc-gen-connectrpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--connectrpc_out={out}",
        "--connectrpc_opt=protobuf=google",
        *protos,
    ]
    subprocess.run(cmd, check=True)
    for package in (out / "booking", out / PACKAGE_DIR):
        (package / "__init__.py").write_text('"""Generated protobuf package; do not edit."""\n')
        (package / "py.typed").write_text("")


def differences(left: Path, right: Path) -> list[str]:
    """Relative paths that differ between two generated trees."""
    names = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    names |= {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    return sorted(
        str(n)
        for n in names
        if "__pycache__" not in n.parts
        and not ((left / n).is_file() and (right / n).is_file() and filecmp.cmp(left / n, right / n, shallow=False))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the checked-in stubs are stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT / "booking", ignore_errors=True)
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = differences(Path(tmp) / "booking", OUT / "booking")
    if stale:
        print("generated stubs are stale; run `make protos` and commit:", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
