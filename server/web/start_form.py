"""The repository page's "Start a build" form, for signed-in users: the same service as
`POST /api/repos/{owner}/{name}/builds`. A refusal re-shows the page with the reason and what was
typed, instead of a JSON error."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth.session import ViewerDep
from server.builds.listing import BuildFilter
from server.builds.start import StartRefused, StartRequest, UnknownRepository, start_build
from server.deps import SessionDep, StateDep
from server.repos.service import get_repository
from server.web.actions import CsrfField, allowed
from server.web.error_pages import PageRoute
from server.web.pages import repository_context
from server.web.render import render

router = APIRouter(prefix="/-", include_in_schema=False, route_class=PageRoute)

RefField = Annotated[str, Form(max_length=255)]


@router.post("/repos/{owner}/{name}/builds", response_model=None)
def start_build_from_page(
    owner: str, name: str, request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep,
    csrf: CsrfField = "", branch: RefField = "", tag: RefField = "",
    commit: Annotated[str, Form(max_length=40)] = "",
    variables: Annotated[str, Form(max_length=100_000)] = "",
    no_deploy: Annotated[str, Form(max_length=1)] = "",
) -> Response:  # fmt: skip
    user = allowed(request, state, viewer, csrf)
    typed = {
        "branch": branch,
        "tag": tag,
        "commit": commit,
        "variables": variables,
        "no_deploy": bool(no_deploy),
    }
    # A tag typed over the default branch the form offers means the tag.
    chosen_branch = None if tag.strip() else branch.strip() or None
    try:
        started = start_build(
            session, state.settings, state.transport,
            StartRequest(
                repository=f"{owner}/{name}", started_by=user.name, branch=chosen_branch,
                tag=tag.strip() or None, commit=commit.strip() or None,
                variables=_variables(variables), deploy=not no_deploy,
            ),
        )  # fmt: skip
    except UnknownRepository as error:
        raise HTTPException(404, str(error)) from None
    except StartRefused as error:
        return _refused(request, session, viewer, owner, name, {**typed, "error": str(error)})
    repository = get_repository(session, f"{owner}/{name}")
    assert repository is not None
    return RedirectResponse(f"/{repository.full_name}/builds/{started.number}", status_code=303)


def _variables(text: str) -> dict[str, str]:
    """``NAME=value`` lines (blank lines ignored); a line without ``=`` is refused by name."""
    found = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise _BadLine(line)
        found[name.strip()] = value
    return found


class _BadLine(StartRefused):
    def __init__(self, line: str) -> None:
        super().__init__(f"variable line {line[:80]!r} is not NAME=value")


def _refused(
    request: Request, session: SessionDep, viewer: ViewerDep, owner: str, name: str, typed: dict[str, object]
) -> HTMLResponse:
    repository = get_repository(session, f"{owner}/{name}")
    assert repository is not None  # an unknown one was refused as such
    context = {**repository_context(session, repository, BuildFilter(), signed_in=True), "start": typed}
    return render(request, "repository.html", context, viewer, status_code=422)
