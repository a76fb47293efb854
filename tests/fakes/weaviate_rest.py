"""The REST half of the local Weaviate server (aiohttp): meta and readiness, schema, tenants and objects, with
the real server's status codes and `{"error": [{"message": ...}]}` bodies. (weaviate-client v4 batches and
deletes by filter over gRPC, so the REST batch endpoints are not here.)"""

from __future__ import annotations

import json
import uuid as uuid_lib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.weaviate_store import (
    Collection,
    StoredObject,
    WeaviateData,
    WeaviateError,
    normalise_property,
    to_json,
)

SERVER_VERSION = "1.32.5"
GRPC_MAX_MESSAGE_SIZE = 104858000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": [{"message": message}]}, status=status)


@web.middleware
async def weaviate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WeaviateError as exc:
        if request.method == "HEAD":
            return web.Response(status=exc.status)
        return error_response(exc.status, exc.message)


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise WeaviateError(400, f"the request body is not JSON: {exc}") from exc


def object_json(
    collection: Collection, tenant: str, stored: StoredObject, with_vector: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "class": collection.name,
        "id": stored.id,
        "properties": {name: to_json(value) for name, value in stored.properties.items()},
        "creationTimeUnix": stored.created_ms,
        "lastUpdateTimeUnix": stored.updated_ms,
    }
    if tenant:
        body["tenant"] = tenant
    if with_vector:
        body["vectors"] = stored.vectors
    return body


class WeaviateRest:
    def __init__(self, data: WeaviateData) -> None:
        self.data = data

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(weaviate_errors)
        app.router.add_get("/v1/meta", self.meta)
        app.router.add_get("/v1/.well-known/ready", self.ok)
        app.router.add_get("/v1/.well-known/live", self.ok)
        app.router.add_get("/v1/schema", self.schema)
        app.router.add_post("/v1/schema", self.create_class)
        app.router.add_get("/v1/schema/{cls}", self.get_class)
        app.router.add_put("/v1/schema/{cls}", self.update_class)
        app.router.add_delete("/v1/schema/{cls}", self.delete_class)
        app.router.add_post("/v1/schema/{cls}/properties", self.add_property)
        app.router.add_get("/v1/schema/{cls}/tenants", self.get_tenants)
        app.router.add_post("/v1/schema/{cls}/tenants", self.add_tenants)
        app.router.add_put("/v1/schema/{cls}/tenants", self.update_tenants)
        app.router.add_delete("/v1/schema/{cls}/tenants", self.delete_tenants)
        app.router.add_route("*", "/v1/schema/{cls}/tenants/{tenant}", self.get_tenant)
        app.router.add_post("/v1/objects", self.create_object)
        app.router.add_route("*", "/v1/objects/{cls}/{id}", self.one_object)

    async def meta(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "hostname": f"http://{request.host}",
                "modules": {},
                "version": SERVER_VERSION,
                "grpcMaxMessageSize": GRPC_MAX_MESSAGE_SIZE,
            }
        )

    async def ok(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    # Schema

    async def schema(self, request: web.Request) -> web.Response:
        return web.json_response({"classes": [c.config for c in self.data.collections.values()]})

    async def create_class(self, request: web.Request) -> web.Response:
        return web.json_response(self.data.create(await json_body(request)).config)

    async def get_class(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.data.collection(request.match_info["cls"]).config)
        except WeaviateError:
            return web.Response(status=404)  # the real server answers an unknown class with an empty 404

    async def update_class(self, request: web.Request) -> web.Response:
        collection = self.data.collection(request.match_info["cls"])
        body = await json_body(request)
        for key in ("description", "invertedIndexConfig", "replicationConfig", "vectorIndexConfig"):
            if key in body:
                collection.config[key] = body[key]
        if "multiTenancyConfig" in body:
            wanted = body["multiTenancyConfig"]
            if bool(wanted.get("enabled", collection.multi_tenant)) != collection.multi_tenant:
                raise WeaviateError(
                    422, "enabling or disabling multi-tenancy on an existing class is not supported"
                )
            collection.config["multiTenancyConfig"].update(wanted)
        return web.json_response(collection.config)

    async def delete_class(self, request: web.Request) -> web.Response:
        name = request.match_info["cls"]
        self.data.collections.pop(name[:1].upper() + name[1:], None)
        return web.Response(status=200)

    async def add_property(self, request: web.Request) -> web.Response:
        collection = self.data.collection(request.match_info["cls"])
        prop = normalise_property(await json_body(request))
        if prop["name"] in collection.data_types():
            raise WeaviateError(422, f"property {prop['name']!r} already exists")
        collection.config["properties"].append(prop)
        return web.json_response(prop)

    # Tenants

    def _tenant_collection(self, request: web.Request) -> Collection:
        collection = self.data.collection(request.match_info["cls"])
        if not collection.multi_tenant:
            raise WeaviateError(422, f"multi-tenancy is not enabled for class {collection.name!r}")
        return collection

    async def get_tenants(self, request: web.Request) -> web.Response:
        collection = self._tenant_collection(request)
        return web.json_response([{"name": n, "activityStatus": s} for n, s in collection.tenants.items()])

    async def add_tenants(self, request: web.Request) -> web.Response:
        collection = self._tenant_collection(request)
        body = await json_body(request)
        for tenant in body:
            if tenant["name"] not in collection.tenants:  # adding a tenant that exists changes nothing
                collection.add_tenant(tenant["name"], tenant.get("activityStatus") or "ACTIVE")
        return web.json_response(
            [{"name": t["name"], "activityStatus": collection.tenants[t["name"]]} for t in body]
        )

    async def update_tenants(self, request: web.Request) -> web.Response:
        collection = self._tenant_collection(request)
        body = await json_body(request)
        for tenant in body:
            collection.update_tenant(tenant["name"], tenant.get("activityStatus") or "ACTIVE")
        return web.json_response(
            [{"name": t["name"], "activityStatus": collection.tenants[t["name"]]} for t in body]
        )

    async def delete_tenants(self, request: web.Request) -> web.Response:
        collection = self._tenant_collection(request)
        for name in await json_body(request):
            collection.remove_tenant(name)
        return web.Response(status=200)

    async def get_tenant(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        collection = self._tenant_collection(request)
        name = request.match_info["tenant"]
        if name not in collection.tenants:
            return web.Response(status=404)
        if request.method == "HEAD":
            return web.Response(status=200)
        return web.json_response({"name": name, "activityStatus": collection.tenants[name]})

    # Objects

    @staticmethod
    def _object_fields(body: dict[str, Any]) -> tuple[str, dict[str, Any], Any, dict[str, Any]]:
        tenant = body.get("tenant") or ""
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise WeaviateError(422, "properties must be an object")
        return tenant, properties, body.get("vector"), body.get("vectors") or {}

    async def create_object(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        collection = self.data.collection(str(body.get("class") or ""))
        tenant, properties, vector, vectors = self._object_fields(body)
        object_id = str(body.get("id") or uuid_lib.uuid4())
        stored = collection.put(tenant, object_id, properties, vector, vectors, create_only=True)
        return web.json_response(object_json(collection, tenant, stored, with_vector=True))

    async def one_object(self, request: web.Request) -> web.StreamResponse:
        collection = self.data.collection(request.match_info["cls"])
        object_id = request.match_info["id"]
        try:
            object_id = str(uuid_lib.UUID(object_id))
        except ValueError as exc:
            raise WeaviateError(422, f"id {object_id!r} is not a valid uuid") from exc
        tenant = request.query.get("tenant", "")
        if request.method in ("GET", "HEAD"):
            stored = collection.get(tenant, object_id)
            if stored is None:
                return web.Response(status=404)
            if request.method == "HEAD":
                return web.Response(status=204)
            with_vector = "vector" in request.query.get("include", "")
            return web.json_response(object_json(collection, tenant, stored, with_vector))
        if request.method == "DELETE":
            return web.Response(status=204 if collection.delete(tenant, object_id) else 404)
        body = await json_body(request)
        tenant, properties, vector, vectors = self._object_fields(body)
        if collection.get(tenant, object_id) is None:
            return web.Response(status=404)
        if request.method == "PUT":
            stored = collection.put(tenant, object_id, properties, vector, vectors)
            return web.json_response(object_json(collection, tenant, stored, with_vector=True))
        if request.method == "PATCH":
            collection.merge(tenant, object_id, properties, collection.named_vectors(vector, vectors))
            return web.Response(status=204)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "PUT", "PATCH", "DELETE"])
