"""Built-in API nodes with the real class and input names (nodes_openai.py,
nodes_kling.py), calling the upstream through client.py like the real ones."""
import asyncio

from comfy_api.latest import io
from comfy_api_nodes.client import request


class OpenAIDalle3:  # nodes_openai.py OpenAIDalle3 (V1)
    API_NODE = True
    FUNCTION = "api_call"
    RETURN_TYPES = ("IMAGE",)
    CATEGORY = "api node/image/OpenAI"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prompt": ("STRING", {}), "seed": ("INT", {}), "quality": (["standard", "hd"],),
                             "style": (["natural", "vivid"],), "size": (["1024x1024", "1024x1792", "1792x1024"],)},
                "hidden": {"auth_token": "AUTH_TOKEN_COMFY_ORG", "comfy_api_key": "API_KEY_COMFY_ORG",
                           "unique_id": "UNIQUE_ID"}}

    async def api_call(self, prompt, seed=0, quality="standard", style="natural", size="1024x1024",
                       unique_id=None, **kwargs):
        body, _ = await request("POST", "/proxy/openai/images/generations", auth_token=kwargs.get("auth_token"),
                                comfy_api_key=kwargs.get("comfy_api_key"),
                                data={"model": "dall-e-3", "prompt": prompt, "quality": quality, "size": size,
                                      "style": style, "n": 1})
        return (f"image:{len(body['data'])}",)


class OpenAIGPTImage1:  # nodes_openai.py OpenAIGPTImage1 (V1); response carries usage tokens
    API_NODE = True
    FUNCTION = "api_call"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prompt": ("STRING", {}), "seed": ("INT", {}), "quality": (["low", "medium", "high"],),
                             "background": (["opaque", "transparent"],), "size": (["auto", "1024x1024"],),
                             "n": ("INT", {})},
                "optional": {"image": ("IMAGE",), "mask": ("MASK",)},
                "hidden": {"auth_token": "AUTH_TOKEN_COMFY_ORG", "comfy_api_key": "API_KEY_COMFY_ORG",
                           "unique_id": "UNIQUE_ID"}}

    async def api_call(self, prompt, seed=0, quality="low", background="opaque", size="1024x1024", n=1,
                       image=None, mask=None, unique_id=None, **kwargs):
        body, _ = await request("POST", "/proxy/openai/images/generations", auth_token=kwargs.get("auth_token"),
                                comfy_api_key=kwargs.get("comfy_api_key"),
                                data={"model": "gpt-image-1", "prompt": prompt, "quality": quality, "n": n,
                                      "size": size, "background": background})
        return (f"image:{len(body['data'])}",)


class KlingTextToVideoNode(io.ComfyNode):  # nodes_kling.py (V3): submit, then poll until done
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="KlingTextToVideoNode", is_api_node=True, inputs=[
            io.Input("prompt"), io.Input("negative_prompt", optional=True), io.Input("cfg_scale", optional=True),
            io.Input("aspect_ratio", optional=True), io.Input("mode")])

    @classmethod
    async def execute(cls, prompt, mode, negative_prompt="", cfg_scale=0.8, aspect_ratio="16:9"):
        auth = {"auth_token": cls.hidden.auth_token_comfy_org, "comfy_api_key": cls.hidden.api_key_comfy_org}
        model = mode.split(" / ")[-1]
        sub, _ = await request("POST", "/proxy/kling/v1/videos/text2video", data={
            "prompt": prompt, "negative_prompt": negative_prompt, "cfg_scale": cfg_scale, "mode": mode,
            "model_name": model, "aspect_ratio": aspect_ratio}, **auth)
        task_id = sub["data"]["task_id"]
        for _ in range(200):
            st, _ = await request("GET", f"/proxy/kling/v1/videos/text2video/{task_id}", **auth)
            if st["data"]["task_status"] == "succeed":
                return io.NodeOutput(st["data"]["task_result"]["videos"][0]["url"])
            if st["data"]["task_status"] == "failed":
                raise Exception(f"Kling task failed: {st['data'].get('task_status_msg')}")
            await asyncio.sleep(0.05)
        raise Exception("Kling task timed out")


NODE_CLASS_MAPPINGS = {"OpenAIDalle3": OpenAIDalle3, "OpenAIGPTImage1": OpenAIGPTImage1,
                       "KlingTextToVideoNode": KlingTextToVideoNode}
