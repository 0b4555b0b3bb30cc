"""The Cosmos DB (NoSQL API) DocumentStore, through the azure-cosmos SDK.

One SDK call per method (a query counts one per page), each recorded on the OperationCounter with
its request charge. Concurrency is optimistic: replace sends the read `_etag` as If-Match
(`MatchConditions.IfNotModified`) and a 412 becomes ConcurrencyConflict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos import exceptions as cosmos_errors

from shared.domain.errors import ConcurrencyConflict
from shared.platform.documents import (
    ALL_CONTAINERS,
    AlreadyExists,
    ContainerSpec,
    Guard,
    OperationCounter,
    Page,
    Query,
    StoredDocument,
    check_field,
    strip_system_properties,
)


def _is_not_found(exc: cosmos_errors.CosmosHttpResponseError) -> bool:
    if exc.status_code == 404:
        return True
    # @vercel/cosmosdb-server 1.0.1 crashes (500, TypeError on `data.id`) instead of answering 404 when a
    # point read misses; real Cosmos never sends this text. Remove once the emulator is patched.
    return exc.status_code == 500 and "Cannot read properties of undefined" in str(exc.message)


def build_query(
    query: Query, partition_key_field: str | None, partition_key: str | None
) -> tuple[str, list[dict[str, Any]]]:
    """Parameterised SQL: values are always parameters; field names are validated paths (Query checks)."""
    equals: dict[str, Any] = dict(query.equals)
    if partition_key is not None and partition_key_field is not None:
        # Also a filter in the text: the local emulator ignores the partition-key header on queries.
        equals.setdefault(partition_key_field, partition_key)
    top = f"TOP {int(query.limit)} " if query.limit is not None else ""
    clauses, params = [], []
    for i, (name, value) in enumerate(equals.items()):
        clauses.append(f"c.{name} = @p{i}")
        params.append({"name": f"@p{i}", "value": value})
    for name, values in query.within.items():
        if not values:
            clauses.append("false")  # a member of nothing: no document matches
            continue
        names = [f"@p{len(params) + j}" for j in range(len(values))]
        clauses.append(f"c.{name} IN ({', '.join(names)})")
        params += [{"name": n, "value": v} for n, v in zip(names, values, strict=True)]
    sql = f"SELECT {top}* FROM c"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    if query.order_by is not None:
        sql += f" ORDER BY c.{query.order_by} {'DESC' if query.descending else 'ASC'}"
    return sql, params


def filter_predicate(guard: Guard) -> str | None:
    """The guard as a patch filter predicate. Values are written as JSON literals (a patch predicate takes
    no parameters); JSON's string escapes are Cosmos SQL's, so a value cannot end its literal early."""
    clauses = [f"c.{name} = {json.dumps(value)}" for name, value in guard.equals.items()]
    clauses += [
        f"(NOT IS_DEFINED(c.{name}) OR IS_NULL(c.{name}) OR c.{name} < {int(limit)})"
        for name, limit in guard.below.items()
    ]
    clauses += [
        f"ARRAY_CONTAINS(c.{name}, {json.dumps(dict(element))}, true)"
        for name, elements in guard.contains.items()
        for element in elements
    ]
    return "FROM c WHERE " + " AND ".join(clauses) if clauses else None


class CosmosDocumentStore:
    def __init__(self, database: DatabaseProxy, counter: OperationCounter | None = None) -> None:
        self.counter = counter or OperationCounter()
        self._database = database
        self._containers: dict[str, ContainerProxy] = {}

    def _container(self, spec: ContainerSpec) -> ContainerProxy:
        proxy = self._containers.get(spec.name)
        if proxy is None:
            proxy = self._containers[spec.name] = self._database.get_container_client(spec.name)
        return proxy

    def _hook(self, operation: str, spec: ContainerSpec) -> Callable[[Mapping[str, Any], Any], None]:
        def record(headers: Mapping[str, Any], _body: Any) -> None:
            try:
                charge = float(headers.get("x-ms-request-charge", 0) or 0)
            except (TypeError, ValueError):
                charge = 0.0
            self.counter.record(operation, spec.name, charge)

        return record

    @staticmethod
    def _stored(body: Mapping[str, Any]) -> StoredDocument:
        return StoredDocument(strip_system_properties(body), str(body["_etag"]))

    def read(self, container: ContainerSpec, doc_id: str, partition_key: str) -> StoredDocument | None:
        try:
            body = self._container(container).read_item(
                doc_id, partition_key=partition_key, response_hook=self._hook("read", container)
            )
        except cosmos_errors.CosmosHttpResponseError as exc:
            if _is_not_found(exc):
                self.counter.record("read", container.name)
                return None
            raise
        return self._stored(body)

    def create(self, container: ContainerSpec, body: dict[str, Any]) -> StoredDocument:
        try:
            created = self._container(container).create_item(
                body, response_hook=self._hook("create", container)
            )
        except cosmos_errors.CosmosResourceExistsError as exc:
            self.counter.record("create", container.name)
            raise AlreadyExists(f"{container.name}/{body['id']} already exists") from exc
        return self._stored(created)

    def replace(self, container: ContainerSpec, body: dict[str, Any], etag: str) -> StoredDocument:
        try:
            replaced = self._container(container).replace_item(
                body["id"],
                body,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                response_hook=self._hook("replace", container),
            )
        except cosmos_errors.CosmosHttpResponseError as exc:
            if exc.status_code in (412, 404) or _is_not_found(exc):
                self.counter.record("replace", container.name)
                raise ConcurrencyConflict(f"{container.name}/{body['id']} changed since it was read") from exc
            raise
        return self._stored(replaced)

    def upsert(self, container: ContainerSpec, body: dict[str, Any]) -> StoredDocument:
        return self._stored(
            self._container(container).upsert_item(body, response_hook=self._hook("upsert", container))
        )

    def patch(
        self,
        container: ContainerSpec,
        doc_id: str,
        partition_key: str,
        fields: Mapping[str, Any],
        guard: Guard,
    ) -> StoredDocument | None:
        operations = [
            {"op": "set", "path": "/" + check_field(name).replace(".", "/"), "value": value}
            for name, value in fields.items()
        ]
        try:
            patched = self._container(container).patch_item(
                doc_id,
                partition_key=partition_key,
                patch_operations=operations,
                filter_predicate=filter_predicate(guard),
                response_hook=self._hook("patch", container),
            )
        except cosmos_errors.CosmosHttpResponseError as exc:
            if exc.status_code == 412 or _is_not_found(exc):
                self.counter.record("patch", container.name)
                return None
            raise
        return self._stored(patched)

    def delete(self, container: ContainerSpec, doc_id: str, partition_key: str) -> bool:
        try:
            self._container(container).delete_item(
                doc_id, partition_key=partition_key, response_hook=self._hook("delete", container)
            )
        except cosmos_errors.CosmosHttpResponseError as exc:
            if _is_not_found(exc):
                self.counter.record("delete", container.name)
                return False
            raise
        return True

    def _query_iter(
        self, container: ContainerSpec, query: Query, partition_key: str | None, page_size: int | None
    ) -> Any:
        sql, params = build_query(query, container.partition_key_field, partition_key)
        options: dict[str, Any] = {"parameters": params, "response_hook": self._hook("query", container)}
        if page_size is not None:
            options["max_item_count"] = page_size
        if partition_key is None:
            options["enable_cross_partition_query"] = True
        else:
            options["partition_key"] = partition_key
        return self._container(container).query_items(sql, **options)

    def query(
        self, container: ContainerSpec, query: Query, *, partition_key: str | None
    ) -> list[StoredDocument]:
        return [self._stored(d) for d in self._query_iter(container, query, partition_key, None)]

    def query_page(
        self,
        container: ContainerSpec,
        query: Query,
        *,
        partition_key: str | None,
        page_size: int,
        continuation: str | None,
    ) -> Page:
        pages = self._query_iter(container, query, partition_key, page_size).by_page(continuation)
        try:
            documents = [self._stored(d) for d in next(pages)]
        except StopIteration:
            return Page([], None)
        return Page(documents, pages.continuation_token or None)


def ensure_containers(
    client: CosmosClient, database_name: str, specs: tuple[ContainerSpec, ...] = ALL_CONTAINERS
) -> DatabaseProxy:
    """Create the database and containers if missing; idempotent, so every cold start may call it.

    Serverless accounts take no throughput settings, so none are passed. In Azure, infra/ creates the
    same containers (docs/data-model.md is the contract); this keeps local stacks and tests self-contained.
    """
    database = client.create_database_if_not_exists(database_name)
    for spec in specs:
        options: dict[str, Any] = {"partition_key": PartitionKey(path=spec.partition_key_path)}
        if spec.default_ttl is not None:
            options["default_ttl"] = spec.default_ttl
        database.create_container_if_not_exists(spec.name, **options)
    return database
