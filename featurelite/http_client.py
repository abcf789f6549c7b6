"""The remote client: :func:`connect` gives a :class:`RemoteStore`, the Store API over the
HTTP API of a running ``featurelite serve`` (:mod:`featurelite.server`, under ``/v1/``).

    >>> import featurelite as fl
    >>> store = fl.connect("http://127.0.0.1:6566", token="s3cret")  # doctest: +SKIP
    >>> store.get_online_features([{"user_id": 42}], ["user_stats:spend_7d"]).to_dict()  # doctest: +SKIP

What travels how:

- online reads are one JSON request each; the answer carries the columns' Arrow schema, so
  values come back as the Store gives them (times as datetimes, NaN and infinities as
  floats) and ``to_arrow()`` types them as declared. JSON has one NaN: a NaN's sign and
  payload bits are not carried, in a value served or in request data a featurizer computes
  from (every other bit is, -0.0 included);
- training sets are Arrow IPC streams both ways, in record batches of
  :data:`~featurelite.server_openapi.STREAM_ROWS` rows: the entity rows up (the request's
  parameters in the stream's schema metadata), the training set down, its manifest in its
  schema metadata as in process;
- a push is one Arrow IPC stream and one atomic ingest on the server, never split;
- a snapshot is the file itself, downloaded.

Every server-side error comes back as the featurelite error the server raised (same class,
message and details); HTTP-level refusals (a wrong token, a body over the limit) and
transport failures (nothing listens at the URL, a timeout) are :class:`StoreError` or
:class:`InputError` naming the URL, never an httpx exception.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from . import arguments, errors, wire
from .definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView
from .errors import FeatureliteError, InputError, ManifestError, SourceError, StoreClosedError, StoreError
from .lineage import Lineage, ModelRecord
from .manifest import Manifest
from .reports import ConsistencyReport, FreshnessReport
from .results import IngestResult, OnlineResponse, VerifyResult
from .search import SearchHit
from .server_openapi import (
    API_VERSION,
    ARROW_STREAM,
    ENTITY_COLUMNS_METADATA,
    REQUEST_METADATA,
    STREAM_ROWS,
    arrow_chunks,
)
from .sources import DataSource, to_reader, to_table
from .statistics import ViewStats
from .store import INGEST_BATCH_ROWS

__all__ = ["RemoteMismatch", "RemoteStore", "connect"]

#: Where the CLI (and the error messages) say a token comes from.
TOKEN_ENV = "FEATURELITE_TOKEN"

_JSON_HEADERS = {"content-type": "application/json"}
_ARROW_HEADERS = {"content-type": ARROW_STREAM}
#: Non-finite floats as the server spells them (strict JSON has no such numbers).
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_CSV_SUFFIXES = (".csv", ".tsv", ".txt")


def connect(url: str, *, token: str | None = None, timeout: float = 30.0) -> RemoteStore:
    """The store a ``featurelite serve`` at ``url`` serves, with the Store API.

    ``token``: the server's bearer token, if it has one. ``timeout``: seconds to connect
    and to wait for each answer of a quick call (an online read, a push, a listing); a
    training set, a snapshot, ``verify`` and ``consistency`` wait as long as they take.

    Connecting asks the server's ``/v1/health`` (no token needed), so a URL where no
    featurelite server answers fails here, as a StoreError naming it; a wrong token is
    refused by the first call that needs it. Close the RemoteStore (or use it as a context
    manager) to release its connections."""
    return RemoteStore(url, token=token, timeout=timeout)


@dataclass(frozen=True)
class RemoteMismatch:
    """A featurizer mismatch reported by a server's ``verify``: its text (``str()``, as the
    in-process :class:`featurelite.verification.Mismatch` shows it) and its parts as JSON
    gives them (times as ISO-8601 text, NaN as ``"NaN"``)."""

    text: str
    featurizer: str | None
    inputs: Mapping[str, Any] | None
    batch: Any
    request: Any
    moved: Any

    def __str__(self) -> str:
        return self.text


class RemoteStore:
    """A store served by ``featurelite serve``, used over HTTP with the Store API. Get one
    with :func:`connect`; close it (or use it as a context manager) when done. Methods are
    safe to call from several threads (one connection pool is shared).

    Mirrors the Store methods that make sense at a distance: ``get_online_features``,
    ``get_historical_features``, ``ingest`` (a push), ``list_*`` / ``get_*``, ``describe``,
    ``list_versions``, ``verify``, ``freshness``, ``consistency``, ``snapshot`` and
    ``store_id``, with the same arguments and results. Absent on purpose:

    - ``apply``: definitions carry Python featurizers; applying them remotely would have
      the server compile and run code it was sent. Stop the server, apply, start it again;
    - ``delete_feature_view`` / ``delete_feature_service`` and ``materialize``: they
      destroy or rebuild stored data, which is for whoever holds the file, not for any
      client that holds a token;
    - ``checkpoint``: the server folds its write-ahead log itself (and ``snapshot``
      gives a complete copy of the file);
    - ``con``: there is no DuckDB connection over HTTP; ``snapshot(path)`` and open the
      copy to query it.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = _checked_url(url)
        if token is not None and (not isinstance(token, str) or not token.strip()
                                  or not all(" " < ch < "\x7f" for ch in token)):
            raise InputError("token must be the server's bearer token: printable ASCII without spaces "
                             "(or None for a server without auth)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InputError(f"timeout must be a positive number of seconds, not {arguments.shown(timeout)}")
        self.timeout = float(timeout)
        base = f"{self.url}/{API_VERSION}"
        self._base = base
        self._read_url = f"{base}/get-online-features"
        headers = {"user-agent": "featurelite-client", "accept-encoding": "identity"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(headers=headers, timeout=self.timeout)
        self._closed = False
        #: Arrow schemas of reads (the answer's base64 text) -> (types, decoders).
        self._schemas: dict[str, tuple[dict[str, pa.DataType], list[tuple[str, Callable[[list[Any]], list[Any]]]]]]
        self._schemas = {}
        self._manifest: tuple[Manifest | None, str] = (None, "")
        self._odfvs: dict[str, OnDemandFeatureView] = {}
        self._server_info: dict[str, Any] | None = None
        try:
            #: The featurelite version of the server (its ``/v1/health``, asked when connecting).
            self.server_version: str = str(self._health()["version"])
        except BaseException:
            self._client.close()
            raise

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Release the connections. Further calls raise StoreClosedError."""
        self._closed = True
        self._client.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<featurelite.RemoteStore {self.url!r} {'closed' if self._closed else 'open'}>"

    @property
    def store_id(self) -> str:
        """The served store's identity, recorded in the manifests of its training sets."""
        return str(self._info()["store_id"])

    def _health(self) -> dict[str, Any]:
        """The server's ``/v1/health``: that it is a featurelite server with this API."""
        try:
            response = self._client.get(f"{self._base}/health")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        try:
            health: Any = json.loads(response.content)
        except ValueError:
            health = None
        if not isinstance(health, dict) or "version" not in health:
            raise StoreError(f"the server at {self.url} is not a featurelite server with the /{API_VERSION} API "
                             f"(GET /{API_VERSION}/health answered HTTP {response.status_code}); an older featurelite "
                             "serve has no remote API: upgrade it")
        if health.get("status") != "ok":
            raise StoreError(f"the featurelite server at {self.url} is not serving (its status: "
                             f"{health.get('status')!r}); restart it")
        if API_VERSION not in (health.get("api") or ()):
            raise StoreError(f"the featurelite server at {self.url} (version {health['version']}) does not offer "
                             f"the /{API_VERSION} API this client speaks; use a client of its version")
        return health

    def _info(self) -> dict[str, Any]:
        if self._server_info is None:
            self._server_info = self._get("/info")
        return self._server_info

    # -- transport ------------------------------------------------------------------

    def _unreachable(self, exc: httpx.TransportError) -> StoreError:
        if isinstance(exc, httpx.TimeoutException):
            return StoreError(f"the featurelite server at {self.url} did not answer within {self.timeout:g} s "
                              f"({type(exc).__name__}); is it overloaded? connect(..., timeout=...) waits longer")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) and not isinstance(exc, httpx.ConnectError):
            return StoreError(f"the featurelite server at {self.url} broke off the connection ({exc}); see its log")
        return StoreError(f"no featurelite server answers at {self.url}: {exc}; start one with "
                          "`featurelite serve STORE`")

    def _failure(self, response: httpx.Response) -> FeatureliteError:
        """The featurelite error an error answer stands for."""
        try:
            error = json.loads(response.content)["error"]
            kind, message = error["type"], error["message"]
            details = error.get("details") or {}
            if not isinstance(kind, str) or not isinstance(message, str) or not isinstance(details, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            text = response.text[:200].strip()
            return StoreError(f"the server at {self.url} answered HTTP {response.status_code} "
                              f"{response.reason_phrase}, not a featurelite answer: {text!r}")
        found = getattr(errors, kind, None)
        if isinstance(found, type) and issubclass(found, FeatureliteError) and found is not FeatureliteError:
            return found(message, **{k: v for k, v in details.items() if _declared(found, k)})
        if kind == "Unauthorized":
            return StoreError(f"the featurelite server at {self.url} refused the token ({message}); pass the "
                              f"server's token=... to featurelite.connect (the CLI: --token or ${TOKEN_ENV})")
        if kind == "PayloadTooLarge":
            return InputError(f"the featurelite server at {self.url} refused the request as too large: {message}")
        if kind == "RequestTimeout":
            return StoreError(f"the featurelite server at {self.url} timed out the request ({message}); "
                              "is the network slow? try again")
        if kind in ("NotFound", "MethodNotAllowed"):
            return StoreError(f"the featurelite server at {self.url} has no such endpoint ({message}); is it an "
                              "older featurelite? upgrade it")
        return StoreError(f"the featurelite server at {self.url} failed ({kind}): {message}")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to ``/v1{path}`` (an absolute URL is taken as is), its answer read."""
        if self._closed:
            raise StoreClosedError(f"the remote store {self.url} was closed; connect again")
        try:
            response = self._client.request(method, path if "://" in path else self._base + path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise self._failure(response)
        return response

    @contextlib.contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A request whose answer is streamed; it may take as long as the server works."""
        if self._closed:
            raise StoreClosedError(f"the remote store {self.url} was closed; connect again")
        timeout = httpx.Timeout(self.timeout, read=None, write=None)
        try:
            with self._client.stream(method, self._base + path, timeout=timeout, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._failure(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _get(self, path: str, params: Mapping[str, str] | None = None, *, long: bool = False) -> Any:
        extra: dict[str, Any] = {"timeout": httpx.Timeout(self.timeout, read=None)} if long else {}
        return json.loads(self._send("GET", path, params=params, **extra).content)

    def _post_json(self, path: str, payload: Any, *, long: bool = False) -> Any:
        extra: dict[str, Any] = {"timeout": httpx.Timeout(self.timeout, read=None)} if long else {}
        body = _encode(payload, "the request")
        return json.loads(self._send("POST", path, content=body, headers=_JSON_HEADERS, **extra).content)

    # -- reads ----------------------------------------------------------------------

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        features: Sequence[str] | None = None,
        *,
        service: str | None = None,
        manifest: Manifest | None = None,
        request_data: Mapping[str, Sequence[Any]] | None = None,
        full_feature_names: bool = False,
        now: datetime | None = None,
    ) -> OnlineResponse:
        """Latest feature values for each entity, as :meth:`featurelite.Store.get_online_features`
        gives them, read by the server (one request)."""
        payload: dict[str, Any] = {"entities": entity_rows, "arrow_schema": True}
        if features is not None:
            payload["features"] = features
        if service is not None:
            payload["feature_service"] = service
        if manifest is not None:
            payload["manifest"] = self._manifest_text(manifest)
        if request_data is not None:
            payload["request_data"] = request_data
            times = _time_fields(request_data)
            if times:
                payload["request_times"] = times
        if full_feature_names:
            payload["full_feature_names"] = full_feature_names
        if now is not None:
            arguments.moment_us(now, "now")
            payload["now"] = now.isoformat()
        body = _encode(payload, "the entity rows or request data")
        if self._closed:
            raise StoreClosedError(f"the remote store {self.url} was closed; connect again")
        try:
            response = self._client.post(self._read_url, content=body, headers=_JSON_HEADERS)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != 200:
            raise self._failure(response)
        answer = json.loads(response.content)
        values: dict[str, list[Any]] = answer["values"]
        statuses: dict[str, list[str]] = answer["statuses"]
        types, decoders = self._schema(answer["arrow_schema"])
        for name, decode in decoders:
            column = values.get(name)
            if column:
                values[name] = decode(column)
        keys: dict[str, list[Any]] = {}
        outputs: dict[str, list[Any]] = {}
        for name, column in values.items():
            (outputs if name in statuses else keys)[name] = column
        return OnlineResponse(keys, outputs, statuses, types)

    def _schema(self, text: str) -> tuple[dict[str, pa.DataType], list[tuple[str, Callable[[list[Any]], list[Any]]]]]:
        """The types and value decoders of a read's columns, from the answer's schema."""
        found = self._schemas.get(text)
        if found is None:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
            types = {field.name: field.type for field in schema}
            decoders = [(name, decode) for name, kind in types.items() if (decode := _decoder(kind)) is not None]
            if len(self._schemas) >= 256:
                self._schemas.clear()
            found = self._schemas[text] = (types, decoders)
        return found

    def _manifest_text(self, manifest: Any) -> str:
        if not isinstance(manifest, Manifest):
            raise ManifestError(
                f"manifest must be a featurelite.Manifest (Manifest.from_table(training_set)), "
                f"not {type(manifest).__name__}"
            )
        held, text = self._manifest
        if held is not manifest:  # a model sends the same manifest with every read: encoded once
            text = manifest.to_json()
            self._manifest = (manifest, text)
        return text

    def get_historical_features(
        self,
        entity_df: DataSource,
        features: Sequence[str] | None = None,
        *,
        service: str | None = None,
        as_of: Manifest | None = None,
        timestamp_field: str | None = None,
        full_feature_names: bool = False,
    ) -> pa.Table:
        """A point-in-time correct training set, as :meth:`featurelite.Store.get_historical_features`
        builds it, carrying its manifest. ``entity_df`` is read here (a file path is a file
        of this machine) and streamed to the server as Arrow; the training set streams
        back the same way."""
        if timestamp_field is not None:
            arguments.name(timestamp_field, "timestamp_field")
        request = {
            "features": features, "service": service,
            "as_of": None if as_of is None else self._manifest_text(as_of),
            "timestamp_field": timestamp_field, "full_feature_names": full_feature_names,
            # The entity columns the training set carries through unchanged stay here: only
            # the features come back (a third of the bytes for a typical spine).
            "omit_entity_columns": True,
        }
        text = _encode(request, "the features or service")
        entity = to_table(entity_df)
        metadata = {**(entity.schema.metadata or {}), REQUEST_METADATA: text}
        body = arrow_chunks(entity.schema.with_metadata(metadata), entity.to_batches(max_chunksize=STREAM_ROWS))
        with self._stream("POST", "/get-historical-features", content=body, headers=_ARROW_HEADERS) as response:
            data = self._whole(response, "the training set")
        try:
            table = pa.ipc.open_stream(data).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(f"the training set the server at {self.url} sent is not a whole Arrow stream ({exc}); "
                             "see its log") from exc
        return _with_entity_columns(table, entity)

    def _whole(self, response: httpx.Response, what: str) -> bytes:
        try:
            return b"".join(response.iter_bytes())
        except httpx.TransportError as exc:
            raise StoreError(f"the featurelite server at {self.url} broke off {what} ({exc}); see its log") from exc

    # -- writes ---------------------------------------------------------------------

    def ingest(self, view: str, data: DataSource, *, batch_rows: int = INGEST_BATCH_ROWS) -> IngestResult:
        """Push ``data`` to ``view`` through the server: one atomic ingest there, exactly as
        :meth:`featurelite.Store.ingest` (all of it lands, history and online, or none).

        ``data`` is read here (a Parquet or CSV path is a file of this machine; CSV columns
        are sent as text, for the server to cast to the view's types, as in process) and
        sent as one Arrow IPC stream. A push is never split: data larger than the server's
        body limit is an InputError before anything is sent; serve with a larger
        ``--max-body``, or ingest it in parts."""
        arguments.name(view, "the view to ingest into")
        batch_rows = arguments.whole_number(batch_rows, "batch_rows")
        reader = _ingest_reader(data)
        limit = int(self._info()["max_body"])
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in arrow_chunks(reader.schema, reader):
                size += len(chunk)
                if size > limit:
                    raise InputError(
                        f"the rows pushed to view {view!r} take more than the {limit} bytes the server at {self.url} "
                        "accepts in one push (serve --max-body); a push is one atomic ingest and is never split: "
                        "serve with a larger --max-body, or ingest the data in several parts", view=view,
                    )
                chunks.append(chunk)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise SourceError(f"view {view!r}: reading the input failed: {exc}", view=view) from exc
        params = {"view": view, "batch_rows": str(batch_rows)}
        answer = json.loads(self._send("POST", "/push", params=params, content=iter(chunks),
                                       headers=_ARROW_HEADERS).content)
        return IngestResult(answer["view"], int(answer["rows"]))

    # -- definitions ----------------------------------------------------------------

    def list_entities(self) -> list[Entity]:
        """Registered entities, by name."""
        return [Entity.from_spec(spec) for spec in self._get("/entities")["items"]]

    def list_feature_views(self) -> list[FeatureView]:
        """Registered feature views, by name."""
        return [FeatureView.from_spec(spec) for spec in self._get("/feature-views")["items"]]

    def list_on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        """Registered on-demand feature views, by name (their featurizers compiled here, from
        the stored source, once per version)."""
        return [self._odfv(spec) for spec in self._get("/on-demand-feature-views")["items"]]

    def _odfv(self, spec: dict[str, Any]) -> OnDemandFeatureView:
        key = json.dumps(spec, sort_keys=True)
        found = self._odfvs.get(key)
        if found is None:
            found = self._odfvs[key] = OnDemandFeatureView.from_spec(spec)
        return found

    def list_feature_services(self) -> list[FeatureService]:
        """Registered feature services (with their pinned versions), by name."""
        return [FeatureService.from_spec(spec) for spec in self._get("/feature-services")["items"]]

    def get_entity(self, name: str) -> Entity:
        """The registered entity ``name``."""
        return Entity.from_spec(self._get(f"/entities/{_path(name, 'the entity')}")["spec"])

    def get_feature_view(self, name: str) -> FeatureView:
        """The registered feature view ``name``."""
        return FeatureView.from_spec(self._get(f"/feature-views/{_path(name, 'the feature view')}")["spec"])

    def get_feature_service(self, name: str) -> FeatureService:
        """The registered feature service ``name``, with its pinned versions."""
        return FeatureService.from_spec(self._get(f"/feature-services/{_path(name, 'the feature service')}")["spec"])

    def describe(self, name: str) -> dict[str, Any]:
        """What :meth:`featurelite.Store.describe` gives (event times as datetimes)."""
        info: dict[str, Any] = self._get(f"/describe/{_path(name, 'the view to describe')}")
        for key in ("first_event", "last_event"):
            if isinstance(info.get(key), str):
                info[key] = wire.parse_time(info[key])
        return info

    def list_versions(self, name: str, *, kind: str | None = None) -> list[dict[str, Any]]:
        """Every version of definition ``name`` ever applied (oldest first), as
        :meth:`featurelite.Store.list_versions` gives them."""
        params = None if kind is None else {"kind": str(kind)}
        items: list[dict[str, Any]] = self._get(f"/versions/{_path(name, 'the definition')}", params)["items"]
        for item in items:
            if isinstance(item.get("applied_at"), str):
                item["applied_at"] = wire.parse_time(item["applied_at"])
        return items

    def search(
        self, text: str = "", *, tags: Mapping[str, str] | None = None, kinds: Sequence[str] | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """What :meth:`featurelite.Store.search` finds, searched by the server."""
        payload: dict[str, Any] = {"text": text, "limit": limit}
        if tags is not None:
            payload["tags"] = dict(tags)
        if kinds is not None:
            payload["kinds"] = [kinds] if isinstance(kinds, str) else list(kinds)
        items = self._post_json("/search", payload)["items"]
        return [SearchHit(i["kind"], i["name"], i["description"], i["owner"], i["tags"], i["score"],
                          tuple(i["matched"])) for i in items]

    def lineage(self, name: str | None = None) -> Lineage:
        """:meth:`featurelite.Store.lineage` of the served store."""
        params = None if name is None else {"name": arguments.name(name, "the definition to trace")}
        return Lineage.from_dict(self._get("/lineage", params))

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        """:meth:`featurelite.Store.list_models` of the served store."""
        params = None if name is None else {"name": arguments.name(name, "the model")}
        return [ModelRecord.from_dict(item) for item in self._get("/models", params)["items"]]

    # -- checks and reports ---------------------------------------------------------

    def stats(
        self, view: str, *, since: datetime | None = None, until: datetime | None = None, period: str | None = None,
        refresh: bool | None = None,
    ) -> ViewStats:
        """:meth:`featurelite.Store.stats`, computed (or read from its cache) by the server."""
        payload: dict[str, Any] = {"view": arguments.name(view, "the feature view"), "period": period,
                                   "refresh": refresh}
        for moment, what in ((since, "since"), (until, "until")):
            if moment is not None:
                arguments.moment_us(moment, what)
                payload[what] = moment.isoformat()
        return ViewStats.from_dict(self._post_json("/stats", payload, long=True))

    def verify(self, name: str | None = None, *, examples: int = 1000, seed: int = 0) -> list[VerifyResult]:
        """:meth:`featurelite.Store.verify`, run by the server. A mismatch is a
        :class:`RemoteMismatch` (its ``str()`` is the in-process text)."""
        answer = self._post_json("/verify", {"name": name, "examples": examples, "seed": seed}, long=True)
        return [
            VerifyResult(item["view"], tuple(item["features"]), item["featurizer"], item["examples"],
                         None if item["mismatch"] is None else RemoteMismatch(
                             item["mismatch"]["text"], item["mismatch"].get("featurizer"),
                             item["mismatch"].get("inputs"), item["mismatch"].get("batch"),
                             item["mismatch"].get("request"), item["mismatch"].get("moved")))
            for item in answer["items"]
        ]

    def freshness(self, *, now: datetime | None = None) -> FreshnessReport:
        """:meth:`featurelite.Store.freshness` of the served store (its served-value ages and
        push latencies are the server's, since it opened the store)."""
        params = None
        if now is not None:
            arguments.moment_us(now, "now")
            params = {"now": now.isoformat()}
        return FreshnessReport.from_dict(self._get("/freshness", params, long=True))

    def consistency(
        self, target: str, *, since: datetime | None = None, until: datetime | None = None, examples: int = 5
    ) -> ConsistencyReport:
        """:meth:`featurelite.Store.consistency`: the server replays ``target``'s serving log."""
        arguments.name(target, "the feature view or service to replay")
        payload: dict[str, Any] = {"target": target, "examples": examples}
        for moment, what in ((since, "since"), (until, "until")):
            if moment is not None:
                arguments.moment_us(moment, what)
                payload[what] = moment.isoformat()
        return ConsistencyReport.from_dict(self._post_json("/consistency", payload, long=True))

    # -- the file -------------------------------------------------------------------

    def snapshot(self, path: str | os.PathLike[str]) -> str:
        """Download a consistent, complete copy of the served store file to ``path`` (which
        must not exist), as :meth:`featurelite.Store.snapshot` writes one: open it with
        ``featurelite.open(path, read_only=True)``, anywhere. Written whole or not at all.
        Returns the path."""
        target = os.fspath(path)
        if os.path.exists(target):
            raise InputError(f"{target!r} exists; give a new path for the snapshot (it is never overwritten)")
        partial: str | None = None
        try:
            folder, name = os.path.split(os.path.abspath(target))
            fd, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
            with os.fdopen(fd, "wb") as out, self._stream("GET", "/snapshot") as response:
                expected = int(response.headers.get("content-length", -1))
                written = 0
                try:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        written += len(chunk)
                except httpx.TransportError as exc:
                    raise StoreError(f"the featurelite server at {self.url} broke off the snapshot after {written} "
                                     f"bytes ({exc}); nothing was written", path=target) from exc
                if 0 <= expected != written:
                    raise StoreError(f"the snapshot from {self.url} ended after {written} of {expected} bytes; "
                                     "nothing was written", path=target)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, target)
        except OSError as exc:
            raise StoreError(f"could not write the snapshot {target!r}: {exc.strerror or exc}", path=target) from None
        finally:
            if partial is not None:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
        return target


# -- helpers --------------------------------------------------------------------------


def _checked_url(url: Any) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host; else an InputError."""
    if not isinstance(url, str):
        raise InputError(f"the URL must be a string such as 'http://127.0.0.1:6566', not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InputError(f"{arguments.shown(url)} is not the http:// or https:// URL of a featurelite server "
                         "(for example http://127.0.0.1:6566, what `featurelite serve` prints)")
    try:
        parts.port  # noqa: B018 - the check: a port that is not a number raises
    except ValueError as exc:
        raise InputError(f"{url!r} is not a URL a server can have: {exc}") from None
    return url.rstrip("/")


def _declared(cls: type, key: str) -> bool:
    """Whether an error class declares the detail ``key`` (the rule FeatureliteError keeps)."""
    return any(key in getattr(klass, "__annotations__", {}) for klass in cls.__mro__)


def _path(name: Any, what: str) -> str:
    """A definition's name as a URL path segment (an InputError, as in process, if it is
    not a string)."""
    text = arguments.name(name, what)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _jsonable(value: Any) -> Any:
    """What JSON cannot carry as is, as the server reads it back (``json.dumps``'s default)."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return list(value)
    raise TypeError(f"a {type(value).__name__} value ({arguments.shown(value)})")


def _encode(payload: Any, what: str) -> bytes:
    """JSON of a request (NaN and infinities as the JSON tokens Python reads back as floats)."""
    try:
        return json.dumps(payload, default=_jsonable, separators=(",", ":")).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InputError(f"{what} cannot be sent to the server: it holds {exc}; pass numbers, text, true/false, "
                         "None and datetimes") from None


def _time_fields(request_data: Any) -> list[str]:
    """The request_data fields holding datetimes (sent as text, read back as datetimes)."""
    if not isinstance(request_data, Mapping):
        return []
    return [field for field, column in request_data.items()
            if isinstance(field, str) and isinstance(column, (list, tuple))
            and any(isinstance(v, datetime) for v in column)]


def _floats(values: list[Any]) -> list[Any]:
    for value in values:
        if type(value) is str:
            return [_NONFINITE.get(v, v) if type(v) is str else v for v in values]
    return values


def _times(values: list[Any]) -> list[Any]:
    return [v if v is None else wire.parse_time(v) for v in values]


def _binary(values: list[Any]) -> list[Any]:
    return [v if v is None else base64.b64decode(v) for v in values]


def _decoder(kind: pa.DataType) -> Callable[[list[Any]], list[Any]] | None:
    """How JSON gives back the values of an Arrow type, if not as they are."""
    if pa.types.is_floating(kind):
        return _floats
    if pa.types.is_timestamp(kind):
        return _times
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return _binary
    return None


def _with_entity_columns(table: pa.Table, entity: pa.Table) -> pa.Table:
    """The training set the server sent, with the entity columns it left out (they were
    equal to those sent: see the server's ``omit_entity_columns``) put back in place."""
    metadata = dict(table.schema.metadata or {})
    listed = metadata.pop(ENTITY_COLUMNS_METADATA, None)
    if listed is None:
        return table
    omitted = {int(position): name for position, name in json.loads(listed)}
    fields: list[pa.Field] = []
    columns: list[pa.ChunkedArray] = []
    received = iter(range(table.num_columns))
    for position in range(table.num_columns + len(omitted)):
        name = omitted.get(position)
        if name is None:
            i = next(received)
            fields.append(table.schema.field(i))
            columns.append(table.column(i))
        else:
            fields.append(entity.schema.field(name))
            columns.append(entity.column(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata or None))


def _ingest_reader(data: DataSource) -> pa.RecordBatchReader:
    """``data`` as batches to push. A CSV file's columns are all read as text: the server
    casts them to the view's types, as an ingest in process casts the view's columns (any
    other column is refused there either way)."""
    if isinstance(data, (str, os.PathLike)) and os.fspath(data).lower().endswith(_CSV_SUFFIXES) \
            and os.path.isfile(data):
        return to_reader(data, text_columns=_csv_header(os.fspath(data)))
    return to_reader(data)


def _csv_header(path: str) -> list[str]:
    """The column names of a CSV (or TSV) file, from its first block."""
    parse = pacsv.ParseOptions(delimiter="\t" if path.lower().endswith(".tsv") else ",")
    try:
        with pacsv.open_csv(path, parse_options=parse, read_options=pacsv.ReadOptions(block_size=1 << 20)) as reader:
            return list(reader.schema.names)
    except (pa.ArrowInvalid, OSError):
        return []  # to_reader says what is wrong with the file, as in process

