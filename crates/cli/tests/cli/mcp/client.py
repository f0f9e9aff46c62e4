"""A real MCP client (the official Python SDK, `mcp` from PyPI) driving `pwt mcp`.

Usage: client.py PWT_BINARY WORKDIR CALLS_JSON [SERVER_ARGS...]

CALLS_JSON is a list of [tool, arguments]. Prints one JSON object: the server's name,
the tools it lists, and for each call its structured content, error flag and text (or the
protocol error it raised).
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main() -> None:
    binary, workdir, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # The SDK passes a minimal environment; the test's sandbox (PWT_*, git's) goes too.
    env = {k: v for k, v in os.environ.items() if k.startswith(("PWT_", "GIT_", "XDG_"))}
    params = StdioServerParameters(
        command=binary, args=["mcp", *sys.argv[4:]], cwd=workdir, env=env
    )
    out = {"calls": []}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["server"] = init.server_info.name
            out["instructions"] = init.instructions
            listed = await session.list_tools()
            out["tools"] = sorted(t.name for t in listed.tools)
            out["read_only"] = sorted(
                t.name for t in listed.tools if t.annotations and t.annotations.read_only_hint
            )
            for name, arguments in calls:
                try:
                    r = await session.call_tool(name, arguments)
                    text = "".join(getattr(c, "text", "") for c in r.content)
                    out["calls"].append(
                        {"tool": name, "is_error": bool(r.is_error),
                         "structured": r.structured_content, "text": text}
                    )
                except Exception as e:  # a protocol error: the tool is not there
                    out["calls"].append({"tool": name, "protocol_error": str(e)})
    print(json.dumps(out))


asyncio.run(main())
