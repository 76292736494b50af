"""Each provider emulator's outputs follow their inputs: an upscale is the input image enlarged
by its scale, an edit is the input visibly changed, a video lasts the length asked for.

The input image is an output of an earlier generation on the same emulator, fetched by URL as a
provider fetches what it is given.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
from PIL import Image, ImageOps

from emulators.scaffold.media import mp4_declared_length
from tests.emulators.fal_support import submit, wait_completed
from tests.emulators.kie_support import create as kie_create
from tests.emulators.kie_support import result_urls, task_body, wait_state
from tests.emulators.support import create, wait_status

pytest_plugins = ("tests.emulators.fal_fixtures", "tests.emulators.kie_fixtures")


def image(client: httpx.Client, url: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def enlarged(source: Image.Image, scale: int) -> bytes:
    size = (source.width * scale, source.height * scale)
    return source.resize(size, Image.Resampling.LANCZOS).tobytes()


def replicate_output(api: httpx.Client, model: str, payload: dict[str, Any]) -> str:
    body = {"version": model, "input": {"seed": uuid.uuid4().hex, **payload}}
    done = wait_status(api, create(api, body)["id"])
    assert done["status"] == "succeeded", done
    output = done["output"]
    return str(output[0] if isinstance(output, list) else output)


def test_replicate_outputs_follow_their_inputs(api: httpx.Client) -> None:
    source_url = replicate_output(api, "acme/sdxl", {"width": 40, "height": 24})
    source = image(api, source_url)
    assert source.size == (40, 24)

    upscaled = replicate_output(api, "nightmareai/real-esrgan", {"image": source_url, "scale": 3})
    bigger = image(api, upscaled)
    assert bigger.size == (120, 72) and bigger.tobytes() == enlarged(source, 3)

    edit = {"prompt": "make it blue", "input_image": source_url}
    changed = image(api, replicate_output(api, "black-forest-labs/flux-kontext-pro", edit))
    assert changed.size == source.size
    assert changed.tobytes() == ImageOps.invert(source).tobytes() != source.tobytes()

    video = api.get(replicate_output(api, "minimax/video-01", {"prompt": "x", "duration": 7}))
    assert mp4_declared_length(video.content) == 7


def fal_result(fal_api: httpx.Client, model: str, payload: dict[str, Any]) -> dict[str, Any]:
    submitted = submit(fal_api, {"seed": uuid.uuid4().hex, **payload}, model=model)
    wait_completed(fal_api, submitted)
    response = fal_api.get(submitted["response_url"])
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_fal_outputs_follow_their_inputs(fal_api: httpx.Client) -> None:
    size = {"width": 30, "height": 20}
    generated = fal_result(fal_api, "fal-ai/flux/dev", {"image_size": size})
    source_url = generated["images"][0]["url"]
    source = image(fal_api, source_url)

    upscaled = fal_result(fal_api, "fal-ai/esrgan", {"image_url": source_url, "scale": 2})
    bigger = image(fal_api, upscaled["image"]["url"])
    assert (upscaled["image"]["width"], upscaled["image"]["height"]) == bigger.size == (60, 40)
    assert bigger.tobytes() == enlarged(source, 2)
    assert upscaled["image"]["file_size"] == len(fal_api.get(upscaled["image"]["url"]).content)

    edit = {"prompt": "make it blue", "image_url": source_url}
    edited = fal_result(fal_api, "fal-ai/flux-pro/kontext", edit)["images"][0]
    assert (edited["width"], edited["height"]) == source.size
    assert image(fal_api, edited["url"]).tobytes() == ImageOps.invert(source).tobytes()

    video = fal_result(
        fal_api, "fal-ai/kling-video/v2/master/text-to-video", {"prompt": "x", "duration": "10"}
    )
    assert mp4_declared_length(fal_api.get(video["video"]["url"]).content) == 10


def kie_output(kie_api: httpx.Client, model: str, **payload: Any) -> str:
    task_id = kie_create(kie_api, task_body(model=model, **payload))
    done = wait_state(kie_api, task_id)
    assert done["state"] == "success", done
    return result_urls(done)[0]


def test_kie_outputs_follow_their_inputs(kie_api: httpx.Client) -> None:
    source_url = kie_output(kie_api, "google/nano-banana", width=32, height=16)
    source = image(kie_api, source_url)
    assert source.size == (32, 16)

    upscaled = kie_output(kie_api, "topaz/image-upscale", image_url=source_url, upscale_factor="2")
    assert image(kie_api, upscaled).tobytes() == enlarged(source, 2)

    edited = kie_output(kie_api, "google/nano-banana-edit", image_urls=[source_url])
    assert image(kie_api, edited).tobytes() == ImageOps.invert(source).tobytes()

    video = kie_output(kie_api, "kling/v2-1-master-text-to-video", duration="5")
    assert mp4_declared_length(kie_api.get(video).content) == 5
