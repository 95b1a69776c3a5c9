"""Regenerate the Python code for every .proto file under proto/.

    python scripts/gen_protos.py            # writes into src/ (what `make proto` runs)
    python scripts/gen_protos.py --out DIR  # writes elsewhere (the sync test compares)

Proto paths mirror Python packages (proto/modelwire/api/v1/x.proto becomes
modelwire.api.v1.x_pb2), so protoc emits absolute imports and nothing is post-processed.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generate(out_dir: Path) -> list[Path]:
    """Generate *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for all protos into out_dir."""
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    for proto in protos:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(proto.relative_to(PROTO_DIR)),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto.relative_to(ROOT)}")
    return protos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "src")
    args = parser.parse_args()
    protos = generate(args.out)
    print(f"generated {len(protos)} proto file(s) into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
