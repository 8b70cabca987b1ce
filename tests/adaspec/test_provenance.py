import subprocess

from adaspec.provenance import environment, git_commit, package_versions


def test_package_versions_reads_installed_and_missing():
    import torch

    got = package_versions(("torch", "surely-not-installed-xyz"))
    assert got["torch"] and got["torch"] in torch.__version__
    assert got["surely-not-installed-xyz"] is None


def test_git_commit_names_head_and_dirty_state(tmp_path):
    assert git_commit(tmp_path) is None  # not a checkout

    def run(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path) == head + "+dirty"


def test_environment_has_versions_and_device():
    import torch

    env = environment()
    assert env["device"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    assert env["transformers"] and env["torch"] and env["adaspec"]
