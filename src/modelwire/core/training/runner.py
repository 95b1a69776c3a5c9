"""Running a trainer: a child process given a spec file (`spec.TrainerSpec` as JSON)
that writes the trained version into the spec's output folder and reports on stdout, one
JSON object per line: {"event": "epoch", epoch, train_loss, validation_loss,
validation_accuracy, seconds} after each epoch (other events are ignored). It exits 0 on
success; otherwise the last line of its stderr says why. PyTorch's trainer
(`modelwire.core.training.trainer`) is the default; any program that keeps to this runs
a job (the unit tests use a few lines of Python)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelwire.core.training.job import EpochRecord
from modelwire.errors import FailedPrecondition

__all__ = ["PYTORCH_TRAINER", "Cancelled", "Trainer"]

PYTORCH_TRAINER = (sys.executable, "-m", "modelwire.core.training.trainer")

#: How long a cancelled trainer gets to stop its workers before it is killed.
_STOP_GRACE_S = 5.0


class Cancelled(Exception):
    """The run was cancelled: the trainer was stopped (or never started)."""


@dataclass(frozen=True)
class Trainer:
    """How jobs are trained: the command (the spec file's path is added), and the
    threads each trainer process may use."""

    command: Sequence[str] = PYTORCH_TRAINER
    threads: int = 1

    def check_available(self) -> None:
        """FailedPrecondition when the PyTorch trainer cannot run here."""
        if tuple(self.command) != PYTORCH_TRAINER:
            return
        for module in ("torch", "onnxscript"):
            if importlib.util.find_spec(module) is None:
                raise FailedPrecondition(
                    "training needs PyTorch on the server: install the train extra "
                    "(pip install 'modelwire[train]') and restart it"
                )

    async def run(
        self,
        spec_path: Path,
        *,
        workers: int,
        on_epoch: Callable[[EpochRecord], Awaitable[None]],
        cancel: asyncio.Event,
    ) -> str | None:
        """Run the trainer on a spec; None on success, else why it failed. Several
        workers of the PyTorch trainer run under torch.distributed's own launcher
        (torchrun), on this machine. Raises Cancelled once `cancel` is set (the trainer
        stopped, its process group with it)."""
        if cancel.is_set():
            raise Cancelled
        command = list(self.command)
        if workers > 1 and tuple(self.command) == PYTORCH_TRAINER:
            command[1:1] = [
                "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
            ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command,
            str(spec_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "OMP_NUM_THREADS": str(self.threads),
                "MODELWIRE_SERVER_PID": str(os.getpid()),
            },
            # Its own process group, so stopping it stops the launcher and its workers.
            start_new_session=True,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        stderr = asyncio.create_task(process.stderr.read())
        cancelled = asyncio.create_task(cancel.wait())
        reading = asyncio.create_task(_read_epochs(process.stdout, on_epoch))
        try:
            await asyncio.wait({reading, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            if cancel.is_set():
                raise Cancelled
            await reading
            code = await process.wait()
        except BaseException:
            # No epoch is reported after this: the job is being ended by its caller.
            reading.cancel()
            await _stop(process)
            stderr.cancel()
            raise
        finally:
            cancelled.cancel()
        text = (await stderr).decode(errors="replace").strip()
        if code == 0:
            return None
        last = text.splitlines()[-1] if text else f"exit code {code}"
        return f"the trainer failed: {last[:500]}"


async def _read_epochs(
    stdout: asyncio.StreamReader, on_epoch: Callable[[EpochRecord], Awaitable[None]]
) -> None:
    async for line in stdout:
        event = json.loads(line)
        if event.pop("event", None) == "epoch":
            await on_epoch(EpochRecord(**event))


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM first: torchrun passes it to its workers, which run in sessions of their
    own; then SIGKILL for whatever is left of the process group."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
