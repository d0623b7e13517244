"""A fork server for the resume tests: the runs of ``train_script.py`` without paying for its imports each time.

``python tests/zygote.py`` imports what a run imports (torch, transformers, peft, accelerate, sklearn, llmhead and
train_script itself) with ``torch.set_num_threads(1)`` and without any torch computation, so the server is one
thread and no thread pool exists (it refuses to fork otherwise). Then for each request it forks one worker process
that redirects its stdout and stderr to files, takes the run's environment, runs ``train_script.main()`` with the
run's arguments and leaves with ``os._exit`` (the server's own code never runs in it again). Each worker is a real
OS process that a signal kills or stops for real; the server reaps it and reports its exit status (and logs its
time and CPU time to its stderr file).

A 2-process run is one worker from each of two servers, each given the environment torchrun gives its workers
(RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT...), so accelerate sees MULTI_CPU and the two processes
meet over gloo as torchrun's workers do; two servers, not one, so that the ranks differ in their hash seeds as
fresh processes do. What differs from torchrun: no agent process (it would only forward signals and collect exit
codes); rank 0, not the agent, holds the rendezvous store; and pyarrow's allocator runs without its background
thread (``JE_ARROW_MALLOC_CONF``), which would otherwise be a thread that a fork does not copy.

The client side, ``Launcher``, starts the servers and hands out ``Run`` objects.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
# Imported lazily during a run (measured: sys.modules after a LoRA and a full run minus after the imports).
PRELOAD = [
    "datasets",
    "peft",
    "peft.tuners.lora.bnb",
    "peft.utils.transformers_weight_conversion",
    "safetensors.torch",
    "tqdm.contrib.concurrent",
    "transformers.models.llama.modeling_llama",
]
SERVER_ENV = {"JE_ARROW_MALLOC_CONF": "background_thread:false", "TOKENIZERS_PARALLELISM": "false"}


def threads() -> list[str]:
    return [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]


# ---- the server: python tests/zygote.py ---------------------------------------------------------------------------


def serve() -> None:
    import torch

    torch.set_num_threads(1)
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import train_script

    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # peft's bitsandbytes layers where bitsandbytes is missing
            importlib.import_module(name)
    reply({"ready": threads(), "pid": os.getpid()})
    while line := sys.stdin.readline():
        request = json.loads(line)
        running = threads()
        if len(running) != 1:  # a fork copies only the calling thread: whatever another thread held stays held
            reply({"error": f"the server is not single-threaded, it will not fork: threads {running}"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            worker(train_script, request)
        reply({"pid": pid})
        started = time.monotonic()
        _, status, usage = os.wait4(pid, 0)
        code, cpu = os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        print(f"worker {pid}: exit status {code}, {time.monotonic() - started:.2f} s, {cpu:.2f} s CPU", file=sys.stderr)
        reply({"returncode": code})
    os._exit(0)  # nothing to flush or free: skip the interpreter's teardown of torch & co (seconds)


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def worker(script, request: dict) -> None:
    """The forked process: never returns (``os._exit``), whatever ``main`` does."""
    code = 1
    try:
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
            os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.environ.update(request["env"])
        sys.argv = [script.__file__, *request["args"]]
        script.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# ---- the client ---------------------------------------------------------------------------------------------------


class Server:
    """One ``python tests/zygote.py`` process and its line protocol (one request at a time)."""

    def __init__(self, log: Path, env: dict[str, str]):
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
            )
        self.buffer = b""
        self.ready = False

    def send(self, message: dict) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self, timeout: float | None) -> dict | None:
        """The next message, or None if none came within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the fork server ended (rc {self.proc.wait()}): {self.log.read_text()[-5000:]}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(message["error"])
        return message

    def wait_ready(self, timeout: float = 300) -> None:
        if not self.ready:
            message = self.receive(timeout)
            if message is None:
                raise TimeoutError(f"the fork server did not start in {timeout} s: {self.log.read_text()[-5000:]}")
            if len(message["ready"]) != 1:
                raise RuntimeError(f"the fork server is not single-threaded: {message['ready']}")
            self.ready = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int, run_id: str) -> dict[str, str]:
    """The variables torchrun --standalone sets for a worker (less those of its agent's own store and error file)."""
    if world == 1:
        return {}
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "GROUP_RANK": "0",
        "ROLE_RANK": str(rank),
        "ROLE_NAME": "default",
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "GROUP_WORLD_SIZE": "1",
        "ROLE_WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
        "TORCHELASTIC_RUN_ID": run_id,
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    }


class Run:
    """The worker processes of one run, rank by rank."""

    def __init__(self, servers: list[Server], args: list[str], procs: int, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.servers, self.returncodes = folder, servers[:procs], [None] * procs
        port, run_id = (free_port() if procs > 1 else 0), uuid.uuid4().hex
        self.processes = []
        for rank, server in enumerate(self.servers):
            server.send(
                {
                    "args": args,
                    "env": torchrun_env(rank, procs, port, run_id),
                    "stdout": str(folder / f"rank{rank}.stdout"),
                    "stderr": str(folder / f"rank{rank}.stderr"),
                }
            )
        failure = None
        for rank, server in enumerate(self.servers):
            try:
                message = server.receive(60)
                if message is None:
                    raise TimeoutError(f"rank {rank}'s fork server sent no pid in 60 s")
            except (RuntimeError, TimeoutError) as exc:
                failure, self.returncodes[rank] = exc, "not started"
                continue
            with contextlib.suppress(psutil.NoSuchProcess):  # already ended: the exit status says how
                self.processes.append(psutil.Process(message["pid"]))  # psutil refuses to signal a reused pid
        if failure is not None:  # the ranks that did start would wait for the others: stop them
            self.send_signal(signal.SIGKILL)
            self._collect(30)
            raise failure

    def _collect(self, timeout: float) -> None:
        for rank, server in enumerate(self.servers):
            if self.returncodes[rank] is None:
                message = server.receive(timeout)
                if message is not None:
                    self.returncodes[rank] = message["returncode"]

    def running(self) -> bool:
        self._collect(0)
        return None in self.returncodes

    def send_signal(self, sig: int) -> None:
        """``sig`` to every process of the run."""
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)

    def wait(self, timeout: float = 300, grace: float = 10) -> list[int]:
        """Every rank's exit status (negative: the signal that killed it). As torchrun's agent does, once a rank
        fails the others are killed (after ``grace`` seconds: a rank blocked in a collective would wait 30 min).
        Still running after ``timeout`` seconds: every rank is killed and TimeoutError raised."""
        deadline, failed_at = time.monotonic() + timeout, None
        while self.running():
            now = time.monotonic()
            if failed_at is None and any(code not in (None, 0) for code in self.returncodes):
                failed_at = now
            if now > deadline or (failed_at is not None and now - failed_at > grace):
                self.send_signal(signal.SIGKILL)
                self._collect(30)
                if now > deadline:
                    raise TimeoutError(f"the run was still running after {timeout} s: {self.stderr[-5000:]}")
                break
            time.sleep(0.01)
        return list(self.returncodes)

    def _read(self, stream: str) -> str:
        files = [self.folder / f"rank{rank}.{stream}" for rank in range(len(self.servers))]
        return "".join(f.read_text(errors="replace") for f in files if f.is_file())

    @property
    def stdout(self) -> str:
        return self._read("stdout")

    @property
    def stderr(self) -> str:
        return self._read("stderr")


class Launcher:
    """Two fork servers (rank 0's and rank 1's), started at once; ``start`` waits for them on first use."""

    def __init__(self, folder: Path, env: dict[str, str], ranks: int = 2):
        self.servers = [Server(folder / f"server{r}.log", {**env, **SERVER_ENV}) for r in range(ranks)]

    def start(self, args: list[str], procs: int, folder: Path) -> Run:
        for server in self.servers[:procs]:
            server.wait_ready()
        return Run(self.servers, [str(a) for a in args], procs, folder)

    def close(self) -> None:
        for server in self.servers:
            server.close()


if __name__ == "__main__":
    serve()
