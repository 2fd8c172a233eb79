"""The stack's outputs as `gateway serve` settings: GATEWAY_* lines for deploy/kubernetes/stack.env (or
`docker run --env-file`).

    aws cloudformation describe-stacks --stack-name booking-gateway --output json \
      | python3 deploy/aws/stack_env.py > deploy/kubernetes/stack.env

Each output of deploy/aws/booking-gateway.yaml that is a `gateway serve` value says so in its description,
"gateway serve --user-pool-id (GATEWAY_USER_POOL_ID)"; the variable named there gets the output's value. Other
outputs (the role's ARN) are left out.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

_SERVE_VALUE = re.compile(r"^gateway serve --[a-z0-9-]+ \((GATEWAY_[A-Z0-9_]+)\)$")


def env_lines(described: Mapping[str, Any]) -> list[str]:
    """`NAME=value` for each serve-value output of the first stack in a DescribeStacks answer."""
    [stack] = described["Stacks"][:1]
    lines = []
    for output in stack.get("Outputs", []):
        found = _SERVE_VALUE.match(output.get("Description", ""))
        if found:
            lines.append(f"{found.group(1)}={output['OutputValue']}")
    return sorted(lines)


def main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    lines = env_lines(json.load(stdin))
    if not lines:
        print("no gateway serve values among the stack's outputs", file=sys.stderr)
        return 1
    stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
