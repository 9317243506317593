"""Rotating the link-signing key: Secrets Manager drives the rotate function through its four steps;
links sent before the rotation keep working, new links use the new key, nothing is redeployed."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from botocore.exceptions import ClientError

from leadflow import wiring
from leadflow.local.system import LocalSystem, resource_name
from leadflow.platform.rotation import RotationError, RotationEvent, SigningKeyRotation
from leadflow.platform.tokens import MAX_KEYS, InvalidToken, KeyRing, TokenClaims, TokenSigner

SECRET = resource_name("signing-key")
UNSUBSCRIBE = TokenClaims.model_validate({"k": "unsubscribe", "m": "m1", "c": "c01contact"})


def enable_rotation(system: LocalSystem) -> str:
    """Register the rotate function with moto's Lambda (its invokes reach the in-process handler)."""
    iam = system.client("iam")
    role = iam.create_role(
        RoleName="leadflow-local-rotate",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "")
    return str(
        system.client("lambda").create_function(
            FunctionName=resource_name("rotate"),
            Runtime="python3.13",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
    )


def current_ring(system: LocalSystem) -> KeyRing:
    value = system.client("secretsmanager").get_secret_value(SecretId=SECRET)["SecretString"]
    return KeyRing.parse(value)


def test_rotation_keeps_old_links_valid_and_new_links_use_the_new_key() -> None:
    with LocalSystem(background_pump=False) as system:
        function_arn = enable_rotation(system)
        sm = system.client("secretsmanager")
        before = current_ring(system)
        # a function instance that cached the ring before the rotation (its 5-minute cache)
        now = [1000.0]
        stale_source = wiring.signing_key_source(SECRET, now=lambda: now[0])
        stale = TokenSigner(stale_source)
        old_link = stale.sign(UNSUBSCRIBE)

        sm.rotate_secret(
            SecretId=SECRET, RotationLambdaARN=function_arn, RotationRules={"AutomaticallyAfterDays": 90}
        )

        after = current_ring(system)
        assert after.current != before.current
        assert after.previous == [before.current]
        assert len(after.current) >= 32
        stages = sm.describe_secret(SecretId=SECRET)["VersionIdsToStages"]
        [(new_version, new_stages)] = [(v, s) for v, s in stages.items() if "AWSCURRENT" in s]
        assert [v for v, s in stages.items() if "AWSPREVIOUS" in s] != [new_version]
        assert "AWSPREVIOUS" not in new_stages

        fresh = TokenSigner(lambda refresh: after.keys)
        new_link = fresh.sign(UNSUBSCRIBE)
        assert fresh.verify(old_link, "unsubscribe") == UNSUBSCRIBE  # sent before: still valid
        # the stale instance meets a link signed with the new key: it refetches once and accepts it
        assert stale.verify(new_link, "unsubscribe") == UNSUBSCRIBE
        # a forged token makes it refetch at most once per interval, not once per request
        calls = []
        original = sm.get_secret_value

        from aws_lambda_powertools.utilities import parameters

        provider = parameters.secrets.DEFAULT_PROVIDERS.get("secrets")
        assert provider is not None
        provider.client.get_secret_value = lambda **kw: calls.append(kw) or original(**kw)  # type: ignore[method-assign]
        # forged: the MAC's last characters changed (never by chance the same as the real ones)
        forged = new_link[:-2] + ("AA" if new_link[-2:] != "AA" else "QA")
        for _ in range(5):
            with pytest.raises(InvalidToken):
                stale.verify(forged, "unsubscribe")
        assert len(calls) == 0  # refreshed a moment ago: within the interval, no refetch
        now[0] += 31
        with pytest.raises(InvalidToken):
            stale.verify(forged, "unsubscribe")
        assert len(calls) == 1


def test_the_ring_keeps_a_bounded_number_of_old_keys() -> None:
    ring = KeyRing(current="k" * 40)
    for i in range(20):
        ring = ring.rotated(f"{i:02d}" * 20)
    assert len(ring.keys) == MAX_KEYS
    assert ring.current == "19" * 20


def test_steps_are_idempotent_and_refuse_foreign_versions() -> None:
    with LocalSystem(background_pump=False) as system:
        sm = system.client("secretsmanager")
        rotation = SigningKeyRotation(sm)
        with pytest.raises(RotationError, match="rotation is not enabled"):
            rotation.run(RotationEvent(Step="createSecret", SecretId=SECRET, ClientRequestToken="t" * 36))
        function_arn = enable_rotation(system)
        sm.rotate_secret(
            SecretId=SECRET, RotationLambdaARN=function_arn, RotationRules={"AutomaticallyAfterDays": 90}
        )
        ring = current_ring(system)
        current_version = next(
            v
            for v, s in sm.describe_secret(SecretId=SECRET)["VersionIdsToStages"].items()
            if "AWSCURRENT" in s
        )
        # Secrets Manager may repeat a step: on the current version every step is a no-op
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            rotation.run(RotationEvent(Step=step, SecretId=SECRET, ClientRequestToken=current_version))
        assert current_ring(system) == ring
        with pytest.raises(RotationError, match="not a version of the secret"):
            rotation.run(RotationEvent(Step="createSecret", SecretId=SECRET, ClientRequestToken="u" * 36))
        with pytest.raises(ClientError):
            sm.get_secret_value(SecretId=SECRET, VersionId="u" * 36)
