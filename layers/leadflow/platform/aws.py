"""The process's boto3 clients, typed per service.

What it owns, and the invariants it keeps:

- **One client per service and process.** ``client(service)`` builds a boto3 client once, with
  the project's retry and timeout configuration (``BOTO_CONFIG``: standard retries, 3 attempts,
  2 s to connect, 5 s to read); ``client.cache_clear()`` forgets them (the local runtime, tests).
- **Built when first used.** ``lazy_client(service)`` answers a proxy that builds the client at
  its first attribute access: for clients a function needs on a rare path only. With Lambda
  SnapStart they are built before the snapshot instead (``build_lazy_clients``): a restored
  environment builds no client.
- **Typed for the checker, free at runtime.** The ``mypy_boto3_*`` stubs (dev dependencies, never
  in the Lambda layer) are imported under ``TYPE_CHECKING`` only: ``client("dynamodb")`` is a
  ``DynamoDBClient`` to mypy and a plain boto3 client at runtime, so a cold start imports nothing
  more than boto3. A service missing from ``Service`` is a type error: add its stub package to the
  ``dev`` extra and its overload here.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config

from leadflow.kernel.snapshot import before_snapshot

if TYPE_CHECKING:  # dev-only stubs: never imported at runtime
    from functools import _CacheInfo
    from typing import Protocol

    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

    class ClientFactory(Protocol):
        """``service -> client``: the typed client of each service the project calls."""

        @overload
        def __call__(self, service: Literal["cloudformation"], /) -> CloudFormationClient: ...
        @overload
        def __call__(self, service: Literal["dynamodb"], /) -> DynamoDBClient: ...
        @overload
        def __call__(self, service: Literal["dynamodbstreams"], /) -> DynamoDBStreamsClient: ...
        @overload
        def __call__(self, service: Literal["events"], /) -> EventBridgeClient: ...
        @overload
        def __call__(self, service: Literal["lambda"], /) -> LambdaClient: ...
        @overload
        def __call__(self, service: Literal["s3"], /) -> S3Client: ...
        @overload
        def __call__(self, service: Literal["secretsmanager"], /) -> SecretsManagerClient: ...
        @overload
        def __call__(self, service: Literal["ses"], /) -> SESClient: ...
        @overload
        def __call__(self, service: Literal["sns"], /) -> SNSClient: ...
        @overload
        def __call__(self, service: Literal["sqs"], /) -> SQSClient: ...
        @overload
        def __call__(self, service: Literal["stepfunctions"], /) -> SFNClient: ...

    class CachedClientFactory(ClientFactory, Protocol):
        """A ``ClientFactory`` that keeps one client per service (``functools.cache``)."""

        def cache_clear(self) -> None: ...
        def cache_info(self) -> _CacheInfo: ...


Service = Literal[
    "cloudformation",
    "dynamodb",
    "dynamodbstreams",
    "events",
    "lambda",
    "s3",
    "secretsmanager",
    "ses",
    "sns",
    "sqs",
    "stepfunctions",
]
"""The services the project calls (each has its ``mypy_boto3_*`` stub in the ``dev`` extra)."""

BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


@cache
def _cached_client(service: Service) -> Any:
    return boto3.client(service, config=BOTO_CONFIG)


client: CachedClientFactory = _cached_client
"""One boto3 client per service and process, typed per service."""


class LazyClient:
    """The boto3 client of ``service`` (``make(service)``, the process's ``client`` by default),
    built at its first call.

    Only for clients a function needs on a rare path (SMS, sales hand-offs, webhook dead letters,
    early ``wait_for`` answers): creating a boto3 client loads its service model and endpoint
    rules (~20 ms, more than the rest of a small handler's import), so a function creates at
    cold start only the clients its every invocation uses."""

    def __init__(self, service: str, make: Callable[[Any], Any] | None = None) -> None:
        """``make``: what builds (or finds) the client, the process's ``client`` by default."""
        self.service = service
        self._make: Callable[[Any], Any] = make or client
        _LAZY_CLIENTS.add(self)

    def build(self) -> Any:
        """The client (built now if ``make`` has not built it yet)."""
        return self._make(self.service)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.build(), name)


_LAZY_CLIENTS: weakref.WeakSet[LazyClient] = weakref.WeakSet()


@before_snapshot
def build_lazy_clients() -> None:
    """With Lambda SnapStart the clients of rare paths are built before the snapshot: deferring them
    saves nothing there, and a restored environment pays for none of them."""
    for lazy in list(_LAZY_CLIENTS):
        lazy.build()


def _lazy(service: Service) -> Any:
    return LazyClient(service)


lazy_client: ClientFactory = _lazy
"""A ``LazyClient``, typed as the service's client (it answers every attribute the client has)."""
