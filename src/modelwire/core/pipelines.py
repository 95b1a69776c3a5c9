"""Pipelines (Triton's ensembles): steps that are other served models, wired by tensors.

model.toml declares the pipeline's `[[inputs]]` and `[[outputs]]` and lists `[[steps]]`;
each step maps pipeline tensors to its model's inputs and its model's outputs to new
pipeline tensors. At load the steps are put in the order their tensors need, and a
step that needs a tensor nothing makes, two steps making one tensor, or steps that need
each other are refused. At run time each step goes through its own model's batcher, so a
pipeline's requests batch with direct callers of that model; steps whose inputs are
ready run together.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence

from modelwire.core.repository import ModelSource, StepConfig
from modelwire.core.tasks import Encoded, Item
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput, ModelwireError

__all__ = ["PLATFORM", "CallStep", "Pipeline"]

PLATFORM = "ensemble"

#: Runs one step: (model, version or None, inputs) → every output of that model.
CallStep = Callable[[str, int | None, NamedTensors], Awaitable[NamedTensors]]


class Pipeline:
    name = "pipeline"

    def __init__(self, source: ModelSource) -> None:
        config = source.config
        where = f"{source.name}/model.toml"
        self.model = source.name
        self._inputs = tuple(
            TensorSpec(t.name, t.datatype or "", tuple(t.shape or ())) for t in config.inputs
        )
        self._outputs = tuple(
            TensorSpec(t.name, t.datatype or "", tuple(t.shape or ())) for t in config.outputs
        )
        self.steps = config.steps
        self.levels = _order(
            config.steps, [t.name for t in config.inputs], [t.name for t in config.outputs], where
        )

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def encode(self, items: Sequence[Item]) -> Encoded:
        raise NotImplementedError("a pipeline's steps encode their own requests")

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        return outputs

    async def run(self, inputs: NamedTensors, call: CallStep) -> NamedTensors:
        """The pipeline's outputs for its inputs, each step through `call`."""
        tensors = dict(inputs)
        for level in self.levels:
            answers = await asyncio.gather(
                *(self._step(self.steps[i], i, tensors, call) for i in level)
            )
            for index, outputs in zip(level, answers, strict=True):
                for output, tensor in self.steps[index].outputs.items():
                    tensors[tensor] = outputs[output]
        return {spec.name: tensors[spec.name] for spec in self._outputs}

    async def _step(
        self, step: StepConfig, index: int, tensors: NamedTensors, call: CallStep
    ) -> NamedTensors:
        feeds = {name: tensors[source] for name, source in step.inputs.items()}
        try:
            outputs = await call(step.model, step.version, feeds)
        except ModelwireError as error:
            # A copy (the batcher gives one error object to every caller of a batch),
            # so the same status code, with the step named.
            named = copy.copy(error)
            named.message = f"pipeline {self.model!r} step {index + 1} ({step.model}): {error}"
            named.args = (named.message,)
            raise named from error
        missing = [name for name in step.outputs if name not in outputs]
        if missing:
            raise InvalidInput(
                f"pipeline {self.model!r} step {index + 1} ({step.model}) has no output "
                f"{missing[0]!r}; it gives {', '.join(outputs)}"
            )
        return outputs


def _order(
    steps: Sequence[StepConfig], inputs: Sequence[str], outputs: Sequence[str], where: str
) -> list[list[int]]:
    """Step indices in levels: each level needs only tensors made before it."""
    made: dict[str, int] = {}
    for index, step in enumerate(steps):
        for tensor in step.outputs.values():
            if tensor in made or tensor in inputs:
                raise InvalidInput(f"{where}: tensor {tensor!r} is made twice (step {index + 1})")
            made[tensor] = index
    for index, step in enumerate(steps):
        for tensor in step.inputs.values():
            if tensor not in made and tensor not in inputs:
                raise InvalidInput(
                    f"{where}: step {index + 1} ({step.model}) needs tensor {tensor!r}, "
                    "which is neither a pipeline input nor a step's output"
                )
    for tensor in outputs:
        if tensor not in made and tensor not in inputs:
            raise InvalidInput(f"{where}: output {tensor!r} is made by no step")
    available, left, levels = set(inputs), set(range(len(steps))), []
    while left:
        level = sorted(i for i in left if set(steps[i].inputs.values()) <= available)
        if not level:
            named = ", ".join(f"{i + 1} ({steps[i].model})" for i in sorted(left))
            raise InvalidInput(f"{where}: steps {named} need each other's outputs: a cycle")
        levels.append(level)
        left -= set(level)
        available |= {t for i in level for t in steps[i].outputs.values()}
    return levels
