"""The model repository: a plain git repository with one branch per revision (no network, no push).

Each branch holds one commit whose tree is a folder written by ``blalm export`` (plus the model card
on ``main``). Commits are made with git's plumbing (``add`` into a temporary index with the export
folder as work tree, ``write-tree``, ``commit-tree``, ``update-ref``), so no branch is ever checked
out while the others are built; at the end ``main`` is checked out in the repository folder.

Commits are reproducible: author and committer are ``blalm <blalm@localhost>`` and both dates are the
training run's start time (its ``run_info.json``), so the same checkpoints give the same commit
hashes on every machine and after any interruption. A branch that already holds the wanted tree is
left as it is; a different tree becomes a new commit on top of the branch.

The Hugging Face Hub takes files over 10 MB only through Git LFS: with ``git lfs`` installed,
``git lfs migrate import --everything --include="*.safetensors"`` turns the weights of every
branch into LFS objects before the push (see :func:`push_commands`).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from blalm.errors import BlalmError

IDENTITY = {"GIT_AUTHOR_NAME": "blalm", "GIT_AUTHOR_EMAIL": "blalm@localhost",
            "GIT_COMMITTER_NAME": "blalm", "GIT_COMMITTER_EMAIL": "blalm@localhost"}


def git(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    """``git -C repo ARGS`` (stdout, stripped); a failure raises BlalmError with git's message."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=full_env)
    except FileNotFoundError:
        raise BlalmError("git is not installed; blalm submit builds the model repository with git") from None
    if check and proc.returncode != 0:
        raise BlalmError(f"{repo}: 'git {' '.join(args)}' failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def init_repo(repo: Path) -> None:
    """An empty repository whose HEAD names ``main`` (kept as it is when it exists)."""
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").is_dir():
        git(repo, "init", "--quiet")
    git(repo, "symbolic-ref", "HEAD", "refs/heads/main")


def branch_commit(repo: Path, branch: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
    return out or None


def commit_message(repo: Path, commit: str) -> str:
    return git(repo, "log", "-1", "--format=%B", commit)


def show_file(repo: Path, commit: str, name: str) -> str | None:
    """The text of file ``name`` in ``commit`` (None when the commit has no such file)."""
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{name}"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def commit_folder(repo: Path, folder: Path, branch: str, message: str, date: str) -> str:
    """Make ``branch`` hold exactly the files of ``folder``; returns the branch's commit."""
    index = repo / ".git" / f"blalm-index-{uuid.uuid4().hex[:12]}"
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        git(repo, f"--work-tree={folder}", "add", "--all", "--force", ".", env=env)
        tree = git(repo, "write-tree", env=env)
    finally:
        index.unlink(missing_ok=True)
    parent = branch_commit(repo, branch)
    if parent is not None and git(repo, "rev-parse", f"{parent}^{{tree}}") == tree \
            and commit_message(repo, parent) == message.strip():
        return parent
    dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, **IDENTITY}
    commit = git(repo, "commit-tree", tree, "-m", message, *(["-p", parent] if parent else []), env=dates)
    git(repo, "update-ref", f"refs/heads/{branch}", commit, *([parent] if parent else []))
    return commit


def checkout_main(repo: Path) -> None:
    """Put ``main``'s files in the repository folder (index and work tree)."""
    git(repo, "symbolic-ref", "HEAD", "refs/heads/main")
    git(repo, "reset", "--quiet", "--hard", "main")


def branches(repo: Path) -> dict[str, str]:
    """``{branch: commit}`` of the repository."""
    out = git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def push_commands(repo: Path, hub_repo: str) -> list[str]:
    """What the user runs to publish the repository on the Hub (never run here)."""
    return [f"cd {repo}",
            "git lfs install && git lfs migrate import --everything --include='*.safetensors'",
            f"git remote add origin https://huggingface.co/{hub_repo}",
            "git push origin --all"]
