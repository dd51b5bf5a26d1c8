"""Settings: read from DOCSIEVE_ variables once, each section checked, a bad value named in the error."""

from dataclasses import fields

import pytest

from docsieve.settings import (
    ApiSettings,
    CoreSettings,
    DeploySettings,
    FetchSettings,
    Settings,
    SettingsError,
    StoreSettings,
)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DOCSIEVE_LSH_BANDS": "10"}, r"LSH_BANDS \* DOCSIEVE_LSH_ROWS"),
        ({"DOCSIEVE_JACCARD_THRESHOLD": "1.5"}, "JACCARD_THRESHOLD"),
        ({"DOCSIEVE_BATCH_SIZE": "many"}, "not a valid int"),
        ({"DOCSIEVE_STORE": "  "}, "DOCSIEVE_STORE must not be empty"),
        ({"DOCSIEVE_PAYLOAD_TTL": "3600"}, "PAYLOAD_TTL .* must exceed DOCSIEVE_VISIBILITY_TIMEOUT"),
        ({"DOCSIEVE_PREPARE_AHEAD": "yes"}, "PREPARE_AHEAD must be auto, on or off, got 'yes'"),
        # a share of the containment: at 0 every copy by containment would stay one, whatever its template
        ({"DOCSIEVE_TEMPLATE_LIGHT_SHARE": "0"}, r"TEMPLATE_LIGHT_SHARE must be in \(0, 1\]"),
        ({"DOCSIEVE_TEMPLATE_LIGHT_SHARE": "1.2"}, r"TEMPLATE_LIGHT_SHARE must be in \(0, 1\]"),
        ({"DOCSIEVE_TEMPLATE_SAME_WORDS": "1.5"}, r"TEMPLATE_SAME_WORDS must be in \[0, 1\], got 1.5"),
    ],
)
def test_settings_are_validated(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_a_store_path_is_a_sqlite_file() -> None:
    assert Settings.from_env({"DOCSIEVE_STORE": "docsieve.db"}).store == "sqlite:///docsieve.db"
    assert Settings.from_env({}, store="/srv/news.db").store == "sqlite:////srv/news.db"
    assert Settings(store="postgresql+psycopg://db/x").store == "postgresql+psycopg://db/x"


def test_settings_from_env_and_overrides() -> None:
    s = Settings.from_env({"DOCSIEVE_SHINGLE_SIZE": "4", "DOCSIEVE_STORE": "sqlite:///x.db"}, store="sqlite:///y.db")
    assert s.shingle_size == 4 and s.store == "sqlite:///y.db"


def test_every_setting_is_in_exactly_one_section() -> None:
    sections = [CoreSettings, StoreSettings, FetchSettings, DeploySettings, ApiSettings]
    names = [f.name for section in sections for f in fields(section)]
    assert len(names) == len(set(names))  # no setting in two sections
    assert sorted(names) == sorted(f.name for f in fields(Settings))  # and none outside them


@pytest.mark.parametrize(
    ("env", "section"),
    [
        ({"DOCSIEVE_WINNOW_WINDOW": "0"}, CoreSettings),
        ({"DOCSIEVE_FETCH_DEADLINE": "0"}, FetchSettings),
        ({"DOCSIEVE_TASK_SOFT_TIME_LIMIT": "700"}, DeploySettings),
    ],
)
def test_each_section_checks_its_own_settings(env: dict, section: type) -> None:
    (name,) = env
    assert name.removeprefix("DOCSIEVE_").lower() in {f.name for f in fields(section)}
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize(("raw", "expected"), [("on", True), ("1", True), ("True", True), ("off", False), ("0", False)])
def test_a_switch_is_read_as_on_or_off(raw: str, expected: bool) -> None:
    assert Settings.from_env({"DOCSIEVE_API_QUEUE": raw}).api_queue is expected


def test_a_switch_that_is_neither_is_refused() -> None:
    with pytest.raises(SettingsError, match="DOCSIEVE_API_QUEUE='maybe'"):
        Settings.from_env({"DOCSIEVE_API_QUEUE": "maybe"})


def test_a_list_of_urls_is_shown_without_any_of_its_passwords() -> None:
    from docsieve.settings import redacted

    shown = redacted("redis://:one@a:6379/2,redis://:two@b:6380/2")
    assert shown == "redis://:***@a:6379/2,redis://:***@b:6380/2"
    assert redacted("redis://:one@a:6379/2") == "redis://:***@a:6379/2"
