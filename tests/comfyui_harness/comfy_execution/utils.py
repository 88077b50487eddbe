"""Mirrors comfy_execution/utils.py: the executing node's context."""
import contextvars
from typing import NamedTuple, Optional


class ExecutionContext(NamedTuple):
    prompt_id: str
    node_id: str
    list_index: Optional[int]


current_executing_context: contextvars.ContextVar = contextvars.ContextVar("current_executing_context",
                                                                            default=None)


def get_executing_context() -> Optional[ExecutionContext]:
    return current_executing_context.get(None)


class CurrentNodeContext:
    def __init__(self, prompt_id, node_id, list_index=None):
        self.context = ExecutionContext(prompt_id=prompt_id, node_id=node_id, list_index=list_index)
        self.token = None

    def __enter__(self):
        self.token = current_executing_context.set(self.context)
        return self

    def __exit__(self, *exc):
        if self.token is not None:
            current_executing_context.reset(self.token)
