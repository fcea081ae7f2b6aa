"""``gemini``: restore a photo with Nano-Banana-2 through the Gemini API (google-genai).

Per photo, in adaptive mode (the default): a vision-language model (``vlm_model``) looks
at the LQ photo and answers, as JSON under a response schema, which degradations it sees,
what the scene holds, what must not change, and a restoration prompt; the image model
(``model``, ``gemini-3.1-flash-image``) then restores the photo with that prompt and the
fidelity rules below. An answer that does not parse falls back to the fixed prompt, and
the row says so. In fixed mode the fixed prompt is used throughout.

Robustness:
- the SDK retries 408, 429 and 5xx itself, with bounded attempts and jittered exponential
  backoff (``attempts``, ``retry_initial_delay_s``); 400/401/403/404 are not retried;
  ``timeout_s`` bounds each request;
- a refused prompt or output (``promptFeedback.blockReason``, or a safety finish reason)
  is status ``blocked``; an answer without an image is retried ``no_image_retries`` times,
  then ``no image``; bytes that do not decode are ``invalid image``;
- the API key is read by the SDK from the environment (``GEMINI_API_KEY`` or
  ``GOOGLE_API_KEY``, or Vertex AI settings) and never passed, printed or stored by ggtqc;
  error messages are scrubbed of it all the same.

``base_url`` (or the SDK's ``GOOGLE_GEMINI_BASE_URL``) points the client at a gateway,
a proxy or a compatible server. Costs are estimates from configurable prices: the
published $0.067 per 1K output image, and per-million-token prices for inputs and the
VLM's text output.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ggtqc import hookimpl
from ggtqc.generators import (
    BLOCKED,
    FAILED,
    INVALID_IMAGE,
    NO_IMAGE,
    OK,
    REJECTED,
    Generation,
    Generator,
    Photo,
    Requirement,
)
from ggtqc.images import DecodeError, decode_bytes

FIDELITY_RULES = (
    "Keep the photo faithful: the same scene, composition, framing and aspect ratio; every "
    "object, person, face, text and detail stays where it is and as it is; add nothing and "
    "remove nothing but the degradation; keep natural colours and lighting; do not stylise."
)
FIXED_PROMPT = (
    "Restore this photo to a clean, sharp, high-quality version of the same photograph: "
    "remove noise, blur, compression artifacts, rain, snow, haze, scratches and fading, and "
    "correct exposure. " + FIDELITY_RULES
)
ANALYSIS_PROMPT = (
    "You prepare photo restorations. Look at this photo and answer in JSON: 'degradations' "
    "(what degrades it: noise, blur, JPEG artifacts, rain, snow, haze, low light, fading, "
    "scratches...), 'scene' (what it shows, briefly), 'preserve' (objects, people, text and "
    "details that must not change), and 'restoration_prompt' (one paragraph instructing an "
    "image model to remove exactly these degradations from this photo while keeping it faithful)."
)
ANALYSIS_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "degradations": {"type": "ARRAY", "items": {"type": "STRING"}},
        "scene": {"type": "STRING"},
        "preserve": {"type": "ARRAY", "items": {"type": "STRING"}},
        "restoration_prompt": {"type": "STRING"},
    },
    "required": ["degradations", "scene", "preserve", "restoration_prompt"],
}
# Aspect ratios the image model accepts; the nearest to the LQ's is asked for.
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
SAFETY_FINISH = {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST", "SPII"}
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


def nearest_aspect_ratio(width: int, height: int) -> str:
    def distance(ratio: str) -> float:
        w, h = (int(v) for v in ratio.split(":"))
        return abs(math.log((w / h) / (width / height)))

    return min(ASPECT_RATIOS, key=distance)


class Gemini(Generator):
    name = "gemini"
    version = "1"
    options = {
        "model": "gemini-3.1-flash-image",
        "vlm_model": "gemini-3-flash",
        "prompt_mode": "adaptive",
        "image_size": "1K",
        "base_url": "",
        "timeout_s": 180.0,
        "attempts": 5,
        "retry_initial_delay_s": 2.0,
        "no_image_retries": 2,
        "usd_per_image": 0.067,
        "usd_per_mtok_input": 0.5,
        "usd_per_mtok_text_output": 3.0,
        "tokens_per_input_image": 1120,
    }

    def requirements(self):
        vertex = os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in ("1", "true")
        has_key = any(os.environ.get(name) for name in KEY_VARIABLES)
        needs = [
            Requirement(
                "a Gemini API key in the environment",
                vertex or has_key,
                "export GEMINI_API_KEY=... (or GOOGLE_API_KEY, or the Vertex AI variables)",
            )
        ]
        if self.settings["prompt_mode"] not in ("adaptive", "fixed"):
            needs.append(Requirement("prompt_mode adaptive or fixed", False, "use --prompt-mode adaptive|fixed"))
        if self.settings["image_size"] not in ("1K", "2K", "4K"):
            needs.append(Requirement("image_size 1K, 2K or 4K", False, "use --image-size 1K|2K|4K"))
        return needs

    def setup(self) -> None:
        from google import genai
        from google.genai import types

        self.types = types
        self.errors = genai.errors
        delay = float(self.settings["retry_initial_delay_s"])
        options = types.HttpOptions(
            base_url=str(self.settings["base_url"]) or None,
            timeout=int(float(self.settings["timeout_s"]) * 1000),  # milliseconds
            retry_options=types.HttpRetryOptions(
                attempts=int(self.settings["attempts"]),
                initial_delay=delay,
                max_delay=max(delay, 60.0 if delay >= 1 else delay * 8),
                exp_base=2,
                jitter=min(1.0, delay),
                http_status_codes=list(RETRY_STATUS_CODES),
            ),
        )
        self.client = genai.Client(http_options=options)

    def estimate(self, photo_count: int) -> dict[str, Any]:
        s = self.settings
        per_photo = float(s["usd_per_image"]) + int(s["tokens_per_input_image"]) * float(s["usd_per_mtok_input"]) / 1e6
        if s["prompt_mode"] == "adaptive":  # the VLM sees the photo too, and writes ~300 tokens
            per_photo += int(s["tokens_per_input_image"]) * float(s["usd_per_mtok_input"]) / 1e6
            per_photo += 300 * float(s["usd_per_mtok_text_output"]) / 1e6
        estimate = {"usd": round(per_photo * photo_count, 4), "usd_per_photo": round(per_photo, 5), "image_size": s["image_size"]}
        if s["image_size"] != "1K" and float(s["usd_per_image"]) == float(self.options["usd_per_image"]):
            estimate["note"] = f"usd_per_image is the 1K price; set the {s['image_size']} price with --set usd_per_image=..."
        return estimate

    def _details(self, photo: Photo) -> dict[str, Any]:
        s = self.settings
        return {
            "model": s["model"],
            "vlm_model": s["vlm_model"] if s["prompt_mode"] == "adaptive" else None,
            "prompt_mode": s["prompt_mode"],
            "image_size": s["image_size"],
            "aspect_ratio": nearest_aspect_ratio(photo.width, photo.height),
            "requests": 0,
            "usage": {"input_tokens": 0, "text_output_tokens": 0, "image_output_tokens": 0},
        }

    def generate(self, photo: Photo) -> Generation:
        details = self._details(photo)
        try:
            prompt = self._prompt(photo, details)
            details["prompt"] = prompt
            result = self._restore(photo, prompt, details)
        except self.errors.APIError as error:
            code = getattr(error, "code", None)
            status = REJECTED if code in (400, 401, 403, 404) else FAILED
            result = Generation(status, reason=_scrub(f"HTTP {code}: {getattr(error, 'message', '') or error}"))
        except Exception as error:  # timeouts and connection errors after the SDK's retries
            result = Generation(FAILED, reason=_scrub(f"{type(error).__name__}: {error}"))
        result.details = {**details, **result.details, "cost_usd": self._cost(details, result.status == OK)}
        return result

    def _prompt(self, photo: Photo, details: dict[str, Any]) -> str:
        if self.settings["prompt_mode"] == "fixed":
            return FIXED_PROMPT
        config = self.types.GenerateContentConfig(response_mime_type="application/json", response_schema=ANALYSIS_SCHEMA)
        response = self._call(self.settings["vlm_model"], photo, ANALYSIS_PROMPT, config, details, "text_output_tokens")
        text = response.text or ""
        try:
            analysis = json.loads(text)
            restoration = analysis["restoration_prompt"].strip()
            if not restoration:
                raise ValueError("empty restoration_prompt")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            details["prompt_fallback"] = f"VLM answer did not parse ({type(error).__name__}); used the fixed prompt"
            details["vlm_answer"] = text[:500]
            return FIXED_PROMPT
        details["analysis"] = analysis
        return f"{restoration}\n\n{FIDELITY_RULES}"

    def _image_config(self, details: dict[str, Any]):
        return self.types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=self.types.ImageConfig(aspect_ratio=details["aspect_ratio"], image_size=self.settings["image_size"]),
        )

    def _restore(self, photo: Photo, prompt: str, details: dict[str, Any]) -> Generation:
        config = self._image_config(details)
        for _ in range(1 + int(self.settings["no_image_retries"])):
            response = self._call(self.settings["model"], photo, prompt, config, details, "image_output_tokens")
            result = classify(response, details)
            if result is not None:
                return result  # no image: retried a bounded number of times
        return Generation(NO_IMAGE, reason=f"no image after {details['requests']} requests (finish: {details.get('last_finish_reason')})")

    # --- Batch API: half price, asynchronous ----------------------------------------

    def submit_batch(self, photos: list[Photo]) -> tuple[str, dict[str, dict[str, Any]]]:
        """Submit one job restoring ``photos``; return its name and each photo's details.

        Adaptive prompts are written now, synchronously (cheap text calls), so the job
        holds the final prompts.
        """
        requests, details_by_id = [], {}
        for photo in photos:
            details = self._details(photo)
            details["prompt"] = self._prompt(photo, details)
            details["batch"] = True
            details["cost_usd"] = self._cost(details, produced_image=False)  # the prompt's text calls
            requests.append(
                self.types.InlinedRequest(
                    model=self.settings["model"],
                    contents=[self.types.Part.from_bytes(data=photo.data, mime_type=photo.mime_type), details["prompt"]],
                    config=self._image_config(details),
                    metadata={"id": photo.id},
                )
            )
            details_by_id[photo.id] = details
        self.before_request()
        job = self.client.batches.create(
            model=self.settings["model"], src=requests, config=self.types.CreateBatchJobConfig(display_name="ggtqc")
        )
        return job.name, details_by_id

    def collect_batch(self, job_name: str, submitted: dict[str, dict[str, Any]]) -> str | dict[str, Generation]:
        """The job's state while it runs or after it failed; each photo's result once done.

        Batch requests cost half the interactive price; ``cost_usd`` adds them to the
        prompt's cost recorded at submission.
        """
        self.before_request()
        job = self.client.batches.get(name=job_name)
        state = _name(job.state) or "JOB_STATE_UNSPECIFIED"
        if state != "JOB_STATE_SUCCEEDED":
            return state
        results = {}
        for item in (job.dest.inlined_responses if job.dest else None) or []:
            photo_id = (item.metadata or {}).get("id")
            if item.error is not None:
                results[photo_id] = Generation(FAILED, reason=_scrub(f"batch item error: {item.error.message}"))
                continue
            details = dict(submitted.get(photo_id, {}))
            details["usage"] = dict(details.get("usage") or {"input_tokens": 0, "text_output_tokens": 0, "image_output_tokens": 0})
            before = dict(details["usage"])
            _add_usage(item.response, details, "image_output_tokens")
            result = classify(item.response, details) or Generation(NO_IMAGE, reason=f"no image (finish: {details.get('last_finish_reason')})")
            batch_part = {k: details["usage"][k] - before.get(k, 0) for k in details["usage"]}
            batch_cost = 0.5 * self._cost({"usage": batch_part}, produced_image=result.status == OK)
            details["cost_usd"] = round(details.get("cost_usd", 0.0) + batch_cost, 6)
            result.details = details
            results[photo_id] = result
        return results

    def _call(self, model: str, photo: Photo, prompt: str, config, details: dict[str, Any], output: str):
        details["requests"] += 1
        self.before_request()
        contents = [self.types.Part.from_bytes(data=photo.data, mime_type=photo.mime_type), prompt]
        response = self.client.models.generate_content(model=model, contents=contents, config=config)
        _add_usage(response, details, output)
        return response

    def _cost(self, details: dict[str, Any], produced_image: bool) -> float:
        """Input tokens and the VLM's text at token prices; an output image at its flat price."""
        s, usage = self.settings, details["usage"]
        cost = usage["input_tokens"] * float(s["usd_per_mtok_input"]) / 1e6
        cost += usage["text_output_tokens"] * float(s["usd_per_mtok_text_output"]) / 1e6
        return round(cost + (float(s["usd_per_image"]) if produced_image else 0.0), 6)


def classify(response, details: dict[str, Any]) -> Generation | None:
    """What one image response amounts to; None when it holds no image (worth retrying)."""
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and feedback.block_reason:
        return Generation(BLOCKED, reason=f"prompt blocked: {_name(feedback.block_reason)}")
    candidate = (response.candidates or [None])[0]
    finish = _name(getattr(candidate, "finish_reason", None))
    if finish in SAFETY_FINISH:
        return Generation(BLOCKED, reason=f"output blocked: {finish}")
    parts = (candidate.content.parts or []) if candidate is not None and candidate.content else []
    image = next((p.inline_data for p in parts if p.inline_data and p.inline_data.data), None)
    if image is None:
        details["last_finish_reason"] = finish
        return None
    try:
        decode_bytes(image.data)
    except DecodeError as error:
        return Generation(INVALID_IMAGE, reason=f"returned bytes do not decode: {error}")
    return Generation(OK, image=image.data, mime_type=image.mime_type or "image/png")


def _add_usage(response, details: dict[str, Any], output: str) -> None:
    usage = getattr(response, "usage_metadata", None)
    if usage is not None:
        details["usage"]["input_tokens"] += usage.prompt_token_count or 0
        details["usage"][output] += usage.candidates_token_count or 0


def _name(value: Any) -> str | None:
    if value is None:
        return None
    return getattr(value, "name", None) or str(value)


def _scrub(text: str) -> str:
    """Remove any API key from text that may be shown or stored."""
    for name in KEY_VARIABLES:
        key = os.environ.get(name)
        if key:
            text = text.replace(key, "[key]")
    return text


@hookimpl
def ggtqc_register_generators(register):
    register(Gemini)
