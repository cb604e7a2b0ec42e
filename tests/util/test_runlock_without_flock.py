"""Where the file system cannot flock (NFS, Lustre without -o flock), locks are files created with
O_EXCL that name their host and PID: a second writer is refused naming the holder, a lock whose
process is gone on this host is taken over, a waiting lock waits, and a note says so once."""

from __future__ import annotations

import errno
import socket
import subprocess
import threading

import pytest

from dfc_vae.util import runlock
from dfc_vae.util.errors import UserError


@pytest.fixture
def no_flock(monkeypatch):
    def refuse(fd, flags):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "flock", refuse)
    monkeypatch.setattr(runlock, "_noted", False)
    monkeypatch.setattr(runlock, "POLL_S", 0.01)


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EBADF, errno.ENOSYS, errno.EOPNOTSUPP])
def test_every_refusal_of_flock_falls_back_to_an_owner_file(monkeypatch, tmp_path, code):
    monkeypatch.setattr(runlock.fcntl, "flock", lambda fd, flags: (_ for _ in ()).throw(OSError(code, "no")))
    run = tmp_path / "run"
    with runlock.run_lock(run, "train"):
        owner = (run / runlock.OWNER_NAME).read_text()
        assert owner.startswith(f"PID {runlock.os.getpid()} on {socket.gethostname()} (dfc-vae train)")
    assert not (run / runlock.OWNER_NAME).exists()


def test_a_second_writer_is_refused_naming_the_holder_and_the_note_comes_once(no_flock, tmp_path, capsys):
    run = tmp_path / "run"
    with runlock.run_lock(run, "train"):
        with pytest.raises(UserError, match=rf"in use by PID {runlock.os.getpid()} on .*remove .*owner\.lock"):
            with runlock.run_lock(run, "export", create=False):
                pass
    with runlock.run_lock(run, "attributes", create=False):
        pass
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "cannot lock files" in notes[0] and "host and PID" in notes[0]


def test_a_lock_whose_process_is_gone_is_taken_over_but_one_on_another_host_is_not(no_flock, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / runlock.OWNER_NAME).write_text(f"PID {_gone_pid()} on {socket.gethostname()} (dfc-vae train)\n")
    with runlock.run_lock(run, "train", create=False):
        assert f"PID {runlock.os.getpid()} " in (run / runlock.OWNER_NAME).read_text()
    (run / runlock.OWNER_NAME).write_text(f"PID {_gone_pid()} on not-{socket.gethostname()} (dfc-vae train)\n")
    with pytest.raises(UserError, match="in use by PID .* on not-"):
        with runlock.run_lock(run, "train", create=False):
            pass


def test_a_refused_start_leaves_nothing_behind_without_flock_too(no_flock, tmp_path):
    run = tmp_path / "new"
    with pytest.raises(UserError, match="bad data"):
        with runlock.run_lock(run, "train"):
            raise UserError("bad data")
    assert not run.exists()


def test_a_waiting_lock_waits_for_the_holder_and_leaves_no_file(no_flock, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    owner = folder / runlock.OWNER_NAME
    holder = subprocess.Popen(["sleep", "60"])
    try:
        owner.write_text(f"PID {holder.pid} on {socket.gethostname()} (dfc-vae prepare)\n")
        timer = threading.Timer(0.3, owner.unlink)  # the holder is done
        timer.start()
        with runlock.waiting_lock(folder):
            assert f"PID {runlock.os.getpid()} " in owner.read_text()
        timer.join()
    finally:
        holder.kill()
        holder.wait()
    assert list(folder.iterdir()) == []


def test_other_errors_of_flock_are_not_taken_for_a_missing_lock(monkeypatch, tmp_path):
    monkeypatch.setattr(runlock.fcntl, "flock", lambda fd, flags: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(OSError, match="I/O"):
        with runlock.run_lock(tmp_path / "run", "train"):
            pass
