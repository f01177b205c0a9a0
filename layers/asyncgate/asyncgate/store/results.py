"""The results bucket: provider outputs copied into asyncgate's own S3 bucket, read by presigned URLs.

A copy streams the source into the bucket without holding it whole: an `https` URL (or `http` on
loopback in the local stack) fetched with the same guard as webhook deliveries (every address the host
resolves to must be public, and the connection goes to the address checked), redirects followed a few
hops and each hop checked again, or a `data:` URL decoded. It stops past `max_bytes`, early when the
answer's Content-Length says so. The object's key is `results/{tenant}/{executionId}/{index}-{hash}{ext}`
(the hash of the source URL keeps two outputs that trade places apart; a repeated copy of one output
writes the same object again).

`copy` never raises for what the source or S3 does: it returns the output with `stored_key` set, or
with `copy_error` saying why not (`copy_refused` when trying again cannot help).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import mimetypes
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import urllib3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from asyncgate.delivery.transport import open_checked, url_host
from asyncgate.domain.execution import OutputRef
from asyncgate.domain.webhook_url import InvalidWebhookUrl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A source that does not connect within 3 s, or stalls 15 s between two reads, is retried later.
SOURCE_TIMEOUT = urllib3.Timeout(connect=3.05, read=15.0)
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# A copy with no deadline of its caller's gets this long.
DEFAULT_COPY_SECONDS = 60.0
MAX_ERROR_TEXT = 200
# A copy stopped by its tick's time budget: worth another tick of its own (unlike a refusal).
OUT_OF_TIME = "the copy ran out of time"
# The most read from a source at once, between two looks at the deadline.
READ_STEP = 256 * 1024
FALLBACK_CONTENT_TYPE = "application/octet-stream"
# type/subtype, optional parameters; nothing S3 or a browser could misread.
_CONTENT_TYPE = re.compile(
    r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*"  # type/subtype
    r"(\s*;\s*[\w.+-]+=(\"[^\"\\]*\"|[\w.+-]+))*"  # ; name=value ...
)
# Python's own table, not the host's /etc/mime.types: the same extension everywhere.
_MIME = mimetypes.MimeTypes()
# Parts of 8 MiB, a few at a time: a 512 MiB output is 64 parts and never more than ~80 MiB in memory.
_TRANSFER = TransferConfig(
    multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=4
)
_QUERY = re.compile(r"\?[^\s'\"]*")


class Results(Protocol):
    """What the lifecycle and the API need of the results bucket."""

    def copy(
        self, execution_id: str, tenant: str, index: int, output: OutputRef, *, deadline: float | None = None
    ) -> OutputRef:
        """The output copied into the bucket (`stored_key` set) or why not (`copy_error`)."""
        ...

    def url_for(self, output: OutputRef) -> str | None:
        """A fresh presigned URL of a copied output; None for one not in the bucket."""
        ...


class NoResults:
    """No results bucket configured: outputs stay at the provider, and are read from there."""

    def copy(
        self, execution_id: str, tenant: str, index: int, output: OutputRef, *, deadline: float | None = None
    ) -> OutputRef:
        return output

    def url_for(self, output: OutputRef) -> str | None:
        return None


class _Refused(Exception):
    """The copy can never succeed (too large, a source asyncgate must not fetch): not tried again."""


class _Failed(Exception):
    """The copy failed this time (the source answered an error, a timeout): tried again."""


class _BoundedReader:
    """A file-like view of a source that counts what passes, and stops past the limit or the deadline."""

    def __init__(self, read: Callable[[int], bytes], limit: int, deadline: float) -> None:
        self._read = read
        self._limit = limit
        self._deadline = deadline
        self.count = 0
        self.failure: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes, fewer only at the end: the uploader takes a short read for the last part.
        The source is read a little at a time (`read` may answer short, as `read1` does), so a source
        that trickles is stopped at the deadline, not after the whole part it was asked for."""
        wanted = size if size and size > 0 else 1024 * 1024
        parts: list[bytes] = []
        got = 0
        while got < wanted:
            if self.failure is not None:
                raise self.failure
            data = self._read(min(wanted - got, READ_STEP))
            if not data:
                break
            parts.append(data)
            got += len(data)
            self.count += len(data)
            if self.count > self._limit:
                self.failure = _Refused(f"the output is larger than {self._limit} bytes")
            elif time.monotonic() > self._deadline:
                self.failure = _Failed(OUT_OF_TIME)
        if self.failure is not None:
            raise self.failure
        return b"".join(parts)


def redacted(url: str) -> str:
    """A URL fit for logs and errors: no query string or fragment (it may hold a token), and a
    `data:` URL's media type only."""
    if url[:5].lower() == "data:":
        return url.partition(",")[0][:100] + ",..."
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:300]


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if not isinstance(error, _Failed | _Refused) else str(error)
    return _QUERY.sub("?...", text)[:MAX_ERROR_TEXT]


def _valid_content_type(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if len(value) <= 255 and _CONTENT_TYPE.fullmatch(value) else None


def _extension(content_type: str) -> str:
    base = content_type.partition(";")[0].strip().lower()
    if base == FALLBACK_CONTENT_TYPE:
        return ""
    return _MIME.guess_extension(base) or ""


def _identity(url: str) -> str:
    return url if url[:5].lower() == "data:" else redacted(url)


def object_key(tenant: str, execution_id: str, index: int, url: str, content_type: str) -> str:
    digest = hashlib.sha256(_identity(url).encode()).hexdigest()[:12]
    return f"results/{tenant}/{execution_id}/{index}-{digest}{_extension(content_type)}"


def _data_url(url: str, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes and media type of a `data:` URL (RFC 2397)."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise _Refused("a malformed data: URL (no comma)")
    params = [part.strip() for part in header.split(";")]
    is_base64 = params[-1].lower() == "base64"
    if is_base64:
        params = params[:-1]
    media_type = ";".join(part for part in params if part) or None
    if (len(payload) * 3 // 4 if is_base64 else len(payload) // 3) > max_bytes:
        raise _Refused(f"the output is larger than {max_bytes} bytes")
    raw = unquote_to_bytes(payload)
    try:
        data = base64.b64decode(raw, validate=False) if is_base64 else raw
    except (binascii.Error, ValueError):
        raise _Refused("a data: URL that is not valid base64") from None
    return data, media_type


class ResultStore:
    """The results bucket in S3 (see the module's docstring)."""

    def __init__(
        self, s3: S3Client, bucket: str, *, max_bytes: int, url_seconds: int, allow_loopback: bool = False
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.max_bytes = max_bytes
        self.url_seconds = url_seconds
        # The local stack's simulated provider serves its outputs on http://127.0.0.1.
        self.allow_loopback = allow_loopback

    def url_for(self, output: OutputRef) -> str | None:
        if output.stored_key is None:
            return None
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": output.stored_key}
        if output.content_type:
            params["ResponseContentType"] = output.content_type
        return self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=self.url_seconds)

    def copy(
        self, execution_id: str, tenant: str, index: int, output: OutputRef, *, deadline: float | None = None
    ) -> OutputRef:
        deadline = time.monotonic() + DEFAULT_COPY_SECONDS if deadline is None else deadline
        try:
            key, size, content_type = self._copy(execution_id, tenant, index, output, deadline)
        except _Refused as error:
            return output.model_copy(update={"copy_error": _error_text(error), "copy_refused": True})
        except (
            _Failed,
            urllib3.exceptions.HTTPError,
            OSError,
            BotoCoreError,
            ClientError,
            S3UploadFailedError,
        ) as error:
            return output.model_copy(update={"copy_error": _error_text(error), "copy_refused": False})
        return output.model_copy(
            update={
                "stored_key": key,
                "size": size,
                "content_type": content_type,
                "copy_error": None,
                "copy_refused": False,
            }
        )

    def _copy(
        self, execution_id: str, tenant: str, index: int, output: OutputRef, deadline: float
    ) -> tuple[str, int, str]:
        if output.url[:5].lower() == "data:":
            data, media_type = _data_url(output.url, self.max_bytes)
            content_type = (
                _valid_content_type(output.content_type) or _valid_content_type(media_type) or "text/plain"
            )
            return self._upload(
                io.BytesIO(data).read, output, execution_id, tenant, index, content_type, deadline
            )
        response, pool = self._fetch(output.url)
        try:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                raise _Refused(f"the output is larger than {self.max_bytes} bytes ({length})")
            content_type = (
                _valid_content_type(output.content_type)
                or _valid_content_type(response.headers.get("Content-Type"))
                or _valid_content_type(_MIME.guess_type(urlsplit(output.url).path)[0])
                or FALLBACK_CONTENT_TYPE
            )
            # read1: whatever one receive brings (at most SOURCE_TIMEOUT's read wait), never a wait for more.
            return self._upload(response.read1, output, execution_id, tenant, index, content_type, deadline)
        finally:
            response.release_conn()
            pool.close()

    def _upload(
        self,
        read: Callable[[int], bytes],
        output: OutputRef,
        execution_id: str,
        tenant: str,
        index: int,
        content_type: str,
        deadline: float,
    ) -> tuple[str, int, str]:
        key = object_key(tenant, execution_id, index, output.url, content_type)
        reader = _BoundedReader(read, self.max_bytes, deadline)
        try:
            # Any object with read() streams (the stubs ask for IO): parts are read as they are sent.
            self._s3.upload_fileobj(
                cast("Any", reader),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=_TRANSFER,
            )
        except Exception:
            # The transfer may wrap what the reader raised: the reader's own reason wins.
            if reader.failure is not None:
                raise reader.failure from None
            raise
        return key, reader.count, content_type

    def _fetch(self, url: str) -> tuple[urllib3.BaseHTTPResponse, urllib3.HTTPConnectionPool]:
        """The source's 200 answer, its body not yet read, and its connection pool (the caller closes
        it); redirects followed, each hop checked like the first."""
        for _ in range(MAX_REDIRECTS + 1):
            response, pool = self._get(url)
            status, location = response.status, response.headers.get("Location")
            if status == 200:
                return response, pool
            response.release_conn()
            pool.close()
            if status in REDIRECTS and location:
                url = urljoin(url, location)
                continue
            raise _Failed(f"the source answered HTTP {status}")
        raise _Failed(f"more than {MAX_REDIRECTS} redirects")

    def _get(self, url: str) -> tuple[urllib3.BaseHTTPResponse, urllib3.HTTPConnectionPool]:
        try:
            pool, target, host_header = open_checked(
                url, allow_loopback=self.allow_loopback, timeout=SOURCE_TIMEOUT
            )
        except InvalidWebhookUrl as error:  # the URL, or where its host resolves
            raise _Refused(f"the source is not a public https URL: {error}") from None
        except OSError as error:
            raise _Failed(f"cannot resolve {url_host(url)}: {error.strerror or error}") from None
        headers = {
            "Host": host_header,
            "User-Agent": "asyncgate-results/1",
            "Accept-Encoding": "identity",
        }
        try:
            response = pool.urlopen(
                "GET", target, headers=headers, redirect=False, retries=False, preload_content=False
            )
        except BaseException:
            pool.close()
            raise
        return response, pool
