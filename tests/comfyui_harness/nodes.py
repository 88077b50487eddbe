"""Mirrors nodes.py: built-in node classes, custom-node loading, interrupts."""
import asyncio
import importlib.util
import logging
import os
import sys
import traceback

import comfy.model_management

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
EXTENSION_WEB_DIRS = {}
LOADED_MODULE_DIRS = {}


def interrupt_processing(value=True):  # nodes.py interrupt_processing
    comfy.model_management.interrupt_current_processing(value)


def before_node_execution():  # nodes.py before_node_execution
    comfy.model_management.throw_exception_if_processing_interrupted()


class PrimitiveString:
    FUNCTION = "run"
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {})}}

    def run(self, value):
        return (value,)


class PreviewAny:
    """An output node (OUTPUT_NODE = True) so prompts have outputs."""
    FUNCTION = "run"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("*", {})}}

    def run(self, source):
        return {"ui": {"text": [str(source)[:200]]}, "result": ()}


class ImageTensor:
    """Stands for the torch tensor an IMAGE is ([batch, height, width, 3]); only
    what API nodes read of it is modelled: `shape` and `image[i]`, which
    drops the batch dimension like torch indexing does."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __getitem__(self, i):
        if not isinstance(i, int) or not 0 <= i < self.shape[0]:
            raise IndexError(i)
        return ImageTensor(self.shape[1:])

    def __str__(self):
        return "image" + "x".join(str(d) for d in self.shape)


class EmptyImage:  # nodes.py:1860: a batch of batch_size solid images
    FUNCTION = "generate"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {"default": 512, "min": 1}), "height": ("INT", {"default": 512, "min": 1}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                             "color": ("INT", {"default": 0})}}

    def generate(self, width, height, batch_size=1, color=0):
        return (ImageTensor([batch_size, height, width, 3]),)


NODE_CLASS_MAPPINGS.update({"PrimitiveString": PrimitiveString, "PreviewAny": PreviewAny, "EmptyImage": EmptyImage})


async def load_custom_node(module_path, ignore=set(), module_parent="custom_nodes"):
    """nodes.py:2111-2204: a directory pack's module key is its full path with
    '.' replaced by '_x_'; NODE_CLASS_MAPPINGS merge without overriding
    `ignore` (the base names); an exception logs and skips the pack."""
    module_name = os.path.basename(module_path)
    sys_module_name = module_path.replace(".", "_x_") if os.path.isdir(module_path) else module_name
    try:
        if os.path.isfile(module_path):
            spec = importlib.util.spec_from_file_location(sys_module_name, module_path)
            module_dir = os.path.split(module_path)[0]
        else:
            spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(module_path, "__init__.py"))
            module_dir = module_path
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys_module_name] = module
        spec.loader.exec_module(module)
        LOADED_MODULE_DIRS[module_name] = os.path.abspath(module_dir)
        if getattr(module, "WEB_DIRECTORY", None) is not None:
            web_dir = os.path.abspath(os.path.join(module_dir, module.WEB_DIRECTORY))
            if os.path.isdir(web_dir):
                EXTENSION_WEB_DIRS[module_name] = web_dir
        if getattr(module, "NODE_CLASS_MAPPINGS", None) is not None:
            for name, cls in module.NODE_CLASS_MAPPINGS.items():
                if name not in ignore:
                    NODE_CLASS_MAPPINGS[name] = cls
            return True
        if hasattr(module, "comfy_entrypoint"):
            ext = module.comfy_entrypoint()
            if asyncio.iscoroutine(ext):
                ext = await ext
            for cls in await ext.get_node_list():
                NODE_CLASS_MAPPINGS.setdefault(cls.GET_SCHEMA().node_id, cls)
            return True
        logging.warning(f"Skip {module_path} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or "
                        "NODES_LIST (need one).")
        return False
    except Exception as e:
        logging.warning(traceback.format_exc())
        logging.warning(f"Cannot import {module_path} module for custom nodes: {e}")
        return False


async def init_external_custom_nodes(custom_nodes_dir):
    base_node_names = set(NODE_CLASS_MAPPINGS.keys())
    failed = []
    if not custom_nodes_dir or not os.path.isdir(custom_nodes_dir):
        return failed
    for name in os.listdir(custom_nodes_dir):  # os.listdir order, as in ComfyUI
        path = os.path.join(custom_nodes_dir, name)
        if os.path.isfile(path) and os.path.splitext(path)[1] != ".py":
            continue
        if path.endswith(".disabled") or name == "__pycache__":
            continue
        if not await load_custom_node(path, base_node_names):
            failed.append(path)
    for p in failed:
        logging.warning(f"IMPORT FAILED: {p}")
    return failed


async def init_extra_nodes(custom_nodes_dir, init_api_nodes=True):
    """nodes.py:2385: built-in API nodes load before custom packs."""
    if init_api_nodes:
        from comfy_api_nodes import nodes_sample
        NODE_CLASS_MAPPINGS.update(nodes_sample.NODE_CLASS_MAPPINGS)
    return await init_external_custom_nodes(custom_nodes_dir)
