"""The environment contract is declared once, by ``Settings``: each field's variable
(``Settings.variables``). The local runtime's environment (``settings_env``) and the stack's
(``tests/infra/test_stack.py``) are built from it, so a field without a value there — or a value of
no field — is an error naming the variable, never a function that starts without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from leadflow.kernel.settings import ENV_PREFIX, Settings
from leadflow.local import system as local_system
from leadflow.local.system import local_settings, settings_env

BASE_URL = "https://api.example.com"


class WithNewSetting(Settings):
    """Settings as they would be after a field was added to the model and nowhere else."""

    crm_endpoint: str = Field(min_length=1)


def test_each_field_declares_its_variable() -> None:
    variables = Settings.variables()
    assert set(variables) == set(Settings.model_fields)
    assert variables["bulk_queue_url"] == "LEADFLOW_BULK_QUEUE_URL"
    assert all(v == ENV_PREFIX + name.upper() for name, v in variables.items())


def test_the_local_environment_is_every_variable_and_starts_the_functions() -> None:
    env = settings_env(BASE_URL)
    leadflow = {k for k in env if k.startswith(ENV_PREFIX)}
    assert leadflow == set(Settings.variables().values())
    settings = Settings.from_environ(env)
    assert settings.public_base_url == BASE_URL
    assert settings.forms["whitepaper"].double_opt_in is True


def test_a_field_without_a_local_value_stops_the_local_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_system, "Settings", WithNewSetting)
    with pytest.raises(ValueError, match="no value for LEADFLOW_CRM_ENDPOINT"):
        settings_env(BASE_URL)


def test_a_value_of_no_field_is_refused() -> None:
    values = local_settings(BASE_URL) | {"crm_endpont": "https://crm.example.com"}  # a typo
    with pytest.raises(ValueError, match="not a setting: LEADFLOW_CRM_ENDPONT"):
        Settings.environment(values)


def test_missing_and_unknown_are_named_together(tmp_path: Path) -> None:
    values = local_settings(BASE_URL, tmp_path)
    del values["sender_email"], values["stage"]
    with pytest.raises(ValueError, match="does not match Settings") as raised:
        Settings.environment(values | {"extra": "1"})
    assert str(raised.value) == (
        "the LEADFLOW_* environment does not match Settings: no value for LEADFLOW_STAGE, "
        "LEADFLOW_SENDER_EMAIL; not a setting: LEADFLOW_EXTRA"
    )


def test_from_environ_reads_the_declared_variables_in_any_case() -> None:
    env = {k.lower(): v for k, v in settings_env(BASE_URL).items()}
    assert Settings.from_environ(env).bulk_queue_url == local_settings(BASE_URL)["bulk_queue_url"]
    del env["leadflow_bulk_queue_url"]
    with pytest.raises(ValidationError) as raised:
        Settings.from_environ(env)
    assert [e["loc"] for e in raised.value.errors()] == [("bulk_queue_url",)]
