"""What the local Weaviate server holds and how it ranks, apart from the wire: collections with the schema the
real server would report back, tenants, objects with typed properties and named vectors, and the searches
(BM25 over word tokens, cosine distance, relative score fusion for hybrid). REST and gRPC handlers translate to
and from these; errors carry the HTTP status and the message the real server gives."""

from __future__ import annotations

import copy
import math
import re
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The English stopword preset every collection gets unless it says otherwise: BM25 ignores these query terms.
EN_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    }
)
BM25_K1 = 1.2
BM25_B = 0.75
DEFAULT_LIMIT = 10
ACTIVE = "ACTIVE"
TENANT_STATUSES = {"HOT": "ACTIVE", "ACTIVE": "ACTIVE", "COLD": "INACTIVE", "INACTIVE": "INACTIVE"}
WORD = re.compile(r"[^\W_]+")
TENANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class WeaviateError(Exception):
    """A refusal, with the HTTP status the REST API answers it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def tokens(text: str) -> list[str]:
    """Weaviate's `word` tokenization: split on anything not a letter or digit, lower-cased."""
    return WORD.findall(text.lower())


def tokenize(text: str, tokenization: str) -> list[str]:
    """A text property's tokens, for BM25 and filters alike, as its `tokenization` says."""
    if tokenization == "word":
        return tokens(text)
    if tokenization == "lowercase":
        return text.lower().split()
    if tokenization == "whitespace":
        return text.split()
    return [text.strip()]


def parse_date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Go writes up to nine fraction digits; Python reads six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"date without a time zone: {value!r}")
    return parsed


def format_date(value: datetime) -> str:
    """RFC 3339 as Go's time.RFC3339Nano writes it: trailing fraction zeros dropped, Z for UTC."""
    text = value.isoformat(timespec="microseconds")
    head, _, rest = text.partition(".")
    fraction, zone = rest[:6].rstrip("0"), rest[6:]
    zone = "Z" if zone in ("+00:00", "-00:00") else zone
    return f"{head}.{fraction}{zone}" if fraction else f"{head}{zone}"


def coerce(class_name: str, prop: str, data_type: str, value: Any) -> Any:
    """A JSON or protobuf value as the property's type, or the 422 the real server gives for a mismatch."""
    if value is None:
        return None
    if data_type.endswith("[]"):
        if not isinstance(value, list | tuple):
            raise WeaviateError(
                422, f"invalid {data_type} property '{prop}' on class '{class_name}': not a list: {value!r}"
            )
        return [coerce(class_name, prop, data_type[:-2], item) for item in value]
    try:
        if data_type == "text":
            if not isinstance(value, str):
                raise ValueError("not a string")
            return value
        if data_type == "int":
            if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
                raise ValueError("requires an integer")
            return int(value)
        if data_type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("requires a float")
            return float(value)
        if data_type == "boolean":
            if not isinstance(value, bool):
                raise ValueError("requires a bool")
            return value
        if data_type == "date":
            return parse_date(value)
        if data_type == "uuid":
            return str(uuid_lib.UUID(str(value)))
    except ValueError as exc:
        raise WeaviateError(
            422,
            f"invalid {'integer' if data_type == 'int' else data_type} property '{prop}' on class '{class_name}': "
            f"{exc}, the given value is {value!r}",
        ) from exc
    return value


def infer_type(value: Any) -> str:
    """Auto-schema: the type the real server gives a property it has not seen, from its first value."""
    if isinstance(value, list | tuple):
        return (infer_type(value[0]) if value else "text") + "[]"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        try:
            parse_date(value)
        except ValueError:
            return "text"
        return "date"
    return "object"


def to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_date(value)
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class StoredObject:
    id: str
    properties: dict[str, Any]
    vectors: dict[str, list[float]]
    created_ms: int = field(default_factory=now_ms)
    updated_ms: int = field(default_factory=now_ms)


def normalise_property(prop: dict[str, Any]) -> dict[str, Any]:
    data_type = [str(t) for t in prop.get("dataType") or ["text"]]
    text_like = data_type[0] in ("text", "text[]")
    normal: dict[str, Any] = {
        "name": prop["name"],
        "dataType": data_type,
        "description": prop.get("description"),
        "indexFilterable": prop.get("indexFilterable", True),
        "indexSearchable": prop.get("indexSearchable", text_like),
        "indexRangeFilters": prop.get("indexRangeFilters", False),
    }
    if text_like:
        normal["tokenization"] = prop.get("tokenization") or "word"
    if prop.get("moduleConfig"):
        normal["moduleConfig"] = prop["moduleConfig"]
    return {k: v for k, v in normal.items() if v is not None}


HNSW_DEFAULTS: dict[str, Any] = {
    "skip": False,
    "cleanupIntervalSeconds": 300,
    "maxConnections": 32,
    "efConstruction": 128,
    "ef": -1,
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1000000000000,
    "flatSearchCutoff": 40000,
    "distance": "cosine",
    "pq": {
        "enabled": False,
        "bitCompression": False,
        "segments": 0,
        "centroids": 256,
        "trainingLimit": 100000,
        "encoder": {"type": "kmeans", "distribution": "log-normal"},
    },
    "bq": {"enabled": False},
    "sq": {"enabled": False, "trainingLimit": 100000, "rescoreLimit": 20},
    "filterStrategy": "sweeping",
    "multivector": {"enabled": False, "muvera": {"enabled": False}, "aggregation": "maxSim"},
}


def normalise_class(body: dict[str, Any], available_vectorisers: Iterable[str] = ("none",)) -> dict[str, Any]:
    """The class as POST /v1/schema stores and GET reports it: every default the real server fills in."""
    name = body.get("class")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][_0-9A-Za-z]*", name):
        raise WeaviateError(422, f"'{name}' is not a valid class name")
    name = name[0].upper() + name[1:]
    vectorisers = set(available_vectorisers)
    vector_config: dict[str, Any] = {}
    for vector_name, wanted in (body.get("vectorConfig") or {}).items():
        vectoriser = wanted.get("vectorizer") or {"none": {}}
        module = next(iter(vectoriser))
        if module not in vectorisers:
            raise WeaviateError(
                422, f'class.VectorConfig.Vectorizer module with name "{module}" does not exist'
            )
        vector_config[vector_name] = {
            "vectorizer": vectoriser,
            "vectorIndexType": wanted.get("vectorIndexType") or "hnsw",
            "vectorIndexConfig": {**copy.deepcopy(HNSW_DEFAULTS), **(wanted.get("vectorIndexConfig") or {})},
        }
    legacy = body.get("vectorizer")
    if legacy is not None and legacy not in vectorisers:
        raise WeaviateError(422, f'vectorizer: no module with name "{legacy}" present')
    multi_tenancy = body.get("multiTenancyConfig") or {}
    enabled = bool(multi_tenancy.get("enabled", False))
    inverted = body.get("invertedIndexConfig") or {}
    config: dict[str, Any] = {
        "class": name,
        "description": body.get("description"),
        "properties": [normalise_property(p) for p in body.get("properties") or []],
        "invertedIndexConfig": {
            "bm25": {"b": BM25_B, "k1": BM25_K1, **(inverted.get("bm25") or {})},
            "cleanupIntervalSeconds": inverted.get("cleanupIntervalSeconds", 60),
            "stopwords": {
                "preset": "en",
                "additions": None,
                "removals": None,
                **(inverted.get("stopwords") or {}),
            },
            "indexNullState": inverted.get("indexNullState", False),
            "indexPropertyLength": inverted.get("indexPropertyLength", False),
            "indexTimestamps": inverted.get("indexTimestamps", False),
            "usingBlockMaxWAND": True,
        },
        "multiTenancyConfig": {
            "enabled": enabled,
            "autoTenantCreation": bool(multi_tenancy.get("autoTenantCreation", False)),
            "autoTenantActivation": bool(multi_tenancy.get("autoTenantActivation", False)),
        },
        "replicationConfig": {
            "factor": 1,
            "asyncEnabled": False,
            "deletionStrategy": "NoAutomatedResolution",
            **(body.get("replicationConfig") or {}),
        },
        "shardingConfig": (
            {
                "virtualPerPhysical": 0,
                "desiredCount": 0,
                "actualCount": 0,
                "desiredVirtualCount": 0,
                "actualVirtualCount": 0,
                "key": "",
                "strategy": "",
                "function": "",
            }
            if enabled
            else {
                "virtualPerPhysical": 128,
                "desiredCount": 1,
                "actualCount": 1,
                "desiredVirtualCount": 128,
                "actualVirtualCount": 128,
                "key": "_id",
                "strategy": "hash",
                "function": "murmur3",
            }
        ),
    }
    if vector_config:
        config["vectorConfig"] = vector_config
    else:
        config["vectorizer"] = legacy or "none"
        config["vectorIndexType"] = body.get("vectorIndexType") or "hnsw"
        config["vectorIndexConfig"] = {
            **copy.deepcopy(HNSW_DEFAULTS),
            **(body.get("vectorIndexConfig") or {}),
        }
    return {k: v for k, v in config.items() if v is not None}


Predicate = Callable[[StoredObject], bool]


class Collection:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.tenants: dict[str, str] = {}
        self.shards: dict[str, dict[str, StoredObject]] = {} if self.multi_tenant else {"": {}}
        # Each vector index (one per tenant and vector) takes the length of its first vector; the real server
        # refuses any other after it.
        self.dimensions: dict[tuple[str, str], int] = {}

    @property
    def name(self) -> str:
        return str(self.config["class"])

    @property
    def multi_tenant(self) -> bool:
        return bool(self.config["multiTenancyConfig"]["enabled"])

    def data_types(self) -> dict[str, str]:
        return {p["name"]: p["dataType"][0] for p in self.config["properties"]}

    def searchable(self) -> list[str]:
        return [
            p["name"]
            for p in self.config["properties"]
            if p.get("indexSearchable") and p["dataType"][0] in ("text", "text[]")
        ]

    def vector_names(self) -> list[str]:
        return list(self.config.get("vectorConfig") or {"default": None})

    def stopwords(self) -> frozenset[str]:
        settings = self.config["invertedIndexConfig"]["stopwords"]
        words = set(EN_STOPWORDS if settings.get("preset", "en") == "en" else ())
        words |= set(settings.get("additions") or ())
        words -= set(settings.get("removals") or ())
        return frozenset(words)

    # Tenants

    def add_tenant(self, name: str, status: str = ACTIVE) -> None:
        self._require_multi_tenancy()
        if not TENANT_NAME.fullmatch(name):
            raise WeaviateError(
                422,
                f"tenant name should only contain alphanumeric characters (a-z, A-Z, 0-9), underscore (_), "
                f"and hyphen (-), with a length between 1 and 64 characters: {name!r}",
            )
        self.tenants[name] = TENANT_STATUSES.get(status.upper(), status.upper())
        self.shards.setdefault(name, {})

    def update_tenant(self, name: str, status: str) -> None:
        self._require_multi_tenancy()
        if name not in self.tenants:
            raise WeaviateError(422, f'tenant not found: "{name}"')
        self.tenants[name] = TENANT_STATUSES.get(status.upper(), status.upper())

    def remove_tenant(self, name: str) -> None:
        self._require_multi_tenancy()
        self.tenants.pop(name, None)
        self.shards.pop(name, None)
        self.dimensions = {key: length for key, length in self.dimensions.items() if key[0] != name}

    def _require_multi_tenancy(self) -> None:
        if not self.multi_tenant:
            raise WeaviateError(422, f"multi-tenancy is not enabled for class {self.name!r}")

    def shard(self, tenant: str, *, writing: bool = False) -> dict[str, StoredObject]:
        """The objects a request may see: its tenant's on a multi-tenant collection, where a write may create the
        tenant when auto creation is on; refused as the real server refuses it otherwise."""
        if self.multi_tenant:
            if not tenant:
                raise WeaviateError(
                    422, f"class {self.name} has multi-tenancy enabled, but request was without tenant"
                )
            if tenant not in self.tenants:
                if writing and self.config["multiTenancyConfig"]["autoTenantCreation"]:
                    self.add_tenant(tenant)
                else:
                    raise WeaviateError(422, f'tenant not found: "{tenant}"')
            if self.tenants[tenant] != ACTIVE:
                if writing and self.config["multiTenancyConfig"]["autoTenantActivation"]:
                    self.tenants[tenant] = ACTIVE
                else:
                    raise WeaviateError(422, f"tenant not active: '{tenant}'")
            return self.shards[tenant]
        if tenant:
            raise WeaviateError(
                422, f"class {self.name} has multi-tenancy disabled, but request was with tenant"
            )
        return self.shards[""]

    # Objects

    def typed_properties(self, properties: dict[str, Any]) -> dict[str, Any]:
        """Properties as their schema types; unknown ones are added to the schema as auto-schema does."""
        types = self.data_types()
        typed: dict[str, Any] = {}
        for prop, value in properties.items():
            if prop not in types:
                if value is None:
                    continue
                self.config["properties"].append(
                    normalise_property({"name": prop, "dataType": [infer_type(value)]})
                )
                types = self.data_types()
            typed[prop] = coerce(self.name, prop, types[prop], value)
        return typed

    def named_vectors(
        self, vector: Sequence[float] | None, vectors: dict[str, Sequence[float]]
    ) -> dict[str, list[float]]:
        names = self.vector_names()
        named = {name: [float(x) for x in values] for name, values in vectors.items() if len(values) > 0}
        for name in named:
            if name not in names:
                raise WeaviateError(422, f"collection {self.name} does not have a vector named {name!r}")
        if vector is not None and len(vector) > 0:
            if len(names) != 1:
                raise WeaviateError(
                    422,
                    f"collection {self.name} is configured with named vectors {names}: give the vector's name",
                )
            named[names[0]] = [float(x) for x in vector]
        return named

    def _check_lengths(self, tenant: str, vectors: dict[str, list[float]]) -> None:
        for name, values in vectors.items():
            expected = self.dimensions.setdefault((tenant, name), len(values))
            if len(values) != expected:
                raise WeaviateError(
                    422,
                    f"new node has a vector with length {len(values)}. "
                    f"Existing nodes have vectors with length {expected}",
                )

    def put(
        self,
        tenant: str,
        object_id: str,
        properties: dict[str, Any],
        vector: Sequence[float] | None = None,
        vectors: dict[str, Sequence[float]] | None = None,
        *,
        create_only: bool = False,
    ) -> StoredObject:
        shard = self.shard(tenant, writing=True)
        object_id = str(uuid_lib.UUID(object_id))
        if create_only and object_id in shard:
            raise WeaviateError(422, f"id '{object_id}' already exists")
        named = self.named_vectors(vector, vectors or {})
        self._check_lengths(tenant, named)
        stored = StoredObject(object_id, self.typed_properties(properties), named)
        if object_id in shard:
            stored.created_ms = shard[object_id].created_ms
        shard[object_id] = stored
        return stored

    def merge(
        self, tenant: str, object_id: str, properties: dict[str, Any], vectors: dict[str, list[float]]
    ) -> None:
        shard = self.shard(tenant, writing=True)
        stored = shard.get(object_id)
        if stored is None:
            raise WeaviateError(404, f"object {object_id} not found")
        self._check_lengths(tenant, vectors)
        stored.properties.update(self.typed_properties(properties))
        stored.vectors.update(vectors)
        stored.updated_ms = now_ms()

    def get(self, tenant: str, object_id: str) -> StoredObject | None:
        return self.shard(tenant).get(object_id)

    def delete(self, tenant: str, object_id: str) -> bool:
        return self.shard(tenant).pop(object_id, None) is not None

    # Searches: each returns (object, score or distance) best first, only objects the predicate keeps.

    def bm25(
        self,
        tenant: str,
        query: str,
        keep: Predicate,
        properties: Sequence[str] = (),
        all_terms: bool = False,
    ) -> list[tuple[StoredObject, float]]:
        """BM25 summed over the searched properties (`name^2` weighs one double), each tokenized its own way
        and with its own length normalisation; document frequencies over the tenant's whole shard, as the real
        inverted index counts them. Only objects matching a query term come back."""
        shard = list(self.shard(tenant).values())
        stop = self.stopwords()
        tokenization = {p["name"]: p.get("tokenization", "word") for p in self.config["properties"]}
        searched = [(p.split("^")[0], float(p.split("^")[1]) if "^" in p else 1.0) for p in properties]
        n = len(shard)
        scores: dict[str, float] = {}
        matched: dict[str, set[str]] = {}
        wanted: set[str] = set()
        for prop, weight in searched or [(p, 1.0) for p in self.searchable()]:
            how = tokenization.get(prop, "word")
            terms = [t for t in dict.fromkeys(tokenize(query, how)) if how != "word" or t not in stop]
            wanted.update(terms)
            docs = [_text_tokens(obj.properties.get(prop), how) for obj in shard]
            average = sum(len(d) for d in docs) / n if n else 1.0
            for term in terms:
                frequency = sum(1 for d in docs if term in d)
                idf = math.log(1 + (n - frequency + 0.5) / (frequency + 0.5))
                for obj, doc in zip(shard, docs, strict=True):
                    tf = doc.count(term)
                    if tf and keep(obj):
                        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(doc) / (average or 1.0))
                        scores[obj.id] = scores.get(obj.id, 0.0) + weight * idf * tf * (BM25_K1 + 1) / (
                            tf + norm
                        )
                        matched.setdefault(obj.id, set()).add(term)
        scored = [
            (obj, scores[obj.id])
            for obj in shard
            if obj.id in scores and (not all_terms or matched[obj.id] == wanted)
        ]
        scored.sort(key=lambda pair: -pair[1])
        return scored

    def nearest(
        self,
        tenant: str,
        vector: Sequence[float],
        target: str,
        keep: Predicate,
        max_distance: float | None = None,
    ) -> list[tuple[StoredObject, float]]:
        """Cosine distance (1 - cosine similarity) to every object with that vector, nearest first."""
        if target not in self.vector_names():
            raise WeaviateError(422, f"collection {self.name} does not have a vector named {target!r}")
        found = []
        for obj in self.shard(tenant).values():
            stored = obj.vectors.get(target)
            if stored is None or not keep(obj):
                continue
            if len(stored) != len(vector):
                raise WeaviateError(500, f"vector lengths don't match: {len(vector)} vs {len(stored)}")
            distance = cosine_distance(vector, stored)
            if max_distance is None or distance <= max_distance:
                found.append((obj, distance))
        found.sort(key=lambda pair: pair[1])
        return found

    def all(self, tenant: str, keep: Predicate) -> list[StoredObject]:
        return [obj for obj in self.shard(tenant).values() if keep(obj)]


def _text_tokens(value: Any, tokenization: str) -> list[str]:
    if isinstance(value, str):
        return tokenize(value, tokenization)
    if isinstance(value, list):
        return [t for item in value if isinstance(item, str) for t in tokenize(item, tokenization)]
    return []


def cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return 1.0 - (dot / norms if norms else 0.0)


def relative_score_fusion(
    keyword: list[tuple[StoredObject, float]], vector: list[tuple[StoredObject, float]], alpha: float
) -> list[tuple[StoredObject, float]]:
    """Weaviate's relativeScoreFusion: each result list scaled to [0, 1] (best 1, worst 0; all 1 when equal),
    weighted 1-alpha for keywords and alpha for vectors, summed per object, best first."""
    fused: dict[str, tuple[StoredObject, float]] = {}
    # Vector results rank by distance: a smaller one is better, so its scale is inverted.
    for results, weight, higher_is_better in ((keyword, 1 - alpha, True), (vector, alpha, False)):
        if not results or weight == 0:
            continue
        values = [value for _, value in results]
        best, worst = (max(values), min(values)) if higher_is_better else (min(values), max(values))
        for obj, value in results:
            scaled = 1.0 if best == worst else (value - worst) / (best - worst)
            previous = fused.get(obj.id, (obj, 0.0))[1]
            fused[obj.id] = (obj, previous + scaled * weight)
    return sorted(fused.values(), key=lambda pair: -pair[1])


class WeaviateData:
    """Every collection the server holds; kept by the server across restarts unless told to drop it."""

    def __init__(self, vectorisers: Iterable[str] = ("none",)) -> None:
        self.collections: dict[str, Collection] = {}
        self.vectorisers = tuple(vectorisers)

    def collection(self, name: str) -> Collection:
        found = self.collections.get(name[:1].upper() + name[1:])
        if found is None:
            raise WeaviateError(404, f"class {name!r} not found")
        return found

    def create(self, body: dict[str, Any]) -> Collection:
        config = normalise_class(body, self.vectorisers)
        if config["class"] in self.collections:
            raise WeaviateError(422, f"class name {config['class']!r} already exists")
        collection = Collection(config)
        self.collections[collection.name] = collection
        return collection

    def drop(self) -> None:
        self.collections.clear()
