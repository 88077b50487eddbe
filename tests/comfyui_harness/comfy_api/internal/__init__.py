"""Mirrors comfy_api/internal/__init__.py: V3 class machinery."""
import asyncio


class _ComfyNodeInternal:
    """Base of every V3 node class."""


def first_real_override(cls, name, *, base=None):
    """The first definition of `name` below the V3 base class, else None
    (comfy_api/internal/__init__.py first_real_override)."""
    base = base or _ComfyNodeBaseInternal
    base_attr = getattr(base, name, None)
    for c in cls.__mro__:
        if c is base:
            break
        if name in c.__dict__:
            attr = c.__dict__[name]
            func = getattr(attr, "__func__", attr)
            if func is not getattr(base_attr, "__func__", base_attr):
                return getattr(cls, name)
    return None


def shallow_clone_class(cls, new_name=None):
    new_name = new_name or f"{cls.__name__}Clone"
    return type(new_name, (cls,) + cls.__bases__, dict(cls.__dict__))


def lock_class(cls):
    def locked_instance_setattr(self, name, value):
        raise AttributeError(f"Cannot set attribute '{name}' on immutable instance of {type(self).__name__}")

    class LockedMeta(type(cls)):
        def __setattr__(cls_, name, value):
            raise AttributeError(f"Cannot modify class attribute '{name}' on locked class '{cls_.__name__}'")
    d = dict(cls.__dict__)
    d["__setattr__"] = locked_instance_setattr
    return LockedMeta(cls.__name__, cls.__bases__, d)


def make_locked_method_func(type_obj, func, class_clone):
    locked_class = lock_class(class_clone)
    method = getattr(type_obj, func).__func__
    if asyncio.iscoroutinefunction(method):
        async def wrapped_async_func(**inputs):
            return await method(locked_class, **inputs)
        return wrapped_async_func

    def wrapped_func(**inputs):
        return method(locked_class, **inputs)
    return wrapped_func


from comfy_api.latest._io import _ComfyNodeBaseInternal  # noqa: E402  (circular, as in ComfyUI)
