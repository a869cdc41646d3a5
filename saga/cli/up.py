"""`saga up`: every process of the system as a child, logs prefixed by name, one Ctrl-C."""

import asyncio
import os
import signal
import sys
from typing import Annotated

import typer

from saga.cli.output import settings

PROCESSES: dict[str, list[str]] = {
    "auth": ["auth"],
    "api": ["api"],
    "orchestrator": ["orchestrator"],
    "stock": ["service", "stock"],
    "payment": ["service", "payment"],
    "order": ["service", "order"],
}


def up(
    api_port: Annotated[int, typer.Option(help="Port of the front door.")] = 7001,
    auth_port: Annotated[int, typer.Option(help="Port of the auth service.")] = 7002,
) -> None:
    """Run the whole system on local servers, one child process each."""
    settings()  # a bad setting is said once, here, before any child starts
    env = {
        **os.environ,
        "SAGA_AUTH_URL": os.environ.get("SAGA_AUTH_URL", f"http://127.0.0.1:{auth_port}"),
    }
    commands = {name: list(args) for name, args in PROCESSES.items()}
    commands["api"] += ["--port", str(api_port)]
    commands["auth"] += ["--port", str(auth_port)]
    code = asyncio.run(_supervise(commands, env))
    raise typer.Exit(code)


async def _supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    width = max(len(n) for n in commands)
    children: dict[str, asyncio.subprocess.Process] = {}
    for name, args in commands.items():
        children[name] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "saga",
            *args,
            env={**env, "SAGA_LOG_FORMAT": env.get("SAGA_LOG_FORMAT", "console")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the children in order
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def pump(name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            print(f"{name:<{width}} | {line.decode(errors='replace').rstrip()}", flush=True)

    pumps = [asyncio.create_task(pump(n, p)) for n, p in children.items()]
    exited = [asyncio.create_task(p.wait()) for p in children.values()]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *exited], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stopper not in done:
        dead = [n for n, p in children.items() if p.returncode is not None]
        print(
            f"saga up: {', '.join(dead)} exited; stopping everything", file=sys.stderr, flush=True
        )
        code = 1
    for proc in children.values():
        if proc.returncode is None:
            proc.terminate()
    _, stuck = await asyncio.wait(exited, timeout=15)
    if stuck:
        for proc in children.values():
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*stuck)
    await asyncio.gather(*pumps)
    stopper.cancel()
    return code
