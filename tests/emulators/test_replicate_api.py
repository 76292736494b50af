"""The Replicate emulator's HTTP API: shapes, create forms, errors, files, cancel, trainings."""

from __future__ import annotations

import io
import re
import struct
import tarfile
import zlib
from typing import Any

import httpx

from tests.emulators.support import (
    TOKEN,
    VERSION,
    create,
    get,
    timeline,
    wait_for,
    wait_status,
)

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Parse a PNG, checking every CRC, and return its chunks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    return chunks


def test_prediction_has_replicates_shape_through_its_lifecycle(api: httpx.Client) -> None:
    created = create(api, {"version": VERSION, "input": {"prompt": "hi"}})
    assert re.fullmatch(r"[a-z0-9]{26}", created["id"])
    assert created["status"] == "starting"
    assert created["logs"] == ""
    assert created["output"] is None and created["error"] is None
    assert created["started_at"] is None and created["completed_at"] is None
    assert ISO_Z.match(created["created_at"])
    assert created["source"] == "api"
    assert created["data_removed"] is False
    base = str(api.base_url).rstrip("/")
    assert created["urls"]["get"] == f"{base}/v1/predictions/{created['id']}"
    assert created["urls"]["cancel"] == f"{base}/v1/predictions/{created['id']}/cancel"
    assert "deadline" not in created

    processing = wait_status(api, created["id"], ("processing",))
    assert ISO_Z.match(processing["started_at"])

    done = wait_status(api, created["id"])
    assert done["status"] == "succeeded"
    assert ISO_Z.match(done["completed_at"])
    assert set(done["metrics"]) == {"predict_time", "total_time"}
    assert "100%|" in done["logs"]
    [url] = done["output"]
    assert url == f"{base}/files/{created['id']}/out-0.png"

    history = timeline(api, created["id"])
    statuses = [e["status"] for e in history["events"] if e["type"] == "status"]
    assert statuses == ["starting", "processing", "succeeded"]
    assert isinstance(history["completed_at"], float)


def test_create_forms_name_the_model_and_version(api: httpx.Client) -> None:
    pinned = create(api, {"version": f"acme/painter:{VERSION}", "input": {}})
    assert (pinned["model"], pinned["version"]) == ("acme/painter", VERSION)
    # A bare version id now resolves to the model it was seen with.
    bare = create(api, {"version": VERSION, "input": {}})
    assert (bare["model"], bare["version"]) == ("acme/painter", VERSION)

    official = create(api, {"version": "black-forest-labs/flux-schnell", "input": {}})
    assert (official["model"], official["version"]) == ("black-forest-labs/flux-schnell", "hidden")
    by_model = create(api, {"input": {}}, path="/v1/models/black-forest-labs/flux-dev/predictions")
    assert (by_model["model"], by_model["version"]) == ("black-forest-labs/flux-dev", "hidden")

    deployed = create(api, {"input": {}}, path="/v1/deployments/acme/prod-image/predictions")
    assert deployed["model"] == deployed["deployment"] == "acme/prod-image"
    assert re.fullmatch(r"[0-9a-f]{64}", deployed["version"])


def test_invalid_creates_get_422_with_invalid_fields(api: httpx.Client) -> None:
    cases: list[tuple[str, Any, set[str]]] = [
        ("/v1/predictions", {"version": VERSION}, {"input"}),
        ("/v1/predictions", {"version": VERSION, "input": "a prompt"}, {"input"}),
        ("/v1/predictions", {"version": "not a version", "input": {}}, {"version"}),
        ("/v1/predictions", {"input": {}}, {"version"}),
        ("/v1/predictions", {"version": VERSION, "input": {}, "webhook": "ftp://x"}, {"webhook"}),
        (
            "/v1/predictions",
            {"version": VERSION, "input": {}, "webhook_events_filter": ["done"]},
            {"webhook_events_filter"},
        ),
        (
            "/v1/predictions",
            {"version": VERSION, "input": {"_emulator": {"no_such_fault": 1}}},
            {"input._emulator.no_such_fault"},
        ),
        ("/v1/models/acme/x/predictions", [1, 2], {"body"}),
        (f"/v1/models/acme/trainer/versions/{VERSION}/trainings", {"input": {}}, {"destination"}),
        (
            "/v1/models/acme/trainer/versions/nothex/trainings",
            {"input": {}},
            {"version", "destination"},
        ),
    ]
    for path, body, fields in cases:
        response = api.post(path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        problem = response.json()
        assert problem["title"] == "Input validation failed"
        assert problem["status"] == 422
        assert {f["field"] for f in problem["invalid_fields"]} == fields
        assert all(f["field"] in problem["detail"] for f in problem["invalid_fields"])
    bad_json = api.post(
        "/v1/predictions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422


def test_auth_is_required_on_the_api_only(emulator_url: str) -> None:
    unauthenticated = {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = httpx.get(f"{emulator_url}/v1/predictions", headers=headers)
        assert response.status_code == 401
        assert response.json() == unauthenticated
    old_scheme = httpx.get(
        f"{emulator_url}/v1/predictions", headers={"Authorization": f"Token {TOKEN}"}
    )
    assert old_scheme.status_code == 200
    assert httpx.get(f"{emulator_url}/_emulator/health").json() == {"ok": True}


def test_unknown_prediction_is_404(api: httpx.Client) -> None:
    not_found = {"detail": "Not found.", "status": 404, "title": "Not found"}
    assert api.get("/v1/predictions/doesnotexist").json() == not_found
    assert api.get("/v1/predictions/doesnotexist").status_code == 404
    assert api.post("/v1/predictions/doesnotexist/cancel").status_code == 404
    assert api.get("/v1/trainings/doesnotexist").status_code == 404


def test_list_is_newest_first(api: httpx.Client) -> None:
    first = create(api, {"version": "acme/sdxl", "input": {}})
    second = create(api, {"version": "acme/sdxl", "input": {}})
    page = api.get("/v1/predictions").json()
    assert page["previous"] is None and page["next"] is None
    ids = [p["id"] for p in page["results"]]
    assert ids.index(second["id"]) < ids.index(first["id"])


def test_output_kinds_and_file_bytes(api: httpx.Client) -> None:
    images = create(
        api, {"version": "acme/sdxl", "input": {"num_outputs": 9, "width": 40, "height": 1000}}
    )
    video = create(api, {"version": "minimax/video-01", "input": {}})
    upscale = create(api, {"version": "nightmareai/real-esrgan", "input": {}})
    padded = create(api, {"version": "acme/sdxl", "input": {"_emulator": {"file_bytes": 300_000}}})

    urls = wait_status(api, images["id"])["output"]
    assert [u.rsplit("/", 1)[1] for u in urls] == [
        "out-0.png",
        "out-1.png",
        "out-2.png",
        "out-3.png",
    ]
    response = httpx.get(urls[0])
    assert response.headers["content-type"] == "image/png"
    width, height = struct.unpack(">II", png_chunks(response.content)[0][1][:8])
    assert (width, height) == (40, 256)  # height capped
    assert response.content != httpx.get(urls[1]).content  # each output has its own colour

    video_url = wait_status(api, video["id"])["output"]
    assert isinstance(video_url, str) and video_url.endswith(".mp4")
    clip = httpx.get(video_url)
    assert clip.headers["content-type"] == "video/mp4"
    assert clip.content[4:8] == b"ftyp"

    upscale_url = wait_status(api, upscale["id"])["output"]
    assert isinstance(upscale_url, str) and upscale_url.endswith(".png")
    png_chunks(httpx.get(upscale_url).content)

    [big_url] = wait_status(api, padded["id"])["output"]
    big = httpx.get(big_url)
    assert len(big.content) == 300_000 == int(big.headers["content-length"])
    png_chunks(big.content)


def test_files_expire_after_their_ttl(api: httpx.Client) -> None:
    # A TTL a loaded machine can't outrun between the job's end and the first GET.
    job = create(api, {"version": "acme/sdxl", "input": {"_emulator": {"file_ttl_seconds": 3}}})
    [url] = wait_status(api, job["id"])["output"]
    assert httpx.get(url).status_code == 200
    wait_for(
        lambda: httpx.get(url).status_code, lambda code: code == 404, timeout=30, what="expiry"
    )
    removed = get(api, job["id"])
    assert removed["data_removed"] is True
    assert removed["output"] is None
    assert removed["status"] == "succeeded"


def test_expire_endpoint_removes_files_now(api: httpx.Client) -> None:
    job = create(api, {"version": "acme/sdxl", "input": {}})
    [url] = wait_status(api, job["id"])["output"]
    expired = api.post(f"/_emulator/predictions/{job['id']}/expire").json()
    assert expired["data_removed"] is True and expired["output"] is None
    assert httpx.get(url).status_code == 404


def test_cancel_running_and_finished_predictions(api: httpx.Client) -> None:
    job = create(api, {"version": "acme/sdxl", "input": {"_emulator": {"processing_seconds": 30}}})
    wait_status(api, job["id"], ("processing",))
    response = api.post(f"/v1/predictions/{job['id']}/cancel")
    assert response.status_code == 200
    canceled = response.json()
    assert canceled["status"] == "canceled"
    assert canceled["completed_at"] is not None
    again = api.post(f"/v1/predictions/{job['id']}/cancel").json()
    assert again == canceled

    finished = create(api, {"version": "acme/sdxl", "input": {}})
    done = wait_status(api, finished["id"])
    assert api.post(f"/v1/predictions/{finished['id']}/cancel").json() == done


def test_training_outputs_a_version_and_weights(api: httpx.Client) -> None:
    path = f"/v1/models/acme/flux-trainer/versions/{VERSION}/trainings"
    training = create(api, {"input": {"steps": 10}, "destination": "me/my-flux"}, path=path)
    assert training["destination"] == "me/my-flux"
    assert training["urls"]["get"].endswith(f"/v1/trainings/{training['id']}")
    assert training["urls"]["cancel"].endswith(f"/v1/trainings/{training['id']}/cancel")
    done = wait_status(api, training["id"], kind="trainings")
    assert done["status"] == "succeeded"
    output = done["output"]
    destination, version = output["version"].split(":")
    assert destination == "me/my-flux" and re.fullmatch(r"[0-9a-f]{64}", version)
    weights = httpx.get(output["weights"])
    assert weights.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(weights.content)) as archive:
        assert archive.getnames() == ["weights.safetensors"]
    # The new version can be run, and is known as the destination model.
    run = create(api, {"version": version, "input": {}})
    assert run["model"] == "me/my-flux"

    other = create(api, {"input": {}, "destination": "me/other"}, path=path)
    canceled = api.post(f"/v1/trainings/{other['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    assert api.get("/v1/trainings").json()["results"][0]["id"] == other["id"]


def test_prefer_wait_holds_the_create_until_done(api: httpx.Client) -> None:
    response = api.post(
        "/v1/predictions", json={"version": "acme/sdxl", "input": {}}, headers={"Prefer": "wait=10"}
    )
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"


def test_cancel_after_aborts_or_cancels(api: httpx.Client) -> None:
    never_started = create(
        api,
        {"version": "acme/sdxl", "input": {"_emulator": {"stay_starting": True}}},
        headers={"Cancel-After": "300ms"},
    )
    assert ISO_Z.match(never_started["deadline"])
    aborted = wait_status(api, never_started["id"])
    assert aborted["status"] == "aborted" and aborted["started_at"] is None

    running = create(
        api,
        {"version": "acme/sdxl", "input": {"_emulator": {"processing_seconds": 30}}},
        headers={"Cancel-After": "1s"},
    )
    assert wait_status(api, running["id"])["status"] == "canceled"
    bad = api.post(
        "/v1/predictions",
        json={"version": "acme/sdxl", "input": {}},
        headers={"Cancel-After": "soon"},
    )
    assert bad.status_code == 422


def test_force_complete(api: httpx.Client) -> None:
    job = create(api, {"version": "acme/sdxl", "input": {"_emulator": {"stay_starting": True}}})
    forced = api.post(
        f"/_emulator/predictions/{job['id']}/complete", json={"status": "failed", "error": "boom"}
    ).json()
    assert (forced["status"], forced["error"], forced["output"]) == ("failed", "boom", None)
    succeeded = create(
        api, {"version": "acme/sdxl", "input": {"_emulator": {"stay_starting": True}}}
    )
    done = api.post(
        f"/_emulator/predictions/{succeeded['id']}/complete", json={"status": "succeeded"}
    ).json()
    assert done["status"] == "succeeded"
    assert httpx.get(done["output"][0]).status_code == 200


def test_stats_count_requests_and_reset_forgets_everything(api: httpx.Client) -> None:
    api.post("/_emulator/reset").raise_for_status()
    job = create(api, {"version": "acme/sdxl", "input": {}})
    wait_status(api, job["id"])
    api.post(f"/v1/predictions/{job['id']}/cancel")
    api.get("/v1/predictions")
    api.get("/v1/predictions/missing")
    stats = api.get("/_emulator/stats").json()
    assert stats["requests"]["create"] == 1
    assert stats["requests"]["get"] >= 2
    assert stats["requests"]["cancel"] == 1 and stats["requests"]["list"] == 1
    assert stats["responses"]["201"] == 1 and stats["responses"]["404"] == 1
    assert stats["predictions"]["succeeded"] == 1

    api.post("/_emulator/reset").raise_for_status()
    assert api.get(f"/v1/predictions/{job['id']}").status_code == 404
    after = api.get("/_emulator/stats").json()
    assert after["predictions"]["succeeded"] == 0
    assert after["requests"]["create"] == 0
