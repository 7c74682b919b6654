"""Code upload (ignore files, sent once, reused) and downloads over real SSH."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fabric import Connection

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.remote import code_hash, collect_files, download, exec_command, upload_code


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _tree(
        tmp_path / "project",
        {
            "train.py": "print('train')\n",
            "conf/config.yaml": "lr: 0.1\n",
            ".gitignore": "*.log\ndata/\noutputs/\n",
            ".flowignore": "secrets.env\n!data/\n",
            "run.log": "noise\n",
            "secrets.env": "TOKEN=x\n",
            "data/small.csv": "a,b\n",
            "outputs/old/result.txt": "old\n",
            "pkg/.gitignore": "generated.py\n",
            "pkg/module.py": "x = 1\n",
            "pkg/generated.py": "y = 2\n",
            ".git/HEAD": "ref: refs/heads/main\n",
            ".venv/bin/python": "",
            "pkg/__pycache__/module.cpython-311.pyc": "",
        },
    )


def test_ignore_files_select_what_is_uploaded(project: Path) -> None:
    assert collect_files(project) == [
        ".flowignore",
        ".gitignore",
        "conf/config.yaml",
        "data/small.csv",  # re-included by .flowignore
        "pkg/.gitignore",
        "pkg/module.py",
        "train.py",
    ]


def test_hash_follows_content_not_ignored_files(project: Path) -> None:
    before = code_hash(project)
    (project / "run.log").write_text("more noise\n")
    (project / "outputs" / "new.txt").write_text("ignored\n")
    assert code_hash(project) == before
    (project / "train.py").write_text("print('changed')\n")
    assert code_hash(project) != before


def test_upload_sends_once_and_reuses(conn: Connection, project: Path, tmp_path: Path) -> None:
    remote = str(tmp_path / "remote-code")
    first = upload_code(conn, project, remote)
    second = upload_code(conn, project, remote)
    assert first.sent and not second.sent and first.path == second.path
    landed = Path(first.path)
    assert (landed / "train.py").read_text() == "print('train')\n"
    assert (landed / "data" / "small.csv").exists()
    assert not (landed / "secrets.env").exists() and not (landed / "run.log").exists()
    assert not (landed / ".git").exists() and not (landed / "pkg" / "generated.py").exists()
    (project / "train.py").write_text("print('v2')\n")
    third = upload_code(conn, project, remote)
    assert third.sent and third.path != first.path
    assert (Path(third.path) / "train.py").read_text() == "print('v2')\n"


def test_upload_found_on_the_host_is_not_sent_again(
    conn: Connection, project: Path, tmp_path: Path
) -> None:
    remote = str(tmp_path / "remote-code")
    upload_code(conn, project, remote)
    # Another process (fresh in-process cache): the completed folder on the host is reused.
    from flow_backend.remote import code_upload

    code_upload._uploaded.clear()
    again = upload_code(conn, project, remote)
    assert not again.sent


def test_concurrent_uploads_send_once(conn: Connection, project: Path, tmp_path: Path) -> None:
    remote = str(tmp_path / "remote-code")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(upload_code(conn, project, remote)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result.sent for result in results) == 1
    assert len({result.path for result in results}) == 1
    assert [p.name for p in Path(remote).iterdir()] == [results[0].content_hash]


def test_upload_of_a_missing_folder_names_it(conn: Connection, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="code_root") as info:
        upload_code(conn, tmp_path / "nope", str(tmp_path / "remote"))
    assert str(tmp_path / "nope") in str(info.value)


def test_download_a_folder_and_a_file(conn: Connection, tmp_path: Path) -> None:
    remote = _tree(
        tmp_path / "remote-out",
        {"metrics.json": '{"acc": 1}', "sub/model.bin": "weights", "sub/deep/x.txt": "x"},
    )
    (remote / "run.sh").write_text("#!/bin/sh\n")
    (remote / "run.sh").chmod(0o755)
    local = tmp_path / "local-out"
    download(conn, str(remote), local)
    assert sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()) == [
        "metrics.json",
        "run.sh",
        "sub/deep/x.txt",
        "sub/model.bin",
    ]
    assert (local / "sub" / "model.bin").read_text() == "weights"
    assert (local / "run.sh").stat().st_mode & 0o100
    single = download(conn, str(remote / "metrics.json"), tmp_path / "one.json")
    assert single.read_text() == '{"acc": 1}'
    inside = download(conn, str(remote / "metrics.json"), local / "sub")
    assert inside == local / "sub" / "metrics.json"


def test_download_of_a_missing_path_names_it(conn: Connection, tmp_path: Path) -> None:
    with pytest.raises(ResourceNotFoundError, match="no-such-dir"):
        download(conn, str(tmp_path / "no-such-dir"), tmp_path / "x")


def test_download_keeps_binary_bytes(conn: Connection, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4096
    (tmp_path / "blob.bin").write_bytes(blob)
    exec_command(conn, f"cp {tmp_path / 'blob.bin'} {tmp_path / 'remote.bin'}")
    assert download(conn, str(tmp_path / "remote.bin"), tmp_path / "back.bin").read_bytes() == blob
