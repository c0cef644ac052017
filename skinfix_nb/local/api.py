"""The HTTP face of the embedded server: Runflow's routes for ``runflow/skin-fix``.

Handlers validate, call :class:`~skinfix_nb.local.backend.Backend`, and answer with the
Run object or with Runflow's error envelope ``{code, message, errors}``. Middlewares,
outermost first: request log, error envelope, bearer auth, injected faults.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aiohttp import web

from skinfix_nb._urls import is_loopback_host
from skinfix_nb.local.backend import MAX_IMAGE_BYTES, MODEL, Backend, now_iso
from skinfix_nb.local.query import (
    Filter,
    QueryError,
    creation_window,
    decode_cursor,
    encode_cursor,
    page,
    parse_fields,
    parse_q,
    parse_sort,
)
from skinfix_nb.local.store import RUN_PRICE_USD, Idempotent, RequestRecord, Upload

__all__ = ["build_app"]

log = logging.getLogger("skinfix_nb.local")

MAX_JSON_BYTES = 1_048_576
MAX_IMAGE_URL_CHARS = 8192  # no documented limit; presigned URLs can pass 2,048 characters
MAX_CALLBACK_URL_CHARS = 2048  # documented for batch callbacks
MAX_METADATA_BYTES = 65_536
UPLOAD_MIME_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/tiff",
)
_BACKEND = web.AppKey("backend", Backend)


@dataclasses.dataclass
class _Note:
    """What a handler tells the request log beyond the status."""

    client_ref: str | None = None
    dropped: bool = False


_NOTE: contextvars.ContextVar[_Note] = contextvars.ContextVar("skinfix_request_note")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Reject(Exception):
    """An error answer, raised anywhere in a handler and rendered by the envelope middleware."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers


def _invalid(errors: list[dict[str, Any]]) -> NoReturn:
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or first["loc"][0]
    raise Reject(422, "VALIDATION_ERROR", f"{where}: {first['msg']}", errors)


def _field_error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def envelope(
    status: int,
    code: str,
    message: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"code": code, "message": message, "errors": errors}
    return web.json_response(body, status=status, headers=headers)


# middlewares ------------------------------------------------------------------------------


@web.middleware
async def record_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every request for tests (method, path, status, idempotency key, client_ref)."""
    response: web.StreamResponse | None = None
    note = _Note()
    _NOTE.set(note)  # the handler runs in this task's context and fills the note in
    try:
        response = await handler(request)
        response.headers.setdefault("Runflow-Request-Id", uuid.uuid4().hex)
        return response
    finally:
        status = 0 if note.dropped or response is None else response.status
        request.app[_BACKEND].store.log_request(
            RequestRecord(
                method=request.method,
                path=request.path,
                status=status,
                idempotency_key=request.headers.get("Idempotency-Key"),
                client_ref=note.client_ref,
                at=time.time(),
            )
        )


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves in Runflow's ``{code, message, errors}`` envelope; bugs become 500."""
    try:
        return await handler(request)
    except Reject as reject:
        return envelope(reject.status, reject.code, reject.message, reject.errors, reject.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "NOT_FOUND",
            405: "METHOD_NOT_ALLOWED",
            413: "PAYLOAD_TOO_LARGE",
        }.get(exc.status, "BAD_REQUEST")
        message = {
            404: f"no route {request.path[:200]}; see the Runflow API reference for the endpoints",
            405: f"{request.method} is not allowed on {request.path[:200]}",
            413: f"the request body is too large (limit {MAX_JSON_BYTES} bytes)",
        }.get(exc.status, exc.reason)
        return envelope(exc.status, code, message)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return envelope(500, "INTERNAL_ERROR", "the local server hit an unexpected error")


def _is_api(path: str) -> bool:
    return path.startswith("/v1/") and path != "/v1/health"


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_api(request.path):
        backend = request.app[_BACKEND]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        accepted = bool(token) and scheme.lower() == "bearer"
        if accepted and backend.api_key is not None:
            accepted = _same(token, backend.api_key)
        if not accepted:
            raise Reject(
                401,
                "UNAUTHORIZED",
                "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
    return await handler(request)


def _same(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


@web.middleware
async def injected_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """429 and 5xx on purpose, before the request does anything."""
    backend = request.app[_BACKEND]
    faults = backend.faults
    if _is_api(request.path) or (faults.faults_on_files and not request.path.startswith("/v1/")):
        if backend.dice.hits(faults.rate_limit_rate):
            headers = None
            if faults.retry_after is not None and backend.dice.hits(faults.retry_after_fraction):
                headers = {"Retry-After": f"{faults.retry_after:g}"}
            raise Reject(
                429,
                "RATE_LIMITED",
                "Rate limit exceeded: simulated by the local server (rate_limit_rate)",
                headers=headers,
            )
        if backend.dice.hits(faults.error_rate):
            raise Reject(500, "INTERNAL_ERROR", "simulated server error (error_rate)")
    return await handler(request)


# request bodies ---------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: web.Request, *, required: bool = True) -> Any:
    """The parsed JSON body; 400 for anything that is not JSON, 413 when too large."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise Reject(413, "PAYLOAD_TOO_LARGE", f"the JSON body is over {MAX_JSON_BYTES} bytes")
    raw = await request.read()
    if not raw.strip():
        if required:
            raise Reject(400, "INVALID_JSON", "the body is empty; send a JSON object")
        return {}
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        detail = str(exc)[:120] if isinstance(exc, ValueError) else "nested too deeply"
        raise Reject(400, "INVALID_JSON", f"the body is not valid JSON: {detail}") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        _invalid([_field_error(["body"], "expected a JSON object", "object_type")])
    return body


def _optional_string(
    body: dict[str, Any], name: str, errors: list[dict[str, Any]], *, min_len: int, max_len: int
) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(_field_error(["body", name], "expected a string or null", "string_type"))
    elif not min_len <= len(value) <= max_len:
        errors.append(
            _field_error(
                ["body", name],
                f"must be {min_len} to {max_len} characters, got {len(value)}",
                "string_length",
            )
        )
    else:
        return value
    return None


def _url_problem(url: str, *, strict_https: bool, field: str) -> str | None:
    """Why ``url`` is not acceptable as a media or callback URL, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme or "no scheme"
        return f"media URL must use HTTP(S), got {shown!r}"
    if not host:
        return "is not an absolute URL (no host)"
    if parts.scheme == "http" and field == "image_url":
        if strict_https:
            return "media URL must use HTTPS, got 'http'"
        if not is_loopback_host(host):
            return (
                "media URL must use HTTPS (plain http is accepted only for 127.0.0.1/localhost); "
                "upload the file first with POST /v1/asset-uploads"
            )
    return None


def _validate_create(body: dict[str, Any], *, strict_https: bool) -> dict[str, Any]:
    errors: list[dict[str, Any]] = []
    image_url = None
    inputs = body.get("input")
    if "input" not in body:
        errors.append(_field_error(["body", "input"], "field required", "missing"))
    elif not isinstance(inputs, dict):
        errors.append(
            _field_error(["body", "input"], "expected an object with image_url", "object_type")
        )
    else:
        for extra in sorted(set(inputs) - {"image_url"})[:5]:
            errors.append(
                _field_error(
                    ["body", "input", extra[:100]],
                    "runflow/skin-fix takes only image_url",
                    "extra_forbidden",
                )
            )
        value = inputs.get("image_url")
        loc: list[str | int] = ["body", "input", "image_url"]
        if "image_url" not in inputs:
            errors.append(_field_error(loc, "field required", "missing"))
        elif not isinstance(value, str):
            errors.append(_field_error(loc, "expected a string (an HTTPS URL)", "string_type"))
        elif not 1 <= len(value) <= MAX_IMAGE_URL_CHARS:
            errors.append(
                _field_error(loc, f"must be 1 to {MAX_IMAGE_URL_CHARS} characters", "string_length")
            )
        elif problem := _url_problem(value, strict_https=strict_https, field="image_url"):
            errors.append(_field_error(loc, problem, "url_scheme"))
        else:
            image_url = value
    callback_url = _optional_string(
        body, "callback_url", errors, min_len=1, max_len=MAX_CALLBACK_URL_CHARS
    )
    if callback_url is not None and (
        problem := _url_problem(callback_url, strict_https=False, field="callback_url")
    ):
        errors.append(_field_error(["body", "callback_url"], problem, "url_scheme"))
    client_ref = _optional_string(body, "client_ref", errors, min_len=1, max_len=255)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors.append(
                _field_error(["body", "metadata"], "expected an object or null", "dict_type")
            )
        elif len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            errors.append(
                _field_error(
                    ["body", "metadata"],
                    f"is over {MAX_METADATA_BYTES} bytes as JSON",
                    "too_long",
                )
            )
    if errors:
        _invalid(errors)
    return {
        "image_url": image_url,
        "callback_url": callback_url,
        "metadata": metadata,
        "client_ref": client_ref,
    }


# handlers ---------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def create_run(request: web.Request) -> web.StreamResponse:
    model = request.match_info["model"]
    segments = model.split("/")
    if len(segments) == 1:
        raise Reject(
            405,
            "METHOD_NOT_ALLOWED",
            f"{model!r} is a bare model slug; use owner/slug, e.g. {MODEL}",
        )
    if model != MODEL:
        raise Reject(
            404,
            "MODEL_NOT_FOUND",
            f"model {model[:100]!r} is not served here; the local server runs only {MODEL}",
        )
    backend = request.app[_BACKEND]
    body = await _json_body(request)
    if isinstance(body, dict) and isinstance(body.get("client_ref"), str):
        _NOTE.get().client_ref = body["client_ref"][:255]
    fields = _validate_create(_object(body), strict_https=backend.faults.strict_https)
    key = request.headers.get("Idempotency-Key")
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    if key is not None:
        if not 1 <= len(key) <= 255:
            _invalid(
                [_field_error(["header", "Idempotency-Key"], "must be 1 to 255 characters", "len")]
            )
        earlier = backend.store.idempotent_answer(key)
        if earlier is not None:
            if earlier.fingerprint != fingerprint:
                raise Reject(
                    409,
                    "CONFLICT",
                    "this Idempotency-Key was already used with a different request body; "
                    "use a new key for a new request",
                )
            return web.Response(
                body=earlier.body, status=earlier.status, content_type="application/json"
            )
    if not backend.store.reserve_credit(RUN_PRICE_USD):
        raise Reject(
            402,
            "INSUFFICIENT_CREDIT",
            f"insufficient credit for a ${RUN_PRICE_USD} run; top up (local server: "
            "raise credit= or credit_runs= with set_faults)",
        )
    run = backend.create_run(**fields)
    payload = json.dumps(run).encode()
    if key is not None:
        backend.store.remember_answer(key, Idempotent(fingerprint, 201, payload))
    if backend.dice.hits(backend.faults.drop_after_post_rate):
        _NOTE.get().dropped = True
        if request.transport is not None:
            request.transport.close()
    return web.Response(body=payload, status=201, content_type="application/json")


def _run_or_404(backend: Backend, run_id: str) -> dict[str, Any]:
    run = backend.store.get_run(run_id)
    if run is None:
        raise Reject(404, "RUN_NOT_FOUND", f"no run {run_id[:80]!r}")
    return run


async def get_run(request: web.Request) -> web.Response:
    return web.json_response(_run_or_404(request.app[_BACKEND], request.match_info["run_id"]))


async def list_runs(request: web.Request) -> web.Response:
    backend = request.app[_BACKEND]
    params = request.query
    try:
        filters = parse_q(params.get("q", ""))
        sort = parse_sort(params.get("sort_by", "created_at:desc"))
        fields = parse_fields(params["fields"]) if "fields" in params else None
        cursor = decode_cursor(params["pq"]) if params.get("pq") else None
        limit = _limit(params.get("limit", "50"))
        if [field for field, _ in sort] == ["created_at"]:
            items, next_cursor = _page_by_creation(
                backend, filters, newest_first=sort[0][1], limit=limit, after=cursor
            )
        else:
            runs = [run for run in backend.store.all_runs() if all(f.matches(run) for f in filters)]
            try:
                items, next_cursor = page(runs, sort=sort, limit=limit, after=cursor)
            except TypeError:
                raise QueryError(
                    "pq", "the cursor does not fit this sort order; start again"
                ) from None
    except QueryError as exc:
        _invalid([_field_error(["query", exc.param], str(exc), "value_error")])
    if fields is not None:
        items = [{name: run.get(name) for name in fields} for run in items]
    return web.json_response({"items": items, "next": next_cursor})


def _page_by_creation(
    backend: Backend,
    filters: list[Filter],
    *,
    newest_first: bool,
    limit: int,
    after: list[Any] | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A ``created_at`` page straight from the store's creation order and indexes.

    Same items and cursors as :func:`~skinfix_nb.local.query.page` with that sort (its
    cursor is ``[created_at, id]``), without copying or sorting every stored run.
    """
    if after is not None and (len(after) != 2 or not all(isinstance(v, str) for v in after)):
        raise QueryError("pq", "the cursor belongs to another sort order; start again")
    narrow: dict[str, Any] = {}
    for term in filters:
        if term.field == "client_ref" and term.op == "=":
            narrow["client_ref"] = term.values[0]
        elif term.field == "status_code" and term.op == "=":
            narrow["status"] = term.values[0]
        elif term.field == "id" and term.op in ("=", "in"):
            narrow["ids"] = term.values
    created_from, created_to = creation_window(filters)
    found = backend.store.runs_in_creation_order(
        keep=lambda run: all(term.matches(run) for term in filters),
        newest_first=newest_first,
        after=(after[0], after[1]) if after is not None else None,
        limit=limit + 1,
        created_from=created_from,
        created_to=created_to,
        **narrow,
    )
    items = found[:limit]
    more = len(found) > limit
    return items, encode_cursor([items[-1]["created_at"], items[-1]["id"]]) if more else None


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 500:
        raise QueryError("limit", f"limit must be an integer from 1 to 500, got {text[:40]!r}")
    return limit


async def cancel_run(request: web.Request) -> web.Response:
    backend = request.app[_BACKEND]
    body = _object(await _json_body(request, required=False))
    errors: list[dict[str, Any]] = []
    _optional_string(body, "reason", errors, min_len=3, max_len=500)
    if errors:
        _invalid(errors)
    run_id = request.match_info["run_id"]
    _run_or_404(backend, run_id)
    run, changed = backend.cancel_run(run_id)
    return web.json_response(run, status=201 if changed else 200)


async def create_upload(request: web.Request) -> web.Response:
    backend = request.app[_BACKEND]
    body = _object(await _json_body(request))
    errors: list[dict[str, Any]] = []
    filename = _optional_string(body, "filename", errors, min_len=1, max_len=500)
    mime_type = _optional_string(body, "mime_type", errors, min_len=1, max_len=255)
    size = body.get("size_bytes")
    for name, value in (("filename", filename), ("mime_type", mime_type)):
        if name not in body or body[name] is None:
            errors.append(_field_error(["body", name], "field required", "missing"))
        elif value is not None and name == "mime_type" and value not in UPLOAD_MIME_TYPES:
            errors.append(
                _field_error(
                    ["body", "mime_type"],
                    f"unsupported type {value[:60]!r}; supported: {', '.join(UPLOAD_MIME_TYPES)}",
                    "mime_type",
                )
            )
    if isinstance(size, bool) or not isinstance(size, int):
        errors.append(_field_error(["body", "size_bytes"], "expected an integer", "int_type"))
    elif not 1 <= size <= MAX_IMAGE_BYTES:
        errors.append(
            _field_error(
                ["body", "size_bytes"],
                f"must be 1 to {MAX_IMAGE_BYTES} bytes (50 MiB); host larger files elsewhere",
                "size",
            )
        )
    if errors:
        _invalid(errors)
    assert filename is not None
    assert mime_type is not None
    assert isinstance(size, int)
    upload_id = str(uuid.uuid4())
    backend.store.add_upload(upload_id, Upload(upload_id, filename, mime_type, size))
    return web.json_response(
        {"asset_id": upload_id, "upload_url": backend.upload_url(upload_id)}, status=201
    )


async def put_upload(request: web.Request) -> web.Response:
    """The presigned PUT: no bearer token, the signature in the URL is the credential."""
    backend = request.app[_BACKEND]
    upload_id = request.match_info["upload_id"]
    upload = backend.store.get_upload(upload_id)
    if upload is None or not backend.signature_ok(
        "upload", upload_id, request.query.get("sig", "")
    ):
        raise Reject(
            403,
            "SIGNATURE_MISMATCH",
            "the upload URL is invalid or expired; start again with POST /v1/asset-uploads",
        )
    if upload.confirmed:
        raise Reject(409, "CONFLICT", "this upload was already confirmed; start a new one")
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != upload.mime_type:
        raise Reject(
            422,
            "VALIDATION_ERROR",
            f"Content-Type {content_type[:60] or '(none)'!r} does not match the declared "
            f"mime_type {upload.mime_type!r}",
        )
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise Reject(422, "VALIDATION_ERROR", "the upload is over the 50 MiB limit")
        chunks.append(chunk)
    upload.data = b"".join(chunks)
    etag = hashlib.md5(upload.data, usedforsecurity=False).hexdigest()
    return web.Response(status=200, headers={"ETag": f'"{etag}"'})


async def confirm_upload(request: web.Request) -> web.Response:
    from skinfix_nb.images import mime_type_for

    backend = request.app[_BACKEND]
    body = _object(await _json_body(request, required=False))
    folder_id = body.get("folder_id")
    if folder_id is not None and not _is_uuid(folder_id):
        _invalid([_field_error(["body", "folder_id"], "expected a UUID or null", "uuid_type")])
    upload_id = request.match_info["upload_id"]
    upload = backend.store.get_upload(upload_id)
    if upload is None:
        raise Reject(404, "ASSET_UPLOAD_NOT_FOUND", f"no asset upload {upload_id[:80]!r}")
    if upload.confirmed:
        asset = backend.store.get_asset(upload.asset_id)
        assert asset is not None
        return web.json_response(asset)
    if upload.data is None:
        raise Reject(
            422, "VALIDATION_ERROR", "nothing was uploaded yet: PUT the file to upload_url first"
        )
    sniffed = mime_type_for(upload.data)
    if sniffed != upload.mime_type:
        raise Reject(
            422,
            "VALIDATION_ERROR",
            f"the uploaded bytes are {sniffed}, not the declared {upload.mime_type}",
        )
    upload.confirmed = True
    now = now_iso()
    url = backend.host_blob(upload.data, upload.mime_type, upload.filename)
    asset = {
        "id": upload.asset_id,
        "org_id": None,
        "folder_id": folder_id,
        "name": upload.filename,
        "r2_key": f"assets/{upload.asset_id}",
        "url": url,
        "thumbnail_url": None,
        "mime_type": upload.mime_type,
        "size_bytes": len(upload.data),
        "asset_type": "image",
        "source_type": "upload",
        "source_id": None,
        "created_by": None,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
        "deleted_by": None,
        "created_by_user": None,
    }
    backend.store.add_asset(asset)
    return web.json_response(asset, status=201)


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def get_asset(request: web.Request) -> web.Response:
    asset = request.app[_BACKEND].store.get_asset(request.match_info["asset_id"])
    if asset is None:
        raise Reject(404, "ASSET_NOT_FOUND", f"no asset {request.match_info['asset_id'][:80]!r}")
    return web.json_response(asset)


async def create_callback_secret(request: web.Request) -> web.Response:
    backend = request.app[_BACKEND]
    body = _object(await _json_body(request, required=False))
    errors: list[dict[str, Any]] = []
    label = _optional_string(body, "label", errors, min_len=0, max_len=255)
    if errors:
        _invalid(errors)
    plain = "whsec_" + secrets.token_urlsafe(32)
    now = now_iso()
    record = {
        "id": str(uuid.uuid4()),
        "org_id": None,
        "key_prefix": plain[:10],
        "is_current": True,
        "label": label,
        "disabled_at": None,
        "last_used_at": None,
        "created_at": now,
        "updated_at": now,
    }
    backend.store.add_secret(dict(record), plain)
    return web.json_response({**record, "plain_secret": plain}, status=201)


async def get_file(request: web.Request) -> web.Response:
    backend = request.app[_BACKEND]
    blob_id = request.match_info["blob_id"]
    if not backend.signature_ok("file", blob_id, request.query.get("sig", "")):
        raise Reject(403, "SIGNATURE_MISMATCH", "the file URL is invalid or expired")
    blob = backend.store.get_blob(blob_id)
    if blob is None:
        raise Reject(404, "NOT_FOUND", "no such file")
    return web.Response(body=blob.data, content_type=blob.mime_type)


def build_app(backend: Backend) -> web.Application:
    """The aiohttp application of one embedded server."""
    app = web.Application(
        middlewares=[record_requests, error_envelope, bearer_auth, injected_faults],
        client_max_size=MAX_JSON_BYTES,
    )
    app[_BACKEND] = backend
    routes = app.router
    routes.add_get("/v1/health", health)
    routes.add_post("/v1/models/{model:.+}/runs", create_run)
    routes.add_get("/v1/runs", list_runs)
    routes.add_get("/v1/runs/{run_id}", get_run)
    routes.add_post("/v1/admin/runs/{run_id}/cancellation", cancel_run)
    routes.add_post("/v1/asset-uploads", create_upload)
    routes.add_post("/v1/asset-uploads/{upload_id}/confirmations", confirm_upload)
    routes.add_get("/v1/assets/{asset_id}", get_asset)
    routes.add_post("/v1/callback-secrets", create_callback_secret)
    routes.add_put("/uploads/{upload_id}", put_upload)
    routes.add_get("/files/{blob_id}/{name}", get_file)
    return app
