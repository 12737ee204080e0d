"""Where `greenlight up` keeps its data by default: root's goes where a system service keeps its
state, which the embedded PostgreSQL's own system user can pass through (/root is closed to it);
anyone else's in their home. Data an earlier root start kept in /root is never silently left
behind for an empty new directory."""

from __future__ import annotations

from pathlib import Path

from server.config import default_data_dir
from server.embedded.data_dir import earlier_data_refusal


def test_root_keeps_its_data_under_var_lib_and_others_in_their_home() -> None:
    assert default_data_dir(euid=0, home=Path("/root")) == Path("/var/lib/greenlight")
    assert default_data_dir(euid=1000, home=Path("/home/ada")) == Path("/home/ada/.local/share/greenlight")


def test_data_an_earlier_root_start_kept_in_its_home_is_named_not_left_behind(tmp_path: Path) -> None:
    earlier = tmp_path / "root" / ".local" / "share" / "greenlight"
    new = tmp_path / "var" / "lib" / "greenlight"
    assert earlier_data_refusal(new, earlier) is None  # nothing there: a first start
    earlier.mkdir(parents=True)
    (earlier / "secrets.env").write_text("postgres_password=kept\n")
    refusal = earlier_data_refusal(new, earlier)
    assert refusal is not None and f"mv {earlier} {new}" in refusal
    new.mkdir(parents=True)
    assert earlier_data_refusal(new, earlier) is None  # moved, or chosen: it is used


def test_directories_up_makes_above_the_data_directory_may_be_passed_through(tmp_path: Path) -> None:
    """`--data-dir /srv/ci/greenlight` where /srv/ci does not exist yet: the directories `up` makes
    on the way are passable like those of `mkdir -p` (PostgreSQL's own user must pass them, run
    as root); the data directory itself stays private."""
    import stat

    from server.embedded.data_dir import keep_private

    data = tmp_path / "srv" / "ci" / "greenlight"
    keep_private(data)
    for made in (tmp_path / "srv", tmp_path / "srv" / "ci"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o755, made
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
