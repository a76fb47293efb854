"""The gRPC half of the local Weaviate server: the `weaviate.v1.Weaviate` service (Search, BatchObjects,
BatchDelete, TenantsGet) and the health check, over the protobuf modules weaviate-client ships itself.

Searches: BM25, hybrid (relativeScoreFusion weighted by alpha; each sub-search takes up to
max(limit + offset, 100) candidates, like the server's hybrid default), near_vector (cosine distance), and
plain fetches; filters on properties (equal, not equal, ordering, like, is null, contains any/all/none, and/or/
not) follow the property's tokenization as the real inverted index does: on a `word`-tokenized text property,
`equal("brand voice")` and `contains_any(["brand_voice"])` match by word, not by the whole value.
"""

from __future__ import annotations

import fnmatch
import struct
import time
import uuid as uuid_lib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf import struct_pb2  # type: ignore[import-untyped]
from weaviate.proto.v1 import (
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

from tests.fakes.weaviate_store import (
    DEFAULT_LIMIT,
    Collection,
    Predicate,
    StoredObject,
    WeaviateData,
    WeaviateError,
    format_date,
    parse_date,
    relative_score_fusion,
    tokenize,
)

HYBRID_SUBSEARCH_LIMIT = 100
F = base_pb2.Filters
TENANT_STATUS: dict[str, tenants_pb2.TenantActivityStatus] = {
    "ACTIVE": tenants_pb2.TENANT_ACTIVITY_STATUS_ACTIVE,
    "INACTIVE": tenants_pb2.TENANT_ACTIVITY_STATUS_INACTIVE,
    "OFFLOADED": tenants_pb2.TENANT_ACTIVITY_STATUS_OFFLOADED,
}


class SearchError(Exception):
    """A request the real server refuses with gRPC status UNKNOWN and this message."""


def decode_floats(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def struct_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {k: struct_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [struct_value(v) for v in value.list_value.values]
    if kind == "null_value" or kind is None:
        return None
    return getattr(value, kind)


# Filters


def filter_values(f: base_pb2.Filters) -> list[Any]:
    which = f.WhichOneof("test_value")
    if which is None:
        return []
    value = getattr(f, which)
    if which.endswith("_array"):
        return list(value.values)
    return [value]


def compare(op: int, left: Any, right: Any) -> bool:
    try:
        if op == F.OPERATOR_GREATER_THAN:
            return bool(left > right)
        if op == F.OPERATOR_GREATER_THAN_EQUAL:
            return bool(left >= right)
        if op == F.OPERATOR_LESS_THAN:
            return bool(left < right)
        if op == F.OPERATOR_LESS_THAN_EQUAL:
            return bool(left <= right)
    except TypeError as exc:
        raise SearchError(f"cannot compare {left!r} with {right!r}") from exc
    raise SearchError(f"unsupported filter operator {op}")


class FilterCompiler:
    """A protobuf filter as a predicate over stored objects, typed by the collection's schema."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection
        self._properties = {p["name"]: p for p in collection.config["properties"]}

    def compile(self, f: base_pb2.Filters) -> Predicate:
        op = f.operator
        if op in (F.OPERATOR_AND, F.OPERATOR_OR, F.OPERATOR_NOT):
            parts = [self.compile(inner) for inner in f.filters]
            if op == F.OPERATOR_AND:
                return lambda obj: all(p(obj) for p in parts)
            if op == F.OPERATOR_OR:
                return lambda obj: any(p(obj) for p in parts)
            return lambda obj: not any(p(obj) for p in parts)
        if f.HasField("target"):
            if not f.target.property:
                raise SearchError("filters on references are not supported by this server")
            prop = f.target.property
        else:
            prop = f.on[0] if f.on else ""
        return self._leaf(prop, op, filter_values(f))

    def _leaf(self, prop: str, op: int, raw: list[Any]) -> Predicate:
        if prop == "_id":
            return self._typed_leaf(
                lambda obj: [obj.id], "uuid", "field", op, [str(uuid_lib.UUID(v)) for v in raw]
            )
        if prop in ("_creationTimeUnix", "_lastUpdateTimeUnix"):
            attribute = "created_ms" if prop == "_creationTimeUnix" else "updated_ms"
            stamps = [int(parse_date(v).timestamp() * 1000) if isinstance(v, str) else int(v) for v in raw]
            return self._typed_leaf(lambda obj: [getattr(obj, attribute)], "int", "field", op, stamps)
        schema = self._properties.get(prop)
        if schema is None:
            raise SearchError(
                f"no such prop with name '{prop}' found in class '{self._collection.name}' in the schema"
            )
        data_type = schema["dataType"][0].removesuffix("[]")
        if op == F.OPERATOR_IS_NULL:
            wanted = bool(raw[0]) if raw else True
            return lambda obj: (obj.properties.get(prop) in (None, [])) == wanted
        values: list[Any]
        try:
            if data_type == "date":
                values = [parse_date(v) for v in raw]
            elif data_type == "int":
                values = [int(v) for v in raw]
            elif data_type == "number":
                values = [float(v) for v in raw]
            elif data_type == "uuid":
                values = [str(uuid_lib.UUID(str(v))) for v in raw]
            else:
                values = list(raw)
        except ValueError as exc:
            raise SearchError(f"invalid filter value for {data_type} property '{prop}': {exc}") from exc

        def stored(obj: StoredObject) -> list[Any]:
            value = obj.properties.get(prop)
            if value is None:
                return []
            return list(value) if isinstance(value, list) else [value]

        return self._typed_leaf(stored, data_type, schema.get("tokenization", "field"), op, values)

    def _typed_leaf(
        self,
        stored: Callable[[StoredObject], list[Any]],
        data_type: str,
        tokenization: str,
        op: int,
        values: list[Any],
    ) -> Predicate:
        if data_type == "text" and op in (
            F.OPERATOR_EQUAL,
            F.OPERATOR_NOT_EQUAL,
            F.OPERATOR_CONTAINS_ANY,
            F.OPERATOR_CONTAINS_ALL,
            F.OPERATOR_CONTAINS_NONE,
            F.OPERATOR_LIKE,
        ):
            return self._text_leaf(stored, tokenization, op, values)
        if op in (F.OPERATOR_EQUAL, F.OPERATOR_CONTAINS_ANY):
            return lambda obj: any(v in values for v in stored(obj))
        if op == F.OPERATOR_NOT_EQUAL:
            return lambda obj: not any(v in values for v in stored(obj))
        if op == F.OPERATOR_CONTAINS_ALL:
            return lambda obj: all(v in stored(obj) for v in values)
        if op == F.OPERATOR_CONTAINS_NONE:
            return lambda obj: not any(v in values for v in stored(obj))
        if not values:
            raise SearchError("a filter needs a value")
        return lambda obj: any(compare(op, v, values[0]) for v in stored(obj))

    @staticmethod
    def _text_leaf(
        stored: Callable[[StoredObject], list[Any]], tokenization: str, op: int, values: list[Any]
    ) -> Predicate:
        def words(obj: StoredObject) -> set[str]:
            return {t for v in stored(obj) for t in tokenize(str(v), tokenization)}

        wanted = [tokenize(str(v), tokenization) for v in values]
        if op == F.OPERATOR_LIKE:
            patterns = [p.lower() if tokenization != "field" else p for v in values for p in [str(v)]]
            return lambda obj: any(fnmatch.fnmatchcase(w, p) for w in words(obj) for p in patterns)
        if op == F.OPERATOR_EQUAL:
            return lambda obj: all(set(tokens_).issubset(words(obj)) for tokens_ in wanted)
        if op == F.OPERATOR_NOT_EQUAL:
            return lambda obj: not all(set(tokens_).issubset(words(obj)) for tokens_ in wanted)
        flat = {t for tokens_ in wanted for t in tokens_}
        if op == F.OPERATOR_CONTAINS_ANY:
            return lambda obj: bool(flat & words(obj))
        if op == F.OPERATOR_CONTAINS_ALL:
            return lambda obj: flat.issubset(words(obj))
        return lambda obj: not flat & words(obj)


# Replies


def value_message(value: Any, data_type: str) -> properties_pb2.Value:
    base = data_type.removesuffix("[]")
    if isinstance(value, list):
        if base == "int":
            packed = struct.pack(f"<{len(value)}q", *value)
            return properties_pb2.Value(
                list_value=properties_pb2.ListValue(int_values=properties_pb2.IntValues(values=packed))
            )
        if base == "number":
            packed = struct.pack(f"<{len(value)}d", *value)
            return properties_pb2.Value(
                list_value=properties_pb2.ListValue(number_values=properties_pb2.NumberValues(values=packed))
            )
        if base == "boolean":
            return properties_pb2.Value(
                list_value=properties_pb2.ListValue(bool_values=properties_pb2.BoolValues(values=value))
            )
        if base == "date":
            return properties_pb2.Value(
                list_value=properties_pb2.ListValue(
                    date_values=properties_pb2.DateValues(values=[format_date(v) for v in value])
                )
            )
        if base == "uuid":
            return properties_pb2.Value(
                list_value=properties_pb2.ListValue(uuid_values=properties_pb2.UuidValues(values=value))
            )
        return properties_pb2.Value(
            list_value=properties_pb2.ListValue(
                text_values=properties_pb2.TextValues(values=[str(v) for v in value])
            )
        )
    if value is None:
        return properties_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, datetime):
        return properties_pb2.Value(date_value=format_date(value))
    if isinstance(value, bool):
        return properties_pb2.Value(bool_value=value)
    if base == "int":
        return properties_pb2.Value(int_value=int(value))
    if isinstance(value, int | float):
        return properties_pb2.Value(number_value=float(value))
    if base == "uuid":
        return properties_pb2.Value(uuid_value=str(value))
    return properties_pb2.Value(text_value=str(value))


def result_message(
    collection: Collection,
    obj: StoredObject,
    request: search_get_pb2.SearchRequest,
    *,
    score: float | None = None,
    distance: float | None = None,
    explain: str = "",
) -> search_get_pb2.SearchResult:
    wanted_meta = request.metadata
    meta = search_get_pb2.MetadataResult(id=obj.id, id_as_bytes=uuid_lib.UUID(obj.id).bytes)
    if score is not None and (wanted_meta.score or wanted_meta.explain_score):
        meta.score, meta.score_present = score, True
    if explain and wanted_meta.explain_score:
        meta.explain_score, meta.explain_score_present = explain, True
    if distance is not None:
        if wanted_meta.distance:
            meta.distance, meta.distance_present = distance, True
        if wanted_meta.certainty:
            meta.certainty, meta.certainty_present = 1 - distance / 2, True
    if wanted_meta.creation_time_unix:
        meta.creation_time_unix, meta.creation_time_unix_present = obj.created_ms, True
    if wanted_meta.last_update_time_unix:
        meta.last_update_time_unix, meta.last_update_time_unix_present = obj.updated_ms, True
    if wanted_meta.is_consistent:
        meta.is_consistent, meta.is_consistent_present = True, True
    if wanted_meta.vector or wanted_meta.vectors:
        names = list(wanted_meta.vectors) or list(obj.vectors)
        for name in names:
            if name in obj.vectors:
                vector = obj.vectors[name]
                meta.vectors.append(
                    base_pb2.Vectors(
                        name=name,
                        vector_bytes=struct.pack(f"<{len(vector)}f", *vector),
                        type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                    )
                )
    props = search_get_pb2.PropertiesResult(target_collection=collection.name)
    if not request.HasField("properties") or request.properties.return_all_nonref_properties:
        names = list(obj.properties)
    else:
        names = [n for n in request.properties.non_ref_properties if n in obj.properties]
    types = collection.data_types()
    for name in names:
        props.non_ref_props.fields[name].CopyFrom(
            value_message(obj.properties[name], types.get(name, "text"))
        )
    return search_get_pb2.SearchResult(properties=props, metadata=meta)


def vector_of(
    collection: Collection,
    vectors: Sequence[base_pb2.Vectors],
    vector_bytes: bytes,
    floats: Sequence[float],
    for_targets: Sequence[base_search_pb2.VectorForTarget],
    targets: Sequence[str],
) -> tuple[list[float], str] | None:
    """The query vector and the named vector it searches, from whichever field the client filled."""
    names = collection.vector_names()
    for target in for_targets:
        found = vector_of(collection, target.vectors, target.vector_bytes, (), (), [target.name])
        if found is not None:
            return found
    vector: list[float] | None = None
    for packed in vectors:
        if packed.type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32:
            raise SearchError("multi-vector search is not supported by this server")
        vector = decode_floats(packed.vector_bytes)
        break
    if vector is None and vector_bytes:
        vector = decode_floats(vector_bytes)
    if vector is None and floats:
        vector = list(floats)
    if vector is None:
        return None
    if len(targets) > 1:
        raise SearchError("multi-target vector search is not supported by this server")
    if targets:
        return vector, targets[0]
    if len(names) != 1:
        raise SearchError(
            f"multiple vectors in collection {collection.name}: {names}; specify the target vector"
        )
    return vector, names[0]


def target_names(targets: base_search_pb2.Targets, target_vectors: Sequence[str]) -> list[str]:
    return list(targets.target_vectors) or list(target_vectors)


class WeaviateService(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, data: WeaviateData) -> None:
        self.data = data

    def _collection(self, name: str) -> Collection:
        try:
            return self.data.collection(name)
        except WeaviateError as exc:
            raise SearchError(f"could not find class {name} in schema") from exc

    async def Search(
        self, request: search_get_pb2.SearchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> search_get_pb2.SearchReply:
        started = time.monotonic()
        try:
            collection = self._collection(request.collection)
            results = self._search(collection, request)
        except (SearchError, WeaviateError) as exc:
            message = exc.message if isinstance(exc, WeaviateError) else str(exc)
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                f"explorer: list class: search: object search at index {request.collection.lower()}: {message}",
            )
        return search_get_pb2.SearchReply(took=time.monotonic() - started, results=results)

    def _search(
        self, collection: Collection, request: search_get_pb2.SearchRequest
    ) -> list[search_get_pb2.SearchResult]:
        tenant = request.tenant
        collection.shard(tenant)  # the tenant checks come before anything else, as on the real server
        ignored = [f for f in ("group_by", "generative", "rerank", "boost") if request.HasField(f)]
        if ignored or request.autocut:
            raise SearchError(f"{(ignored or ['autocut'])[0]} is not supported by this local server")
        keep: Predicate = (
            FilterCompiler(collection).compile(request.filters)
            if request.HasField("filters")
            else (lambda obj: True)
        )
        limit = request.limit or DEFAULT_LIMIT
        window = slice(request.offset, request.offset + limit)
        if request.HasField("bm25_search"):
            bm25 = request.bm25_search
            ranked = collection.bm25(
                tenant, bm25.query, keep, list(bm25.properties), self._all_terms(bm25.search_operator)
            )
            return [result_message(collection, obj, request, score=score) for obj, score in ranked[window]]
        if request.HasField("hybrid_search"):
            return [
                result_message(collection, obj, request, score=score, explain=explain)
                for obj, score, explain in self._hybrid(
                    collection, tenant, request.hybrid_search, keep, request.offset + limit
                )[window]
            ]
        if request.HasField("near_vector"):
            near = request.near_vector
            found = vector_of(
                collection,
                near.vectors,
                near.vector_bytes,
                near.vector,
                near.vector_for_targets,
                target_names(near.targets, near.target_vectors),
            )
            if found is None:
                raise SearchError("near_vector needs a vector")
            max_distance = near.distance if near.HasField("distance") else None
            if near.HasField("certainty"):
                max_distance = 2 * (1 - near.certainty)
            ranked = collection.nearest(tenant, found[0], found[1], keep, max_distance)
            return [result_message(collection, obj, request, distance=d) for obj, d in ranked[window]]
        unsupported = [
            f
            for f in ("near_text", "near_object", "near_image", "near_audio", "near_video")
            if request.HasField(f)
        ]
        if unsupported:
            raise SearchError(f"{unsupported[0]} needs a vectoriser module; this server has none")
        objects = collection.all(tenant, keep)
        if not request.HasField("filters"):
            # Unfiltered, the real server reads its objects bucket, which is keyed by uuid; the cursor (`after`)
            # pages on through it.
            objects.sort(key=lambda obj: obj.id)
            objects = [obj for obj in objects if obj.id > request.after] if request.after else objects
        for sort in reversed(request.sort_by):
            objects.sort(
                key=lambda obj: (obj.properties.get(sort.path[0]) is None, obj.properties.get(sort.path[0])),
                reverse=not sort.ascending,
            )
        return [result_message(collection, obj, request) for obj in objects[window]]

    @staticmethod
    def _all_terms(operator: base_search_pb2.SearchOperatorOptions) -> bool:
        return operator.operator == base_search_pb2.SearchOperatorOptions.OPERATOR_AND

    def _hybrid(
        self,
        collection: Collection,
        tenant: str,
        hybrid: base_search_pb2.Hybrid,
        keep: Predicate,
        wanted: int,
    ) -> list[tuple[StoredObject, float, str]]:
        alpha = hybrid.alpha_param if hybrid.use_alpha_param else hybrid.alpha
        candidates = max(wanted, HYBRID_SUBSEARCH_LIMIT)
        keyword: list[tuple[StoredObject, float]] = []
        if alpha < 1 and hybrid.query:
            keyword = collection.bm25(
                tenant,
                hybrid.query,
                keep,
                list(hybrid.properties),
                self._all_terms(hybrid.bm25_search_operator),
            )[:candidates]
        vector: list[tuple[StoredObject, float]] = []
        if alpha > 0:
            if hybrid.HasField("near_text"):
                raise SearchError("hybrid near_text needs a vectoriser module; this server has none")
            near = hybrid.near_vector
            found = vector_of(
                collection,
                list(hybrid.vectors) or list(near.vectors),
                hybrid.vector_bytes or near.vector_bytes,
                list(hybrid.vector) or list(near.vector),
                near.vector_for_targets,
                target_names(hybrid.targets, hybrid.target_vectors),
            )
            if found is None:
                if hybrid.query:
                    raise SearchError(
                        f"class {collection.name} has no vectorizer: hybrid search with alpha {alpha:g} needs a vector"
                    )
            else:
                max_distance = hybrid.vector_distance if hybrid.HasField("vector_distance") else None
                vector = collection.nearest(tenant, found[0], found[1], keep, max_distance)[:candidates]
        fused = relative_score_fusion(keyword, vector, alpha)
        keyword_ids = {obj.id for obj, _ in keyword}
        vector_ids = {obj.id for obj, _ in vector}
        return [
            (
                obj,
                score,
                f"(Result Set keyword,bm25) Document {obj.id} found: {obj.id in keyword_ids}; "
                f"(Result Set vector) Document {obj.id} found: {obj.id in vector_ids}; fused score {score:g}",
            )
            for obj, score in fused
        ]

    async def BatchObjects(
        self, request: batch_pb2.BatchObjectsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> batch_pb2.BatchObjectsReply:
        started = time.monotonic()
        errors = []
        for index, obj in enumerate(request.objects):
            try:
                collection = self.data.collection(obj.collection)
                vectors: dict[str, Sequence[float]] = {
                    v.name: decode_floats(v.vector_bytes) for v in obj.vectors
                }
                vector = decode_floats(obj.vector_bytes) if obj.vector_bytes else list(obj.vector)
                collection.put(
                    obj.tenant,
                    obj.uuid or str(uuid_lib.uuid4()),
                    self._batch_properties(obj.properties),
                    vector,
                    vectors,
                )
            except WeaviateError as exc:
                errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=exc.message))
        return batch_pb2.BatchObjectsReply(took=time.monotonic() - started, errors=errors)

    @staticmethod
    def _batch_properties(props: batch_pb2.BatchObject.Properties) -> dict[str, Any]:
        values: dict[str, Any] = {k: struct_value(v) for k, v in props.non_ref_properties.fields.items()}
        for arrays in (
            props.text_array_properties,
            props.int_array_properties,
            props.boolean_array_properties,
        ):
            for array in arrays:
                values[array.prop_name] = list(array.values)
        for numbers in props.number_array_properties:
            values[numbers.prop_name] = (
                list(struct.unpack(f"<{len(numbers.values_bytes) // 8}d", numbers.values_bytes))
                if numbers.values_bytes
                else list(numbers.values)
            )
        for name in props.empty_list_props:
            values[name] = []
        return values

    async def BatchDelete(
        self, request: batch_delete_pb2.BatchDeleteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> batch_delete_pb2.BatchDeleteReply:
        started = time.monotonic()
        try:
            collection = self._collection(request.collection)
            matches = collection.all(request.tenant, FilterCompiler(collection).compile(request.filters))
        except (SearchError, WeaviateError) as exc:
            message = exc.message if isinstance(exc, WeaviateError) else str(exc)
            await context.abort(grpc.StatusCode.UNKNOWN, f"batch delete: {message}")
        if not request.dry_run:
            for obj in matches:
                collection.delete(request.tenant, obj.id)
        return batch_delete_pb2.BatchDeleteReply(
            took=time.monotonic() - started,
            matches=len(matches),
            successful=len(matches),
            failed=0,
            objects=(
                [
                    batch_delete_pb2.BatchDeleteObject(uuid=uuid_lib.UUID(o.id).bytes, successful=True)
                    for o in matches
                ]
                if request.verbose
                else []
            ),
        )

    async def TenantsGet(
        self, request: tenants_pb2.TenantsGetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenants_pb2.TenantsGetReply:
        started = time.monotonic()
        try:
            collection = self._collection(request.collection)
            if not collection.multi_tenant:
                raise SearchError(f"multi-tenancy is not enabled for class {collection.name!r}")
        except SearchError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        names = list(request.names.values) if request.HasField("names") else list(collection.tenants)
        return tenants_pb2.TenantsGetReply(
            took=time.monotonic() - started,
            tenants=[
                tenants_pb2.Tenant(
                    name=name,
                    activity_status=TENANT_STATUS.get(
                        collection.tenants[name], tenants_pb2.TENANT_ACTIVITY_STATUS_UNSPECIFIED
                    ),
                )
                for name in names
                if name in collection.tenants
            ],
        )


async def health_check(
    request: health_weaviate_pb2.WeaviateHealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> health_weaviate_pb2.WeaviateHealthCheckResponse:
    return health_weaviate_pb2.WeaviateHealthCheckResponse(
        status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
    )


def add_services(server: grpc.aio.Server, data: WeaviateData) -> None:
    weaviate_pb2_grpc.add_WeaviateServicer_to_server(WeaviateService(data), server)  # type: ignore[no-untyped-call]
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health",
                {
                    "Check": grpc.unary_unary_rpc_method_handler(
                        health_check,
                        request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                        response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
                    )
                },
            ),
        )
    )
