"""Which cache scopes a job may read and write is the server's decision (trust rules)."""

from server.caches.scopes import CacheFacts, cache_access


def facts(**given: object) -> CacheFacts:
    base: dict[str, object] = {
        "branch": None, "tag": None, "pull_request_number": None, "target_branch": None,
        "default_branch": "main", "environment": None,
    }  # fmt: skip
    return CacheFacts(**(base | given))  # type: ignore[arg-type]


def test_a_push_to_the_default_branch_reads_and_writes_only_its_own_scope() -> None:
    access = cache_access(facts(branch="main"))
    assert access.read == ["branch/main"] and access.write == "branch/main"


def test_a_push_to_another_branch_writes_its_own_scope_and_reads_the_default_one() -> None:
    access = cache_access(facts(branch="feature/x"))
    assert access.write == "branch/feature/x"
    assert access.read == ["branch/feature/x", "branch/main"]


def test_a_pull_request_never_writes_into_its_target_or_the_default_branch() -> None:
    access = cache_access(facts(pull_request_number=12, target_branch="main"))
    assert access.write == "pull/12"
    assert access.read == ["pull/12", "branch/main"]


def test_a_pull_request_reads_its_target_branch_before_the_default_one() -> None:
    access = cache_access(facts(pull_request_number=3, target_branch="release"))
    assert access.read == ["pull/3", "branch/release", "branch/main"]


def test_a_tag_reads_only_the_default_branch_and_saves_nothing() -> None:
    # A tag's scope would outlive the tag: whoever pushed and deleted v2.1.0 would fill the cache
    # of the maintainers' later v2.1.0.
    access = cache_access(facts(tag="v1"))
    assert access.read == ["branch/main"] and access.write is None


def test_a_build_with_extra_variables_reads_and_saves_nothing_of_its_own() -> None:
    access = cache_access(facts(branch="feature/x", variables=True))
    assert access.read == ["branch/feature/x", "branch/main"] and access.write is None


def test_the_scopes_belong_to_the_repositorys_id_not_its_name() -> None:
    assert cache_access(facts(branch="main", repository_id=42)).repository_id == 42


def test_a_deploy_job_restores_and_saves_nothing() -> None:
    access = cache_access(facts(branch="main", environment="production"))
    assert access.read == [] and access.write is None
