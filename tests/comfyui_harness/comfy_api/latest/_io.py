"""Mirrors comfy_api/latest/_io.py: just what API nodes use (Schema with
is_api_node, Hidden inputs auto-added, the per-run class clone)."""
import inspect
from dataclasses import dataclass, field

from comfy_api.internal import _ComfyNodeInternal


class classproperty:
    def __init__(self, f):
        self.f = f

    def __get__(self, obj, owner):
        return self.f(owner)


class Hidden:
    unique_id = "UNIQUE_ID"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """_io.py HiddenHolder: attributes per run; unknown ones read as None."""

    def __init__(self, unique_id=None, auth_token_comfy_org=None, api_key_comfy_org=None, **kwargs):
        self.unique_id = unique_id
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org

    def __getattr__(self, key):
        return None

    @classmethod
    def from_dict(cls, d):
        d = d or {}
        return cls(unique_id=d.get(Hidden.unique_id), auth_token_comfy_org=d.get(Hidden.auth_token_comfy_org),
                   api_key_comfy_org=d.get(Hidden.api_key_comfy_org))


@dataclass
class Input:
    name: str
    default: object = None
    options: list = None
    optional: bool = False


@dataclass
class Schema:
    node_id: str
    inputs: list = field(default_factory=list)
    is_api_node: bool = False
    hidden: list = field(default_factory=list)

    def finalize(self):
        # Schema.finalize (_io.py:1079-1085): API nodes always receive the Comfy.org credentials.
        if self.is_api_node:
            for h in (Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org):
                if h not in self.hidden:
                    self.hidden.append(h)
        if Hidden.unique_id not in self.hidden:
            self.hidden.append(Hidden.unique_id)


class NodeOutput:
    def __init__(self, *args):
        self.args = args

    @property
    def result(self):
        return self.args


class _ComfyNodeBaseInternal(_ComfyNodeInternal):
    hidden: HiddenHolder = None
    RETURN_TYPES = ("STRING",)

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls):
        s = cls.define_schema()
        s.finalize()
        return s

    @classproperty
    def API_NODE(cls):  # _io.py:1464-1465
        return cls.GET_SCHEMA().is_api_node

    @classproperty
    def FUNCTION(cls):  # _io.py:1262
        return "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(cls.execute) else "EXECUTE_NORMALIZED"

    @classmethod
    def INPUT_TYPES(cls):
        s = cls.GET_SCHEMA()
        return {"required": {i.name: ("STRING", {}) for i in s.inputs if not i.optional},
                "optional": {i.name: ("STRING", {}) for i in s.inputs if i.optional},
                "hidden": {h: h for h in s.hidden}}

    @classmethod
    def EXECUTE_NORMALIZED(cls, *args, **kwargs):
        out = cls.execute(*args, **kwargs)
        return out if isinstance(out, NodeOutput) else NodeOutput(*(out if isinstance(out, tuple) else (out,)))

    @classmethod
    async def EXECUTE_NORMALIZED_ASYNC(cls, *args, **kwargs):
        out = await cls.execute(*args, **kwargs)
        return out if isinstance(out, NodeOutput) else NodeOutput(*(out if isinstance(out, tuple) else (out,)))

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden_inputs):
        from comfy_api.internal import shallow_clone_class
        clone = shallow_clone_class(cls)
        clone.hidden = HiddenHolder.from_dict(hidden_inputs)
        return clone


class ComfyNode(_ComfyNodeBaseInternal):
    pass
