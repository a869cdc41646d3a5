"""`saga up`: every process of the system as a child, logs prefixed by name, one Ctrl-C;
no child outlives it (see saga.cli.child)."""

import asyncio
import os
import signal
import sys
from typing import Annotated, TextIO

import typer

from saga.cli.output import settings
from saga.extensions import Extensions, selected

# The engine's own processes; every participant an extension ships runs beside them.
ENGINE: dict[str, list[str]] = {
    "auth": ["auth"],
    "api": ["api"],
    "orchestrator": ["orchestrator"],
}


def processes(extensions: Extensions) -> dict[str, list[str]]:
    """What `saga up` runs: the engine's processes and each shipped participant."""
    return ENGINE | {name: ["service", name] for name in extensions.participants}


def metrics_ports(commands: dict[str, list[str]], first: int) -> dict[str, int]:
    """Each worker's metrics port, from `first` on, in the order they run (the API
    serves its metrics on its own port)."""
    workers = [name for name in commands if name not in ("api", "auth")]
    return {name: first + i for i, name in enumerate(workers)}


def up(
    api_port: Annotated[int, typer.Option(help="Port of the front door.")] = 7001,
    auth_port: Annotated[int, typer.Option(help="Port of the auth service.")] = 7002,
    metrics_port: Annotated[
        int,
        typer.Option(
            help="Metrics port of the first worker; each next worker takes the next port (0: none)."
        ),
    ] = 9101,
) -> None:
    """Run the whole system on local servers, one child process each."""
    config = settings()  # a bad setting is said once, here, before any child starts
    env = {
        **os.environ,
        "SAGA_AUTH_URL": os.environ.get("SAGA_AUTH_URL", f"http://127.0.0.1:{auth_port}"),
    }
    commands = {name: list(args) for name, args in processes(selected(config)).items()}
    commands["api"] += ["--port", str(api_port)]
    commands["auth"] += ["--port", str(auth_port)]
    if metrics_port:
        ports = metrics_ports(commands, metrics_port)
        for name, port in ports.items():
            commands[name] += ["--metrics-port", str(port)]
        listed = ", ".join(f"{name} :{port}" for name, port in ports.items())
        _show(f"saga up: metrics on api :{api_port}/metrics, {listed}")
    code = asyncio.run(_supervise(commands, env))
    raise typer.Exit(code)


async def _supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    width = max(len(n) for n in commands)
    children: dict[str, asyncio.subprocess.Process] = {}
    for name, args in commands.items():
        # The child asks the kernel for SIGTERM when the thread that forks it dies: this
        # one, the event loop's, which is the main thread and lives as long as we do.
        children[name] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "saga.cli.child",
            str(os.getpid()),
            *args,
            env={**env, "SAGA_LOG_FORMAT": env.get("SAGA_LOG_FORMAT", "console")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # A terminal's Ctrl-C or hangup reaches us alone, and we stop the children.
            start_new_session=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP: the terminal closed, or the SSH session dropped.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    async def pump(name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            _show(f"{name:<{width}} | {line.decode(errors='replace').rstrip()}")

    pumps = [asyncio.create_task(pump(n, p)) for n, p in children.items()]
    exited = [asyncio.create_task(p.wait()) for p in children.values()]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *exited], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stopper not in done:
        dead = [
            f"{n} exited ({_how(p.returncode)})"
            for n, p in children.items()
            if p.returncode is not None
        ]
        _show(f"saga up: {', '.join(dead)}; stopping everything", sys.stderr)
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


def _how(returncode: int) -> str:
    """How a child ended: `code 1`, or `signal KILL`."""
    if returncode >= 0:
        return f"code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name.removeprefix('SIG')}"
    except ValueError:
        return f"signal {-returncode}"


def _show(line: str, stream: TextIO | None = None) -> None:
    """Print a line; once the output is gone (the terminal closed, the pipe's reader
    ended), what follows goes nowhere, and the children's output is still read, so that
    none blocks on a full pipe while it stops."""
    out = stream or sys.stdout
    try:
        print(line, file=out, flush=True)
    except OSError:
        # Python's own advice for a broken stdout: point it at /dev/null, or the next
        # write (and the flush at exit) fails again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
