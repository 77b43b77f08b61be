"""A JSON-lines TCP key-value server that fsyncs its state before answering a write.

Test support, shared by the toy systems of tests/campaign (toysys) and tests/containers (sshkv):
each uploads this file to a host and runs it as ``python jsonkv_server.py STATE PORT BIND``.
It uses only the standard library, so any host python runs it.
"""

import asyncio
import json
import os
import sys


def load(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def save(path: str, state: dict) -> None:
    with open(path + ".tmp", "w") as fh:
        json.dump(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(path + ".tmp", path)


def apply(path: str, state: dict, req: dict) -> dict:
    f, key, value = req["f"], req.get("key"), req.get("value")
    if f == "read":
        return {"ok": True, "value": state.get(key)}
    if f == "write":
        state[key] = value
        save(path, state)
        return {"ok": True, "value": value}
    if f == "cas":
        if state.get(key) != value[0]:
            return {"ok": False, "error": "cas-mismatch"}
        state[key] = value[1]
        save(path, state)
        return {"ok": True, "value": value}
    return {"ok": False, "error": "unknown f"}


async def main() -> None:
    path, port, bind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    state = load(path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write((json.dumps(apply(path, state, json.loads(line))) + "\n").encode())
            await writer.drain()

    server = await asyncio.start_server(handle, bind, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
