"""Built-in API nodes with the real class and input names (nodes_openai.py,
nodes_kling.py, nodes_recraft.py, nodes_bfl.py, nodes_minimax.py), calling the
upstream through client.py like the real ones; subclass pairs and the chat
node's per-instance state shaped as in ComfyUI 0.3.64."""
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


class OpenAIChatNode:  # nodes_openai.py:553 (V1): keeps the conversation on the instance
    API_NODE = True
    FUNCTION = "api_call"
    RETURN_TYPES = ("STRING",)

    def __init__(self):  # nodes_openai.py:559-562
        self.current_session_id = "s-" + str(id(self))
        self.history = {}
        self.previous_response_id = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prompt": ("STRING", {}), "persist_context": ("BOOLEAN", {}), "model": ("STRING", {})},
                "hidden": {"auth_token": "AUTH_TOKEN_COMFY_ORG", "comfy_api_key": "API_KEY_COMFY_ORG",
                           "unique_id": "UNIQUE_ID"}}

    async def api_call(self, prompt, persist_context, model, unique_id=None, **kwargs):  # nodes_openai.py:783-855
        previous_response_id = self.previous_response_id if persist_context else None
        auth = {"auth_token": kwargs.get("auth_token"), "comfy_api_key": kwargs.get("comfy_api_key")}
        created, _ = await request("POST", "/proxy/openai/v1/responses", data={
            "input": [{"role": "user", "content": [{"type": "input_text", "text": prompt}]}], "store": True,
            "stream": False, "model": model, "previous_response_id": previous_response_id}, **auth)
        result, _ = await request("GET", f"/proxy/openai/v1/responses/{created['id']}", **auth)
        self.history.setdefault(self.current_session_id, []).append((prompt, created["id"]))
        self.previous_response_id = created["id"]
        return (result["output"][0]["content"][0]["text"],)


class RecraftCrispUpscaleNode:  # nodes_recraft.py:1053 (V1 parent; the path is a class attribute)
    API_NODE = True
    FUNCTION = "api_call"
    RETURN_TYPES = ("IMAGE",)
    RECRAFT_PATH = "/proxy/recraft/images/crispUpscale"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)},
                "hidden": {"auth_token": "AUTH_TOKEN_COMFY_ORG", "comfy_api_key": "API_KEY_COMFY_ORG"}}

    async def api_call(self, image, **kwargs):
        urls = []
        for i in range(image.shape[0]):  # nodes_recraft.py:1087-1089: one upstream call per image of the batch
            body, _ = await request("POST", self.RECRAFT_PATH, auth_token=kwargs.get("auth_token"),
                                    comfy_api_key=kwargs.get("comfy_api_key"), data={"image": str(image[i])})
            urls.append(body["image"]["url"])
        return (" ".join(urls),)


class RecraftCreativeUpscaleNode(RecraftCrispUpscaleNode):  # nodes_recraft.py:1102: only the path differs
    RECRAFT_PATH = "/proxy/recraft/images/creativeUpscale"


class FluxKontextProImageNode(io.ComfyNode):  # nodes_bfl.py:268 (V3 parent)
    BFL_PATH = "/proxy/bfl/flux-kontext-pro/generate"
    NODE_ID = "FluxKontextProImageNode"

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id=cls.NODE_ID, is_api_node=True, inputs=[io.Input("prompt"), io.Input("seed")])

    @classmethod
    async def execute(cls, prompt, seed=0):  # nodes_bfl.py:344-370: path=cls.BFL_PATH
        body, _ = await request("POST", cls.BFL_PATH, data={"prompt": prompt, "seed": seed},
                                auth_token=cls.hidden.auth_token_comfy_org,
                                comfy_api_key=cls.hidden.api_key_comfy_org)
        return io.NodeOutput(body["result"]["sample"])


class FluxKontextMaxImageNode(FluxKontextProImageNode):  # nodes_bfl.py:392: path and id differ
    BFL_PATH = "/proxy/bfl/flux-kontext-max/generate"
    NODE_ID = "FluxKontextMaxImageNode"


class MinimaxTextToVideoNode(io.ComfyNode):  # nodes_minimax.py:139 (V3): create, poll, retrieve
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="MinimaxTextToVideoNode", is_api_node=True,
                         inputs=[io.Input("prompt_text"), io.Input("model"), io.Input("seed", optional=True)])

    @classmethod
    async def execute(cls, prompt_text, model, seed=0):
        auth = {"auth_token": cls.hidden.auth_token_comfy_org, "comfy_api_key": cls.hidden.api_key_comfy_org}
        created, _ = await request("POST", "/proxy/minimax/video_generation",
                                   data={"prompt": prompt_text, "model": model}, **auth)
        tid = created["task_id"]
        for _ in range(2000):  # nodes_minimax.py:78-100 PollingOperation
            st, _ = await request("GET", f"/proxy/minimax/query/video_generation?task_id={tid}", **auth)
            if st["status"] == "Success":
                f, _ = await request("GET", f"/proxy/minimax/files/retrieve?file_id={st['file_id']}", **auth)
                return io.NodeOutput(f["file"]["download_url"])
            await asyncio.sleep(0.05)
        raise Exception("MiniMax task timed out")


# Child before parent for the V1 pair, parent before child for the V3 pair: the
# pack must meter each under its own name in either order.
NODE_CLASS_MAPPINGS = {"OpenAIDalle3": OpenAIDalle3, "OpenAIGPTImage1": OpenAIGPTImage1,
                       "KlingTextToVideoNode": KlingTextToVideoNode, "OpenAIChatNode": OpenAIChatNode,
                       "RecraftCreativeUpscaleNode": RecraftCreativeUpscaleNode,
                       "RecraftCrispUpscaleNode": RecraftCrispUpscaleNode,
                       "FluxKontextProImageNode": FluxKontextProImageNode,
                       "FluxKontextMaxImageNode": FluxKontextMaxImageNode,
                       "MinimaxTextToVideoNode": MinimaxTextToVideoNode}
