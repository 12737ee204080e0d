"""The engine: Greenlight runs on Postgres only."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.db import UnsupportedDatabase, make_engine


def test_a_sqlite_url_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'greenlight.db'}"
    with pytest.raises(UnsupportedDatabase) as refused:
        make_engine(url)
    assert "PostgreSQL" in str(refused.value) and "GREENLIGHT_DATABASE_URL" in str(refused.value)
    assert not (tmp_path / "greenlight.db").exists()
