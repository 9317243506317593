"""Rotation of the link-signing key ring: the four steps of the Secrets Manager rotation protocol.

``createSecret`` stages a ring with a fresh current key in front of the old ones (AWSPENDING),
``setSecret`` has nothing to do (no external system holds the key), ``testSecret`` checks the
staged ring is well-formed and still verifies tokens signed with the old current key, and
``finishSecret`` moves AWSCURRENT to it. Functions pick it up when their 5-minute cache expires or
at the first token they cannot verify; no redeploy. Every step is idempotent (Secrets Manager may
call a step more than once)."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from leadflow.kernel.observability import logger
from leadflow.platform.tokens import KeyRing

KEY_CHARS = 64


class RotationEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    step: Literal["createSecret", "setSecret", "testSecret", "finishSecret"] = Field(alias="Step")
    secret_id: str = Field(alias="SecretId", min_length=1)
    token: str = Field(alias="ClientRequestToken", min_length=1)


class RotationError(Exception):
    """The secret is not in a state this rotation can continue from."""


class SigningKeyRotation:
    def __init__(self, secretsmanager: Any) -> None:
        self._sm = secretsmanager

    def run(self, event: RotationEvent) -> None:
        metadata = self._sm.describe_secret(SecretId=event.secret_id)
        if not metadata.get("RotationEnabled"):
            raise RotationError("rotation is not enabled on the secret")
        stages = metadata.get("VersionIdsToStages", {})
        if event.token not in stages:
            raise RotationError("the rotation's version is not a version of the secret")
        if "AWSCURRENT" in stages[event.token]:
            logger.info("version already current", extra={"step": event.step})
            return
        if "AWSPENDING" not in stages[event.token]:
            raise RotationError("the rotation's version is not pending")
        getattr(self, f"_{event.step}")(event, stages)
        logger.info("rotation step done", extra={"step": event.step})

    def _current(self, secret_id: str) -> KeyRing:
        value = self._sm.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]
        return KeyRing.parse(value)

    def _createSecret(self, event: RotationEvent, stages: dict[str, list[str]]) -> None:
        try:
            self._sm.get_secret_value(
                SecretId=event.secret_id, VersionId=event.token, VersionStage="AWSPENDING"
            )
            return  # staged by an earlier call of this step
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        ring = self._current(event.secret_id).rotated(secrets.token_urlsafe(KEY_CHARS)[:KEY_CHARS])
        self._sm.put_secret_value(
            SecretId=event.secret_id,
            ClientRequestToken=event.token,
            SecretString=ring.model_dump_json(),
            VersionStages=["AWSPENDING"],
        )

    def _setSecret(self, event: RotationEvent, stages: dict[str, list[str]]) -> None:
        """Nothing outside the secret holds the key."""

    def _testSecret(self, event: RotationEvent, stages: dict[str, list[str]]) -> None:
        pending = KeyRing.parse(
            self._sm.get_secret_value(
                SecretId=event.secret_id, VersionId=event.token, VersionStage="AWSPENDING"
            )["SecretString"]
        )
        if self._current(event.secret_id).current not in (pending.current, *pending.previous):
            raise RotationError("the staged key ring dropped the current key: sent links would break")

    def _finishSecret(self, event: RotationEvent, stages: dict[str, list[str]]) -> None:
        current = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
        self._sm.update_secret_version_stage(
            SecretId=event.secret_id,
            VersionStage="AWSCURRENT",
            MoveToVersionId=event.token,
            **({"RemoveFromVersionId": current} if current else {}),
        )
