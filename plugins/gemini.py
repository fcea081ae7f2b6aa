"""``gemini``: restore a photo with Nano-Banana-2 through the Gemini API (google-genai).

Per photo, in adaptive mode (the default): a vision-language model (``vlm_model``) looks
at the LQ photo and answers, as JSON under a response schema, which degradations it sees,
what the scene holds, what must not change, and a restoration prompt; the image model
(``model``, ``gemini-3.1-flash-image``) then restores the photo with that prompt and the
fidelity rules below. An answer that does not parse falls back to the fixed prompt, and
the row says so. In fixed mode the fixed prompt is used throughout.

Robustness (the client, retries and accounting are shared, in ``gemini_client``):
- 408, 429, 5xx and network errors are retried with jittered exponential backoff,
  ``attempts`` tries in all; 400/401/403/404 are not; ``timeout_s`` bounds each request;
  ``unreachable_after`` connection failures in a row stop the run;
- a refused prompt or output (``promptFeedback.blockReason``, or a safety finish reason)
  is status ``blocked``; an answer without an image is retried ``no_image_retries`` times,
  then ``no image``; bytes that do not decode are ``invalid image``;
- photos are sent as PNG, JPEG or WebP, at most ``max_input_side`` pixels a side and
  ``max_input_mb`` encoded (the API's inline limit is 20 MB a request; it scales larger
  images down itself), so the runner fits each photo to these first;
- the API key is read by the SDK from the environment (``GEMINI_API_KEY`` or
  ``GOOGLE_API_KEY``, or Vertex AI settings) and never passed, printed or stored.

``base_url`` (or the SDK's ``GOOGLE_GEMINI_BASE_URL``) points the client at a gateway,
a proxy or a compatible server. Costs are estimates from configurable prices: the
published $0.067 per 1K output image (every image returned is counted, even one that is
blocked or does not decode), and per-million-token prices for inputs and text output
(thinking tokens included: they are billed as output); the Batch API bills its requests at
half price.
"""

from __future__ import annotations

import math
from typing import Any

from ggtqc import hookimpl
from ggtqc.generators import (
    BLOCKED,
    FAILED,
    INVALID_IMAGE,
    NO_IMAGE,
    OK,
    REJECTED,
    STOPPED,
    Generation,
    Generator,
    GeneratorError,
    InputLimits,
    Photo,
    Requirement,
)
from ggtqc.images import DecodeError, decode_bytes
from ggtqc.plugins.gemini_client import (
    BATCH_PRICE,
    JOB_ENDED_WITHOUT_SUCCESS,
    Account,
    GeminiClient,
    Prices,
    RequestFailed,
    Stopped,
    key_is_set,
    parse_json_object,
    read_reply,
    safe_url,
    scrub,
)

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


def nearest_aspect_ratio(width: int, height: int) -> str:
    def distance(ratio: str) -> float:
        w, h = (int(v) for v in ratio.split(":"))
        return abs(math.log((w / h) / (width / height)))

    return min(ASPECT_RATIOS, key=distance)



class Gemini(Generator):
    name = "gemini"
    version = "2"
    options = {
        "model": "gemini-3.1-flash-image",
        "vlm_model": "gemini-3-flash",
        "prompt_mode": "adaptive",
        "image_size": "1K",
        "base_url": "",
        "timeout_s": 180.0,
        "attempts": 5,
        "retry_initial_delay_s": 2.0,
        "unreachable_after": 3,
        "no_image_retries": 2,
        "max_input_side": 3072,
        "max_input_mb": 15.0,
        "batch_job_mb": 18.0,
        "usd_per_image": 0.067,
        "usd_per_mtok_input": 0.5,
        "usd_per_mtok_text_output": 3.0,
        "tokens_per_input_image": 1120,
    }

    def requirements(self):
        needs = [
            Requirement(
                "a Gemini API key in the environment",
                key_is_set(),
                "export GEMINI_API_KEY=... (or GOOGLE_API_KEY, or the Vertex AI variables)",
            )
        ]
        if self.settings["prompt_mode"] not in ("adaptive", "fixed"):
            needs.append(Requirement("prompt_mode adaptive or fixed", False, "use --prompt-mode adaptive|fixed"))
        if self.settings["image_size"] not in ("1K", "2K", "4K"):
            needs.append(Requirement("image_size 1K, 2K or 4K", False, "use --image-size 1K|2K|4K"))
        return needs

    def input_limits(self) -> InputLimits:
        return InputLimits(
            max_side=int(self.settings["max_input_side"]),
            max_bytes=int(float(self.settings["max_input_mb"]) * 1e6),
            max_job_bytes=int(float(self.settings["batch_job_mb"]) * 1e6),
        )

    def setup(self) -> None:
        self.client = GeminiClient(
            self.settings,
            before_request=lambda: self.before_request(),
            stopping=self.stopping,
            halt=lambda message: self.halt(message),
            notice=lambda text: self.notice(text),
        )
        self.types = self.client.types
        s = self.settings
        self.prices = Prices(float(s["usd_per_image"]), float(s["usd_per_mtok_input"]), float(s["usd_per_mtok_text_output"]))

    def estimate(self, photo_count: int, batch: bool = False) -> dict[str, Any]:
        s = self.settings
        tokens_in = int(s["tokens_per_input_image"]) * float(s["usd_per_mtok_input"]) / 1e6
        image = (float(s["usd_per_image"]) + tokens_in) * (BATCH_PRICE if batch else 1.0)
        prompt = tokens_in + 300 * float(s["usd_per_mtok_text_output"]) / 1e6 if s["prompt_mode"] == "adaptive" else 0.0
        per_photo = image + prompt  # the VLM sees the photo too, and writes ~300 tokens, interactively
        estimate = {
            "usd": round(per_photo * photo_count, 4),
            "usd_per_photo": round(per_photo, 5),
            "image_size": s["image_size"],
            "pricing": "batch (half price for images; prompts interactive)" if batch else "interactive",
        }
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
        }

    def generate(self, photo: Photo) -> Generation:
        details = self._details(photo)
        account = Account()
        try:
            prompt = self._prompt(photo, details, account)
            details["prompt"] = prompt
            result = self._restore(photo, prompt, details, account)
        except Stopped:
            result = Generation(STOPPED, reason="the run stopped before this photo finished")
        except RequestFailed as error:
            result = Generation(REJECTED if error.code in (400, 401, 403, 404) else FAILED, reason=str(error))
        except Exception as error:  # an answer the SDK could not read: this photo only
            result = Generation(FAILED, reason=scrub(f"{type(error).__name__}: {error}"))
        result.details = {**details, **result.details, **_accounts(account, self.prices)}
        return result

    def _prompt(self, photo: Photo, details: dict[str, Any], account: Account) -> str:
        if self.settings["prompt_mode"] == "fixed":
            return FIXED_PROMPT
        config = self.types.GenerateContentConfig(response_mime_type="application/json", response_schema=ANALYSIS_SCHEMA)
        contents = [self.types.Part.from_bytes(data=photo.data, mime_type=photo.mime_type), ANALYSIS_PROMPT]
        response = self.client.generate_content(self.settings["vlm_model"], contents, config, account, "text", f"{photo.id}: VLM ")
        text = response.text or ""
        analysis, problem = parse_analysis(text)
        if problem:
            details["prompt_fallback"] = f"VLM answer unusable ({problem}); used the fixed prompt"
            details["vlm_answer"] = text[:500]
            self.notice(f"{photo.id}: VLM answer unusable ({problem}); using the fixed prompt")
            return FIXED_PROMPT
        details["analysis"] = analysis
        return f"{analysis['restoration_prompt'].strip()}\n\n{FIDELITY_RULES}"

    def _image_config(self, details: dict[str, Any]):
        return self.types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=self.types.ImageConfig(aspect_ratio=details["aspect_ratio"], image_size=self.settings["image_size"]),
        )

    def _restore(self, photo: Photo, prompt: str, details: dict[str, Any], account: Account) -> Generation:
        config = self._image_config(details)
        contents = [self.types.Part.from_bytes(data=photo.data, mime_type=photo.mime_type), prompt]
        for _ in range(1 + int(self.settings["no_image_retries"])):
            response = self.client.generate_content(self.settings["model"], contents, config, account, "image", f"{photo.id}: ")
            result = classify(response, details, account)
            if result is not None:
                return result  # no image: retried a bounded number of times
        return Generation(NO_IMAGE, reason=f"no image after {account.requests} requests (finish: {details.get('last_finish_reason')})")

    # --- Batch API: half price, asynchronous ----------------------------------------

    def prepare_batch(self, photo: Photo) -> dict[str, Any]:
        """The photo's details with its prompt (adaptive prompts are bought now, interactively)."""
        details = self._details(photo)
        account = Account()
        try:
            details["prompt"] = self._prompt(photo, details, account)
        except Stopped:
            return {}
        except RequestFailed as error:
            details["prompt_fallback"] = f"VLM request failed ({error}); used the fixed prompt"
            details["prompt"] = FIXED_PROMPT
        details["batch"] = True
        return {**details, **_accounts(account, self.prices)}

    def submit_batch(self, photos: list[Photo], prepared: dict[str, dict[str, Any]]) -> tuple[str, dict[str, dict[str, Any]]]:
        """Submit one job restoring ``photos`` with their prepared prompts."""
        requests = [
            (
                [self.types.Part.from_bytes(data=photo.data, mime_type=photo.mime_type), prepared[photo.id]["prompt"]],
                self._image_config(prepared[photo.id]),
                {"id": photo.id},
            )
            for photo in photos
        ]
        try:
            name = self.client.submit_batch_job(self.settings["model"], requests, "ggtqc", "batch job: ")
        except RequestFailed as error:
            if error.code == 404:
                raise GeneratorError(
                    f"{safe_url(self.client.base_url)} has no Batch API for model {self.settings['model']} ({error}); "
                    "run without --batch, or point --base-url at a server with batches"
                ) from None
            raise GeneratorError(f"batch job submission failed: {error}") from None
        return name, {photo.id: prepared[photo.id] for photo in photos}

    def collect_batch(self, job_name: str, submitted: dict[str, dict[str, Any]]) -> str | dict[str, Generation]:
        """The job's state while it runs, or after it failed, was cancelled or expired without
        an answer (the runner fails its photos, so they are sent again); once it finished
        otherwise, each photo's result.

        A job that ended without success but holds some answers is collected: those answers
        are billed, so they are kept, and only the photos it did not answer fail (and go
        again). Batch requests cost half the interactive price; ``cost_usd`` adds them to
        the prompt's cost recorded when it was prepared.
        """
        try:
            job = self.client.read_batch_job(job_name, f"{job_name}: ")
        except RequestFailed as error:
            raise GeneratorError(f"cannot read batch job {job_name}: {error}") from None
        answers = job.answers()
        if not job.finished or job.state in JOB_ENDED_WITHOUT_SUCCESS and not answers:
            return job.state
        results = {}
        for metadata, response, error in answers:
            photo_id = metadata.get("id")
            details = dict(submitted.get(photo_id, {}))
            if error is not None:
                results[photo_id] = Generation(FAILED, reason=error, details=details)
                continue
            account = Account(requests=1)
            account.add(response, "image")
            result = classify(response, details, account) or Generation(NO_IMAGE, reason=f"no image (finish: {details.get('last_finish_reason')})")
            details["requests"] = details.get("requests", 0) + 1
            usage = details.get("usage") or {}
            details["usage"] = {k: usage.get(k, 0) + v for k, v in account.usage().items()}
            details["cost_usd"] = round(details.get("cost_usd", 0.0) + self.prices.cost(account, BATCH_PRICE), 6)
            result.details = details
            results[photo_id] = result
        if job.state in JOB_ENDED_WITHOUT_SUCCESS:
            for photo_id, details in submitted.items():
                results.setdefault(photo_id, Generation(FAILED, reason=f"batch job {job_name} ended {job.state} before answering it", details=dict(details)))
        return results


def parse_analysis(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The VLM's analysis, or None and what is wrong with the answer."""
    analysis, problem = parse_json_object(text)
    if analysis is None:
        return None, problem
    prompt = analysis.get("restoration_prompt")
    if prompt is None:
        return None, f"no 'restoration_prompt' key (keys: {', '.join(sorted(analysis)) or 'none'})"
    if not isinstance(prompt, str) or not prompt.strip():
        return None, "'restoration_prompt' is empty"
    return analysis, None


def classify(response, details: dict[str, Any], account: Account) -> Generation | None:
    """What one image response amounts to; None when it holds no image (worth retrying).

    Every image returned is counted on ``account``: it is billed whether or not it decodes.
    """
    reply = read_reply(response)
    if reply.prompt_blocked:
        return Generation(BLOCKED, reason=f"prompt blocked: {reply.prompt_blocked}")
    image = next((p.inline_data for p in reply.parts if p.inline_data and p.inline_data.data), None)
    if image is not None:
        account.images += 1
    if reply.output_blocked:
        return Generation(BLOCKED, reason=f"output blocked: {reply.finish}")
    if image is None:
        details["last_finish_reason"] = reply.finish
        return None
    try:
        decode_bytes(image.data)
    except DecodeError as error:
        return Generation(INVALID_IMAGE, reason=f"returned bytes do not decode: {error}")
    return Generation(OK, image=image.data, mime_type=image.mime_type or "image/png")


def _accounts(account: Account, prices: Prices) -> dict[str, Any]:
    return {"requests": account.requests, "usage": account.usage(), "images_returned": account.images, "cost_usd": prices.cost(account)}


@hookimpl
def ggtqc_register_generators(register):
    register(Gemini)
