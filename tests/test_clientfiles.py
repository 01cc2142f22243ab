"""Finding the client assets (open-easyrtc api folder, socket.io bundle) and explaining gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from easyrtc_server import clientfiles
from easyrtc_server.cli import main
from easyrtc_server.clientfiles import ENV_VAR, ClientFiles, bundled_versions, find_client_files

REPO = Path(__file__).resolve().parents[1]
REAL_API = REPO / "node_modules" / "open-easyrtc" / "api"
REAL_BUNDLE = REPO / "node_modules" / "socket.io-client" / "dist" / "socket.io.js"


def make_packages(node_modules: Path, easyrtc: str = "2.1.8", sio: str = "4.8.4") -> Path:
    """Minimal open-easyrtc and socket.io-client packages in ``node_modules``; returns it."""
    api = node_modules / "open-easyrtc" / "api"
    api.mkdir(parents=True)
    (api / "easyrtc.js").write_text("// easyrtc\n")
    write_package_json(api.parent, "open-easyrtc", easyrtc)
    dist = node_modules / "socket.io-client" / "dist"
    dist.mkdir(parents=True)
    (dist / "socket.io.js").write_text("// socket.io\n")
    write_package_json(dist.parent, "socket.io-client", sio)
    return node_modules


def write_package_json(folder: Path, name: str, version: str) -> None:
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version}))


def make_project(root: Path, **versions: str) -> Path:
    """A folder holding a minimal node_modules with both packages; returns ``root``."""
    make_packages(root / "node_modules", **versions)
    return root


def api_of(project: Path) -> Path:
    return project / "node_modules" / "open-easyrtc" / "api"


def bundle_of(project: Path) -> Path:
    return project / "node_modules" / "socket.io-client" / "dist" / "socket.io.js"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env var, an empty working directory, a repository without node_modules, and a
    package without bundled client files (as in an editable install)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(clientfiles, "REPO_ROOT", tmp_path / "repo-without-node-modules")
    monkeypatch.setattr(clientfiles, "PACKAGE_CLIENT_DIR", tmp_path / "site" / "pkg" / "client")
    return tmp_path


def bundle_in_package(isolated: Path) -> Path:
    """Client files bundled in the (fake) installed package, as a wheel lays them out."""
    return make_packages(clientfiles.PACKAGE_CLIENT_DIR, easyrtc="2.1.8", sio="4.8.4")


def test_repository_node_modules_are_found_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (REAL_API / "easyrtc.js").is_file(), "npm packages not installed: run script/setup"
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    files = find_client_files()
    assert files == ClientFiles(
        api_dir=REAL_API,
        socketio_js=REAL_BUNDLE,
        problems=[],
        api_from="repository",
        socketio_from="repository",
    )
    assert files.complete


def test_node_modules_in_working_directory(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(isolated / "project")
    monkeypatch.chdir(project)
    files = find_client_files()
    assert files.api_dir == api_of(project)
    assert files.socketio_js == bundle_of(project)
    assert files.problems == []


def test_working_directory_comes_before_repository(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_project(isolated / "repo")
    here = make_project(isolated / "here")
    monkeypatch.setattr(clientfiles, "REPO_ROOT", repo)
    monkeypatch.chdir(here)
    files = find_client_files()
    assert files.api_dir == api_of(here)
    assert files.socketio_js == bundle_of(here)


def test_repository_is_the_last_resort(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_project(isolated / "repo")
    monkeypatch.setattr(clientfiles, "REPO_ROOT", repo)
    files = find_client_files()
    assert files.api_dir == api_of(repo)
    assert files.socketio_js == bundle_of(repo)
    assert files.problems == []


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(lambda p: p, id="project-folder"),
        pytest.param(lambda p: p / "node_modules", id="node_modules"),
        pytest.param(lambda p: p / "node_modules" / "open-easyrtc", id="package-folder"),
        pytest.param(lambda p: p / "node_modules" / "open-easyrtc" / "api", id="api-folder"),
    ],
)
def test_env_var_accepts_any_folder_leading_to_the_packages(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, given: object
) -> None:
    project = make_project(isolated / "project")
    assert callable(given)
    monkeypatch.setenv(ENV_VAR, str(given(project)))
    files = find_client_files()
    assert files.api_dir == api_of(project)
    assert files.socketio_js == bundle_of(project)
    assert files.problems == []


def test_explicit_argument_comes_before_env_var_and_working_directory(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = make_project(isolated / "chosen")
    monkeypatch.setenv(ENV_VAR, str(make_project(isolated / "env")))
    monkeypatch.chdir(make_project(isolated / "cwd2"))
    files = find_client_files(api_dir=chosen)
    assert files.api_dir == api_of(chosen)
    assert files.socketio_js == bundle_of(chosen)


def test_env_var_comes_before_working_directory(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_project(isolated / "env")
    monkeypatch.setenv(ENV_VAR, str(env))
    monkeypatch.chdir(make_project(isolated / "cwd2"))
    assert find_client_files().api_dir == api_of(env)


def test_bare_api_folder_takes_socketio_from_the_next_place(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = isolated / "custom-api"
    custom.mkdir()
    (custom / "easyrtc.js").write_text("// custom\n")
    project = make_project(isolated / "project")
    monkeypatch.chdir(project)
    files = find_client_files(api_dir=custom)
    assert files.api_dir == custom
    assert files.socketio_js == bundle_of(project)
    assert files.problems == []


def test_explicit_socketio_file_or_folder(isolated: Path) -> None:
    project = make_project(isolated / "project")
    bundle = bundle_of(project)
    assert find_client_files(api_dir=project, socketio_js=bundle).socketio_js == bundle
    assert find_client_files(socketio_js=bundle.parent).socketio_js == bundle
    assert find_client_files(socketio_js=bundle.parent.parent).socketio_js == bundle


def test_nothing_installed_explains_how_to_get_the_files(isolated: Path) -> None:
    files = find_client_files()
    assert files.api_dir is None
    assert files.socketio_js is None
    assert not files.complete
    assert len(files.problems) == 2
    api_problem, sio_problem = files.problems
    assert "open-easyrtc" in api_problem
    assert "socket.io" in sio_problem
    for problem in files.problems:
        assert "run `npm ci` in the repository" in problem
        assert "--client-dir" in problem
        assert ENV_VAR in problem
        assert "current directory" in problem


def test_wrong_explicit_folder_is_reported_and_the_search_goes_on(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = isolated / "empty"
    empty.mkdir()
    project = make_project(isolated / "project")
    monkeypatch.chdir(project)
    files = find_client_files(api_dir=empty, socketio_js=empty / "nope.js")
    assert files.api_dir == api_of(project)
    assert files.socketio_js == bundle_of(project)
    assert len(files.problems) == 2
    assert str(empty) in files.problems[0] and "ignored" in files.problems[0]
    assert "nope.js" in files.problems[1] and "ignored" in files.problems[1]


def test_wrong_env_var_is_reported(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(isolated / "does-not-exist"))
    files = find_client_files()
    assert files.api_dir is None
    assert any(ENV_VAR in p and "does-not-exist" in p for p in files.problems)


@pytest.mark.parametrize(
    "weird",
    [Path("bad\x00name"), Path("/dev/null"), Path("x" * 5000), Path("~nonexistent-user-xyz")],
)
def test_unusable_paths_never_raise(isolated: Path, weird: Path) -> None:
    files = find_client_files(api_dir=weird, socketio_js=weird)
    assert files.api_dir is None
    assert files.socketio_js is None
    assert files.problems


def test_api_folder_needs_easyrtc_js(isolated: Path) -> None:
    project = make_project(isolated / "project")
    (api_of(project) / "easyrtc.js").unlink()
    files = find_client_files(api_dir=project)
    assert files.api_dir is None
    assert files.socketio_js == bundle_of(project)


def test_without_api_keeps_the_socketio_bundle(isolated: Path) -> None:
    project = make_project(isolated / "project")
    files = find_client_files(api_dir=project)
    reduced = files.without_api()
    assert reduced.api_dir is None
    assert reduced.socketio_js == bundle_of(project)
    assert files.api_dir == api_of(project)  # the original is untouched


def make_legacy_package(project: Path, name: str = "open-easyrtc-v2") -> Path:
    """An open-easyrtc 2.0.x installed as ``name`` next to the project's socket.io-client, with
    its own socket.io-client 2 nested inside it (as npm lays it out); returns the package."""
    package = project / "node_modules" / name
    (package / "api").mkdir(parents=True)
    (package / "api" / "easyrtc.js").write_text("// easyrtc 2.0.20\n")
    dist = package / "node_modules" / "socket.io-client" / "dist"
    dist.mkdir(parents=True)
    (dist / "socket.io.js").write_text("// socket.io 2\n")
    return package


@pytest.mark.parametrize("folder", ["package", "api"])
def test_package_or_api_folder_brings_its_own_socketio(isolated: Path, folder: str) -> None:
    project = make_project(isolated / "project")
    package = make_legacy_package(project)
    given = package if folder == "package" else package / "api"
    files = find_client_files(api_dir=given)
    assert files.api_dir == package / "api"
    assert files.socketio_js == package / "node_modules" / "socket.io-client" / "dist" / (
        "socket.io.js"
    )
    assert files.problems == []


def test_package_folder_without_its_own_socketio_uses_the_hoisted_one(isolated: Path) -> None:
    project = make_project(isolated / "project")
    package = make_legacy_package(project)
    (package / "node_modules" / "socket.io-client" / "dist" / "socket.io.js").unlink()
    for given in (package, package / "api"):
        files = find_client_files(api_dir=given)
        assert files.api_dir == package / "api"
        assert files.socketio_js == bundle_of(project)


def test_explicit_socketio_wins_over_the_package_one(isolated: Path) -> None:
    project = make_project(isolated / "project")
    package = make_legacy_package(project)
    chosen = isolated / "socket.io-client-v2" / "dist" / "socket.io.js"
    chosen.parent.mkdir(parents=True)
    chosen.write_text("// socket.io 2.4\n")
    files = find_client_files(api_dir=package, socketio_js=chosen.parent.parent)
    assert files.api_dir == package / "api"
    assert files.socketio_js == chosen
    assert files.problems == []


# --- the files bundled in a wheel -------------------------------------------------------------


def test_bundled_files_are_the_last_resort(isolated: Path) -> None:
    client = bundle_in_package(isolated)
    files = find_client_files()
    assert files.api_dir == client / "open-easyrtc" / "api"
    assert files.socketio_js == client / "socket.io-client" / "dist" / "socket.io.js"
    assert (files.api_from, files.socketio_from) == ("package", "package")
    assert files.problems == []


@pytest.mark.parametrize("where", ["env", "cwd", "repository"])
def test_every_other_place_comes_before_the_bundled_files(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    bundle_in_package(isolated)
    project = make_project(isolated / "project", easyrtc="2.0.20", sio="2.4.0")
    if where == "env":
        monkeypatch.setenv(ENV_VAR, str(project))
    elif where == "cwd":
        monkeypatch.chdir(project)
    else:
        monkeypatch.setattr(clientfiles, "REPO_ROOT", project)
    files = find_client_files()
    assert files.api_dir == api_of(project)
    assert files.socketio_js == bundle_of(project)
    assert files.versions() == {"open-easyrtc": "2.0.20", "socket.io-client": "2.4.0"}


def test_explicit_folder_comes_before_the_bundled_files(isolated: Path) -> None:
    bundle_in_package(isolated)
    project = make_project(isolated / "project")
    files = find_client_files(api_dir=project)
    assert (files.api_from, files.socketio_from) == ("api_dir argument", "api_dir argument")


def test_bundled_folder_serves_only_its_own_bundle(isolated: Path) -> None:
    """The package's ``client`` folder is searched, never the site-packages around it."""
    stray = isolated / "site" / "socket.io-client" / "dist"
    stray.mkdir(parents=True)
    (stray / "socket.io.js").write_text("// someone else's\n")
    clientfiles.PACKAGE_CLIENT_DIR.mkdir(parents=True)
    files = find_client_files()
    assert files.socketio_js is None
    assert any("(package)" in problem for problem in files.problems)


def test_bundled_versions(isolated: Path) -> None:
    assert bundled_versions() == {}
    bundle_in_package(isolated)
    assert bundled_versions() == {"open-easyrtc": "2.1.8", "socket.io-client": "4.8.4"}


def test_versions_come_from_each_package_json(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(isolated / "project")
    legacy = make_legacy_package(project)
    write_package_json(legacy, "open-easyrtc", "2.0.20")
    write_package_json(legacy / "node_modules" / "socket.io-client", "socket.io-client", "2.4.0")
    assert find_client_files(api_dir=legacy).versions() == {
        "open-easyrtc": "2.0.20",
        "socket.io-client": "2.4.0",
    }
    bare = isolated / "bare-api"
    bare.mkdir()
    (bare / "easyrtc.js").write_text("// custom\n")
    (bare / "package.json").write_text("not json")
    monkeypatch.chdir(project)
    assert find_client_files(api_dir=bare).versions() == {
        "open-easyrtc": "unknown version",
        "socket.io-client": "4.8.4",
    }


def test_summary_says_what_is_served_from_where(isolated: Path) -> None:
    client = bundle_in_package(isolated)
    summary = find_client_files().summary()
    assert summary == (
        f"client files: open-easyrtc 2.1.8 from {client / 'open-easyrtc' / 'api'} (package); "
        f"socket.io-client 4.8.4 from {client / 'socket.io-client' / 'dist' / 'socket.io.js'} "
        "(package)"
    )
    assert (
        find_client_files()
        .without_api()
        .summary()
        .startswith("client files: open-easyrtc client API not found; socket.io-client 4.8.4 from ")
    )


def test_summary_of_nothing_found(isolated: Path) -> None:
    assert find_client_files().summary() == (
        "client files: open-easyrtc client API not found; socket.io browser client not found"
    )


def test_version_flag_in_a_checkout(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(make_project(isolated / "project", easyrtc="2.1.8", sio="4.8.4"))
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "easyrtc-server 0.1.0"
    assert "open-easyrtc 2.1.8 from" in lines[1] and "(current directory)" in lines[1]
    assert lines[2] == "bundled client files: none (a checkout serves its node_modules)"


def test_version_flag_of_an_installed_package(isolated: Path) -> None:
    bundle_in_package(isolated)
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert "socket.io-client 4.8.4 from" in result.output
    assert "bundled client files: open-easyrtc 2.1.8, socket.io-client 4.8.4" in result.output
